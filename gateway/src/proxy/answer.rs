//! The one place where failures become HTTP answers.
//!
//! Every refusal carries a stable reason category for the identity event and a coarse error
//! name for the client; the client never sees rule ids, patterns or other policy internals.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use serde::Serialize;

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
    NoRoute,
    /// An enforced deny rule matched.
    PolicyDenied,
    /// No allow rule matched.
    DefaultDeny,
    UpstreamUnavailable,
    UpstreamTimeout,
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
            Refusal::BadPath | Refusal::BadRequest | Refusal::BadAuthorization => 400,
            Refusal::NoRoute => 404,
            Refusal::PolicyDenied | Refusal::DefaultDeny => 403,
            Refusal::UpstreamUnavailable => 502,
            Refusal::UpstreamTimeout => 504,
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
            Refusal::NoRoute => "no_route",
            Refusal::PolicyDenied => "policy_denied",
            Refusal::DefaultDeny => "default_deny",
            Refusal::UpstreamUnavailable => "upstream_unavailable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::Internal => "internal_error",
        }
    }

    /// The error name the client sees.
    fn error(self) -> &'static str {
        match self.status() {
            401 => "unauthenticated",
            400 => "bad_request",
            403 => "forbidden",
            404 => "not_found",
            502 => "bad_gateway",
            504 => "gateway_timeout",
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
    fn challenge(self, tokens: bool) -> Option<String> {
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
            Refusal::UpstreamUnavailable | Refusal::UpstreamTimeout
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    request_id: &'a str,
}

/// The response header and JSON body for `refusal`; `tokens` says whether the gateway
/// accepts tokens, and so whether a 401 challenges the client to present one.
pub fn response(
    refusal: Refusal,
    request_id: &str,
    tokens: bool,
) -> pingora_error::Result<(ResponseHeader, Bytes)> {
    let body = serde_json::to_vec(&Body {
        error: refusal.error(),
        request_id,
    })
    .map(Bytes::from)
    .unwrap_or_default();
    let mut header = ResponseHeader::build(refusal.status(), Some(5))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("x-request-id", request_id)?;
    header.insert_header("cache-control", "no-store")?;
    if let Some(challenge) = refusal.challenge(tokens) {
        header.insert_header("www-authenticate", challenge)?;
    }
    Ok((header, body))
}
