use super::SpiffeIdError as E;
use super::*;

#[test]
fn accepts_valid_ids_and_splits_them() {
    for (s, td, path) in [
        ("spiffe://example.org", "example.org", ""),
        (
            "spiffe://example.org/ns/shop/sa/checkout",
            "example.org",
            "/ns/shop/sa/checkout",
        ),
        ("spiffe://a-b_c.9/X.y-z_0", "a-b_c.9", "/X.y-z_0"),
        ("spiffe://td/..a/.b", "td", "/..a/.b"),
    ] {
        let id = SpiffeId::parse(s).unwrap();
        assert_eq!((id.as_str(), id.trust_domain(), id.path()), (s, td, path));
    }
}

#[test]
fn refuses_every_rule_violation() {
    let long_td = format!("spiffe://{}", "a".repeat(256));
    let long_id = format!("spiffe://td/{}", "a".repeat(2040));
    let cases: &[(&str, E)] = &[
        ("", E::Empty),
        ("http://example.org/x", E::WrongScheme),
        ("SPIFFE://example.org/x", E::WrongScheme),
        ("spiffe:/example.org/x", E::WrongScheme),
        ("spiffe://", E::MissingTrustDomain),
        ("spiffe:///x", E::MissingTrustDomain),
        ("spiffe://Example.org/x", E::BadTrustDomainChar),
        ("spiffe://exa mple.org", E::BadTrustDomainChar),
        ("spiffe://example.org:8443/x", E::Port),
        ("spiffe://user@example.org/x", E::UserInfo),
        ("spiffe://example.org/x?y=1", E::Query),
        ("spiffe://example.org/x#y", E::Fragment),
        ("spiffe://example.org/a//b", E::EmptySegment),
        ("spiffe://example.org/a/./b", E::DotSegment),
        ("spiffe://example.org/a/../b", E::DotSegment),
        ("spiffe://example.org/a/..", E::DotSegment),
        ("spiffe://example.org/a%20b", E::BadPathChar),
        ("spiffe://example.org/a b", E::BadPathChar),
        ("spiffe://example.org/a*", E::BadPathChar),
        ("spiffe://example.org/", E::TrailingSlash),
        ("spiffe://example.org/a/", E::TrailingSlash),
        (&long_td, E::TrustDomainTooLong),
        (&long_id, E::TooLong),
    ];
    for (s, want) in cases {
        assert_eq!(
            SpiffeId::parse(s).as_ref().map_err(Clone::clone).err(),
            Some(want.clone()),
            "{s}"
        );
    }
}
