use std::sync::OnceLock;

use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::*;
use crate::identity::svid::SvidFacts;
use zonegate_devkit::devtoken::TokenSigner;

const TD: &str = "example.org";
const AUD: &str = "spiffe://example.org/gateway/payments";
const SUB: &str = "spiffe://example.org/ns/shop/sa/checkout";
const NOW: i64 = 1_900_000_000;

fn es256() -> &'static TokenSigner {
    static KEY: OnceLock<TokenSigner> = OnceLock::new();
    KEY.get_or_init(|| TokenSigner::generate_es256().unwrap())
}

fn rs256() -> &'static TokenSigner {
    static KEY: OnceLock<TokenSigner> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        TokenSigner::from_rsa_pkcs1_der(der.as_bytes(), Algorithm::RS256).unwrap()
    })
}

fn keys(signers: &[&TokenSigner], format: KeyFileFormat, algs: &[Algorithm]) -> KeySet {
    let key_use = match format {
        KeyFileFormat::SpiffeBundle => "jwt-svid",
        KeyFileFormat::Jwks | KeyFileFormat::WorkloadApi => "sig",
    };
    let doc = json!({ "keys": signers.iter().map(|s| s.jwk(key_use)).collect::<Vec<_>>() });
    parse_key_set(doc.to_string().as_bytes(), format, algs).unwrap()
}

fn svid_issuer(signers: &[&TokenSigner]) -> IssuerSpec {
    let algs = vec![Algorithm::ES256, Algorithm::RS256];
    IssuerSpec {
        name: Arc::from("example-org"),
        kind: IssuerKind::JwtSvid,
        issuer: None,
        trust_domain: Some(TD.into()),
        keys: keys(signers, KeyFileFormat::SpiffeBundle, &algs),
        algorithms: algs,
        audiences: vec![AUD.into()],
        leeway_s: 30,
        max_lifetime_s: 600,
        required_claims: vec![],
        zone: None,
    }
}

fn verifier(issuers: Vec<IssuerSpec>) -> TokenVerifier {
    TokenVerifier::new(issuers.into_iter().map(Arc::new).collect(), 8192, 100)
}

