//! Complete records: allowed requests within the zone are recorded too when asked
//! (`[events] in_zone_sample`), all of them or a share, in the same stream as the rest.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use http::StatusCode;
use zonegate_e2e::*;

/// Sends `n` allowed in-zone requests (ledger, in payments, reading payments), then one
/// cross-zone request as a marker, and returns the in-zone request events written before it.
async fn in_zone_events(share: Option<f64>, n: usize) -> Vec<serde_json::Value> {
    let gw = Gateway::start(Setup {
        events_extra: share.map_or(String::new(), |s| format!("in_zone_sample = {s}\n")),
        ..Setup::default()
    })
    .await;
    let mut ledger = gw.client(LEDGER, true).await;
    for _ in 0..n {
        assert_eq!(ledger.get("/payments/charge").await.status, StatusCode::OK);
    }
    let mut checkout = gw.client(CHECKOUT, false).await;
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    let marker = gw
        .events_where(1, |e| e["source_spiffe_id"] == CHECKOUT)
        .await;
    assert_eq!(marker.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let all = gw.events(1).await;
    all.into_iter()
        .filter(|e| e["kind"] == "request" && e["source_spiffe_id"] == LEDGER)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_in_zone_requests_are_recorded_all_or_a_share_when_asked() {
    // By default they are not: only cross-zone attempts and refusals are.
    assert!(in_zone_events(None, 20).await.is_empty());

    let all = in_zone_events(Some(1.0), 20).await;
    assert_eq!(all.len(), 20, "{all:?}");
    for e in &all {
        assert_eq!(e["decision"], "allow", "{e}");
        assert_eq!(e["cross_zone"], false, "{e}");
        assert_eq!(e["source_zone"], "payments", "{e}");
        assert_eq!(e["rule_id"], "payments-zone-read", "{e}");
        assert_eq!(e["status"], 200, "{e}");
    }

    // Half of 400: binomial, so 200 +- 20 at one standard deviation; 120..280 is four.
    let half = in_zone_events(Some(0.5), 400).await.len();
    assert!((120..=280).contains(&half), "{half} of 400 recorded at 0.5");
}
