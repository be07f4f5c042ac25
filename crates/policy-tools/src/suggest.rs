//! `zonegate policy suggest`: a least-privilege policy from identity events, and what the
//! current policy grants that nobody uses.
//!
//! Event files are streamed line by line. Observed requests are aggregated by (identity,
//! route, method, path template), where templates fold identifiers into `*`
//! ([`super::template`]), into a map of at most `--max-keys` entries: when it is full, new keys
//! are counted and reported, never stored, so memory is bounded whatever the input.
//!
//! The suggestion allows what was allowed, and what was denied by default (wanted, but no rule
//! said yes); it never allows what an explicit deny rule refused (those are listed). It is
//! written with `mode = "audit"`, so deploying it changes no decision: its events show what
//! enforcing it would change (docs/policy.md, "observe, suggest, audit, enforce"). It is
//! checked with the gateway's own policy loader before it is printed.
//!
//! With `--config`, every observed request is also decided by the current policy
//! (`Policy::decide`, the gateway's decision): allow rules no observed request used are stale
//! grants, and observed requests it denies are listed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::events::{EventReader, ReadStats, RequestEvent};
use super::facts::Probe;
use super::load::{self, Loaded};
use super::report::{shared_text, IdentitySummary, Sharing};
use super::template::{pattern_for, template};
use super::{json_out, print_out, usage_error, EXIT_IO};
use crate::config::EXIT_FAILURE;
use crate::config::{self, ConfigErrors};
use crate::identity::SpiffeId;
use crate::policy::{Effect, Mode, Verdict};

/// Most (identity, route, method, template) keys kept by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Most distinct identities, routes or methods interned.
const MAX_NAMES: usize = 100_000;
/// Most entries kept for denials (all are in `--json`).
const MAX_LISTED: usize = 10_000;
/// Most entries of a list the human report shows, busiest first.
const MAX_SHOWN: usize = 20;

/// `zonegate policy suggest`
#[derive(clap::Args, Debug)]
pub struct SuggestArgs {
    /// Identity event files (JSON lines, docs/events.md); `-` reads standard input.
    #[arg(long, required = true)]
    pub events: Vec<PathBuf>,
    /// The gateway config the events came from: report its stale grants and what it denies,
    /// and only use events of its zone.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Write the suggested policy here (the report then goes to standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Only suggest what was allowed (not what was denied by default).
    #[arg(long)]
    pub allowed_only: bool,
    /// Fold a path segment into `*` when at least this many distinct values share the rest of
    /// the template (0: off).
    #[arg(long, default_value_t = 8)]
    pub fold_threshold: usize,
    /// Most aggregation keys kept in memory.
    #[arg(long, default_value_t = DEFAULT_MAX_KEYS)]
    pub max_keys: usize,
    /// Flag identities seen from at least this many peer IPs or certificate serials within
    /// one --window.
    #[arg(long, default_value_t = 5)]
    pub shared_threshold: usize,
    /// The time window peers and certificates are counted in (see `report --window`).
    #[arg(long, default_value = "10m", value_parser = super::report::parse_window)]
    pub window: u64,
    /// Prefix of the suggested rule ids.
    #[arg(long, default_value = "observed")]
    pub id_prefix: String,
    /// Machine-readable report (with the policy text in it when --out is absent).
    #[arg(long)]
    pub json: bool,
}

