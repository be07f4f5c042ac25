use base64::Engine;
use zonegate_devkit::devpki::DevCa;

use super::*;

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn spiffe_bundle_of(cas: &[&DevCa], extra_keys: &[serde_json::Value]) -> Vec<u8> {
    let mut keys: Vec<serde_json::Value> = cas
        .iter()
        .map(|ca| serde_json::json!({ "use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [b64(&ca.cert_der())] }))
        .collect();
    keys.extend_from_slice(extra_keys);
    serde_json::to_vec(&serde_json::json!({
        "keys": keys, "spiffe_sequence": 7, "spiffe_refresh_hint": 300
    }))
    .unwrap()
}

#[test]
fn a_spiffe_bundle_gives_its_x509_authorities_and_ignores_jwt_ones() {
    let ca = DevCa::new("example.org").unwrap();
    let next = DevCa::new("example.org").unwrap();
    let jwt = serde_json::json!({ "use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA" });
    let found = x509_authorities(&spiffe_bundle_of(&[&ca, &next], &[jwt]), "example.org").unwrap();
    assert_eq!(found.roots, vec![ca.cert_der(), next.cert_der()]);
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    assert_eq!((found.sequence, found.refresh_hint_s), (Some(7), Some(300)));
}

#[test]
fn a_broken_x509_key_is_skipped_with_its_reason_and_a_bundle_without_roots_refused() {
    let ca = DevCa::new("example.org").unwrap();
    let two = serde_json::json!({ "use": "x509-svid", "x5c": [b64(&ca.cert_der()), b64(&ca.cert_der())] });
    let url_safe = serde_json::json!({ "use": "x509-svid", "x5c": ["-_-_"] });
    let garbage = serde_json::json!({ "use": "x509-svid", "x5c": [b64(b"not a certificate")] });
    let found = x509_authorities(
        &spiffe_bundle_of(&[&ca], &[two, url_safe, garbage]),
        "example.org",
    )
    .unwrap();
    assert_eq!(found.roots, vec![ca.cert_der()]);
    assert_eq!(found.skipped.len(), 3, "{:?}", found.skipped);
    assert!(
        found.skipped[0].contains("keys[1]: `x5c` has 2 elements"),
        "{:?}",
        found.skipped
    );
    assert!(
        found.skipped[1].contains("not base64"),
        "{:?}",
        found.skipped
    );
    assert!(
        found.skipped[2].contains("not a certificate"),
        "{:?}",
        found.skipped
    );

    let only_jwt = br#"{"keys":[{"use":"jwt-svid","kty":"EC","kid":"a"}]}"#;
    let e = x509_authorities(only_jwt, "example.org").unwrap_err();
    assert!(
        e.contains("no X.509 authority for trust domain `example.org`"),
        "{e}"
    );
    for (bad, why) in [
        (&br#"{"keys": 1}"#[..], "a `keys` array"),
        (
            &br#"{"keys": [], "spiffe_sequence": -1}"#[..],
            "`spiffe_sequence` is not",
        ),
        (&b"{ not json"[..], "not a SPIFFE bundle"),
    ] {
        let e = x509_authorities(bad, "example.org").unwrap_err();
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn a_root_that_names_another_trust_domain_never_anchors_this_one() {
    let ours = DevCa::new("example.org").unwrap();
    let federated = DevCa::new("partner.org").unwrap();
    // spiffe-helper with federated domains: every domain's roots in one PEM file.
    let pem = format!("{}{}", ours.cert_pem(), federated.cert_pem());
    let found = x509_authorities(pem.as_bytes(), "example.org").unwrap();
    assert_eq!(found.roots, vec![ours.cert_der()]);
    assert_eq!(
        found.skipped,
        vec!["authority 2: names trust domain `partner.org`, not `example.org`".to_string()]
    );
    let theirs = x509_authorities(pem.as_bytes(), "partner.org").unwrap();
    assert_eq!(theirs.roots, vec![federated.cert_der()]);
    // The same in the SPIFFE format, and a file with only another domain's root.
    let json = spiffe_bundle_of(&[&ours, &federated], &[]);
    assert_eq!(
        x509_authorities(&json, "example.org").unwrap().roots,
        vec![ours.cert_der()]
    );
    let e = x509_authorities(federated.cert_pem().as_bytes(), "example.org").unwrap_err();
    assert!(e.contains("names trust domain `partner.org`"), "{e}");
}

#[test]
fn a_root_whose_names_cannot_be_read_is_left_out() {
    use rcgen::{BasicConstraints, CertificateParams, CustomExtension, IsCa, KeyPair, SanType};
    // Two subjectAltName extensions: one naming partner.org, hidden from a reader that gives
    // up on the duplicate; such a root must not be trusted for example.org.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![SanType::URI("spiffe://partner.org".try_into().unwrap())];
    // GeneralNames [ uniformResourceIdentifier "spiffe://example.org" ], DER.
    let uri = b"spiffe://example.org";
    let mut names = vec![0x30, (uri.len() + 2) as u8, 0x86, uri.len() as u8];
    names.extend_from_slice(uri);
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(&[2, 5, 29, 17], names));
    let cert = params.self_signed(&key).unwrap();
    let ours = DevCa::new("example.org").unwrap();
    let pem = format!("{}{}", ours.cert_pem(), cert.pem());
    let found = x509_authorities(pem.as_bytes(), "example.org").unwrap();
    assert_eq!(found.roots, vec![ours.cert_der()]);
    assert!(
        found.skipped[0].contains("authority 2: unreadable subject alternative names"),
        "{:?}",
        found.skipped
    );
}
