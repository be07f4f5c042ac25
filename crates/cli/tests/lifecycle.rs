//! The binary's life: readiness, SIGHUP reloads, and SIGTERM draining in-flight requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zonegate");

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An upstream that answers every request after `delay`.
fn slow_upstream(delay: Duration) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow\n",
                );
            });
        }
    });
    port
}

fn admin(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Gateway {
    child: Child,
    port: u16,
    admin: u16,
    dir: tempfile::TempDir,
}

impl Gateway {
    fn start(upstream: u16) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new(BIN)
            .args(["dev-certs", "--out"])
            .arg(dir.path().join("certs"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let (port, admin_port) = (free_port(), free_port());
        std::fs::write(
            dir.path().join("policy.toml"),
            "[[rule]]\nid = \"all\"\neffect = \"allow\"\nidentities = [\"spiffe://example.org/*\"]\n",
        )
        .unwrap();
        let config = format!(
            r#"zone = "payments"
workers = 1
[[listener]]
address = "127.0.0.1:{port}"
[tls]
cert = "certs/gateway.crt"
key = "certs/gateway.key"
[trust_domain."example.org"]
bundle = "certs/ca.crt"
[[route]]
name = "all"
upstream = "slow"
[upstream.slow]
addresses = ["127.0.0.1:{upstream}"]
[policy]
files = ["policy.toml"]
[events]
sink = "file"
path = "events.jsonl"
[admin]
address = "127.0.0.1:{admin_port}"
[shutdown]
grace_period_s = 1
drain_timeout_s = 3
upgrade_sock = "upgrade.sock"
"#
        );
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.path().join("gateway.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gw = Gateway {
            child,
            port,
            admin: admin_port,
            dir,
        };
        wait_for("readiness", Duration::from_secs(30), || {
            admin(gw.admin, "GET", "/readyz").is_some_and(|(s, _)| s == 200)
        });
        gw
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits (at most 10 s) for the process to exit after a signal.
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not exit after the signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn curl(&self, path: &str) -> std::thread::JoinHandle<String> {
        let certs = self.dir.path().join("certs");
        let url = format!("https://localhost:{}{path}", self.port);
        std::thread::spawn(move || curl(&certs, &url))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(certs: &Path, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-w", " %{http_code}", "--max-time", "20", "--cacert"])
        .arg(certs.join("ca.crt"))
        .arg("--cert")
        .arg(certs.join("checkout.crt"))
        .arg("--key")
        .arg(certs.join("checkout.key"))
        .arg(url)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sigterm_flips_readiness_and_drains_in_flight_requests() {
    let gw = Gateway::start(slow_upstream(Duration::from_millis(1500)));
    let in_flight = gw.curl("/slow");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    gw.signal("TERM");
    // Unready while still serving, so load balancers move away before the listener closes.
    wait_for("readyz 503", Duration::from_secs(1), || {
        admin(gw.admin, "GET", "/readyz").is_some_and(|(s, _)| s == 503)
    });
    assert_eq!(
        in_flight.join().unwrap(),
        "slow\n 200",
        "the in-flight request was dropped"
    );
    let mut gw = gw;
    let status = gw.exit_status();
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(8));
}

#[test]
fn sigterm_with_nothing_in_flight_exits_after_the_grace_period_not_the_drain_timeout() {
    let mut gw = Gateway::start(slow_upstream(Duration::ZERO));
    assert_eq!(gw.curl("/last").join().unwrap(), "slow\n 200");
    let signalled = Instant::now();
    gw.signal("TERM");
    let status = gw.exit_status();
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    // Grace 1 s, drain timeout 3 s: nothing was left to drain, so it ends after the grace.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
        "exited {took:?} after SIGTERM"
    );
    // And the last request's event was written before the process ended.
    let events = std::fs::read_to_string(gw.dir.path().join("events.jsonl")).unwrap();
    assert!(
        events.lines().any(|l| l.contains("\"path\":\"/last\"")),
        "{events}"
    );
}

#[test]
fn sighup_reloads_and_a_changed_file_becomes_a_new_generation() {
    let gw = Gateway::start(slow_upstream(Duration::ZERO));
    let metric = |name: &str| -> String {
        let (_, body) = admin(gw.admin, "GET", "/metrics").unwrap();
        body.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    gw.signal("HUP");
    wait_for("an unchanged reload", Duration::from_secs(5), || {
        metric("zonegate_config_reloads_total{result=\"unchanged\"}").ends_with(" 1")
    });
    assert_eq!(
        metric("zonegate_config_generation"),
        "zonegate_config_generation 1"
    );
    std::fs::write(
        gw.dir.path().join("policy.toml"),
        "[[rule]]\nid = \"none\"\neffect = \"deny\"\n",
    )
    .unwrap();
    gw.signal("HUP");
    wait_for("generation 2", Duration::from_secs(5), || {
        metric("zonegate_config_generation") == "zonegate_config_generation 2"
    });
    assert!(gw.curl("/x").join().unwrap().ends_with(" 403"));
}

#[test]
fn zero_downtime_upgrade_hands_the_listener_to_a_new_process() {
    let old = Gateway::start(slow_upstream(Duration::ZERO));
    let certs = old.dir.path().join("certs");
    let url = format!("https://localhost:{}/x", old.port);
    // Requests keep flowing while the processes swap.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (stop, certs, url) = (stop.clone(), certs.clone(), url.clone());
        std::thread::spawn(move || {
            let mut results = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                results.push(curl(&certs, &url));
            }
            results
        })
    };
    let mut new = Command::new(BIN)
        .args(["run", "--upgrade", "--config"])
        .arg(old.dir.path().join("gateway.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The new process waits on the upgrade socket; the old one sends its sockets on SIGQUIT.
    std::thread::sleep(Duration::from_millis(500));
    old.signal("QUIT");
    let mut old = old;
    let deadline = Instant::now() + Duration::from_secs(15);
    while old.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new process serves on the same port, the old one is gone.
    assert!(curl(&certs, &url).ends_with(" 200"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = client.join().unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !r.ends_with(" 200")).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(results.len() > 5);
    let _ = new.kill();
    let _ = new.wait();
}
