//! The event sink: a bounded queue drained by one writer thread.
//!
//! A request only ever `try_send`s: when the queue is full the event is dropped and counted,
//! and the writer reports the count (a log line and an `events_dropped` record in the stream),
//! so loss is never silent. Encoding and I/O happen on the writer thread, off the request path.
//!
//! Every write the sink makes ends at a line boundary, so a reader tailing the file (a log
//! shipper, `tail -f`, a test) never sees half an event.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use super::syslog::{Lost, Mark, Syslog};
use super::{
    now_rfc3339, DropReport, EventFormat, Record, Severity, KIND_EVENTS_DROPPED, KIND_REQUEST,
    SCHEMA,
};
use crate::config::{EventsConfig, EventsSink};

/// Counters shared by the request path and the writer.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Set when an event was lost (a failed write, a full queue); cleared by the next
    /// successful write. What `[events] fail_closed` goes by.
    pub failing: AtomicBool,
    /// Events in the queue, held to the configured capacity.
    queued: AtomicUsize,
}

/// The request path's handle on the sink. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: Option<Sender<Queued>>,
    /// Most events queued at once; past it they are dropped and counted.
    capacity: usize,
    stats: Arc<SinkStats>,
    format: EventFormat,
}

/// What the request path hands the writer: a record to encode there, or a request's identity
/// event already encoded as one line in the sink's format (built from borrowed facts, nothing
/// copied first), with its severity.
///
/// The rare records are boxed, so a queued event is a few words: the queue's memory follows
/// what waits in it (a preallocated bounded channel of 65,536 slots of the unboxed ~200-byte
/// kind held 14 MiB resident, all the time).
#[derive(Debug)]
enum Queued {
    Record(Box<Record>),
    Line(Vec<u8>, Severity),
    /// Write what came before, then say so.
    Flush(std::sync::mpsc::Sender<()>),
    /// Reopen the event file by its path (after a rotation; SIGHUP asks for it).
    Reopen,
}

/// Where the writer writes. A file is followed by its path: when it is renamed or removed
/// (log rotation), the writer notices within a second and opens the path again.
enum Output {
    File {
        path: std::path::PathBuf,
        file: std::fs::File,
        /// Device and inode of the open file, to tell when the path names another one.
        identity: (u64, u64),
    },
    Stream(Box<dyn Write + Send>),
    Syslog(Syslog),
}

impl Output {
    fn open(path: &Path) -> io::Result<Output> {
        let file = open_append(path)?;
        let identity = file_identity(&file.metadata()?);
        Ok(Output::File {
            path: path.to_path_buf(),
            file,
            identity,
        })
    }

    /// Opens the path again when it no longer names the open file (or when `force`d).
    fn follow_path(&mut self, force: bool) {
        let Output::File {
            path,
            file,
            identity,
        } = self
        else {
            return;
        };
        let moved = match std::fs::metadata(&*path) {
            Ok(meta) => file_identity(&meta) != *identity,
            Err(_) => true,
        };
        if !(moved || force) {
            return;
        }
        match open_append(path).and_then(|f| Ok((file_identity(&f.metadata()?), f))) {
            Ok((new_identity, new_file)) => {
                let _ = file.flush();
                *file = new_file;
                *identity = new_identity;
                tracing::info!(path = %path.display(), "event file (re)opened");
            }
            Err(e) => {
                error!(path = %path.display(), error = %e, "cannot reopen the event file; still writing to the one open")
            }
        }
    }

