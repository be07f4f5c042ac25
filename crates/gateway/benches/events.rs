//! Micro-benchmark of identity-event JSON encoding: serde's derive (what the writer thread does
//! for the other record kinds) against the hand-written line the request path writes for every
//! request event.
//!
//! `cargo bench -p zonegate-gateway --bench events`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use zonegate_gateway::events::{now_rfc3339, IdentityEvent, Plain, Record, KIND_REQUEST, SCHEMA};

/// A cross-zone request that was allowed: every usual field set. Built with
/// `..Default::default()` so that fields added later do not break the benchmark.
fn allowed() -> IdentityEvent<'static> {
    IdentityEvent {
        schema: SCHEMA,
        kind: KIND_REQUEST,
        time: Plain::new(now_rfc3339().leak()).unwrap(),
        event_id: Plain::new("8f2c5a0e4b1d49c7a3e2f10b6d7c8e90").unwrap(),
        request_id: Plain::new("8f2c5a0e4b1d49c7a3e2f10b6d7c8e91").unwrap(),
        decision: "allow",
        reason: "allowed",
        rule_id: Some("checkout-charges"),
        cross_zone: true,
        credential: Some("x509-svid"),
        source_spiffe_id: Some("spiffe://example.org/ns/shop/sa/checkout"),
        source_zone: Some("shop"),
        peer_addr: Some("127.0.0.1:51234".parse().unwrap()),
        cert_serial: Some("3a1f6c0d2e9b47a18c5d3e2f1a0b9c8d"),
        cert_not_after: Some("2026-12-23T10:00:00Z"),
        destination_zone: "payments",
        route: Some("payments-api"),
        upstream: Some("127.0.0.1:9001"),
        method: "POST",
        host: Some("payments.internal"),
        path: Some("/payments/charge"),
        http_version: "HTTP/1.1",
        status: 200,
        duration_ms: 0.84,
        policy_generation: 1,
        ..Default::default()
    }
}

/// A refused request with a path that needs escaping in JSON.
fn refused() -> IdentityEvent<'static> {
    IdentityEvent {
        decision: "deny",
        reason: "bad_path",
        rule_id: None,
        detail: Some("encoded `/` (%2F) in the path"),
        path: None,
        raw_path: Some("/payments/public/..%2F..%2Fadmin?\"q\"=<x>\\"),
        status: 400,
        ..allowed()
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_json");
    group.throughput(Throughput::Elements(1));
    for (name, event) in [("allowed", allowed()), ("refused", refused())] {
        let mut line = Vec::with_capacity(1024);
        group.bench_function(format!("{name}/line"), |b| {
            b.iter(|| {
                line.clear();
                black_box(&event).write_json_line(&mut line);
                line.len()
            })
        });
        let record = Record::from(event);
        group.bench_function(format!("{name}/serde"), |b| {
            b.iter(|| {
                line.clear();
                serde_json::to_writer(&mut line, black_box(&record)).map(|()| line.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
