//! The event sink: a bounded queue drained by one writer thread.
//!
//! A request only ever `try_send`s: when the queue is full the event is dropped and counted,
//! and the writer reports the count (a log line and an `events_dropped` record in the stream),
//! so loss is never silent. Encoding and I/O happen on the writer thread, off the request path.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{error, warn};

use super::{now_rfc3339, Record, SCHEMA};
use crate::config::{EventsConfig, EventsSink};

/// Counters shared by the request path and the writer.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The request path's handle on the sink. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: Option<SyncSender<Record>>,
    stats: Arc<SinkStats>,
}

#[derive(Serialize)]
struct DropReport {
    schema: &'static str,
    time: String,
    kind: &'static str,
    dropped: u64,
    dropped_total: u64,
}

impl EventSink {
    /// Opens the configured sink and starts its writer thread.
    pub fn start(config: &EventsConfig) -> io::Result<EventSink> {
        let out: Box<dyn Write + Send> = match &config.sink {
            EventsSink::Off => return Ok(EventSink::disabled()),
            EventsSink::Stdout => Box::new(io::stdout()),
            EventsSink::File(path) => Box::new(open_append(path)?),
        };
        Ok(EventSink::with_writer(out, config.capacity))
    }

    /// A sink that writes to `out` with a queue of `capacity` events.
    pub fn with_writer(out: Box<dyn Write + Send>, capacity: usize) -> EventSink {
        let (tx, rx) = sync_channel(capacity);
        let stats = Arc::new(SinkStats::default());
        let writer_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("zonegate-events".into())
            .spawn(move || write_loop(rx, BufWriter::new(out), &writer_stats));
        match spawned {
            Ok(_) => EventSink {
                tx: Some(tx),
                stats,
            },
            Err(e) => {
                error!(error = %e, "cannot start the event writer; events will be counted as dropped");
                EventSink { tx: None, stats }
            }
        }
    }

    /// A sink that records nothing (events `off`).
    pub fn disabled() -> EventSink {
        EventSink {
            tx: None,
            stats: Arc::new(SinkStats::default()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `event` without blocking; a full queue drops and counts it.
    pub fn emit(&self, event: impl Into<Record>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(event.into()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_loop(rx: Receiver<Record>, mut out: BufWriter<Box<dyn Write + Send>>, stats: &SinkStats) {
    let mut reported_drops = 0u64;
    let mut line = Vec::with_capacity(1024);
    loop {
        let first = rx.recv_timeout(Duration::from_secs(1));
        let disconnected = matches!(first, Err(RecvTimeoutError::Disconnected));
        // Drain what is queued, then flush once: one write syscall per burst, not per event.
        let batch = first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()));
        for event in batch {
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut line, &event) {
                error!(error = %e, "cannot encode identity event");
                continue;
            }
            line.push(b'\n');
            write_line(&mut out, &line, stats);
        }
        let dropped = stats.dropped.load(Ordering::Relaxed);
        if dropped > reported_drops {
            let report = DropReport {
                schema: SCHEMA,
                time: now_rfc3339(),
                kind: "events_dropped",
                dropped: dropped - reported_drops,
                dropped_total: dropped,
            };
            warn!(
                dropped = dropped - reported_drops,
                total = dropped,
                "identity events dropped: sink queue full"
            );
            line.clear();
            if serde_json::to_writer(&mut line, &report).is_ok() {
                line.push(b'\n');
                // The report itself is not an identity event: it is not counted as written.
                if out.write_all(&line).is_err() {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            reported_drops = dropped;
        }
        if out.flush().is_err() {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
        }
        if disconnected {
            return;
        }
    }
}

fn write_line(out: &mut impl Write, line: &[u8], stats: &SinkStats) {
    match out.write_all(line) {
        Ok(()) => {
            stats.written.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            let errors = stats.write_errors.fetch_add(1, Ordering::Relaxed);
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            if errors == 0 {
                error!(error = %e, "cannot write identity event");
            }
        }
    }
}

#[cfg(test)]
mod tests;
