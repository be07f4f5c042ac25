use rcgen::KeyUsagePurpose as Ku;

use super::*;
use crate::devpki::{DevCa, LeafSpec};

fn mint(f: impl FnOnce(&mut LeafSpec)) -> Vec<u8> {
    let ca = DevCa::new("example.org").unwrap();
    let mut spec = LeafSpec::svid("spiffe://example.org/ns/shop/sa/cart");
    f(&mut spec);
    ca.issue(&spec).unwrap().cert_der.to_vec()
}

#[test]
fn reads_the_facts_of_a_good_svid() {
    let der = mint(|_| {});
    let facts = inspect_leaf(&der).unwrap();
    assert_eq!(
        facts.spiffe_id.as_str(),
        "spiffe://example.org/ns/shop/sa/cart"
    );
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(facts.serial_hex, hex(cert.raw_serial()));
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    assert_eq!(facts.sha256, digest.as_ref());
    assert_eq!(facts.sha256_hex.len(), 64);
    assert!(facts.not_after_unix > facts.not_before_unix);
}

#[test]
fn refuses_each_leaf_rule_violation() {
    let cases: Vec<(Vec<u8>, SvidError)> = vec![
        (
            mint(|s| {
                s.uri_sans.clear();
                s.dns_sans = vec!["x.example".into()];
            }),
            SvidError::NoUriSan,
        ),
        (
            mint(|s| s.uri_sans.push("spiffe://example.org/b".into())),
            SvidError::MultipleUriSans(2),
        ),
        (
            mint(|s| s.uri_sans = vec!["https://example.org/a".into()]),
            SvidError::BadSpiffeId(SpiffeIdError::WrongScheme),
        ),
        (
            mint(|s| s.uri_sans = vec!["spiffe://Ex.org/a".into()]),
            SvidError::BadSpiffeId(SpiffeIdError::BadTrustDomainChar),
        ),
        (mint(|s| s.is_ca = true), SvidError::IsCa),
        (mint(|s| s.key_usages.clear()), SvidError::MissingKeyUsage),
        (
            mint(|s| s.key_usages = vec![Ku::KeyEncipherment]),
            SvidError::MissingDigitalSignature,
        ),
        (
            mint(|s| s.key_usages.push(Ku::KeyCertSign)),
            SvidError::ForbiddenKeyCertSign,
        ),
        (
            mint(|s| s.key_usages.push(Ku::CrlSign)),
            SvidError::ForbiddenCrlSign,
        ),
    ];
    for (der, want) in cases {
        assert_eq!(inspect_leaf(&der).unwrap_err(), want);
    }
    assert!(matches!(
        inspect_leaf(b"not a certificate"),
        Err(SvidError::Malformed(_))
    ));
    let mut trailing = mint(|_| {});
    trailing.push(0);
    assert!(matches!(
        inspect_leaf(&trailing),
        Err(SvidError::Malformed(_))
    ));
}
