use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::testing::Fixture;

/// Which of `patterns` match `path`: the class of the path.
fn class(patterns: &[PathPattern], path: &str) -> Vec<bool> {
    patterns.iter().map(|p| p.matches(path)).collect()
}

fn random_path(rng: &mut StdRng, words: &[&str]) -> String {
    let depth = rng.gen_range(1..=6);
    let mut path = String::new();
    for i in 0..depth {
        let segment = match rng.gen_range(0..10) {
            0..=5 => words[rng.gen_range(0..words.len())].to_string(),
            6 => format!(
                "{}{}",
                words[rng.gen_range(0..words.len())],
                rng.gen_range(0..99)
            ),
            7 => format!("q{}", rng.gen_range(0..999)),
            8 if i + 1 == depth => String::new(),
            _ => format!(
                "{}.{}",
                words[rng.gen_range(0..words.len())],
                words[rng.gen_range(0..words.len())]
            ),
        };
        path.push('/');
        path.push_str(&segment);
    }
    path
}

#[test]
fn path_witnesses_reach_every_class_a_random_path_falls_in() {
    let sources = [
        "/payments",
        "/payments/**",
        "/payments/charge",
        "/payments/charges/**",
        "/payments/charges/*/refund",
        "/payments/admin",
        "/payments/admin/**",
        "/**/refund",
        "/v1/*.json",
        "/v1/order-*",
        "/v1/*-items",
        "/a/**/z/*",
        "/a/b/",
        "/*",
        "/ledger.v1.Ledger/*",
    ];
    let patterns: Vec<PathPattern> = sources
        .iter()
        .map(|s| PathPattern::parse(s).unwrap())
        .collect();
    let strings: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    let (witnesses, truncated) = path_witnesses(&strings, MAX_PATH_STATES);
    assert!(!truncated);
    let covered: HashSet<Vec<bool>> = witnesses.iter().map(|w| class(&patterns, w)).collect();
    // Every witness is a path the gateway could receive: normalisation leaves it alone.
    for w in &witnesses {
        assert_eq!(crate::policy::normalize(w).unwrap().path, *w, "{w}");
    }
    let words = [
        "payments",
        "charge",
        "charges",
        "refund",
        "admin",
        "v1",
        "a",
        "b",
        "z",
        "order",
        "items",
        "json",
        "ledger.v1.Ledger",
        "x",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let path = random_path(&mut rng, &words);
        let Ok(normal) = crate::policy::normalize(&path) else {
            continue;
        };
        let c = class(&patterns, &normal.path);
        assert!(
            covered.contains(&c),
            "no witness for the class of {}",
            normal.path
        );
    }
}

#[test]
fn glob_intersections_get_a_witness() {
    // `a*` and `*b` overlap (`ab`, `axb`): some witness must match both.
    let strings = vec!["/a*".to_string(), "/*b".to_string()];
    let (witnesses, _) = path_witnesses(&strings, MAX_PATH_STATES);
    let a = PathPattern::parse("/a*").unwrap();
    let b = PathPattern::parse("/*b").unwrap();
    let classes: HashSet<(bool, bool)> = witnesses
        .iter()
        .map(|w| (a.matches(w), b.matches(w)))
        .collect();
    for want in [(true, true), (true, false), (false, true), (false, false)] {
        assert!(
            classes.contains(&want),
            "{want:?} missing from {witnesses:?}"
        );
    }
}

#[test]
fn the_state_cap_is_reported() {
    let strings: Vec<String> = (0..50).map(|i| format!("/s{i}/**")).collect();
    let (witnesses, truncated) = path_witnesses(&strings, 10);
    assert!(truncated);
    assert_eq!(witnesses.len(), 10);
}

