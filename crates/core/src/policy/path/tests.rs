use super::PathError as E;
use super::*;

const ACCEPTED: &[(&str, &str)] = &[
    ("/", "/"),
    ("/a/b?x=1&y=%2F", "/a/b?x=1&y=%2F"),
    ("/a?q=../%zz/..;/%00x", "/a?q=../%zz/..;/%00x"),
    ("/a?", "/a?"),
    ("/a/%7Eb", "/a/~b"),
    ("/%41%7a%30-%5F", "/Az0-_"),
    ("/a/%2e%2e/b", "/b"),
    ("/a/%2E/b", "/a/b"),
    ("/a/.%2e/b", "/b"),
    ("/public/../admin", "/admin"),
    ("/x/public/%2e%2e/%2E%2e/admin", "/admin"),
    ("//admin", "/admin"),
    ("//a///b", "/a/b"),
    ("/a//", "/a/"),
    ("/a/b/", "/a/b/"),
    ("/a/./", "/a/"),
    ("/a/.", "/a/"),
    ("/a/b/..", "/a/"),
    ("/a/..", "/"),
    ("/./", "/"),
    ("/a//..", "/"),
    ("/public;x/../admin", "/admin"),
    ("/a/..b/...", "/a/..b/..."),
    ("/a/%3a", "/a/%3A"),
    ("/caf%C3%A9", "/caf%C3%A9"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    ("/a%20b", "/a%20b"),
    ("/a|b{c}", "/a%7Cb%7Bc%7D"),
    ("/a%7cb", "/a%7Cb"),
    ("/%25", "/%25"),
    ("/%25zz", "/%25zz"),
    ("/x:@!$&'()*+,=", "/x:@!$&'()*+,="),
];

const REFUSED: &[(&str, E)] = &[
    ("http://evil/admin", E::NotOriginForm),
    ("evil:443", E::NotOriginForm),
    ("*", E::NotOriginForm),
    ("admin", E::NotOriginForm),
    ("", E::NotOriginForm),
    ("?x=1", E::NotOriginForm),
    ("/a#frag", E::Fragment),
    ("/a?x=#", E::Fragment),
    ("/a%2Fb", E::EncodedSlash),
    ("/a%2fb", E::EncodedSlash),
    ("/public/..%2fadmin", E::EncodedSlash),
    ("/a%5cb", E::EncodedBackslash),
    ("/a\\b", E::Backslash),
    ("/public\\..\\admin", E::Backslash),
    ("/a%00b", E::NulByte),
    ("/a\0b", E::NulByte),
    ("/a%zz", E::BadPercentEncoding),
    ("/a%2", E::BadPercentEncoding),
    ("/a%", E::BadPercentEncoding),
    ("/%u002e%u002e/admin", E::BadPercentEncoding),
    ("/a\tb", E::ControlCharacter),
    ("/a\r\nX: y", E::ControlCharacter),
    ("/a?x=\n", E::ControlCharacter),
    ("/a%0ab", E::ControlCharacter),
    ("/a%7f", E::ControlCharacter),
    ("/a b", E::Space),
    ("/café", E::NonAscii),
    ("/a?q=é", E::NonAscii),
    ("/..", E::AboveRoot),
    ("/a/../../b", E::AboveRoot),
    ("/%2e%2e/x", E::AboveRoot),
    ("/public/..;/admin", E::DotSegmentWithParameters),
    ("/public/.;x/admin", E::DotSegmentWithParameters),
    ("/public/%2e%2e;/admin", E::DotSegmentWithParameters),
    ("/public/..%3b/admin", E::DotSegmentWithParameters),
    ("/..;/admin", E::DotSegmentWithParameters),
    ("/a;jsessionid=1/b", E::PathParameters),
    ("/payments/admin;x", E::PathParameters),
    ("/payments/admin%3bx", E::PathParameters),
    ("/public/%252e%252e/admin", E::DoubleEncoding),
    ("/public/..%252fadmin", E::DoubleEncoding),
    ("/a%25%32%46b", E::DoubleEncoding),
    ("/a%25u002e", E::DoubleEncoding),
    ("/a/%C0%AE%C0%AE/x", E::InvalidUtf8),
    ("/a%ff", E::InvalidUtf8),
    ("/caf%C3", E::InvalidUtf8),
];

#[test]
fn accepts_with_the_exact_normal_form() {
    for &(raw, want) in ACCEPTED {
        let got = normalize(raw).map(|t| t.to_request_target());
        assert_eq!(got, Ok(want.to_string()), "{raw:?}");
    }
}

#[test]
fn refuses_ambiguous_targets() {
    for (raw, want) in REFUSED {
        assert_eq!(normalize(raw).as_ref(), Err(want), "{raw:?}");
    }
}

#[test]
fn normal_form_is_a_fixed_point() {
    for &(raw, _) in ACCEPTED {
        let Ok(once) = normalize(raw) else {
            panic!("{raw:?} refused");
        };
        assert_eq!(normalize(&once.to_request_target()), Ok(once), "{raw:?}");
    }
}

#[test]
fn splits_path_and_query() {
    let cases = [
        ("/a/%7Eb/../c?x=1", "/a/c", Some("x=1")),
        ("/a?b?c", "/a", Some("b?c")),
        ("/a?", "/a", Some("")),
        ("/a", "/a", None),
    ];
    for (raw, path, query) in cases {
        let want = NormalizedTarget {
            path: path.to_string(),
            query: query.map(str::to_string),
        };
        assert_eq!(normalize(raw), Ok(want), "{raw:?}");
    }
}

#[test]
fn enforces_the_length_limit() {
    let at_limit = format!("/{}", "a".repeat(MAX_TARGET_LEN - 1));
    let over = format!("/{}", "a".repeat(MAX_TARGET_LEN));
    // Within the limit as received, over it once raw `|` is encoded to `%7C`.
    let grows = format!("/{}", "|".repeat(MAX_TARGET_LEN / 2));
    let deep = format!("/{}", "a/".repeat(MAX_TARGET_LEN / 2 - 1));
    assert_eq!(normalize(&at_limit).map(|t| t.path), Ok(at_limit.clone()));
    assert_eq!(normalize(&over), Err(E::TooLong));
    assert_eq!(normalize(&grows), Err(E::TooLong));
    assert_eq!(normalize(&deep).map(|t| t.path), Ok(deep.clone()));
}

#[test]
fn errors_display_a_reason() {
    assert_eq!(
        E::EncodedSlash.to_string(),
        "path contains an encoded slash (%2F)"
    );
    for (_, error) in REFUSED {
        assert!(!error.to_string().is_empty());
    }
}

/// The fast path must give exactly what the full pass gives, for every path it takes.
#[test]
fn canonical_paths_are_left_as_the_full_pass_leaves_them() {
    let alphabet: &[u8] = b"/a.;%2F~-_:@!$&'()*+,=\\";
    let mut taken = 0;
    // Every path of up to five characters from the alphabet (a slash first), plus the
    // accepted examples: the ones taken by the fast path are unchanged by the full pass.
    let mut paths: Vec<String> = ACCEPTED
        .iter()
        .map(|(raw, _)| raw.split('?').next().unwrap_or("").to_string())
        .collect();
    let mut frontier = vec![String::from("/")];
    for _ in 0..4 {
        let mut next = Vec::new();
        for p in &frontier {
            for &c in alphabet {
                next.push(format!("{p}{}", char::from(c)));
            }
        }
        paths.extend(frontier);
        frontier = next;
    }
    paths.extend(frontier);
    for path in &paths {
        if !path.starts_with('/') || !is_canonical(path) {
            continue;
        }
        taken += 1;
        assert_eq!(normalize_path(path).as_deref(), Ok(path.as_str()), "{path}");
    }
    assert!(taken > 1000, "the fast path took only {taken} paths");
    for slow in [
        "//a",
        "/a//b",
        "/.",
        "/..",
        "/a/.",
        "/a/..",
        "/a;b",
        "/a%7E",
        "/a\\b",
        "/.well-known",
    ] {
        assert!(!is_canonical(slow), "{slow}");
    }
}
