use serde_json::json;

use super::*;
use crate::identity::token::jose::b64url;
use zonegate_devkit::devtoken::TokenSigner;

const ALL: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

fn parse(doc: serde_json::Value, format: KeyFileFormat, allowed: &[Algorithm]) -> KeySet {
    parse_key_set(doc.to_string().as_bytes(), format, allowed).expect("a key set")
}

fn rsa_jwk(bits: usize, alg: Option<&str>) -> serde_json::Value {
    let mut n = vec![0xffu8; bits / 8];
    n[0] = 0x80;
    let mut jwk =
        json!({ "kty": "RSA", "n": b64url(&n), "e": "AQAB", "kid": format!("rsa{bits}") });
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

#[test]
fn a_spiffe_bundle_yields_its_jwt_authorities_only() {
    let es = TokenSigner::generate_es256().unwrap();
    let ed = TokenSigner::generate_ed25519().unwrap();
    let x509 = json!({ "kty": "EC", "crv": "P-256", "use": "x509-svid",
        "x": es.jwk("x")["x"], "y": es.jwk("x")["y"], "x5c": ["AAAA"] });
    let doc =
        json!({ "keys": [es.jwk("jwt-svid"), x509, ed.jwk("jwt-svid")], "spiffe_sequence": 1 });
    let set = parse(doc, KeyFileFormat::SpiffeBundle, ALL);
    assert_eq!(set.keys.len(), 2);
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    assert_eq!(
        set.select(Some(&es.kid)).unwrap().algorithms,
        vec![Algorithm::ES256]
    );
    assert_eq!(
        set.select(Some(&ed.kid)).unwrap().algorithms,
        vec![Algorithm::EdDSA]
    );
    assert!(set.select(Some("nope")).is_none());
    assert!(
        set.select(None).is_none(),
        "no kid with several keys selects nothing"
    );

    let sig = parse(
        json!({ "keys": [es.jwk("sig")] }),
        KeyFileFormat::SpiffeBundle,
        ALL,
    );
    assert!(sig.keys.is_empty());
    assert!(
        sig.skipped[0].contains("`use` is `sig`"),
        "{:?}",
        sig.skipped
    );
}

#[test]
fn a_jwks_yields_its_signing_keys_within_the_allowed_algorithms() {
    let es = TokenSigner::generate_es256().unwrap();
    let enc = json!({ "kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc",
        "x": es.jwk("sig")["x"], "y": es.jwk("sig")["y"] });
    let doc = json!({ "keys": [es.jwk("sig"), enc, rsa_jwk(2048, None)] });
    let set = parse(
        doc.clone(),
        KeyFileFormat::Jwks,
        &[Algorithm::ES256, Algorithm::PS256],
    );
    assert_eq!(set.keys.len(), 2, "the enc key is skipped");
    // An RSA key without `alg` may verify every RSA algorithm the issuer allows, no more.
    assert_eq!(
        set.select(Some("rsa2048")).unwrap().algorithms,
        vec![Algorithm::PS256]
    );
    // Keys the issuer's algorithms cannot use are skipped; none left accepts nothing.
    let none = parse(doc, KeyFileFormat::Jwks, &[Algorithm::EdDSA]);
    assert!(none.keys.is_empty());
    assert_eq!(
        none.skipped,
        vec!["no key usable with algorithms [EdDSA]: this issuer accepts no token"]
    );
}

#[test]
fn unusable_keys_are_skipped_and_never_keep_a_rotation_from_taking_effect() {
    let good = TokenSigner::generate_es256().unwrap();
    let cases = [
        (
            json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "h" }),
            "symmetric",
        ),
        (rsa_jwk(1024, None), "RSA key of 1024 bits"),
        (rsa_jwk(16384, None), "RSA key of 16384 bits"),
        (rsa_jwk(2048, Some("ES256")), "does not fit the key type"),
        (rsa_jwk(2048, Some("HS256")), "not a signature algorithm"),
        (
            json!({ "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521" }),
            "curve P521 is not supported",
        ),
        (
            json!({ "kty": "EC", "crv": "P-256", "alg": "ES512", "kid": "es512" }),
            "not a JWK this gateway supports",
        ),
        (
            json!({ "kty": "OKP", "crv": "X25519", "x": "AA", "kid": "x" }),
            "not a JWK this gateway supports",
        ),
        (
            json!({ "kty": "RSA", "n": "!!", "e": "AQAB", "kid": "r" }),
            "base64url",
        ),
        (
            json!({ "kty": "unheard-of", "kid": "u" }),
            "not a JWK this gateway supports",
        ),
    ];
    for (jwk, expected) in cases {
        // The good key still loads beside the bad one: a rotation is never held back.
        let set = parse(
            json!({ "keys": [jwk.clone(), good.jwk("sig")] }),
            KeyFileFormat::Jwks,
            ALL,
        );
        assert_eq!(set.keys.len(), 1, "{jwk}");
        assert!(set.select(Some(&good.kid)).is_some());
        assert!(
            set.skipped
                .iter()
                .any(|e| e.starts_with("keys[0]: ") && e.contains(expected)),
            "{jwk}: expected `{expected}` in {:?}",
            set.skipped
        );
    }
}

#[test]
fn kids_must_be_unique_and_present_when_there_are_several_keys() {
    let a = TokenSigner::generate_es256().unwrap();
    let b = TokenSigner::generate_es256().unwrap();
    let mut b_same_kid = b.jwk("sig");
    b_same_kid["kid"] = json!(a.kid);
    let set = parse(
        json!({ "keys": [a.jwk("sig"), b_same_kid] }),
        KeyFileFormat::Jwks,
        ALL,
    );
    assert_eq!(set.keys.len(), 1);
    assert!(
        set.skipped[0].contains("duplicate kid"),
        "{:?}",
        set.skipped
    );

    let mut no_kid = b.jwk("sig");
    no_kid.as_object_mut().unwrap().remove("kid");
    let set = parse(
        json!({ "keys": [a.jwk("sig"), no_kid.clone()] }),
        KeyFileFormat::Jwks,
        ALL,
    );
    assert_eq!(set.keys.len(), 1);
    assert!(set.select(Some(&a.kid)).is_some());
    assert!(
        set.skipped[0].contains("without `kid`"),
        "{:?}",
        set.skipped
    );
    // One key without a kid is fine: tokens without a kid select it.
    let set = parse(json!({ "keys": [no_kid] }), KeyFileFormat::Jwks, ALL);
    assert!(set.select(None).is_some());
}

#[test]
fn only_a_file_that_is_no_key_set_is_an_error() {
    for (bytes, expected) in [
        (&b"not json"[..], "not JSON"),
        (&br#"{"kty":"EC"}"#[..], "no `keys` array"),
    ] {
        let error = parse_key_set(bytes, KeyFileFormat::Jwks, ALL).unwrap_err();
        assert!(error.reason.contains(expected), "{error:?}");
    }
    let empty = parse_key_set(br#"{"keys":[]}"#, KeyFileFormat::SpiffeBundle, ALL).unwrap();
    assert!(
        empty.keys.is_empty(),
        "an emptied bundle loads and accepts nothing"
    );
    assert_eq!(significant_bits(&[0, 0, 1]), 1);
    assert_eq!(significant_bits(&[0x80, 0]), 16);
}
