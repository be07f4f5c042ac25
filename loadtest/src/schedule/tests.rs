use super::*;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn open_loop_schedule_is_exact_and_does_not_drift() {
    let s = Schedule {
        start: Instant::now(),
        rate: 1000.0,
    };
    assert_eq!(s.offset(0), Duration::ZERO);
    assert_eq!(s.offset(1), Duration::from_millis(1));
    assert_eq!(s.offset(1_000_000), Duration::from_secs(1000));
    let s = Schedule { rate: 3.0, ..s };
    assert_eq!(s.offset(3), Duration::from_secs(1));
    let third = s.offset(1).as_nanos();
    assert!((333_333_333..=333_333_334).contains(&third), "{third}");
}

#[test]
fn open_loop_hands_out_exactly_rate_times_duration() {
    let t0 = Instant::now();
    let b = Budget::new(
        t0,
        Duration::ZERO,
        Some(Duration::from_secs(2)),
        None,
        Some(50.0),
        HOUR,
    );
    // The clock the caller passes does not matter in an open loop: the schedule decides.
    let tickets: Vec<Ticket> = std::iter::from_fn(|| b.claim(t0)).collect();
    assert_eq!(tickets.len(), 100);
    let last = tickets[99].intended.unwrap() - t0;
    let want = Duration::from_millis(1980);
    assert!(last.abs_diff(want) < Duration::from_micros(1), "{last:?}");
    assert!(tickets.iter().all(|t| t.measured));
    assert!(b.claim(t0).is_none(), "stays over");
    // Tickets are claimed ahead of their send time: running out must not stop the run
    // before those are sent.
    assert!(!b.is_stopped());
}

#[test]
fn warmup_requests_are_not_measured_and_not_counted() {
    let t0 = Instant::now();
    let b = Budget::new(t0, Duration::from_secs(1), None, Some(10), Some(10.0), HOUR);
    let tickets: Vec<Ticket> = std::iter::from_fn(|| b.claim(t0)).collect();
    let warm = tickets.iter().filter(|t| !t.measured).count();
    assert_eq!(warm, 10, "1 s of warm-up at 10/s");
    assert_eq!(tickets.len() - warm, 10, "then exactly --requests measured");
}

#[test]
fn closed_loop_stops_at_count_or_deadline() {
    let t0 = Instant::now();
    let b = Budget::new(t0, Duration::ZERO, None, Some(3), None, HOUR);
    assert_eq!(std::iter::from_fn(|| b.claim(t0)).count(), 3);

    let b = Budget::new(
        t0,
        Duration::ZERO,
        Some(Duration::from_secs(1)),
        None,
        None,
        HOUR,
    );
    assert!(b.claim(t0 + Duration::from_millis(999)).is_some());
    assert!(b.claim(t0 + Duration::from_secs(1)).is_none());
    assert!(b.claim(t0).is_none(), "a stopped budget stays stopped");
}

#[test]
fn hard_cap_bounds_every_run() {
    let t0 = Instant::now();
    let cap = Duration::from_secs(5);
    let b = Budget::new(t0, Duration::ZERO, Some(HOUR), None, None, cap);
    assert_eq!(b.deadline, t0 + cap);
    let b = Budget::new(t0, Duration::from_secs(1), None, Some(u64::MAX), None, cap);
    assert_eq!(b.deadline, t0 + Duration::from_secs(6));
}

#[test]
fn open_loop_latency_counts_from_the_intended_time() {
    let t0 = Instant::now();
    let late = Ticket {
        index: 0,
        intended: Some(t0),
        measured: true,
    };
    // Sent 40 ms late because every connection was busy, answered 2 ms later: 42 ms.
    let sent = t0 + Duration::from_millis(40);
    let done = sent + Duration::from_millis(2);
    assert_eq!(latency(&late, sent, done), Duration::from_millis(42));
    let closed = Ticket {
        intended: None,
        ..late
    };
    assert_eq!(latency(&closed, sent, done), Duration::from_millis(2));
}
