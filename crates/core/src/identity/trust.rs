//! Trust bundles: one CA set per SPIFFE trust domain (federation), each with its own verifier.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// The verifier for one trust domain's bundle.
pub struct TrustBundle {
    pub trust_domain: String,
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Root certificates in the bundle, kept for status and hashing.
    pub roots: usize,
}

/// Every trust domain this gateway accepts SVIDs from, keyed by trust domain name.
///
/// An SVID is chained only to the bundle of the trust domain in its own SPIFFE ID: a CA of
/// `partner.org` can never vouch for `spiffe://example.org/...`.
#[derive(Default)]
pub struct TrustStore {
    bundles: HashMap<String, TrustBundle>,
    /// Changes whenever the bundles change, so connections verified under another epoch know
    /// to verify their chain again.
    pub epoch: u64,
}

/// Why a trust bundle could not be built.
#[derive(Debug)]
pub struct BundleError(pub String);

impl TrustStore {
    /// An empty store for bundles of trust epoch `epoch`.
    pub fn new(epoch: u64) -> TrustStore {
        TrustStore {
            bundles: HashMap::new(),
            epoch,
        }
    }

    /// Adds the bundle of `trust_domain` from its root certificates (DER).
    pub fn add_bundle(
        &mut self,
        trust_domain: &str,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<(), BundleError> {
        if roots.is_empty() {
            return Err(BundleError("bundle holds no certificate".into()));
        }
        let count = roots.len();
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root)
                .map_err(|e| BundleError(format!("bundle certificate refused: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| BundleError(format!("cannot build verifier: {e}")))?;
        self.bundles.insert(
            trust_domain.to_string(),
            TrustBundle {
                trust_domain: trust_domain.to_string(),
                verifier,
                roots: count,
            },
        );
        Ok(())
    }

    pub fn bundle(&self, trust_domain: &str) -> Option<&TrustBundle> {
        self.bundles.get(trust_domain)
    }

    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.bundles.keys().map(String::as_str)
    }
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut domains: Vec<_> = self.trust_domains().collect();
        domains.sort_unstable();
        f.debug_struct("TrustStore")
            .field("trust_domains", &domains)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// Where the handshake verifier reads the trust bundles currently in force, so that new
/// bundles apply to new handshakes without rebuilding the listener.
pub trait TrustSource: Send + Sync + fmt::Debug {
    fn trust_store(&self) -> Arc<TrustStore>;
}

/// A fixed set of bundles, for tools and tests that do not reload.
#[derive(Debug)]
pub struct FixedTrust(pub Arc<TrustStore>);

impl TrustSource for FixedTrust {
    fn trust_store(&self) -> Arc<TrustStore> {
        self.0.clone()
    }
}
