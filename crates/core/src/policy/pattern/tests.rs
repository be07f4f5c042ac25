use super::PatternError as E;
use super::*;
use std::time::{Duration, Instant};

const MATCHES: &[(&str, &str, bool)] = &[
    ("/v1/charge", "/v1/charge", true),
    ("/v1/charge", "/v1/charge/", false),
    ("/v1/charge", "/v1/charges", false),
    ("/v1/charge", "/V1/charge", false),
    ("/", "/", true),
    ("/", "/a", false),
    ("/v1/**", "/v1/", true),
    ("/v1/**", "/v1/a", true),
    ("/v1/**", "/v1/a/b/c/", true),
    ("/v1/**", "/v1", false),
    ("/v1/**", "/v1x", false),
    ("/v1/**", "/v2/a", false),
    ("/V1/**", "/v1/a", false),
    ("/**", "/", true),
    ("/**", "/anything/at/all", true),
    ("/a/**/z", "/a/z", true),
    ("/a/**/z", "/a/b/z", true),
    ("/a/**/z", "/a/b/c/z", true),
    ("/a/**/z", "/a/z/z", true),
    ("/a/**/z", "/a/b/c/y", false),
    ("/a/**/z", "/a/z/", false),
    ("/a/**/z", "/az", false),
    ("/**/z", "/z", true),
    ("/**/z", "/a/b/z", true),
    ("/a/**/", "/a/", true),
    ("/a/**/", "/a/b/", true),
    ("/a/**/", "/a/b", false),
    ("/a/**/**", "/a/", true),
    ("/a/**/**", "/a", false),
    ("/a/*", "/a/b", true),
    ("/a/*", "/a/", true),
    ("/a/*", "/a/b/c", false),
    ("/a/*", "/a", false),
    ("/a/*/", "/a/b/", true),
    ("/v1/*.json", "/v1/x.json", true),
    ("/v1/*.json", "/v1/.json", true),
    ("/v1/*.json", "/v1/x.jsonp", false),
    ("/v1/*.json", "/v1/a/x.json", false),
    ("/v1/order-*", "/v1/order-17", true),
    ("/v1/order-*", "/v1/orders-17", false),
    ("/v1/*/items/*", "/v1/9/items/3", true),
    ("/v1/*/items/*", "/v1/9/items", false),
    ("/v1/*/items/**", "/v1/9/items/3/4", true),
    ("/a*b*c", "/abc", true),
    ("/a*b*c", "/axxbyyc", true),
    ("/a*b*c", "/axxbyy", false),
    ("/a*b*c", "/ac", false),
    ("/a*a", "/a", false),
    ("/a*a", "/aa", true),
    ("/*-*-*", "/x--y", true),
    ("/a/*", "a/b", false),
    ("/a/**", "", false),
    ("/pay/charges/*/refund", "/pay/charges/7/refund", true),
    ("/pay/charges/*/refund", "/pay/charges/7/8/refund", false),
];