/// Strings stored once and named by index.
#[derive(Default)]
struct Names {
    index: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Names {
    fn intern(&mut self, s: &str) -> Option<u32> {
        if let Some(&i) = self.index.get(s) {
            return Some(i);
        }
        if self.names.len() >= MAX_NAMES {
            return None;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.index.insert(s.into(), i);
        Some(i)
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    identity: u32,
    route: u32,
    method: u32,
    template: Box<str>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    allowed: u64,
    denied: u64,
}

/// A bounded aggregation map.
struct Aggregate<V> {
    map: HashMap<Key, V>,
    max: usize,
    /// Requests whose key was new once the map was full.
    overflow: u64,
}

impl<V: Default> Aggregate<V> {
    fn new(max: usize) -> Self {
        Aggregate {
            map: HashMap::new(),
            max,
            overflow: 0,
        }
    }

    fn entry(&mut self, key: Key) -> Option<&mut V> {
        if !self.map.contains_key(&key) && self.map.len() >= self.max {
            self.overflow += 1;
            return None;
        }
        Some(self.map.entry(key).or_default())
    }
}

/// Observed requests the current policy denies: how many, and what denies them.
#[derive(Default)]
struct Denied {
    requests: u64,
    by: Option<Arc<str>>,
}

/// One suggested rule.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Suggested {
    pub id: String,
    pub identity: String,
    pub route: String,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
    pub allowed: u64,
    pub denied: u64,
}

/// An observed request class, with counts.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Observed {
    pub identity: String,
    pub route: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    /// The rule that denied it (`None`: denied by default).
    pub rule: Option<String>,
}

/// How an allow rule of the current policy was used.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleUse {
    pub rule: String,
    pub file: String,
    pub line: Option<usize>,
    /// Observed requests it matched that the policy allows.
    pub requests: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    /// Request events used (allowed, or denied by policy).
    pub used: u64,
    /// Request events without identity, path or route (refused before policy).
    pub before_policy: u64,
    /// Events of another zone's gateway (with --config).
    pub other_zone: u64,
    /// Requests with a method no rule can name (rule methods are upper-case letters).
    pub unnameable_method: u64,
    /// Requests whose path no pattern can express.
    pub unnameable_path: u64,
    /// Requests the current config routes nowhere (with --config).
    pub no_route_now: u64,
    /// Distinct keys kept, and requests not aggregated because the map was full.
    pub keys: usize,
    pub max_keys: usize,
    pub overflow: u64,
}

/// The suggestion and the report around it.
#[derive(Debug, Serialize)]
pub struct Suggestion {
    /// The policy file text, when not written to a file.
    pub policy: Option<String>,
    pub out: Option<String>,
    pub rules: Vec<Suggested>,
    /// With --config: allow rules no observed request used.
    pub stale_grants: Option<Vec<RuleUse>>,
    pub rule_use: Option<Vec<RuleUse>>,
    /// With --config: observed requests the current policy denies.
    pub denied_now: Option<Vec<Observed>>,
    /// Observed requests an explicit deny rule refused: never suggested.
    pub explicitly_denied: Vec<Observed>,
    pub shared_threshold: usize,
    /// The window peers and certificates were counted in (seconds; 0: the whole files).
    pub window_s: u64,
    pub shared_identities: Vec<IdentitySummary>,
    pub events: ReadStats,
    pub counters: Counters,
}

/// The streaming state.
struct State<'a> {
    args: &'a SuggestArgs,
    current: Option<&'a Loaded>,
    names: Names,
    observed: Aggregate<Counts>,
    explicit: Aggregate<Denied>,
    denied_now: Aggregate<Denied>,
    rule_use: Vec<u64>,
    sharing: Sharing,
    counters: Counters,
    /// Templates already checked to be valid patterns (bounded like the keys).
    checked: HashSet<Box<str>>,
}

/// The template of `path`, checked once per distinct template to be a pattern that matches
/// the path it came from (a template only ever replaces whole segments or their tails by `*`,
/// so if it matches one path of its shape it matches them all); else the exact path, or
/// `None`.
fn template_checked(path: &str, checked: &mut HashSet<Box<str>>, cap: usize) -> Option<String> {
    let t = template(path);
    if checked.contains(t.as_str()) {
        return Some(t);
    }
    let t = pattern_for(path)?;
    if checked.len() < cap {
        checked.insert(t.as_str().into());
    }
    Some(t)
}

