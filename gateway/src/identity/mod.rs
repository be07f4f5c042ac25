//! Who is calling: SPIFFE IDs, X.509-SVID verification against per-trust-domain bundles, and
//! the one [`Identity`] type every way of authenticating produces. Knows nothing of routes or
//! policy.

pub mod pattern;
pub mod revocation;
pub mod spiffe;
pub mod svid;
pub mod trust;
pub mod verifier;

pub use pattern::IdPattern;
pub use revocation::RevocationList;
pub use spiffe::SpiffeId;
pub use svid::SvidFacts;
pub use trust::{TrustSource, TrustStore};
pub use verifier::{RefusalObserver, SpiffeClientVerifier};

use std::sync::Arc;

/// A verified workload identity. Policy only ever sees this type, whatever credential proved it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub spiffe_id: SpiffeId,
    pub credential: Credential,
}

/// The credential that proved an [`Identity`], with the facts events and upstream headers need.
#[derive(Clone, Debug)]
pub enum Credential {
    /// The X.509-SVID presented on this connection, parsed once after the handshake.
    X509Svid(Arc<SvidFacts>),
}

impl Credential {
    /// The name of the credential kind as it appears in identity events.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::X509Svid(_) => "x509-svid",
        }
    }
}
