//! JWT-SVIDs and bearer JWTs: the compact JWS reader and the whole verification entry.
//!
//! Input byte 0 picks the mode. Even: the rest is a token as received, verified as is (it
//! reaches the JOSE reader, issuer and key selection, and the signature check). Odd: the rest
//! is `header JSON 0xFF claims JSON`, signed here with the configured Ed25519 key, so the
//! fuzzer also reaches every claim rule behind the signature.
#![no_main]

use std::sync::{Arc, OnceLock};

use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};
use zonegate_core::identity::token::{jose, parse_key_set, KeyFileFormat};
use zonegate_core::identity::{IssuerKind, IssuerSpec, TokenVerifier};
use zonegate_fuzz::b64url;

/// The seeds' clock: their `iat`/`exp` sit around it.
const NOW: i64 = 1_900_000_000;
const MAX_TOKEN_BYTES: usize = 8192;

struct Fixture {
    signer: Ed25519KeyPair,
    verifier: TokenVerifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = match Ed25519KeyPair::from_seed_unchecked(&[7; 32]) {
            Ok(key) => key,
            Err(e) => panic!("Ed25519 key: {e}"),
        };
        let x = b64url(signer.public_key().as_ref());
        let keys = |format, key_use, algs: &[Algorithm]| {
            let doc = serde_json::json!({ "keys": [
                { "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "use": key_use },
            ]});
            match parse_key_set(doc.to_string().as_bytes(), format, algs) {
                Ok(keys) if keys.keys.len() == 1 => keys,
                other => panic!("fixture key set: {other:?}"),
            }
        };
        let svid_algs = [Algorithm::EdDSA, Algorithm::ES256];
        let jwt_algs = [Algorithm::EdDSA];
        let issuers = vec![
            IssuerSpec {
                name: Arc::from("example-org"),
                kind: IssuerKind::JwtSvid,
                issuer: None,
                trust_domain: Some("example.org".into()),
                keys: keys(KeyFileFormat::SpiffeBundle, "jwt-svid", &svid_algs),
                algorithms: svid_algs.to_vec(),
                audiences: vec!["spiffe://example.org/gateway".into()],
                leeway_s: 30,
                max_lifetime_s: 600,
                required_claims: vec![],
                zone: None,
            },
            IssuerSpec {
                name: Arc::from("ci"),
                kind: IssuerKind::Jwt,
                issuer: Some("https://ci.example".into()),
                trust_domain: None,
                keys: keys(KeyFileFormat::Jwks, "sig", &jwt_algs),
                algorithms: jwt_algs.to_vec(),
                audiences: vec!["gateway".into(), "other".into()],
                leeway_s: 0,
                max_lifetime_s: 3600,
                required_claims: vec!["repo".into()],
                zone: Some("ci".into()),
            },
        ];
        Fixture {
            signer,
            verifier: TokenVerifier::new(
                issuers.into_iter().map(Arc::new).collect(),
                MAX_TOKEN_BYTES,
                64,
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        check_jose(token);
        // An unsigned or badly signed token can never verify: only our key signs.
        if let Ok(verified) = f.verifier.verify_uncached(token, NOW) {
            panic!("a token nobody signed verified: {verified:?}");
        }
        return;
    }
    let (header, claims) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&br#"{"alg":"EdDSA","kid":"k1"}"#[..], rest),
    };
    let signing_input = format!("{}.{}", b64url(header), b64url(claims));
    let signature = f.signer.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
    check_jose(&token);
    let first = f.verifier.verify(&token, NOW);
    // A second time comes from the cache: the same verdict as the full verification.
    let cached = f.verifier.verify(&token, NOW);
    match (&first, &cached) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => assert_eq!(a.reason, b.reason),
        _ => panic!("cache changed the verdict: {first:?} then {cached:?}"),
    }
    let Ok(verified) = first else { return };
    assert_eq!(verified.check_time(NOW), Ok(()));
    assert!(!verified.subject.is_empty());
    assert!(verified.subject.bytes().all(|b| (0x20..0x7f).contains(&b)));
    assert_eq!(verified.subject.trim_matches(' '), verified.subject);
    assert!(!verified.claims.contains_key("cnf"));
    let issuer = &verified.issuer;
    if let Some(required) = &issuer.issuer {
        assert_eq!(verified.iss.as_ref(), Some(required));
    }
    match (&issuer.trust_domain, &verified.spiffe_id) {
        (Some(td), Some(id)) => {
            assert_eq!(id.trust_domain(), td);
            assert!(!id.path().is_empty());
            assert_eq!(id.as_str(), verified.subject);
        }
        (None, None) => {}
        other => panic!("SPIFFE ID without its trust domain issuer: {other:?}"),
    }
    for name in &issuer.required_claims {
        assert!(verified.claims.get(name).is_some_and(|v| !v.is_null()));
    }
});

/// The JOSE reader: what it splits off is the token, and only a token within the limit.
fn check_jose(token: &str) {
    let Ok(jws) = jose::parse(token, MAX_TOKEN_BYTES) else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_BYTES);
    assert_eq!(format!("{}.{}", jws.signing_input, jws.signature), token);
    assert!(!jws.signature.is_empty() && !jws.signature.contains('.'));
    assert_eq!(jws.signing_input.matches('.').count(), 1);
}
