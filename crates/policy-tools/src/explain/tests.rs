use super::*;
use crate::testing::Fixture;

const POLICY: &str = r#"
[[rule]]
id = "checkout-charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/charge", "/payments/charges/**"]

[[rule]]
id = "shop-no-refunds"
effect = "deny"
mode = "audit"
zones = ["shop"]
paths = ["/payments/charges/*/refund"]

[[rule]]
id = "payments-read"
effect = "allow"
zones = ["payments"]
methods = ["GET"]
paths = ["/payments/**"]

[[rule]]
id = "no-admin"
effect = "deny"
paths = ["/payments/admin", "/payments/admin/**"]

[[rule]]
id = "ledger"
effect = "allow"
routes = ["ledger-grpc"]
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
"#;

const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
const LEDGER: &str = "spiffe://example.org/ns/payments/sa/ledger";

fn ask(f: &Fixture, id: &str, method: &str, host: Option<&str>, target: &str) -> Explanation {
    let args = ExplainArgs {
        config: f.dir.path().join("gateway.toml"),
        policy: Vec::new(),
        spiffe_id: Some(id.to_string()),
        issuer: None,
        subject: None,
        claims: Vec::new(),
        token_only: false,
        method: method.to_string(),
        host: host.map(str::to_string),
        json: false,
        target: target.to_string(),
    };
    explain(&f.loaded, &query(&args).unwrap())
}

#[test]
fn the_deciding_rule_the_audit_rule_and_why_the_others_did_not_match() {
    let f = Fixture::new(POLICY);
    let e = ask(&f, CHECKOUT, "POST", None, "/payments/charges/ch_1/refund");
    assert_eq!((e.decision, e.reason, e.status), ("allow", "allowed", None));
    assert_eq!(
        e.rule.as_ref().map(|r| r.id.as_str()),
        Some("checkout-charges")
    );
    assert_eq!(e.rule.as_ref().and_then(|r| r.line), Some(3));
    let audit = e.audit.as_ref().unwrap();
    assert_eq!(
        (audit.rule.id.as_str(), audit.decision),
        ("shop-no-refunds", "deny")
    );
    assert_eq!(e.source_zone.as_deref(), Some("shop"));
    assert_eq!(e.zone_map_entry, Some(0));
    // The ledger rule names another route: not nearby.
    let ids: Vec<&str> = e.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "checkout-charges",
            "shop-no-refunds",
            "payments-read",
            "no-admin"
        ]
    );
    let read = &e.rules[2];
    assert!(!read.matches);
    let why: Vec<(&str, Option<&str>)> = read
        .rejected_by
        .iter()
        .map(|r| (r.matcher.as_str(), r.request_value.as_deref()))
        .collect();
    assert_eq!(why, [("methods", Some("POST")), ("zones", Some("shop"))]);
    assert_eq!(
        read.rejected_by[1].rule_values,
        Some(vec!["payments".to_string()])
    );
}

#[test]
fn paths_are_normalised_and_routes_selected_as_the_gateway_does() {
    let f = Fixture::new(POLICY);
    // Decoded dot segments climb out of /public: decided as /payments/admin, denied.
    let e = ask(&f, LEDGER, "GET", None, "/payments/public/%2e%2e/admin?x=1");
    assert_eq!(e.path.as_deref(), Some("/payments/admin"));
    assert_eq!(
        (e.decision, e.reason, e.status),
        ("deny", "policy_denied", Some(403))
    );
    assert_eq!(e.rule.as_ref().map(|r| r.id.as_str()), Some("no-admin"));
    // The admin host has a route of its own, which no allow rule names.
    let e = ask(
        &f,
        LEDGER,
        "GET",
        None,
        "https://Admin.Internal:8443/payments/admin",
    );
    assert_eq!(e.host.as_deref(), Some("admin.internal"));
    assert_eq!(e.route.as_deref(), Some("admin-api"));
    assert_eq!((e.reason, e.status), ("policy_denied", Some(403)));
    // Tomcat-style parameters on a dot segment never reach policy.
    let e = ask(&f, LEDGER, "GET", None, "/payments/public/..;/admin");
    assert_eq!((e.reason, e.status), ("bad_path", Some(400)));
    assert!(e.detail.is_some() && e.rules.is_empty());
    let e = ask(&f, LEDGER, "GET", None, "/nowhere");
    assert_eq!(
        (e.reason, e.status, e.route.as_deref()),
        ("no_route", Some(404), None)
    );
    let e = ask(&f, LEDGER, "GET", None, "https://payments.internal?q=1");
    assert_eq!((e.path.as_deref(), e.reason), (Some("/"), "no_route"));
}

