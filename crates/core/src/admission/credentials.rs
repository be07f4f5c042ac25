//! The credentials a request can present, and the checks each must pass at request time: the
//! connection's X.509-SVID (verified at the handshake, judged again against the snapshot in
//! force), the request's bearer token, the binding between the two, and the route's
//! requirement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::refusal::Refusal;
use super::Compiled;
use crate::identity::svid::{inspect_leaf, SvidError};
use crate::identity::{
    SvidFacts, TokenFailure, TokenReason, TokenVerifier, TrustStore, VerifiedToken,
};
use crate::policy::{Credentials, Presented};

/// A refusal with the detail the identity event records (never shown to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    pub detail: Option<String>,
    /// For a limit: whole seconds until a retry can succeed (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl Refused {
    pub fn new(refusal: Refusal, detail: impl Into<Option<String>>) -> Refused {
        Refused {
            refusal,
            detail: detail.into(),
            retry_after_s: None,
        }
    }
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused::new(refusal, None)
    }
}

impl From<TokenFailure> for Refused {
    fn from(failure: TokenFailure) -> Refused {
        Refused::new(Refusal::Token(failure.reason), failure.detail)
    }
}

/// Where admission gets the request's credentials from: the live connection and headers, or
/// the facts `policy explain` is given. Admission decides when each is consulted.
pub trait Authenticator {
    /// The connection's X.509-SVID, when it presented one.
    fn svid(&self) -> Option<&Arc<SvidFacts>>;
    /// Judges the connection's SVID against the snapshot in force.
    fn check_svid(&self, compiled: &Compiled<'_>, now: i64) -> Result<(), Refused>;
    /// The request's token, verified and (when `svid` is given) bound to it; `Ok(None)` when
    /// the request carries none.
    fn token(
        &self,
        compiled: &Compiled<'_>,
        svid: Option<&SvidFacts>,
        now: i64,
    ) -> Result<Option<Arc<VerifiedToken>>, Refused>;
}

/// The verified peer SVID of one connection, read once after the handshake and shared by
/// every request on it (HTTP/1.1 keep-alive or HTTP/2 streams).
#[derive(Debug)]
pub struct PeerSvid {
    pub facts: Arc<SvidFacts>,
    /// Leaf first, as presented: kept to verify again when the trust bundles change.
    chain: Vec<CertificateDer<'static>>,
    /// The trust epoch the chain last verified under.
    trust_epoch: AtomicU64,
}

impl PeerSvid {
    /// Reads the SVID of a chain the handshake verified under trust epoch `epoch`.
    pub fn new(chain: Vec<CertificateDer<'static>>, epoch: u64) -> Result<PeerSvid, SvidError> {
        let leaf = chain
            .first()
            .ok_or_else(|| SvidError::Malformed("no certificate".into()))?;
        let facts = inspect_leaf(leaf)?;
        Ok(PeerSvid {
            facts: Arc::new(facts),
            chain,
            trust_epoch: AtomicU64::new(epoch),
        })
    }

    /// Whether the chain still verifies under `trust`. Verifies again only when the bundles
    /// changed since the last check, so the cost is once per connection per bundle change.
    pub fn still_trusted(&self, trust: &TrustStore) -> Result<(), String> {
        if self.trust_epoch.load(Ordering::Acquire) == trust.epoch {
            return Ok(());
        }
        let (leaf, intermediates) = self.chain.split_first().ok_or("no certificate")?;
        let td = self.facts.spiffe_id.trust_domain();
        let bundle = trust
            .bundle(td)
            .ok_or_else(|| format!("trust domain `{td}` is no longer trusted"))?;
        bundle
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| format!("chain no longer verifies against the `{td}` bundle: {e}"))?;
        self.trust_epoch.store(trust.epoch, Ordering::Release);
        Ok(())
    }

    /// Judges the SVID at `now` against the snapshot in force: it outlives its handshake, so
    /// expiry, revocation and bundle changes are checked on every request.
    pub fn check(
        &self,
        compiled: &Compiled<'_>,
        trust: &TrustStore,
        now: i64,
    ) -> Result<(), Refused> {
        check_svid_facts(compiled, &self.facts, now)?;
        self.still_trusted(trust)
            .map_err(|why| Refused::new(Refusal::CredentialUntrusted, why))
    }
}

