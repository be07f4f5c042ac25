//! The upstream's identity: an mTLS upstream proves who it is with its X.509-SVID, and the
//! pool says which SPIFFE IDs it may be. As the SPIFFE X.509-SVID spec has it for SPIFFE
//! authentication, the chain is verified against the pool's CA and the SPIFFE ID is matched
//! instead of a DNS name (an SVID need not name any host).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::pattern::IdPattern;
use super::svid::leaf_spiffe_id;

/// Verifies an upstream's certificate chain against `roots` for server authentication, and its
/// SPIFFE ID against the patterns the pool allows.
#[derive(Debug)]
pub struct UpstreamIdVerifier {
    roots: Arc<RootCertStore>,
    allowed: Vec<IdPattern>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl UpstreamIdVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        allowed: Vec<IdPattern>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> UpstreamIdVerifier {
        UpstreamIdVerifier {
            roots,
            allowed,
            algorithms,
        }
    }

    fn allowed_text(&self) -> String {
        self.allowed
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ServerCertVerifier for UpstreamIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let id = leaf_spiffe_id(end_entity).map_err(|e| {
            rustls::Error::General(format!(
                "the upstream's certificate is not an X.509-SVID: {e}"
            ))
        })?;
        if !self.allowed.iter().any(|p| p.matches(&id)) {
            return Err(rustls::Error::General(format!(
                "the upstream presented `{id}`, which is not a SPIFFE ID its pool allows ({})",
                self.allowed_text()
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
