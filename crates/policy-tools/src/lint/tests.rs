use super::*;
use crate::testing::Fixture;

fn codes(report: &Report) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = report
        .findings
        .iter()
        .map(|f| (f.rule.clone().unwrap_or_default(), f.code))
        .collect();
    out.sort();
    out
}

#[test]
fn dead_rules_are_named_with_what_covers_them() {
    let f = Fixture::new(
        r#"
[[rule]]
id = "reads"
effect = "allow"
zones = ["payments"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]
[[rule]]
id = "reads-again"
effect = "allow"
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/charges/*"]
[[rule]]
id = "shadowed-by-deny"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/cart"]
routes = ["payments-api"]
paths = ["/payments/secret/**"]
[[rule]]
id = "no-secrets"
effect = "deny"
paths = ["/payments/secret/**"]
"#,
    );
    let report = lint(&f.loaded, Scope::TrustDomain);
    // `no-secrets` is live: without it, `shadowed-by-deny` would allow the secrets.
    assert_eq!(
        codes(&report),
        [
            ("reads".to_string(), "allow-deny-overlap"),
            ("reads-again".to_string(), "shadowed"),
            ("shadowed-by-deny".to_string(), "shadowed"),
        ]
    );
    let by_id = |id: &str, code: &str| {
        report
            .findings
            .iter()
            .find(|f| f.rule.as_deref() == Some(id) && f.code == code)
            .unwrap()
            .clone()
    };
    let f1 = by_id("reads-again", "shadowed");
    assert!(
        f1.message.contains("allowed by `reads` (earlier"),
        "{}",
        f1.message
    );
    assert_eq!(f1.severity, Severity::Warning);
    let f2 = by_id("shadowed-by-deny", "shadowed");
    assert!(
        f2.message
            .contains("overridden by deny rule `no-secrets` (later"),
        "{}",
        f2.message
    );
    let f3 = by_id("reads", "allow-deny-overlap");
    assert_eq!(
        f3.details,
        ["spiffe://example.org/ns/payments/* (payments) GET payments-api /payments/secret/**"]
    );
    assert_eq!((report.errors, report.warnings, report.infos), (0, 2, 1));
}

#[test]
fn a_deny_nothing_allows_is_a_moot_guard() {
    let f = Fixture::new(
        r#"
[[rule]]
id = "reads"
effect = "allow"
zones = ["payments"]
methods = ["GET"]
paths = ["/payments/**"]
[[rule]]
id = "no-deletes"
effect = "deny"
methods = ["DELETE"]
"#,
    );
    let report = lint(&f.loaded, Scope::TrustDomain);
    assert_eq!(codes(&report), [("no-deletes".to_string(), "moot-deny")]);
    assert_eq!(report.findings[0].severity, Severity::Info);
}

#[test]
fn removing_the_only_deny_is_not_shadowing() {
    // A deny that removes part of an allow is live: never reported as dead.
    let f = Fixture::new(
        r#"
[[rule]]
id = "reads"
effect = "allow"
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
routes = ["payments-api"]
paths = ["/payments/**"]
[[rule]]
id = "no-admin"
effect = "deny"
paths = ["/payments/admin/**"]
"#,
    );
    let report = lint(&f.loaded, Scope::TrustDomain);
    assert_eq!(
        codes(&report),
        [("reads".to_string(), "allow-deny-overlap")]
    );
}

#[test]
fn scopes_order_from_exact_to_any() {
    let f = Fixture::new(
        r#"
[[rule]]
id = "exact"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/cart"]
[[rule]]
id = "prefix"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/*"]
[[rule]]
id = "zone"
effect = "allow"
zones = ["shop"]
identities = ["*"]
[[rule]]
id = "domain"
effect = "allow"
identities = ["spiffe://example.org/*"]
[[rule]]
id = "any"
effect = "allow"
"#,
    );
    let scopes: Vec<Scope> = f.loaded.rules().iter().map(identity_scope).collect();
    assert_eq!(
        scopes,
        [
            Scope::Exact,
            Scope::Prefix,
            Scope::Zone,
            Scope::TrustDomain,
            Scope::Any
        ]
    );
    // `--broad-identity any` only reports the unrestricted rule for its identities; every
    // rule here allows any path, so every one is reported, and the unrestricted one is an
    // error (any identity, any path).
    let report = lint(&f.loaded, Scope::Any);
    let broad: Vec<(&str, Severity)> = report
        .findings
        .iter()
        .filter(|f| f.code == "broad-allow")
        .map(|f| (f.rule.as_deref().unwrap_or(""), f.severity))
        .collect();
    assert_eq!(broad.len(), 5);
    assert!(broad.contains(&("any", Severity::Error)));
    assert!(broad.contains(&("domain", Severity::Warning)));
}

#[test]
fn audit_rules_show_what_enforcing_them_changes() {
    let f = Fixture::new(
        r#"
[[rule]]
id = "charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["POST"]
paths = ["/payments/charges/**"]
[[rule]]
id = "staged-refunds"
effect = "deny"
mode = "audit"
zones = ["shop"]
paths = ["/payments/charges/*/refund"]
[[rule]]
id = "staged-noop"
effect = "deny"
mode = "audit"
identities = ["spiffe://example.org/ns/shop/sa/cart"]
"#,
    );
    let report = lint(&f.loaded, Scope::TrustDomain);
    let staged = report
        .findings
        .iter()
        .find(|f| f.code == "audit-would-change")
        .unwrap();
    assert_eq!(staged.rule.as_deref(), Some("staged-refunds"));
    assert_eq!(
        staged.details,
        ["spiffe://example.org/ns/shop/sa/checkout (shop) POST payments-api /payments/charges/*/refund: denied instead of allowed by `charges`"]
    );
    let noop = report
        .findings
        .iter()
        .find(|f| f.rule.as_deref() == Some("staged-noop"))
        .unwrap();
    assert_eq!(noop.code, "shadowed");
}

#[test]
fn zones_and_identities_that_match_nothing() {
    let f = Fixture::new(
        r#"
[[rule]]
id = "typo"
effect = "deny"
zones = ["shoop"]
[[rule]]
id = "billing"
effect = "allow"
identities = ["spiffe://example.org/ns/billing/sa/api"]
routes = ["payments-api"]
paths = ["/payments/invoices/*"]
[[rule]]
id = "partner"
effect = "allow"
identities = ["spiffe://partner.example/ns/a/sa/b"]
routes = ["payments-api"]
paths = ["/payments/partner/*"]
"#,
    );
    let report = lint(&f.loaded, Scope::TrustDomain);
    assert_eq!(
        codes(&report),
        [
            ("billing".to_string(), "unmapped-identity"),
            ("partner".to_string(), "never-matches"),
            ("partner".to_string(), "untrusted-trust-domain"),
            ("typo".to_string(), "never-matches"),
            ("typo".to_string(), "unknown-zone"),
        ]
    );
    assert_eq!(report.errors, 3);
}
