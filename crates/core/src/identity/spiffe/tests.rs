use super::SpiffeIdError as E;
use super::*;

#[test]
fn accepts_valid_ids_and_splits_them() {
    let longest = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN - 12));
    let widest_td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    let widest = format!("spiffe://{widest_td}/x");
    for (s, td, path) in [
        ("spiffe://example.org", "example.org", ""),
        (
            "spiffe://example.org/ns/shop/sa/checkout",
            "example.org",
            "/ns/shop/sa/checkout",
        ),
        ("spiffe://a-b_c.9/X.y-z_0", "a-b_c.9", "/X.y-z_0"),
        ("spiffe://10.0.0.1/x", "10.0.0.1", "/x"),
        ("spiffe://td/..a/.b/...", "td", "/..a/.b/..."),
        (&longest, "td", &longest[11..]),
        (&widest, &widest_td, "/x"),
    ] {
        let id = SpiffeId::parse(s).unwrap();
        assert_eq!((id.as_str(), id.trust_domain(), id.path()), (s, td, path));
        assert_eq!(s.parse::<SpiffeId>(), Ok(id.clone()));
        assert_eq!(id.to_string(), s);
    }
    assert_eq!(
        format!("{:?}", SpiffeId::parse("spiffe://td/a").unwrap()),
        r#"SpiffeId("spiffe://td/a")"#
    );
}

#[test]
fn refuses_every_rule_violation() {
    let long_td = format!("spiffe://{}/x", "a".repeat(MAX_TRUST_DOMAIN_LEN + 1));
    let long_id = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN - 11));
    let cases: &[(&str, E)] = &[
        ("", E::Empty),
        ("example.org/x", E::WrongScheme),
        ("https://example.org/x", E::WrongScheme),
        ("SPIFFE://example.org/x", E::WrongScheme),
        ("Spiffe://example.org/x", E::WrongScheme),
        ("spiffe:/example.org/x", E::WrongScheme),
        (" spiffe://example.org/x", E::WrongScheme),
        ("spiffe://", E::MissingTrustDomain),
        ("spiffe:///x", E::MissingTrustDomain),
        ("spiffe://Example.org/x", E::BadTrustDomainChar),
        ("spiffe://EXAMPLE.ORG", E::BadTrustDomainChar),
        ("spiffe://exa mple.org", E::BadTrustDomainChar),
        ("spiffe://ex%41mple.org", E::BadTrustDomainChar),
        ("spiffe://[::1]/x", E::BadTrustDomainChar),
        ("spiffe://exämple.org", E::BadTrustDomainChar),
        (&long_td, E::TrustDomainTooLong),
        ("spiffe://example.org:8443/x", E::Port),
        ("spiffe://example.org:/x", E::Port),
        ("spiffe://user@example.org/x", E::UserInfo),
        ("spiffe://user:pw@example.org", E::UserInfo),
        ("spiffe://example.org/x?y=1", E::Query),
        ("spiffe://example.org?y", E::Query),
        ("spiffe://example.org/x?a#b", E::Query),
        ("spiffe://example.org/x#y", E::Fragment),
        ("spiffe://example.org/x#a?b", E::Fragment),
        ("spiffe://example.org//", E::EmptySegment),
        ("spiffe://example.org/a//b", E::EmptySegment),
        ("spiffe://example.org/.", E::DotSegment),
        ("spiffe://example.org/a/./b", E::DotSegment),
        ("spiffe://example.org/a/../b", E::DotSegment),
        ("spiffe://example.org/a/..", E::DotSegment),
        ("spiffe://example.org/a%20b", E::BadPathChar),
        ("spiffe://example.org/%2e%2e", E::BadPathChar),
        ("spiffe://example.org/a b", E::BadPathChar),
        ("spiffe://example.org/a*", E::BadPathChar),
        ("spiffe://example.org/a:b", E::BadPathChar),
        ("spiffe://example.org/caf\u{e9}", E::BadPathChar),
        ("spiffe://example.org/", E::TrailingSlash),
        ("spiffe://example.org/a/", E::TrailingSlash),
        (&long_id, E::TooLong),
    ];
    for (s, want) in cases {
        assert_eq!(SpiffeId::parse(s), Err(want.clone()), "{s:?}");
        assert_eq!(s.parse::<SpiffeId>(), Err(want.clone()), "{s:?}");
    }
}

#[test]
fn validates_bare_trust_domain_names() {
    for ok in [
        "example.org",
        "a",
        "td_1-x.9",
        &"a".repeat(MAX_TRUST_DOMAIN_LEN),
    ] {
        assert_eq!(validate_trust_domain(ok), Ok(()), "{ok}");
    }
    let too_long = "a".repeat(MAX_TRUST_DOMAIN_LEN + 1);
    for (bad, want) in [
        ("", E::MissingTrustDomain),
        ("Example.org", E::BadTrustDomainChar),
        ("spiffe://example.org", E::BadTrustDomainChar),
        ("example.org/x", E::BadTrustDomainChar),
        ("example.org:443", E::Port),
        ("me@example.org", E::UserInfo),
        (&too_long, E::TrustDomainTooLong),
    ] {
        assert_eq!(validate_trust_domain(bad), Err(want), "{bad}");
    }
}

#[test]
fn orders_and_hashes_by_the_whole_string() {
    let a = SpiffeId::parse("spiffe://a.org/z").unwrap();
    let b = SpiffeId::parse("spiffe://a.org2").unwrap();
    assert!(a < b, "byte-wise order, not (trust domain, path)");
    assert_ne!(
        SpiffeId::parse("spiffe://td/A").unwrap(),
        SpiffeId::parse("spiffe://td/a").unwrap(),
        "paths are case-sensitive"
    );
}

#[test]
fn every_error_has_a_reason() {
    assert_eq!(
        E::BadTrustDomainChar.to_string(),
        "trust domain contains a character outside [a-z0-9.-_]"
    );
    assert!(E::TooLong.to_string().contains("2048"));
}
