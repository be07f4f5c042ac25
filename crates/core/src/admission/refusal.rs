//! Why a request is refused: one type for every refusal the gateway makes, with its status, the
//! stable reason category identity events carry, and the coarse error name the client sees.
//! The client never sees rule ids, patterns or other policy internals.

use crate::identity::TokenReason;

/// The realm of the gateway's `WWW-Authenticate` challenges.
const REALM: &str = "zonegate";

/// Why the gateway answered instead of the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No client certificate reached the request (should not pass the handshake).
    NoCredential,
    /// The connection's SVID has expired since the handshake.
    CredentialExpired,
    /// The SVID is not yet valid (clock skew against the handshake).
    CredentialNotYetValid,
    /// The SPIFFE ID or certificate serial is on the revocation list.
    CredentialRevoked,
    /// The chain no longer verifies against the trust bundles in force.
    CredentialUntrusted,
    /// The request's token was refused.
    Token(TokenReason),
    /// The route requires an X.509-SVID and the connection has none.
    MtlsRequired,
    /// The route requires a token and the request has none.
    TokenRequired,
    /// Several `Authorization` headers, or a `Bearer` without a well-formed token.
    BadAuthorization,
    BadPath,
    BadRequest,
    /// The request head (all header fields together, or their number) is over the limit.
    HeadersTooLarge,
    /// The request target is longer than the limit.
    TargetTooLong,
    /// The request body is longer than the route's limit.
    BodyTooLarge,
    /// A header name with an underscore, where the gateway is told to refuse them.
    UnderscoreHeader,
    NoRoute,
    /// An enforced deny rule matched.
    PolicyDenied,
    /// Over a rule's or a route's request rate for the identity.
    RateLimited,
    /// Over a rule's or a route's requests in flight for the identity.
    ConcurrencyLimited,
    /// No allow rule matched.
    DefaultDeny,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// `[events] fail_closed` and the event sink cannot record: nothing is served unrecorded.
    EventsUnavailable,
    /// The client went away (reset its stream, closed its connection) before the answer.
    /// Nothing is sent; the status is the one nginx records for it.
    Cancelled,
    Internal,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoCredential
            | Refusal::CredentialExpired
            | Refusal::CredentialNotYetValid
            | Refusal::CredentialRevoked
            | Refusal::CredentialUntrusted
            | Refusal::Token(_)
            | Refusal::MtlsRequired
            | Refusal::TokenRequired => 401,
            Refusal::BadPath
            | Refusal::BadRequest
            | Refusal::BadAuthorization
            | Refusal::UnderscoreHeader => 400,
            Refusal::HeadersTooLarge => 431,
            Refusal::TargetTooLong => 414,
            Refusal::BodyTooLarge => 413,
            Refusal::NoRoute => 404,
            Refusal::PolicyDenied | Refusal::DefaultDeny => 403,
            Refusal::RateLimited | Refusal::ConcurrencyLimited => 429,
            Refusal::UpstreamUnavailable => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::EventsUnavailable => 503,
            Refusal::Cancelled => 499,
            Refusal::Internal => 500,
        }
    }

    /// The reason category written in identity events (docs/events.md).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoCredential => "no_credential",
            Refusal::CredentialExpired => "credential_expired",
            Refusal::CredentialNotYetValid => "credential_not_yet_valid",
            Refusal::CredentialRevoked => "credential_revoked",
            Refusal::CredentialUntrusted => "credential_untrusted",
            Refusal::Token(reason) => reason.as_str(),
            Refusal::MtlsRequired => "mtls_required",
            Refusal::TokenRequired => "token_required",
            Refusal::BadAuthorization => "bad_authorization",
            Refusal::BadPath => "bad_path",
            Refusal::BadRequest => "bad_request",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::TargetTooLong => "target_too_long",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::UnderscoreHeader => "underscore_header",
            Refusal::NoRoute => "no_route",
            Refusal::PolicyDenied => "policy_denied",
            Refusal::DefaultDeny => "default_deny",
            Refusal::RateLimited => "rate_limited",
            Refusal::ConcurrencyLimited => "concurrency_limited",
            Refusal::UpstreamUnavailable => "upstream_unavailable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::EventsUnavailable => "events_unavailable",
            Refusal::Cancelled => "cancelled",
            Refusal::Internal => "internal_error",
        }
    }

    /// The error name the client sees.
    pub fn error(self) -> &'static str {
        match self.status() {
            401 => "unauthenticated",
            400 => "bad_request",
            403 => "forbidden",
            404 => "not_found",
            413 => "body_too_large",
            414 => "target_too_long",
            429 => "too_many_requests",
            431 => "headers_too_large",
            502 => "bad_gateway",
            503 => "unavailable",
            504 => "gateway_timeout",
            499 => "cancelled",
            _ => "internal_error",
        }
    }

    /// Whether the connection's certificate is what failed: the connection is closed so the
    /// client must handshake again. A refused or missing token says nothing about the
    /// connection.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Refusal::CredentialExpired
                | Refusal::CredentialNotYetValid
                | Refusal::CredentialRevoked
                | Refusal::CredentialUntrusted
        )
    }

    /// The RFC 6750 challenge, when the gateway accepts tokens (`tokens`): which error, if
    /// any, and its description. Descriptions are categories, never details.
    pub fn challenge(self, tokens: bool) -> Option<String> {
        let (error, description) = match self {
            Refusal::Token(reason) => ("invalid_token", reason.description()),
            Refusal::BadAuthorization => ("invalid_request", "malformed Authorization header"),
            Refusal::TokenRequired => return Some(format!("Bearer realm=\"{REALM}\"")),
            // A token cannot satisfy `MtlsRequired`: no challenge to present one.
            Refusal::NoCredential if tokens => return Some(format!("Bearer realm=\"{REALM}\"")),
            _ => return None,
        };
        Some(format!(
            "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{description}\""
        ))
    }

    /// Whether the verdict on the identity was a deny (as opposed to a failure after allow).
    pub fn is_denial(self) -> bool {
        !matches!(
            self,
            Refusal::UpstreamUnavailable
                | Refusal::UpstreamTimeout
                | Refusal::EventsUnavailable
                | Refusal::Cancelled
        )
    }
}