#[test]
fn identity_witnesses_reach_every_class() {
    let sources = [
        "spiffe://example.org/ns/shop/sa/checkout",
        "spiffe://example.org/ns/shop/*",
        "spiffe://example.org/ns/shop/sa/*",
        "spiffe://example.org/*",
        "spiffe://example.org/ns/payments/*",
        "spiffe://other.org/ns/x/sa/y",
        "*",
    ];
    let patterns: Vec<IdPattern> = sources
        .iter()
        .map(|s| IdPattern::parse(s).unwrap())
        .collect();
    let tds: BTreeSet<String> = ["example.org".to_string()].into();
    let witnesses = identity_witnesses(&patterns, &tds);
    let covered: HashSet<Vec<bool>> = witnesses
        .iter()
        .map(|w| patterns.iter().map(|p| p.matches(&w.id)).collect())
        .collect();
    let mut rng = StdRng::seed_from_u64(11);
    let words = ["ns", "shop", "sa", "checkout", "payments", "cart", "x"];
    // Only trusted trust domains reach policy; other.org's named ID has its own witness.
    for _ in 0..5_000 {
        let td = "example.org";
        let depth = rng.gen_range(1..=5);
        let path: Vec<&str> = (0..depth)
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect();
        let id = SpiffeId::parse(&format!("spiffe://{td}/{}", path.join("/"))).unwrap();
        let c: Vec<bool> = patterns.iter().map(|p| p.matches(&id)).collect();
        assert!(covered.contains(&c), "no witness for the class of {id}");
    }
    // Labels say what a witness stands for.
    let label = |id: &str| {
        witnesses
            .iter()
            .find(|w| w.id.as_str() == id)
            .map(|w| w.label.clone())
    };
    assert_eq!(
        label("spiffe://example.org/ns/shop/x").as_deref(),
        Some("spiffe://example.org/ns/shop/*")
    );
    assert_eq!(
        label("spiffe://example.org/ns/shop/sa/checkout").as_deref(),
        Some("spiffe://example.org/ns/shop/sa/checkout")
    );
}

#[test]
fn unnamed_witnesses_avoid_named_ids() {
    let named: BTreeSet<String> = [
        "spiffe://td/ns/x".to_string(),
        "spiffe://td/ns/x1/sa/a".to_string(),
    ]
    .into();
    let id = unnamed_below("spiffe://td/ns", &named).unwrap();
    assert_eq!(id.as_str(), "spiffe://td/ns/x2");
}

#[test]
fn grid_classes_are_decided_like_any_of_their_members() {
    let f = Fixture::new(
        r#"
[[rule]]
id = "checkout"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/charges/**"]
[[rule]]
id = "payments-read"
effect = "allow"
zones = ["payments"]
methods = ["GET"]
[[rule]]
id = "no-refunds"
effect = "deny"
paths = ["/payments/charges/*/refund"]
"#,
    );
    let loaded = &f.loaded;
    let mut gens = Generators::default();
    gens.add(loaded);
    let grid = Grid::new(gens.build(), &[loaded]);
    // Every member of a class is decided like its representative.
    let mut checked = 0;
    for (i, ig) in grid.identities.iter().enumerate() {
        for (m, mg) in grid.methods.iter().enumerate() {
            for (t, tg) in grid.targets.iter().enumerate() {
                let cell = Cell {
                    identity: i,
                    method: m,
                    target: t,
                };
                let rep = grid
                    .probe(loaded, cell)
                    .map(|p| loaded.policy.evaluate(&p.facts()));
                for iw in &ig.members {
                    for mw in &mg.members {
                        for tw in &tg.members {
                            let member = loaded
                                .routes
                                .select(tw.host.as_deref(), &tw.path)
                                .map(|route| Probe {
                                    svid: true,
                                    token: None,
                                    spiffe_id: Some(iw.id.clone()),
                                    source_zone: loaded.config.zone_of(&iw.id).to_string(),
                                    route: route.name.clone(),
                                    method: mw.method.clone(),
                                    path: tw.path.clone(),
                                })
                                .map(|p| loaded.policy.evaluate(&p.facts()));
                            assert_eq!(member, rep, "{} {} {}", iw.id, mw.method, tw.path);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > grid.cells().len());
    // The admin host selects its own route: hosts split the targets.
    assert!(grid.targets.iter().any(|g| g
        .members
        .iter()
        .any(|w| w.host.as_deref() == Some("admin.internal"))));
    // A method no rule names has a class of its own.
    assert!(grid
        .methods
        .iter()
        .any(|g| g.members.iter().any(|w| !w.named)));
}
