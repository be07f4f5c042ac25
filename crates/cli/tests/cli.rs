//! The `zonegate` binary as a user runs it: `check` on every example config, `check` on a
//! broken one, and `demo` driven with curl.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zonegate");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of config/ beside a freshly minted certs/, as the configs expect.
fn examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("config"), &dir.path().join("config"));
    let status = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(dir.path().join("certs"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

#[test]
fn every_example_config_passes_check() {
    let dir = examples();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .arg("check")
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}{}",
                path.display(),
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains(": ok: zone"), "{stdout}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected at least two example configs, found {checked}"
    );
}

#[test]
fn check_reports_every_error_with_file_and_key_and_exits_64() {
    let dir = examples();
    let config = dir.path().join("config/payments.toml");
    let broken = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:9001", "not-an-address")
        .replace(
            "../certs/ca.crt\"\n\n[[zone_map]]",
            "../certs/nope.crt\"\n\n[[zone_map]]",
        );
    std::fs::write(&config, broken).unwrap();
    let policy = dir.path().join("config/policy/payments/20-internal.toml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("effect = \"deny\"", "effect = \"block\"");
    std::fs::write(&policy, text).unwrap();

    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "payments.toml: upstream.payments-backend.addresses[0]: `not-an-address` is not an IP:port",
        "payments.toml: trust_domain.\"example.org\".bundle: cannot read",
        "20-internal.toml: rule[2].effect: `block` is not \"allow\" or \"deny\"",
        "3 error(s)",
    ] {
        assert!(stderr.contains(want), "missing `{want}` in:\n{stderr}");
    }
    // `run` refuses the same config with the same exit code, before binding anything.
    let run = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(64));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

fn curl(dir: &Path, who: &str, args: &[&str], url: &str) -> (u16, String) {
    let certs = dir.join("certs");
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(certs.join("ca.crt"))
        .arg("--cert")
        .arg(certs.join(format!("{who}.crt")))
        .arg("--key")
        .arg(certs.join(format!("{who}.key")))
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// curl without a client certificate, with a bearer token; `-i` keeps the response headers.
fn curl_token(dir: &Path, token: &str, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(dir.join("certs/ca.crt"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .args(["-X", "POST", url])
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn mint(dir: &Path, aud: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "mint", "--key"])
        .arg(dir.join("certs/jwt-signer.key"))
        .args([
            "--sub",
            "spiffe://example.org/ns/shop/sa/checkout",
            "--aud",
            aud,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn demo_lets_checkout_through_and_denies_cart_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "demo",
            "--port",
            &port.to_string(),
            "--admin-port",
            &free_port().to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _demo = Demo(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "demo did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://localhost:{port}/payments/charge");
    let (status, body) = curl(
        dir.path(),
        "checkout",
        &["-X", "POST", "-d", "{\"amount\":42}"],
        &url,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("URI=spiffe://example.org/ns/shop/sa/checkout"),
        "{body}"
    );
    let (status, body) = curl(dir.path(), "cart", &[], &url);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"error\":\"forbidden\""), "{body}");

    // As the demo prints it: a JWT-SVID from `token mint`, no client certificate.
    let token = mint(dir.path(), "spiffe://example.org/ns/payments/sa/zonegate");
    let (status, body) = curl_token(dir.path(), &token, &url);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""x-zonegate-credential": "jwt-svid""#),
        "{body}"
    );
    assert!(
        !body.contains(r#""authorization""#),
        "the token reached the upstream: {body}"
    );
    // A token for another audience: 401 with an RFC 6750 challenge.
    let token = mint(dir.path(), "spiffe://example.org/ns/other/sa/api");
    let (status, body) = curl_token(dir.path(), &token, &url);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.to_ascii_lowercase().contains(
            "www-authenticate: bearer realm=\"zonegate\", error=\"invalid_token\", error_description=\"wrong audience\""
        ),
        "{body}"
    );

    let events_path = dir.path().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    let events: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&events_path).unwrap_or_default();
        // Only complete lines: the gateway may be appending the next one as we read.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<serde_json::Value> = complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 4 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(
        events[0]["source_spiffe_id"],
        "spiffe://example.org/ns/shop/sa/checkout"
    );
    assert_eq!(events[1]["decision"], "deny");
    assert_eq!(
        events[1]["source_spiffe_id"],
        "spiffe://example.org/ns/shop/sa/cart"
    );
    assert_eq!(events[2]["decision"], "allow");
    assert_eq!(events[2]["credential"], "jwt-svid");
    assert_eq!(events[2]["token_issuer"], "example-org");
    assert_eq!(
        events[2]["token_subject"],
        "spiffe://example.org/ns/shop/sa/checkout"
    );
    assert_eq!(events[3]["reason"], "token_wrong_audience");
    assert_eq!(events[3]["status"], 401);
}

