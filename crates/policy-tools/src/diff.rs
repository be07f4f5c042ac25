//! `zonegate policy diff OLD NEW`: what a policy change grants and revokes.
//!
//! Both versions decide every class of request ([`super::space`], built from the patterns of
//! both) with `Policy::evaluate`. A grant is a request denied before (by a rule, by default,
//! or because no route or trust let it reach policy) and allowed after; a revoke the reverse.
//! Deny wins, so removing or narrowing a deny grants whatever the allow rules beneath it
//! allowed all along: each row says which rule decides after the change and which decided
//! before.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::load::{self, Loaded};
use super::reach::{self, named_methods, row_text, Row};
use super::space::{Cell, Generators, Grid};
use super::{json_out, print_out};
use crate::policy::{Decision, Verdict};

/// Exit code with `--fail-on-grant` when the change grants anything.
pub const EXIT_GRANTS: i32 = 1;

/// `zonegate policy diff`
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The gateway config both policy versions are for; OLD and NEW are then policy files or
    /// directories. Without it, OLD and NEW are two gateway configs.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the change grants anything (a CI gate for policy pull requests).
    #[arg(long)]
    pub fail_on_grant: bool,
    /// The version before the change.
    pub old: PathBuf,
    /// The version after the change.
    pub new: PathBuf,
}

/// What decided a class of requests on one side.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "rule")]
pub enum Basis {
    Rule(String),
    DefaultDeny,
    /// No route selects the path on that side: 404 before policy.
    NoRoute,
    /// That side does not trust the identity's trust domain: the handshake fails.
    Untrusted,
}

/// A change of decision: the verdicts after and before, and what decided each.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub now: &'static str,
    pub after: Basis,
    pub was: &'static str,
    pub before: Basis,
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::Rule(id) => write!(f, "by `{id}`"),
            Basis::DefaultDeny => f.write_str("by default"),
            Basis::NoRoute => f.write_str("(no route)"),
            Basis::Untrusted => f.write_str("(trust domain not trusted)"),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "now {} {}; was {} {}",
            self.now, self.after, self.was, self.before
        )
    }
}

/// Rule ids added, removed and changed (any field, description included).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RuleChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    pub rules: RuleChanges,
    /// Denied before, allowed after.
    pub grants: Vec<Row<Change>>,
    /// Allowed before, denied after.
    pub revokes: Vec<Row<Change>>,
    /// Same enforced decision, but what audit rules would decide changed (staged rules).
    pub staged: Vec<Row<StagedChange>>,
    /// All method names rules mention, to read `methods.others`.
    pub named_methods: Vec<String>,
    pub incomplete: bool,
    /// Set when some matchers are not enumerated ([`super::facts::scope_note`]).
    pub scope: Option<String>,
}

/// An audit-only change: the decision audit rules would make, after and before.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StagedChange {
    pub would_after: &'static str,
    pub would_before: &'static str,
    pub enforced: &'static str,
}

impl fmt::Display for StagedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enforced {}; with audit rules enforced: {} (before: {})",
            self.enforced, self.would_after, self.would_before
        )
    }
}

pub fn run(args: &DiffArgs) -> i32 {
    let (old, new) = match &args.config {
        Some(config) => (
            open_side(config, Some(&args.old)),
            open_side(config, Some(&args.new)),
        ),
        None => (open_side(&args.old, None), open_side(&args.new, None)),
    };
    let (old, new) = match (old, new) {
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => {
            let mut errors = crate::config::ConfigErrors::default();
            if let Err(e) = old {
                errors.extend(e);
            }
            if let Err(e) = new {
                errors.extend(e);
            }
            return load::report_errors(&errors);
        }
    };
    for side in [&old, &new] {
        if let Some(code) = super::refuse_unknown_routes(side) {
            return code;
        }
    }
    let diff = diff(
        &old,
        &new,
        args.old.display().to_string(),
        args.new.display().to_string(),
    );
    let written = if args.json {
        json_out(&diff)
    } else {
        print_out(&render(&diff))
    };
    if written != 0 {
        written
    } else if args.fail_on_grant && !diff.grants.is_empty() {
        EXIT_GRANTS
    } else {
        0
    }
}

fn open_side(path: &Path, policy: Option<&PathBuf>) -> Result<Loaded, crate::config::ConfigErrors> {
    match policy {
        Some(p) => load::open(path, Some(std::slice::from_ref(p))),
        None => load::open(path, None),
    }
}

/// What the enforced verdict and the audit verdict are on one side, and why.
fn outcome(grid: &Grid, side: &Loaded, cell: Cell) -> (Verdict, Verdict, Basis) {
    if grid.zone(side, cell.identity).is_none() {
        return (Verdict::Deny, Verdict::Deny, Basis::Untrusted);
    }
    let Some(probe) = grid.probe(side, cell) else {
        return (Verdict::Deny, Verdict::Deny, Basis::NoRoute);
    };
    let d: Decision = side.policy.evaluate(&probe.facts());
    let would = d.audit.as_ref().map_or(d.verdict, |a| a.would);
    let basis = d
        .rule
        .as_deref()
        .map_or(Basis::DefaultDeny, |r| Basis::Rule(r.to_string()));
    (d.verdict, would, basis)
}