#[test]
fn default_deny_and_case_sensitive_methods() {
    let f = Fixture::new(POLICY);
    let e = ask(
        &f,
        "spiffe://example.org/ns/shop/sa/cart",
        "GET",
        None,
        "/payments/charge",
    );
    assert_eq!(
        (e.decision, e.reason, e.status),
        ("deny", "default_deny", Some(403))
    );
    assert!(e.rule.is_none());
    // A lower-case method is another method on the wire: rules name upper-case ones.
    let e = ask(&f, CHECKOUT, "get", None, "/payments/charge");
    assert_eq!(e.reason, "default_deny");
}

#[test]
fn refused_before_policy() {
    let f = Fixture::new(POLICY);
    let e = ask(
        &f,
        "spiffe://other.org/ns/x/sa/y",
        "GET",
        None,
        "/payments/charge",
    );
    assert_eq!((e.reason, e.status), ("svid_refused", None));
    let e = ask(&f, "spiffe://example.org", "GET", None, "/payments/charge");
    assert_eq!(e.reason, "svid_refused");
    // An unmapped identity is in zone `unknown`.
    let e = ask(
        &f,
        "spiffe://example.org/ns/billing/sa/x",
        "GET",
        None,
        "/payments/charge",
    );
    assert_eq!(
        (e.source_zone.as_deref(), e.zone_map_entry),
        (Some("unknown"), None)
    );
}

#[test]
fn revoked_ids_get_401() {
    let mut config = crate::testing::CONFIG.to_string();
    config.push_str("[revocation]\nfile = \"revoked.toml\"\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("revoked.toml"),
        format!("spiffe_ids = [\"{CHECKOUT}\"]\n"),
    )
    .unwrap();
    zonegate_devkit::devpki::write_dev_pki(&dir.path().join("certs"), "example.org").unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let loaded = crate::load::open(&dir.path().join("gateway.toml"), None).unwrap();
    let q = Query {
        spiffe_id: Some(SpiffeId::parse(CHECKOUT).unwrap()),
        token: None,
        method: "POST".into(),
        host: None,
        target: "/payments/charge".into(),
    };
    let e = explain(&loaded, &q);
    assert_eq!((e.reason, e.status), ("credential_revoked", Some(401)));
}

#[test]
fn command_line_mistakes_are_usage_errors() {
    let args = |id: &str, method: &str, target: &str| ExplainArgs {
        config: "x".into(),
        policy: Vec::new(),
        spiffe_id: Some(id.into()),
        issuer: None,
        subject: None,
        claims: Vec::new(),
        token_only: false,
        method: method.into(),
        host: None,
        json: false,
        target: target.into(),
    };
    assert!(query(&args("spiffe://Example.org/x", "GET", "/")).is_err());
    assert!(query(&args(CHECKOUT, "G T", "/")).is_err());
    assert!(query(&args(CHECKOUT, "GET", "https:///x")).is_err());
    let q = query(&args(CHECKOUT, "GET", "http://h:1/a?b#c")).unwrap();
    assert_eq!(
        (q.host.as_deref(), q.target.as_str()),
        (Some("h"), "/a?b#c")
    );
}

#[test]
fn the_human_form_names_rules_files_and_matchers() {
    let f = Fixture::new(POLICY);
    let e = ask(&f, CHECKOUT, "POST", None, "/payments/charges/ch_1/refund");
    let text = render(&e);
    let policy = f.dir.path().join("policy.toml").display().to_string();
    assert!(
        text.contains(&format!(
            "decision  allow (proxied, allowed) by rule checkout-charges ({policy}:3)"
        )),
        "{text}"
    );
    assert!(
        text.contains("methods [GET] rejects `POST`; zones [payments] rejects `shop`"),
        "{text}"
    );
    assert!(
        text.contains("audit     would be deny if audit rules were enforced: rule shop-no-refunds"),
        "{text}"
    );
}

