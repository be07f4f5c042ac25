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
        credentials: None,
        issuers: vec![],
        subjects: vec![],
        claims: vec![],
        limit: None,
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
            spiffe_id: Some(&self.id),
            source_zone: self.zone,
            route: self.route,
            method: self.method,
            path: self.path,
            presented: Presented {
                svid: true,
                token: false,
            },
            token: None,
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
            DecisionCache::key(&a.facts(), &[]).unwrap(),
            DecisionCache::key(&v.facts(), &[]).unwrap()
        );
    }
}

/// The reference: every rule, in file order, no index.
fn evaluate_every_rule(policy: &Policy, facts: &RequestFacts<'_>) -> Decision {
    let (mut enforced, mut shadow) = (Outcome::default(), Outcome::default());
    for (index, rule) in policy.rules.iter().enumerate() {
        if rule.matches(facts) {
            shadow.note(rule, index);
            if rule.mode == Mode::Enforce {
                enforced.note(rule, index);
            }
        }
    }
    let (verdict, rule) = enforced.resolve(&policy.rules);
    let (would, shadow_rule) = shadow.resolve(&policy.rules);
    let audit = match shadow_rule {
        Some(rule) if would != verdict => Some(AuditFinding { rule, would }),
        _ => None,
    };
    Decision {
        verdict,
        rule,
        audit,
    }
}

