//! Per-connection identity: the peer SVID is parsed once, right after the handshake, and every
//! request on the connection (HTTP/1.1 keep-alive or HTTP/2 streams) reuses it.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use rustls::pki_types::{CertificateDer, UnixTime};
use tracing::warn;

use crate::identity::svid::{inspect_leaf, SvidFacts};
use crate::identity::{TrustSource, TrustStore};

/// The verified peer SVID of one connection, stored in the connection's TLS digest.
#[derive(Debug)]
pub struct PeerSvid {
    pub facts: Arc<SvidFacts>,
    /// Leaf first, as presented: kept to verify again when the trust bundles change.
    chain: Vec<CertificateDer<'static>>,
    /// The trust epoch the chain last verified under.
    trust_epoch: AtomicU64,
}

impl PeerSvid {
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
}

/// The handshake-complete hook that records [`PeerSvid`].
#[derive(Debug)]
pub struct PeerSvidRecorder {
    pub trust: Arc<dyn TrustSource>,
}

#[async_trait]
impl TlsAccept for PeerSvidRecorder {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?.to_vec();
        // The verifier admitted this chain microseconds ago. A bundle change landing in exactly
        // that window is not seen by this connection until the next bundle change: the price
        // of not verifying every chain twice.
        let epoch = self.trust.trust_store().epoch;
        // The verifier already admitted this leaf; a failure here would mean the two disagree,
        // and the request path then refuses the connection's requests as unauthenticated.
        match inspect_leaf(chain.first()?) {
            Ok(facts) => Some(Arc::new(PeerSvid {
                facts: Arc::new(facts),
                chain,
                trust_epoch: AtomicU64::new(epoch),
            })),
            Err(e) => {
                warn!(error = %e, "verified client certificate could not be read as an SVID");
                None
            }
        }
    }
}
