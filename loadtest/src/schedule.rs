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
mod tests;
