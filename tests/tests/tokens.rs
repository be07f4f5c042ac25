//! Token identities end to end: JWT-SVIDs and bearer JWTs minted at test time, presented over
//! real TLS connections (with and without a client certificate), verified by the real gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use zonegate_devkit::devtoken::TokenSigner;
use zonegate_e2e::{Client, Gateway, Reply, Setup, CART, CHECKOUT, LEDGER, POLICY};

/// The gateway's own SPIFFE ID (the harness's PKI): the default audience.
const GATEWAY_ID: &str = "spiffe://example.org/ns/payments/sa/zonegate";
const CI_ISS: &str = "https://ci.example.net";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn svid_key() -> &'static TokenSigner {
    static KEY: OnceLock<TokenSigner> = OnceLock::new();
    KEY.get_or_init(|| TokenSigner::generate_es256().unwrap())
}

fn rsa_key() -> &'static TokenSigner {
    static KEY: OnceLock<TokenSigner> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        TokenSigner::from_rsa_pkcs1_der(der.as_bytes(), Algorithm::RS256).unwrap()
    })
}

fn ci_key() -> &'static TokenSigner {
    static KEY: OnceLock<TokenSigner> = OnceLock::new();
    KEY.get_or_init(|| TokenSigner::generate_ed25519().unwrap())
}

/// The example.org JWT bundle: an ES256 and an RS256 authority.
fn svid_bundle() -> String {
    json!({ "keys": [svid_key().jwk("jwt-svid"), rsa_key().jwk("jwt-svid")] }).to_string()
}

const TOKEN_CONFIG: &str = r#"
[token_issuer.example-org]
kind = "jwt-svid"
trust_domain = "example.org"
keys = "jwt-bundle.json"
algorithms = ["ES256", "RS256"]
leeway_s = 0
max_lifetime_s = 600

[token_issuer.ci]
kind = "jwt"
issuer = "https://ci.example.net"
keys = "ci-jwks.json"
algorithms = ["EdDSA"]
audiences = ["payments-gateway"]
required_claims = ["jti"]
zone = "ci"

[[route]]
name = "either"
path_prefix = "/tokens/either"
upstream = "payments"
credentials = "either"

[[route]]
name = "token-only"
path_prefix = "/tokens/only"
upstream = "payments"
credentials = "token"

[[route]]
name = "both"
path_prefix = "/tokens/both"
upstream = "payments"
credentials = "both"

[revocation]
file = "revoked.toml"
"#;

const TOKEN_POLICY: &str = r#"
[[rule]]
id = "checkout-token-routes"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["either", "token-only", "both"]

[[rule]]
id = "ci-deploys"
effect = "allow"
issuers = ["ci"]
subjects = ["repo:acme/*"]
claims = { scope = "deploy" }
routes = ["token-only"]
methods = ["POST"]
paths = ["/tokens/only/deploy"]

[[rule]]
id = "ledger-needs-both"
effect = "allow"
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
credentials = "both"
routes = ["either"]
"#;

async fn start() -> Gateway {
    Gateway::start(Setup {
        policy: format!("{POLICY}\n{TOKEN_POLICY}"),
        extra_config: TOKEN_CONFIG.to_string(),
        client_cert_optional: true,
        files: vec![
            ("jwt-bundle.json".into(), svid_bundle()),
            (
                "ci-jwks.json".into(),
                json!({ "keys": [ci_key().jwk("sig")] }).to_string(),
            ),
            ("revoked.toml".into(), String::new()),
        ],
        ..Setup::default()
    })
    .await
}

/// Well-formed JWT-SVID claims for `sub`, to this gateway, issued now for 5 minutes.
fn svid_claims(sub: &str) -> Value {
    let t = now();
    json!({ "sub": sub, "aud": GATEWAY_ID, "iat": t, "exp": t + 300, "jti": format!("jti-{}", rand::random::<u64>()) })
}

