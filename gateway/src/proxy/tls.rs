//! Per-connection identity: the peer SVID is parsed once, right after the handshake, and every
//! request on the connection (HTTP/1.1 keep-alive or HTTP/2 streams) reuses it.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use tracing::warn;

use crate::identity::svid::{inspect_leaf, SvidFacts};

/// The verified peer SVID of one connection, stored in the connection's TLS digest.
#[derive(Debug)]
pub struct PeerSvid(pub Arc<SvidFacts>);

/// The handshake-complete hook that records [`PeerSvid`].
#[derive(Debug, Default)]
pub struct PeerSvidRecorder;

#[async_trait]
impl TlsAccept for PeerSvidRecorder {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let leaf = tls.peer_certificate_der()?;
        // The verifier already admitted this leaf; a failure here would mean the two disagree,
        // and the request path then refuses the connection's requests as unauthenticated.
        match inspect_leaf(leaf) {
            Ok(facts) => Some(Arc::new(PeerSvid(Arc::new(facts)))),
            Err(e) => {
                warn!(error = %e, "verified client certificate could not be read as an SVID");
                None
            }
        }
    }
}