pub fn run(args: &SuggestArgs) -> i32 {
    if config::validate_name(&args.id_prefix).is_err() {
        return usage_error(&format!(
            "--id-prefix: `{}` must be characters of [A-Za-z0-9._-]",
            args.id_prefix
        ));
    }
    let current = match &args.config {
        Some(path) => match load::open(path, None) {
            Ok(l) => Some(l),
            Err(errors) => return load::report_errors(&errors),
        },
        None => None,
    };
    let mut state = State {
        args,
        current: current.as_ref(),
        names: Names::default(),
        observed: Aggregate::new(args.max_keys),
        explicit: Aggregate::new(MAX_LISTED),
        denied_now: Aggregate::new(MAX_LISTED),
        rule_use: vec![0; current.as_ref().map_or(0, |c| c.rules().len())],
        sharing: Sharing::new(args.window),
        counters: Counters::default(),
        checked: HashSet::new(),
    };
    let mut stats = ReadStats::default();
    for file in &args.events {
        let mut reader = match EventReader::open(file) {
            Ok(r) => r,
            Err(e) => return usage_error(&format!("{}: {e}", file.display())),
        };
        reader.for_each_request(|event| state.observe(&event));
        reader.report_skipped();
        stats.add(&reader.stats);
    }
    let mut suggestion = state.finish(stats);
    let text = policy_text(&suggestion);
    if let Err(errors) = check_policy(&text, args.out.as_deref()) {
        eprintln!("{errors}");
        eprintln!(
            "zonegate policy suggest: the suggested policy does not load (a bug; please report it)"
        );
        return EXIT_FAILURE;
    }
    match &args.out {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &text) {
                eprintln!("{}: cannot write the suggested policy: {e}", out.display());
                return EXIT_IO;
            }
            suggestion.out = Some(out.display().to_string());
            if args.json {
                json_out(&suggestion)
            } else {
                print_out(&render(&suggestion))
            }
        }
        None if args.json => {
            suggestion.policy = Some(text);
            json_out(&suggestion)
        }
        None => {
            eprint!("{}", render(&suggestion));
            print_out(&text)
        }
    }
}

