//! When requests may be sent and when the run ends: the closed-loop budget and the open-loop
//! schedule.
//!
//! Open loop: request `i` is *intended* to go out at `start + i / rate`, computed from its index
//! rather than accumulated, so the schedule never drifts. Its latency is measured from that
//! intended time, not from when a free connection finally sent it: when the server stalls,
//! the requests that should have gone out meanwhile are charged the wait (coordinated omission
//! is what you get otherwise, and it hides exactly the tail latency a benchmark is for).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The fixed-rate schedule of an open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    /// Requests per second.
    pub rate: f64,
}

impl Schedule {
    /// How long after `start` request `index` is intended to be sent.
    pub fn offset(&self, index: u64) -> Duration {
        Duration::from_secs_f64(index as f64 / self.rate)
    }

    pub fn intended(&self, index: u64) -> Instant {
        self.start + self.offset(index)
    }
}

/// One request a lane may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Position in the run: picks the request (and, per request connections, the identity).
    pub index: u64,
    /// Open loop: when the request was due. Latency is measured from here.
    pub intended: Option<Instant>,
    /// Sent after the warm-up: recorded in the report.
    pub measured: bool,
}

/// Hands out tickets until the run's bounds are reached. Shared by every lane.
#[derive(Debug)]
pub struct Budget {
    start: Instant,
    /// End of the warm-up; requests from here on are measured.
    pub measure_from: Instant,
    /// No ticket is handed out for a request due at or after this instant.
    pub deadline: Instant,
    /// Measured requests allowed, if bounded by count.
    max_measured: Option<u64>,
    schedule: Option<Schedule>,
    next: AtomicU64,
    measured: AtomicU64,
    stopped: AtomicBool,
}

impl Budget {
    /// `duration` and `max_measured` bound the measured part; the deadline is also capped at
    /// `hard_cap` after the warm-up, whatever was asked.
    pub fn new(
        start: Instant,
        warmup: Duration,
        duration: Option<Duration>,
        max_measured: Option<u64>,
        rate: Option<f64>,
        hard_cap: Duration,
    ) -> Budget {
        let measure_from = start + warmup;
        let limit = duration.map_or(hard_cap, |d| d.min(hard_cap));
        Budget {
            start,
            measure_from,
            deadline: measure_from + limit,
            max_measured,
            schedule: rate.map(|rate| Schedule { start, rate }),
            next: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn schedule(&self) -> Option<Schedule> {
        self.schedule
    }

    /// The next ticket, or `None` once the run is over. `now` is the caller's clock (closed
    /// loop: a request claimed after the deadline is not sent).
    pub fn claim(&self, now: Instant) -> Option<Ticket> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let (due, intended) = match self.schedule {
            Some(schedule) => {
                let at = schedule.intended(index);
                (at, Some(at))
            }
            None => (now, None),
        };
        if due >= self.deadline {
            self.exhausted();
            return None;
        }
        let measured = due >= self.measure_from;
        if measured {
            if let Some(max) = self.max_measured {
                if self.measured.fetch_add(1, Ordering::Relaxed) >= max {
                    self.exhausted();
                    return None;
                }
            }
        }
        Some(Ticket {
            index,
            intended,
            measured,
        })
    }

    /// No ticket is left. A closed loop stops here; an open loop must not, as tickets claimed
    /// earlier may still be waiting for their send time (indexes only grow, so every later
    /// claim fails anyway).
    fn exhausted(&self) {
        if self.schedule.is_none() {
            self.stop();
        }
    }

    /// Ends the run early: no more tickets.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// Latency of a request that completed at `done`: from its intended send time in an open loop,
/// from when it was actually sent otherwise.
pub fn latency(ticket: &Ticket, sent: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(ticket.intended.unwrap_or(sent))
}

#[cfg(test)]
mod tests {
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
}
