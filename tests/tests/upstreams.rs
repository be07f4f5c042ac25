//! Upstream pools: mTLS upstreams where the gateway presents its own SVID, and load
//! balancing that routes around a dead address once health checks see it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use rustls::server::WebPkiClientVerifier;
use zonegate_devkit::devpki::{DevCa, LeafSpec};
use zonegate_e2e::*;

const ALLOW_LEDGER_EVERYWHERE: &str = r#"
[[rule]]
id = "ledger-all"
effect = "allow"
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
"#;

/// A TLS echo upstream for `localhost` with a certificate from `issuer`; when `client_ca` is
/// given it requires client certificates chaining to it (mTLS).
async fn tls_echo(issuer: &DevCa, client_ca: Option<&DevCa>) -> SocketAddr {
    let mut spec = LeafSpec::svid(API);
    spec.dns_sans = vec!["localhost".into()];
    tls_echo_as(issuer, client_ca, &spec).await
}

/// The upstream's SPIFFE ID in [`tls_echo`].
const API: &str = "spiffe://example.org/ns/payments/sa/api";

/// [`tls_echo`] with a certificate made as `spec` says.
async fn tls_echo_as(issuer: &DevCa, client_ca: Option<&DevCa>, spec: &LeafSpec) -> SocketAddr {
    let cert = issuer.issue(spec).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let server = builder
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
        .unwrap();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(zonegate_devkit::echo::serve(
        listener,
        Some(Arc::new(server)),
    ));
    addr
}

/// A gateway on `pki` with a `/secure` route to a TLS upstream at `addr`.
async fn gateway_to_tls_upstream(pki: Pki, addr: SocketAddr, tls: &str) -> Gateway {
    gateway_to_tls_upstream_with(pki, addr, tls, "sni = \"localhost\"\n").await
}

