use std::sync::Arc;

use super::*;
use crate::identity::IdPattern;

fn rule(id: &str, effect: Effect, mode: Mode) -> Rule {
    Rule {
        id: Arc::from(id),
        description: None,
        effect,
        mode,
        identities: vec![],
        zones: vec![],
        routes: vec![],
        methods: vec![],
        paths: vec![],
    }
}

fn ids(patterns: &[&str]) -> Vec<IdPattern> {
    patterns
        .iter()
        .map(|p| IdPattern::parse(p).unwrap())
        .collect()
}

fn paths(patterns: &[&str]) -> Vec<PathPattern> {
    patterns
        .iter()
        .map(|p| PathPattern::parse(p).unwrap())
        .collect()
}

struct Req {
    id: SpiffeId,
    zone: &'static str,
    route: &'static str,
    method: &'static str,
    path: &'static str,
}

fn req(
    id: &str,
    zone: &'static str,
    route: &'static str,
    method: &'static str,
    path: &'static str,
) -> Req {
    Req {
        id: SpiffeId::parse(id).unwrap(),
        zone,
        route,
        method,
        path,
    }
}

impl Req {
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            spiffe_id: &self.id,
            source_zone: self.zone,
            route: self.route,
            method: self.method,
            path: self.path,
        }
    }
}

fn sample_policy() -> Policy {
    let mut allow_checkout = rule("checkout", Effect::Allow, Mode::Enforce);
    allow_checkout.identities = ids(&["spiffe://ex.org/ns/shop/sa/checkout"]);
    allow_checkout.routes = vec![Arc::from("pay")];
    allow_checkout.methods = vec!["POST".into()];
    allow_checkout.paths = paths(&["/pay/charge", "/pay/charges/**"]);

    let mut zone_read = rule("zone-read", Effect::Allow, Mode::Enforce);
    zone_read.zones = vec!["payments".into()];
    zone_read.methods = vec!["GET".into()];

    let mut deny_admin = rule("no-admin", Effect::Deny, Mode::Enforce);
    deny_admin.paths = paths(&["/pay/admin/**"]);

    let mut audit_deny = rule("audit-refunds", Effect::Deny, Mode::Audit);
    audit_deny.identities = ids(&["spiffe://ex.org/ns/shop/*"]);
    audit_deny.paths = paths(&["/pay/charges/*/refund"]);

    let mut audit_allow = rule("audit-cart", Effect::Allow, Mode::Audit);
    audit_allow.identities = ids(&["spiffe://ex.org/ns/shop/sa/cart"]);

    Policy::compile(
        vec![
            allow_checkout,
            zone_read,
            deny_admin,
            audit_deny,
            audit_allow,
        ],
        1024,
    )
}

#[test]
fn decides_by_identity_zone_method_and_path() {
    let policy = sample_policy();
    let checkout = "spiffe://ex.org/ns/shop/sa/checkout";
    let ledger = "spiffe://ex.org/ns/payments/sa/ledger";
    let cases = [
        (
            req(checkout, "shop", "pay", "POST", "/pay/charge"),
            Verdict::Allow,
            Some("checkout"),
        ),
        (
            req(checkout, "shop", "pay", "GET", "/pay/charge"),
            Verdict::Deny,
            None,
        ),
        (
            req(checkout, "shop", "pay", "POST", "/pay/other"),
            Verdict::Deny,
            None,
        ),
        (
            req(checkout, "shop", "other", "POST", "/pay/charge"),
            Verdict::Deny,
            None,
        ),
        (
            req(ledger, "payments", "pay", "GET", "/pay/anything"),
            Verdict::Allow,
            Some("zone-read"),
        ),
        (
            req(ledger, "payments", "pay", "POST", "/pay/anything"),
            Verdict::Deny,
            None,
        ),
        // Deny wins over allow, whatever the order.
        (
            req(ledger, "payments", "pay", "GET", "/pay/admin/users"),
            Verdict::Deny,
            Some("no-admin"),
        ),
    ];
    for (r, verdict, rule) in &cases {
        let d = policy.evaluate(&r.facts());
        assert_eq!(d.verdict, *verdict, "{} {} {}", r.id, r.method, r.path);
        assert_eq!(d.rule.as_deref(), *rule, "{} {} {}", r.id, r.method, r.path);
    }
}

