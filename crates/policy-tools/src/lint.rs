//! `zonegate policy lint`: what a reviewer of a policy change should see.
//!
//! Structural checks read the rules (unknown zones and routes, identities of untrusted trust
//! domains or in no zone, broad allows, unused zone-map entries). Semantic checks decide every
//! class of request ([`super::space`]) with `Policy::evaluate`, with and without each rule:
//! a rule whose removal changes no decision is dead (shadowed, overridden or moot); an audit
//! rule is promoted to `enforce` to show what it would change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::explain::{effect_name, mode_name};
use super::facts::{opaque_rejections, scope_note, Probe};
use super::load::{self, Loaded};
use super::reach::{self, named_methods, row_text};
use super::space::{Cell, Generators, Grid};
use super::{json_out, print_out};
use crate::config::UNKNOWN_ZONE;
use crate::identity::IdPattern;
use crate::policy::{Decision, Effect, Matcher, Mode, Policy, Rule, Verdict};

/// Exit code when errors were found.
pub const EXIT_ERRORS: i32 = 1;
/// Exit code with `--deny-warnings` when warnings (and no errors) were found.
pub const EXIT_WARNINGS: i32 = 2;

/// How many example rows a finding shows.
const MAX_ROWS: usize = 4;

/// `zonegate policy lint`
#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// The gateway config.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Policy files or directories to lint instead of the config's own.
    #[arg(long)]
    pub policy: Vec<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when there are warnings but no errors (errors always exit 1).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Report allow rules whose identities are at least this broad.
    #[arg(long, value_enum, default_value_t = Scope::TrustDomain)]
    pub broad_identity: Scope,
}

/// How many identities a rule's `identities` and `zones` admit, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Exact SPIFFE IDs only.
    Exact,
    /// IDs below a path (`spiffe://td/ns/shop/*`).
    Prefix,
    /// Whole source zones.
    Zone,
    /// A whole trust domain (`spiffe://td/*`).
    TrustDomain,
    /// Any verified identity.
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One problem, located at the rule (or zone-map entry) it is about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub file: String,
    pub line: Option<usize>,
    /// The rule id, or `zone_map[N]` for zone-map findings.
    pub rule: Option<String>,
    pub message: String,
    /// Example requests or rows backing the finding.
    pub details: Vec<String>,
}

/// The findings and their counts.
#[derive(Debug, Serialize)]
pub struct Report {
    pub config: String,
    pub findings: Vec<Finding>,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
}

pub fn run(args: &LintArgs) -> i32 {
    let policy_override = (!args.policy.is_empty()).then_some(args.policy.as_slice());
    let loaded = match load::open(&args.config, policy_override) {
        Ok(l) => l,
        Err(errors) => return load::report_errors(&errors),
    };
    let report = lint(&loaded, args.broad_identity);
    let written = if args.json {
        json_out(&report)
    } else {
        print_out(&render(&report))
    };
    if written != 0 {
        written
    } else if report.errors > 0 {
        EXIT_ERRORS
    } else if report.warnings > 0 && args.deny_warnings {
        EXIT_WARNINGS
    } else {
        0
    }
}

/// Lints one gateway's policy.
pub fn lint(loaded: &Loaded, broad_identity: Scope) -> Report {
    let mut findings = Vec::new();
    structural(loaded, broad_identity, &mut findings);
    let mut gens = Generators::default();
    gens.add(loaded);
    let grid = Grid::new(gens.build(), &[loaded]);
    semantic(loaded, &grid, &mut findings);
    zone_map(loaded, &grid, &mut findings);
    if grid.truncated {
        findings.push(Finding {
            severity: Severity::Info,
            code: "incomplete",
            file: loaded.config.source.display().to_string(),
            line: None,
            rule: None,
            message: "the path patterns are too many to enumerate every class of path; semantic findings may be missing".into(),
            details: Vec::new(),
        });
    }
    if let Some(note) = scope_note(loaded.rules()) {
        findings.push(Finding {
            severity: Severity::Info,
            code: "scope",
            file: loaded.config.source.display().to_string(),
            line: None,
            rule: None,
            message: format!("{note}; rules they restrict are never called dead"),
            details: Vec::new(),
        });
    }
    findings.sort_by(|a, b| {
        (&a.file, a.line, a.severity, a.code, &a.rule)
            .cmp(&(&b.file, b.line, b.severity, b.code, &b.rule))
    });
    findings.dedup();
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    Report {
        config: loaded.config.source.display().to_string(),
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        infos: count(Severity::Info),
        findings,
    }
}

