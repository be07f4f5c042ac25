use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::*;
use crate::events::IdentityEvent;

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
        request_id: format!("r{n}").into(),
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
    let detail = "x".repeat(500);
    let n = 2_000;
    // Half as records the writer encodes, half as lines the request path encoded.
    for i in 0..n {
        if i % 2 == 0 {
            sink.emit(IdentityEvent {
                detail: Some(detail.clone().into()),
                ..event(i)
            });
        } else {
            let borrowed = IdentityEvent {
                detail: Some(detail.as_str().into()),
                ..event(i)
            };
            let mut line = Vec::new();
            borrowed.write_json_line(&mut line);
            sink.emit_line(line);
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
