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