/// [`gateway_to_tls_upstream`] with more settings for its pool (`extra`, TOML lines).
async fn gateway_to_tls_upstream_with(
    pki: Pki,
    addr: SocketAddr,
    tls: &str,
    extra: &str,
) -> Gateway {
    Gateway::start_with_pki(
        pki,
        Setup {
            policy: ALLOW_LEDGER_EVERYWHERE.into(),
            extra_config: format!(
                "[[route]]\nname = \"secure\"\npath_prefix = \"/secure\"\nupstream = \"secure\"\n\
                 [upstream.secure]\naddresses = [\"{addr}\"]\ntls = \"{tls}\"\nca = \"CA_PATH\"\n{extra}"
            ),
            ..Setup::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_upstream_sees_the_gateways_svid() {
    let pki = Pki::new();
    // The upstream only accepts clients with an SVID of the gateway's trust domain.
    let upstream = tls_echo(&pki.ca, Some(&pki.ca)).await;
    let gw = gateway_to_tls_upstream(pki, upstream, "mtls").await;
    let mut ledger = gw.client(LEDGER, false).await;
    let reply = ledger.get("/secure/balance").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json()["path"], "/secure/balance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_upstream_refuses_a_gateway_without_client_certificate() {
    let pki = Pki::new();
    let upstream = tls_echo(&pki.ca, Some(&pki.ca)).await;
    let gw = gateway_to_tls_upstream(pki, upstream, "tls").await;
    let mut ledger = gw.client(LEDGER, false).await;
    assert_eq!(
        ledger.get("/secure/balance").await.status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_an_untrusted_certificate_is_a_502() {
    let pki = Pki::new();
    // An upstream whose certificate the gateway's CA file does not vouch for.
    let rogue = DevCa::new("example.org").unwrap();
    let upstream = tls_echo(&rogue, None).await;
    let gw = gateway_to_tls_upstream(pki, upstream, "tls").await;
    let mut ledger = gw.client(LEDGER, false).await;
    assert_eq!(
        ledger.get("/secure/balance").await.status,
        StatusCode::BAD_GATEWAY
    );
}

/// A pool that names the SPIFFE IDs its upstream may have checks the upstream's SVID for one
/// of them, in place of a DNS name (an SVID need not name a host): an exact ID or a path
/// below passes, even with no DNS name in the certificate; another workload's SVID from the
/// same CA is a 502 whose event names the identity it presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_must_present_a_spiffe_id_its_pool_allows() {
    for (allowed, served) in [
        (API, true),
        ("spiffe://example.org/ns/payments/*", true),
        ("spiffe://example.org/ns/payments/sa/ledger-db", false),
        ("spiffe://example.org/ns/shop/*", false),
    ] {
        let pki = Pki::new();
        // An SVID with no DNS name at all: only its SPIFFE ID can identify it.
        let upstream = tls_echo_as(&pki.ca, Some(&pki.ca), &LeafSpec::svid(API)).await;
        let gw = gateway_to_tls_upstream_with(
            pki,
            upstream,
            "mtls",
            &format!("spiffe_ids = [\"{allowed}\"]\n"),
        )
        .await;
        let mut ledger = gw.client(LEDGER, false).await;
        let reply = ledger.get("/secure/balance").await;
        if served {
            assert_eq!(reply.status, StatusCode::OK, "{allowed}: {:?}", reply.body);
            continue;
        }
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{allowed}");
        let events = gw
            .events_where(1, |e| e["reason"] == "upstream_unavailable")
            .await;
        let detail = events[0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("the upstream presented `{API}`")) && detail.contains(allowed),
            "{allowed}: {detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_address_in_the_pool_never_fails_a_request() {
    let live = zonegate_devkit::echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let gw = Gateway::start(Setup {
        policy: ALLOW_LEDGER_EVERYWHERE.into(),
        extra_config: format!(
            "[[route]]\nname = \"pool\"\npath_prefix = \"/pool\"\nupstream = \"pool\"\n\
             [upstream.pool]\naddresses = [\"{dead}\", \"{live}\"]\nhealth_check_interval_ms = 50\nconnect_timeout_ms = 200\n"
        ),
        ..Setup::default()
    })
    .await;
    // Give the checker a few rounds to mark the dead address down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut ledger = gw.client(LEDGER, false).await;
    for _ in 0..10 {
        assert_eq!(ledger.get("/pool/x").await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_times_out_with_504_and_an_event() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let gw = Gateway::start(Setup {
        policy: format!("{ALLOW_LEDGER_EVERYWHERE}\n{POLICY}"),
        extra_config: format!(
            "[[route]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slow\"\n\
             [upstream.slow]\naddresses = [\"{silent}\"]\nread_timeout_ms = 300\n"
        ),
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let mut ledger = gw.client(LEDGER, false).await;
    let reply = ledger.get("/slow/x").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.json()["error"], "gateway_timeout");
    // Cross-zone so that the timeout is certainly recorded with its identity.
    let _ = checkout.get("/payments/charge").await;
    let events = gw.events(1).await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "upstream_timeout" && e["status"] == 504),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_follow_requests_in_flight_not_clients_and_expire_when_idle() {
    let CountedEcho {
        addr: upstream,
        connections: opened,
        ..
    } = CountedEcho::start().await;
    let gw = Gateway::start(Setup {
        policy: ALLOW_LEDGER_EVERYWHERE.into(),
        extra_config: format!(
            "[[route]]\nname = \"counted\"\npath_prefix = \"/counted\"\nupstream = \"counted\"\n\
             [upstream.counted]\naddresses = [\"{upstream}\"]\nidle_timeout_ms = 300\n"
        ),
        ..Setup::default()
    })
    .await;
    // Twenty clients one after another, each kept open: one upstream connection serves all.
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut client = gw.client(LEDGER, i % 2 == 0).await;
        assert_eq!(client.get("/counted/x").await.status, StatusCode::OK);
        clients.push(client);
    }
    let seen = opened.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        seen, 1,
        "{seen} upstream connections for 20 sequential requests"
    );
    // Idle past the pool's idle timeout: the next request opens a fresh one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(clients[0].get("/counted/x").await.status, StatusCode::OK);
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Two "pods" behind one host name, on one port: 127.0.0.2 and 127.0.0.3 (all of 127/8 is
/// loopback). Retries with another port when the second address's port is taken.
async fn two_pods() -> (CountedEcho, CountedEcho) {
    for _ in 0..20 {
        let first = CountedEcho::start_at(Ipv4Addr::new(127, 0, 0, 2), 0)
            .await
            .unwrap();
        if let Ok(second) =
            CountedEcho::start_at(Ipv4Addr::new(127, 0, 0, 3), first.addr.port()).await
        {
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Waits until `check` holds, for at most 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_upstream_follows_its_dns_records_and_outlives_a_dns_failure() {
    use std::sync::atomic::Ordering;
    let (pod_a, pod_b) = two_pods().await;
    let port = pod_a.addr.port();
    let dns = zonegate_e2e::dns::DnsServer::start().await;
    let host = "api.payments.test";
    let name = format!("{host}:{port}");
    dns.set(
        host,
        &[Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
        1,
    );
    let gw = Gateway::start(Setup {
        upstream_name: Some(name.clone()),
        extra_config: format!(
            "[dns]\nnameservers = [\"{}\"]\nmin_ttl_s = 1\nmax_ttl_s = 2\ntimeout_ms = 500\n",
            dns.addr
        ),
        ..Setup::default()
    })
    .await;
    // Resolved before the gateway served its first request: both pods take requests.
    let mut checkout = gw.client(CHECKOUT, false).await;
    for _ in 0..6 {
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
    }
    assert!(pod_a.bytes.load(Ordering::SeqCst) > 0, "pod a got nothing");
    assert!(pod_b.bytes.load(Ordering::SeqCst) > 0, "pod b got nothing");
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "zonegate_upstream_dns_addresses{{name=\"{name}\"}} 2"
        )),
        "{metrics}"
    );

    // Pod a goes away from the records: once its TTL is up, it gets no more requests.
    dns.set(host, &[Ipv4Addr::new(127, 0, 0, 3)], 1);
    eventually("the pool drops pod a", async || {
        let before = pod_a.bytes.load(Ordering::SeqCst);
        for _ in 0..4 {
            assert_eq!(
                checkout.get("/payments/charge").await.status,
                StatusCode::OK
            );
        }
        pod_a.bytes.load(Ordering::SeqCst) == before
    })
    .await;
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "zonegate_upstream_dns_addresses{{name=\"{name}\"}} 1"
        )),
        "{metrics}"
    );
    let a_before = pod_a.bytes.load(Ordering::SeqCst);
    let b_before = pod_b.bytes.load(Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        pod_a.bytes.load(Ordering::SeqCst),
        a_before,
        "pod a still served"
    );
    assert!(pod_b.bytes.load(Ordering::SeqCst) > b_before);

    // The DNS server fails: the last good address stays in use, and the failure is reported.
    dns.fail(true);
    let failed = gw
        .events_where(1, |e| {
            e["kind"] == "upstream_resolution" && e["result"] == "failed"
        })
        .await;
    assert_eq!(failed[0]["name"], name.as_str());
    assert_eq!(failed[0]["addresses"], 1);
    assert!(failed[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
    for _ in 0..4 {
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
    }
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(metrics.contains(&format!(
        "zonegate_upstream_dns_failing{{name=\"{name}\"}} 1"
    )));
    let (_, status) = gw.admin_get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["upstream_names"][0]["name"], name.as_str());
    assert!(status["upstream_names"][0]["last_error"].is_string());

    // And it comes back.
    dns.fail(false);
    gw.events_where(1, |e| {
        e["kind"] == "upstream_resolution" && e["result"] == "recovered"
    })
    .await;
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(metrics.contains(&format!(
        "zonegate_upstream_dns_failing{{name=\"{name}\"}} 0"
    )));

    // Pod a is back in the records: from one address (which the pool takes without
    // choosing) to two, and both take requests again.
    dns.set(
        host,
        &[Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
        1,
    );
    eventually("the pool takes pod a back", async || {
        let before = pod_a.bytes.load(Ordering::SeqCst);
        for _ in 0..4 {
            assert_eq!(
                checkout.get("/payments/charge").await.status,
                StatusCode::OK
            );
        }
        pod_a.bytes.load(Ordering::SeqCst) > before
    })
    .await;
}

/// An answer after which the gateway closes the connection says so (`Connection: close`), so
/// a client that follows HTTP opens a new connection instead of failing on the closed one:
/// curl, asked for six URLs against a dead upstream, gets six 502s and no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_closes_the_connection_says_so_and_no_request_fails() {
    let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let gw = Gateway::start(Setup {
        upstream: Some(dead),
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let reply = checkout.get("/payments/charge").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.headers["connection"], "close");

    let svid = gw.pki.svid(CHECKOUT);
    let dir = gw.pki.path();
    std::fs::write(dir.join("curl.crt"), &svid.cert_pem).unwrap();
    std::fs::write(dir.join("curl.key"), &svid.key_pem).unwrap();
    let url = format!("https://localhost:{}/payments/charge", gw.port);
    let dir = dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "-w", "%{http_code}\\n", "--max-time", "10"])
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(dir.join("curl.crt"))
            .arg("--key")
            .arg(dir.join("curl.key"));
        for _ in 0..6 {
            curl.args(["-o", "/dev/null"]).arg(&url);
        }
        curl.output()
            .expect("curl is installed (.ci/run installs it)")
    })
    .await
    .unwrap();
    let codes = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(codes.lines().collect::<Vec<_>>(), ["502"; 6], "{codes}");
}
