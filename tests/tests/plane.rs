//! The data plane over real TLS: request-head and body limits answered before the upstream,
//! underscored header names that could smuggle an identity, GOAWAY on a refused certificate,
//! HTTP/2 rapid reset bounded, and refused handshakes (no certificate, a certificate without
//! its key, a weak key) as events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use zonegate_e2e::*;

/// (what, path, headers, expected status, error name) of a request sent over HTTP/2.
type H2Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16, &'a str);

/// The body of a raw HTTP/1.1 response, as JSON.
fn raw_json(response: &str) -> serde_json::Value {
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no body in {response:?}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {response:?}"))
}

/// Asserts that `body` is the gateway's own refusal (`{"error", "request_id"}`), not an echo,
/// and returns its request id.
fn gateway_refusal(body: &serde_json::Value, error: &str) -> String {
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body.get("headers").is_none() && body.get("path").is_none(),
        "the echo upstream answered: {body}"
    );
    let id = body["request_id"].as_str().expect("request_id").to_string();
    assert_eq!(id.len(), 32, "{body}");
    id
}

/// The value of the metric line starting with `series ` (labels included), if present.
fn metric(metrics: &str, series: &str) -> Option<u64> {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// Polls `/metrics` until `series` reaches `want`, and returns the last value seen.
async fn wait_metric(gw: &Gateway, series: &str, want: u64) -> (Option<u64>, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, metrics) = gw.admin_get("/metrics").await;
        assert_eq!(status, 200);
        let value = metric(&metrics, series);
        if value == Some(want) || Instant::now() > deadline {
            return (value, metrics);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431_or_414_and_an_event_and_never_reach_the_upstream() {
    let CountedEcho {
        addr: upstream,
        bytes: upstream_bytes,
        ..
    } = CountedEcho::start().await;
    let gw = Gateway::start(Setup {
        upstream: Some(upstream),
        extra_config:
            "[connections]\nmax_header_bytes = 4096\nmax_headers = 20\nmax_target_bytes = 512\n"
                .into(),
        ..Setup::default()
    })
    .await;
    let svid = gw.pki.svid(CHECKOUT);
    let big_value = "a".repeat(5000);
    let many_headers: String = (0..30).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let long_target = format!("/payments/charge?pad={}", "p".repeat(600));
    assert!(long_target.len() > 512);

    // (what, expected status, error name, event reason) with the request ids answered.
    let mut refused: Vec<(String, u16, &str, String)> = Vec::new();

    // HTTP/1.1, byte for byte.
    let h1_cases = [
        (
            "h1 one 5000-byte header",
            format!("GET /payments/charge HTTP/1.1\r\nHost: localhost\r\nx-big: {big_value}\r\nConnection: close\r\n\r\n"),
            431,
            "headers_too_large",
        ),
        (
            "h1 30 headers",
            format!("GET /payments/charge HTTP/1.1\r\nHost: localhost\r\n{many_headers}Connection: close\r\n\r\n"),
            431,
            "headers_too_large",
        ),
        (
            "h1 600-byte target",
            format!("GET {long_target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
            414,
            "target_too_long",
        ),
    ];
    for (what, request, status, error) in h1_cases {
        let response = raw_request(gw.addr(), &gw.pki, &svid, &request).await;
        assert_eq!(raw_status(&response), status, "{what}: {response}");
        let id = gateway_refusal(&raw_json(&response), error);
        refused.push((what.to_string(), status, error, id));
    }

    // HTTP/2 through hyper's client, all on one connection.
    let mut h2 = gw.client(CHECKOUT, true).await;
    let filler: Vec<(String, String)> = (0..30)
        .map(|i| (format!("x-filler-{i}"), i.to_string()))
        .collect();
    let filler: Vec<(&str, &str)> = filler
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let big = [("x-big", big_value.as_str())];
    let h2_cases: [H2Case; 3] = [
        (
            "h2 one 5000-byte header",
            "/payments/charge",
            &big,
            431,
            "headers_too_large",
        ),
        (
            "h2 30 headers",
            "/payments/charge",
            &filler,
            431,
            "headers_too_large",
        ),
        (
            "h2 600-byte target",
            &long_target,
            &[],
            414,
            "target_too_long",
        ),
    ];
    for (what, path, headers, status, error) in h2_cases {
        let reply = h2
            .send(Method::GET, path, headers, Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
        assert_eq!(reply.status.as_u16(), status, "{what}: {:?}", reply.body);
        let id = gateway_refusal(&reply.json(), error);
        assert_eq!(
            reply
                .headers
                .get("x-request-id")
                .map(|v| v.to_str().unwrap()),
            Some(id.as_str()),
            "{what}"
        );
        refused.push((what.to_string(), status, error, id));
    }
    assert!(
        h2.is_open(),
        "a refused request head on one stream closed the HTTP/2 connection"
    );

    // Not one byte of any of them reached the upstream...
    assert_eq!(
        upstream_bytes.load(Ordering::SeqCst),
        0,
        "a refused request reached the upstream"
    );
    // ...which is reachable: the same client, within the limits, gets through.
    let ok = h2.get("/payments/charge").await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.json()["path"], "/payments/charge");
    assert!(upstream_bytes.load(Ordering::SeqCst) > 0);

    // Each refusal is an identity event with its reason, status and the caller's identity.
    let events = gw
        .events_where(refused.len(), |e| {
            e["kind"] == "request"
                && (e["reason"] == "headers_too_large" || e["reason"] == "target_too_long")
        })
        .await;
    assert_eq!(events.len(), refused.len(), "{events:?}");
    for (what, status, reason, id) in &refused {
        let event = events
            .iter()
            .find(|e| e["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{what}: no event for request {id} in {events:?}"));
        assert_eq!(event["reason"], *reason, "{what}: {event}");
        assert_eq!(event["status"], *status, "{what}: {event}");
        assert_eq!(event["decision"], "deny", "{what}: {event}");
        assert_eq!(event["source_spiffe_id"], CHECKOUT, "{what}: {event}");
        let version = if what.starts_with("h2") {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(event["http_version"], version, "{what}: {event}");
        assert!(
            event["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {event}"
        );
    }
}

/// Past the hard limit (twice the configured sizes) or not HTTP at all, a request head is
/// refused by the HTTP/1.1 parser itself, before there is a request: it still answers 431 or
/// 400, and the gateway records who sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_the_parser_refuses_get_their_status_and_an_event() {
    let CountedEcho {
        addr: upstream,
        bytes: upstream_bytes,
        ..
    } = CountedEcho::start().await;
    let gw = Gateway::start(Setup {
        upstream: Some(upstream),
        extra_config: "[connections]\nmax_header_bytes = 4096\nmax_target_bytes = 512\n".into(),
        ..Setup::default()
    })
    .await;
    let svid = gw.pki.svid(CHECKOUT);
    let huge = "h".repeat(100 * 1024);
    for (request, status, reason) in [
        (
            format!("GET /payments/charge HTTP/1.1\r\nHost: localhost\r\nx-huge: {huge}\r\n\r\n"),
            431,
            "headers_too_large",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), 400, "bad_request"),
    ] {
        let response = raw_request(gw.addr(), &gw.pki, &svid, &request).await;
        assert_eq!(raw_status(&response), status, "{response}");
        let events = gw
            .events_where(1, |e| {
                e["kind"] == "request_unparsed" && e["reason"] == reason
            })
            .await;
        let e = &events[0];
        assert_eq!(e["status"], status, "{e}");
        assert_eq!(e["decision"], "deny", "{e}");
        assert_eq!(e["source_spiffe_id"], CHECKOUT, "{e}");
        assert!(
            e["peer_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{e}"
        );
    }
    assert_eq!(upstream_bytes.load(Ordering::SeqCst), 0);
}

const SMALL_ROUTE_POLICY: &str = r#"
[[rule]]
id = "checkout-small-uploads"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["small"]
methods = ["POST"]
paths = ["/small/**"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_body_limit_answers_413_before_the_upstream() {
    let CountedEcho {
        addr: upstream,
        bytes: upstream_bytes,
        ..
    } = CountedEcho::start().await;
    let gw = Gateway::start(Setup {
        upstream: Some(upstream),
        policy: format!("{POLICY}{SMALL_ROUTE_POLICY}"),
        extra_config: "[[route]]\nname = \"small\"\npath_prefix = \"/small\"\nupstream = \"payments\"\nmax_body_bytes = 16\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let svid = gw.pki.svid(CHECKOUT);
    let big = "x".repeat(100);
    let mut refused_ids = Vec::new();

    // HTTP/1.1 with Content-Length: 100, byte for byte.
    let request = format!(
        "POST /small/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{big}"
    );
    let response = raw_request(gw.addr(), &gw.pki, &svid, &request).await;
    assert_eq!(raw_status(&response), 413, "{response}");
    refused_ids.push(gateway_refusal(&raw_json(&response), "body_too_large"));

    // Through hyper's clients (which send the content-length of a full body), both versions.
    for h2 in [false, true] {
        let mut client = gw.client(CHECKOUT, h2).await;
        let reply = client
            .send(
                Method::POST,
                "/small/upload",
                &[],
                Bytes::from(big.clone().into_bytes()),
            )
            .await
            .unwrap_or_else(|e| panic!("h2={h2}: request failed: {e}"));
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "h2={h2}: {:?}",
            reply.body
        );
        refused_ids.push(gateway_refusal(&reply.json(), "body_too_large"));
    }
    assert_eq!(
        upstream_bytes.load(Ordering::SeqCst),
        0,
        "a request over the body limit reached the upstream"
    );

    // Within the limit it is forwarded whole.
    for h2 in [false, true] {
        let mut client = gw.client(CHECKOUT, h2).await;
        let reply = client
            .send(
                Method::POST,
                "/small/upload",
                &[],
                Bytes::from_static(b"0123456789"),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "h2={h2}: {:?}", reply.body);
        let echo = reply.json();
        assert_eq!(echo["path"], "/small/upload", "h2={h2}");
        assert_eq!(echo["body_bytes"], 10, "h2={h2}");
    }
    assert!(upstream_bytes.load(Ordering::SeqCst) > 0);

    // A chunked body announces no length: it is cut off at the limit while being forwarded.
    let chunk = format!(
        "POST /small/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n64\r\n{big}\r\n0\r\n\r\n"
    );
    let response = raw_request(gw.addr(), &gw.pki, &svid, &chunk).await;
    assert_eq!(raw_status(&response), 413, "chunked: {response}");
    refused_ids.push(gateway_refusal(&raw_json(&response), "body_too_large"));

    let events = gw
        .events_where(refused_ids.len(), |e| e["reason"] == "body_too_large")
        .await;
    for id in &refused_ids {
        let event = events
            .iter()
            .find(|e| e["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no body_too_large event for {id}: {events:?}"));
        assert_eq!(event["status"], 413, "{event}");
        assert_eq!(event["route"], "small", "{event}");
        assert_eq!(event["source_spiffe_id"], CHECKOUT, "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_cannot_be_smuggled_with_underscores() {
    let smuggled = [
        ("x_zonegate_identity", "spiffe://evil"),
        ("x_forwarded_client_cert", "evil"),
    ];
    // Default: the underscored names are dropped, the rest is forwarded.
    let gw = Gateway::start(Setup::default()).await;
    for h2 in [false, true] {
        let mut checkout = gw.client(CHECKOUT, h2).await;
        let reply = checkout
            .send(
                Method::GET,
                "/payments/charge",
                &[smuggled[0], smuggled[1], ("x-kept", "yes")],
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "h2={h2}: {:?}", reply.body);
        let seen = reply.upstream_headers();
        let names: Vec<&String> = seen.as_object().unwrap().keys().collect();
        assert!(
            names.iter().all(|n| !n.contains('_')),
            "h2={h2}: an underscored header reached the upstream: {seen}"
        );
        assert_eq!(seen["x-zonegate-identity"], CHECKOUT, "h2={h2}: {seen}");
        let xfcc = seen["x-forwarded-client-cert"].as_str().unwrap();
        assert!(
            xfcc.ends_with(";URI=spiffe://example.org/ns/shop/sa/checkout")
                && !xfcc.contains("evil"),
            "h2={h2}: {xfcc}"
        );
        assert_eq!(seen["x-kept"], "yes", "h2={h2}: {seen}");
        assert!(!seen.to_string().contains("evil"), "h2={h2}: {seen}");
    }
    // Mixed case on the wire changes nothing.
    let svid = gw.pki.svid(CHECKOUT);
    let response = raw_request(
        gw.addr(),
        &gw.pki,
        &svid,
        "GET /payments/charge HTTP/1.1\r\nHost: localhost\r\nX_Zonegate_Identity: spiffe://evil\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), 200, "{response}");
    let seen = raw_json(&response)["headers"].clone();
    assert_eq!(seen["x-zonegate-identity"], CHECKOUT, "{seen}");
    assert!(!seen.to_string().contains("evil"), "{seen}");
    // 2 fields on each of 2 requests, then 1.
    let series = "zonegate_underscore_headers_total{action=\"dropped\"}";
    let (dropped, metrics) = wait_metric(&gw, series, 5).await;
    assert_eq!(dropped, Some(5), "{metrics}");
    gw.stop();

    // Told to reject: 400, an event, and the upstream sees nothing.
    let CountedEcho {
        addr: upstream,
        bytes: upstream_bytes,
        ..
    } = CountedEcho::start().await;
    let gw = Gateway::start(Setup {
        upstream: Some(upstream),
        extra_config: "[connections]\nheaders_with_underscores = \"reject\"\n".into(),
        ..Setup::default()
    })
    .await;
    let mut ids = Vec::new();
    for h2 in [false, true] {
        let mut checkout = gw.client(CHECKOUT, h2).await;
        let reply = checkout
            .send(Method::GET, "/payments/charge", &smuggled, Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "h2={h2}: {:?}",
            reply.body
        );
        ids.push(gateway_refusal(&reply.json(), "bad_request"));
        assert!(
            checkout.is_open() || !h2,
            "a refused request closed the HTTP/2 connection"
        );
    }
    assert_eq!(
        upstream_bytes.load(Ordering::SeqCst),
        0,
        "a rejected request reached the upstream"
    );
    // A clean request still passes.
    let mut checkout = gw.client(CHECKOUT, false).await;
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    let events = gw
        .events_where(2, |e| e["reason"] == "underscore_header")
        .await;
    for id in &ids {
        let event = events
            .iter()
            .find(|e| e["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no underscore_header event for {id}: {events:?}"));
        assert_eq!(event["status"], 400, "{event}");
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["source_spiffe_id"], CHECKOUT, "{event}");
    }
    let series = "zonegate_underscore_headers_total{action=\"rejected\"}";
    let (rejected, metrics) = wait_metric(&gw, series, 2).await;
    assert_eq!(rejected, Some(2), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_on_http2_ends_the_connection_with_goaway() {
    let gw = Gateway::start(Setup {
        extra_config: "[revocation]\nfile = \"revoked.toml\"\n".into(),
        files: vec![("revoked.toml".into(), String::new())],
        ..Setup::default()
    })
    .await;
    let mut revoked = gw.client(CHECKOUT, true).await;
    let mut bystander = gw.client(LEDGER, true).await;
    assert_eq!(revoked.get("/payments/charge").await.status, StatusCode::OK);
    assert_eq!(
        bystander.get("/payments/ledger").await.status,
        StatusCode::OK
    );

    gw.replace_file("revoked.toml", &format!("spiffe_ids = [\"{CHECKOUT}\"]\n"));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");

    let reply = revoked.get("/payments/charge").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    let id = gateway_refusal(&reply.json(), "unauthenticated");
    // GOAWAY: the connection ends, the client must handshake again (and be refused then).
    let deadline = Instant::now() + Duration::from_secs(1);
    while revoked.is_open() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !revoked.is_open(),
        "the HTTP/2 connection of a revoked certificate stayed open after its 401"
    );
    assert!(
        revoked
            .send(Method::GET, "/payments/charge", &[], Bytes::new())
            .await
            .is_err(),
        "a request was accepted on the connection after GOAWAY"
    );
    // Other identities' connections are untouched.
    assert!(bystander.is_open());
    assert_eq!(
        bystander.get("/payments/ledger").await.status,
        StatusCode::OK
    );
    let events = gw
        .events_where(1, |e| e["reason"] == "credential_revoked")
        .await;
    assert_eq!(events[0]["request_id"], id.as_str(), "{events:?}");
    assert_eq!(events[0]["status"], 401);
    assert_eq!(events[0]["http_version"], "HTTP/2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_client_certificate_is_evented_as_a_refused_handshake() {
    let gw = Gateway::start(Setup::default()).await;
    for h2 in [false, true] {
        let result = handshake(gw.addr(), anonymous_tls(&gw.pki, h2)).await;
        assert!(
            result.is_err(),
            "h2={h2}: a client without a certificate finished the handshake"
        );
    }
    let events = gw
        .events_where(2, |e| e["kind"] == "handshake_refused")
        .await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["reason"], "no_certificate", "{e}");
        assert_eq!(e["decision"], "deny", "{e}");
        assert_eq!(e["destination_zone"], "payments", "{e}");
        assert!(
            e["peer_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{e}"
        );
    }
    let series = "zonegate_handshake_failures_total{reason=\"no_certificate\"}";
    let (failures, metrics) = wait_metric(&gw, series, 2).await;
    assert_eq!(failures, Some(2), "{metrics}");
    // The control: a client with a certificate is served, and no more refusals are recorded.
    let mut checkout = gw.client(CHECKOUT, false).await;
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    let all = gw.events(3).await;
    assert_eq!(
        all.iter()
            .filter(|e| e["kind"] == "handshake_refused")
            .count(),
        2,
        "{all:?}"
    );
}

/// CVE-2023-44487: a client that opens streams and resets them at once, as fast as it can,
/// makes the server start work it never has to finish. The gateway closes such a connection
/// with GOAWAY long before the flood ends, and keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_bounded() {
    let upstream = CountedEcho::start().await.addr;
    let gw = Gateway::start(Setup {
        upstream: Some(upstream),
        ..Setup::default()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let tls = tls_over(&gw, tcp, CHECKOUT, b"h2").await;
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    let connection = tokio::spawn(connection);
    const FLOOD: usize = 2_000;
    let mut sent = 0;
    for _ in 0..FLOOD {
        let request = http::Request::builder()
            .method(Method::GET)
            .uri("https://localhost/payments/charge")
            .body(())
            .unwrap();
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        match client.send_request(request, true) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => break,
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the flooding connection was not closed");
    let error = ended
        .expect("connection task")
        .expect_err("the connection ended without an error");
    // The gateway sends GOAWAY and closes; a client still writing its flood may hit the
    // closed socket before it reads the GOAWAY frame. Either way the server ended it.
    assert!(
        error.is_go_away() || error.is_io(),
        "ended by something else than the server after {sent} resets: {error}"
    );
    assert!(sent < FLOOD, "all {FLOOD} resets were taken");
    // Everyone else is still served.
    let mut other = gw.client(CHECKOUT, true).await;
    assert_eq!(other.get("/payments/charge").await.status, StatusCode::OK);
}

/// An HTTP/2 connection as the h2 crate's client, for tests that reset streams.
async fn h2_connection(gw: &Gateway) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let tls = tls_over(gw, tcp, CHECKOUT, b"h2").await;
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn h2_get(path: &str) -> http::Request<()> {
    http::Request::builder()
        .method(Method::GET)
        .uri(format!("https://localhost{path}"))
        .body(())
        .unwrap()
}

/// A request the client abandons is recorded as cancelled, with the decision that was made,
/// not as a denial: here a stream reset while the upstream is slow to answer. (Streams reset
/// together with their HEADERS never start an upstream request: h2_floods.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_http2_request_is_recorded_as_cancelled_with_its_decision() {
    // An upstream that never answers: the client gives up on the stream.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let gw = Gateway::start(Setup {
        upstream: Some(silent_addr),
        ..Setup::default()
    })
    .await;
    let mut client = h2_connection(&gw).await;
    client = client.ready().await.unwrap();
    let (_, mut stream) = client
        .send_request(h2_get("/payments/charge"), true)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.send_reset(h2::Reason::CANCEL);
    let events = gw.events_where(1, |e| e["kind"] == "request").await;
    assert_eq!(events[0]["reason"], "cancelled", "{events:?}");
    assert_eq!(events[0]["decision"], "allow", "{events:?}");
    assert_eq!(events[0]["status"], 499, "{events:?}");
    assert_eq!(events[0]["rule_id"], "checkout-charges", "{events:?}");
    assert_eq!(events[0]["http_version"], "HTTP/2", "{events:?}");
    let waited = events[0]["duration_ms"].as_f64().unwrap();
    assert!(
        (250.0..4000.0).contains(&waited),
        "cancelled after {waited} ms, not when the client reset at 300 ms"
    );
}

/// A client that presents a valid SVID but cannot prove it holds its key (the handshake
/// signature is made with another key) is refused at the handshake, and the refusal is an
/// event naming the SPIFFE ID it claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_presented_without_its_key_is_refused_and_evented() {
    let gw = Gateway::start(Setup::default()).await;
    let stolen = gw.pki.svid(CHECKOUT);
    let own = gw.pki.svid(CART);
    let tls = presenting_tls(
        &gw.pki,
        stolen.cert_der.clone(),
        own.private_key(),
        b"http/1.1",
    );
    let event = svid_refused_at_handshake(&gw, tls, CHECKOUT).await;
    assert!(
        event["detail"]
            .as_str()
            .is_some_and(|d| d.contains("handshake signature")),
        "{event}"
    );
}

/// Connects with `tls` and asks for a request: the gateway must refuse the connection (at the
/// handshake, or by closing it unanswered) and record a `svid_refused` handshake event naming
/// `claimed`, which is returned.
async fn svid_refused_at_handshake(
    gw: &Gateway,
    tls: rustls::ClientConfig,
    claimed: &str,
) -> serde_json::Value {
    let refused = match Client::connect_with(gw.addr(), tls, false).await {
        Err(_) => true,
        Ok(mut client) => client
            .send(Method::GET, "/payments/charge", &[], Bytes::new())
            .await
            .is_err(),
    };
    assert!(refused, "the certificate was accepted");
    let events = gw
        .events_where(1, |e| e["kind"] == "handshake_refused")
        .await;
    assert_eq!(events[0]["reason"], "svid_refused", "{events:?}");
    assert_eq!(events[0]["claimed_spiffe_id"], claimed, "{events:?}");
    events[0].clone()
}

/// A connection that opens and then sends nothing, or stalls halfway through its TLS
/// handshake, is closed at `[connections] handshake_timeout_s`, counted and evented; a client
/// that handshakes at once meanwhile is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_handshake_in_time_is_closed_counted_and_evented() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(Setup {
        extra_config: "[connections]\nhandshake_timeout_s = 1\n".into(),
        ..Setup::default()
    })
    .await;
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    // A ClientHello's first bytes, and no more: a handshake stalled halfway.
    let mut stalled = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let mut served = gw.client(CHECKOUT, false).await;
    assert_eq!(served.get("/payments/charge").await.status, StatusCode::OK);
    for (what, tcp) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{what}: not closed within 5 s: {read:?}"
        );
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}, not at the 1 s deadline"
    );
    let events = gw
        .events_where(2, |e| e["reason"] == "handshake_timeout")
        .await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["kind"], "handshake_refused", "{e}");
        assert!(
            e["detail"].as_str().is_some_and(|d| d.contains("1s")),
            "{e}"
        );
    }
    let series = "zonegate_handshake_failures_total{reason=\"handshake_timeout\"}";
    let (failures, metrics) = wait_metric(&gw, series, 2).await;
    assert_eq!(failures, Some(2), "{metrics}");
}

