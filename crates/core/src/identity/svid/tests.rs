use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, IsCa, KeyPair,
    KeyUsagePurpose as Ku, SanType, SerialNumber,
};

use super::*;

const ID: &str = "spiffe://example.org/ns/shop/sa/cart";

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

/// A self-signed, well-formed SVID for [`ID`], first adjusted by `f`.
fn mint(f: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri(ID), SanType::DnsName("cart.shop".try_into().unwrap())];
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![Ku::DigitalSignature];
    params.serial_number = Some(SerialNumber::from(vec![0x01, 0x23, 0xab, 0xcd]));
    f(&mut params);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

/// A raw extension, `critical` as given, for what rcgen will not mint.
fn ext(oid: &[u64], critical: bool, content: Vec<u8>) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(oid, content);
    ext.set_criticality(critical);
    ext
}

/// keyUsage with digitalSignature only: BIT STRING, 7 unused bits, 0x80.
fn ku_digital_signature(critical: bool) -> CustomExtension {
    ext(&[2, 5, 29, 15], critical, vec![0x03, 0x02, 0x07, 0x80])
}

/// subjectAltName holding the URI `uri` only.
fn san_uri(critical: bool, uri: &str) -> CustomExtension {
    let mut name = vec![0x86, u8::try_from(uri.len()).unwrap()];
    name.extend_from_slice(uri.as_bytes());
    let mut content = vec![0x30, u8::try_from(name.len()).unwrap()];
    content.extend(name);
    ext(&[2, 5, 29, 17], critical, content)
}

