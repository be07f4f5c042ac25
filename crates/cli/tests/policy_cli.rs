//! `zonegate policy ...` driven as a user runs it: the real binary on the fixture configs,
//! policies and event files of `tests/fixtures/intel`, with a dev PKI minted at test time.
//! Outputs are compared byte for byte with `tests/fixtures/intel/expected/`; run with
//! `ZONEGATE_BLESS=1` to rewrite those files after an intended change (and review the diff).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_zonegate");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel")
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

/// A copy of the fixtures with a freshly minted `certs/` beside the configs.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures(), dir.path());
    let status = Command::new(BIN)
        .args(["dev-certs", "--out"])
        .arg(dir.path().join("certs"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Runs `zonegate policy ARGS` in `dir` (so paths in the output are relative and stable).
fn policy(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("policy")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Compares `actual` with `expected/NAME`, or rewrites it with `ZONEGATE_BLESS=1`.
fn expect(name: &str, actual: &str) {
    let path = fixtures().join("expected").join(name);
    if std::env::var_os("ZONEGATE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with ZONEGATE_BLESS=1)", path.display()));
    if want != actual {
        panic!(
            "output differs from {}\n--- expected\n{want}\n--- actual\n{actual}",
            path.display()
        );
    }
}

fn expect_ok(name: &str, out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    expect(name, &text(&out.stdout));
}

const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
const LEDGER: &str = "spiffe://example.org/ns/payments/sa/ledger";

#[test]
fn explain_names_the_deciding_rule_the_audit_rule_and_every_rejecting_matcher() {
    let dir = workspace();
    let d = dir.path();
    let args = [
        "explain",
        "--config",
        "payments.toml",
        "--spiffe-id",
        CHECKOUT,
        "--method",
        "POST",
        "/payments/charges/ch_1/refund",
    ];
    expect_ok("explain-refund.txt", &policy(d, &args));
    let mut json = args.to_vec();
    json.push("--json");
    expect_ok("explain-refund.json", &policy(d, &json));
    // A URL: its host selects the route; the path is normalised before policy.
    expect_ok(
        "explain-url.txt",
        &policy(
            d,
            &[
                "explain",
                "-c",
                "payments.toml",
                "--spiffe-id",
                LEDGER,
                "https://Payments.Internal:8443/payments/public/%2e%2e/admin?page=2",
            ],
        ),
    );
    expect_ok(
        "explain-bad-path.txt",
        &policy(
            d,
            &[
                "explain",
                "-c",
                "payments.toml",
                "--spiffe-id",
                LEDGER,
                "/payments/public/..;/admin",
            ],
        ),
    );
    // With a pull request's policy instead of the config's own.
    expect_ok(
        "explain-pr.txt",
        &policy(
            d,
            &[
                "explain",
                "-c",
                "payments.toml",
                "--policy",
                "policy/payments-pr",
                "--spiffe-id",
                LEDGER,
                "/payments/admin",
            ],
        ),
    );
}

#[test]
fn explain_refuses_bad_input_with_exit_64() {
    let dir = workspace();
    let out = policy(
        dir.path(),
        &[
            "explain",
            "-c",
            "payments.toml",
            "--spiffe-id",
            "spiffe://Example.org/x",
            "/",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        text(&out.stderr),
        "zonegate policy: --spiffe-id: `spiffe://Example.org/x`: trust domain contains a character outside [a-z0-9.-_]\n"
    );
    let out = policy(
        dir.path(),
        &[
            "explain",
            "-c",
            "missing.toml",
            "--spiffe-id",
            CHECKOUT,
            "/",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).starts_with("missing.toml: cannot read config file"));
    // A policy override naming an undefined route is refused as the gateway would refuse it.
    let out = policy(
        dir.path(),
        &[
            "explain",
            "-c",
            "payments.toml",
            "--policy",
            "policy/lint-bad",
            "--spiffe-id",
            CHECKOUT,
            "/",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains(
        "policy/lint-bad/policy.toml:105: rule `refunds-api` names route `refunds-api`, which this gateway does not define"
    ), "{}", text(&out.stderr));
}

#[test]
fn lint_reports_every_finding_with_file_line_and_rule_and_exits_by_severity() {
    let dir = workspace();
    let d = dir.path();
    // Warnings only: exit 0, or 2 with --deny-warnings.
    expect_ok(
        "lint-payments.txt",
        &policy(d, &["lint", "-c", "payments.toml"]),
    );
    let strict = policy(d, &["lint", "-c", "payments.toml", "--deny-warnings"]);
    assert_eq!(strict.status.code(), Some(2));
    expect_ok("lint-shop.txt", &policy(d, &["lint", "-c", "shop.toml"]));
    // Errors: exit 1.
    let bad = policy(
        d,
        &["lint", "-c", "payments.toml", "--policy", "policy/lint-bad"],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
    expect("lint-bad.txt", &text(&bad.stdout));
    let bad_json = policy(
        d,
        &[
            "lint",
            "-c",
            "payments.toml",
            "--policy",
            "policy/lint-bad",
            "--json",
        ],
    );
    assert_eq!(bad_json.status.code(), Some(1));
    expect("lint-bad.json", &text(&bad_json.stdout));
    // The JSON is the same report: one finding per line of the human form, plus the summary.
    let v: serde_json::Value = serde_json::from_slice(&bad_json.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(v["errors"], 7);
    assert!(findings
        .iter()
        .all(|f| f["file"].is_string() && (f["rule"].is_string() || f["code"] == "incomplete")));
    // A narrower identity threshold reports more rules as broad.
    let any = policy(
        d,
        &[
            "lint",
            "-c",
            "payments.toml",
            "--policy",
            "policy/lint-bad",
            "--broad-identity",
            "any",
            "--json",
        ],
    );
    let v2: serde_json::Value = serde_json::from_slice(&any.stdout).unwrap();
    let broad = |v: &serde_json::Value| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "broad-allow")
            .count()
    };
    assert_eq!(
        broad(&v2) + 1,
        broad(&v),
        "everyone-reads is whole-trust-domain, below `any`"
    );
}

#[test]
fn diff_shows_grants_and_revokes_of_a_policy_pull_request() {
    let dir = workspace();
    let d = dir.path();
    let args = [
        "diff",
        "-c",
        "payments.toml",
        "policy/payments",
        "policy/payments-pr",
    ];
    expect_ok("diff-pr.txt", &policy(d, &args));
    let mut json = args.to_vec();
    json.push("--json");
    expect_ok("diff-pr.json", &policy(d, &json));
    let mut gate = args.to_vec();
    gate.push("--fail-on-grant");
    assert_eq!(policy(d, &gate).status.code(), Some(1));
    // The reverse change revokes what the change granted.
    let back = policy(
        d,
        &[
            "diff",
            "-c",
            "payments.toml",
            "policy/payments-pr",
            "policy/payments",
        ],
    );
    let back = text(&back.stdout);
    assert!(back.contains("revokes (allowed before, denied after):\n  spiffe://example.org/ns/payments/* (payments) GET payments-api /payments/admin, /payments/admin/**\n      now denied by `no-admin`; was allowed by `payments-read`\n"), "{back}");
    // Two gateway configs: the same file twice is no change, and no grant fails no gate.
    let same = policy(
        d,
        &["diff", "payments.toml", "payments.toml", "--fail-on-grant"],
    );
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(
        text(&same.stdout),
        "policy diff payments.toml -> payments.toml\nrules: (no rule changed)\n\n0 grant row(s), 0 revoke row(s), 0 staged row(s)\n"
    );
}

#[test]
fn blast_radius_per_identity_per_route_and_ranked() {
    let dir = workspace();
    let d = dir.path();
    let id = [
        "blast-radius",
        "--config",
        "payments.toml",
        "--config",
        "shop.toml",
        "--identity",
        CHECKOUT,
    ];
    expect_ok("blast-checkout.txt", &policy(d, &id));
    let mut json = id.to_vec();
    json.push("--json");
    expect_ok("blast-checkout.json", &policy(d, &json));
    let mut dot = id.to_vec();
    dot.push("--dot");
    expect_ok("blast-checkout.dot", &policy(d, &dot));
    // A directory stands for its gateway configs.
    expect_ok(
        "blast-route.txt",
        &policy(
            d,
            &[
                "blast-radius",
                "-c",
                ".",
                "--route",
                "payments/payments-api",
            ],
        ),
    );
    expect_ok(
        "blast-route.dot",
        &policy(
            d,
            &[
                "blast-radius",
                "-c",
                ".",
                "--route",
                "payments/payments-api",
                "--dot",
            ],
        ),
    );
    expect_ok(
        "blast-rank.txt",
        &policy(
            d,
            &[
                "blast-radius",
                "-c",
                ".",
                "--rank",
                "--events",
                "events/payments.jsonl",
            ],
        ),
    );
    expect_ok(
        "blast-rank.json",
        &policy(
            d,
            &["blast-radius", "-c", ".", "--rank", "--top", "3", "--json"],
        ),
    );
    let unknown = policy(d, &["blast-radius", "-c", ".", "--route", "payments/nope"]);
    assert_eq!(unknown.status.code(), Some(64));
    assert_eq!(
        text(&unknown.stderr),
        "zonegate policy: --route: zone `payments` has no route `nope` (routes: payments-api, ledger-grpc)\n"
    );
}

#[test]
fn suggest_writes_an_audit_policy_the_gateway_loads_and_reports_stale_grants() {
    let dir = workspace();
    let d = dir.path();
    // Without --out: the policy on stdout, the report on stderr.
    let out = policy(
        d,
        &[
            "suggest",
            "--events",
            "events/payments.jsonl",
            "--config",
            "payments.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    expect("suggest-policy.toml", &text(&out.stdout));
    expect("suggest-report.txt", &text(&out.stderr));
    // With --out: the report on stdout; --json adds nothing but structure.
    let out = policy(
        d,
        &[
            "suggest",
            "--events",
            "events/payments.jsonl",
            "--config",
            "payments.toml",
            "--out",
            "policy/payments/30-observed.toml",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    expect("suggest.json", &text(&out.stdout));
    let written = std::fs::read_to_string(d.join("policy/payments/30-observed.toml")).unwrap();
    expect("suggest-policy.toml", &written);
    // The gateway itself loads it beside the current policy, and nothing changes yet: every
    // suggested rule is in audit mode.
    let check = Command::new(BIN)
        .current_dir(d)
        .args(["check", "--config", "payments.toml"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("9 rule(s) from 3 policy file(s)"),
        "{}",
        text(&check.stdout)
    );
    // The audit rules show, per request, what enforcing them would change.
    let staged = policy(
        d,
        &[
            "explain",
            "-c",
            "payments.toml",
            "--spiffe-id",
            "spiffe://example.org/ns/shop/sa/cart",
            "/payments/charges/7",
        ],
    );
    let staged = text(&staged.stdout);
    assert!(
        staged.contains("decision  deny (403, default_deny) by default"),
        "{staged}"
    );
    assert!(staged.contains("audit     would be allow if audit rules were enforced: rule observed.payments-api.ns.shop.sa.cart"), "{staged}");
}

#[test]
fn report_flags_shared_identities() {
    let dir = workspace();
    let d = dir.path();
    let out = policy(d, &["report", "--events", "events/payments.jsonl"]);
    assert_eq!(out.status.code(), Some(0));
    expect("report.txt", &text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        "events/payments.jsonl:13: not a JSON event: EOF while parsing an object at line 1 column 68: skipped\nevents/payments.jsonl:14: schema is Some(\"zonegate.identity/v0\"), expected \"zonegate.identity/v1\": skipped\n"
    );
    expect_ok(
        "report.json",
        &policy(
            d,
            &[
                "report",
                "--events",
                "events/payments.jsonl",
                "--json",
                "--shared-threshold",
                "2",
            ],
        ),
    );
    // Standard input works as a file (`zcat events.gz | ... --events -`).
    let mut child = Command::new(BIN)
        .current_dir(d)
        .args(["policy", "report", "--events", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = std::fs::read(d.join("events/payments.jsonl")).unwrap();
    child.stdin.take().unwrap().write_all(&events).unwrap();
    let piped = child.wait_with_output().unwrap();
    expect("report.txt", &text(&piped.stdout));
}

/// Writes `lines` request events with ever new (identity, path) keys, so that without its cap
/// the aggregation would grow with the input.
fn generate_events(path: &Path, lines: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..lines {
        let who = i % 500;
        let (decision, reason) = if i % 3 == 0 {
            ("deny", "default_deny")
        } else {
            ("allow", "allowed")
        };
        writeln!(
            out,
            r#"{{"schema":"zonegate.identity/v1","kind":"request","decision":"{decision}","reason":"{reason}","source_spiffe_id":"spiffe://example.org/ns/shop/sa/w{who}","source_zone":"shop","peer_addr":"10.0.{}.{}:{}","cert_serial":"{:x}","destination_zone":"payments","route":"payments-api","method":"{}","host":"payments.internal","path":"/payments/charges/{i}/items/sku{}","status":200}}"#,
            who % 250,
            i % 7,
            40_000 + i % 20_000,
            who * 7 + i % 7,
            if i % 2 == 0 { "GET" } else { "POST" },
            i % 100_003,
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// The peak resident set (VmHWM, KiB) of a running process, or `None` once it is gone.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Streams `lines` generated events through `suggest` and returns its peak RSS (KiB) and
/// report.
fn suggest_peak_rss(lines: usize) -> (u64, String) {
    let dir = workspace();
    let events = dir.path().join("events/big.jsonl");
    generate_events(&events, lines);
    // Output goes to files: a pipe nobody reads until the end could block the child.
    let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "policy",
            "suggest",
            "--events",
            "events/big.jsonl",
            "--config",
            "payments.toml",
            "--max-keys",
            "20000",
            "--out",
            "suggested.toml",
        ])
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    // VmHWM only grows; polled until the process exits, the last reading is within a few
    // milliseconds of its end.
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = peak_rss_kib(child.id()) {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = child.wait().unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert!(status.success(), "{}", read("stderr"));
    assert!(peak > 0, "never saw the process's memory");
    eprintln!("suggest over {lines} lines: peak RSS {peak} KiB");
    (peak, read("stdout"))
}

const RSS_BOUND_KIB: u64 = 64 * 1024;

#[test]
fn suggest_streams_events_in_bounded_memory() {
    // A million lines take a few seconds in release; a debug build parses JSON an order of
    // magnitude slower, so the default (debug) run streams 100,000. The ignored test below
    // always streams a million.
    let lines = std::env::var("ZONEGATE_SUGGEST_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            100_000
        } else {
            1_000_000
        });
    let (peak, report) = suggest_peak_rss(lines);
    assert!(
        peak < RSS_BOUND_KIB,
        "peak RSS {peak} KiB for {lines} lines"
    );
    assert!(
        report.contains("distinct (identity, route, method, path) keys kept (--max-keys 20000)"),
        "{report}"
    );
    assert!(
        report.contains(&format!("{lines} request event(s)")),
        "{report}"
    );
}

#[test]
#[ignore = "a million lines: about a minute in a debug build; run with --run-ignored"]
fn suggest_streams_a_million_events_in_bounded_memory() {
    let (peak, report) = suggest_peak_rss(1_000_000);
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    assert!(report.contains("1000000 request event(s)"), "{report}");
}

/// An identity and a path a peer could put in an event file, each trying to run a script
/// that changes the page's title.
const EVIL_ID: &str = "spiffe://example.org/ns/shop/sa/x\"><img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>";
const EVIL_PATH: &str = "/payments/<img src=x onerror=\"document.title='pwned'\">";

/// Chromium, as Debian names it; `None` when absent, unless `CI` says it must be there.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("chromium is not installed, and CI runs the browser test (.ci/run installs it)");
    }
    found
}

/// The DOM of `page` (with `#fragment`) once its script ran, as headless Chromium dumps it.
fn dump_dom(chromium: &Path, page: &Path, fragment: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}#{fragment}", page.display());
    // To a file, not a pipe: a helper process that outlived the browser would hold a pipe open.
    let dom = profile.path().join("dom.html");
    let mut child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url])
        .stdout(std::fs::File::create(&dom).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not dump {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(dom).unwrap()
}

/// An element of a serialised DOM: its tag, attributes and the text up to its first child.
#[derive(Debug)]
struct Element {
    tag: String,
    attrs: Vec<(String, String)>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every start tag of `dom` with its attributes (quoted values may hold `>`), in order. A
/// dumped DOM is the browser's own serialisation: every value is double-quoted, `"` and `&` in
/// it escaped, and text holds no raw `<`.
fn elements(dom: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let bytes = dom.as_bytes();
    let mut i = 0;
    while let Some(at) = dom[i..].find('<') {
        i += at + 1;
        if !bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let name_end = i + dom[i..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap();
        let tag = dom[i..name_end].to_string();
        i = name_end;
        let mut attrs = Vec::new();
        loop {
            let rest = dom[i..].trim_start_matches([' ', '\n', '/']);
            i = dom.len() - rest.len();
            if rest.starts_with('>') {
                i += 1;
                break;
            }
            let name_len = rest.find(['=', ' ', '>']).unwrap();
            let name = rest[..name_len].to_string();
            i += name_len;
            if dom[i..].starts_with("=\"") {
                let end = i + 2 + dom[i + 2..].find('"').unwrap();
                attrs.push((name, unescape(&dom[i + 2..end])));
                i = end + 1;
            } else {
                attrs.push((name, String::new()));
            }
        }
        // A script's or a style's text is not markup.
        if tag == "script" || tag == "style" {
            i += dom[i..].find(&format!("</{tag}>")).unwrap();
        }
        let text_end = i + dom[i..].find('<').unwrap_or(dom.len() - i);
        out.push(Element {
            tag,
            attrs,
            text: unescape(&dom[i..text_end]),
        });
    }
    out
}

/// `--html` draws the identity graph of the zones given, and headless Chromium shows what the
/// analyses found: the identities and routes, exactly the expected edges, blast radius and
/// sharing per identity, and an identity from an event file that tries to inject markup as
/// nothing but text.
#[test]
fn report_html_draws_the_zone_graph_in_a_browser() {
    let dir = workspace();
    let d = dir.path();
    let evil = serde_json::json!({
        "schema": "zonegate.identity/v1", "kind": "request", "time": "2026-11-23T10:01:00.000Z",
        "decision": "deny", "reason": "default_deny", "source_spiffe_id": EVIL_ID,
        "source_zone": "shop", "destination_zone": "payments", "route": "payments-api",
        "method": "GET", "path": EVIL_PATH,
    });
    std::fs::write(d.join("events/evil.jsonl"), format!("{evil}\n")).unwrap();
    let args = [
        "report",
        "--events",
        "events/payments.jsonl",
        "--events",
        "events/evil.jsonl",
        "-c",
        ".",
        "--html",
        "page.html",
    ];
    let out = policy(d, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "wrote page.html: 9 identities, 4 routes, 17 edges\n"
    );
    // The same input gives the same page.
    let page = std::fs::read_to_string(d.join("page.html")).unwrap();
    assert_eq!(policy(d, &args).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(d.join("page.html")).unwrap(), page);

    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); set CI to make this a failure");
        return;
    };
    let started = std::time::Instant::now();
    let fragment: String = EVIL_ID
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    let dom = dump_dom(&chromium, &d.join("page.html"), &fragment);
    eprintln!("chromium dumped the DOM in {:?}", started.elapsed());
    let all = elements(&dom);
    let title = all.iter().find(|e| e.tag == "title").unwrap();
    assert_eq!(
        title.text, "zonegate policy report: zones payments, shop",
        "{dom}"
    );
    // No injected element: the page's own two scripts, and no image at all.
    assert_eq!(all.iter().filter(|e| e.tag == "script").count(), 2, "{dom}");
    assert!(!all.iter().any(|e| e.tag == "img"), "{dom}");

    let nodes = |kind: &str| -> Vec<&str> {
        all.iter()
            .filter(|e| e.attr("data-type") == Some(kind))
            .filter_map(|e| e.attr("data-node"))
            .collect()
    };
    assert_eq!(
        nodes("identity"),
        [
            "spiffe://example.org/ns/payments/*",
            LEDGER,
            "spiffe://example.org/ns/payments/sa/old-ledger",
            "spiffe://example.org/ns/shop/*",
            "spiffe://example.org/ns/shop/sa/batch",
            "spiffe://example.org/ns/shop/sa/cart",
            CHECKOUT,
            EVIL_ID,
            "spiffe://example.org/*",
        ]
    );
    assert_eq!(
        nodes("route"),
        [
            "payments/ledger-grpc",
            "payments/payments-api",
            "shop/cart-api",
            "shop/catalog-api"
        ]
    );
    let edges: Vec<(&str, &str, &str)> = all
        .iter()
        .filter(|e| e.attr("data-edge-from").is_some() && e.tag == "path")
        .map(|e| {
            (
                e.attr("data-edge-from").unwrap(),
                e.attr("data-edge-to").unwrap(),
                e.attr("data-kind").unwrap(),
            )
        })
        .collect();
    let (payments, cart_api, catalog) =
        ("payments/payments-api", "shop/cart-api", "shop/catalog-api");
    let (batch, cart) = (
        "spiffe://example.org/ns/shop/sa/batch",
        "spiffe://example.org/ns/shop/sa/cart",
    );
    assert_eq!(
        edges,
        [
            ("spiffe://example.org/ns/payments/*", payments, "stale"),
            (LEDGER, "payments/ledger-grpc", "stale"),
            (LEDGER, payments, "stale"),
            // The ledger's one cross-zone request used its grant.
            (LEDGER, catalog, "granted-used"),
            (
                "spiffe://example.org/ns/payments/sa/old-ledger",
                payments,
                "stale"
            ),
            ("spiffe://example.org/ns/shop/*", cart_api, "stale"),
            ("spiffe://example.org/ns/shop/*", catalog, "stale"),
            (batch, payments, "observed-denied"),
            (batch, cart_api, "stale"),
            (batch, catalog, "stale"),
            (cart, payments, "observed-denied"),
            (cart, cart_api, "stale"),
            (cart, catalog, "stale"),
            (CHECKOUT, payments, "granted-used"),
            (CHECKOUT, cart_api, "stale"),
            (CHECKOUT, catalog, "stale"),
            (EVIL_ID, payments, "observed-denied"),
        ]
    );

    // Per identity: blast radius (as `blast-radius --rank` ranks it), sharing, stale grants.
    let field = |id: &str, name: &str| -> String {
        let row = all
            .iter()
            .position(|e| e.tag == "tr" && e.attr("data-identity") == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}"));
        let cell = row
            + all[row..]
                .iter()
                .position(|e| e.attr("data-field") == Some(name))
                .unwrap();
        if name != "stale" {
            return all[cell].text.clone();
        }
        // The stale grants are a list in the cell, and the cell is the row's last.
        let items: Vec<&str> = all[cell + 1..]
            .iter()
            .take_while(|e| e.tag == "ul" || e.tag == "li")
            .filter(|e| e.tag == "li")
            .map(|e| e.text.as_str())
            .collect();
        items.join(" ")
    };
    for (id, routes, zones, grants, shared, stale) in [
        (
            CHECKOUT,
            "3",
            "2",
            "13",
            "no",
            "shop/cart-api shop/catalog-api",
        ),
        (
            LEDGER,
            "3",
            "2",
            "5",
            "no",
            "payments/ledger-grpc payments/payments-api",
        ),
        (
            batch,
            "2",
            "1",
            "9",
            "yes: 6 peer IPs, 6 certificates at once",
            "shop/cart-api shop/catalog-api",
        ),
        (EVIL_ID, "0", "0", "0", "no", ""),
    ] {
        assert_eq!(
            [
                field(id, "routes"),
                field(id, "zones"),
                field(id, "grants"),
                field(id, "shared"),
                field(id, "stale")
            ],
            [routes, zones, grants, shared, stale],
            "{id}"
        );
    }
    assert_eq!(field(cart, "denied"), "4");
    assert!(all
        .iter()
        .any(|e| e.attr("class") == Some("id") && e.tag == "td" && e.text == EVIL_ID));

    // The script selected the identity of the page's #fragment: its edges are lit, and its
    // details list the refused request, path and all, as text.
    let body = all.iter().find(|e| e.tag == "body").unwrap();
    assert_eq!(body.attr("class"), Some("focus"), "{dom}");
    let lit: Vec<&str> = all
        .iter()
        .filter(|e| e.tag == "path" && e.attr("class").is_some_and(|c| c.ends_with(" lit")))
        .filter_map(|e| e.attr("data-edge-from"))
        .collect();
    assert_eq!(lit, [EVIL_ID]);
    let details = all
        .iter()
        .position(|e| e.attr("id") == Some("details"))
        .unwrap();
    assert_eq!(all[details].attr("hidden"), None, "{dom}");
    assert_eq!(all[details + 1].text, EVIL_ID);
    let item = all[details..]
        .iter()
        .find(|e| e.tag == "li" && e.attr("data-kind").is_some())
        .unwrap();
    assert_eq!(
        (item.attr("data-edge-to"), item.attr("data-kind")),
        (Some(payments), Some("observed-denied"))
    );
    let sample = all
        .iter()
        .find(|e| e.attr("class") == Some("sample"))
        .unwrap();
    assert_eq!(sample.text, format!("GET {EVIL_PATH} (default_deny)"));
    eprintln!("browser test took {:?}", started.elapsed());
}

#[test]
fn report_html_refuses_bad_input_with_the_file_and_the_reason() {
    let dir = workspace();
    let d = dir.path();
    let events = ["report", "--events", "events/payments.jsonl"];
    let run = |extra: &[&str]| {
        let mut args = events.to_vec();
        args.extend_from_slice(extra);
        policy(d, &args)
    };
    // The grants come from the configs: --html needs them, and they mean nothing without it.
    let out = run(&["--html", "page.html"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(run(&["-c", "."]).status.code(), Some(2));
    assert_eq!(
        run(&["-c", ".", "--html", "p.html", "--json"])
            .status
            .code(),
        Some(2)
    );
    let out = run(&["-c", "missing.toml", "--html", "page.html"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("missing.toml: cannot read config file"),
        "{}",
        text(&out.stderr)
    );
    let out = policy(
        d,
        &[
            "report",
            "--events",
            "nope.jsonl",
            "-c",
            ".",
            "--html",
            "page.html",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).starts_with("zonegate policy: nope.jsonl: "),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["-c", ".", "--html", "no-such-dir/page.html"]);
    assert_eq!(out.status.code(), Some(74));
    assert!(
        text(&out.stderr).ends_with("no-such-dir/page.html: cannot write the page: No such file or directory (os error 2)\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("page.html").exists());
}
