use std::path::Path;

use super::*;
use crate::devpki;

/// A directory holding a dev PKI, for configs to reference.
fn pki_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    devpki::write_dev_pki(&dir.path().join("certs"), "example.org").unwrap();
    dir
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
}

const GOOD: &str = r#"
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
[[route]]
name = "api"
path_prefix = "/api/"
upstream = "backend"
[upstream.backend]
addresses = ["127.0.0.1:9000"]
[policy]
files = ["policy"]
"#;

const GOOD_POLICY: &str = r#"
[[rule]]
id = "allow-shop"
effect = "allow"
zones = ["shop"]
routes = ["api"]
methods = ["get"]
paths = ["/api/**"]
"#;

#[test]
fn loads_a_good_config() {
    let dir = pki_dir();
    let path = write(dir.path(), "gw.toml", GOOD);
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    let config = load(&path).unwrap();
    assert_eq!(config.zone, "payments");
    assert_eq!(config.routes[0].path_prefix, "/api");
    assert_eq!(config.rules.len(), 1);
    assert_eq!(config.rules[0].methods, vec!["GET".to_string()]);
    assert_eq!(
        config.tls.spiffe_id.as_ref().map(|id| id.as_str()),
        Some("spiffe://example.org/ns/payments/sa/zonegate")
    );
    let shop = SpiffeId::parse("spiffe://example.org/ns/shop/sa/cart").unwrap();
    let other = SpiffeId::parse("spiffe://example.org/ns/data/sa/etl").unwrap();
    assert_eq!(config.zone_of(&shop), "shop");
    assert_eq!(config.zone_of(&other), UNKNOWN_ZONE);
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let dir = pki_dir();
    let path = write(
        dir.path(),
        "gw.toml",
        &GOOD.replace("[policy]", "[policy]\nfilez = []"),
    );
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!(e.file, path);
    assert_eq!(e.key, "filez");
    assert!(e.line.is_some());
    assert!(e.reason.contains("unknown field"), "{}", e.reason);
}

#[test]
fn reports_every_error_at_once() {
    let dir = pki_dir();
    let bad = GOOD
        .replace("127.0.0.1:8443", "localhost")
        .replace("certs/ca.crt", "certs/missing.crt")
        .replace("spiffe://example.org/ns/shop/*", "spiffe://Example.org/*")
        .replace("upstream = \"backend\"", "upstream = \"nowhere\"");
    let path = write(dir.path(), "gw.toml", &bad);
    write(
        dir.path(),
        "policy/a.toml",
        &GOOD_POLICY
            .replace("\"allow\"", "\"permit\"")
            .replace("/api/**", "/api/a**b"),
    );
    let errors = load(&path).unwrap_err();
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    for want in [
        "listener[0].address",
        "trust_domain.\"example.org\".bundle",
        "zone_map[0].identities[0]",
        "route[0].upstream",
        "rule[0].effect",
        "rule[0].paths[0]",
    ] {
        assert!(keys.contains(&want), "missing {want} in {errors}");
    }
    let policy_error = errors.0.iter().find(|e| e.key == "rule[0].effect").unwrap();
    assert!(policy_error.file.ends_with("policy/a.toml"));
}

#[test]
fn duplicate_rule_ids_and_unknown_routes_are_refused() {
    let dir = pki_dir();
    let path = write(dir.path(), "gw.toml", GOOD);
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    write(
        dir.path(),
        "policy/b.toml",
        &GOOD_POLICY.replace("[\"api\"]", "[\"ghost\"]"),
    );
    let errors = load(&path).unwrap_err().to_string();
    assert!(
        errors.contains("duplicate rule id `allow-shop`"),
        "{errors}"
    );
    assert!(errors.contains("route `ghost`"), "{errors}");
}

#[test]
fn tls_upstream_requires_a_ca() {
    let dir = pki_dir();
    let path = write(
        dir.path(),
        "gw.toml",
        &GOOD.replace(
            "addresses = [\"127.0.0.1:9000\"]",
            "addresses = [\"127.0.0.1:9000\"]\ntls = \"mtls\"",
        ),
    );
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.0[0].key, "upstream.backend.ca");
}