impl State<'_> {
    fn observe(&mut self, event: &RequestEvent<'_>) {
        self.sharing.observe(event);
        let (Some(id), Some(path), Some(route)) = (
            event.source_spiffe_id.as_deref(),
            event.path.as_deref(),
            event.route.as_deref(),
        ) else {
            self.counters.before_policy += 1;
            return;
        };
        let outcome = match (event.decision.as_ref(), event.reason.as_ref()) {
            ("deny", "policy_denied") => Outcome::Refused,
            ("deny", "default_deny") => Outcome::Wanted,
            ("allow", _) => Outcome::Allowed,
            // Authentication failures and the like never reached policy.
            _ => {
                self.counters.before_policy += 1;
                return;
            }
        };
        if let Some(current) = self.current {
            if event.destination_zone.as_deref() != Some(current.zone()) {
                self.counters.other_zone += 1;
                return;
            }
        }
        self.counters.used += 1;
        let method = event.method.as_ref();
        let template = template_checked(path, &mut self.checked, self.args.max_keys);
        let key = match (
            template,
            self.names.intern(id),
            self.names.intern(route),
            self.names.intern(method),
        ) {
            (Some(template), Some(identity), Some(route), Some(method)) => Some(Key {
                identity,
                route,
                method,
                template: template.into(),
            }),
            (None, ..) => {
                self.counters.unnameable_path += 1;
                None
            }
            _ => None,
        };
        if let Some(key) = &key {
            match outcome {
                Outcome::Refused => {
                    if let Some(d) = self.explicit.entry(key.clone()) {
                        d.requests += 1;
                        if d.by.is_none() {
                            d.by = event.rule_id.as_deref().map(Arc::from);
                        }
                    }
                }
                Outcome::Wanted if self.args.allowed_only => {}
                Outcome::Allowed | Outcome::Wanted => {
                    if !is_rule_method(method) {
                        self.counters.unnameable_method += 1;
                    } else if let Some(c) = self.observed.entry(key.clone()) {
                        match outcome {
                            Outcome::Allowed => c.allowed += 1,
                            _ => c.denied += 1,
                        }
                    }
                }
            }
        }
        self.decide_now(event, id, path, key);
    }

    /// Decides the observed request with the current policy, as the gateway would now.
    fn decide_now(&mut self, event: &RequestEvent<'_>, id: &str, path: &str, key: Option<Key>) {
        let Some(current) = self.current else {
            return;
        };
        let Ok(spiffe_id) = SpiffeId::parse(id) else {
            return;
        };
        let host = event.host.as_deref();
        let Some(route) = current.routes.select(host, path) else {
            self.counters.no_route_now += 1;
            return;
        };
        let probe = Probe {
            source_zone: current.config.zone_of(&spiffe_id).to_string(),
            spiffe_id: Some(spiffe_id),
            svid: true,
            token: None,
            route: route.name.clone(),
            method: event.method.to_string(),
            path: path.to_string(),
        };
        let facts = probe.facts();
        // `evaluate`, not `decide`: the same decision without a cache that would fill with
        // every distinct observed path.
        let decision = current.policy.evaluate(&facts);
        if decision.verdict == Verdict::Allow {
            for (i, rule) in current.rules().iter().enumerate() {
                if rule.effect == Effect::Allow
                    && rule.mode == Mode::Enforce
                    && rule.matches(&facts)
                {
                    self.rule_use[i] += 1;
                }
            }
        } else if let Some(key) = key {
            if let Some(d) = self.denied_now.entry(key) {
                d.requests += 1;
                d.by = decision.rule.clone();
            }
        }
    }

    /// Rule ids of the current policy, except those of the file `--out` replaces: rule ids are
    /// unique across a gateway's policy files, so suggested ones must avoid them.
    fn taken_ids(&self) -> BTreeSet<String> {
        let Some(current) = self.current else {
            return BTreeSet::new();
        };
        let replaced = self
            .args
            .out
            .as_ref()
            .and_then(|o| std::fs::canonicalize(o).ok());
        current
            .rules()
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                let file = std::fs::canonicalize(&current.origin(i).file).ok();
                replaced.is_none() || file != replaced
            })
            .map(|(_, r)| r.id.to_string())
            .collect()
    }

    fn finish(mut self, events: ReadStats) -> Suggestion {
        fold(&mut self.observed.map, self.args.fold_threshold);
        let taken = self.taken_ids();
        let rules = suggested_rules(&self.observed.map, &self.names, &self.args.id_prefix, taken);
        let listed = |agg: &Aggregate<Denied>, names: &Names| -> Vec<Observed> {
            let mut out: Vec<Observed> = agg
                .map
                .iter()
                .map(|(k, d)| Observed {
                    identity: names.name(k.identity).to_string(),
                    route: names.name(k.route).to_string(),
                    method: names.name(k.method).to_string(),
                    path: k.template.to_string(),
                    requests: d.requests,
                    rule: d.by.as_deref().map(str::to_string),
                })
                .collect();
            out.sort_by(|a, b| {
                (&a.identity, &a.route, &a.path, &a.method).cmp(&(
                    &b.identity,
                    &b.route,
                    &b.path,
                    &b.method,
                ))
            });
            out
        };
        let (stale, rule_use, denied_now) = match self.current {
            Some(current) => {
                let uses: Vec<RuleUse> = current
                    .rules()
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.effect == Effect::Allow && r.mode == Mode::Enforce)
                    .map(|(i, r)| RuleUse {
                        rule: r.id.to_string(),
                        file: current.origin(i).file.display().to_string(),
                        line: current.origin(i).line,
                        requests: self.rule_use[i],
                    })
                    .collect();
                let stale = uses.iter().filter(|u| u.requests == 0).cloned().collect();
                (
                    Some(stale),
                    Some(uses),
                    Some(listed(&self.denied_now, &self.names)),
                )
            }
            None => (None, None, None),
        };
        self.counters.keys = self.observed.map.len();
        self.counters.max_keys = self.observed.max;
        self.counters.overflow = self.observed.overflow;
        let shared = self
            .sharing
            .summaries(self.args.shared_threshold)
            .into_iter()
            .filter(|s| s.shared)
            .collect();
        Suggestion {
            policy: None,
            out: None,
            rules,
            stale_grants: stale,
            rule_use,
            denied_now,
            explicitly_denied: listed(&self.explicit, &self.names),
            shared_threshold: self.args.shared_threshold,
            window_s: self.args.window,
            shared_identities: shared,
            events,
            counters: self.counters,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    /// Denied by default: wanted, and no rule refused it.
    Wanted,
    /// Denied by an explicit deny rule.
    Refused,
}

