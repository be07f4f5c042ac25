use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::*;
use crate::events::{IdentityEvent, Plain};

/// A writer that blocks until released, then records each write it was given.
#[derive(Clone, Default)]
struct Gate {
    /// (open, a write is waiting at the gate)
    state: Arc<(Mutex<(bool, bool)>, Condvar)>,
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Gate {
    fn open(&self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap().0 = true;
        cvar.notify_all();
    }

    fn wait_until_waiting(&self) {
        let (lock, cvar) = &*self.state;
        let mut state = lock.lock().unwrap();
        while !state.1 {
            state = cvar.wait(state).unwrap();
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.writes.lock().unwrap().concat()).unwrap()
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cvar) = &*self.state;
        let mut state = lock.lock().unwrap();
        state.1 = true;
        cvar.notify_all();
        while !state.0 {
            state = cvar.wait(state).unwrap();
        }
        self.writes.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn event(n: usize) -> IdentityEvent<'static> {
    IdentityEvent {
        schema: SCHEMA,
        // Leaked: an event borrows its texts, and these few bytes live as long as the test.
        request_id: Plain::new(format!("r{n}").leak()).unwrap(),
        ..IdentityEvent::default()
    }
}

fn wait_for(gate: &Gate, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = gate.text();
        if text.contains(what) {
            return text;
        }
        assert!(Instant::now() < deadline, "no `{what}` in {text}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_full_queue_drops_counts_and_reports_never_blocks() {
    let gate = Gate::default();
    let sink = EventSink::with_writer(Box::new(gate.clone()), 2);
    // The writer takes the first event and blocks at the closed gate with it.
    sink.emit(event(0));
    gate.wait_until_waiting();
    // The queue holds two more; the other 47 are dropped, and emitting never blocks.
    for n in 1..50 {
        sink.emit(event(n));
    }
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 47);
    gate.open();
    // The kept events and the report arrive in either order; wait until all are out.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.stats().written.load(Ordering::Relaxed) < 3
        || !gate.text().contains("events_dropped")
    {
        assert!(
            Instant::now() < deadline,
            "not all written: {}",
            gate.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = gate.text();
    let report = text.lines().find(|l| l.contains("events_dropped")).unwrap();
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(report["dropped"], 47);
    assert_eq!(report["dropped_total"], 47);
    for n in 0..3 {
        assert!(
            text.contains(&format!("\"r{n}\"")),
            "event r{n} lost: {text}"
        );
    }
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), 3);
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 47);
}

#[test]
fn every_write_ends_at_a_line_boundary() {
    let gate = Gate::default();
    gate.open();
    let sink = EventSink::with_writer(Box::new(gate.clone()), 100_000);
    // Far more than one batch, so the writer must split: it may only split between lines.
    // Leaked, once: a record borrows its texts for as long as the sink may hold it.
    let detail: &'static str = "x".repeat(500).leak();
    let n = 2_000;
    // Half as records, half as lines the request path encodes itself.
    for i in 0..n {
        if i % 2 == 0 {
            sink.emit(IdentityEvent {
                detail: Some(detail),
                ..event(i)
            });
        } else {
            let borrowed = IdentityEvent {
                detail: Some(detail),
                ..event(i)
            };
            sink.emit_with(borrowed.severity(), borrowed.kind, |out| {
                borrowed.write_json_line(out)
            });
        }
    }
    let last = format!("\"r{}\"", n - 1);
    wait_for(&gate, &last);
    let writes = gate.writes.lock().unwrap().clone();
    assert!(writes.len() > 1, "expected several writes");
    for w in &writes {
        assert_eq!(w.last(), Some(&b'\n'), "a write ended mid-line");
        for line in w.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(line).expect("whole JSON line");
        }
    }
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), n as u64);
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 0);
}