fn claims() -> Value {
    json!({ "sub": SUB, "aud": AUD, "iat": NOW - 10, "exp": NOW + 290, "jti": "j1" })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn refusal(v: &TokenVerifier, token: &str) -> TokenReason {
    match v.verify(token, NOW) {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(e) => e.reason,
    }
}

#[test]
fn accepts_a_jwt_svid_and_reads_its_facts() {
    let v = verifier(vec![svid_issuer(&[es256(), rs256()])]);
    for signer in [es256(), rs256()] {
        let token = signer.sign(&claims()).unwrap();
        let t = v.verify(&token, NOW).unwrap();
        assert_eq!(t.subject, SUB);
        assert_eq!(t.spiffe_id.as_ref().unwrap().as_str(), SUB);
        assert_eq!(t.jti.as_deref(), Some("j1"));
        assert_eq!(t.expires_at, NOW + 290);
        assert_eq!(t.kind(), "jwt-svid");
        assert!(t.cnf_x5t_s256.is_none());
    }
}

#[test]
fn an_audience_list_needs_only_one_of_ours() {
    let v = verifier(vec![svid_issuer(&[es256()])]);
    let token = es256()
        .sign(&with(claims(), "aud", json!(["other", AUD])))
        .unwrap();
    assert!(v.verify(&token, NOW).is_ok());
}

#[test]
fn every_claim_rule_has_its_own_reason() {
    let v = verifier(vec![svid_issuer(&[es256()])]);
    let cases = [
        (with(claims(), "exp", json!(NOW - 31)), TokenReason::Expired),
        (
            with(with(claims(), "nbf", json!(NOW + 60)), "iat", json!(NOW)),
            TokenReason::NotYetValid,
        ),
        (
            with(claims(), "iat", json!(NOW + 60)),
            TokenReason::NotYetValid,
        ),
        (
            with(claims(), "aud", json!("spiffe://example.org/other")),
            TokenReason::WrongAudience,
        ),
        (with(claims(), "aud", json!([])), TokenReason::WrongAudience),
        (without(claims(), "aud"), TokenReason::MissingClaim),
        (without(claims(), "exp"), TokenReason::MissingClaim),
        (without(claims(), "sub"), TokenReason::UnknownIssuer),
        (
            with(claims(), "exp", json!(NOW + 601)),
            TokenReason::LifetimeTooLong,
        ),
        // No iat: the lifetime counts from nbf, else from now.
        (
            with(without(claims(), "iat"), "exp", json!(NOW + 3600)),
            TokenReason::LifetimeTooLong,
        ),
        (with(claims(), "exp", json!("soon")), TokenReason::Malformed),
        (with(claims(), "aud", json!(7)), TokenReason::Malformed),
        (
            with(claims(), "sub", json!("spiffe://example.org")),
            TokenReason::BadSubject,
        ),
        (
            with(claims(), "sub", json!("spiffe://example.org/a/../b")),
            TokenReason::UnknownIssuer,
        ),
        (
            with(claims(), "cnf", json!({"jkt": "abc"})),
            TokenReason::BindingMismatch,
        ),
        (
            with(claims(), "cnf", json!({"x5t#S256": "short"})),
            TokenReason::Malformed,
        ),
    ];
    for (claims, reason) in cases {
        let token = es256().sign(&claims).unwrap();
        assert_eq!(refusal(&v, &token), reason, "{claims}");
    }
    // Exactly at the edges: exp + leeway is expired, a second before it is not.
    let edge = es256()
        .sign(&with(claims(), "exp", json!(NOW - 30)))
        .unwrap();
    assert_eq!(refusal(&v, &edge), TokenReason::Expired);
    let inside = es256()
        .sign(&with(claims(), "exp", json!(NOW - 29)))
        .unwrap();
    assert!(v.verify(&inside, NOW).is_ok());
}

#[test]
fn the_issuer_and_its_keys_alone_decide_how_a_token_is_verified() {
    let v = verifier(vec![svid_issuer(&[es256()])]);
    let other = TokenSigner::generate_es256().unwrap();
    let header = |alg: &str, kid: &str| json!({ "alg": alg, "kid": kid, "typ": "JWT" });

    // Signed by a key the issuer does not have, under the issuer's kid.
    let forged = other
        .sign_with_header(&header("ES256", &es256().kid), &claims())
        .unwrap();
    assert_eq!(refusal(&v, &forged), TokenReason::BadSignature);
    // A kid the issuer does not have.
    let unknown = other.sign(&claims()).unwrap();
    assert_eq!(refusal(&v, &unknown), TokenReason::UnknownKey);
    // An algorithm the key does not admit.
    let es384 = TokenSigner::generate_es384().unwrap();
    let swapped = es384
        .sign_with_header(&header("ES384", &es256().kid), &claims())
        .unwrap();
    assert_eq!(refusal(&v, &swapped), TokenReason::AlgorithmNotAllowed);
    // The classic confusion: HMAC keyed with the public key.
    let public = serde_json::to_vec(&es256().jwk("jwt-svid")).unwrap();
    let input = format!(
        "{}.{}",
        jose::b64url(header("HS256", &es256().kid).to_string().as_bytes()),
        jose::b64url(claims().to_string().as_bytes())
    );
    let mac = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(&public),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        refusal(&v, &format!("{input}.{mac}")),
        TokenReason::AlgorithmNotAllowed
    );
    // Unsigned.
    let none = format!(
        "{}.{}.",
        jose::b64url(br#"{"alg":"none"}"#),
        jose::b64url(claims().to_string().as_bytes())
    );
    assert_eq!(refusal(&v, &none), TokenReason::Malformed);
    // Key material in the header is never used: an embedded jwk of the forger's key.
    let embedded = other
        .sign_with_header(
            &json!({ "alg": "ES256", "kid": es256().kid, "jwk": other.jwk("sig") }),
            &claims(),
        )
        .unwrap();
    assert_eq!(refusal(&v, &embedded), TokenReason::BadSignature);
    // Explicit typing and critical extensions.
    let typed = es256()
        .sign_with_header(
            &json!({ "alg": "ES256", "kid": es256().kid, "typ": "dpop+jwt" }),
            &claims(),
        )
        .unwrap();
    assert_eq!(refusal(&v, &typed), TokenReason::TypeNotAccepted);
    let crit = es256()
        .sign_with_header(
            &json!({ "alg": "ES256", "kid": es256().kid, "crit": ["exp"], "exp": 1 }),
            &claims(),
        )
        .unwrap();
    assert_eq!(refusal(&v, &crit), TokenReason::CritUnsupported);
}

#[test]
fn a_token_without_kid_is_accepted_only_from_a_one_key_issuer() {
    let no_kid = json!({ "alg": "ES256", "typ": "JWT" });
    let token = es256().sign_with_header(&no_kid, &claims()).unwrap();
    assert!(verifier(vec![svid_issuer(&[es256()])])
        .verify(&token, NOW)
        .is_ok());
    let two = verifier(vec![svid_issuer(&[es256(), rs256()])]);
    assert_eq!(refusal(&two, &token), TokenReason::UnknownKey);
}

#[test]
fn issuers_are_chosen_by_iss_or_by_the_trust_domain_of_sub() {
    let ci_key = TokenSigner::generate_ed25519().unwrap();
    let ci = IssuerSpec {
        name: Arc::from("ci"),
        kind: IssuerKind::Jwt,
        issuer: Some("https://ci.example.net".into()),
        trust_domain: None,
        keys: keys(&[&ci_key], KeyFileFormat::Jwks, &[Algorithm::EdDSA]),
        algorithms: vec![Algorithm::EdDSA],
        audiences: vec!["payments".into()],
        leeway_s: 0,
        max_lifetime_s: 600,
        required_claims: vec!["jti".into()],
        zone: Some("ci".into()),
    };
    let v = verifier(vec![svid_issuer(&[es256()]), ci]);
    let ci_claims = json!({
        "iss": "https://ci.example.net", "sub": "repo:acme/app:ref:main", "aud": "payments",
        "iat": NOW, "exp": NOW + 300, "jti": "run-1", "scope": "deploy"
    });
    let t = v.verify(&ci_key.sign(&ci_claims).unwrap(), NOW).unwrap();
    assert_eq!(&*t.issuer.name, "ci");
    assert_eq!(t.subject, "repo:acme/app:ref:main");
    assert_eq!(t.claims["scope"], "deploy");
    // A non-SVID issuer never speaks for a SPIFFE ID, whatever its subject looks like.
    let spoof = ci_key
        .sign(&with(ci_claims.clone(), "sub", json!(SUB)))
        .unwrap();
    assert!(v.verify(&spoof, NOW).unwrap().spiffe_id.is_none());
    let cases = [
        (without(ci_claims.clone(), "jti"), TokenReason::MissingClaim),
        (
            with(ci_claims.clone(), "iss", json!("https://other")),
            TokenReason::UnknownIssuer,
        ),
        (
            with(ci_claims.clone(), "aud", json!(AUD)),
            TokenReason::WrongAudience,
        ),
        (
            with(ci_claims.clone(), "sub", json!("a\nb")),
            TokenReason::Malformed,
        ),
    ];
    for (claims, reason) in cases {
        assert_eq!(
            refusal(&v, &ci_key.sign(&claims).unwrap()),
            reason,
            "{claims}"
        );
    }
    // The ci issuer's key cannot sign for the JWT-SVID trust domain.
    let cross = ci_key.sign(&claims()).unwrap();
    assert_eq!(refusal(&v, &cross), TokenReason::UnknownKey);
    // A JWT-SVID issuer with an `iss` configured requires it.
    let mut strict = svid_issuer(&[es256()]);
    strict.issuer = Some("https://spire.example.org".into());
    let v = verifier(vec![strict]);
    assert_eq!(
        refusal(&v, &es256().sign(&claims()).unwrap()),
        TokenReason::MissingClaim
    );
    let right = with(claims(), "iss", json!("https://spire.example.org"));
    assert!(v.verify(&es256().sign(&right).unwrap(), NOW).is_ok());
}

#[test]
fn size_limit_is_enforced_before_anything_else() {
    let v = TokenVerifier::new(vec![Arc::new(svid_issuer(&[es256()]))], 600, 10);
    let big = es256()
        .sign(&with(claims(), "pad", json!("x".repeat(600))))
        .unwrap();
    assert_eq!(refusal(&v, &big), TokenReason::TooLarge);
}

#[test]
fn the_cache_serves_verified_claims_and_still_checks_the_clock() {
    let v = verifier(vec![svid_issuer(&[es256()])]);
    let token = es256().sign(&claims()).unwrap();
    let first = v.verify(&token, NOW).unwrap();
    let second = v.verify(&token, NOW + 1).unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "second verify was not a cache hit"
    );
    assert_eq!((v.cache().hits(), v.cache().misses()), (1, 1));
    // Cached, but expired since: refused.
    assert_eq!(
        v.verify(&token, NOW + 290 + 30).unwrap_err().reason,
        TokenReason::Expired
    );
    // One byte of the signature changed is another token: verified, and refused.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(refusal(&v, &tampered), TokenReason::BadSignature);
    // Refused tokens are never cached.
    assert_eq!(v.cache().len(), 1);
}

