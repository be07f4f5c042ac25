//! Authentication of one request: the connection's X.509-SVID, the request's bearer token, the
//! route's credential requirement and the binding between the two credentials, producing the
//! one [`Identity`] policy sees.
//!
//! Order is chosen to fail closed and reveal little: a request with no credential at all is
//! refused before its route is looked up; a request without a certificate must prove itself
//! with a token before routing too, so that unauthenticated clients cannot map the routes. On
//! a connection with an SVID, a token is the gateway's to verify only where the route accepts
//! tokens: elsewhere `Authorization` belongs to the upstream and is passed through untouched.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use pingora_http::RequestHeader;

use super::answer::Refusal;
use super::tls::PeerSvid;
use crate::identity::{Identity, TokenFailure, TokenReason, VerifiedToken};
use crate::policy::{Credentials, Presented};
use crate::reload::Snapshot;

/// What the `Authorization` header holds.
pub enum Bearer<'r> {
    Absent,
    Token(&'r str),
    /// Another scheme: not the gateway's.
    OtherScheme,
}

/// Reads `Authorization`. More than one such header, or a `Bearer` without a token, is a
/// malformed request (RFC 6750 `invalid_request`), never a guess at which one counts.
pub fn bearer(req: &RequestHeader) -> Result<Bearer<'_>, Refusal> {
    let mut values = req.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Bearer::Absent);
    };
    if values.next().is_some() {
        return Err(Refusal::BadAuthorization);
    }
    let value = value.to_str().map_err(|_| Refusal::BadAuthorization)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Bearer::OtherScheme);
    }
    let token = rest.trim_matches(' ');
    // RFC 6750 2.1 b64token: the characters a compact JWS can hold, and nothing else.
    let is_b64token = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    if is_b64token {
        Ok(Bearer::Token(token))
    } else {
        Err(Refusal::BadAuthorization)
    }
}

/// The outcome of authentication, for the rest of the request.
pub struct Authenticated {
    pub identity: Identity,
    /// A token on the request was the gateway's (verified and consumed).
    pub token_consumed: bool,
}

/// Checks the connection's SVID against the snapshot in force: it outlives its handshake, so
/// expiry, revocation and bundle changes are judged on every request.
pub fn check_svid(
    snapshot: &Snapshot,
    peer: &PeerSvid,
    now: i64,
    detail: &mut Option<String>,
) -> Result<(), Refusal> {
    let svid = &peer.facts;
    if now > svid.not_after_unix {
        return Err(Refusal::CredentialExpired);
    }
    if now < svid.not_before_unix {
        return Err(Refusal::CredentialNotYetValid);
    }
    if let Some(why) = snapshot
        .config
        .revocation
        .check(svid.spiffe_id.as_str(), &svid.serial_hex)
    {
        *detail = Some(why.to_string());
        return Err(Refusal::CredentialRevoked);
    }
    peer.still_trusted(&snapshot.trust).map_err(|why| {
        *detail = Some(why);
        Refusal::CredentialUntrusted
    })
}

/// Verifies a token at `now`: signature and claims (cached), then what the cache cannot
/// know: revocation, and the binding to the connection's certificate.
pub fn check_token(
    snapshot: &Snapshot,
    token: &str,
    peer: Option<&PeerSvid>,
    now: i64,
) -> Result<Arc<VerifiedToken>, TokenFailure> {
    let verified = snapshot.tokens.verify(token, now)?;
    let revocation = &snapshot.config.revocation;
    if let Some(jti) = &verified.jti {
        if revocation.jtis.contains(jti) {
            return Err(TokenFailure::new(
                TokenReason::Revoked,
                format!("jti `{jti}` is revoked"),
            ));
        }
    }
    if let Some(id) = &verified.spiffe_id {
        if revocation.spiffe_ids.contains(id.as_str()) {
            return Err(TokenFailure::new(
                TokenReason::Revoked,
                format!("SPIFFE ID `{id}` is revoked"),
            ));
        }
    }
    match peer {
        Some(peer) => verified.check_binding(&peer.facts)?,
        None if verified.cnf_x5t_s256.is_some() => {
            return Err(TokenFailure::new(
                TokenReason::BindingMismatch,
                "token is bound to a certificate, and the connection presented none",
            ))
        }
        None => {}
    }
    Ok(verified)
}

/// The identity for a request on a route requiring `required`, from the connection's SVID
/// (already checked) and the request's token (`verified`: already checked, or `None`).
pub fn identity_for(
    required: Credentials,
    peer: Option<&PeerSvid>,
    verified: Option<Arc<VerifiedToken>>,
) -> Result<Authenticated, Refusal> {
    let presented = Presented {
        svid: peer.is_some(),
        token: verified.is_some(),
    };
    if !required.admits(presented) {
        let needs_svid = matches!(required, Credentials::Mtls | Credentials::Both);
        return Err(if needs_svid && !presented.svid {
            Refusal::MtlsRequired
        } else if presented.token {
            // Unreachable while `Either` admits any credential; refuse rather than assume.
            Refusal::NoCredential
        } else {
            Refusal::TokenRequired
        });
    }
    let svid = peer.map(|p| p.facts.clone());
    let spiffe_id = svid
        .as_ref()
        .map(|s| s.spiffe_id.clone())
        .or_else(|| verified.as_ref().and_then(|t| t.spiffe_id.clone()));
    Ok(Authenticated {
        token_consumed: verified.is_some(),
        identity: Identity {
            spiffe_id,
            svid,
            token: verified,
        },
    })
}
