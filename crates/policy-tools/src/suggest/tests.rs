use super::*;

fn key(names: &mut Names, id: &str, method: &str, template: &str) -> Key {
    Key {
        identity: names.intern(id).unwrap(),
        route: names.intern("api").unwrap(),
        method: names.intern(method).unwrap(),
        template: template.into(),
    }
}

#[test]
fn high_cardinality_segments_fold() {
    let mut names = Names::default();
    let mut map = HashMap::new();
    for user in ["alice", "bob", "carol", "dave"] {
        map.insert(
            key(
                &mut names,
                "spiffe://td/a",
                "GET",
                &format!("/users/{user}/avatar"),
            ),
            Counts {
                allowed: 1,
                denied: 0,
            },
        );
    }
    map.insert(
        key(&mut names, "spiffe://td/a", "GET", "/users/me"),
        Counts {
            allowed: 5,
            denied: 0,
        },
    );
    fold(&mut map, 4);
    let mut templates: Vec<(&str, u64)> =
        map.iter().map(|(k, c)| (&*k.template, c.allowed)).collect();
    templates.sort();
    assert_eq!(templates, [("/users/*/avatar", 4), ("/users/me", 5)]);
    // Below the threshold, names stay.
    let mut map2: HashMap<Key, Counts> = map.clone();
    map2.insert(
        key(&mut names, "spiffe://td/a", "GET", "/teams/x"),
        Counts::default(),
    );
    map2.insert(
        key(&mut names, "spiffe://td/a", "GET", "/teams/y"),
        Counts::default(),
    );
    fold(&mut map2, 4);
    assert!(map2.keys().any(|k| &*k.template == "/teams/x"));
}

#[test]
fn one_rule_per_identity_and_route_split_only_where_methods_differ() {
    let mut names = Names::default();
    let mut map = HashMap::new();
    let c = Counts {
        allowed: 2,
        denied: 1,
    };
    map.insert(key(&mut names, "spiffe://td/ns/a", "GET", "/x/*"), c);
    map.insert(key(&mut names, "spiffe://td/ns/a", "HEAD", "/x/*"), c);
    map.insert(key(&mut names, "spiffe://td/ns/a", "POST", "/y"), c);
    map.insert(key(&mut names, "spiffe://td/ns/b", "GET", "/x/*"), c);
    map.insert(key(&mut names, "spiffe://td/ns/b", "GET", "/x/1"), c);
    let rules = suggested_rules(&map, &names, "obs", BTreeSet::new());
    let summary: Vec<(&str, Vec<String>, Vec<String>, u64)> = rules
        .iter()
        .map(|r| (r.id.as_str(), r.methods.clone(), r.paths.clone(), r.allowed))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "obs.api.ns.a.get-head",
                vec!["GET".into(), "HEAD".into()],
                vec!["/x/*".into()],
                4
            ),
            (
                "obs.api.ns.a.post",
                vec!["POST".into()],
                vec!["/y".into()],
                2
            ),
            ("obs.api.ns.b", vec!["GET".into()], vec!["/x/*".into()], 4),
        ]
    );
}

#[test]
fn the_policy_text_loads_with_the_gateways_loader() {
    let mut names = Names::default();
    let mut map = HashMap::new();
    map.insert(
        key(&mut names, "spiffe://td/ns/a", "GET", "/x/*/y"),
        Counts {
            allowed: 0,
            denied: 3,
        },
    );
    let suggestion = Suggestion {
        policy: None,
        out: None,
        rules: suggested_rules(&map, &names, "observed", BTreeSet::new()),
        stale_grants: None,
        rule_use: None,
        denied_now: None,
        explicitly_denied: Vec::new(),
        shared_threshold: 5,
        window_s: 600,
        shared_identities: Vec::new(),
        events: ReadStats::default(),
        counters: Counters::default(),
    };
    let text = policy_text(&suggestion);
    assert!(text.contains("# Review: all 3 observed request(s) were denied by default."));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, &text).unwrap();
    let mut errors = ConfigErrors::default();
    let (rules, _) = config::load_policy_files(&[file], &mut errors);
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].mode, Mode::Audit);
    assert_eq!(rules[0].paths[0].as_str(), "/x/*/y");
    assert!(check_policy(&text, None).is_ok());
    assert!(check_policy("[[rule]]\nid = \"x\"\n", None).is_err());
}

#[test]
fn suggested_ids_avoid_ids_already_taken() {
    let mut names = Names::default();
    let mut map = HashMap::new();
    map.insert(
        key(&mut names, "spiffe://td/ns/a", "GET", "/x"),
        Counts::default(),
    );
    let taken: BTreeSet<String> = ["obs.api.ns.a".to_string()].into();
    let rules = suggested_rules(&map, &names, "obs", taken);
    assert_eq!(rules[0].id, "obs.api.ns.a.2");
}

#[test]
fn rule_ids_are_valid_and_unique() {
    let id = rule_id(
        "observed",
        "spiffe://example.org/ns/shop/sa/checkout",
        "payments-api",
    );
    assert_eq!(id, "observed.payments-api.ns.shop.sa.checkout");
    assert!(config::validate_name(&id).is_ok());
    let long = format!("spiffe://td/{}", "a/".repeat(100) + "b");
    assert!(config::validate_name(&rule_id("observed", &long, "r")).is_ok());
    let mut taken = BTreeSet::new();
    assert_eq!(unique_id("a", &mut taken), "a");
    assert_eq!(unique_id("a", &mut taken), "a.2");
}

#[test]
fn aggregation_is_bounded() {
    let mut agg: Aggregate<Counts> = Aggregate::new(2);
    let mut names = Names::default();
    for p in ["/a", "/b", "/c", "/a", "/d"] {
        if let Some(c) = agg.entry(key(&mut names, "spiffe://td/x", "GET", p)) {
            c.allowed += 1;
        }
    }
    assert_eq!(agg.map.len(), 2);
    assert_eq!(agg.overflow, 2);
}
