//! Bearer token issuers' keys fetched over HTTPS from a real (test) OpenID provider: found
//! through its discovery document or at its JWK Set URL, written to the issuer's keys file and
//! applied by the reload; fetched again, at most once per interval, for a token naming a key
//! the gateway lacks; refreshed by the JWK Set's Cache-Control; kept when the issuer fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use zonegate_devkit::devpki::DevCa;
use zonegate_devkit::devtoken::TokenSigner;
use zonegate_e2e::issuer::{Answer, Issuer, DISCOVERY_PATH, KEYS_PATH};
use zonegate_e2e::{Gateway, Setup, POLICY};

const AUDIENCE: &str = "payments-gateway";
const SUBJECT: &str = "repo:acme/app";
const KEYS_FILE: &str = "idp-jwks.json";

const IDP_POLICY: &str = r#"
[[rule]]
id = "idp-deploys"
effect = "allow"
issuers = ["idp"]
subjects = ["repo:acme/*"]
routes = ["token-only"]
methods = ["POST"]
paths = ["/tokens/only/deploy"]
"#;

/// How the gateway finds the issuer's keys.
enum Source {
    Discovery,
    JwksUri,
}

/// A gateway whose `idp` issuer's keys come from `issuer`, whose certificate `web` issued;
/// `extra` adds keys to `[token_issuer.idp]`, `bootstrap` is its keys file before any fetch.
async fn gateway(
    issuer: &Issuer,
    web: &DevCa,
    source: Source,
    extra: &str,
    bootstrap: Option<String>,
) -> Gateway {
    let url = issuer.url();
    let source = match source {
        Source::Discovery => format!("discovery = \"{url}{DISCOVERY_PATH}\""),
        Source::JwksUri => format!("jwks_uri = \"{url}{KEYS_PATH}\""),
    };
    let mut files = vec![("web-ca.pem".to_string(), web.cert_pem())];
    files.extend(bootstrap.map(|keys| (KEYS_FILE.to_string(), keys)));
    Gateway::start(Setup {
        policy: format!("{POLICY}\n{IDP_POLICY}"),
        extra_config: format!(
            r#"
[token_issuer.idp]
kind = "jwt"
issuer = "{url}"
{source}
endpoint_ca = "web-ca.pem"
keys = "{KEYS_FILE}"
algorithms = ["ES256"]
audiences = ["{AUDIENCE}"]
{extra}

[[route]]
name = "token-only"
path_prefix = "/tokens/only"
upstream = "payments"
credentials = "token"
"#
        ),
        client_cert_optional: true,
        files,
        ..Setup::default()
    })
    .await
}

fn jwks(keys: &[&TokenSigner]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk("sig")).collect::<Vec<_>>() }).to_string()
}

fn claims(issuer: &Issuer) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({ "iss": issuer.url(), "sub": SUBJECT, "aud": AUDIENCE, "iat": now, "exp": now + 300 })
}

fn token(issuer: &Issuer, key: &TokenSigner) -> String {
    key.sign(&claims(issuer)).unwrap()
}

/// What the gateway answers a deploy with `token`, on a new connection.
async fn status_of(gw: &Gateway, token: &str) -> StatusCode {
    let mut client = gw.anonymous_client(false).await;
    client
        .with_token(Method::POST, "/tokens/only/deploy", token)
        .await
        .status
}

fn keys_file(gw: &Gateway) -> Option<String> {
    std::fs::read_to_string(gw.dir.path().join(KEYS_FILE)).ok()
}