/// Rule methods are upper-case letters; a request method that is not can never be named.
fn is_rule_method(m: &str) -> bool {
    !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase())
}

/// Folds a segment into `*` where at least `threshold` templates of one (identity, route,
/// method) differ only there: high-cardinality names the identifier heuristics missed.
///
/// Counts are kept per 64-bit fingerprint of the folded template, not per string, so folding
/// needs a few words per (key, segment) on top of the aggregation it folds.
fn fold(map: &mut HashMap<Key, Counts>, threshold: usize) {
    if threshold == 0 {
        return;
    }
    let folded_at = |key: &Key, i: usize| -> u64 {
        let mut h = DefaultHasher::new();
        (key.identity, key.route, key.method, i).hash(&mut h);
        for (j, segment) in key.template.split('/').enumerate() {
            (if j == i { "*" } else { segment }).hash(&mut h);
        }
        h.finish()
    };
    let foldable = |key: &Key| -> Vec<usize> {
        key.template
            .split('/')
            .enumerate()
            .skip(1)
            .filter(|(_, s)| *s != "*" && !s.is_empty())
            .map(|(i, _)| i)
            .collect()
    };
    let mut counts: HashMap<u64, u32> = HashMap::new();
    for key in map.keys() {
        for i in foldable(key) {
            *counts.entry(folded_at(key, i)).or_default() += 1;
        }
    }
    let old = std::mem::take(map);
    for (key, c) in old {
        // The leftmost segment that varies enough: `/users/*/avatar` before `/users/1/*`.
        let at = foldable(&key).into_iter().find(|&i| {
            counts
                .get(&folded_at(&key, i))
                .is_some_and(|&n| n as usize >= threshold)
        });
        let template: Box<str> = match at {
            Some(i) => key
                .template
                .split('/')
                .enumerate()
                .map(|(j, s)| if j == i { "*" } else { s })
                .collect::<Vec<_>>()
                .join("/")
                .into(),
            None => key.template.clone(),
        };
        let entry = map.entry(Key { template, ..key }).or_default();
        entry.allowed += c.allowed;
        entry.denied += c.denied;
    }
}

/// One rule per identity and route; methods that were seen on different paths get rules of
/// their own, so no rule allows a method on a path it was not seen on.
fn suggested_rules(
    map: &HashMap<Key, Counts>,
    names: &Names,
    prefix: &str,
    mut ids: BTreeSet<String>,
) -> Vec<Suggested> {
    type PerMethod = BTreeMap<String, (BTreeSet<String>, Counts)>;
    let mut by_pair: BTreeMap<(String, String), PerMethod> = BTreeMap::new();
    for (key, counts) in map {
        let pair = (
            names.name(key.identity).to_string(),
            names.name(key.route).to_string(),
        );
        let slot = by_pair
            .entry(pair)
            .or_default()
            .entry(names.name(key.method).to_string())
            .or_default();
        slot.0.insert(key.template.to_string());
        slot.1.allowed += counts.allowed;
        slot.1.denied += counts.denied;
    }
    let mut rules = Vec::new();
    for ((identity, route), methods) in by_pair {
        let mut by_paths: BTreeMap<BTreeSet<String>, (Vec<String>, Counts)> = BTreeMap::new();
        for (method, (paths, counts)) in methods {
            let slot = by_paths.entry(paths).or_default();
            slot.0.push(method);
            slot.1.allowed += counts.allowed;
            slot.1.denied += counts.denied;
        }
        let split = by_paths.len() > 1;
        for (paths, (methods, counts)) in by_paths {
            let mut base = rule_id(prefix, &identity, &route);
            if split {
                base = format!("{base}.{}", methods.join("-").to_ascii_lowercase());
            }
            let id = unique_id(&base, &mut ids);
            rules.push(Suggested {
                id,
                identity: identity.clone(),
                route: route.clone(),
                methods,
                paths: minimal_paths(paths),
                allowed: counts.allowed,
                denied: counts.denied,
            });
        }
    }
    rules
}