#[test]
fn the_rule_index_never_changes_a_decision() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let id_pool = [
        "*",
        "spiffe://td/*",
        "spiffe://td/ns/a/*",
        "spiffe://td/ns/a/sa/x",
        "spiffe://td/ns/a/sa/x/*",
        "spiffe://td/ns/b/sa/y",
        "spiffe://td/ns/ab/*",
        "spiffe://other/*",
    ];
    let requests = [
        "spiffe://td/ns/a/sa/x",
        "spiffe://td/ns/a/sa/x/canary",
        "spiffe://td/ns/ab/sa/z",
        "spiffe://td/ns/b/sa/y",
        "spiffe://td/q",
        "spiffe://other/a",
    ];
    let routes = ["r1", "r2", "r3"];
    for round in 0..200 {
        let mut rules = Vec::new();
        for i in 0..rng.gen_range(1..25) {
            let effect = if rng.gen_bool(0.3) {
                Effect::Deny
            } else {
                Effect::Allow
            };
            let mode = if rng.gen_bool(0.2) {
                Mode::Audit
            } else {
                Mode::Enforce
            };
            let mut r = rule(&format!("r{i}"), effect, mode);
            let n_ids = rng.gen_range(0..3);
            r.identities = (0..n_ids)
                .map(|_| IdPattern::parse(id_pool[rng.gen_range(0..id_pool.len())]).unwrap())
                .collect();
            if rng.gen_bool(0.7) {
                r.routes = vec![Arc::from(routes[rng.gen_range(0..routes.len())])];
            }
            if rng.gen_bool(0.3) {
                r.methods = vec!["GET".into()];
            }
            rules.push(r);
        }
        let policy = Policy::compile(rules, 0);
        for id in requests {
            let id = SpiffeId::parse(id).unwrap();
            for route in routes {
                for method in ["GET", "POST"] {
                    for spiffe_id in [Some(&id), None] {
                        let facts = RequestFacts {
                            spiffe_id,
                            source_zone: "z",
                            route,
                            method,
                            path: "/p",
                            presented: Presented::default(),
                            token: None,
                        };
                        assert_eq!(
                            policy.evaluate(&facts),
                            evaluate_every_rule(&policy, &facts),
                            "round {round}: {facts:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn mismatches_name_exactly_the_matchers_that_reject() {
    let mut rule = rule("r", Effect::Allow, Mode::Enforce);
    rule.identities = ids(&["spiffe://td/ns/shop/*"]);
    rule.routes = vec![Arc::from("api")];
    rule.methods = vec!["GET".into()];
    rule.paths = paths(&["/a/**"]);
    let shop = SpiffeId::parse("spiffe://td/ns/shop/sa/x").unwrap();
    let other = SpiffeId::parse("spiffe://td/ns/ops/sa/x").unwrap();
    let facts = |id, method, path| RequestFacts {
        spiffe_id: Some(id),
        source_zone: "shop",
        route: "api",
        method,
        path,
        presented: Presented::default(),
        token: None,
    };
    assert!(rule.mismatches(&facts(&shop, "GET", "/a/b")).is_empty());
    assert!(rule.matches(&facts(&shop, "GET", "/a/b")));
    assert_eq!(
        rule.mismatches(&facts(&other, "POST", "/b")),
        vec![Matcher::Methods, Matcher::Identities, Matcher::Paths]
    );
    assert!(!rule.matches(&facts(&other, "GET", "/a/b")));
}

fn claims(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    json.as_object().unwrap().clone()
}

fn token_facts<'a>(
    id: Option<&'a SpiffeId>,
    presented: Presented,
    token: Option<TokenFacts<'a>>,
) -> RequestFacts<'a> {
    RequestFacts {
        spiffe_id: id,
        source_zone: "ci",
        route: "api",
        method: "POST",
        path: "/deploy",
        presented,
        token,
    }
}

#[test]
fn token_matchers_match_issuer_subject_and_claims_and_never_a_tokenless_request() {
    let mut deploy = rule("deploy", Effect::Allow, Mode::Enforce);
    deploy.issuers = vec![Arc::from("ci")];
    deploy.subjects = vec![SubjectPattern::parse("repo:acme/*").unwrap()];
    deploy.claims = vec![
        ClaimMatcher {
            name: "scope".into(),
            values: vec!["deploy:write".into()],
        },
        ClaimMatcher {
            name: "env".into(),
            values: vec!["prod".into(), "staging".into()],
        },
    ];
    let both = Presented {
        svid: false,
        token: true,
    };
    let good = claims(serde_json::json!({"scope": "read deploy:write", "env": "prod"}));
    let t = |issuer, subject, claims| TokenFacts {
        issuer,
        subject,
        claims,
    };
    assert!(deploy.matches(&token_facts(
        None,
        both,
        Some(t("ci", "repo:acme/app", &good))
    )));
    assert_eq!(
        deploy.mismatches(&token_facts(
            None,
            both,
            Some(t("other", "repo:acme/app", &good))
        )),
        vec![Matcher::Issuers]
    );
    assert_eq!(
        deploy.mismatches(&token_facts(
            None,
            both,
            Some(t("ci", "repo:evil/app", &good))
        )),
        vec![Matcher::Subjects]
    );
    // `scope` is a space-separated list: a substring is not an item.
    let partial = claims(serde_json::json!({"scope": "deploy:writer", "env": "prod"}));
    assert_eq!(
        deploy.mismatches(&token_facts(
            None,
            both,
            Some(t("ci", "repo:acme/app", &partial))
        )),
        vec![Matcher::Claims]
    );
    // Every listed claim must match; arrays match by element.
    let listed = claims(serde_json::json!({"scope": ["deploy:write"], "env": ["dev", "staging"]}));
    assert!(deploy.matches(&token_facts(
        None,
        both,
        Some(t("ci", "repo:acme/x", &listed))
    )));
    let no_env = claims(serde_json::json!({"scope": "deploy:write"}));
    assert!(!deploy.matches(&token_facts(
        None,
        both,
        Some(t("ci", "repo:acme/x", &no_env))
    )));
    // Token matchers never match a request that has no token.
    let svid_only = Presented {
        svid: true,
        token: false,
    };
    let id = SpiffeId::parse("spiffe://td/ns/ci/sa/runner").unwrap();
    assert_eq!(
        deploy.mismatches(&token_facts(Some(&id), svid_only, None)),
        vec![Matcher::Issuers, Matcher::Subjects, Matcher::Claims]
    );
}

#[test]
fn credentials_and_identities_matchers() {
    let mut both = rule("both", Effect::Allow, Mode::Enforce);
    both.credentials = Some(Credentials::Both);
    both.identities = ids(&["spiffe://td/*"]);
    let id = SpiffeId::parse("spiffe://td/ns/a/sa/b").unwrap();
    let empty = serde_json::Map::new();
    let token = TokenFacts {
        issuer: "td",
        subject: "spiffe://td/ns/a/sa/b",
        claims: &empty,
    };
    let svid_and_token = Presented {
        svid: true,
        token: true,
    };
    let svid_only = Presented {
        svid: true,
        token: false,
    };
    assert!(both.matches(&token_facts(Some(&id), svid_and_token, Some(token))));
    assert_eq!(
        both.mismatches(&token_facts(Some(&id), svid_only, None)),
        vec![Matcher::Credentials]
    );
    // A subject that is no SPIFFE ID never matches an identities matcher, not even `*`.
    let mut any = rule("any", Effect::Allow, Mode::Enforce);
    any.identities = ids(&["*"]);
    let bearer = Presented {
        svid: false,
        token: true,
    };
    assert!(!any.matches(&token_facts(None, bearer, Some(token))));
    assert!(any.matches(&token_facts(Some(&id), bearer, Some(token))));
}

#[test]
fn cache_key_carries_credentials_and_the_claims_rules_read() {
    let id = SpiffeId::parse("spiffe://td/ns/a/sa/b").unwrap();
    let names = vec!["scope".to_string()];
    let read = claims(serde_json::json!({"scope": "read", "other": 1}));
    let write = claims(serde_json::json!({"scope": "write", "other": 1}));
    let other = claims(serde_json::json!({"scope": "read", "other": 2}));
    let t = |claims| TokenFacts {
        issuer: "ci",
        subject: "s",
        claims,
    };
    let bearer = Presented {
        svid: false,
        token: true,
    };
    let key = |facts: RequestFacts<'_>| DecisionCache::key(&facts, &names).unwrap();
    let base = key(token_facts(Some(&id), bearer, Some(t(&read))));
    assert_ne!(base, key(token_facts(Some(&id), bearer, Some(t(&write)))));
    // A claim no rule reads does not split the cache.
    assert_eq!(base, key(token_facts(Some(&id), bearer, Some(t(&other)))));
    let with_svid = Presented {
        svid: true,
        token: true,
    };
    assert_ne!(base, key(token_facts(Some(&id), with_svid, Some(t(&read)))));
    assert_ne!(base, key(token_facts(None, bearer, Some(t(&read)))));
    // A huge claim value is decided afresh rather than cached.
    let huge = claims(serde_json::json!({"scope": "x".repeat(4096)}));
    assert!(DecisionCache::key(&token_facts(Some(&id), bearer, Some(t(&huge))), &names).is_none());
}

#[test]
fn subject_patterns() {
    assert!(SubjectPattern::parse("*").is_err());
    assert!(SubjectPattern::parse("").is_err());
    assert!(SubjectPattern::parse("a*b").is_err());
    assert!(SubjectPattern::parse("a**").is_err());
    let p = SubjectPattern::parse("repo:acme/*").unwrap();
    assert!(p.matches("repo:acme/x") && !p.matches("repo:acme") && !p.matches("repo:acmex/y"));
    assert_eq!(p.to_string(), "repo:acme/*");
}
