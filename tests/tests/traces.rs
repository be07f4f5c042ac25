//! OpenTelemetry traces: W3C Trace Context to the upstream, a server span per recorded request
//! with the identity facts, exported with OTLP/HTTP to a receiver that decodes the protobuf.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use http::{Method, StatusCode};
use zonegate_e2e::otlp::OtlpReceiver;
use zonegate_e2e::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

async fn traced(receiver: &OtlpReceiver, tracing: &str) -> Gateway {
    Gateway::start(Setup {
        extra_config: format!(
            "[tracing]\nendpoint = \"{}\"\nbatch_delay_ms = 50\n{tracing}",
            receiver.endpoint()
        ),
        ..Setup::default()
    })
    .await
}

async fn get(client: &mut Client, path: &str, headers: &[(&str, &str)]) -> Reply {
    client
        .send(Method::GET, path, headers, Bytes::new())
        .await
        .expect("request")
}

/// `traceparent` as the upstream received it, split: (trace id, parent id, flags).
fn upstream_traceparent(reply: &Reply) -> Option<(String, String, String)> {
    let value = reply.upstream_headers()["traceparent"]
        .as_str()?
        .to_string();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    Some((parts[1].into(), parts[2].into(), parts[3].into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_request_is_a_server_span_with_its_identity_and_the_upstreams_parent() {
    let receiver = OtlpReceiver::start().await;
    let gw = traced(
        &receiver,
        "sample = 1.0\nservice_name = \"zonegate-payments\"\n",
    )
    .await;
    let mut checkout = gw.client(CHECKOUT, true).await;
    let caller = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let allowed = get(
        &mut checkout,
        "/payments/charge",
        &[("traceparent", &caller), ("tracestate", "vendor=opaque")],
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK);
    // The upstream continues the caller's trace, as a child of the gateway's span.
    let (trace, parent, flags) = upstream_traceparent(&allowed).expect("traceparent upstream");
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(parent, CALLER_SPAN);
    assert_eq!(allowed.upstream_headers()["tracestate"], "vendor=opaque");

    let denied = get(&mut checkout, "/payments/admin", &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let request_id = |r: &Reply| r.headers["x-request-id"].to_str().unwrap().to_string();
    let allowed_id = request_id(&allowed);
    let span = receiver
        .wait_for(1, |s| {
            s.attributes.get("zonegate.request_id") == Some(&allowed_id)
        })
        .await
        .remove(0);
    assert_eq!(span.trace_id, TRACE);
    assert_eq!(span.parent_span_id, CALLER_SPAN);
    assert_eq!(
        span.span_id, parent,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(span.kind, 2, "SERVER");
    assert_eq!(span.name, "GET payments-api");
    assert!(span.end_ns > span.start_ns);
    let a = &span.attributes;
    assert_eq!(a["zonegate.source.spiffe_id"], CHECKOUT);
    assert_eq!(a["zonegate.source.zone"], "shop");
    assert_eq!(a["zonegate.destination.zone"], "payments");
    assert_eq!(a["zonegate.route"], "payments-api");
    assert_eq!(a["zonegate.decision"], "allow");
    assert_eq!(a["zonegate.rule"], "checkout-charges");
    assert_eq!(a["zonegate.credential"], "x509-svid");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["url.path"], "/payments/charge");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["network.protocol.version"], "2");
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(span.resource["service.name"], "zonegate-payments");
    assert_eq!(span.resource["zonegate.zone"], "payments");

    // A refusal is a span too: a new trace (the request named no parent), with the rule.
    let denied_id = request_id(&denied);
    let span = receiver
        .wait_for(1, |s| {
            s.attributes.get("zonegate.request_id") == Some(&denied_id)
        })
        .await
        .remove(0);
    assert_ne!(span.trace_id, TRACE);
    assert_eq!(span.parent_span_id, "", "a root span");
    assert_eq!(span.attributes["zonegate.decision"], "deny");
    assert_eq!(span.attributes["zonegate.rule"], "no-admin");
    assert_eq!(span.attributes["http.response.status_code"], "403");
    assert_eq!(span.status_code, 0, "a refusal is not a server error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_callers_decision_and_records_nothing_it_need_not() {
    let receiver = OtlpReceiver::start().await;
    let gw = traced(&receiver, "sample = 0.0\n").await;
    let mut checkout = gw.client(CHECKOUT, false).await;

    // Not sampled, no parent: no span, and nothing added for the upstream.
    let plain = get(&mut checkout, "/payments/charge", &[]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(upstream_traceparent(&plain).is_none());

    // The caller did not sample: its traceparent reaches the upstream as it was sent.
    let unsampled = format!("00-{TRACE}-{CALLER_SPAN}-00");
    let reply = get(
        &mut checkout,
        "/payments/charge",
        &[("traceparent", &unsampled)],
    )
    .await;
    assert_eq!(
        reply.upstream_headers()["traceparent"].as_str(),
        Some(unsampled.as_str())
    );

    // The caller sampled: recorded, although the gateway's own share is 0.
    let sampled = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let reply = get(
        &mut checkout,
        "/payments/charge",
        &[("traceparent", &sampled)],
    )
    .await;
    let (_, parent, flags) = upstream_traceparent(&reply).unwrap();
    assert_eq!(flags, "01");
    let spans = receiver.wait_for(1, |s| s.trace_id == TRACE).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].span_id, parent);

    // A malformed traceparent is no parent (W3C: start a new trace); at share 0, no span.
    let reply = get(
        &mut checkout,
        "/payments/charge",
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        )],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.spans().len(), 1, "only the sampled caller's span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_fails_costs_the_requests_nothing() {
    let receiver = OtlpReceiver::start().await;
    receiver.fail(true);
    let gw = traced(&receiver, "sample = 1.0\nexport_timeout_ms = 500\n").await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    for _ in 0..20 {
        assert_eq!(
            get(&mut checkout, "/payments/charge", &[]).await.status,
            StatusCode::OK
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while receiver.export_requests() == 0 {
        assert!(std::time::Instant::now() < deadline, "no export attempted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Back: later spans arrive.
    receiver.fail(false);
    let reply = get(&mut checkout, "/payments/charge", &[]).await;
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    receiver
        .wait_for(1, |s| s.attributes.get("zonegate.request_id") == Some(&id))
        .await;
    // What became of the spans is on /metrics: all 21 recorded, and each one's export either
    // went through (the exporter retries a 503) or failed, once the collector answers again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, metrics) = gw.admin_get("/metrics").await;
        let count = |outcome: &str| -> u64 {
            let prefix = format!("zonegate_trace_spans_total{{outcome=\"{outcome}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str())?.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(count("recorded"), 21, "{metrics}");
        if count("exported") + count("failed") == 21 {
            assert!(count("exported") >= 1, "{metrics}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
