use super::*;

#[test]
fn matches_exact_prefix_and_glob() {
    let cases = [
        ("/v1/charge", "/v1/charge", true),
        ("/v1/charge", "/v1/charge/", false),
        ("/v1/charge", "/v1/charges", false),
        ("/v1/**", "/v1/", true),
        ("/v1/**", "/v1/a", true),
        ("/v1/**", "/v1/a/b/c", true),
        ("/v1/**", "/v1", false),
        ("/v1/**", "/v1x", false),
        ("/v1/**", "/v2/a", false),
        ("/**", "/", true),
        ("/**", "/anything/at/all", true),
        ("/a/**/z", "/a/z", true),
        ("/a/**/z", "/a/b/z", true),
        ("/a/**/z", "/a/b/c/z", true),
        ("/a/**/z", "/a/b/c/y", false),
        ("/a/*", "/a/b", true),
        ("/a/*", "/a/", true),
        ("/a/*", "/a/b/c", false),
        ("/a/*", "/a", false),
        ("/v1/*.json", "/v1/x.json", true),
        ("/v1/*.json", "/v1/x.jsonp", false),
        ("/v1/*.json", "/v1/a/x.json", false),
        ("/v1/order-*", "/v1/order-17", true),
        ("/v1/order-*", "/v1/orders-17", false),
        ("/v1/*/items/*", "/v1/9/items/3", true),
        ("/v1/*/items/*", "/v1/9/items", false),
        ("/a*b*c", "/abc", true),
        ("/a*b*c", "/axxbyyc", true),
        ("/a*b*c", "/axxbyy", false),
        ("/V1/**", "/v1/a", false),
    ];
    for (pattern, path, want) in cases {
        let p = PathPattern::parse(pattern).unwrap();
        assert_eq!(p.matches(path), want, "{pattern} vs {path}");
    }
}

#[test]
fn prefixes_and_parse_errors() {
    let p = PathPattern::parse("/v1/orders/*/items").unwrap();
    assert_eq!(p.literal_prefix(), "/v1/orders/");
    assert!(!p.is_exact());
    assert!(PathPattern::parse("/v1/x").unwrap().is_exact());
    assert_eq!(PathPattern::parse("").unwrap_err(), PatternError::Empty);
    assert_eq!(
        PathPattern::parse("v1/**").unwrap_err(),
        PatternError::NotAbsolute
    );
    assert_eq!(
        PathPattern::parse("/a**b").unwrap_err(),
        PatternError::DoubleStarNotWholeSegment
    );
    assert_eq!(
        PathPattern::parse("/a/**x").unwrap_err(),
        PatternError::DoubleStarNotWholeSegment
    );
}

#[test]
fn hostile_paths_match_quickly() {
    let pattern = PathPattern::parse("/**/**/**/**/**/a*a*a*a*a*b/**/x").unwrap();
    let path = format!("/{}", vec!["a".repeat(60); 64].join("/"));
    assert!(!pattern.matches(&path));
}
