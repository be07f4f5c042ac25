//! Test support: a real gateway config (dev PKI minted into a temporary directory, loaded by
//! `config::load`) around a given zone map, routes and policy.

use std::path::Path;

use super::load::{self, Loaded};

/// The zone map and routes most unit tests use: zones `shop` and `payments`; routes
/// `payments-api` (`/payments`), `ledger-grpc` (`/ledger.v1.Ledger`) and `admin-api` (host
/// `admin.internal`, `/payments/admin`).
pub(crate) const CONFIG: &str = r#"
zone = "payments"
[[listener]]
address = "127.0.0.1:8443"
[tls]
cert = "certs/gateway.crt"
key = "certs/gateway.key"
[trust_domain."example.org"]
bundle = "certs/ca.crt"
[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]
[[zone_map]]
zone = "payments"
identities = ["spiffe://example.org/ns/payments/*"]
[[route]]
name = "payments-api"
path_prefix = "/payments"
upstream = "u"
[[route]]
name = "ledger-grpc"
path_prefix = "/ledger.v1.Ledger"
upstream = "u"
[[route]]
name = "admin-api"
hosts = ["admin.internal"]
path_prefix = "/payments/admin"
upstream = "u"
[upstream.u]
addresses = ["127.0.0.1:9001"]
[policy]
files = ["policy.toml"]
[events]
sink = "off"
"#;

/// A loaded gateway and the directory its files live in.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub loaded: Loaded,
}

impl Fixture {
    /// The unit tests' config ([`CONFIG`]) with `policy`.
    pub(crate) fn new(policy: &str) -> Fixture {
        Fixture::with_config(CONFIG, policy)
    }

    pub(crate) fn with_config(config: &str, policy: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        zonegate_devkit::devpki::write_dev_pki(&dir.path().join("certs"), "example.org")
            .expect("dev PKI");
        std::fs::write(dir.path().join("policy.toml"), policy).expect("write policy");
        std::fs::write(dir.path().join("gateway.toml"), config).expect("write config");
        let loaded = open(&dir.path().join("gateway.toml"));
        Fixture { dir, loaded }
    }

    /// Another policy file in the same directory, loaded as an override.
    pub(crate) fn with_policy(&self, name: &str, policy: &str) -> Loaded {
        let path = self.dir.path().join(name);
        std::fs::write(&path, policy).expect("write policy");
        match load::open(&self.dir.path().join("gateway.toml"), Some(&[path])) {
            Ok(l) => l,
            Err(e) => panic!("policy refused:\n{e}"),
        }
    }
}

fn open(path: &Path) -> Loaded {
    match load::open(path, None) {
        Ok(l) => l,
        Err(e) => panic!("test config refused:\n{e}"),
    }
}