/// Drops templates another template of the set already matches (`/a/*` covers `/a/1` once
/// folding made both).
fn minimal_paths(paths: BTreeSet<String>) -> Vec<String> {
    let patterns: Vec<(String, Option<crate::policy::PathPattern>)> = paths
        .iter()
        .map(|p| (p.clone(), crate::policy::PathPattern::parse(p).ok()))
        .collect();
    paths
        .iter()
        .filter(|p| {
            !patterns
                .iter()
                .any(|(other, pat)| other != *p && pat.as_ref().is_some_and(|pat| pat.matches(p)))
        })
        .cloned()
        .collect()
}

/// `PREFIX.ROUTE.ID-PATH`, e.g. `observed.payments-api.ns.shop.sa.checkout`, within 128
/// characters (SPIFFE ID paths and route names only hold rule-id characters).
fn rule_id(prefix: &str, identity: &str, route: &str) -> String {
    let path = SpiffeId::parse(identity)
        .map(|id| id.path().trim_start_matches('/').replace('/', "."))
        .unwrap_or_default();
    let mut id = format!("{prefix}.{route}.{path}");
    id.retain(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    id.truncate(120);
    id
}

fn unique_id(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut id = base.to_string();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}.{n}");
        n += 1;
    }
    id
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The suggested policy as a policy file.
pub fn policy_text(s: &Suggestion) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Suggested by `zonegate policy suggest` from {} observed request(s).",
        s.counters.used
    );
    t.push_str(
        "# Every rule is in audit mode: deploying this file changes no decision. Watch the\n\
         # events' audit_rule_id / audit_decision, review, then switch rules to \"enforce\".\n",
    );
    for r in &s.rules {
        t.push('\n');
        if r.allowed == 0 {
            let _ = writeln!(
                t,
                "# Review: all {} observed request(s) were denied by default.",
                r.denied
            );
        }
        let _ = writeln!(t, "[[rule]]");
        let _ = writeln!(t, "id = {}", toml_str(&r.id));
        let description = format!(
            "observed: {} allowed, {} denied by default",
            r.allowed, r.denied
        );
        let _ = writeln!(t, "description = {}", toml_str(&description));
        let _ = writeln!(t, "effect = \"allow\"");
        let _ = writeln!(t, "mode = \"audit\"");
        let _ = writeln!(
            t,
            "identities = {}",
            toml_list(std::slice::from_ref(&r.identity))
        );
        let _ = writeln!(t, "routes = {}", toml_list(std::slice::from_ref(&r.route)));
        let _ = writeln!(t, "methods = {}", toml_list(&r.methods));
        let _ = writeln!(t, "paths = {}", toml_list(&r.paths));
    }
    t
}

/// Loads `text` with the gateway's policy loader: at `out` when given (the file about to be
/// written is checked in a sibling temporary file), else in the temporary directory.
fn check_policy(text: &str, out: Option<&Path>) -> Result<(), ConfigErrors> {
    // Not `*.toml`: a gateway reading the directory must never pick the check file up.
    let name = format!(".zonegate-suggest-{}.check", std::process::id());
    let tmp = match out.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => std::env::temp_dir().join(name),
    };
    let mut errors = ConfigErrors::default();
    if let Err(e) = std::fs::write(&tmp, text) {
        errors.push(
            &tmp,
            "",
            format!("cannot write a temporary file to check the policy: {e}"),
        );
        return Err(errors);
    }
    let _ = config::load_policy_files(std::slice::from_ref(&tmp), &mut errors);
    let _ = std::fs::remove_file(&tmp);
    errors.into_result(())
}

