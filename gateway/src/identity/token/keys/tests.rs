use serde_json::json;

use super::*;
use crate::devtoken::TokenSigner;
use crate::identity::token::jose::b64url;

const ALL: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

fn parse(
    doc: serde_json::Value,
    format: KeyFileFormat,
    allowed: &[Algorithm],
) -> Result<KeySet, Vec<KeyError>> {
    parse_key_set(doc.to_string().as_bytes(), format, allowed)
}

fn reasons(result: Result<KeySet, Vec<KeyError>>) -> Vec<String> {
    result
        .expect_err("key set accepted")
        .into_iter()
        .map(|e| format!("{} {}", e.key, e.reason))
        .collect()
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
    let set = parse(doc, KeyFileFormat::SpiffeBundle, ALL).unwrap();
    assert_eq!(set.keys.len(), 2);
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

    let sig = json!({ "keys": [es.jwk("sig")] });
    assert_eq!(
        reasons(parse(sig, KeyFileFormat::SpiffeBundle, ALL)),
        vec!["keys[0] `use` is `sig`; a SPIFFE bundle key is `jwt-svid` or `x509-svid`"]
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
    )
    .unwrap();
    assert_eq!(set.keys.len(), 2, "the enc key is skipped");
    // An RSA key without `alg` may verify every RSA algorithm the issuer allows, no more.
    assert_eq!(
        set.select(Some("rsa2048")).unwrap().algorithms,
        vec![Algorithm::PS256]
    );
    // Keys the issuer's algorithms cannot use are skipped; none left is an error.
    assert_eq!(
        reasons(parse(doc, KeyFileFormat::Jwks, &[Algorithm::EdDSA])),
        vec!["keys no key usable for token signatures with algorithms [EdDSA]"]
    );
}

#[test]
fn weak_symmetric_and_inconsistent_keys_are_refused() {
    let cases = [
        (
            json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "h" }),
            "symmetric",
        ),
        (rsa_jwk(1024, None), "RSA key of 1024 bits"),
        (rsa_jwk(2048, Some("ES256")), "does not fit the key type"),
        (rsa_jwk(2048, Some("HS256")), "not a signature algorithm"),
        (
            json!({ "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA" }),
            "curve",
        ),
        (json!({ "kty": "RSA", "n": "!!", "e": "AQAB" }), "base64url"),
        (json!({ "kid": "no-kty" }), "not a JWK"),
    ];
    for (jwk, expected) in cases {
        let errors = reasons(parse(json!({ "keys": [jwk] }), KeyFileFormat::Jwks, ALL));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{jwk}: expected `{expected}` in {errors:?}"
        );
    }
}

#[test]
fn kids_must_be_unique_and_present_when_there_are_several_keys() {
    let a = TokenSigner::generate_es256().unwrap();
    let b = TokenSigner::generate_es256().unwrap();
    let mut b_same_kid = b.jwk("sig");
    b_same_kid["kid"] = json!(a.kid);
    let errors = reasons(parse(
        json!({ "keys": [a.jwk("sig"), b_same_kid] }),
        KeyFileFormat::Jwks,
        ALL,
    ));
    assert!(errors[0].contains("duplicate kid"), "{errors:?}");

    let mut no_kid = b.jwk("sig");
    no_kid.as_object_mut().unwrap().remove("kid");
    let errors = reasons(parse(
        json!({ "keys": [a.jwk("sig"), no_kid.clone()] }),
        KeyFileFormat::Jwks,
        ALL,
    ));
    assert!(errors[0].contains("every key needs a `kid`"), "{errors:?}");
    // One key without a kid is fine: tokens without a kid select it.
    let set = parse(json!({ "keys": [no_kid] }), KeyFileFormat::Jwks, ALL).unwrap();
    assert!(set.select(None).is_some());
}

#[test]
fn whole_file_problems_are_reported() {
    for (bytes, expected) in [
        (&b"not json"[..], "not JSON"),
        (&br#"{"kty":"EC"}"#[..], "no `keys` array"),
    ] {
        let errors = parse_key_set(bytes, KeyFileFormat::Jwks, ALL).unwrap_err();
        assert!(errors[0].reason.contains(expected), "{errors:?}");
    }
    assert_eq!(significant_bits(&[0, 0, 1]), 1);
    assert_eq!(significant_bits(&[0x80, 0]), 16);
}
