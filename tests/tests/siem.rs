//! SIEM-ready events: the stream as OCSF (`[events] format = "ocsf"`), and a syslog sink
//! (RFC 5424 over UDP, TCP or a unix socket) received by a receiver built from the RFCs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use http::StatusCode;
use zonegate_e2e::syslog::{Message, Received, Receiver};
use zonegate_e2e::*;

/// `local0` (the default facility).
const LOCAL0: u8 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_records_carry_the_identity_the_decision_and_the_rule() {
    let gw = Gateway::start(Setup {
        events_extra: "format = \"ocsf\"\n".into(),
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let allowed = checkout.get("/payments/charge").await;
    assert_eq!(allowed.status, StatusCode::OK);
    let denied = checkout.get("/payments/admin/users").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    // A certificate from another CA: refused at the handshake.
    let stranger = Pki::new().svid(CART);
    assert!(
        handshake(gw.addr(), client_tls(&gw.pki, &stranger, &[b"http/1.1"]))
            .await
            .is_err()
    );

    let records = gw.events(3).await;
    let request_id = |r: &Reply| r.headers["x-request-id"].to_str().unwrap().to_string();
    let find = |id: &str| {
        records
            .iter()
            .find(|r| r["metadata"]["correlation_uid"] == id)
            .unwrap_or_else(|| panic!("no record of {id}: {records:?}"))
    };
    for record in &records {
        assert_eq!(record["metadata"]["version"], "1.3.0", "{record}");
        assert_eq!(record["metadata"]["product"]["name"], "zonegate");
        assert!(record["time"].is_i64(), "{record}");
        assert!(
            record.get("schema").is_none(),
            "OCSF, not the zonegate schema"
        );
    }

    let a = find(&request_id(&allowed));
    assert_eq!(a["class_uid"], 4002, "{a}");
    assert_eq!(a["type_uid"], 400_203, "HTTP Activity: Get");
    assert_eq!(a["action_id"], 1);
    assert_eq!(a["disposition_id"], 1);
    assert_eq!(a["severity_id"], 1);
    assert_eq!(a["actor"]["user"]["uid"], CHECKOUT);
    assert_eq!(a["actor"]["user"]["domain"], TD);
    assert_eq!(a["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(a["src_endpoint"]["zone"], "shop");
    assert_eq!(a["dst_endpoint"]["zone"], "payments");
    assert_eq!(a["dst_endpoint"]["svc_name"], "payments-api");
    assert_eq!(a["http_request"]["url"]["path"], "/payments/charge");
    assert_eq!(a["http_response"]["code"], 200);
    assert_eq!(a["authorizations"][0]["decision"], "allow");
    assert_eq!(a["authorizations"][0]["policy"]["uid"], "checkout-charges");
    assert_eq!(a["unmapped"]["cross_zone"], true);

    let d = find(&request_id(&denied));
    assert_eq!(d["class_uid"], 4002, "{d}");
    assert_eq!(d["action_id"], 2);
    assert_eq!(d["disposition_id"], 2, "blocked");
    assert_eq!(d["severity_id"], 3);
    assert_eq!(d["authorizations"][0]["decision"], "deny");
    assert_eq!(d["authorizations"][0]["policy"]["uid"], "no-admin");
    assert_eq!(d["http_response"]["code"], 403);

    let h = records
        .iter()
        .find(|r| r["class_uid"] == 3002)
        .unwrap_or_else(|| panic!("no Authentication record: {records:?}"));
    assert_eq!(h["activity_id"], 1, "logon");
    assert_eq!(h["status_id"], 2, "failure");
    assert_eq!(h["user"]["uid"], CART, "the claimed identity");
    assert!(
        h["status_detail"].as_str().unwrap().contains("verify"),
        "{h}"
    );
}

/// Sends an allowed and a denied cross-zone request and returns their request ids.
async fn allowed_and_denied(gw: &Gateway) -> (String, String) {
    let mut checkout = gw.client(CHECKOUT, false).await;
    let allowed = checkout.get("/payments/charge").await;
    assert_eq!(allowed.status, StatusCode::OK);
    let denied = checkout.get("/payments/admin").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let id = |r: &Reply| r.headers["x-request-id"].to_str().unwrap().to_string();
    (id(&allowed), id(&denied))
}

/// The two requests arrived as one message each: header fields per RFC 5424, the severity of
/// each decision, and the zonegate record as the MSG.
async fn assert_received(received: &Received, (allowed, denied): (String, String)) {
    let of = |id: &str| {
        let id = id.to_string();
        move |m: &Message| m.json()["request_id"] == id
    };
    let a = received.wait_for(1, of(&allowed)).await;
    let d = received.wait_for(1, of(&denied)).await;
    assert_eq!((a.len(), d.len()), (1, 1), "one message per record");
    for (m, severity, decision) in [(&a[0], 6, "allow"), (&d[0], 4, "deny")] {
        assert_eq!(m.facility, LOCAL0, "{m:?}");
        assert_eq!(m.severity, severity, "{m:?}");
        assert_eq!(m.app_name, "zonegate");
        assert_eq!(m.procid, std::process::id().to_string());
        assert_eq!(m.msgid, "request");
        assert_eq!(m.structured_data, "-");
        assert_ne!(m.hostname, "");
        let record = m.json();
        assert_eq!(record["schema"], "zonegate.identity/v1");
        assert_eq!(record["decision"], decision);
        assert_eq!(record["source_spiffe_id"], CHECKOUT);
    }
}

fn syslog_sink(address: &str) -> Option<String> {
    Some(format!("sink = \"syslog\"\naddress = \"{address}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_syslog_receiver_over_udp_and_a_unix_socket() {
    let (addr, udp) = Receiver::udp().await;
    let gw = Gateway::start(Setup {
        events_sink: syslog_sink(&format!("udp://{addr}")),
        ..Setup::default()
    })
    .await;
    let ids = allowed_and_denied(&gw).await;
    assert_received(&udp.received, ids).await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let unix = Receiver::unix(&path);
    let gw = Gateway::start(Setup {
        events_sink: syslog_sink(&format!("unix://{}", path.display())),
        events_extra: "facility = \"auth\"\n".into(),
        ..Setup::default()
    })
    .await;
    allowed_and_denied(&gw).await;
    let messages = unix.received.wait_for(2, |m| m.msgid == "request").await;
    assert!(
        messages.iter().all(|m| m.facility == 4),
        "auth: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_receiver_that_goes_away_costs_counted_drops_and_is_reconnected() {
    let received = Received::default();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let receiver = Receiver::tcp(addr, received.clone()).await.unwrap();
    let gw = Gateway::start(Setup {
        events_sink: syslog_sink(&format!("tcp://{addr}")),
        events_extra: "format = \"ocsf\"\n".into(),
        ..Setup::default()
    })
    .await;
    let (allowed, _) = allowed_and_denied(&gw).await;
    let first = received
        .wait_for(1, |m| m.json()["metadata"]["correlation_uid"] == allowed)
        .await;
    assert_eq!(first[0].msgid, "request");
    assert_eq!(first[0].json()["class_uid"], 4002, "OCSF over syslog");

    // The receiver goes away: what the gateway cannot send is counted, and nothing blocks.
    drop(receiver);
    let mut checkout = gw.client(CHECKOUT, false).await;
    let mut sent_while_down = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dropped(&gw).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no drop counted");
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
        sent_while_down += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back on the same address: the gateway reconnects, says what it lost, and goes on. Until
    // it has reconnected (its backoff), what it records is lost and counted too.
    let _receiver = Receiver::tcp(addr, received.clone()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let report = loop {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
        sent_while_down += 1;
        let reports: Vec<Message> = received
            .messages()
            .into_iter()
            .filter(|m| m.msgid == "events_dropped")
            .collect();
        if let Some(report) = reports.first() {
            break report.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report.severity, 3, "an error");
    let report = report.json();
    assert_eq!(report["class_uid"], 0, "{report}");
    assert!(report["unmapped"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("write_failed"));
    // Lost: at most what was sent since the receiver went away, and the two records before
    // it that may not have been written yet.
    let lost = dropped(&gw).await;
    assert!(
        lost >= 1 && lost <= sent_while_down + 2,
        "{lost} of {sent_while_down}"
    );
    assert!(report["unmapped"]["dropped_total"].as_u64().unwrap() <= lost);
    // Every request the gateway recorded is either received or counted as dropped. The
    // writer counts a batch once its send returns, and the receiver may have read it first:
    // the two agree once both have caught up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, metrics) = gw.admin_get("/metrics").await;
        assert_eq!(status, 200);
        let written = metric(&metrics, "zonegate_events_written_total");
        let requests = received
            .messages()
            .iter()
            .filter(|m| m.msgid == "request")
            .count() as u64;
        if written == requests || std::time::Instant::now() > deadline {
            assert_eq!(written, requests, "written events are the received ones");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn dropped(gw: &Gateway) -> u64 {
    let (_, metrics) = gw.admin_get("/metrics").await;
    metric(&metrics, "zonegate_events_dropped_total")
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}