/// A sample of the gateway's metrics for the `idp` issuer: `name{issuer="idp"...}`.
async fn metric(gw: &Gateway, series: &str) -> Option<i64> {
    let (_, metrics) = gw.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn fetches(gw: &Gateway, result: &str) -> i64 {
    let series = format!("zonegate_jwks_fetches_total{{issuer=\"idp\",result=\"{result}\"}}");
    metric(gw, &series).await.unwrap_or(0)
}

/// Waits (15 s at most) until `done` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_found_by_discovery_verify_tokens_and_a_rotated_in_key_is_fetched_for_its_first_token()
{
    let web = DevCa::new("web.test").unwrap();
    let issuer = &Issuer::start(&web).await;
    let (old, new) = (
        TokenSigner::generate_es256().unwrap(),
        TokenSigner::generate_es256().unwrap(),
    );
    // Keys good for an hour: nothing but a token's unknown kid fetches them again meanwhile.
    issuer.answer(KEYS_PATH, Answer::cached(jwks(&[&old]), "max-age=3600"));
    // No keys file: the first fetch writes it (the first token finds the keys, or waits for
    // them).
    let gw = &gateway(
        issuer,
        &web,
        Source::Discovery,
        "unknown_kid_refetch_s = 1",
        None,
    )
    .await;
    assert_eq!(status_of(gw, &token(issuer, &old)).await, StatusCode::OK);
    assert_eq!(keys_file(gw), Some(jwks(&[&old])));
    assert!(issuer.hits(DISCOVERY_PATH) >= 1);
    assert!(fetches(gw, "updated").await >= 1);
    let (_, status) = gw.admin_get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let idp = &status["token_issuers"][0];
    assert_eq!(idp["keys"], json!([old.kid]));
    assert_eq!(
        idp["keys_from"],
        format!("{}{DISCOVERY_PATH}", issuer.url())
    );

    // The first token may have used the refetch of this second; let the interval pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = issuer.hits(KEYS_PATH);
    issuer.answer(
        KEYS_PATH,
        Answer::cached(jwks(&[&old, &new]), "max-age=3600"),
    );
    // The first token signed with the new key waits for the one fetch it causes, and is
    // admitted on the keys it brought.
    let started = Instant::now();
    assert_eq!(status_of(gw, &token(issuer, &new)).await, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(issuer.hits(KEYS_PATH), before + 1);
    assert_eq!(keys_file(gw), Some(jwks(&[&old, &new])));
    assert_eq!(status_of(gw, &token(issuer, &old)).await, StatusCode::OK);
    assert_eq!(
        issuer.hits(KEYS_PATH),
        before + 1,
        "a known key fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_random_kids_cause_one_fetch_per_interval_however_many_they_are() {
    let web = DevCa::new("web.test").unwrap();
    let issuer = &Issuer::start(&web).await;
    let key = TokenSigner::generate_es256().unwrap();
    issuer.answer(KEYS_PATH, Answer::cached(jwks(&[&key]), "max-age=3600"));
    // The issuer's keys are on disk already: no token needs a fetch to be admitted.
    let gw = &gateway(issuer, &web, Source::Discovery, "", Some(jwks(&[&key]))).await;
    until("the first fetch", || async move {
        fetches(gw, "unchanged").await >= 1
    })
    .await;
    assert_eq!(status_of(gw, &token(issuer, &key)).await, StatusCode::OK);
    let before = issuer.hits(KEYS_PATH);
    assert_eq!(before, 1);

    let mut client = gw.anonymous_client(false).await;
    for i in 0..40 {
        let header = json!({ "alg": "ES256", "typ": "JWT",
                             "kid": format!("random-{i}-{}", rand::random::<u64>()) });
        let forged = key.sign_with_header(&header, &claims(issuer)).unwrap();
        let reply = client
            .with_token(Method::POST, "/tokens/only/deploy", &forged)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "kid {i}");
    }
    // The first unknown kid fetched the keys again (unknown_kid_refetch_s: 30 s); the other
    // 39 were refused on the keys in force.
    assert_eq!(issuer.hits(KEYS_PATH), before + 1);
    assert_eq!(status_of(gw, &token(issuer, &key)).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_issuer_keeps_the_last_good_keys_in_force_and_each_failure_is_counted() {
    let web = DevCa::new("web.test").unwrap();
    let issuer = &Issuer::start(&web).await;
    let (good, other) = (
        TokenSigner::generate_es256().unwrap(),
        TokenSigner::generate_es256().unwrap(),
    );
    // Fetched every second, so each failure below shows soon.
    issuer.answer(KEYS_PATH, Answer::cached(jwks(&[&good]), "max-age=1"));
    issuer.answer("/other-keys", Answer::json(jwks(&[&other])));
    let gw = &gateway(issuer, &web, Source::Discovery, "min_refresh_s = 1", None).await;
    let first = &good;
    until("the issuer's keys in force", || async move {
        status_of(gw, &token(issuer, first)).await == StatusCode::OK
    })
    .await;

    let failures = [
        (KEYS_PATH, Answer::Status(StatusCode::SERVICE_UNAVAILABLE)),
        (KEYS_PATH, Answer::json("{\"keys\": [")),
        (KEYS_PATH, Answer::json("{\"no\": \"keys\"}")),
        // Redirects are not followed: the keys are where the config says.
        (
            KEYS_PATH,
            Answer::Redirect(format!("{}/other-keys", issuer.url())),
        ),
        // Over the 1 MiB bound, however good a key set it would otherwise be.
        (
            KEYS_PATH,
            Answer::json(
                json!({ "keys": [other.jwk("sig")], "padding": "x".repeat(1 << 20) }).to_string(),
            ),
        ),
        // Another issuer's discovery document, naming keys the gateway must never take.
        (
            DISCOVERY_PATH,
            Answer::json(issuer.discovery_with("https://evil.example", "/other-keys")),
        ),
    ];
    for (path, answer) in failures {
        let before = fetches(gw, "failed").await;
        issuer.answer(path, answer.clone());
        until("a failed fetch counted", || async move {
            fetches(gw, "failed").await > before
        })
        .await;
        assert_eq!(
            status_of(gw, &token(issuer, &good)).await,
            StatusCode::OK,
            "{answer:?}"
        );
        assert_eq!(
            status_of(gw, &token(issuer, &other)).await,
            StatusCode::UNAUTHORIZED,
            "{answer:?}"
        );
        assert_eq!(keys_file(gw), Some(jwks(&[&good])), "{answer:?}");
        let restored = match path {
            DISCOVERY_PATH => Answer::json(issuer.discovery(&issuer.url())),
            _ => Answer::cached(jwks(&[&good]), "max-age=1"),
        };
        issuer.answer(path, restored);
    }
    let age = metric(gw, "zonegate_jwks_keys_age_seconds{issuer=\"idp\"}").await;
    assert!(age.is_some_and(|s| (0..60).contains(&s)), "{age:?}");
    assert!(
        issuer.hits("/other-keys") == 0,
        "another issuer's keys fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_cache_control_max_age_sets_when_keys_are_fetched_again() {
    let web = DevCa::new("web.test").unwrap();
    let issuer = &Issuer::start(&web).await;
    let key = TokenSigner::generate_es256().unwrap();
    issuer.answer(
        KEYS_PATH,
        Answer::cached(jwks(&[&key]), "public, max-age=1"),
    );
    let gw = &gateway(
        issuer,
        &web,
        Source::JwksUri,
        "min_refresh_s = 1",
        Some(jwks(&[&key])),
    )
    .await;
    // max-age=1: fetched about every second (without it, every five minutes).
    until(
        "three fetches",
        || async move { issuer.hits(KEYS_PATH) >= 3 },
    )
    .await;
    assert_eq!(
        issuer.hits(DISCOVERY_PATH),
        0,
        "jwks_uri needs no discovery"
    );

    // max-age=3600: the next fetch learns it, and there is none after it for the test's time.
    issuer.answer(KEYS_PATH, Answer::cached(jwks(&[&key]), "max-age=3600"));
    let before = issuer.hits(KEYS_PATH);
    until("the fetch that learns max-age=3600", || async move {
        issuer.hits(KEYS_PATH) > before
    })
    .await;
    let settled = issuer.hits(KEYS_PATH);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(issuer.hits(KEYS_PATH), settled);
    assert_eq!(status_of(gw, &token(issuer, &key)).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_whose_certificate_is_not_trusted_is_not_fetched_from() {
    let web = DevCa::new("web.test").unwrap();
    let stranger = DevCa::new("web.test").unwrap();
    // The issuer's certificate is from a CA the gateway was not told to trust.
    let issuer = &Issuer::start(&stranger).await;
    let key = TokenSigner::generate_es256().unwrap();
    issuer.answer(KEYS_PATH, Answer::json(jwks(&[&key])));
    let gw = &gateway(issuer, &web, Source::Discovery, "", None).await;
    until("a failed fetch counted", || async move {
        fetches(gw, "failed").await >= 1
    })
    .await;
    assert_eq!(
        status_of(gw, &token(issuer, &key)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(keys_file(gw), None);
    assert_eq!(issuer.hits(DISCOVERY_PATH) + issuer.hits(KEYS_PATH), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_arriving_during_a_rotated_in_keys_fetch_and_reload_share_it_and_are_all_admitted()
{
    let web = DevCa::new("web.test").unwrap();
    let issuer = &Issuer::start(&web).await;
    let (old, new) = (
        TokenSigner::generate_es256().unwrap(),
        TokenSigner::generate_es256().unwrap(),
    );
    issuer.answer(KEYS_PATH, Answer::cached(jwks(&[&old]), "max-age=3600"));
    let gw = &gateway(issuer, &web, Source::JwksUri, "", Some(jwks(&[&old]))).await;
    until("the first fetch", || async move {
        fetches(gw, "unchanged").await >= 1
    })
    .await;
    let before = issuer.hits(KEYS_PATH);
    issuer.answer(
        KEYS_PATH,
        Answer::cached(jwks(&[&old, &new]), "max-age=3600"),
    );
    let token = &token(issuer, &new);
    // Connected first, then asking 40 ms apart: the first causes the fetch; the next ones
    // arrive while it runs, or after it wrote the keys but before the reload applied them
    // (the reload waits 150 ms for a burst of file changes to settle). All wait, none is
    // refused meanwhile.
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(gw.anonymous_client(false).await);
    }
    let statuses = futures::future::join_all(clients.iter_mut().enumerate().map(
        |(i, client)| async move {
            tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
            client
                .with_token(Method::POST, "/tokens/only/deploy", token)
                .await
                .status
        },
    ))
    .await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(issuer.hits(KEYS_PATH), before + 1);
}
