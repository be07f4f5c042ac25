//! Token verification: the full path on a cache miss and the cached path, for ES256, RS256
//! and EdDSA, beside ring's raw ES256 signature verification (the floor a miss can approach).
//!
//! `cargo bench -p zonegate-core --bench tokens`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::Algorithm;
use serde_json::json;

use zonegate_core::identity::token::{
    parse_key_set, IssuerKind, IssuerSpec, KeyFileFormat, TokenVerifier,
};
use zonegate_devkit::devtoken::TokenSigner;

const AUD: &str = "spiffe://example.org/ns/payments/sa/zonegate";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rsa_signer() -> TokenSigner {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
    let der = key.to_pkcs1_der().expect("PKCS#1");
    TokenSigner::from_rsa_pkcs1_der(der.as_bytes(), Algorithm::RS256).expect("signer")
}

fn verifier(signer: &TokenSigner, cache_entries: usize) -> TokenVerifier {
    let algorithms = vec![signer.alg];
    let bundle = json!({ "keys": [signer.jwk("jwt-svid")] }).to_string();
    let keys =
        parse_key_set(bundle.as_bytes(), KeyFileFormat::SpiffeBundle, &algorithms).expect("keys");
    let issuer = IssuerSpec {
        name: Arc::from("example-org"),
        kind: if signer.alg == Algorithm::EdDSA {
            // EdDSA is not a JWT-SVID algorithm: a bearer issuer speaking for the domain.
            IssuerKind::Jwt
        } else {
            IssuerKind::JwtSvid
        },
        issuer: (signer.alg == Algorithm::EdDSA).then(|| "https://issuer.example.org".into()),
        trust_domain: Some("example.org".into()),
        keys,
        algorithms,
        audiences: vec![AUD.into()],
        leeway_s: 30,
        max_lifetime_s: 3600,
        required_claims: vec![],
        zone: None,
    };
    TokenVerifier::new(vec![Arc::new(issuer)], 8192, cache_entries)
}

fn token(signer: &TokenSigner) -> String {
    let t = now();
    signer
        .sign(&json!({
            "iss": "https://issuer.example.org",
            "sub": "spiffe://example.org/ns/shop/sa/checkout",
            "aud": AUD, "iat": t, "exp": t + 3000, "jti": "bench-1",
            "scope": "payments:charge payments:read"
        }))
        .expect("sign")
}

fn bench_algorithms(c: &mut Criterion) {
    let signers = [
        ("ES256", TokenSigner::generate_es256().expect("es256")),
        ("RS256", rsa_signer()),
        ("EdDSA", TokenSigner::generate_ed25519().expect("ed25519")),
    ];
    for (name, signer) in &signers {
        let token = token(signer);
        let t = now();
        let mut group = c.benchmark_group(format!("token/{name}"));
        // A miss: everything but the cache (parse, key, signature, claims).
        let uncached = verifier(signer, 0);
        group.bench_function("miss", |b| {
            b.iter(|| {
                uncached
                    .verify_uncached(black_box(&token), t)
                    .expect("valid")
            })
        });
        // A hit: digest of the token, cache lookup, clock check.
        let cached = verifier(signer, 16);
        cached.verify(&token, t).expect("valid");
        group.bench_function("hit", |b| {
            b.iter(|| cached.verify(black_box(&token), t).expect("valid"))
        });
        group.finish();
    }
}

/// ring's own ES256 verification of the same signing input: what a miss costs at the least.
fn bench_ring_es256(c: &mut Criterion) {
    use ring::signature::{EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .expect("key pair");
    let message = vec![b'a'; 400];
    let signature = pair.sign(&rng, &message).expect("sign");
    let public = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_FIXED,
        pair.public_key().as_ref().to_vec(),
    );
    c.bench_function("token/ring-es256-verify", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), black_box(signature.as_ref()))
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench_ring_es256, bench_algorithms);
criterion_main!(benches);
