#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use super::*;
use zonegate_core::policy::Rate;

const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
const CART: &str = "spiffe://example.org/ns/shop/sa/cart";

fn limiter(rate: Option<(f64, u32)>, in_flight: Option<u32>, per: LimitScope) -> Arc<Limiter> {
    Arc::new(Limiter::new(
        "rule test".into(),
        Limit {
            rate: rate.map(|(per_second, burst)| Rate { per_second, burst }),
            in_flight,
            per,
        },
    ))
}

#[test]
fn a_bucket_allows_its_burst_then_its_rate_and_says_when_to_retry() {
    let l = limiter(Some((2.0, 3)), None, LimitScope::Identity);
    let t0 = Instant::now();
    for _ in 0..3 {
        assert!(l.acquire(CHECKOUT, "r", t0).unwrap().is_none());
    }
    let refused = l.acquire(CHECKOUT, "r", t0).err().unwrap();
    assert_eq!(refused.refusal, Refusal::RateLimited);
    assert_eq!(refused.retry_after_s, Some(1));
    assert_eq!(
        refused.detail.as_deref(),
        Some("rule test: over 2/s (burst 3), per identity")
    );
    // Half a second refills one token at 2/s, and only one.
    let t1 = t0 + Duration::from_millis(500);
    assert!(l.acquire(CHECKOUT, "r", t1).is_ok());
    assert!(l.acquire(CHECKOUT, "r", t1).is_err());
    // Another identity has its own bucket.
    assert!(l.acquire(CART, "r", t1).is_ok());
    // A long pause refills to the burst, no further.
    let t2 = t1 + Duration::from_secs(60);
    for _ in 0..3 {
        assert!(l.acquire(CHECKOUT, "r", t2).is_ok());
    }
    assert!(l.acquire(CHECKOUT, "r", t2).is_err());
}

#[test]
fn requests_in_flight_are_counted_until_their_permits_drop() {
    let l = limiter(None, Some(2), LimitScope::IdentityAndRoute);
    let now = Instant::now();
    let a = l.acquire(CHECKOUT, "payments", now).unwrap().unwrap();
    let _b = l.acquire(CHECKOUT, "payments", now).unwrap().unwrap();
    let refused = l.acquire(CHECKOUT, "payments", now).err().unwrap();
    assert_eq!(refused.refusal, Refusal::ConcurrencyLimited);
    assert_eq!(refused.retry_after_s, None);
    // Per identity and route: another route is counted apart.
    assert!(l.acquire(CHECKOUT, "ledger", now).unwrap().is_some());
    drop(a);
    assert!(l.acquire(CHECKOUT, "payments", now).unwrap().is_some());
}

#[test]
fn a_full_table_forgets_idle_counters_and_refuses_when_none_is_idle() {
    let l = limiter(None, Some(1), LimitScope::Identity);
    let now = Instant::now();
    let mut held = Vec::new();
    for i in 0..MAX_COUNTERS {
        held.push(l.acquire(&format!("id-{i}"), "r", now).unwrap());
    }
    // Every counter holds a request in flight: nothing to forget, so refuse.
    let refused = l.acquire("one-more", "r", now).err().unwrap();
    assert_eq!(refused.refusal, Refusal::RateLimited);
    // Once they are done, the next identity takes an idle counter's place.
    drop(held);
    assert!(l.acquire("one-more", "r", now).is_ok());
    assert!(l.counters.lock().unwrap().len() <= 1);
}
