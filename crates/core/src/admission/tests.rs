//! Admission without a socket: a config loaded as the gateway loads it, and credentials stated
//! by a fake authenticator that also records what admission asked of it.

use std::cell::Cell;
use std::path::Path;

use super::*;
use crate::config;
use crate::identity::{SpiffeId, VerifiedToken};
use crate::policy::Verdict;

const CONFIG: &str = r#"
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
path_prefix = "/api"
upstream = "backend"
[upstream.backend]
addresses = ["127.0.0.1:9000"]
[policy]
files = ["policy.toml"]
"#;

const POLICY: &str = r#"
[[rule]]
id = "shop-reads"
effect = "allow"
zones = ["shop"]
routes = ["api"]
methods = ["GET"]
paths = ["/api/**"]
"#;

const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";

struct Loaded {
    config: config::GatewayConfig,
    routes: RouteTable,
    policy: Policy,
    _dir: tempfile::TempDir,
}

impl Loaded {
    fn new() -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        zonegate_devkit::devpki::write_dev_pki(&dir.path().join("certs"), "example.org").unwrap();
        write(dir.path(), "gw.toml", CONFIG);
        write(dir.path(), "policy.toml", POLICY);
        let config = config::load(&dir.path().join("gw.toml")).unwrap();
        let routes = RouteTable::new(&config.routes);
        let policy = Policy::compile(config.rules.clone(), 64);
        Loaded {
            config,
            routes,
            policy,
            _dir: dir,
        }
    }

    fn compiled(&self) -> Compiled<'_> {
        Compiled {
            config: &self.config,
            routes: &self.routes,
            policy: &self.policy,
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// Credentials as stated, counting how often admission looked at the token.
struct Stated {
    svid: Option<Arc<SvidFacts>>,
    svid_check: Result<(), Refused>,
    token: Result<Option<Arc<VerifiedToken>>, Refused>,
    token_reads: Cell<u32>,
}

impl Stated {
    fn svid(id: &str) -> Stated {
        Stated {
            svid: Some(Arc::new(SvidFacts::stated(SpiffeId::parse(id).unwrap()))),
            svid_check: Ok(()),
            token: Ok(None),
            token_reads: Cell::new(0),
        }
    }

    fn nothing() -> Stated {
        Stated {
            svid: None,
            svid_check: Ok(()),
            token: Ok(None),
            token_reads: Cell::new(0),
        }
    }
}

impl Authenticator for Stated {
    fn svid(&self) -> Option<&Arc<SvidFacts>> {
        self.svid.as_ref()
    }

    fn check_svid(&self, _: &Compiled<'_>, _: i64) -> Result<(), Refused> {
        self.svid_check.clone()
    }

    fn token(
        &self,
        _: &Compiled<'_>,
        _: Option<&SvidFacts>,
        _: i64,
    ) -> Result<Option<Arc<VerifiedToken>>, Refused> {
        self.token_reads.set(self.token_reads.get() + 1);
        self.token.clone()
    }
}

fn head<'r>(method: &'r str, target: &'r str) -> RequestHead<'r> {
    RequestHead {
        method,
        host: Some("localhost"),
        raw_target: target,
    }
}

#[test]
fn without_any_credential_nothing_about_routes_is_learnt() {
    let loaded = Loaded::new();
    let admission = admit(
        &loaded.compiled(),
        &Stated::nothing(),
        &head("GET", "/api/x"),
        0,
    );
    assert_eq!(admission.refusal(), Some(Refusal::NoCredential));
    assert!(admission.route.is_none() && admission.target.is_none());
    assert!(admission.identity.is_none());
}

#[test]
fn a_refused_certificate_is_still_attributed_to_its_workload_and_zone() {
    let loaded = Loaded::new();
    let mut revoked = Stated::svid(CHECKOUT);
    revoked.svid_check = Err(Refused::new(
        Refusal::CredentialRevoked,
        "revoked".to_string(),
    ));
    let admission = admit(&loaded.compiled(), &revoked, &head("GET", "/api/x"), 0);
    assert_eq!(admission.refusal(), Some(Refusal::CredentialRevoked));
    let identity = admission.identity.as_ref().unwrap();
    assert_eq!(identity.spiffe_id.as_ref().unwrap().as_str(), CHECKOUT);
    assert_eq!(admission.source_zone.as_deref(), Some("shop"));
    assert!(admission.cross_zone);
    assert!(
        admission.route.is_none(),
        "a refused certificate reached routing"
    );
}

#[test]
fn policy_decides_on_the_normalised_path_the_upstream_will_get() {
    let loaded = Loaded::new();
    let checkout = Stated::svid(CHECKOUT);
    let admission = admit(
        &loaded.compiled(),
        &checkout,
        &head("GET", "//api/./a/../b?q=1"),
        0,
    );
    assert!(admission.is_admitted(), "{:?}", admission.refused);
    let target = admission.target.as_ref().unwrap();
    assert_eq!(target.to_request_target(), "/api/b?q=1");
    assert_eq!(&*admission.route.unwrap().name, "api");
    let decision = admission.decision.as_ref().unwrap();
    assert_eq!(decision.verdict, Verdict::Allow);
    assert_eq!(decision.rule.as_deref(), Some("shop-reads"));

    let write = admit(&loaded.compiled(), &checkout, &head("POST", "/api/b"), 0);
    assert_eq!(write.refusal(), Some(Refusal::DefaultDeny));
    let elsewhere = admit(&loaded.compiled(), &checkout, &head("GET", "/other"), 0);
    assert_eq!(elsewhere.refusal(), Some(Refusal::NoRoute));
    assert_eq!(elsewhere.target.as_ref().unwrap().path, "/other");
    let smuggled = admit(
        &loaded.compiled(),
        &checkout,
        &head("GET", "/api/..;/admin"),
        0,
    );
    assert_eq!(smuggled.refusal(), Some(Refusal::BadPath));
    assert!(smuggled.refused.unwrap().detail.is_some());
}

#[test]
fn the_token_is_not_read_where_the_route_does_not_take_tokens() {
    let loaded = Loaded::new();
    let mut checkout = Stated::svid(CHECKOUT);
    // A token that would be refused, if it were read at all.
    checkout.token = Err(Refused::new(Refusal::BadAuthorization, None));
    let admission = admit(&loaded.compiled(), &checkout, &head("GET", "/api/x"), 0);
    assert!(admission.is_admitted(), "{:?}", admission.refused);
    assert_eq!(checkout.token_reads.get(), 0);
}