/// logrotate renames the file (or removes it) and may send SIGHUP: either way new events go
/// to a new file at the configured path, and none is lost.
#[test]
fn a_renamed_or_removed_event_file_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let sink = EventSink::start(&EventsConfig {
        sink: EventsSink::File(path.clone()),
        format: EventFormat::Zonegate,
        capacity: 1024,
        fail_closed: false,
        in_zone_sample: 0.0,
    })
    .unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    sink.emit(event(0));
    assert!(sink.flush(Duration::from_secs(5)));
    assert!(read(&path).contains("\"r0\""));

    // Renamed: noticed by the writer within a second, without a signal.
    std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 1;
    while !read(&path).contains(&format!("\"r{}\"", n - 1)) {
        assert!(Instant::now() < deadline, "no new file after the rename");
        sink.emit(event(n));
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let next = n;
    sink.emit(event(next));
    assert!(sink.flush(Duration::from_secs(5)));
    assert!(read(&path).contains(&format!("\"r{next}\"")));
    assert!(!read(&dir.path().join("events.jsonl.1")).contains(&format!("\"r{next}\"")));

    // Renamed and reopened on request (SIGHUP): at once.
    std::fs::rename(&path, dir.path().join("events.jsonl.2")).unwrap();
    sink.reopen();
    sink.emit(event(1000));
    assert!(sink.flush(Duration::from_secs(5)));
    assert!(read(&path).contains("\"r1000\""));
    // Nothing was dropped or lost along the way: every line written is in one of the files.
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 0);
    let total: usize = ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
        .iter()
        .map(|f| read(&dir.path().join(f)).lines().count())
        .sum();
    assert_eq!(total as u64, sink.stats().written.load(Ordering::Relaxed));

    // Removed: a new file appears at the path too (what went to the removed file in the
    // second before it was noticed went with it).
    std::fs::remove_file(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read(&path).contains("\"r2000\"") {
        assert!(Instant::now() < deadline, "no new file after the removal");
        sink.emit(event(2000));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A writer whose first write fails as a full disk does.
#[derive(Clone, Default)]
struct FullOnce {
    failed: Arc<Mutex<bool>>,
    writes: Arc<Mutex<Vec<u8>>>,
}

impl Write for FullOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut failed = self.failed.lock().unwrap();
        if !*failed {
            *failed = true;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.writes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Events lost to a failed write are counted exactly and reported with the write's error,
/// not blamed on the queue.
#[test]
fn a_failed_write_is_counted_and_reported_with_its_cause() {
    let out = FullOnce::default();
    let sink = EventSink::with_writer(Box::new(out.clone()), 100);
    for n in 0..3 {
        sink.emit(event(n));
    }
    assert!(sink.flush(Duration::from_secs(5)));
    sink.emit(event(3));
    assert!(sink.flush(Duration::from_secs(5)));
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 3);
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), 1);
    let text = String::from_utf8(out.writes.lock().unwrap().clone()).unwrap();
    let report: serde_json::Value = text
        .lines()
        .find(|l| l.contains("events_dropped"))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("a drop report");
    assert_eq!(report["dropped"], 3);
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .starts_with("write_failed: No space left on device"),
        "{report}"
    );
    assert!(text.contains("\"r3\""));
}

/// A backlog grows the shared buffer; once it is written the buffers shrink back, so the
/// memory a burst took is not held for good.
#[test]
fn buffers_shrink_after_a_backlog() {
    let gate = Gate::default();
    let sink = EventSink::with_writer(Box::new(gate.clone()), 100_000);
    sink.emit(event(0));
    gate.wait_until_waiting();
    // While the writer is held at the gate, ~2 MB of records wait in the shared buffer.
    let detail: &'static str = "x".repeat(1000).leak();
    for n in 1..2_000 {
        sink.emit(IdentityEvent {
            detail: Some(detail),
            ..event(n)
        });
    }
    let queue = sink.intake.as_ref().unwrap().queue.clone();
    assert!(queue.lock().lines.bytes.capacity() > 2_000_000);
    gate.open();
    assert!(sink.flush(Duration::from_secs(10)));
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), 2_000);
    // The buffer the writer took came back cleared and shrunk, and is the one in use now or
    // its spare; either way none holds more than what is kept between bursts.
    sink.emit(event(2_000));
    assert!(sink.flush(Duration::from_secs(10)));
    assert!(queue.lock().lines.bytes.capacity() <= KEPT_BYTES);
}

/// When the last handle goes, what was queued is still written.
#[test]
fn records_queued_before_the_last_handle_goes_are_written() {
    let gate = Gate::default();
    gate.open();
    let sink = EventSink::with_writer(Box::new(gate.clone()), 100);
    let clone = sink.clone();
    for n in 0..10 {
        clone.emit(event(n));
    }
    drop(clone);
    drop(sink);
    let text = wait_for(&gate, "\"r9\"");
    assert_eq!(text.lines().count(), 10, "{text}");
}