#[test]
fn check_asks_the_workload_api_named_in_the_config_or_in_spiffe_endpoint_socket() {
    use zonegate_devkit::devpki::DevCa;
    use zonegate_e2e::workload_api::{x509_response, JwtBundlesResponse, WorkloadApi};

    let dir = examples();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = runtime.enter();
    let ca = DevCa::new("example.org").unwrap();
    let id = "spiffe://example.org/ns/payments/sa/zonegate";
    let svid = ca.svid(id).unwrap();
    let agent = WorkloadApi::start(&dir.path().join("agent.sock"));
    agent.set_x509(x509_response(
        id,
        &[svid.cert_der.as_ref()],
        &svid.key_der,
        &[ca.cert_der().as_ref()],
        &[],
    ));
    // An agent always has JWT authorities (the spiffe crate refuses an empty answer).
    let signer = zonegate_devkit::devtoken::TokenSigner::generate_es256().unwrap();
    agent.set_jwt_bundles(JwtBundlesResponse {
        bundles: [(
            "example.org".to_string(),
            serde_json::json!({ "keys": [signer.jwk("jwt-svid")] })
                .to_string()
                .into_bytes(),
        )]
        .into(),
    });

    let config = dir.path().join("config/payments.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let files = "[tls]\ncert = \"../certs/gateway.crt\"\nkey = \"../certs/gateway.key\"\n\n\
                 [trust_domain.\"example.org\"]\nbundle = \"../certs/ca.crt\"\n";
    assert!(original.contains(files));
    let check = |spiffe: &str, env: Option<&str>| {
        std::fs::write(&config, original.replace(files, spiffe)).unwrap();
        let mut command = Command::new(BIN);
        command.arg("check").arg("--config").arg(&config);
        match env {
            Some(address) => command.env("SPIFFE_ENDPOINT_SOCKET", address),
            None => command.env_remove("SPIFFE_ENDPOINT_SOCKET"),
        };
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    // The SPIFFE convention: the endpoint from the environment.
    let (code, text) = check("[spiffe]\n", Some(&agent.address()));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 trust domain(s)"), "{text}");
    // Named in the config.
    let named = format!("[spiffe]\nworkload_api = \"{}\"\n", agent.address());
    let (code, text) = check(&named, None);
    assert_eq!(code, Some(0), "{text}");
    // Neither: a config error naming both.
    let (code, text) = check("[spiffe]\n", None);
    assert_eq!(code, Some(64), "{text}");
    assert!(
        text.contains(
            "spiffe.workload_api: set the Workload API endpoint here or in SPIFFE_ENDPOINT_SOCKET"
        ),
        "{text}"
    );
    // [spiffe] and [tls] together: refused.
    let (code, text) = check(&format!("{named}{files}"), None);
    assert_eq!(code, Some(64), "{text}");
    assert!(text.contains("tls: with [spiffe]"), "{text}");
    // The agent is not there: check says so.
    agent.stop();
    let (code, text) = check(&named, None);
    assert_eq!(code, Some(64), "{text}");
    assert!(text.contains("no SVID from the Workload API"), "{text}");
}
