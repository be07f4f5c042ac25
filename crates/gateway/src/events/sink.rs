//! The event sink: records wait in one shared buffer, already encoded, and one writer thread
//! writes them out.
//!
//! A request only ever appends its line under a short lock: when the buffer already holds the
//! configured number of records the event is dropped and counted, and the writer reports the
//! count (a log line and an `events_dropped` record in the stream), so loss is never silent.
//! The writer swaps the buffer for an empty one and does all I/O off the request path.
//!
//! Lines are encoded on the thread that makes them, into a per-thread scratch buffer, and
//! copied whole into the shared one: no allocation per event, no channel, and nothing freed on
//! a thread other than the one that allocated it (a line allocated per request and freed by
//! the writer cost ~1.6k instructions of the allocator's slow paths per request).
//!
//! Every write the sink makes ends at a line boundary, so a reader tailing the file (a log
//! shipper, `tail -f`, a test) never sees half an event.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::syslog::{Lost, Mark, Syslog};
use super::{now_rfc3339, DropReport, EventFormat, Record, Severity, KIND_EVENTS_DROPPED, SCHEMA};
use crate::config::{EventsConfig, EventsSink};

/// Counters shared by the request path and the writer.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    /// Set when an event was lost (a failed write, a full buffer); cleared by the next
    /// successful write. What `[events] fail_closed` goes by.
    pub failing: AtomicBool,
}

/// The request path's handle on the sink. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSink {
    intake: Option<Arc<Intake>>,
    stats: Arc<SinkStats>,
    format: EventFormat,
}

/// The handles' side of the queue. When the last handle goes, the writer is told to write
/// what is left and stop.
#[derive(Debug)]
struct Intake {
    queue: Arc<Queue>,
    writer: Thread,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.writer.unpark();
    }
}

/// What the handles and the writer share.
#[derive(Debug)]
struct Queue {
    pending: Mutex<Pending>,
    /// Most records waiting at once; past it they are dropped and counted.
    capacity: usize,
    /// No handle is left: write what is pending, then stop.
    closed: AtomicBool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing that can panic runs under the lock but the allocator; a poisoned buffer
        // still holds whole lines.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Records waiting for the writer, and the requests queued between them.
#[derive(Debug, Default)]
struct Pending {
    lines: Lines,
    /// Each with the number of records queued before it, in the order they came.
    controls: Vec<(usize, Control)>,
}

impl Pending {
    fn is_idle(&self) -> bool {
        self.lines.marks.is_empty() && self.controls.is_empty()
    }
}

#[derive(Debug)]
enum Control {
    /// Write what came before, then say so.
    Flush(std::sync::mpsc::Sender<()>),
    /// Reopen the event file by its path (after a rotation; SIGHUP asks for it).
    Reopen,
}

/// Encoded records, whole lines only, and where each ends.
#[derive(Debug, Default)]
struct Lines {
    bytes: Vec<u8>,
    /// Where each record's line ends, with what a syslog header says of it.
    marks: Vec<Mark>,
}

impl Lines {
    fn push(&mut self, line: &[u8], severity: Severity, kind: &'static str) {
        self.bytes.extend_from_slice(line);
        self.marks.push(Mark {
            end: self.bytes.len(),
            severity,
            kind,
        });
    }