#[test]
fn reads_the_facts_of_a_good_svid() {
    let der = mint(|_| {});
    let facts = inspect_leaf(&der).unwrap();
    assert_eq!(facts.spiffe_id.as_str(), ID);
    assert_eq!(facts.serial_hex, "0123abcd");
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    assert_eq!(facts.sha256.as_slice(), digest.as_ref());
    assert_eq!(facts.sha256_hex, hex(digest.as_ref()));
    assert!(facts
        .sha256_hex
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert!(facts.not_after_unix > facts.not_before_unix);
    assert_eq!(leaf_spiffe_id(&der).unwrap().as_str(), ID);

    // DER keeps a leading zero byte in front of a serial with its top bit set.
    let der = mint(|p| p.serial_number = Some(SerialNumber::from(vec![0x8f, 0x01])));
    assert_eq!(inspect_leaf(&der).unwrap().serial_hex, "008f01");
    // Other rules of the spec, when met, are accepted.
    for ok in [
        mint(|p| p.is_ca = IsCa::ExplicitNoCa),
        mint(|p| p.key_usages.push(Ku::KeyEncipherment)),
        mint(|p| p.key_usages.push(Ku::KeyAgreement)),
        mint(|p| {
            p.distinguished_name = DistinguishedName::new();
            p.subject_alt_names.clear();
            p.custom_extensions = vec![san_uri(true, ID)];
        }),
    ] {
        assert_eq!(inspect_leaf(&ok).unwrap().spiffe_id.as_str(), ID);
    }
}

#[test]
fn refuses_each_leaf_rule_violation() {
    let e = SvidError::BadSpiffeId;
    let cases = [
        (mint(|p| p.subject_alt_names = vec![]), SvidError::NoUriSan),
        (
            mint(|p| p.subject_alt_names = vec![SanType::DnsName("a.b".try_into().unwrap())]),
            SvidError::NoUriSan,
        ),
        (
            mint(|p| p.subject_alt_names.push(uri("spiffe://example.org/b"))),
            SvidError::MultipleUriSans(2),
        ),
        (
            mint(|p| p.subject_alt_names.push(uri("https://example.org/b"))),
            SvidError::MultipleUriSans(2),
        ),
        (
            mint(|p| p.subject_alt_names = vec![uri("https://example.org/a")]),
            e(SpiffeIdError::WrongScheme),
        ),
        (
            mint(|p| p.subject_alt_names = vec![uri("spiffe://Example.org/a")]),
            e(SpiffeIdError::BadTrustDomainChar),
        ),
        (
            mint(|p| p.subject_alt_names = vec![uri("spiffe://example.org/a/./b")]),
            e(SpiffeIdError::DotSegment),
        ),
        (
            mint(|p| p.subject_alt_names = vec![uri("spiffe://example.org")]),
            SvidError::NoPath(SpiffeId::parse("spiffe://example.org").unwrap()),
        ),
        (
            mint(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            SvidError::IsCa,
        ),
        (mint(|p| p.key_usages.clear()), SvidError::MissingKeyUsage),
        (
            mint(|p| p.key_usages = vec![Ku::KeyEncipherment]),
            SvidError::MissingDigitalSignature,
        ),
        (
            mint(|p| p.key_usages.push(Ku::KeyCertSign)),
            SvidError::ForbiddenKeyCertSign,
        ),
        (
            mint(|p| p.key_usages.push(Ku::CrlSign)),
            SvidError::ForbiddenCrlSign,
        ),
        (
            mint(|p| {
                p.key_usages.clear();
                p.custom_extensions = vec![ku_digital_signature(false)];
            }),
            SvidError::KeyUsageNotCritical,
        ),
        (
            mint(|p| p.distinguished_name = DistinguishedName::new()),
            SvidError::SanNotCritical,
        ),
    ];
    for (i, (der, want)) in cases.into_iter().enumerate() {
        assert_eq!(inspect_leaf(&der).unwrap_err(), want, "case {i}");
    }
}

#[test]
fn leaf_spiffe_id_checks_only_the_id() {
    let ca = mint(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    assert_eq!(leaf_spiffe_id(&ca).unwrap().as_str(), ID);
    let two = mint(|p| p.subject_alt_names.push(uri("spiffe://example.org/b")));
    assert_eq!(leaf_spiffe_id(&two), Err(SvidError::MultipleUriSans(2)));
    let td = mint(|p| p.subject_alt_names = vec![uri("spiffe://example.org")]);
    assert!(matches!(leaf_spiffe_id(&td), Err(SvidError::NoPath(_))));
}

#[test]
fn refuses_what_is_not_one_well_formed_certificate() {
    let mut trailing = mint(|_| {});
    trailing.push(0);
    let duplicate_ku = mint(|p| p.custom_extensions = vec![ku_digital_signature(true)]);
    let broken_ku = mint(|p| {
        p.key_usages.clear();
        p.custom_extensions = vec![ext(&[2, 5, 29, 15], true, vec![0x05, 0x00])];
    });
    let broken_bc = mint(|p| p.custom_extensions = vec![ext(&[2, 5, 29, 19], true, vec![1])]);
    for bad in [
        &b""[..],
        b"not a certificate",
        &trailing,
        &duplicate_ku,
        &broken_ku,
        &broken_bc,
    ] {
        let err = inspect_leaf(bad).unwrap_err();
        assert!(matches!(err, SvidError::Malformed(_)), "{err:?}");
    }
    assert!(matches!(
        leaf_spiffe_id(b"\x30\x00"),
        Err(SvidError::Malformed(_))
    ));
}

#[test]
fn reasons_read_well_in_a_log() {
    assert_eq!(
        SvidError::MultipleUriSans(2).to_string(),
        "leaf certificate has 2 URI SANs; an X.509-SVID has exactly one"
    );
    assert_eq!(
        SvidError::BadSpiffeId(SpiffeIdError::Port).to_string(),
        "URI SAN is not a valid SPIFFE ID: trust domain carries a port"
    );
}

/// An SVID for [`ID`] whose subject key is an RSA key of `bits`, signed by a throwaway CA.
fn mint_rsa(bits: usize) -> Vec<u8> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
    let public = zonegate_devkit::devpki::RawPublicKey {
        der: private.to_public_key().to_pkcs1_der().unwrap().into_vec(),
        algorithm: &rcgen::PKCS_RSA_SHA256,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri(ID)];
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![Ku::DigitalSignature];
    params
        .signed_by(&public, &ca, &ca_key)
        .unwrap()
        .der()
        .to_vec()
}

#[test]
fn weak_keys_are_refused_and_strong_ones_of_every_accepted_kind_pass() {
    let weak = inspect_leaf(&mint_rsa(1024)).unwrap_err();
    assert!(
        matches!(&weak, SvidError::WeakKey(why) if why.contains("1024 bits")),
        "{weak:?}"
    );
    assert!(weak.to_string().contains("at least 2048"), "{weak}");
    inspect_leaf(&mint_rsa(2048)).expect("RSA-2048 is strong enough");
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![uri(ID)];
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![Ku::DigitalSignature];
        let key = KeyPair::generate_for(alg).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        inspect_leaf(&der).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
}
