//! Who is calling: SPIFFE IDs, X.509-SVID verification against per-trust-domain bundles,
//! JWT-SVID and bearer-token verification, and the one [`Identity`] type every way of
//! authenticating produces. Knows nothing of routes or policy.

pub mod bundle;
pub mod pattern;
pub mod revocation;
pub mod spiffe;
pub mod svid;
pub mod token;
pub mod trust;
pub mod upstream;
pub mod verifier;

pub use pattern::IdPattern;
pub use revocation::RevocationList;
pub use spiffe::SpiffeId;
pub use svid::SvidFacts;
pub use token::{IssuerKind, IssuerSpec, TokenFailure, TokenReason, TokenVerifier, VerifiedToken};
pub use trust::{TrustSource, TrustStore};
pub use upstream::UpstreamIdVerifier;
pub use verifier::{RefusalObserver, SpiffeClientVerifier};

use std::sync::Arc;

/// A verified workload identity. Policy only ever sees this type, whatever credential proved it:
/// an X.509-SVID on the connection, a token on the request, or both (bound to each other).
#[derive(Clone, Debug)]
pub struct Identity {
    /// The workload's SPIFFE ID: the SVID's, else the token's `sub` when its issuer speaks
    /// for a trust domain. `None` for a bearer token from an issuer that does not.
    pub spiffe_id: Option<SpiffeId>,
    /// The X.509-SVID presented on this connection, parsed once after the handshake.
    pub svid: Option<Arc<SvidFacts>>,
    /// This request's verified token.
    pub token: Option<Arc<VerifiedToken>>,
}

impl Identity {
    /// The credential kinds that proved this identity, as identity events name them.
    pub fn credential_kind(&self) -> &'static str {
        match (&self.svid, self.token.as_deref().map(|t| &t.issuer.kind)) {
            (Some(_), None) => "x509-svid",
            (None, Some(IssuerKind::JwtSvid)) => "jwt-svid",
            (None, Some(IssuerKind::Jwt)) => "jwt",
            (Some(_), Some(IssuerKind::JwtSvid)) => "x509-svid+jwt-svid",
            (Some(_), Some(IssuerKind::Jwt)) => "x509-svid+jwt",
            (None, None) => "none",
        }
    }
}