/// Compares two versions of a gateway's policy (or two gateway configs).
pub fn diff(old: &Loaded, new: &Loaded, old_name: String, new_name: String) -> Diff {
    let mut gens = Generators::default();
    gens.add(old);
    gens.add(new);
    let grid = Grid::new(gens.build(), &[old, new]);
    let mut grants = BTreeMap::new();
    let mut revokes = BTreeMap::new();
    let mut staged_new = BTreeMap::new();
    let mut staged_old = BTreeMap::new();
    for cell in grid.cells() {
        let (v_old, w_old, b_old) = outcome(&grid, old, cell);
        let (v_new, w_new, b_new) = outcome(&grid, new, cell);
        let change = Change {
            now: past(v_new),
            after: b_new,
            was: past(v_old),
            before: b_old,
        };
        match (v_old, v_new) {
            (Verdict::Deny, Verdict::Allow) => {
                grants.insert(cell, change);
            }
            (Verdict::Allow, Verdict::Deny) => {
                revokes.insert(cell, change);
            }
            _ if w_old != w_new => {
                let staged = StagedChange {
                    would_after: w_new.as_str(),
                    would_before: w_old.as_str(),
                    enforced: v_new.as_str(),
                };
                if grid.probe(new, cell).is_some() {
                    staged_new.insert(cell, staged);
                } else {
                    staged_old.insert(cell, staged);
                }
            }
            _ => {}
        }
    }
    let mut staged = reach::rows(&grid, new, &staged_new);
    staged.extend(reach::rows(&grid, old, &staged_old));
    Diff {
        old: old_name,
        new: new_name,
        rules: rule_changes(old, new),
        grants: reach::rows(&grid, new, &grants),
        revokes: reach::rows(&grid, old, &revokes),
        staged,
        named_methods: named_methods(&grid),
        incomplete: grid.truncated,
        scope: super::facts::scope_note(old.rules().iter().chain(new.rules())),
    }
}

fn past(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allowed",
        Verdict::Deny => "denied",
    }
}

/// Rules compare by every field (through their debug form, so fields added later count).
fn rule_changes(old: &Loaded, new: &Loaded) -> RuleChanges {
    let ids = |l: &Loaded| -> BTreeMap<String, String> {
        l.rules()
            .iter()
            .map(|r| (r.id.to_string(), format!("{r:?}")))
            .collect()
    };
    let (before, after) = (ids(old), ids(new));
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changes = RuleChanges::default();
    for id in keys {
        match (before.get(id), after.get(id)) {
            (None, Some(_)) => changes.added.push(id.clone()),
            (Some(_), None) => changes.removed.push(id.clone()),
            (Some(a), Some(b)) if a != b => changes.changed.push(id.clone()),
            _ => {}
        }
    }
    changes
}

/// The human form.
pub fn render(d: &Diff) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "policy diff {} -> {}", d.old, d.new);
    let mut rules = Vec::new();
    rules.extend(d.rules.added.iter().map(|r| format!("+{r}")));
    rules.extend(d.rules.removed.iter().map(|r| format!("-{r}")));
    rules.extend(d.rules.changed.iter().map(|r| format!("~{r}")));
    if rules.is_empty() {
        rules.push("(no rule changed)".to_string());
    }
    let _ = writeln!(s, "rules: {}", rules.join(" "));
    section(
        &mut s,
        "grants (denied before, allowed after)",
        &d.grants,
        &d.named_methods,
    );
    section(
        &mut s,
        "revokes (allowed before, denied after)",
        &d.revokes,
        &d.named_methods,
    );
    section(
        &mut s,
        "staged (enforced decision unchanged; audit rules would decide differently)",
        &d.staged,
        &d.named_methods,
    );
    if let Some(note) = &d.scope {
        let _ = writeln!(s, "\nnote: {note}");
    }
    if d.incomplete {
        let _ = writeln!(
            s,
            "\nnote: too many path patterns to enumerate: rows may be missing"
        );
    }
    let _ = writeln!(
        s,
        "\n{} grant row(s), {} revoke row(s), {} staged row(s)",
        d.grants.len(),
        d.revokes.len(),
        d.staged.len()
    );
    s
}

fn section<A: fmt::Display>(s: &mut String, title: &str, rows: &[Row<A>], named: &[String]) {
    use std::fmt::Write;
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n{title}:");
    for row in rows {
        let _ = writeln!(s, "  {}", row_text(row, named));
        let _ = writeln!(s, "      {}", row.attr);
    }
}

#[cfg(test)]
mod tests;