fn ci_claims(sub: &str, scope: &str) -> Value {
    let t = now();
    json!({ "iss": CI_ISS, "sub": sub, "aud": "payments-gateway", "iat": t, "exp": t + 300,
            "jti": format!("run-{}", rand::random::<u64>()), "scope": scope })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn challenge(reply: &Reply) -> String {
    reply
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn event_for(gw: &Gateway, reply: &Reply) -> Value {
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    gw.events_where(1, |e| e["request_id"] == id.as_str())
        .await
        .remove(0)
}

async fn post(client: &mut Client, path: &str, token: &str) -> Reply {
    client.with_token(Method::POST, path, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_svid_alone_authenticates_and_the_upstream_sees_the_verified_identity() {
    let gw = start().await;
    for h2 in [false, true] {
        let mut anon = gw.anonymous_client(h2).await;
        let claims = svid_claims(CHECKOUT);
        let token = svid_key().sign(&claims).unwrap();
        let reply = post(&mut anon, "/tokens/either/charge", &token).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let up = reply.upstream_headers();
        assert_eq!(up["x-zonegate-identity"], CHECKOUT);
        assert_eq!(up["x-zonegate-credential"], "jwt-svid");
        assert_eq!(up["x-zonegate-token-issuer"], "example-org");
        assert_eq!(up["x-zonegate-source-zone"], "shop");
        assert!(up.get("authorization").is_none(), "token forwarded: {up}");
        assert!(
            up.get("x-forwarded-client-cert").is_none(),
            "no certificate, no XFCC: {up}"
        );

        let event = event_for(&gw, &reply).await;
        assert_eq!(event["decision"], "allow");
        assert_eq!(event["credential"], "jwt-svid");
        assert_eq!(event["source_spiffe_id"], CHECKOUT);
        assert_eq!(event["source_zone"], "shop");
        assert_eq!(event["cross_zone"], true);
        assert_eq!(event["token_issuer"], "example-org");
        assert_eq!(event["token_subject"], CHECKOUT);
        assert_eq!(event["token_jti"], claims["jti"]);
        assert!(event["token_expiry"].as_str().unwrap().ends_with('Z'));
        assert!(event["cert_serial"].is_null());
    }
    // An RS256 JWT-SVID from the same trust domain's other authority.
    let mut anon = gw.anonymous_client(false).await;
    let token = rsa_key().sign(&svid_claims(CHECKOUT)).unwrap();
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reason_comes_from_a_real_token_over_a_real_connection() {
    let gw = start().await;
    let t = now();
    let other_key = TokenSigner::generate_es256().unwrap();
    let es = svid_key();
    let kid = es.kid.clone();
    let c = || svid_claims(CHECKOUT);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            es.sign(&with(c(), "exp", json!(t - 1))).unwrap(),
            "token_expired",
            "token expired",
        ),
        (
            es.sign(&with(c(), "nbf", json!(t + 120))).unwrap(),
            "token_not_yet_valid",
            "token not yet valid",
        ),
        (
            es.sign(&with(
                c(),
                "aud",
                json!("spiffe://example.org/ns/other/sa/api"),
            ))
            .unwrap(),
            "token_wrong_audience",
            "wrong audience",
        ),
        (
            es.sign(&with(c(), "exp", json!(t + 3600))).unwrap(),
            "token_lifetime_too_long",
            "token lifetime too long",
        ),
        (
            other_key.sign(&c()).unwrap(),
            "token_unknown_key",
            "invalid token",
        ),
        (
            other_key
                .sign_with_header(&json!({"alg": "ES256", "kid": kid}), &c())
                .unwrap(),
            "token_bad_signature",
            "invalid token",
        ),
        (
            TokenSigner::generate_es384()
                .unwrap()
                .sign_with_header(&json!({"alg": "ES384", "kid": kid}), &c())
                .unwrap(),
            "token_algorithm_not_allowed",
            "invalid token",
        ),
        (
            es.sign_with_header(
                &json!({"alg": "ES256", "kid": kid, "crit": ["b64"], "b64": true}),
                &c(),
            )
            .unwrap(),
            "token_crit_unsupported",
            "invalid token",
        ),
        (
            es.sign_with_header(
                &json!({"alg": "ES256", "kid": kid, "typ": "secevent+jwt"}),
                &c(),
            )
            .unwrap(),
            "token_type_not_accepted",
            "invalid token",
        ),
        (
            es.sign(&with(c(), "sub", json!("spiffe://elsewhere.org/ns/x/sa/y")))
                .unwrap(),
            "token_unknown_issuer",
            "invalid token",
        ),
        (
            es.sign(&with(c(), "sub", json!("spiffe://example.org")))
                .unwrap(),
            "token_bad_subject",
            "subject not accepted",
        ),
        (
            es.sign(&without(c(), "exp")).unwrap(),
            "token_missing_claim",
            "required claim missing",
        ),
        (
            "e30.e30.c2ln".to_string(),
            "token_malformed",
            "invalid token",
        ),
        (
            es.sign(&with(c(), "pad", json!("x".repeat(9000)))).unwrap(),
            "token_too_large",
            "token too large",
        ),
    ];
    let mut anon = gw.anonymous_client(false).await;
    let mut mtls = gw.client(CHECKOUT, true).await;
    for (token, reason, description) in &cases {
        for client in [&mut anon, &mut mtls] {
            let reply = post(client, "/tokens/either/charge", token).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{reason}: {:?}",
                reply.body
            );
            assert_eq!(
                challenge(&reply),
                format!(
                    r#"Bearer realm="zonegate", error="invalid_token", error_description="{description}""#
                ),
                "{reason}"
            );
            // No detail reaches the client: the body is the error name and the request id.
            let body = reply.json();
            assert_eq!(body["error"], "unauthenticated");
            assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
            let event = event_for(&gw, &reply).await;
            assert_eq!(event["reason"], *reason, "{event}");
            assert_eq!(event["decision"], "deny");
            assert!(event["detail"].is_string(), "{event}");
        }
    }
    // A refused token says nothing about the connection: the mTLS connection stays usable.
    assert!(mtls.is_open());
    let ok = post(&mut mtls, "/tokens/either/charge", &es.sign(&c()).unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_and_a_certificate_must_name_the_same_workload() {
    let gw = start().await;
    let checkout_svid = gw.pki.svid(CHECKOUT);
    let mut checkout = Client::connect(gw.addr(), &gw.pki, &checkout_svid, false)
        .await
        .unwrap();
    let token = svid_key().sign(&svid_claims(CHECKOUT)).unwrap();

    // Bound by subject: the SVID's SPIFFE ID is the token's `sub`.
    let reply = post(&mut checkout, "/tokens/either/x", &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.upstream_headers()["x-zonegate-credential"],
        "x509-svid+jwt-svid"
    );
    assert_eq!(
        event_for(&gw, &reply).await["credential"],
        "x509-svid+jwt-svid"
    );

    // The same token replayed from cart's connection: stolen, refused.
    let mut cart = gw.client(CART, false).await;
    let reply = post(&mut cart, "/tokens/either/x", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let event = event_for(&gw, &reply).await;
    assert_eq!(event["reason"], "token_binding_mismatch");
    assert_eq!(
        event["source_spiffe_id"], CART,
        "the refusal names the connection's SVID"
    );

    // Bound by certificate (RFC 8705 cnf.x5t#S256): only that very certificate carries it.
    let thumbprint = {
        let digest = ring::digest::digest(&ring::digest::SHA256, checkout_svid.cert_der.as_ref());
        zonegate_core::identity::token::jose::b64url(digest.as_ref())
    };
    let bound = svid_key()
        .sign(&with(
            svid_claims(CHECKOUT),
            "cnf",
            json!({ "x5t#S256": thumbprint }),
        ))
        .unwrap();
    assert_eq!(
        post(&mut checkout, "/tokens/either/x", &bound).await.status,
        StatusCode::OK
    );
    // Another certificate for the same SPIFFE ID.
    let mut twin = gw.client(CHECKOUT, false).await;
    let reply = post(&mut twin, "/tokens/either/x", &bound).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        event_for(&gw, &reply).await["reason"],
        "token_binding_mismatch"
    );
    // No certificate at all.
    let mut anon = gw.anonymous_client(false).await;
    let reply = post(&mut anon, "/tokens/either/x", &bound).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        event_for(&gw, &reply).await["reason"],
        "token_binding_mismatch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_require_their_credentials() {
    let gw = start().await;
    let token = svid_key().sign(&svid_claims(CHECKOUT)).unwrap();
    let mut mtls = gw.client(CHECKOUT, false).await;
    let mut anon = gw.anonymous_client(false).await;

    // `both`: certificate and token.
    let reply = mtls.get("/tokens/both/x").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&reply), r#"Bearer realm="zonegate""#);
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_required");
    let reply = post(&mut anon, "/tokens/both/x", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "mtls_required");
    assert_eq!(
        post(&mut mtls, "/tokens/both/x", &token).await.status,
        StatusCode::OK
    );

    // `token`: a certificate alone does not do.
    let reply = mtls.get("/tokens/only/x").await;
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_required");
    assert_eq!(
        post(&mut anon, "/tokens/only/x", &token).await.status,
        StatusCode::OK
    );

    // `mtls` (the default): a token cannot stand in for a certificate...
    let reply = post(&mut anon, "/payments/charge", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "mtls_required");
    // ...and `Authorization` there is the upstream's business: passed through, unread.
    let reply = mtls
        .send(
            Method::POST,
            "/payments/charge",
            &[("authorization", "Bearer upstream-session-token")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.upstream_headers()["authorization"],
        "Bearer upstream-session-token"
    );

    // A rule can require both credentials too: ledger's SVID alone is not enough.
    let mut ledger = gw.client(LEDGER, false).await;
    let reply = ledger.get("/tokens/either/entries").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let ledger_token = svid_key().sign(&svid_claims(LEDGER)).unwrap();
    let reply = ledger
        .with_token(Method::GET, "/tokens/either/entries", &ledger_token)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // In-zone and allowed: no event; the upstream sees both credentials.
    assert_eq!(
        reply.upstream_headers()["x-zonegate-credential"],
        "x509-svid+jwt-svid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_credential_nothing_is_revealed() {
    let gw = start().await;
    let mut anon = gw.anonymous_client(false).await;
    for path in ["/tokens/either/x", "/no/such/route", "/payments/admin"] {
        let reply = anon.get(path).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(challenge(&reply), r#"Bearer realm="zonegate""#);
        assert_eq!(event_for(&gw, &reply).await["reason"], "no_credential");
    }
    // Malformed Authorization: RFC 6750 invalid_request, 400.
    let mut anon = gw.anonymous_client(false).await;
    for value in ["Bearer ", "Bearer a b", "Bearer \"quoted\""] {
        let reply = anon
            .send(
                Method::GET,
                "/tokens/either/x",
                &[("authorization", value)],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{value}");
        assert!(
            challenge(&reply).contains(r#"error="invalid_request""#),
            "{value}"
        );
    }
    let token = svid_key().sign(&svid_claims(CHECKOUT)).unwrap();
    let bearer = format!("Bearer {token}");
    let reply = anon
        .send(
            Method::GET,
            "/tokens/either/x",
            &[("authorization", &bearer), ("authorization", &bearer)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(event_for(&gw, &reply).await["reason"], "bad_authorization");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_matches_issuer_subject_and_claims() {
    let gw = start().await;
    let mut anon = gw.anonymous_client(false).await;
    let ci = ci_key();

    let deploy = ci
        .sign(&ci_claims("repo:acme/app:ref:main", "read deploy"))
        .unwrap();
    let reply = post(&mut anon, "/tokens/only/deploy", &deploy).await;
    assert_eq!(reply.status, StatusCode::OK);
    let up = reply.upstream_headers();
    // A subject that is no SPIFFE ID never travels as the identity, only beside its issuer.
    assert!(up.get("x-zonegate-identity").is_none(), "{up}");
    assert_eq!(up["x-zonegate-token-subject"], "repo:acme/app:ref:main");
    assert_eq!(up["x-zonegate-token-issuer"], "ci");
    assert_eq!(up["x-zonegate-credential"], "jwt");
    let event = event_for(&gw, &reply).await;
    assert_eq!(event["rule_id"], "ci-deploys");
    assert_eq!(event["source_zone"], "ci");
    assert!(event["source_spiffe_id"].is_null());

    for (token, why) in [
        (
            ci.sign(&ci_claims("repo:acme/app:ref:main", "read"))
                .unwrap(),
            "no deploy scope",
        ),
        (
            ci.sign(&ci_claims("repo:evil/app", "deploy")).unwrap(),
            "another repository",
        ),
    ] {
        let reply = post(&mut anon, "/tokens/only/deploy", &token).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{why}");
    }
    // A bearer issuer that speaks for no trust domain cannot mint checkout's identity.
    let spoof = ci.sign(&ci_claims(CHECKOUT, "deploy")).unwrap();
    let reply = post(&mut anon, "/tokens/either/charge", &spoof).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // (Even were it allowed, the upstream would see it as ci's subject, not as an identity.)
    let event = event_for(&gw, &reply).await;
    assert_eq!(event["reason"], "default_deny");
    assert!(event["source_spiffe_id"].is_null());
    // The ci issuer requires a jti.
    let no_jti = ci
        .sign(&without(ci_claims("repo:acme/app", "deploy"), "jti"))
        .unwrap();
    let reply = post(&mut anon, "/tokens/only/deploy", &no_jti).await;
    assert_eq!(
        event_for(&gw, &reply).await["reason"],
        "token_missing_claim"
    );
}

async fn metric(gw: &Gateway, name: &str) -> f64 {
    let (_, text) = gw.admin_get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_cache_serves_repeats_until_the_token_expires() {
    let gw = start().await;
    let mut anon = gw.anonymous_client(false).await;
    let t = now();
    // Valid for two more seconds (the issuer allows no leeway).
    let token = svid_key()
        .sign(&with(svid_claims(CHECKOUT), "exp", json!(t + 2)))
        .unwrap();
    let misses = metric(&gw, "zonegate_token_cache_misses_total").await;
    let hits = metric(&gw, "zonegate_token_cache_hits_total").await;
    for _ in 0..3 {
        assert_eq!(
            post(&mut anon, "/tokens/either/x", &token).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        metric(&gw, "zonegate_token_cache_misses_total").await - misses,
        1.0
    );
    assert_eq!(
        metric(&gw, "zonegate_token_cache_hits_total").await - hits,
        2.0
    );
    assert_eq!(metric(&gw, "zonegate_token_cache_entries").await, 1.0);
    // Served from the cache, and refused once expired: the clock is checked every time.
    while now() < t + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = post(&mut anon, "/tokens/either/x", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_expired");
    assert_eq!(
        metric(&gw, "zonegate_token_cache_hits_total").await - hits,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_key_rotation_apply_to_cached_tokens_on_the_next_request() {
    let gw = start().await;
    let mut anon = gw.anonymous_client(false).await;
    let claims = svid_claims(CHECKOUT);
    let token = svid_key().sign(&claims).unwrap();
    let other = svid_key().sign(&svid_claims(CHECKOUT)).unwrap();
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &token).await.status,
        StatusCode::OK
    );

    let before = gw.generation().await;
    gw.replace_file("revoked.toml", &format!("jtis = [{}]\n", claims["jti"]));
    let (status, body) = gw.reload_after_edit(before).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let reply = post(&mut anon, "/tokens/either/x", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_revoked");
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &other).await.status,
        StatusCode::OK
    );

    // The ES256 authority leaves the bundle: tokens it signed stop working at once, cached
    // or not; the RS256 authority's still work.
    let before = gw.generation().await;
    gw.replace_file(
        "jwt-bundle.json",
        &json!({ "keys": [rsa_key().jwk("jwt-svid")] }).to_string(),
    );
    let (status, body) = gw.reload_after_edit(before).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let reply = post(&mut anon, "/tokens/either/x", &other).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_unknown_key");
    let rsa = rsa_key().sign(&svid_claims(CHECKOUT)).unwrap();
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &rsa).await.status,
        StatusCode::OK
    );

    // A file that is no key set is refused, and the last good keys keep serving.
    let before = gw.generation().await;
    gw.replace_file("jwt-bundle.json", "{not json");
    let (status, body) = gw.reload_after_edit(before).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("not JSON"), "{body}");
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &rsa).await.status,
        StatusCode::OK
    );
    // A bundle whose only key is unusable loads and accepts nothing: a key can always be
    // withdrawn, even by a bundle this gateway cannot fully read.
    let before = gw.generation().await;
    gw.replace_file(
        "jwt-bundle.json",
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "use": "jwt-svid"}]}"#,
    );
    let (status, body) = gw.reload_after_edit(before).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let reply = post(&mut anon, "/tokens/either/x", &rsa).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_unknown_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_the_gateways_exactly_where_routes_take_tokens() {
    let gw = start().await;
    let mut mtls = gw.client(CHECKOUT, false).await;
    let token = svid_key().sign(&svid_claims(CHECKOUT)).unwrap();

    // On an `mtls` route even a header the gateway would call malformed is the upstream's.
    for value in ["Bearer not a token", "Bearer\tx", "Negotiate abc"] {
        let reply = mtls
            .send(
                Method::GET,
                "/payments/charge",
                &[("authorization", value)],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{value}");
        assert_eq!(reply.upstream_headers()["authorization"], value);
    }

    // On a token route, a bearer token hidden behind a tab is refused, not skipped: it would
    // dodge the binding check here and be honoured by a lenient upstream.
    let tabbed = format!("Bearer\t{token}");
    let reply = mtls
        .send(
            Method::GET,
            "/tokens/either/x",
            &[("authorization", &tabbed)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(event_for(&gw, &reply).await["reason"], "bad_authorization");
    // Another scheme there authenticates nothing, and is not forwarded either.
    let reply = mtls
        .send(
            Method::GET,
            "/tokens/either/x",
            &[("authorization", "Basic dXNlcjpwdw==")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let up = reply.upstream_headers();
    assert!(up.get("authorization").is_none(), "{up}");
    assert_eq!(up["x-zonegate-credential"], "x509-svid");
}

/// A token admits a request for as long as it is valid: a response still streaming when it
/// expires is cut, and the end is on record as the credential's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_admitted_by_a_token_ends_when_the_token_expires() {
    use futures::SinkExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let gw = start().await;
    let t = now();
    let token = svid_key()
        .sign(&with(svid_claims(CHECKOUT), "exp", json!(t + 2)))
        .unwrap();
    // No certificate: the token is the only credential, on a route that takes tokens only.
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(zonegate_e2e::anonymous_tls(
        &gw.pki, true,
    )))
    .connect(
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        tcp,
    )
    .await
    .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (mut tx, rx) =
        futures::channel::mpsc::channel::<Result<Frame<bytes::Bytes>, std::convert::Infallible>>(4);
    let request = http::Request::post("https://localhost/tokens/only/stream")
        .header("content-type", "application/grpc")
        .header("authorization", format!("Bearer {token}"))
        .body(StreamBody::new(rx))
        .unwrap();
    tx.send(Ok(Frame::data(bytes::Bytes::from_static(
        b"\0\0\0\0\x03one",
    ))))
    .await
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(&first.into_data().unwrap()[..], b"\0\0\0\0\x03one");
    // The stream stays open (the client keeps its side open) until the token expires.
    assert!(
        zonegate_e2e::ends_within(&mut body, Duration::from_secs(6)).await,
        "the stream outlived its token"
    );
    assert!(now() >= t + 2, "the stream ended before its token expired");
    let end = gw.events_where(1, |e| e["kind"] == "request_end").await;
    assert_eq!(end[0]["end"], "credential_expired");
    assert_eq!(end[0]["route"], "token-only");
    drop(tx);
}

/// spiffe-helper writes its JWT bundles (`jwt_bundle_file_name`) as one JSON object from trust
/// domain name to the base64 of that domain's bundle. A JWT-SVID issuer reads its own trust
/// domain's entry, and only that one: a federated domain's keys never verify its tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_helpers_jwt_bundle_map_gives_each_issuer_its_own_domains_keys() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let gw = start().await;
    let partner = TokenSigner::generate_es256().unwrap();
    let entry = |signer: &TokenSigner| {
        STANDARD.encode(json!({ "keys": [signer.jwk("jwt-svid")] }).to_string())
    };
    let before = gw.generation().await;
    gw.replace_file(
        "jwt-bundle.json",
        &json!({ "example.org": entry(svid_key()), "partner.example": entry(&partner) })
            .to_string(),
    );
    let (status, body) = gw.reload_after_edit(before).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let mut anon = gw.anonymous_client(false).await;
    let ours = svid_key().sign(&svid_claims(CHECKOUT)).unwrap();
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &ours).await.status,
        StatusCode::OK
    );
    // Signed by the partner domain's authority, claiming an example.org workload.
    let theirs = partner.sign(&svid_claims(CHECKOUT)).unwrap();
    let reply = post(&mut anon, "/tokens/either/x", &theirs).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(event_for(&gw, &reply).await["reason"], "token_unknown_key");

    // A map without the issuer's domain is refused by name; the last good keys keep serving.
    gw.replace_file(
        "jwt-bundle.json",
        &json!({ "partner.example": entry(&partner) }).to_string(),
    );
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("without trust domain `example.org` (it has: partner.example)"),
        "{body}"
    );
    assert_eq!(
        post(&mut anon, "/tokens/either/x", &ours).await.status,
        StatusCode::OK
    );
}
