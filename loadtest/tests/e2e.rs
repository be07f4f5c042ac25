//! End to end: the real `zonegate-loadtest` binary against a small in-process mTLS server
//! (rustls + hyper, HTTP/1.1 and HTTP/2) with a PKI minted by rcgen at test time. The server
//! keeps its own counts, so the tool's report is checked against what really arrived.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const CHECKOUT_TOKEN: &str = "tok-checkout";
const DEFAULT_TOKEN: &str = "tok-default";

/// A CA, the server's certificate, two client SVIDs and a CA nobody trusts, as files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    checkout: CertificateDer<'static>,
    cart: CertificateDer<'static>,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = ca("loadtest test CA");
        let issue = |sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.subject_alt_names = sans;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![eku];
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).unwrap();
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (cert.der().clone(), der)
        };
        let uri = |id: &str| SanType::URI(id.try_into().unwrap());
        let server = issue(
            vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        let checkout = issue(
            vec![uri("spiffe://example.org/ns/shop/sa/checkout")],
            ExtendedKeyUsagePurpose::ClientAuth,
            "checkout",
        );
        let cart = issue(
            vec![uri("spiffe://example.org/ns/shop/sa/cart")],
            ExtendedKeyUsagePurpose::ClientAuth,
            "cart",
        );
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        let (rogue, _) = ca("rogue CA");
        std::fs::write(dir.path().join("rogue-ca.crt"), rogue.pem()).unwrap();
        std::fs::write(
            dir.path().join("checkout.jwt"),
            format!("{CHECKOUT_TOKEN}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("default.jwt"), DEFAULT_TOKEN).unwrap();
        Pki {
            ca: ca_cert.der().clone(),
            server,
            checkout: checkout.0,
            cart: cart.0,
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// Accepted TLS handshakes per client identity.
    handshakes: Mutex<BTreeMap<String, u64>>,
    requests: AtomicU64,
    h2_requests: AtomicU64,
}

/// Answers like a gateway would: checkout may refund, cart may not; each identity must
/// carry its own bearer token (checkout its own, cart the default one), else 401.
async fn handle(
    who: &'static str,
    seen: Arc<Seen>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    if req.version() == Version::HTTP_2 {
        seen.h2_requests.fetch_add(1, Ordering::Relaxed);
    }
    let token = if who == "checkout" {
        CHECKOUT_TOKEN
    } else {
        DEFAULT_TOKEN
    };
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {token}"));
    let status = match (authorized, req.method().as_str(), req.uri().path(), who) {
        (false, ..) => StatusCode::UNAUTHORIZED,
        (true, "GET", "/payments/charge", _) => StatusCode::OK,
        (true, "POST", "/payments/refund", "checkout") => StatusCode::OK,
        (true, "POST", "/payments/refund", _) => StatusCode::FORBIDDEN,
        _ => StatusCode::NOT_FOUND,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *response.status_mut() = status;
    response
}

async fn start_server(pki: &Pki) -> (SocketAddr, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let (checkout, cart) = (pki.checkout.clone(), pki.cart.clone());
    let server_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), server_seen.clone());
            let (checkout, cart) = (checkout.clone(), cart.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                let who: &'static str = match peer {
                    Some(c) if *c == checkout => "checkout",
                    Some(c) if *c == cart => "cart",
                    _ => "unknown",
                };
                *seen
                    .handshakes
                    .lock()
                    .unwrap()
                    .entry(who.into())
                    .or_default() += 1;
                let service = service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(handle(who, seen, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Runs the binary (off the runtime's threads, so the server keeps serving).
async fn loadtest(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zonegate-loadtest"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The JSON report of a successful run.
async fn report(args: Vec<String>) -> Value {
    let out = loadtest(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"))
}

fn base_args(pki: &Pki, addr: SocketAddr) -> Vec<String> {
    vec![
        format!("https://localhost:{}", addr.port()),
        "--ca".into(),
        pki.path("ca.crt"),
        "--identity".into(),
        format!(
            "{},{},weight=3,bearer={}",
            pki.path("checkout.crt"),
            pki.path("checkout.key"),
            pki.path("checkout.jwt")
        ),
        "--identity".into(),
        format!("{},{},weight=1", pki.path("cart.crt"), pki.path("cart.key")),
        "--bearer-file".into(),
        pki.path("default.jwt"),
        "--request".into(),
        "GET /payments/charge weight=9".into(),
        "--request".into(),
        "POST /payments/refund weight=1".into(),
        "--json".into(),
        "--quiet".into(),
    ]
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Sum of a status (or error kind) over the mix rows matching `pred`.
fn mix_sum(report: &Value, pred: impl Fn(&str, &str) -> bool, field: &str, key: &str) -> u64 {
    report["mix"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            pred(
                r["identity"].as_str().unwrap(),
                r["request"].as_str().unwrap(),
            )
        })
        .map(|r| count(&r[field], key))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_mix_reaches_the_server_with_each_identitys_token() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    let r = report(with(
        base_args(&pki, addr),
        &["-c", "4", "--requests", "400"],
    ))
    .await;

    assert_eq!(r["mode"], "h1");
    assert_eq!((count(&r, "requests"), count(&r, "errors")), (400, 0));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 400);
    // Every request carried the right token for its identity: no 401, no stray status.
    let status = &r["status"];
    assert_eq!(count(status, "200") + count(status, "403"), 400, "{status}");
    // The request mix is exact: 9:1 over 400 requests.
    let get = |_: &str, req: &str| req == "GET /payments/charge";
    let post = |_: &str, req: &str| req == "POST /payments/refund";
    assert_eq!(mix_sum(&r, get, "status", "200"), 360);
    assert_eq!(
        mix_sum(&r, post, "status", "200") + mix_sum(&r, post, "status", "403"),
        40
    );
    // Denials come from cart refunds and nothing else.
    assert_eq!(
        mix_sum(
            &r,
            |id, req| id == "cart" && req == "POST /payments/refund",
            "status",
            "403"
        ),
        count(status, "403")
    );
    assert_eq!(mix_sum(&r, |id, _| id == "checkout", "status", "403"), 0);
    // Identities are chosen per connection, 3:1 over 4 keep-alive connections.
    let handshakes = seen.handshakes.lock().unwrap().clone();
    assert_eq!(
        handshakes,
        BTreeMap::from([("cart".into(), 1), ("checkout".into(), 3)])
    );
    assert_eq!(r["tls_handshakes"]["full"], 4);
    assert!(r["latency_us"]["p99"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_multiplexes_streams_over_few_connections() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    let r = report(with(
        base_args(&pki, addr),
        &["--h2", "--streams", "8", "-c", "2", "--requests", "300"],
    ))
    .await;
    assert_eq!(
        (r["mode"].as_str(), r["streams"].as_u64()),
        (Some("h2"), Some(8))
    );
    assert_eq!((count(&r, "responses"), count(&r, "errors")), (300, 0));
    assert_eq!(seen.h2_requests.load(Ordering::Relaxed), 300);
    let handshakes: u64 = seen.handshakes.lock().unwrap().values().sum();
    assert_eq!(handshakes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connection_per_request_with_and_without_resumption() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    let r = report(with(
        base_args(&pki, addr),
        &["--new-conn", "-c", "4", "--requests", "40"],
    ))
    .await;
    assert_eq!((count(&r, "responses"), count(&r, "errors")), (40, 0));
    assert_eq!(r["tls_handshakes"]["full"], 40);
    assert_eq!(r["tls_handshakes"]["resumed"], 0);
    assert_eq!(r["connections_opened"], 40);
    let handshakes = seen.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.values().sum::<u64>(), 40);
    // Per request, the identity mix is exact too: 3:1.
    assert_eq!(handshakes.get("cart"), Some(&10), "{handshakes:?}");

    // The server offers resumption (rustls keeps a session cache): with --resume the client
    // takes it, and the report says so.
    let r = report(with(
        base_args(&pki, addr),
        &["--new-conn", "--resume", "-c", "4", "--requests", "40"],
    ))
    .await;
    let (full, resumed) = (
        count(&r["tls_handshakes"], "full"),
        count(&r["tls_handshakes"], "resumed"),
    );
    assert_eq!(full + resumed, 40);
    assert!(resumed > 0 && full > 0, "full {full}, resumed {resumed}");
    assert_eq!(count(&r, "errors"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_exactly_rate_times_duration() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    let r = report(with(
        base_args(&pki, addr),
        &["--rate", "200", "--duration", "1s", "-c", "4"],
    ))
    .await;
    assert_eq!(r["rate"], 200.0);
    assert_eq!((count(&r, "requests"), count(&r, "errors")), (200, 0));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 200);
    let rps = r["rps"].as_f64().unwrap();
    // Loose: the exact count above is the point; a busy CI box may stretch the last response.
    assert!((100.0..=210.0).contains(&rps), "{rps}");
    // Latency from the intended send time can only be longer than from the actual send.
    let (latency, service) = (&r["latency_us"], &r["service_us"]);
    assert!(latency["max"].as_f64() >= service["max"].as_f64(), "{r}");
    assert_eq!(latency["count"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_keeps_idle_connections_and_checks_them_at_the_end() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    let r = report(with(
        base_args(&pki, addr),
        &["--hold", "-c", "20", "--duration", "300ms"],
    ))
    .await;
    assert_eq!(r["mode"], "hold");
    assert_eq!(r["held"], 20);
    assert_eq!((count(&r, "requests"), count(&r, "errors")), (40, 0));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 40);
    let handshakes: u64 = seen.handshakes.lock().unwrap().values().sum();
    assert_eq!(
        handshakes, 20,
        "one connection each, reused after the idle period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_kind() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    // The server's certificate does not chain to the CA given: every handshake fails.
    let mut args = base_args(&pki, addr);
    args[2] = pki.path("rogue-ca.crt");
    let out = loadtest(with(args, &["-c", "1", "--requests", "5"])).await;
    assert_eq!(out.status.code(), Some(1), "no response at all");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["error_kinds"], serde_json::json!({"tls": 5}));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 0);

    // Nothing listens there any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = loadtest(vec![
        format!("http://127.0.0.1:{port}"),
        "-c".into(),
        "1".into(),
        "--requests".into(),
        "3".into(),
        "--json".into(),
        "--quiet".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["error_kinds"], serde_json::json!({"connect": 3}));
}

#[tokio::test]
async fn refuses_non_loopback_targets_before_sending_anything() {
    for url in [
        "https://10.255.255.1:8443",
        "http://0.0.0.0:80",
        "http://[2001:db8::1]:80",
    ] {
        let out = loadtest(vec![url.into(), "--requests".into(), "1".into()]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url}: {stderr}");
        assert!(stderr.contains("not loopback"), "{url}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_file_drives_the_same_mix() {
    let pki = Pki::new();
    let (addr, seen) = start_server(&pki).await;
    let scenario = pki.dir.path().join("mix.toml");
    std::fs::write(
        &scenario,
        r#"
ca = "ca.crt"
bearer_file = "default.jwt"
[[identity]]
cert = "cart.crt"
key = "cart.key"
[[request]]
method = "POST"
path = "/payments/refund"
"#,
    )
    .unwrap();
    let r = report(vec![
        format!("https://localhost:{}", addr.port()),
        "--scenario".into(),
        scenario.display().to_string(),
        "-c".into(),
        "2".into(),
        "--requests".into(),
        "20".into(),
        "--json".into(),
        "--quiet".into(),
    ])
    .await;
    assert_eq!(r["status"], serde_json::json!({"403": 20}));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 20);
}