/// A gateway taking tokens: JWT-SVIDs of example.org and a CI issuer's bearer JWTs.
fn token_fixture() -> (tempfile::TempDir, Loaded) {
    let dir = tempfile::tempdir().unwrap();
    zonegate_devkit::devpki::write_dev_pki(&dir.path().join("certs"), "example.org").unwrap();
    std::fs::copy(
        dir.path().join("certs/jwt-bundle.json"),
        dir.path().join("ci.json"),
    )
    .unwrap();
    // The CI issuer's JWKS: the dev key with `use: sig`.
    let ci = std::fs::read_to_string(dir.path().join("ci.json"))
        .unwrap()
        .replace("jwt-svid", "sig");
    std::fs::write(dir.path().join("ci.json"), ci).unwrap();
    let config = r#"
zone = "payments"
[[listener]]
address = "127.0.0.1:8443"
client_cert = "optional"
[tls]
cert = "certs/gateway.crt"
key = "certs/gateway.key"
[trust_domain."example.org"]
bundle = "certs/ca.crt"
[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]
[token_issuer.example-org]
kind = "jwt-svid"
trust_domain = "example.org"
keys = "certs/jwt-bundle.json"
algorithms = ["ES256"]
[token_issuer.ci]
kind = "jwt"
issuer = "https://ci.example.net"
keys = "ci.json"
algorithms = ["ES256"]
audiences = ["payments"]
zone = "ci"
[[route]]
name = "api"
path_prefix = "/api"
upstream = "b"
credentials = "either"
[[route]]
name = "mtls"
path_prefix = "/mtls"
upstream = "b"
[upstream.b]
addresses = ["127.0.0.1:9000"]
[policy]
files = ["policy.toml"]
"#;
    let policy = r#"
[[rule]]
id = "checkout-api"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["api", "mtls"]
[[rule]]
id = "ci-deploys"
effect = "allow"
issuers = ["ci"]
subjects = ["repo:acme/*"]
claims = { scope = "deploy" }
routes = ["api"]
methods = ["POST"]
"#;
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let loaded = crate::load::open(&dir.path().join("gateway.toml"), None).unwrap();
    (dir, loaded)
}

fn ask_token(
    loaded: &Loaded,
    svid: Option<&str>,
    issuer: &str,
    subject: &str,
    claims: &[&str],
    method: &str,
    target: &str,
) -> Explanation {
    let args = ExplainArgs {
        config: "unused".into(),
        policy: Vec::new(),
        spiffe_id: svid.map(str::to_string),
        issuer: Some(issuer.into()),
        subject: Some(subject.into()),
        claims: claims.iter().map(|c| c.to_string()).collect(),
        token_only: svid.is_none(),
        method: method.into(),
        host: None,
        json: false,
        target: target.into(),
    };
    explain(loaded, &query(&args).unwrap())
}

#[test]
fn tokens_are_explained_in_the_gateways_order() {
    let (_dir, loaded) = token_fixture();
    // A JWT-SVID alone: the identity is its subject's SPIFFE ID.
    let e = ask_token(&loaded, None, "example-org", CHECKOUT, &[], "GET", "/api/x");
    assert_eq!((e.decision, e.reason), ("allow", "allowed"), "{e:?}");
    assert_eq!(e.spiffe_id.as_deref(), Some(CHECKOUT));
    assert_eq!(e.source_zone.as_deref(), Some("shop"));
    assert_eq!(e.token.as_ref().unwrap().credential, "jwt-svid");
    // The same on an mtls route: the token cannot stand in for a certificate.
    let e = ask_token(
        &loaded,
        None,
        "example-org",
        CHECKOUT,
        &[],
        "GET",
        "/mtls/x",
    );
    assert_eq!((e.reason, e.status), ("mtls_required", Some(401)));
    // With an SVID: both must name the same workload.
    let cart = "spiffe://example.org/ns/shop/sa/cart";
    let e = ask_token(
        &loaded,
        Some(cart),
        "example-org",
        CHECKOUT,
        &[],
        "GET",
        "/api/x",
    );
    assert_eq!((e.reason, e.status), ("token_binding_mismatch", Some(401)));
    let e = ask_token(
        &loaded,
        Some(CHECKOUT),
        "example-org",
        CHECKOUT,
        &[],
        "GET",
        "/api/x",
    );
    assert_eq!(e.token.as_ref().unwrap().credential, "x509-svid+jwt-svid");
    assert_eq!(e.reason, "allowed");
    // A JWT-SVID subject outside the trust domain.
    let e = ask_token(
        &loaded,
        None,
        "example-org",
        "spiffe://other.org/a",
        &[],
        "GET",
        "/api/x",
    );
    assert_eq!(e.reason, "token_bad_subject");
    // An issuer the config does not have.
    let e = ask_token(&loaded, None, "nobody", "x", &[], "GET", "/api/x");
    assert_eq!(e.reason, "token_unknown_issuer");
}

