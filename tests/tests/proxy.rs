//! Requests through the gateway: allow and deny, headers, HTTP/2, gRPC-style streaming,
//! upstream failure, and the identity events they produce.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use zonegate_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allows_and_denies_by_identity_zone_method_and_path() {
    let gw = Gateway::start(Setup::default()).await;
    let mut clients = [
        gw.client(CHECKOUT, false).await,
        gw.client(CART, false).await,
        gw.client(LEDGER, false).await,
        gw.client("spiffe://example.org/ns/data/sa/etl", false)
            .await,
    ];
    let (checkout, cart, ledger, data) = (0, 1, 2, 3);
    let cases = [
        (checkout, Method::POST, "/payments/charge", StatusCode::OK),
        (
            checkout,
            Method::DELETE,
            "/payments/charge",
            StatusCode::FORBIDDEN,
        ),
        (
            checkout,
            Method::GET,
            "/payments/ledger",
            StatusCode::FORBIDDEN,
        ),
        (
            cart,
            Method::POST,
            "/payments/charge",
            StatusCode::FORBIDDEN,
        ),
        (ledger, Method::GET, "/payments/ledger", StatusCode::OK),
        (
            ledger,
            Method::POST,
            "/payments/ledger",
            StatusCode::FORBIDDEN,
        ),
        (
            ledger,
            Method::GET,
            "/payments/admin/users",
            StatusCode::FORBIDDEN,
        ),
        (data, Method::GET, "/payments/ledger", StatusCode::FORBIDDEN),
        (ledger, Method::GET, "/nothing-here", StatusCode::NOT_FOUND),
    ];
    for (who, method, path, want) in cases {
        let reply = clients[who]
            .send(method.clone(), path, &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(reply.status, want, "{method} {path}: {:?}", reply.body);
        if want != StatusCode::OK {
            let body = reply.json();
            assert!(
                body["request_id"].as_str().is_some_and(|id| id.len() == 32),
                "{body}"
            );
            assert!(
                body.get("rule").is_none() && !reply.body.windows(4).any(|w| w == b"rule"),
                "policy internals leaked: {body}"
            );
        } else {
            assert_eq!(reply.json()["path"], path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_reach_the_upstream() {
    let gw = Gateway::start(Setup {
        extra_config: "[headers]\nstrip = [\"x-custom-identity\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let spoofed = [
        (
            "x-forwarded-client-cert",
            "By=spiffe://example.org/x;URI=spiffe://example.org/ns/payments/sa/admin",
        ),
        ("x-zonegate-source-zone", "payments"),
        ("x-zonegate-anything", "1"),
        ("x-spiffe-id", "spiffe://example.org/ns/payments/sa/admin"),
        ("x-custom-identity", "admin"),
        ("x-request-id", "client-chosen"),
    ];
    let reply = checkout
        .send(Method::GET, "/payments/charge", &spoofed, Bytes::new())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.upstream_headers();
    let xfcc = seen["x-forwarded-client-cert"].as_str().unwrap();
    assert!(
        xfcc.starts_with("By=spiffe://example.org/ns/payments/sa/zonegate;Hash=")
            && xfcc.ends_with(";URI=spiffe://example.org/ns/shop/sa/checkout"),
        "{xfcc}"
    );
    assert!(!xfcc.contains("admin"), "{xfcc}");
    assert_eq!(seen["x-zonegate-source-zone"], "shop");
    for gone in ["x-zonegate-anything", "x-spiffe-id", "x-custom-identity"] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the upstream: {seen}"
        );
    }
    let request_id = seen["x-request-id"].as_str().unwrap();
    assert_ne!(request_id, "client-chosen");
    assert_eq!(request_id.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_end_to_end() {
    let gw = Gateway::start(Setup {
        upstream_http2: true,
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, true).await;
    for _ in 0..3 {
        let reply = checkout.get("/payments/charge").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.json()["version"],
            "HTTP/2.0",
            "upstream was not reached over h2"
        );
    }
    let denied = checkout
        .send(Method::DELETE, "/payments/charge", &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(
        checkout.is_open(),
        "a 403 on one stream closed the HTTP/2 connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rules_are_recorded_but_not_enforced() {
    let gw = Gateway::start(Setup::default()).await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let reply = checkout
        .send(
            Method::POST,
            "/payments/charges/7/refund",
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "an audit rule was enforced");
    let events = gw.events(1).await;
    let e = &events[0];
    assert_eq!(e["decision"], "allow");
    assert_eq!(e["rule_id"], "checkout-charges");
    assert_eq!(e["audit_rule_id"], "audit-refunds-from-shop");
    assert_eq!(e["audit_decision"], "deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_documented_fields() {
    let gw = Gateway::start(Setup::default()).await;
    let svid = gw.pki.svid(CHECKOUT);
    let mut checkout = Client::connect(gw.addr(), &gw.pki, &svid, false)
        .await
        .unwrap();
    let mut ledger = gw.client(LEDGER, false).await;
    // In-zone and allowed: no event.
    assert_eq!(ledger.get("/payments/ledger").await.status, StatusCode::OK);
    // Cross-zone allowed, then cross-zone denied.
    let allowed = checkout
        .send(Method::POST, "/payments/charge", &[], Bytes::new())
        .await
        .unwrap();
    let denied = checkout
        .send(Method::DELETE, "/payments/charge", &[], Bytes::new())
        .await
        .unwrap();
    // In-zone denied: an event.
    let in_zone_denied = ledger
        .send(Method::POST, "/payments/ledger", &[], Bytes::new())
        .await
        .unwrap();
    let events = gw.events(3).await;
    assert_eq!(events.len(), 3, "{events:?}");

    let allow = &events[0];
    let serial = x509_serial_hex(&svid.cert_der);
    let expected = [
        ("schema", "zonegate.identity/v1"),
        ("decision", "allow"),
        ("reason", "allowed"),
        ("rule_id", "checkout-charges"),
        ("credential", "x509-svid"),
        ("source_spiffe_id", CHECKOUT),
        ("source_zone", "shop"),
        ("destination_zone", "payments"),
        ("route", "payments-api"),
        ("method", "POST"),
        ("path", "/payments/charge"),
        ("http_version", "HTTP/1.1"),
    ];
    for (field, want) in expected {
        assert_eq!(allow[field], want, "field {field} in {allow}");
    }
    assert_eq!(allow["cert_serial"], serial.as_str());
    assert_eq!(allow["cross_zone"], true);
    assert_eq!(allow["status"], 200);
    assert_eq!(allow["upstream"], gw.upstream.to_string());
    assert_eq!(
        allow["request_id"],
        allowed
            .headers
            .get("x-request-id")
            .map_or("", |v| v.to_str().unwrap())
    );
    assert!(allow["peer_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(allow["cert_not_after"].as_str().unwrap().ends_with('Z'));
    assert!(allow["time"].as_str().unwrap().ends_with('Z'));
    assert!(allow["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(allow["event_id"].as_str().unwrap().len(), 32);

    let deny = &events[1];
    assert_eq!(
        (
            deny["decision"].as_str(),
            deny["reason"].as_str(),
            deny["status"].as_u64()
        ),
        (Some("deny"), Some("default_deny"), Some(403))
    );
    assert_eq!(
        deny["request_id"],
        denied
            .headers
            .get("x-request-id")
            .map_or("", |v| v.to_str().unwrap())
    );
    assert!(deny["rule_id"].is_null());

    let local = &events[2];
    assert_eq!(local["cross_zone"], false);
    assert_eq!(local["source_zone"], "payments");
    assert_eq!(local["status"], 403);
    assert_eq!(in_zone_denied.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_502_and_an_event() {
    // A port that was free: nothing listens there.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = Gateway::start(Setup {
        upstream: Some(dead),
        ..Setup::default()
    })
    .await;
    let mut ledger = gw.client(LEDGER, false).await;
    let reply = ledger.get("/payments/ledger").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.json()["error"], "bad_gateway");
    let events = gw.events(1).await;
    assert_eq!(events[0]["reason"], "upstream_unavailable");
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["status"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_identities_are_in_the_unknown_zone() {
    let gw = Gateway::start(Setup::default()).await;
    let mut stranger = gw
        .client("spiffe://example.org/ns/data/sa/etl", false)
        .await;
    assert_eq!(
        stranger.get("/payments/ledger").await.status,
        StatusCode::FORBIDDEN
    );
    let events = gw.events(1).await;
    assert_eq!(events[0]["source_zone"], "unknown");
    assert_eq!(events[0]["cross_zone"], true);
}

/// The serial as the gateway reports it: lower-case hex of the DER serial bytes.
fn x509_serial_hex(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let gw = Gateway::start(Setup {
        extra_config: "[connections]\nidle_timeout_s = 1\n".into(),
        ..Setup::default()
    })
    .await;
    for h2 in [false, true] {
        let mut busy = gw.client(CHECKOUT, h2).await;
        let mut idle = gw.client(CHECKOUT, h2).await;
        assert_eq!(idle.get("/payments/charge").await.status, StatusCode::OK);
        // Requests every 400 ms keep a connection alive past the idle timeout.
        for _ in 0..5 {
            assert_eq!(busy.get("/payments/charge").await.status, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert!(busy.is_open(), "h2={h2}: a busy connection was closed");
        assert!(
            !idle.is_open(),
            "h2={h2}: an idle connection outlived the idle timeout"
        );
    }
}