/// The time and revocation checks of an SVID (the chain's trust is the caller's).
pub fn check_svid_facts(
    compiled: &Compiled<'_>,
    svid: &SvidFacts,
    now: i64,
) -> Result<(), Refused> {
    if now > svid.not_after_unix {
        return Err(Refusal::CredentialExpired.into());
    }
    if now < svid.not_before_unix {
        return Err(Refusal::CredentialNotYetValid.into());
    }
    if let Some(why) = compiled
        .config
        .revocation
        .check(svid.spiffe_id.as_str(), &svid.serial_hex)
    {
        return Err(Refused::new(Refusal::CredentialRevoked, why.to_string()));
    }
    Ok(())
}

/// Verifies a token at `now`: signature and claims (cached), then what the cache cannot
/// know: revocation, and the binding to the connection's certificate.
pub fn check_token(
    compiled: &Compiled<'_>,
    tokens: &TokenVerifier,
    token: &str,
    svid: Option<&SvidFacts>,
    now: i64,
) -> Result<Arc<VerifiedToken>, TokenFailure> {
    let verified = tokens.verify(token, now)?;
    check_verified_token(compiled, &verified, svid)?;
    Ok(verified)
}

/// Revocation and binding of a token whose signature and claims are verified.
pub fn check_verified_token(
    compiled: &Compiled<'_>,
    verified: &VerifiedToken,
    svid: Option<&SvidFacts>,
) -> Result<(), TokenFailure> {
    let revocation = &compiled.config.revocation;
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
    match svid {
        Some(svid) => verified.check_binding(svid),
        None if verified.cnf_x5t_s256.is_some() => Err(TokenFailure::new(
            TokenReason::BindingMismatch,
            "token is bound to a certificate, and the connection presented none",
        )),
        None => Ok(()),
    }
}

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'r> {
    Absent,
    Token(&'r str),
    /// Another scheme: not the gateway's.
    OtherScheme,
}

/// Reads `Authorization` (every value the request carries), only where it is the gateway's:
/// on a connection without a certificate, or on a route that accepts tokens. More than one
/// such header, a value that is not visible ASCII, or a `Bearer` scheme not followed by one or
/// more spaces and a token68, is a malformed request (RFC 6750 `invalid_request`): never a
/// guess at what was meant, and never something to ignore and forward (`Bearer\t<token>`
/// would otherwise skip the binding check here and be honoured by a lenient upstream).
pub fn bearer<'r>(mut values: impl Iterator<Item = &'r [u8]>) -> Result<Bearer<'r>, Refusal> {
    let Some(value) = values.next() else {
        return Ok(Bearer::Absent);
    };
    if values.next().is_some() {
        return Err(Refusal::BadAuthorization);
    }
    if !value
        .iter()
        .all(|b| (b' '..=b'~').contains(b) || *b == b'\t')
    {
        return Err(Refusal::BadAuthorization);
    }
    let value = std::str::from_utf8(value).map_err(|_| Refusal::BadAuthorization)?;
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

/// Whether the credentials a request presented meet its route's requirement.
pub fn require(route: &str, required: Credentials, presented: Presented) -> Result<(), Refused> {
    if required.admits(presented) {
        return Ok(());
    }
    let needs_svid = matches!(required, Credentials::Mtls | Credentials::Both);
    let (refusal, what) = if needs_svid && !presented.svid {
        (Refusal::MtlsRequired, "an X.509-SVID on the connection")
    } else {
        (Refusal::TokenRequired, "a token on the request")
    };
    Err(Refused::new(
        refusal,
        format!("route `{route}` requires {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(values: &[&str]) -> Result<Option<String>, Refusal> {
        bearer(values.iter().map(|v| v.as_bytes())).map(|b| match b {
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
            "Bearer \u{e9}t\u{e9}",
        ] {
            assert_eq!(read(&[bad]), Err(Refusal::BadAuthorization), "{bad:?}");
        }
        assert_eq!(
            read(&["Bearer a", "Bearer a"]),
            Err(Refusal::BadAuthorization)
        );
    }
}