    /// Writes all of `bytes` (whose lines end at `marks`) or, for a file, leaves it as it
    /// was; says how many records were lost when it cannot.
    fn write_whole(&mut self, bytes: &[u8], marks: &[Mark]) -> Result<(), Lost> {
        let all = |error| Lost {
            events: marks.len() as u64,
            error,
        };
        match self {
            Output::File { file, .. } => {
                let before = file.metadata().map_err(all)?.len();
                file.write_all(bytes).inspect_err(|_| {
                    // Cut back to the last whole line if part of the batch got in; if even
                    // that fails, the file holds a torn line and the log says why.
                    let grew = file.metadata().is_ok_and(|m| m.len() > before);
                    if grew {
                        if let Err(e) = file.set_len(before) {
                            error!(error = %e, "cannot cut a partly written batch from the event file");
                        }
                    }
                })
                .map_err(all)
            }
            Output::Stream(w) => w.write_all(bytes).map_err(all),
            Output::Syslog(syslog) => syslog.send(bytes, marks),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File { file, .. } => file.write(buf),
            Output::Stream(w) => w.write(buf),
            // Messages go out whole, through `write_whole`, never as a byte stream.
            Output::Syslog(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "syslog takes whole records",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Stream(w) => w.flush(),
            Output::Syslog(_) => Ok(()),
        }
    }
}

fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl EventSink {
    /// Opens the configured sink and starts its writer thread.
    pub fn start(config: &EventsConfig) -> io::Result<EventSink> {
        let out = match &config.sink {
            EventsSink::Off => return Ok(EventSink::disabled()),
            EventsSink::Stdout => Output::Stream(Box::new(io::stdout())),
            EventsSink::File(path) => Output::open(path)?,
            EventsSink::Syslog(target) => Output::Syslog(Syslog::new(target.clone())),
        };
        Ok(EventSink::spawn(out, config.capacity, config.format))
    }

    /// A sink that writes to `out` with a queue of `capacity` events.
    pub fn with_writer(out: Box<dyn Write + Send>, capacity: usize) -> EventSink {
        EventSink::spawn(Output::Stream(out), capacity, EventFormat::Zonegate)
    }

    fn spawn(out: Output, capacity: usize, format: EventFormat) -> EventSink {
        // Unbounded underneath, bounded by `SinkStats::queued`: a bounded channel allocates and
        // writes every slot at start, memory the gateway would hold for a backlog it rarely has.
        let (tx, rx) = channel();
        let stats = Arc::new(SinkStats::default());
        let writer_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("zonegate-events".into())
            .spawn(move || write_loop(rx, out, format, &writer_stats));
        match spawned {
            Ok(_) => EventSink {
                tx: Some(tx),
                capacity,
                stats,
                format,
            },
            Err(e) => {
                error!(error = %e, "cannot start the event writer; events will be counted as dropped");
                EventSink {
                    tx: None,
                    capacity,
                    stats,
                    format,
                }
            }
        }
    }

    /// A sink that records nothing (events `off`).
    pub fn disabled() -> EventSink {
        EventSink {
            tx: None,
            capacity: 0,
            stats: Arc::new(SinkStats::default()),
            format: EventFormat::Zonegate,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `event` without blocking; a full queue drops and counts it.
    pub fn emit(&self, event: impl Into<Record>) {
        self.queue(Queued::Record(Box::new(event.into())));
    }

    /// The format records are written in: what a request's line must be encoded in.
    pub fn format(&self) -> EventFormat {
        self.format
    }

    /// Queues a request's identity event already encoded as one whole line (ending in a
    /// newline) in [`format`](Self::format), as [`emit`](Self::emit) does.
    pub fn emit_line(&self, line: Vec<u8>, severity: Severity) {
        self.queue(Queued::Line(line, severity));
    }

    /// Waits until every event queued before this call is written (or `timeout` passes):
    /// the last thing a stopping gateway does, so the requests it served leave their events.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack, done) = std::sync::mpsc::channel();
        // Behind every event queued so far, whatever the capacity: it is not one of them.
        if tx.send(Queued::Flush(ack)).is_err() {
            return false;
        }
        done.recv_timeout(timeout).is_ok()
    }

    /// Asks the writer to open its file again by path (SIGHUP, after a log rotation). A
    /// renamed or removed file is also noticed without it, within a second.
    pub fn reopen(&self) {
        self.queue(Queued::Reopen);
    }

    fn queue(&self, queued: Queued) {
        let Some(tx) = &self.tx else { return };
        let waiting = &self.stats.queued;
        let taken = waiting.fetch_add(1, Ordering::AcqRel) < self.capacity;
        if !taken || tx.send(queued).is_err() {
            waiting.fetch_sub(1, Ordering::AcqRel);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.failing.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the sink is recording: enabled, and no event lost since its last good write.
    pub fn is_recording(&self) -> bool {
        self.tx.is_some() && !self.stats.failing.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Encoded events are gathered up to this many bytes before one write.
const BATCH_BYTES: usize = 64 * 1024;
/// After the first event of a burst, the writer waits this long before draining the queue.
/// While it waits it is not parked on the channel, so requests queue events without waking it:
/// one wake-up (and one write) per burst instead of a futex wake and a context switch per
/// event, on the same core the requests run on.
const LINGER: Duration = Duration::from_millis(5);

fn write_loop(rx: Receiver<Queued>, mut out: Output, format: EventFormat, stats: &SinkStats) {
    let mut reported = Reported::default();
    let mut batch = Batch::new(format);
    let mut last_path_check = std::time::Instant::now();
    loop {
        let first = rx.recv_timeout(Duration::from_secs(1));
        let disconnected = matches!(first, Err(RecvTimeoutError::Disconnected));
        if first.is_ok() {
            std::thread::sleep(LINGER);
        }
        // A rotated (renamed) or removed file is noticed within a second, by one stat.
        if last_path_check.elapsed() >= Duration::from_secs(1) {
            out.follow_path(false);
            last_path_check = std::time::Instant::now();
        }
        // Drain what is queued and write it in whole-line chunks: one write per burst, not
        // per event, and never a partial line.
        let queued = first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()));
        for event in queued {
            if !matches!(event, Queued::Flush(_)) {
                stats.queued.fetch_sub(1, Ordering::AcqRel);
            }
            if let Queued::Reopen = event {
                batch.write_to(&mut out, stats);
                out.follow_path(true);
                continue;
            }
            if let Queued::Flush(ack) = event {
                // Everything before the flush is out, drop reports included, before the ack.
                settle(&mut out, &mut batch, stats, &mut reported);
                let _ = ack.send(());
                continue;
            }
            batch.push(&event);
            if batch.bytes.len() >= BATCH_BYTES {
                batch.write_to(&mut out, stats);
            }
        }
        settle(&mut out, &mut batch, stats, &mut reported);
        if disconnected {
            return;
        }
    }
}

/// How many dropped events have been told: in the log, and in the stream.
#[derive(Default)]
struct Reported {
    logged: u64,
    /// Advanced only when a report line is written whole: on a full disk the report waits,
    /// and the first one that fits covers every drop since the last.
    in_stream: u64,
}

/// Writes what the batch holds, then a drop report if events were lost since the last one,
/// and flushes.
fn settle(out: &mut Output, batch: &mut Batch, stats: &SinkStats, reported: &mut Reported) {
    batch.write_to(out, stats);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let reason = || match &batch.last_error {
        Some(e) => format!("write_failed: {e}"),
        None => "queue_full".to_string(),
    };
    if dropped > reported.logged {
        warn!(
            dropped = dropped - reported.logged,
            total = dropped,
            reason = %reason(),
            "identity events dropped"
        );
        reported.logged = dropped;
    }
    if dropped > reported.in_stream {
        let report = Record::Dropped(DropReport {
            schema: SCHEMA,
            time: now_rfc3339(),
            kind: KIND_EVENTS_DROPPED,
            dropped: dropped - reported.in_stream,
            dropped_total: dropped,
            reason: reason(),
        });
        let mut line = Vec::with_capacity(512);
        report.write_line(batch.format, &mut line);
        let mark = Mark {
            end: line.len(),
            severity: report.severity(),
            kind: KIND_EVENTS_DROPPED,
        };
        // Whole or not at all, like the events. The report itself is not an identity event:
        // it is not counted as written.
        if out.write_whole(&line, &[mark]).is_ok() {
            reported.in_stream = dropped;
            batch.last_error = None;
        } else {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if out.flush().is_err() {
        stats.write_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Encoded events waiting for one write: whole lines only.
struct Batch {
    format: EventFormat,
    bytes: Vec<u8>,
    /// Where each record's line ends, with what a syslog header says of it.
    marks: Vec<Mark>,
    /// The last write error since the last drop report.
    last_error: Option<String>,
}

impl Batch {
    fn new(format: EventFormat) -> Batch {
        Batch {
            format,
            bytes: Vec::new(),
            marks: Vec::new(),
            last_error: None,
        }
    }

    fn push(&mut self, queued: &Queued) {
        let (severity, kind) = match queued {
            Queued::Record(record) => {
                let start = self.bytes.len();
                record.write_line(self.format, &mut self.bytes);
                if self.bytes.len() == start {
                    error!(kind = record.kind(), "cannot encode an event");
                    return;
                }
                (record.severity(), record.kind())
            }
            Queued::Line(line, severity) => {
                self.bytes.extend_from_slice(line);
                (*severity, KIND_REQUEST)
            }
            Queued::Flush(_) | Queued::Reopen => return,
        };
        self.marks.push(Mark {
            end: self.bytes.len(),
            severity,
            kind,
        });
    }

    /// Writes the batch, all or nothing: on a failure (a full disk) what part of it reached
    /// the file is cut off again, so no line is ever torn, and the batch's events are counted
    /// as dropped, with the error kept for the drop report.
    fn write_to(&mut self, out: &mut Output, stats: &SinkStats) {
        if self.marks.is_empty() {
            return;
        }
        let events = self.marks.len() as u64;
        match out.write_whole(&self.bytes, &self.marks) {
            Ok(()) => {
                stats.written.fetch_add(events, Ordering::Relaxed);
                stats.failing.store(false, Ordering::Relaxed);
            }
            Err(Lost {
                events: lost,
                error,
            }) => {
                stats.failing.store(true, Ordering::Relaxed);
                let errors = stats.write_errors.fetch_add(1, Ordering::Relaxed);
                stats.written.fetch_add(events - lost, Ordering::Relaxed);
                stats.dropped.fetch_add(lost, Ordering::Relaxed);
                if errors == 0 {
                    error!(error = %error, "cannot write identity events");
                }
                self.last_error = Some(error.to_string());
            }
        }
        self.bytes.clear();
        self.marks.clear();
    }
}

#[cfg(test)]
mod tests;
