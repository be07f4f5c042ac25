//! Recording results while the run goes: HDR histograms and counters in a few mutex-guarded
//! shards (a lane always records into the same shard, so locks are rarely contended), plus the
//! live counters the once-a-second progress line reads.
//!
//! Only measured requests (after the warm-up) reach the shards; the live counters count
//! everything, so the progress line also shows the warm-up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use rustls::HandshakeKind;

use crate::conn::ErrorKind;

/// Highest latency a histogram tracks, in nanoseconds (longer values are clamped to it).
const MAX_TRACKED_NS: u64 = 120_000_000_000;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Status(u16),
    Error(ErrorKind),
}

/// One shard of results; [`Recorder::merged`] adds them up.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Nanoseconds, from the intended send time in an open loop.
    pub latency: Histogram<u64>,
    /// Nanoseconds from the actual send (open loop only: otherwise equal to `latency`).
    pub service: Histogram<u64>,
    /// Nanoseconds to open a connection (TCP + TLS + HTTP/2 preface), while measuring.
    pub connect: Histogram<u64>,
    /// (identity, request kind, outcome) -> count.
    pub mix: BTreeMap<(usize, usize, Outcome), u64>,
    pub tls_full: u64,
    pub tls_resumed: u64,
    pub connections: u64,
}

impl Totals {
    fn new() -> Totals {
        // Constant, valid bounds (1 ns .. 120 s, 3 significant digits): cannot fail.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)
            .expect("constant histogram bounds are valid");
        Totals {
            latency: histogram.clone(),
            service: histogram.clone(),
            connect: histogram,
            mix: BTreeMap::new(),
            tls_full: 0,
            tls_resumed: 0,
            connections: 0,
        }
    }

    fn add(&mut self, other: &Totals) {
        // Same bounds everywhere, so adding cannot fail; saturating adds keep it total anyway.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        let _ = self.connect.add(&other.connect);
        for (key, n) in &other.mix {
            *self.mix.entry(*key).or_default() += n;
        }
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        self.connections += other.connections;
    }

    /// Counts by outcome over the whole mix.
    pub fn outcomes(&self) -> BTreeMap<Outcome, u64> {
        let mut out = BTreeMap::new();
        for ((_, _, outcome), n) in &self.mix {
            *out.entry(*outcome).or_default() += n;
        }
        out
    }
}

/// Counters the progress line reads; they include the warm-up.
#[derive(Debug, Default)]
pub struct Live {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
}

/// Where lanes record results.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Totals>>,
    pub live: Live,
}

/// One measured request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub identity: usize,
    pub request: usize,
    pub outcome: Outcome,
    pub latency: Duration,
    pub service: Duration,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Totals::new()))
                .collect(),
            live: Live::default(),
        }
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn with_shard(&self, shard: usize, f: impl FnOnce(&mut Totals)) {
        let slot = &self.shards[shard % self.shards.len()];
        // A panicking lane leaves counters that are still counters: keep going.
        let mut totals = slot.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut totals);
    }

    /// Counts a finished request; only measured ones go into the report.
    pub fn request(&self, shard: usize, measured: bool, sample: Sample) {
        let live = match sample.outcome {
            Outcome::Status(_) => &self.live.responses,
            Outcome::Error(_) => &self.live.errors,
        };
        live.fetch_add(1, Ordering::Relaxed);
        if !measured {
            return;
        }
        self.with_shard(shard, |t| {
            if let Outcome::Status(_) = sample.outcome {
                t.latency.saturating_record(nanos(sample.latency));
                t.service.saturating_record(nanos(sample.service));
            }
            *t.mix
                .entry((sample.identity, sample.request, sample.outcome))
                .or_default() += 1;
        });
    }

    /// Counts a connection opened while measuring.
    pub fn connection(&self, shard: usize, took: Duration, handshake: Option<HandshakeKind>) {
        self.with_shard(shard, |t| {
            t.connections += 1;
            t.connect.saturating_record(nanos(took));
            match handshake {
                Some(HandshakeKind::Resumed) => t.tls_resumed += 1,
                Some(_) => t.tls_full += 1,
                None => {}
            }
        });
    }

    /// Every shard added up.
    pub fn merged(&self) -> Totals {
        let mut all = Totals::new();
        for shard in &self.shards {
            all.add(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: Outcome, ms: u64) -> Sample {
        Sample {
            identity: 0,
            request: 1,
            outcome,
            latency: Duration::from_millis(ms),
            service: Duration::from_millis(ms),
        }
    }

    #[test]
    fn shards_merge_and_warmup_is_live_only() {
        let r = Recorder::new(3);
        r.request(0, true, sample(Outcome::Status(200), 1));
        r.request(4, true, sample(Outcome::Status(200), 3));
        r.request(2, true, sample(Outcome::Error(ErrorKind::Reset), 0));
        r.request(1, false, sample(Outcome::Status(503), 9));
        r.connection(1, Duration::from_millis(2), Some(HandshakeKind::Full));
        r.connection(2, Duration::from_millis(1), Some(HandshakeKind::Resumed));
        let t = r.merged();
        assert_eq!(t.latency.len(), 2, "errors and warm-up have no latency");
        assert_eq!(t.latency.max(), t.latency.highest_equivalent(3_000_000));
        let outcomes = t.outcomes();
        assert_eq!(outcomes.get(&Outcome::Status(200)), Some(&2));
        assert_eq!(outcomes.get(&Outcome::Error(ErrorKind::Reset)), Some(&1));
        assert_eq!(outcomes.get(&Outcome::Status(503)), None);
        assert_eq!((t.connections, t.tls_full, t.tls_resumed), (2, 1, 1));
        assert_eq!(r.live.responses.load(Ordering::Relaxed), 3);
        assert_eq!(r.live.errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn absurd_latencies_are_clamped_not_lost() {
        let r = Recorder::new(1);
        r.request(0, true, sample(Outcome::Status(200), 10_000_000));
        let t = r.merged();
        assert_eq!(t.latency.len(), 1);
        assert_eq!(
            t.latency.max(),
            t.latency.highest_equivalent(MAX_TRACKED_NS)
        );
    }
}
