//! Authentication of one request: the connection's X.509-SVID, the request's bearer token, the
//! binding between the two, and the route's credential requirement. The caller records the
//! [`crate::identity::Identity`] as each credential verifies.
//!
//! Order is chosen to fail closed and reveal little: a request with no credential at all is
//! refused before its route is looked up; a request without a certificate must prove itself
//! with a token before routing too, so that unauthenticated clients cannot map the routes. On
//! a connection with an SVID, `Authorization` is the gateway's to read only where the route
//! accepts tokens: elsewhere it belongs to the upstream and is passed through unread.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use pingora_http::RequestHeader;

use super::answer::Refusal;
use super::tls::PeerSvid;
use crate::identity::{TokenFailure, TokenReason, VerifiedToken};
use crate::policy::{Credentials, Presented};
use crate::reload::Snapshot;

/// What the `Authorization` header holds.
pub enum Bearer<'r> {
    Absent,
    Token(&'r str),
    /// Another scheme: not the gateway's.
    OtherScheme,
}

/// Reads `Authorization`, only where it is the gateway's: on a connection without a
/// certificate, or on a route that accepts tokens. More than one such header, a value that is
/// not visible ASCII, or a `Bearer` scheme not followed by one or more spaces and a token68, is
/// a malformed request (RFC 6750 `invalid_request`): never a guess at what was meant, and
/// never something to ignore and forward (`Bearer\t<token>` would otherwise skip the binding
/// check here and be honoured by a lenient upstream).
pub fn bearer(req: &RequestHeader) -> Result<Bearer<'_>, Refusal> {
    let mut values = req.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Bearer::Absent);
    };
    if values.next().is_some() {
        return Err(Refusal::BadAuthorization);
    }
    let value = value.to_str().map_err(|_| Refusal::BadAuthorization)?;
    let scheme_end = value.find([' ', '\t']).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Bearer::OtherScheme);
    }
    // RFC 7235 2.1: auth-scheme 1*SP token68.
    let token = rest.trim_start_matches(' ');
    if token.len() == rest.len() || !is_token68(token) {
        return Err(Refusal::BadAuthorization);
    }
    Ok(Bearer::Token(token))
}

/// RFC 6750 2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
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

/// Whether the credentials a request presented meet its route's requirement.
pub fn require(required: Credentials, presented: Presented) -> Result<(), Refusal> {
    if required.admits(presented) {
        return Ok(());
    }
    let needs_svid = matches!(required, Credentials::Mtls | Credentials::Both);
    Err(if needs_svid && !presented.svid {
        Refusal::MtlsRequired
    } else if presented.token {
        // Unreachable while `Either` admits any credential; refuse rather than assume.
        Refusal::NoCredential
    } else {
        Refusal::TokenRequired
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(values: &[&str]) -> Result<Option<String>, Refusal> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for v in values {
            req.append_header(AUTHORIZATION, *v).unwrap();
        }
        bearer(&req).map(|b| match b {
            Bearer::Absent => None,
            Bearer::OtherScheme => Some("(other)".into()),
            Bearer::Token(t) => Some(t.to_string()),
        })
    }

    #[test]
    fn reads_exactly_one_well_formed_bearer_token() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(
            read(&["Bearer abc.def-_~+/=="]),
            Ok(Some("abc.def-_~+/==".into()))
        );
        assert_eq!(read(&["bearer   abc"]), Ok(Some("abc".into())));
        assert_eq!(read(&["Basic dXNlcjpwdw=="]), Ok(Some("(other)".into())));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer\tabc",
            "Bearer a b",
            "Bearer \"abc\"",
            "Bearer a=b",
            "Bearer ==",
        ] {
            assert_eq!(read(&[bad]), Err(Refusal::BadAuthorization), "{bad:?}");
        }
        assert_eq!(
            read(&["Bearer a", "Bearer a"]),
            Err(Refusal::BadAuthorization)
        );
    }
}
