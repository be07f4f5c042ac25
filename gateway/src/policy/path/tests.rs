use super::PathError as E;
use super::*;

#[test]
fn normalises_to_what_the_upstream_should_see() {
    let cases = [
        ("/", "/"),
        ("/a/b?x=1&y=%2F", "/a/b?x=1&y=%2F"),
        ("/a/%7Eb", "/a/~b"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/public/../admin", "/admin"),
        ("//a///b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/a/./", "/a/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/a;jsessionid=1/b", "/a;jsessionid=1/b"),
        ("/a/%3a", "/a/%3A"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/%41%42", "/AB"),
        ("/a?", "/a?"),
        ("/a?q=../..", "/a?q=../.."),
        ("/.../x", "/.../x"),
        ("/a/..b", "/a/..b"),
    ];
    for (raw, want) in cases {
        let got = normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(got.to_request_target(), want, "{raw}");
    }
}

#[test]
fn refuses_ambiguous_targets() {
    let long = format!("/{}", "a".repeat(MAX_TARGET_LEN));
    let cases: &[(&str, E)] = &[
        ("http://evil/admin", E::NotOriginForm),
        ("*", E::NotOriginForm),
        ("admin", E::NotOriginForm),
        ("/a#frag", E::Fragment),
        ("/a%2Fb", E::EncodedSlash),
        ("/a%2fb", E::EncodedSlash),
        ("/a%5cb", E::EncodedBackslash),
        ("/a\\b", E::Backslash),
        ("/a%00b", E::NulByte),
        ("/a%zz", E::BadPercentEncoding),
        ("/a%2", E::BadPercentEncoding),
        ("/a%", E::BadPercentEncoding),
        ("/a\tb", E::ControlCharacter),
        ("/a%0ab", E::ControlCharacter),
        ("/a%7f", E::ControlCharacter),
        ("/café", E::NonAscii),
        ("/..", E::AboveRoot),
        ("/a/../../b", E::AboveRoot),
        ("/%2e%2e/x", E::AboveRoot),
        ("/public/..;/admin", E::DotSegmentWithParameters),
        ("/public/.;x/admin", E::DotSegmentWithParameters),
        (&long, E::TooLong),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize(raw).err().as_ref(), Some(want), "{raw:?}");
    }
}
