//! The rustls client-certificate verifier that admits only valid X.509-SVIDs.
//!
//! Order matters: the leaf's single URI SAN names the trust domain, the chain is verified
//! against that trust domain's bundle alone (validity period included), and then the SVID leaf
//! rules are checked. Any failure fails the handshake; the reason goes to the gateway's log.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tracing::warn;

use super::svid::{inspect_leaf, leaf_spiffe_id};
use super::trust::TrustSource;

/// Told about every refused client certificate, so that refusals can be recorded.
pub trait RefusalObserver: Send + Sync {
    /// `claimed` is the SPIFFE ID the certificate claims: unverified, for investigation only.
    fn refused(&self, reason: &str, claimed: Option<&str>);
}

/// Verifies client certificates as X.509-SVIDs against per-trust-domain bundles.
pub struct SpiffeClientVerifier {
    trust: Arc<dyn TrustSource>,
    algorithms: WebPkiSupportedAlgorithms,
    observer: Option<Arc<dyn RefusalObserver>>,
    mandatory: bool,
}

impl SpiffeClientVerifier {
    pub fn new(trust: Arc<dyn TrustSource>) -> Self {
        SpiffeClientVerifier {
            trust,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            observer: None,
            mandatory: true,
        }
    }

    /// Lets clients without a certificate complete the handshake (they must then prove
    /// themselves with a token). A certificate that is presented is verified all the same.
    pub fn optional(mut self) -> Self {
        self.mandatory = false;
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn RefusalObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn refuse(&self, reason: String, claimed: Option<&str>) -> rustls::Error {
        warn!(
            reason = %reason,
            spiffe_id = claimed.unwrap_or("-"),
            "client certificate refused: not an acceptable X.509-SVID"
        );
        if let Some(observer) = &self.observer {
            observer.refused(&reason, claimed);
        }
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            SvidRefused(reason),
        ))))
    }
}

impl SpiffeClientVerifier {
    /// The client does not hold the key of the certificate it presented.
    fn refuse_signature(&self, cert: &CertificateDer<'_>, e: rustls::Error) -> rustls::Error {
        let claimed = leaf_spiffe_id(cert).ok();
        self.refuse(
            format!("handshake signature does not verify with the certificate's key: {e}"),
            claimed.as_ref().map(|id| id.as_str()),
        )
    }
}

/// The reason a client certificate was refused, carried inside the rustls error.
#[derive(Debug)]
pub struct SvidRefused(pub String);

impl fmt::Display for SvidRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SvidRefused {}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("trust", &self.trust)
            .finish()
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Workloads hold one SVID each; hints would only advertise the bundles' names.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = leaf_spiffe_id(end_entity).map_err(|e| self.refuse(e.to_string(), None))?;
        let store = self.trust.trust_store();
        let bundle = store.bundle(id.trust_domain()).ok_or_else(|| {
            self.refuse(
                format!("no trust bundle for trust domain `{}`", id.trust_domain()),
                Some(id.as_str()),
            )
        })?;
        bundle
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| {
                self.refuse(
                    format!(
                        "chain does not verify against the `{}` bundle: {e}",
                        bundle.trust_domain
                    ),
                    Some(id.as_str()),
                )
            })?;
        inspect_leaf(end_entity).map_err(|e| self.refuse(e.to_string(), Some(id.as_str())))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
            .map_err(|e| self.refuse_signature(cert, e))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
            .map_err(|e| self.refuse_signature(cert, e))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
