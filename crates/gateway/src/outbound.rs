//! The HTTP client of the gateway's own calls out (the OTLP exporter, federation bundle
//! endpoints): reqwest's blocking client on rustls with the gateway's ring provider (no second
//! crypto library), trusting only the roots it is given, never a proxy from the environment.

use std::path::Path;
use std::sync::Arc;

use crate::config::read_certificates;

/// The roots in the PEM file at `path`.
pub(crate) fn roots_from(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A client builder trusting `roots` only; the caller sets its timeout and redirects.
pub(crate) fn client_builder(
    roots: rustls::RootCertStore,
) -> Result<reqwest::blocking::ClientBuilder, String> {
    let tls = tls_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls))
}

/// A client builder whose server certificates `verifier` judges (a SPIFFE ID, not a host
/// name: the https_spiffe profile of bundle endpoints).
pub(crate) fn client_builder_verifying(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<reqwest::blocking::ClientBuilder, String> {
    let tls = tls_builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls))
}

fn tls_builder(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))
}