    /// Empties the buffers, and gives back what a backlog made them grow to.
    fn clear(&mut self) {
        self.bytes.clear();
        self.marks.clear();
        if self.bytes.capacity() > KEPT_BYTES {
            self.bytes.shrink_to(KEPT_BYTES);
            self.marks.shrink_to(KEPT_BYTES / 512);
        }
    }
}

/// Buffer capacity kept between bursts; a backlog grows the buffers past it for a while.
const KEPT_BYTES: usize = 256 * 1024;

thread_local! {
    /// Where a thread encodes its records before they are copied into the shared buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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

    /// A sink that writes to `out`, holding at most `capacity` events.
    pub fn with_writer(out: Box<dyn Write + Send>, capacity: usize) -> EventSink {
        EventSink::spawn(Output::Stream(out), capacity, EventFormat::Zonegate)
    }

    fn spawn(out: Output, capacity: usize, format: EventFormat) -> EventSink {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            capacity,
            closed: AtomicBool::new(false),
        });
        let stats = Arc::new(SinkStats::default());
        let writer = Writer {
            queue: queue.clone(),
            out,
            format,
            stats: stats.clone(),
            reported: Reported::default(),
            last_error: None,
            rebased: Vec::new(),
        };
        let spawned = std::thread::Builder::new()
            .name("zonegate-events".into())
            .spawn(move || writer.run());
        let intake = match spawned {
            Ok(handle) => Some(Arc::new(Intake {
                queue,
                writer: handle.thread().clone(),
            })),
            Err(e) => {
                error!(error = %e, "cannot start the event writer; no events will be written");
                None
            }
        };
        EventSink {
            intake,
            stats,
            format,
        }
    }

    /// A sink that records nothing (events `off`).
    pub fn disabled() -> EventSink {
        EventSink {
            intake: None,
            stats: Arc::new(SinkStats::default()),
            format: EventFormat::Zonegate,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.intake.is_some()
    }

    /// Queues `event` without blocking; a full buffer drops and counts it.
    pub fn emit(&self, event: impl Into<Record>) {
        if !self.is_enabled() {
            return;
        }
        let record = event.into();
        let format = self.format;
        self.emit_with(record.severity(), record.kind(), |out| {
            record.write_line(format, out)
        });
    }

    /// The format records are written in: what a request's line must be encoded in.
    pub fn format(&self) -> EventFormat {
        self.format
    }

    /// Queues one record that `encode` appends as one whole line (ending in a newline) in
    /// [`format`](Self::format), as [`emit`](Self::emit) does: what the request path uses, so
    /// that its event is encoded from borrowed facts, nothing copied first.
    pub fn emit_with(
        &self,
        severity: Severity,
        kind: &'static str,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let Some(intake) = &self.intake else { return };
        SCRATCH.with_borrow_mut(|line| {
            line.clear();
            encode(line);
            if line.is_empty() {
                error!(kind, "cannot encode an event");
                return;
            }
            self.queue_line(intake, line, severity, kind);
            if line.capacity() > KEPT_BYTES {
                line.clear();
                line.shrink_to(KEPT_BYTES);
            }
        });
    }

    fn queue_line(&self, intake: &Intake, line: &[u8], severity: Severity, kind: &'static str) {
        let mut pending = intake.queue.lock();
        if pending.lines.marks.len() >= intake.queue.capacity {
            drop(pending);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.failing.store(true, Ordering::Relaxed);
            return;
        }
        let was_idle = pending.is_idle();
        pending.lines.push(line, severity, kind);
        drop(pending);
        // Only the first record of a burst wakes the writer (a system call if it is parked);
        // it lingers before taking the buffer, so the rest of the burst rides along.
        if was_idle {
            intake.writer.unpark();
        }
    }

    fn control(&self, control: Control) -> bool {
        let Some(intake) = &self.intake else {
            return false;
        };
        let mut pending = intake.queue.lock();
        // Behind every record queued so far, whatever the capacity: it is not one of them.
        let at = pending.lines.marks.len();
        pending.controls.push((at, control));
        drop(pending);
        intake.writer.unpark();
        true
    }

    /// Waits until every event queued before this call is written (or `timeout` passes):
    /// the last thing a stopping gateway does, so the requests it served leave their events.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = std::sync::mpsc::channel();
        if !self.control(Control::Flush(ack)) {
            return true;
        }
        done.recv_timeout(timeout).is_ok()
    }

    /// Asks the writer to open its file again by path (SIGHUP, after a log rotation). A
    /// renamed or removed file is also noticed without it, within a second.
    pub fn reopen(&self) {
        self.control(Control::Reopen);
    }

    /// Whether the sink is recording: enabled, and no event lost since its last good write.
    pub fn is_recording(&self) -> bool {
        self.intake.is_some() && !self.stats.failing.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Records are written in chunks of up to this many bytes, each ending at a line.
const BATCH_BYTES: usize = 64 * 1024;
/// After the first record of a burst, the writer waits this long before taking the buffer.
/// While it waits it is not parked, so requests queue records without waking it: one wake-up
/// (and one write) per burst instead of a futex wake and a context switch per record, on the
/// same core the requests run on.
const LINGER: Duration = Duration::from_millis(5);

/// The writer thread's state.
struct Writer {
    queue: Arc<Queue>,
    out: Output,
    format: EventFormat,
    stats: Arc<SinkStats>,
    reported: Reported,
    /// The last write error since the last drop report.
    last_error: Option<String>,
    /// A chunk's marks, counted from the chunk's start (syslog frames each line by them).
    rebased: Vec<Mark>,
}

impl Writer {
    fn run(mut self) {
        let mut taken = Pending::default();
        let mut last_path_check = Instant::now();
        loop {
            let closed = self.queue.closed.load(Ordering::Acquire);
            if !closed {
                if self.queue.lock().is_idle() {
                    // Woken by the first record of a burst (or a control), or once a second.
                    std::thread::park_timeout(Duration::from_secs(1));
                }
                // Whenever there is something to write, let the burst gather first: under a
                // steady load that is one write every LINGER, not one per record or two.
                if !self.queue.lock().is_idle() {
                    std::thread::sleep(LINGER);
                }
            }
            // A rotated (renamed) or removed file is noticed within a second, by one stat.
            if last_path_check.elapsed() >= Duration::from_secs(1) {
                self.out.follow_path(false);
                last_path_check = Instant::now();
            }
            std::mem::swap(&mut *self.queue.lock(), &mut taken);
            self.write_taken(&mut taken);
            // Read before the swap: once closed, nothing more can have been queued.
            if closed {
                return;
            }
        }
    }

    /// Writes what was taken, carrying out its controls where they were queued.
    fn write_taken(&mut self, taken: &mut Pending) {
        let mut from = 0;
        for (at, control) in taken.controls.drain(..) {
            self.write_lines(&taken.lines, from, at);
            from = at;
            match control {
                Control::Reopen => self.out.follow_path(true),
                Control::Flush(ack) => {
                    // Everything before the flush is out, drop reports included, before the ack.
                    self.settle();
                    let _ = ack.send(());
                }
            }
        }
        self.write_lines(&taken.lines, from, taken.lines.marks.len());
        self.settle();
        taken.lines.clear();
    }

    /// Writes records `from..to` of `lines` in whole-line chunks.
    fn write_lines(&mut self, lines: &Lines, from: usize, to: usize) {
        let mut first = from;
        while first < to {
            let start = if first == 0 {
                0
            } else {
                lines.marks[first - 1].end
            };
            // At least one record, then as many as fit in a chunk.
            let mut last = first + 1;
            while last < to && lines.marks[last].end - start <= BATCH_BYTES {
                last += 1;
            }
            let end = lines.marks[last - 1].end;
            self.rebased.clear();
            self.rebased
                .extend(lines.marks[first..last].iter().map(|m| Mark {
                    end: m.end - start,
                    ..*m
                }));
            self.write_chunk(&lines.bytes[start..end]);
            first = last;
        }
    }

    /// Writes one chunk, all or nothing: on a failure (a full disk) what part of it reached
    /// the file is cut off again, so no line is ever torn, and the chunk's records are counted
    /// as dropped, with the error kept for the drop report.
    fn write_chunk(&mut self, bytes: &[u8]) {
        let events = self.rebased.len() as u64;
        let stats = &self.stats;
        match self.out.write_whole(bytes, &self.rebased) {
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
    }

    /// Writes a drop report if events were lost since the last one, and flushes.
    fn settle(&mut self) {
        let stats = &self.stats;
        let dropped = stats.dropped.load(Ordering::Relaxed);
        let reason = || match &self.last_error {
            Some(e) => format!("write_failed: {e}"),
            None => "queue_full".to_string(),
        };
        if dropped > self.reported.logged {
            warn!(
                dropped = dropped - self.reported.logged,
                total = dropped,
                reason = %reason(),
                "identity events dropped"
            );
            self.reported.logged = dropped;
        }
        if dropped > self.reported.in_stream {
            let report = Record::Dropped(DropReport {
                schema: SCHEMA,
                time: now_rfc3339(),
                kind: KIND_EVENTS_DROPPED,
                dropped: dropped - self.reported.in_stream,
                dropped_total: dropped,
                reason: reason(),
            });
            let mut line = Vec::with_capacity(512);
            report.write_line(self.format, &mut line);
            let mark = Mark {
                end: line.len(),
                severity: report.severity(),
                kind: KIND_EVENTS_DROPPED,
            };
            // Whole or not at all, like the events. The report itself is not an identity
            // event: it is not counted as written.
            if self.out.write_whole(&line, &[mark]).is_ok() {
                self.reported.in_stream = dropped;
                self.last_error = None;
            } else {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.out.flush().is_err() {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests;