#[test]
fn the_cache_is_bounded_and_sweeps_expired_tokens() {
    let v = TokenVerifier::new(vec![Arc::new(svid_issuer(&[es256()]))], 8192, 3);
    let short = |n: i64| {
        es256()
            .sign(&with(
                with(claims(), "jti", json!(format!("j{n}"))),
                "exp",
                json!(NOW + n),
            ))
            .unwrap()
    };
    for n in 1..=3 {
        v.verify(&short(n), NOW).unwrap();
    }
    assert_eq!(v.cache().len(), 3);
    // Full, nothing expired: verified but not stored.
    v.verify(&short(100), NOW).unwrap();
    assert_eq!(v.cache().len(), 3);
    // Later, the first two have expired: the sweep makes room.
    v.verify(&short(200), NOW + 2 + 30).unwrap();
    assert_eq!(v.cache().len(), 2);
}

fn svid(id: &str, cert_hash: u8) -> SvidFacts {
    SvidFacts {
        spiffe_id: SpiffeId::parse(id).unwrap(),
        serial_hex: "01".into(),
        not_before_unix: NOW - 60,
        not_after_unix: NOW + 3600,
        sha256_hex: String::new(),
        sha256: [cert_hash; 32],
    }
}

#[test]
fn binding_requires_the_same_workload_or_the_same_certificate() {
    let v = verifier(vec![svid_issuer(&[es256()])]);
    let by_sub = v.verify(&es256().sign(&claims()).unwrap(), NOW).unwrap();
    assert!(by_sub.check_binding(&svid(SUB, 1)).is_ok());
    let other = by_sub
        .check_binding(&svid("spiffe://example.org/ns/shop/sa/cart", 1))
        .unwrap_err();
    assert_eq!(other.reason, TokenReason::BindingMismatch);

    let bound = with(
        claims(),
        "cnf",
        json!({ "x5t#S256": jose::b64url(&[7u8; 32]) }),
    );
    let bound = v.verify(&es256().sign(&bound).unwrap(), NOW).unwrap();
    assert!(bound.check_binding(&svid(SUB, 7)).is_ok());
    // Same SPIFFE ID, another certificate: a token bound to a certificate goes with it only.
    assert_eq!(
        bound.check_binding(&svid(SUB, 8)).unwrap_err().reason,
        TokenReason::BindingMismatch
    );
    // The bound certificate, but another workload's SVID in it: both must agree.
    assert_eq!(
        bound
            .check_binding(&svid("spiffe://example.org/ns/shop/sa/cart", 7))
            .unwrap_err()
            .reason,
        TokenReason::BindingMismatch
    );
}

