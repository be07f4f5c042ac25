//! Micro-benchmarks of the per-request policy work: path normalisation (benign and hostile
//! targets) and the policy decision with a decision-cache hit and miss, for policies of 10, 1k,
//! 10k and 100k rules.
//!
//! Rules are written as TOML policy files and loaded through the gateway's own loader
//! (`zonegate_core::config::load_policy_files`), exactly as the gateway reads them. They look like a
//! real zone's policy: one workload per rule with its own SPIFFE ID, 50 routes, path globs and
//! prefixes, namespace-wide deny rules and zone-wide read rules, and two rules for every route.
//! The request decided is allowed by the *last* workload rule, so no size gets an early exit.
//!
//! `cargo bench -p zonegate-core --bench policy` (add `-- policy_decision` to run only the decisions)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use zonegate_core::config::{load_policy_files, ConfigErrors};
use zonegate_core::identity::SpiffeId;
use zonegate_core::policy::{normalize, Policy, Presented, RequestFacts, Verdict};

const ROUTES: usize = 50;
const NAMESPACES: usize = 200;
const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

/// What kind of rule rule `i` is; most are per-workload allows.
fn kind(i: usize) -> u8 {
    match (i % 97, i % 50) {
        (96, _) => b'd', // namespace-wide deny of admin paths
        (_, 49) => b'z', // zone-wide read of public documents
        _ => b'w',       // one workload's allow
    }
}

/// A policy of `n` rules as TOML text.
fn policy_toml(n: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(n * 320);
    for i in 0..n {
        let (route, ns) = (i % ROUTES, i % NAMESPACES);
        let _ = match kind(i) {
            b'd' => write!(
                out,
                "[[rule]]\nid = \"deny-admin-{i}\"\neffect = \"deny\"\n\
                 identities = [\"spiffe://example.org/ns/ns{ns}/*\"]\nroutes = [\"api-{route}\"]\n\
                 paths = [\"/api-{route}/v1/*/admin\", \"/api-{route}/v1/*/admin/**\"]\n\n"
            ),
            b'z' => write!(
                out,
                "[[rule]]\nid = \"zone-read-{i}\"\neffect = \"allow\"\nzones = [\"zone{}\"]\n\
                 routes = [\"api-{route}\"]\nmethods = [\"GET\"]\n\
                 paths = [\"/api-{route}/v1/public/*.json\"]\n\n",
                ns % 20
            ),
            _ => write!(
                out,
                "[[rule]]\nid = \"svc-{i}\"\ndescription = \"workload {i} uses its own resources\"\n\
                 effect = \"allow\"\nidentities = [\"spiffe://example.org/ns/ns{ns}/sa/svc{i}\"]\n\
                 routes = [\"api-{route}\"]\nmethods = [\"GET\", \"POST\"]\n\
                 paths = [\"/api-{route}/v1/svc{i}/items\", \"/api-{route}/v1/svc{i}/items/*\", \
                 \"/api-{route}/v1/svc{i}/orders/**\"]\n\n"
            ),
        };
    }
    // Rules on every route, evaluated for every request.
    out.push_str(
        "[[rule]]\nid = \"no-debug\"\neffect = \"deny\"\npaths = [\"/*/v1/*/debug/**\"]\n\n\
         [[rule]]\nid = \"audit-deletes\"\neffect = \"deny\"\nmode = \"audit\"\n\
         methods = [\"DELETE\"]\n",
    );
    out
}

/// Loads `n` rules through the gateway's policy loader and compiles them.
fn policy(n: usize, cache_entries: usize) -> Policy {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("policy.toml");
    std::fs::write(&path, policy_toml(n)).expect("write policy");
    let mut errors = ConfigErrors::default();
    let (rules, _) = load_policy_files(&[path], &mut errors);
    assert!(errors.is_empty(), "generated policy refused: {errors:?}");
    assert_eq!(rules.len(), n + 2);
    Policy::compile(rules, cache_entries)
}

/// The request the last workload rule of an `n`-rule policy allows.
struct Probe {
    id: SpiffeId,
    route: String,
    path: String,
}

impl Probe {
    fn last_workload(n: usize) -> Probe {
        let i = (0..n).rev().find(|&i| kind(i) == b'w').unwrap_or(0);
        let route = i % ROUTES;
        Probe {
            id: SpiffeId::parse(&format!(
                "spiffe://example.org/ns/ns{}/sa/svc{i}",
                i % NAMESPACES
            ))
            .expect("valid SPIFFE ID"),
            route: format!("api-{route}"),
            path: format!("/api-{route}/v1/svc{i}/orders/2026/11/ord_8f2c"),
        }
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            spiffe_id: Some(&self.id),
            source_zone: "shop",
            route: &self.route,
            method: "POST",
            path: &self.path,
            presented: Presented {
                svid: true,
                token: false,
            },
            token: None,
        }
    }
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_decision");
    for n in SIZES {
        let probe = Probe::last_workload(n);
        // Capacity 0: nothing is ever stored, so every decision is a miss (key, lookup,
        // evaluation), which is what a request with a new (identity, path) pays.
        let uncached = policy(n, 0);
        assert_eq!(uncached.decide(&probe.facts()).verdict, Verdict::Allow);
        group.bench_with_input(BenchmarkId::new("cache_miss", n), &n, |b, _| {
            b.iter(|| uncached.decide(black_box(&probe.facts())))
        });
        drop(uncached);
        let cached = policy(n, 1024);
        cached.decide(&probe.facts());
        group.bench_with_input(BenchmarkId::new("cache_hit", n), &n, |b, _| {
            b.iter(|| cached.decide(black_box(&probe.facts())))
        });
        assert!(cached.cache().hits() > 0);
    }
    group.finish();
}

fn path_normalisation(c: &mut Criterion) {
    let deep = "/segment".repeat(100);
    let deeper = "/segment".repeat(1000);
    let dotty = "/a/./b/../c".repeat(200);
    let cases: Vec<(&str, String)> = vec![
        ("benign_short", "/payments/charge".into()),
        (
            "benign_query",
            "/payments/charges/ch_3Nq8/items?expand=refunds&limit=10".into(),
        ),
        ("benign_deep_800b", deep),
        // Ten times longer: the cost should be ten times, not a hundred (linear, not quadratic).
        ("benign_deep_8k", deeper),
        (
            "hostile_dot_escapes",
            "/payments/public/%2e%2e/%2E%2e/./admin//%7Euser/%41%42".into(),
        ),
        ("hostile_dot_segments_2k", dotty),
        (
            "hostile_refused_encoded_slash",
            "/payments/..%2Fadmin".into(),
        ),
        (
            "hostile_refused_tomcat",
            "/payments/public/..;/admin".into(),
        ),
        ("hostile_refused_too_long", "/a".repeat(4097)),
    ];
    let mut group = c.benchmark_group("path_normalize");
    for (name, target) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), target, |b, t| {
            b.iter(|| normalize(black_box(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, path_normalisation, decision);
criterion_main!(benches);