/// An X.509-SVID whose key is too weak (RSA-1024) is refused at the handshake with its
/// reason, even with a valid chain and a matching SPIFFE ID; an RSA-2048 SVID from the same
/// CA, presented the same way, is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_svid_with_a_weak_key_is_refused_at_the_handshake_with_its_reason() {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::EncodePrivateKey;
    use zonegate_devkit::devpki::{LeafSpec, RawPublicKey};

    let gw = Gateway::start(Setup::default()).await;
    let mint = |bits: usize| {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits).unwrap();
        let public = RawPublicKey {
            der: private.to_public_key().to_pkcs1_der().unwrap().into_vec(),
            algorithm: &rcgen::PKCS_RSA_SHA256,
        };
        let cert = gw
            .pki
            .ca
            .issue_for_key(&LeafSpec::svid(CHECKOUT), &public)
            .unwrap();
        (cert, private)
    };

    // ring signs with RSA keys of 2048 bits and more only, so the weak certificate's handshake
    // is signed with another key: the gateway must refuse it on the key's size, before it
    // looks at the signature.
    let (weak, _) = mint(1024);
    let other = gw.pki.svid(CART);
    let tls = presenting_tls(&gw.pki, weak, other.private_key(), b"http/1.1");
    let event = svid_refused_at_handshake(&gw, tls, CHECKOUT).await;
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("1024 bits") && detail.contains("at least 2048"),
        "{event}"
    );
    let series = "zonegate_handshake_failures_total{reason=\"svid_refused\"}";
    let (failures, metrics) = wait_metric(&gw, series, 1).await;
    assert_eq!(failures, Some(1), "{metrics}");

    // The control: RSA-2048, with its own key, is a strong enough SVID.
    let (strong, private) = mint(2048);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
        private.to_pkcs8_der().unwrap().as_bytes().to_vec().into(),
    );
    let tls = presenting_tls(&gw.pki, strong, key, b"http/1.1");
    let mut client = Client::connect_with(gw.addr(), tls, false)
        .await
        .expect("an RSA-2048 SVID is accepted");
    let reply = client.get("/payments/charge").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let xfcc = reply.upstream_headers()["x-forwarded-client-cert"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(xfcc.ends_with(&format!(";URI={CHECKOUT}")), "{xfcc}");
}