fn pattern(s: &str) -> PathPattern {
    PathPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn matches_exact_prefix_and_glob() {
    for &(p, path, want) in MATCHES {
        assert_eq!(pattern(p).matches(path), want, "{p} vs {path}");
    }
}

#[test]
fn fast_paths_agree_with_segment_matching() {
    for &(p, path, want) in MATCHES {
        let parts: Vec<&str> = p[1..].split('/').collect();
        let general = path.strip_prefix('/').is_some_and(|rest| {
            match_segments(&compile(&parts), &rest.split('/').collect::<Vec<_>>())
        });
        assert_eq!(general, want, "{p} vs {path}");
    }
}

#[test]
fn every_match_starts_with_the_literal_prefix() {
    for &(p, path, _) in MATCHES {
        let p = pattern(p);
        if p.matches(path) {
            assert!(path.starts_with(p.literal_prefix()), "{p} vs {path}");
        }
    }
}

#[test]
fn reports_prefix_and_exactness() {
    let cases = [
        ("/v1/charge", "/v1/charge", true),
        ("/", "/", true),
        ("/v1/", "/v1/", true),
        ("/v1/**", "/v1/", false),
        ("/v1/orders/*/items", "/v1/orders/", false),
        ("/v1/order-*", "/v1/", false),
        ("/a/**/z", "/a/", false),
        ("/**", "/", false),
        ("/*.json", "/", false),
    ];
    for (p, prefix, exact) in cases {
        let compiled = pattern(p);
        assert_eq!(compiled.as_str(), p);
        assert_eq!(compiled.to_string(), p);
        assert_eq!(compiled.literal_prefix(), prefix, "{p}");
        assert_eq!(compiled.is_exact(), exact, "{p}");
    }
}

#[test]
fn refuses_bad_patterns() {
    let not_normal = |s: &str| E::NotNormalized(s.to_string());
    let cases = [
        ("", E::Empty),
        ("v1/**", E::NotAbsolute),
        ("*", E::NotAbsolute),
        ("**", E::NotAbsolute),
        ("/a**b", E::DoubleStarNotWholeSegment),
        ("/a/**x", E::DoubleStarNotWholeSegment),
        ("/***", E::DoubleStarNotWholeSegment),
        ("/a?x=1", E::QueryNotAllowed),
        ("/a#b", E::InvalidPath(PathError::Fragment)),
        ("/a%2Fb", E::InvalidPath(PathError::EncodedSlash)),
        ("/a%zz", E::InvalidPath(PathError::BadPercentEncoding)),
        ("/..", E::InvalidPath(PathError::AboveRoot)),
        ("/a b", E::InvalidPath(PathError::Space)),
        ("/a//b", not_normal("/a/b")),
        ("/a/./b", not_normal("/a/b")),
        ("/a/../b", not_normal("/b")),
        ("/a/%7E", not_normal("/a/~")),
        ("/a/%3a", not_normal("/a/%3A")),
        ("/a|b", not_normal("/a%7Cb")),
        ("/a/**/../b", not_normal("/a/b")),
    ];
    for (p, want) in cases {
        assert_eq!(PathPattern::parse(p), Err(want), "{p:?}");
    }
    assert_eq!(
        E::InvalidPath(PathError::EncodedSlash).to_string(),
        "no request could match: path contains an encoded slash (%2F)"
    );
}

/// Straightforward recursive definition of the semantics, exponential but obviously right.
fn reference(pattern: &[&str], path: &[&str]) -> bool {
    fn glob(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|k| glob(rest, &t[k..])),
            Some((c, rest)) => t.first() == Some(c) && glob(rest, &t[1..]),
        }
    }
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", [])) => !path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|k| reference(rest, &path[k..])),
        Some((segment, rest)) => path.split_first().is_some_and(|(first, others)| {
            glob(segment.as_bytes(), first.as_bytes()) && reference(rest, others)
        }),
    }
}

#[test]
fn agrees_with_the_reference_semantics() {
    let patterns = [
        "/**",
        "/a/**",
        "/**/a",
        "/a/**/b",
        "/**/a/**",
        "/*/**/b/",
        "/a*/*b",
        "/*a*/**/*b*",
        "/a/*/**/",
        "/**/**/b",
        "/*",
        "/a",
        "/ab/",
        "/a/**/**/b/**",
    ];
    let names = ["a", "b", "ab", "ba"];
    let mut paths = vec![vec![""]];
    let mut frontier = vec![vec![]];
    for _ in 0..4 {
        let mut next = Vec::new();
        for prefix in &frontier {
            for name in names {
                let mut path: Vec<&str> = Vec::clone(prefix);
                path.push(name);
                paths.push(path.clone());
                let mut slash = path.clone();
                slash.push("");
                paths.push(slash);
                next.push(path);
            }
        }
        frontier = next;
    }
    for p in patterns {
        let compiled = pattern(p);
        let parts: Vec<&str> = p[1..].split('/').collect();
        for segments in &paths {
            let path = format!("/{}", segments.join("/"));
            let want = reference(&parts, segments);
            assert_eq!(compiled.matches(&path), want, "{p} vs {path}");
        }
    }
}

#[test]
fn hostile_paths_match_instantly() {
    let deep = format!("/{}/b", vec!["a"; 2047].join("/"));
    let long_segment = format!("/{}", "a".repeat(4095));
    let many_stars = format!("/{}x", "**/".repeat(100));
    let cases = [
        (many_stars.as_str(), deep.as_str(), false),
        ("/**/a/**/a/**/a/**/a/**/a/**/c", &deep, false),
        ("/**/a/**/a/**/a/**/a/**/a/**/b", &deep, true),
        ("/**/*a*a*a*a*a*b/**/x", &deep, false),
        ("/*a*a*a*a*a*a*a*a*a*a*b", &long_segment, false),
        ("/a*a*a*a*a*a*a*a*a*a*a", &long_segment, true),
    ];
    let started = Instant::now();
    for (p, path, want) in cases {
        assert!(path.len() >= 4096);
        assert_eq!(pattern(p).matches(path), want, "{p}");
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}