#[test]
fn audit_rules_report_but_never_decide() {
    let policy = sample_policy();
    let r = req(
        "spiffe://ex.org/ns/shop/sa/checkout",
        "shop",
        "pay",
        "POST",
        "/pay/charges/7/refund",
    );
    let d = policy.evaluate(&r.facts());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule.as_deref(), Some("checkout"));
    assert_eq!(
        d.audit,
        Some(AuditFinding {
            rule: Arc::from("audit-refunds"),
            would: Verdict::Deny
        })
    );

    let cart = req(
        "spiffe://ex.org/ns/shop/sa/cart",
        "shop",
        "pay",
        "GET",
        "/pay/x",
    );
    let d = policy.evaluate(&cart.facts());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule, None);
    assert_eq!(
        d.audit.map(|a| (a.rule.to_string(), a.would)),
        Some(("audit-cart".into(), Verdict::Allow))
    );

    // An audit rule that agrees with the enforced decision is not reported.
    let plain = req(
        "spiffe://ex.org/ns/shop/sa/checkout",
        "shop",
        "pay",
        "POST",
        "/pay/charge",
    );
    assert_eq!(policy.evaluate(&plain.facts()).audit, None);
}

#[test]
fn default_deny_with_no_rules() {
    let policy = Policy::compile(vec![], 16);
    let r = req("spiffe://ex.org/a", "z", "r", "GET", "/");
    let d = policy.decide(&r.facts());
    assert_eq!((d.verdict, d.rule, d.audit), (Verdict::Deny, None, None));
}

#[test]
fn cache_serves_the_same_decision_and_stays_bounded() {
    let policy = Policy::compile(sample_policy().rules().to_vec(), 2);
    let r = req(
        "spiffe://ex.org/ns/shop/sa/checkout",
        "shop",
        "pay",
        "POST",
        "/pay/charge",
    );
    let first = policy.decide(&r.facts());
    let second = policy.decide(&r.facts());
    assert_eq!(first, second);
    assert_eq!(first, policy.evaluate(&r.facts()));
    assert_eq!((policy.cache().hits(), policy.cache().misses()), (1, 1));
    for path in ["/a", "/b", "/c", "/d"] {
        let r = req("spiffe://ex.org/x", "shop", "pay", "GET", path);
        policy.decide(&r.facts());
    }
    assert_eq!(policy.cache().len(), 2, "cache grew past its capacity");
}

#[test]
fn cache_key_separates_every_fact() {
    let a = req("spiffe://ex.org/a", "z", "r", "GET", "/p");
    let variants = [
        req("spiffe://ex.org/b", "z", "r", "GET", "/p"),
        req("spiffe://ex.org/a", "y", "r", "GET", "/p"),
        req("spiffe://ex.org/a", "z", "q", "GET", "/p"),
        req("spiffe://ex.org/a", "z", "r", "PUT", "/p"),
        req("spiffe://ex.org/a", "z", "r", "GET", "/q"),
    ];
    for v in &variants {
        assert_ne!(
            DecisionCache::key(&a.facts()),
            DecisionCache::key(&v.facts())
        );
    }
}

#[test]
fn rules_are_visited_in_file_order_across_route_indexes() {
    let merged: Vec<usize> = merge_ascending(&[1, 4, 6], &[0, 2, 5, 7]).collect();
    assert_eq!(merged, vec![0, 1, 2, 4, 5, 6, 7]);
}

#[test]
fn mismatches_name_exactly_the_matchers_that_reject() {
    let rule = Rule {
        id: Arc::from("r"),
        description: None,
        effect: Effect::Allow,
        mode: Mode::Enforce,
        identities: ids(&["spiffe://td/ns/shop/*"]),
        zones: vec![],
        routes: vec![Arc::from("api")],
        methods: vec!["GET".into()],
        paths: vec![PathPattern::parse("/a/**").unwrap()],
    };
    let shop = SpiffeId::parse("spiffe://td/ns/shop/sa/x").unwrap();
    let other = SpiffeId::parse("spiffe://td/ns/ops/sa/x").unwrap();
    let facts = |id, method, path| RequestFacts {
        spiffe_id: id,
        source_zone: "shop",
        route: "api",
        method,
        path,
    };
    assert!(rule.mismatches(&facts(&shop, "GET", "/a/b")).is_empty());
    assert!(rule.matches(&facts(&shop, "GET", "/a/b")));
    assert_eq!(
        rule.mismatches(&facts(&other, "POST", "/b")),
        vec![Matcher::Methods, Matcher::Identities, Matcher::Paths]
    );
    assert!(!rule.matches(&facts(&other, "GET", "/a/b")));
}
