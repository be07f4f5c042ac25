//! One zone, three replicas behind haproxy in TCP mode sending PROXY protocol v2, as a
//! Kubernetes Service or a cloud L4 balancer would spread them: steady traffic through the
//! balancer while one replica is drained and restarted and a new policy is rolled out to each
//! replica in turn. No request may fail, and the replicas' event streams, read together by the
//! policy tools, must answer exactly as one gateway's stream of the same traffic would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zonegate");
/// Where the test's client connects from: not the balancer's address, so events can show
/// that the PROXY header, not the TCP peer, named it.
const CLIENT_IP: &str = "127.0.0.5";

const POLICY_V1: &str = r#"
[[rule]]
id = "checkout-charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]
"#;

/// V1, and cart may read charges too.
fn policy_v2() -> String {
    format!(
        "{POLICY_V1}\n[[rule]]\nid = \"cart-reads-charges\"\neffect = \"allow\"\n\
         identities = [\"spiffe://example.org/ns/shop/sa/cart\"]\nroutes = [\"payments-api\"]\n\
         methods = [\"GET\"]\npaths = [\"/payments/charge\"]\n"
    )
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn admin(port: u16, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
}

fn status_json(admin_port: u16) -> serde_json::Value {
    let (_, body) = admin(admin_port, "/status").unwrap();
    serde_json::from_str(&body).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP/1.1 upstream answering 200 to everything, on threads.
fn upstream() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                // One response per request head on a keep-alive connection.
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
                    if conn.write_all(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// One replica: its own directory (config, policy, events), ports and process.
struct Replica {
    dir: PathBuf,
    port: u16,
    admin: u16,
    child: Option<Child>,
}

impl Replica {
    fn new(root: &Path, n: usize, upstream: u16) -> Replica {
        let dir = root.join(format!("replica-{n}"));
        std::fs::create_dir_all(dir.join("policy")).unwrap();
        std::fs::write(dir.join("policy/policy.toml"), POLICY_V1).unwrap();
        let (port, admin) = (free_port(), free_port());
        let certs = root.join("certs");
        let config = format!(
            r#"zone = "payments"
workers = 1
[[listener]]
address = "127.0.0.1:{port}"
proxy_protocol = true
proxy_protocol_from = ["127.0.0.1"]
[tls]
cert = "{certs}/gateway.crt"
key = "{certs}/gateway.key"
[trust_domain."example.org"]
bundle = "{certs}/ca.crt"
[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]
[[route]]
name = "payments-api"
path_prefix = "/payments"
upstream = "backend"
[upstream.backend]
addresses = ["127.0.0.1:{upstream}"]
[policy]
files = ["policy"]
[events]
sink = "file"
path = "events.jsonl"
[admin]
address = "127.0.0.1:{admin}"
[shutdown]
grace_period_s = 1
drain_timeout_s = 2
upgrade_sock = "upgrade.sock"
"#,
            certs = certs.display()
        );
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let mut replica = Replica {
            dir,
            port,
            admin,
            child: None,
        };
        replica.start();
        replica
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("stderr.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.dir.join("gateway.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let admin_port = self.admin;
        wait_for("replica readiness", Duration::from_secs(30), || {
            admin(admin_port, "/readyz").is_some_and(|(s, _)| s == 200)
        });
    }

    /// SIGTERM, and wait until the process has drained and exited.
    fn drain(&mut self) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "replica exited with {status:?}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn generation(&self) -> u64 {
        status_json(self.admin)["generation"].as_u64().unwrap()
    }

    fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// haproxy in TCP mode in front of the replicas: PROXY v2 to them, health checks on their
/// `/readyz` (so a draining replica leaves the rotation before its listener closes).
struct Balancer {
    child: Child,
    port: u16,
}

impl Balancer {
    fn start(root: &Path, replicas: &[Replica]) -> Balancer {
        let port = free_port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "  server gw{i} 127.0.0.1:{} check port {} send-proxy-v2\n",
                    r.port, r.admin
                )
            })
            .collect();
        let config = format!(
            "global\n  maxconn 1000\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n  retries 2\n  option redispatch\n\
             frontend zone\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  default-server inter 100ms fall 1 rise 1\n{servers}"
        );
        let path = root.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy is installed (.ci/run installs it)");
        let balancer = Balancer { child, port };
        wait_for("haproxy listening", Duration::from_secs(10), || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        balancer
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request through the balancer with curl, as `identity` (a file stem in certs/), from
/// CLIENT_IP on a new connection; the HTTP status, or 0 when there was none.
fn curl(certs: &Path, port: u16, identity: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["--interface", CLIENT_IP, "--cacert"])
        .arg(certs.join("ca.crt"))
        .arg("--cert")
        .arg(certs.join(format!("{identity}.crt")))
        .arg("--key")
        .arg(certs.join(format!("{identity}.key")))
        .arg(format!("https://localhost:{port}/payments/charge"))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// `zonegate policy <command> --json` over `events`.
fn policy_tool(command: &str, events: &[PathBuf]) -> serde_json::Value {
    let mut cmd = Command::new(BIN);
    cmd.args(["policy", command, "--json"]);
    for file in events {
        cmd.arg("--events").arg(file);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The answer, not the names of the files it was read from.
    if let Some(fields) = answer.as_object_mut() {
        fields.remove("files");
    }
    answer
}

#[test]
fn three_replicas_behind_a_balancer_drain_restart_and_take_a_policy_without_a_failed_request() {
    let root = tempfile::tempdir().unwrap();
    let ok = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(root.path().join("certs"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let certs = root.path().join("certs");
    let backend = upstream();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|n| Replica::new(root.path(), n, backend))
        .collect();
    let balancer = Balancer::start(root.path(), &replicas);
    // Every replica in rotation before the traffic starts.
    let port = balancer.port;
    wait_for("all replicas answering", Duration::from_secs(10), || {
        (0..6).all(|_| curl(&certs, port, "checkout") == 200)
    });

    // Steady traffic: two clients, a new connection per request, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, sent, failures, certs) =
                (stop.clone(), sent.clone(), failures.clone(), certs.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let status = curl(&certs, port, "checkout");
                    sent.fetch_add(1, Ordering::SeqCst);
                    if status != 200 {
                        failures.lock().unwrap().push(status);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    // (a) A rolling restart of one replica: drained (unready, then closed once in-flight
    // requests end), then started again on the same ports.
    std::thread::sleep(Duration::from_secs(1));
    replicas[1].drain();
    std::thread::sleep(Duration::from_millis(500));
    replicas[1].start();
    std::thread::sleep(Duration::from_millis(500));

    // (b) A policy rollout, one replica at a time, as a ConfigMap update reaches each pod.
    for replica in &replicas {
        let before = replica.generation();
        let staged = replica.dir.join("policy/.policy.toml.new");
        std::fs::write(&staged, policy_v2()).unwrap();
        std::fs::rename(&staged, replica.dir.join("policy/policy.toml")).unwrap();
        wait_for("the new policy in force", Duration::from_secs(10), || {
            replica.generation() > before
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let sent = sent.load(Ordering::SeqCst);
    let failures = failures.lock().unwrap().clone();
    assert!(sent >= 50, "only {sent} requests were sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );

    // Every replica now runs the new policy: cart is allowed wherever it lands.
    let hashes: Vec<serde_json::Value> = replicas
        .iter()
        .map(|r| status_json(r.admin)["policy_hash"].clone())
        .collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    for _ in 0..6 {
        assert_eq!(curl(&certs, port, "cart"), 200);
    }

    // Stop the zone, so every stream is complete before it is read.
    drop(balancer);
    for replica in &mut replicas {
        replica.drain();
    }

    // The replicas' streams: the client as the PROXY header named it, and the same answers
    // from the policy tools as one stream (one gateway) of the same events would give.
    let streams: Vec<PathBuf> = replicas.iter().map(Replica::events).collect();
    let mut all: Vec<(String, String)> = Vec::new();
    for stream in &streams {
        let text = std::fs::read_to_string(stream).unwrap();
        assert!(!text.is_empty(), "{} has no events", stream.display());
        for line in text.lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            if event["kind"] == "request" {
                let peer = event["peer_addr"].as_str().unwrap();
                assert!(peer.starts_with(&format!("{CLIENT_IP}:")), "{peer}");
            }
            all.push((
                event["time"].as_str().unwrap_or_default().to_string(),
                line.to_string(),
            ));
        }
    }
    all.sort();
    let one = root.path().join("one-gateway.jsonl");
    let merged: String = all.iter().map(|(_, line)| format!("{line}\n")).collect();
    std::fs::write(&one, merged).unwrap();
    for command in ["suggest", "report"] {
        let separate = policy_tool(command, &streams);
        let together = policy_tool(command, std::slice::from_ref(&one));
        assert_eq!(separate, together, "policy {command}");
    }
    let suggested = policy_tool("suggest", &streams).to_string();
    assert!(
        suggested.contains("spiffe://example.org/ns/shop/sa/checkout"),
        "{suggested}"
    );
    assert!(
        suggested.contains("spiffe://example.org/ns/shop/sa/cart"),
        "{suggested}"
    );
}
