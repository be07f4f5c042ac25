use super::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

#[test]
fn matches_at_segment_boundaries() {
    let cases = [
        ("*", "spiffe://a.org/x", true),
        (
            "spiffe://a.org/ns/shop/sa/cart",
            "spiffe://a.org/ns/shop/sa/cart",
            true,
        ),
        (
            "spiffe://a.org/ns/shop/sa/cart",
            "spiffe://a.org/ns/shop/sa/cart2",
            false,
        ),
        (
            "spiffe://a.org/ns/shop/*",
            "spiffe://a.org/ns/shop/sa/cart",
            true,
        ),
        ("spiffe://a.org/ns/shop/*", "spiffe://a.org/ns/shop", false),
        (
            "spiffe://a.org/ns/shop/*",
            "spiffe://a.org/ns/shopping/sa/x",
            false,
        ),
        ("spiffe://a.org/*", "spiffe://a.org/anything/at/all", true),
        ("spiffe://a.org/*", "spiffe://a.org.evil/x", false),
        ("spiffe://a.org/*", "spiffe://b.org/x", false),
    ];
    for (pattern, candidate, want) in cases {
        let p = IdPattern::parse(pattern).unwrap();
        assert_eq!(p.matches(&id(candidate)), want, "{pattern} vs {candidate}");
        assert_eq!(p.to_string(), pattern);
    }
}

#[test]
fn refuses_invalid_patterns() {
    for bad in [
        "",
        "spiffe://A.org/*",
        "spiffe://a.org/x/**",
        "http://a.org/*",
        "spiffe://a.org/../*",
    ] {
        assert!(IdPattern::parse(bad).is_err(), "{bad} accepted");
    }
}
