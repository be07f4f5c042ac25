//! `[spiffe]`: the SPIFFE Workload API as a source of the gateway's identity material, and
//! that material as one more input of a config load.
//!
//! The agent's material goes through the same load as the files do: the gateway's SVID
//! stands where `[tls]` would, each trust domain's X.509 roots where its `bundle` file would,
//! and a JWT-SVID issuer's keys where its `keys` file would. So a rotation is validated and
//! applied exactly like an edited file, and what a snapshot trusts is said in one place.

use std::collections::BTreeMap;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::error::ConfigErrors;

/// The environment variable that names the Workload API endpoint (SPIFFE Workload Endpoint
/// specification, section 4).
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpiffe {
    /// `unix:///path` or `tcp://IP:port`; absent: `SPIFFE_ENDPOINT_SOCKET`.
    #[serde(default)]
    pub workload_api: Option<String>,
}

/// Where the gateway's SVID and bundles come from when not from files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpiffeSource {
    /// The Workload API endpoint address, as validated (`unix:///...` or `tcp://IP:port`).
    pub workload_api: String,
}

/// What the Workload API delivered: the gateway's default X.509-SVID, the X.509 roots of
/// every trust domain it is told to trust (its own and federated ones), and the JWT
/// authorities of each trust domain.
#[derive(Debug, Default)]
pub struct WorkloadMaterial {
    pub svid: Option<WorkloadSvid>,
    pub x509_bundles: BTreeMap<String, Vec<CertificateDer<'static>>>,
    /// Per trust domain, its JWT authorities as a JWKS document (`{"keys": [...]}`).
    pub jwt_bundles: BTreeMap<String, Vec<u8>>,
}

/// The gateway's own X.509-SVID: the leaf first, then intermediates.
#[derive(Debug)]
pub struct WorkloadSvid {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl WorkloadMaterial {
    /// SHA-256 over everything delivered, so that a config load sees new material as a change.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        if let Some(svid) = &self.svid {
            for cert in &svid.chain {
                ctx.update(b"svid\0");
                ctx.update(cert);
            }
            ctx.update(svid.key.secret_der());
        }
        for (domain, roots) in &self.x509_bundles {
            for root in roots {
                ctx.update(b"x509\0");
                ctx.update(domain.as_bytes());
                ctx.update(root);
            }
        }
        for (domain, jwks) in &self.jwt_bundles {
            ctx.update(b"jwt\0");
            ctx.update(domain.as_bytes());
            ctx.update(jwks);
        }
        ctx.finish().as_ref().to_vec()
    }
}

/// Validates `[spiffe]`, reading `SPIFFE_ENDPOINT_SOCKET` when no endpoint is written.
pub(super) fn convert(
    file: &Path,
    raw: Option<&RawSpiffe>,
    errors: &mut ConfigErrors,
) -> Option<SpiffeSource> {
    let raw = raw?;
    let (address, key) = match &raw.workload_api {
        Some(address) => (address.clone(), "spiffe.workload_api"),
        None => match std::env::var(ENDPOINT_ENV) {
            Ok(address) => (address, "spiffe.workload_api"),
            Err(_) => {
                errors.push(
                    file,
                    "spiffe.workload_api",
                    format!("set the Workload API endpoint here or in {ENDPOINT_ENV}"),
                );
                return None;
            }
        },
    };
    match validate_endpoint(&address) {
        Ok(()) => Some(SpiffeSource {
            workload_api: address,
        }),
        Err(reason) => {
            errors.push(file, key, format!("`{address}`: {reason}"));
            None
        }
    }
}

/// The SPIFFE Workload Endpoint specification's address forms: `unix:` with an absolute path
/// and nothing else, or `tcp:` with an IP address (not a name) and a port.
pub fn validate_endpoint(address: &str) -> Result<(), String> {
    if let Some(rest) = address.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if rest.starts_with("//") && !path.starts_with('/') {
            return Err("a unix address has no authority: unix:///path/to/socket".into());
        }
        if !path.starts_with('/') {
            return Err("the socket path must be absolute".into());
        }
        if path.contains(['?', '#']) {
            return Err("a unix address has no query or fragment".into());
        }
        return Ok(());
    }
    if let Some(rest) = address.strip_prefix("tcp:") {
        let authority = rest.strip_prefix("//").unwrap_or(rest);
        return match authority.parse::<std::net::SocketAddr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("a tcp address is tcp://IP:port (an IP address, not a name)".into()),
        };
    }
    Err("the address must start with unix: or tcp:".into())
}

#[cfg(test)]
mod tests {
    use super::validate_endpoint;

    #[test]
    fn endpoint_addresses_follow_the_workload_endpoint_spec() {
        for ok in [
            "unix:///run/spire/agent.sock",
            "unix:/run/spire/agent.sock",
            "tcp://127.0.0.1:8081",
            "tcp://[::1]:8081",
        ] {
            assert_eq!(validate_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "unix://host/run/agent.sock",
            "unix:relative.sock",
            "unix:///run/agent.sock?x=1",
            "tcp://agent.local:8081",
            "tcp://127.0.0.1",
            "/run/agent.sock",
            "http://127.0.0.1:8081",
        ] {
            assert!(validate_endpoint(bad).is_err(), "{bad} accepted");
        }
    }
}