/// HTTP/2 streams are bounded per connection: the gateway advertises
/// `[connections] max_concurrent_streams`, and no more requests than that from one connection
/// are ever in flight upstream, however many the client queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_concurrent_streams_are_bounded_per_connection() {
    use std::sync::atomic::AtomicUsize;
    // An upstream that takes connections and never answers: every request stays in flight.
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let silent = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    let gw = Gateway::start(Setup {
        policy: format!(
            "{POLICY}\n[[rule]]\nid = \"hold\"\neffect = \"allow\"\nidentities = [\"{CHECKOUT}\"]\nroutes = [\"hold\"]\n"
        ),
        extra_config: format!(
            "[[route]]\nname = \"hold\"\npath_prefix = \"/hold\"\nupstream = \"hold\"\n\
             [upstream.hold]\naddresses = [\"{silent}\"]\nread_timeout_ms = 10000\n\
             [connections]\nmax_concurrent_streams = 10\n"
        ),
        ..Setup::default()
    })
    .await;
    let svid = gw.pki.svid(CHECKOUT);
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&gw.pki, &svid, &[b"h2"])))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    // The client sends 25 requests; the gateway's settings let 10 of them open.
    let queued = tokio::spawn(async move {
        let mut client = client;
        let mut responses = Vec::new();
        for _ in 0..25 {
            client = client.ready().await.unwrap();
            let request = http::Request::get("https://localhost/hold/x")
                .body(())
                .unwrap();
            let (response, _) = client.send_request(request, true).unwrap();
            responses.push(response);
        }
        responses
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepted.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The client holds back what the gateway's SETTINGS do not allow (h2 queues them).
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        10,
        "streams in flight past the limit"
    );
    // The limit is per connection: another client is served at once.
    let mut other = gw.client(CHECKOUT, true).await;
    assert_eq!(other.get("/payments/charge").await.status, StatusCode::OK);
    queued.abort();
}