fn finding(
    loaded: &Loaded,
    rule: usize,
    severity: Severity,
    code: &'static str,
    message: String,
) -> Finding {
    let origin = loaded.origin(rule);
    Finding {
        severity,
        code,
        file: origin.file.display().to_string(),
        line: origin.line,
        rule: Some(loaded.rules()[rule].id.to_string()),
        message,
        details: Vec::new(),
    }
}

/// Checks that read the rules alone.
fn structural(loaded: &Loaded, broad_identity: Scope, out: &mut Vec<Finding>) {
    let config = &loaded.config;
    let zones: BTreeSet<&str> = config
        .zone_map
        .iter()
        .map(|m| m.zone.as_str())
        .chain([UNKNOWN_ZONE])
        .collect();
    for (index, route) in &loaded.unknown_routes {
        out.push(finding(
            loaded,
            *index,
            Severity::Error,
            "unknown-route",
            format!("names route `{route}`, which the gateway does not define; the gateway refuses this policy"),
        ));
    }
    for (index, rule) in loaded.rules().iter().enumerate() {
        for zone in &rule.zones {
            if !zones.contains(zone.as_str()) {
                let known: Vec<&str> = zones.iter().copied().collect();
                out.push(finding(
                    loaded,
                    index,
                    Severity::Error,
                    "unknown-zone",
                    format!(
                        "names zone `{zone}`, which the zone map does not define (zones: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        for pattern in &rule.identities {
            let td = match pattern {
                IdPattern::Exact(id) | IdPattern::Below(id) => id.trust_domain(),
                IdPattern::Any => continue,
            };
            if !loaded.trusts(td) {
                out.push(finding(
                    loaded,
                    index,
                    Severity::Warning,
                    "untrusted-trust-domain",
                    format!("identity `{pattern}` is in trust domain `{td}`, which the gateway does not trust: it never matches"),
                ));
            }
        }
        if rule.effect == Effect::Allow {
            if let Some(f) = broad_allow(loaded, index, rule, broad_identity) {
                out.push(f);
            }
        }
    }
}

/// The identity scope of a rule, from its `identities` and `zones`.
pub fn identity_scope(rule: &Rule) -> Scope {
    let by_ids = if rule.identities.is_empty() || rule.identities.contains(&IdPattern::Any) {
        Scope::Any
    } else if rule
        .identities
        .iter()
        .any(|p| matches!(p, IdPattern::Below(base) if base.path().is_empty()))
    {
        Scope::TrustDomain
    } else if rule
        .identities
        .iter()
        .any(|p| matches!(p, IdPattern::Below(_)))
    {
        Scope::Prefix
    } else {
        Scope::Exact
    };
    if rule.zones.is_empty() {
        by_ids
    } else {
        by_ids.min(Scope::Zone)
    }
}

fn broad_allow(loaded: &Loaded, index: usize, rule: &Rule, threshold: Scope) -> Option<Finding> {
    let scope = identity_scope(rule);
    let any_path = rule.paths.is_empty() || rule.paths.iter().any(|p| p.as_str() == "/**");
    if scope < threshold && !any_path {
        return None;
    }
    let who = match scope {
        Scope::Any => "any verified identity".to_string(),
        Scope::TrustDomain => {
            let tds: Vec<String> = rule.identities.iter().map(|p| p.to_string()).collect();
            format!("whole trust domains ({})", tds.join(", "))
        }
        Scope::Zone => format!("every identity of zone {}", rule.zones.join(", ")),
        Scope::Prefix | Scope::Exact => {
            let ids: Vec<String> = rule.identities.iter().map(|p| p.to_string()).collect();
            ids.join(", ")
        }
    };
    let methods = if rule.methods.is_empty() {
        "any method".to_string()
    } else {
        rule.methods.join(",")
    };
    let paths = if any_path {
        "any path".to_string()
    } else {
        rule.paths
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let routes = if rule.routes.is_empty() {
        "every route".to_string()
    } else {
        format!(
            "route {}",
            rule.routes
                .iter()
                .map(|r| &**r)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let severity = if scope == Scope::Any && any_path && rule.mode == Mode::Enforce {
        Severity::Error
    } else {
        Severity::Warning
    };
    let staged = if rule.mode == Mode::Audit {
        " (staged in audit)"
    } else {
        ""
    };
    Some(finding(
        loaded,
        index,
        severity,
        "broad-allow",
        format!("allows {who}: {methods}, {paths} on {routes}{staged}"),
    ))
}

/// The requests of the grid and their decisions under the loaded policy.
struct Decided<'a> {
    loaded: &'a Loaded,
    grid: &'a Grid,
    cells: Vec<(Cell, Probe)>,
    base: Vec<Decision>,
}

impl Decided<'_> {
    /// The decisions of `policy` on the cells at `indexes`.
    fn under(&self, policy: &Policy, indexes: &[usize]) -> Vec<Decision> {
        indexes
            .iter()
            .map(|&c| policy.evaluate(&self.cells[c].1.facts()))
            .collect()
    }

    /// Rows describing the cells at `indexes`, each with its attribute (shown after the row
    /// when not empty).
    fn rows<A: Ord + Clone + std::fmt::Display>(
        &self,
        selected: impl IntoIterator<Item = (usize, A)>,
    ) -> Vec<String> {
        let map: BTreeMap<Cell, A> = selected
            .into_iter()
            .map(|(i, a)| (self.cells[i].0, a))
            .collect();
        let named = named_methods(self.grid);
        reach::rows(self.grid, self.loaded, &map)
            .iter()
            .map(|row| {
                let attr = row.attr.to_string();
                let text = row_text(row, &named);
                if attr.is_empty() {
                    text
                } else {
                    format!("{text}: {attr}")
                }
            })
            .collect()
    }
}

fn without(rules: &[Rule], skip: usize) -> Policy {
    let kept = rules
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != skip)
        .map(|(_, r)| r.clone())
        .collect();
    Policy::compile(kept, 0)
}

fn promoted(rules: &[Rule], index: usize) -> Policy {
    let mut rules = rules.to_vec();
    rules[index].mode = Mode::Enforce;
    Policy::compile(rules, 0)
}

fn truncate_rows(mut rows: Vec<String>) -> Vec<String> {
    if rows.len() > MAX_ROWS {
        let more = rows.len() - MAX_ROWS;
        rows.truncate(MAX_ROWS);
        rows.push(format!("... and {more} more"));
    }
    rows
}

/// Checks that decide every class of request.
fn semantic(loaded: &Loaded, grid: &Grid, out: &mut Vec<Finding>) {
    let rules = loaded.rules();
    let cells: Vec<(Cell, Probe)> = grid
        .cells()
        .into_iter()
        .filter_map(|c| grid.probe(loaded, c).map(|p| (c, p)))
        .collect();
    let base: Vec<Decision> = cells
        .iter()
        .map(|(_, p)| loaded.policy.evaluate(&p.facts()))
        .collect();
    let decided = Decided {
        loaded,
        grid,
        cells,
        base,
    };
    // matches[r][c]: rule r matches cell c.
    let matches: Vec<Vec<bool>> = rules
        .iter()
        .map(|rule| {
            decided
                .cells
                .iter()
                .map(|(_, p)| rule.matches(&p.facts()))
                .collect()
        })
        .collect();
    let opaque: Vec<bool> = rules
        .iter()
        .map(|rule| {
            decided
                .cells
                .iter()
                .any(|(_, p)| !opaque_rejections(rule, p).is_empty())
        })
        .collect();
    let mut dead = vec![false; rules.len()];
    for (index, rule) in rules.iter().enumerate() {
        if opaque[index] {
            continue;
        }
        let mine: Vec<usize> = (0..decided.cells.len())
            .filter(|&c| matches[index][c])
            .collect();
        if mine.is_empty() {
            dead[index] = true;
            out.push(never_matches(&decided, index, rule));
            continue;
        }
        match rule.mode {
            // Removing or promoting a rule can only change the requests it matches.
            Mode::Enforce => {
                let after = decided.under(&without(rules, index), &mine);
                let changed = mine.iter().zip(&after).any(|(&c, a)| {
                    a.verdict != decided.base[c].verdict || would(a) != would(&decided.base[c])
                });
                if !changed {
                    dead[index] = true;
                    out.push(shadowed(&decided, &matches, index, rule, &mine));
                }
            }
            Mode::Audit => {
                let after = decided.under(&promoted(rules, index), &mine);
                let changes: Vec<(usize, String)> = mine
                    .iter()
                    .zip(&after)
                    .filter(|(&c, a)| a.verdict != decided.base[c].verdict)
                    .map(|(&c, a)| {
                        let now = match &decided.base[c].rule {
                            Some(r) => format!("{} by `{r}`", past(decided.base[c].verdict)),
                            None => "denied by default".to_string(),
                        };
                        (c, format!("{} instead of {now}", past(a.verdict)))
                    })
                    .collect();
                if changes.is_empty() {
                    dead[index] = true;
                    out.push(audit_shadowed(&decided, &matches, index, rule, &mine));
                } else {
                    let verb = match rule.effect {
                        Effect::Allow => "allow",
                        Effect::Deny => "deny",
                    };
                    let mut f = finding(
                        loaded,
                        index,
                        Severity::Info,
                        "audit-would-change",
                        format!(
                            "if enforced, would {verb} requests the policy decides otherwise today"
                        ),
                    );
                    f.details = truncate_rows(decided.rows(changes));
                    out.push(f);
                }
            }
        }
    }
    overlaps(&decided, &matches, &dead, &opaque, out);
}

fn past(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allowed",
        Verdict::Deny => "denied",
    }
}

/// An audit rule that would change nothing if enforced: names the enforced rules that
/// already decide every request it matches its way.
fn audit_shadowed(
    decided: &Decided<'_>,
    matches: &[Vec<bool>],
    index: usize,
    rule: &Rule,
    mine: &[usize],
) -> Finding {
    let rules = decided.loaded.rules();
    let covering: Vec<String> = (0..rules.len())
        .filter(|&r| r != index && rules[r].mode == Mode::Enforce && rules[r].effect == rule.effect)
        .filter(|&r| mine.iter().all(|&c| matches[r][c]))
        .map(|r| format!("`{}` ({})", rules[r].id, decided.loaded.origin(r).display()))
        .collect();
    let message = if covering.is_empty() {
        "audit rule would change no decision if enforced: every request it matches is already decided that way".to_string()
    } else {
        format!(
            "audit rule would change no decision if enforced: {} already {} everything it matches",
            covering.join(", "),
            match rule.effect {
                Effect::Allow => "allows",
                Effect::Deny => "denies",
            }
        )
    };
    let mut f = finding(
        decided.loaded,
        index,
        Severity::Warning,
        "shadowed",
        message,
    );
    f.details = truncate_rows(decided.rows(mine.iter().map(|&c| (c, ""))));
    f
}

fn would(d: &Decision) -> Verdict {
    d.audit.as_ref().map_or(d.verdict, |a| a.would)
}

fn never_matches(decided: &Decided<'_>, index: usize, rule: &Rule) -> Finding {
    let cells = &decided.cells;
    let silent: Vec<&str> = Matcher::ALL
        .into_iter()
        .filter(|&m| !cells.iter().any(|(_, p)| rule.accepts(m, &p.facts())))
        .map(Matcher::key)
        .collect();
    let why = if silent.is_empty() {
        let set: Vec<&str> = Matcher::ALL
            .into_iter()
            .filter(|&m| cells.iter().any(|(_, p)| !rule.accepts(m, &p.facts())))
            .map(Matcher::key)
            .collect();
        format!("its matchers ({}) each accept some request, but never the same one (e.g. paths outside its routes)", set.join(", "))
    } else {
        format!(
            "no request the gateway can route passes its {}",
            silent.join(", ")
        )
    };
    finding(
        decided.loaded,
        index,
        Severity::Error,
        "never-matches",
        format!("{} rule never matches: {why}", effect_name(rule)),
    )
}

/// Names what makes rule `index` dead: for an allow, the deny rules that always override it or
/// the allow rules that already allow it; for a deny, the deny rules that already deny it, or
/// the absence of any allow beneath it.
fn shadowed(
    decided: &Decided<'_>,
    matches: &[Vec<bool>],
    index: usize,
    rule: &Rule,
    mine: &[usize],
) -> Finding {
    let rules = decided.loaded.rules();
    let enforced = |r: usize| r != index && rules[r].mode == Mode::Enforce;
    let covering = |effect: Effect| -> Vec<usize> {
        (0..rules.len())
            .filter(|&r| enforced(r) && rules[r].effect == effect)
            .filter(|&r| mine.iter().all(|&c| matches[r][c]))
            .collect()
    };
    let touching = |effect: Effect| -> BTreeSet<usize> {
        (0..rules.len())
            .filter(|&r| enforced(r) && rules[r].effect == effect)
            .filter(|&r| mine.iter().any(|&c| matches[r][c]))
            .collect()
    };
    let names = |set: &[usize]| -> String {
        set.iter()
            .map(|&r| {
                let rel = if r < index { "earlier" } else { "later" };
                format!(
                    "`{}` ({rel}, {})",
                    rules[r].id,
                    decided.loaded.origin(r).display()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (severity, code, message) = match rule.effect {
        Effect::Allow => {
            let denies = covering(Effect::Deny);
            let allows = covering(Effect::Allow);
            if !denies.is_empty() {
                (
                    Severity::Warning,
                    "shadowed",
                    format!(
                        "allow rule is always overridden by deny rule {}",
                        names(&denies)
                    ),
                )
            } else if !allows.is_empty() {
                (
                    Severity::Warning,
                    "shadowed",
                    format!(
                        "allow rule is redundant: everything it allows is allowed by {}",
                        names(&allows)
                    ),
                )
            } else {
                let others: Vec<usize> = touching(Effect::Deny)
                    .union(&touching(Effect::Allow))
                    .copied()
                    .collect();
                (Severity::Warning, "shadowed", format!("allow rule changes no decision: every request it matches is denied or allowed by other rules ({})", names(&others)))
            }
        }
        Effect::Deny => {
            let denies = covering(Effect::Deny);
            if !denies.is_empty() {
                (
                    Severity::Warning,
                    "shadowed",
                    format!(
                        "deny rule is redundant: everything it denies is denied by {}",
                        names(&denies)
                    ),
                )
            } else if touching(Effect::Allow).is_empty() {
                (Severity::Info, "moot-deny", "deny rule changes no decision today: no allow rule matches what it denies (a guard against future allows)".to_string())
            } else {
                let others: Vec<usize> = touching(Effect::Deny).into_iter().collect();
                (Severity::Warning, "shadowed", format!("deny rule changes no decision: what it denies is denied by other rules ({}) or by default", names(&others)))
            }
        }
    };
    let mut f = finding(decided.loaded, index, severity, code, message);
    f.details = truncate_rows(decided.rows(mine.iter().map(|&c| (c, ""))));
    f
}

/// Enforced allow and deny rules that both match some request (deny wins there).
fn overlaps(
    decided: &Decided<'_>,
    matches: &[Vec<bool>],
    dead: &[bool],
    opaque: &[bool],
    out: &mut Vec<Finding>,
) {
    let rules = decided.loaded.rules();
    let live = |r: usize, effect: Effect| {
        rules[r].effect == effect && rules[r].mode == Mode::Enforce && !dead[r] && !opaque[r]
    };
    for allow in (0..rules.len()).filter(|&r| live(r, Effect::Allow)) {
        for deny in (0..rules.len()).filter(|&r| live(r, Effect::Deny)) {
            let shared: Vec<usize> = (0..decided.cells.len())
                .filter(|&c| matches[allow][c] && matches[deny][c])
                .collect();
            if shared.is_empty() {
                continue;
            }
            let mut f = finding(
                decided.loaded,
                allow,
                Severity::Info,
                "allow-deny-overlap",
                format!(
                    "allow rule overlaps deny rule `{}` ({}, {}); the deny wins on:",
                    rules[deny].id,
                    mode_name(&rules[deny]),
                    decided.loaded.origin(deny).display()
                ),
            );
            f.details = truncate_rows(decided.rows(shared.into_iter().map(|c| (c, ""))));
            out.push(f);
        }
    }
}

/// Zone-map entries that never apply, and rule identities that land in no zone.
fn zone_map(loaded: &Loaded, grid: &Grid, out: &mut Vec<Finding>) {
    let config = &loaded.config;
    let witnesses: Vec<_> = grid
        .identities
        .iter()
        .flat_map(|g| g.members.iter())
        .filter(|w| loaded.trusts(w.id.trust_domain()))
        .collect();
    let first_entry = |id| {
        config
            .zone_map
            .iter()
            .position(|m| m.identities.iter().any(|p| p.matches(id)))
    };
    let used: BTreeSet<usize> = witnesses
        .iter()
        .filter_map(|w| first_entry(&w.id))
        .collect();
    for (k, mapping) in config.zone_map.iter().enumerate() {
        if used.contains(&k) {
            continue;
        }
        let patterns: Vec<String> = mapping.identities.iter().map(|p| p.to_string()).collect();
        out.push(Finding {
            severity: Severity::Warning,
            code: "zone-map-unused",
            file: config.source.display().to_string(),
            line: None,
            rule: Some(format!("zone_map[{k}]")),
            message: format!(
                "zone `{}` entry ({}) never applies: earlier entries map every identity it names, or its trust domains are not trusted",
                mapping.zone,
                patterns.join(", ")
            ),
            details: Vec::new(),
        });
    }
    for (index, rule) in loaded.rules().iter().enumerate() {
        if rule.zones.iter().any(|z| z == UNKNOWN_ZONE) {
            continue;
        }
        for pattern in &rule.identities {
            if matches!(pattern, IdPattern::Any) {
                continue;
            }
            let mut named = witnesses
                .iter()
                .filter(|w| pattern.matches(&w.id))
                .peekable();
            if named.peek().is_none() {
                continue;
            }
            if named.all(|w| config.zone_of(&w.id) == UNKNOWN_ZONE) {
                out.push(finding(
                    loaded,
                    index,
                    Severity::Warning,
                    "unmapped-identity",
                    format!("identity `{pattern}` is mapped to no zone (its source zone is `{UNKNOWN_ZONE}`)"),
                ));
            }
        }
    }
}

/// The human form: one line per finding (`file:line: severity[code]: rule `id`: message`),
/// its details indented, then the counts.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for f in &report.findings {
        let at = match f.line {
            Some(line) => format!("{}:{line}", f.file),
            None => f.file.clone(),
        };
        let rule = f
            .rule
            .as_ref()
            .map(|r| format!("{r}: "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{at}: {}[{}]: {rule}{}",
            f.severity.as_str(),
            f.code,
            f.message
        );
        for d in &f.details {
            let _ = writeln!(s, "    {d}");
        }
    }
    let _ = writeln!(
        s,
        "{}: {} error(s), {} warning(s), {} info",
        report.config, report.errors, report.warnings, report.infos
    );
    s
}

#[cfg(test)]
mod tests;