/// The report.
pub fn render(s: &Suggestion) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let identities: BTreeSet<&str> = s.rules.iter().map(|r| r.identity.as_str()).collect();
    let written = s
        .out
        .as_deref()
        .map(|o| format!(" into {o}"))
        .unwrap_or_default();
    let _ = writeln!(
        t,
        "suggested {} rule(s){written} (mode = \"audit\") for {} identities, from {} request event(s)",
        s.rules.len(),
        identities.len(),
        s.counters.used
    );
    if let Some(stale) = &s.stale_grants {
        let _ = writeln!(t, "\nstale grants (allow rules no observed request used):");
        // Allowed requests within the gateway's own zone produce no event (docs/events.md).
        let _ = writeln!(
            t,
            "  (events record cross-zone requests and refusals: a rule used only in-zone looks stale)"
        );
        if stale.is_empty() {
            let _ = writeln!(t, "  none");
        }
        for u in stale {
            let at = match u.line {
                Some(l) => format!("{}:{l}", u.file),
                None => u.file.clone(),
            };
            let _ = writeln!(t, "  {} ({at})", u.rule);
        }
    }
    if let Some(denied) = &s.denied_now {
        let _ = writeln!(t, "\nobserved requests the current policy denies:");
        list_observed(&mut t, denied);
    }
    if !s.explicitly_denied.is_empty() {
        let _ = writeln!(
            t,
            "\nrefused by a deny rule when observed (never suggested):"
        );
        list_observed(&mut t, &s.explicitly_denied);
    }
    t.push('\n');
    t.push_str(&shared_text(
        &s.shared_identities,
        s.shared_threshold,
        s.window_s,
    ));
    let c = &s.counters;
    let _ = writeln!(
        t,
        "\nevents: {} line(s), {} request event(s), {} used, {} refused before policy, {} skipped, {} dropped by the gateway",
        s.events.lines, s.events.requests, c.used, c.before_policy, s.events.malformed, s.events.dropped_by_gateway
    );
    if c.other_zone > 0 {
        let _ = writeln!(
            t,
            "note: {} request(s) of other zones' gateways ignored",
            c.other_zone
        );
    }
    if c.unnameable_method > 0 || c.unnameable_path > 0 {
        let _ = writeln!(
            t,
            "note: {} request(s) with a method and {} with a path no rule can name (not suggested)",
            c.unnameable_method, c.unnameable_path
        );
    }
    if c.no_route_now > 0 {
        let _ = writeln!(
            t,
            "note: {} request(s) the current config routes nowhere",
            c.no_route_now
        );
    }
    if c.overflow > 0 {
        let _ = writeln!(
            t,
            "cap: {} distinct (identity, route, method, path) keys kept (--max-keys {}); {} request(s) with new keys were not aggregated",
            c.keys, c.max_keys, c.overflow
        );
    }
    t
}

fn list_observed(t: &mut String, rows: &[Observed]) {
    use std::fmt::Write;
    if rows.is_empty() {
        let _ = writeln!(t, "  none");
    }
    let mut busiest: Vec<&Observed> = rows.iter().collect();
    busiest.sort_by_key(|o| std::cmp::Reverse(o.requests));
    busiest.truncate(MAX_SHOWN);
    // Shown in the list's own (identity, route, path) order.
    busiest.sort_by(|a, b| {
        (&a.identity, &a.route, &a.path, &a.method).cmp(&(
            &b.identity,
            &b.route,
            &b.path,
            &b.method,
        ))
    });
    for o in &busiest {
        let by = o
            .rule
            .as_deref()
            .map_or("by default".to_string(), |r| format!("by `{r}`"));
        let _ = writeln!(
            t,
            "  {} {} {} {}: {} request(s), denied {by}",
            o.identity, o.method, o.route, o.path, o.requests
        );
    }
    if rows.len() > busiest.len() {
        let _ = writeln!(
            t,
            "  ... and {} more (the {MAX_SHOWN} busiest are shown; --json lists all)",
            rows.len() - busiest.len()
        );
    }
}

#[cfg(test)]
mod tests;