/// A request head that keeps coming a byte at a time is cut off at
/// `[connections] request_head_timeout_s` from its first byte (counted), while an idle
/// keep-alive connection that sends nothing is kept until the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_off_and_an_idle_connection_is_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(Setup {
        extra_config: "[connections]\nrequest_head_timeout_s = 1\nidle_timeout_s = 30\n".into(),
        ..Setup::default()
    })
    .await;
    let mut idle = gw.client(CHECKOUT, false).await;
    assert_eq!(idle.get("/payments/charge").await.status, StatusCode::OK);

    let svid = gw.pki.svid(CHECKOUT);
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut tls =
        tokio_rustls::TlsConnector::from(Arc::new(client_tls(&gw.pki, &svid, &[b"http/1.1"])))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
    let started = Instant::now();
    let head = b"GET /payments/charge HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head {
        if tls.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Each byte well inside any per-read timeout; the head as a whole is late.
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(150), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the slow head was never cut off");
    assert!(
        closed_after < Duration::from_secs(4),
        "cut off only after {closed_after:?}"
    );
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("zonegate_connections_closed_total{reason=\"request_head_timeout\"} 1"),
        "{metrics}"
    );
    // The connection that sent nothing meanwhile (longer than the head deadline) still works.
    assert!(started.elapsed() > Duration::from_secs(1));
    assert_eq!(idle.get("/payments/charge").await.status, StatusCode::OK);
}

/// `[events] fail_closed`: once the sink loses an event (here every write fails: the file is
/// /dev/full), a request that would be recorded is refused with 503 instead of served
/// unrecorded; one that would not be recorded (in-zone, identified) is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_events_failing_closed_nothing_recordable_is_served_unrecorded() {
    let gw = Gateway::start(Setup {
        events_path: Some("/dev/full".into()),
        events_extra: "fail_closed = true".into(),
        policy: format!(
            "{POLICY}\n[[rule]]\nid = \"ledger\"\neffect = \"allow\"\nidentities = [\"{LEDGER}\"]\n"
        ),
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    // The first is served: nothing has been lost yet. Its event cannot be written.
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    let (lost, metrics) = wait_metric(&gw, "zonegate_events_dropped_total", 1).await;
    assert!(lost.is_some_and(|n| n >= 1), "{metrics}");
    let reply = checkout.get("/payments/charge").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "unavailable");
    // In-zone and identified: not an event either way, so served.
    let mut ledger = gw.client(LEDGER, false).await;
    assert_eq!(ledger.get("/payments/charge").await.status, StatusCode::OK);
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("reason=\"events_unavailable\""),
        "{metrics}"
    );
}