#[test]
fn token_claims_decide_and_explain_rejections() {
    let (_dir, loaded) = token_fixture();
    let deploy = |claims: &[&str], subject: &str| {
        ask_token(&loaded, None, "ci", subject, claims, "POST", "/api/deploy")
    };
    let e = deploy(&["scope=read deploy"], "repo:acme/app");
    assert_eq!(
        (e.decision, e.rule.as_ref().map(|r| r.id.as_str())),
        ("allow", Some("ci-deploys"))
    );
    assert_eq!(e.spiffe_id, None, "a ci subject is never a SPIFFE ID");
    assert_eq!(e.source_zone.as_deref(), Some("ci"));
    let e = deploy(&["scope=read"], "repo:acme/app");
    assert_eq!(e.reason, "default_deny");
    let ci_rule = e.rules.iter().find(|r| r.id == "ci-deploys").unwrap();
    let rejected: Vec<&str> = ci_rule
        .rejected_by
        .iter()
        .map(|r| r.matcher.as_str())
        .collect();
    assert_eq!(rejected, vec!["claims"]);
    assert_eq!(
        ci_rule.rejected_by[0].rule_values,
        Some(vec!["scope=deploy".to_string()])
    );
    let e = deploy(&["scope=deploy"], "repo:evil/app");
    let ci_rule = e.rules.iter().find(|r| r.id == "ci-deploys").unwrap();
    assert_eq!(ci_rule.rejected_by[0].matcher, "subjects");
    assert!(render(&e).contains("token     issuer ci, subject repo:evil/app (jwt)"));
}

#[test]
fn an_allowed_request_names_the_limits_it_counts_against() {
    let limited = POLICY.replace(
        "id = \"checkout-charges\"\n",
        "id = \"checkout-charges\"\nlimit = { rate = \"50/s\", burst = 100, in_flight = 20 }\n",
    );
    let config = crate::testing::CONFIG.replacen(
        "name = \"payments-api\"\n",
        "name = \"payments-api\"\nlimit = { in_flight = 500, per = \"identity_route\" }\n",
        1,
    );
    assert_ne!(
        config,
        crate::testing::CONFIG,
        "the fixture has the payments-api route"
    );
    let f = Fixture::with_config(&config, &limited);
    let e = ask(&f, CHECKOUT, "POST", None, "/payments/charge");
    assert_eq!(e.decision, "allow");
    let limits: Vec<(&str, &str)> = e
        .limits
        .iter()
        .map(|l| (l.owner.as_str(), l.limit.as_str()))
        .collect();
    assert_eq!(
        limits,
        [
            (
                "route payments-api",
                "500 in flight, per identity and route"
            ),
            (
                "rule checkout-charges",
                "50/s (burst 100), 20 in flight, per identity"
            ),
        ]
    );
    assert!(
        render(&e).contains(
            "limit     rule checkout-charges: 50/s (burst 100), 20 in flight, per identity"
        ),
        "{}",
        render(&e)
    );
    // A refused request counts against nothing.
    let denied = ask(&f, CHECKOUT, "POST", None, "/payments/admin");
    assert_eq!(denied.decision, "deny");
    assert!(denied.limits.is_empty());
}
