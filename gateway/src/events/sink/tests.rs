use std::sync::{Arc, Mutex};

use super::*;
use crate::events::IdentityEvent;

/// A writer that blocks until released, then records what it was given.
#[derive(Clone)]
struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cvar) = &*self.open;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cvar.wait(open).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn event(n: usize) -> IdentityEvent {
    IdentityEvent {
        schema: SCHEMA,
        request_id: format!("r{n}"),
        ..IdentityEvent::default()
    }
}

#[test]
fn a_full_queue_drops_counts_and_reports_never_blocks() {
    let gate = Gate {
        open: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
        written: Arc::new(Mutex::new(Vec::new())),
    };
    // A one-byte buffer makes the first event's write reach the (closed) gate at once.
    let sink = EventSink::with_writer(Box::new(BufWriter::with_capacity(1, gate.clone())), 2);
    // The writer holds one event at the gate; the queue holds two more; the rest drop.
    for n in 0..50 {
        sink.emit(event(n));
    }
    let dropped = sink.stats().dropped.load(Ordering::Relaxed);
    assert!(dropped >= 46, "dropped {dropped}");
    {
        let (lock, cvar) = &*gate.open;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8(gate.written.lock().unwrap().clone()).unwrap();
        if text.contains("events_dropped") {
            let report = text.lines().find(|l| l.contains("events_dropped")).unwrap();
            let report: serde_json::Value = serde_json::from_str(report).unwrap();
            assert_eq!(report["dropped_total"], dropped);
            let written = sink.stats().written.load(Ordering::Relaxed);
            assert_eq!(written + dropped, 50);
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drop report in {text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
