use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::conn::ErrorKind;
use crate::stats::{Recorder, Sample};

fn shape() -> RunShape {
    RunShape {
        target: "https://localhost:8443".into(),
        mode: "h1".into(),
        http2: false,
        resume: false,
        rate: Some(100.0),
        connections: 2,
        streams: 1,
        threads: 1,
        warmup_s: 0.0,
    }
}

fn report() -> Report {
    let r = Recorder::new(2);
    for i in 0..100u64 {
        let (request, outcome) = if i % 10 == 9 {
            (1, Outcome::Status(403))
        } else {
            (0, Outcome::Status(200))
        };
        r.request(
            i as usize,
            true,
            Sample {
                identity: (i % 2) as usize,
                request,
                outcome,
                // 1..=100 ms from the intended time, 1 ms of it at the server.
                latency: Duration::from_millis(i + 1),
                service: Duration::from_millis(1),
            },
        );
    }
    r.request(
        0,
        true,
        Sample {
            identity: 0,
            request: 0,
            outcome: Outcome::Error(ErrorKind::Timeout),
            latency: Duration::ZERO,
            service: Duration::ZERO,
        },
    );
    assert_eq!(r.live.errors.load(Ordering::Relaxed), 1);
    Report::new(
        shape(),
        &r.merged(),
        2.0,
        &["checkout".into(), "cart".into()],
        &[
            "GET /payments/charge".into(),
            "POST /payments/refund".into(),
        ],
    )
}

#[test]
fn counts_rates_and_percentiles() {
    let r = report();
    assert_eq!((r.requests, r.responses, r.errors), (101, 100, 1));
    assert_eq!(r.rps, 50.0);
    assert_eq!(r.rps_2xx, 45.0);
    assert_eq!(r.status.get("200"), Some(&90));
    assert_eq!(r.status.get("403"), Some(&10));
    assert_eq!(r.error_kinds.get("timeout"), Some(&1));
    let p = r.latency_us.as_ref().unwrap();
    assert_eq!(p.count, 100);
    // HDR with 3 significant digits: within 0.1 %.
    assert!((p.p50 - 50_000.0).abs() <= 50.0, "{p:?}");
    assert!((p.p99 - 99_000.0).abs() <= 100.0, "{p:?}");
    assert!((p.max - 100_000.0).abs() <= 100.0, "{p:?}");
    let s = r.service_us.as_ref().unwrap();
    assert!((s.p99 - 1_000.0).abs() <= 1.0, "{s:?}");
}

#[test]
fn mix_rows_split_by_identity_and_request() {
    let r = report();
    let row = |id: &str, req: &str| {
        r.mix
            .iter()
            .find(|m| m.identity == id && m.request == req)
            .cloned()
    };
    let denied = row("cart", "POST /payments/refund").unwrap();
    assert_eq!(denied.status.get("403"), Some(&10));
    let charge = row("checkout", "GET /payments/charge").unwrap();
    assert_eq!(charge.count, 51);
    assert_eq!(charge.errors.get("timeout"), Some(&1));
    assert_eq!(r.mix.iter().map(|m| m.count).sum::<u64>(), 101);
}

#[test]
fn json_and_table_carry_the_figures() {
    let r = report();
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["mode"], "h1");
    assert_eq!(json["rate"], 100.0);
    assert_eq!(json["status"]["403"], 10);
    assert!(json["latency_us"]["p99.9"].as_f64().unwrap() > 99_000.0);
    let table = r.table();
    assert!(table.contains("50.0 req/s"), "{table}");
    assert!(table.contains("from the intended send time"), "{table}");
    assert!(table.contains("200: 90, 403: 10"), "{table}");
    assert!(table.contains("timeout: 1"), "{table}");
}