#[test]
fn workload_api_jwt_bundles_take_jwt_svid_keys_with_or_without_use() {
    let algs = [Algorithm::ES256, Algorithm::RS256];
    let read = |format, keys: Vec<Value>| {
        let doc = json!({ "keys": keys }).to_string();
        parse_key_set(doc.as_bytes(), format, &algs).unwrap()
    };
    let mut unmarked = es256().jwk("sig");
    unmarked.as_object_mut().unwrap().remove("use");
    let set = read(
        KeyFileFormat::WorkloadApi,
        vec![unmarked, rs256().jwk("jwt-svid")],
    );
    assert_eq!(set.keys.len(), 2);
    // An X.509 authority in the same document is not a token key; nor is an unknown use.
    let set = read(KeyFileFormat::WorkloadApi, vec![es256().jwk("x509-svid")]);
    assert!(set.keys.is_empty());
    assert!(!set.skipped.iter().any(|note| note.starts_with("keys[0]")));
    let set = read(KeyFileFormat::WorkloadApi, vec![es256().jwk("wrapping")]);
    assert!(set.keys.is_empty());
    assert!(set.skipped[0].contains("`wrapping`"), "{:?}", set.skipped);
    // A plain JWKS file does not take a SPIFFE `use`.
    let set = read(KeyFileFormat::Jwks, vec![es256().jwk("jwt-svid")]);
    assert!(set.keys.is_empty());
    assert!(set.skipped[0].contains("`jwt-svid`"), "{:?}", set.skipped);
}

#[test]
fn a_token_refused_for_an_unknown_key_names_the_issuer_whose_keys_to_fetch() {
    let v = verifier(vec![svid_issuer(&[es256()])]);
    let header = json!({ "alg": "ES256", "kid": "rotated-in", "typ": "JWT" });
    let token = es256().sign_with_header(&header, &claims()).unwrap();
    assert_eq!(refusal(&v, &token), TokenReason::UnknownKey);
    assert_eq!(
        v.issuer_lacking_key(&token).map(|i| &*i.name),
        Some("example-org")
    );
    // A key the issuer has, another issuer's token, no token: nothing to fetch.
    assert!(v
        .issuer_lacking_key(&es256().sign(&claims()).unwrap())
        .is_none());
    let stranger = with(claims(), "sub", json!("spiffe://other.org/ns/a/sa/b"));
    assert!(v
        .issuer_lacking_key(&es256().sign(&stranger).unwrap())
        .is_none());
    assert!(v.issuer_lacking_key("not.a.token").is_none());
}
