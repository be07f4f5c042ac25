//! The event file on a real filesystem that fills up: a 16 KiB tmpfs mounted for the test
//! (skipped, saying so, where the test may not mount one). Whole lines only, exact counts,
//! the reason for the drops in the stream, and writing again once there is room.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http::StatusCode;
use zonegate_e2e::*;

/// A tmpfs of a given size, unmounted when dropped.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(bytes: usize) -> Result<TinyFs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(TinyFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}")) as u64
}

/// Waits until the sink has written or dropped `n` events, and returns (written, dropped).
async fn settled(gw: &Gateway, n: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = gw.admin_get("/metrics").await;
        let written = metric(&metrics, "zonegate_events_written_total");
        let dropped = metric(&metrics, "zonegate_events_dropped_total");
        if written + dropped >= n || Instant::now() > deadline {
            return (written, dropped);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every line of the file, parsed; a torn or partial line fails the test.
fn lines(path: &PathBuf) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the file ends in a partial line: {:?}",
        &text[text.len().saturating_sub(120)..]
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_filesystem_the_event_file_keeps_whole_lines_and_exact_counts() {
    let fs = match TinyFs::mount(16 * 1024) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!(
                "SKIPPED: cannot mount a 16 KiB tmpfs here ({why}); needs root or CAP_SYS_ADMIN"
            );
            return;
        }
    };
    // Room is made later by deleting this, not the event file: the file stays one stream, with
    // every line and report the sink wrote in it.
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 8 * 1024]).unwrap();
    let events = fs.path().join("events.jsonl");
    let gw = Gateway::start(Setup {
        events_path: Some(events.display().to_string()),
        ..Setup::default()
    })
    .await;
    // Each request is cross-zone (shop -> payments): each is an event of about 1 KB, so 16 KiB
    // fill up after a dozen or so. Every request is still served: the sink does not fail
    // closed unless told to.
    const SENT: u64 = 60;
    let mut checkout = gw.client(CHECKOUT, false).await;
    for _ in 0..SENT {
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
    }
    let (written, dropped) = settled(&gw, SENT).await;
    assert_eq!(
        written + dropped,
        SENT,
        "every event written or counted as dropped"
    );
    assert!(
        dropped > 0,
        "the filesystem never filled ({written} written)"
    );
    let on_file = lines(&events);
    let requests = on_file.iter().filter(|e| e["kind"] == "request").count() as u64;
    assert!(requests > 0);
    assert_eq!(
        requests, written,
        "the file holds exactly what was counted as written"
    );

    // Room again: the sink writes on, into the same file, and the stream says what was lost
    // and why (in a report written as soon as one fit).
    std::fs::remove_file(&ballast).unwrap();
    const AFTER: u64 = 3;
    for _ in 0..AFTER {
        assert_eq!(
            checkout.get("/payments/charge").await.status,
            StatusCode::OK
        );
    }
    let (written_after, dropped_after) = settled(&gw, SENT + AFTER).await;
    assert_eq!(dropped_after, dropped, "events dropped with room to spare");
    assert_eq!(written_after, written + AFTER);
    let deadline = Instant::now() + Duration::from_secs(5);
    let on_file = loop {
        let on_file = lines(&events);
        let requests = on_file.iter().filter(|e| e["kind"] == "request").count() as u64;
        if requests == written + AFTER || Instant::now() > deadline {
            break on_file;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let requests = on_file.iter().filter(|e| e["kind"] == "request").count() as u64;
    assert_eq!(requests, written + AFTER, "the file holds what was counted");
    let reports: Vec<_> = on_file
        .iter()
        .filter(|e| e["kind"] == "events_dropped")
        .collect();
    assert!(!reports.is_empty(), "no drop report in {on_file:?}");
    let told: u64 = reports.iter().map(|r| r["dropped"].as_u64().unwrap()).sum();
    assert_eq!(
        told, dropped,
        "the reports add up to the drops: {reports:?}"
    );
    let last = reports.last().unwrap();
    assert_eq!(last["dropped_total"], dropped, "{last}");
    for report in &reports {
        let reason = report["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("write_failed:") && reason.contains("No space left"),
            "{reason}"
        );
    }
}
