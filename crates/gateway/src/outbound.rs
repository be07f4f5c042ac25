//! The HTTP client of the gateway's own calls out (the OTLP exporter, federation bundle
//! endpoints, token issuers' keys): reqwest's blocking client on rustls with the gateway's ring
//! provider (no second crypto library), trusting only the roots it is given, never a proxy
//! from the environment.

use std::io::Read;
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

/// The roots of a web (https_web) peer: the PEM file at `ca`, else the system's.
pub(crate) fn web_roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    if let Some(ca) = ca {
        return roots_from(ca);
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no system root certificates (set endpoint_ca)".into());
    }
    Ok(roots)
}

/// A response's body, refused past `max` bytes. At most one byte past the bound is read, so a
/// body without a length cannot grow unbounded.
pub(crate) fn read_bounded(
    response: reqwest::blocking::Response,
    max: u64,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(format!("a body over {max} bytes"));
    }
    let mut body = Vec::new();
    response
        .take(max + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    if body.len() as u64 > max {
        return Err(format!("a body over {max} bytes"));
    }
    Ok(body)
}
