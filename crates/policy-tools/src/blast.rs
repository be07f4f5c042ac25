//! `zonegate policy blast-radius`: how far identities reach across zone gateways.
//!
//! - `--identity ID`: per zone gateway, every route, method and path class the identity is
//!   allowed (with the deciding rule and the audit rule that would deny it), and what staged
//!   audit rules would additionally allow;
//! - `--route ZONE/ROUTE`: every identity class allowed on that route, with methods and paths;
//! - `--rank`: identities (named in rules and zone maps, one per `…/*` pattern for the IDs it
//!   names, optionally those observed in event files) ordered by how much they reach.
//!
//! Every answer is decided by each gateway's own `Policy::evaluate` over the classes of
//! [`super::space`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::events::EventReader;
use super::load::{self, Loaded};
use super::reach::{self, named_methods, row_text, Row};
use super::space::{Cell, Generators, Grid, Space};
use super::{json_out, print_out, usage_error};
use crate::identity::SpiffeId;
use crate::policy::Verdict;

/// Most distinct identities read from event files for `--rank`.
const MAX_OBSERVED_IDENTITIES: usize = 10_000;

/// `zonegate policy blast-radius`
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("question").required(true).args(["identity", "route", "rank"])))]
pub struct BlastArgs {
    /// Gateway configs, or directories of them: the zones to consider.
    #[arg(long, short, required = true)]
    pub config: Vec<PathBuf>,
    /// Everything this SPIFFE ID can reach.
    #[arg(long)]
    pub identity: Option<String>,
    /// Every identity that can reach this route, as ZONE/ROUTE.
    #[arg(long)]
    pub route: Option<String>,
    /// Rank identities by reach.
    #[arg(long)]
    pub rank: bool,
    /// With --rank: also rank the identities observed in these event files.
    #[arg(long)]
    pub events: Vec<PathBuf>,
    /// With --rank: how many identities to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Machine-readable output.
    #[arg(long, conflicts_with = "dot")]
    pub json: bool,
    /// Graphviz DOT output.
    #[arg(long)]
    pub dot: bool,
}

/// Why a row is allowed: the deciding rule, and an audit rule that would deny it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Via {
    pub rule: String,
    pub audit_rule: Option<String>,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "by `{}`", self.rule)?;
        if let Some(audit) = &self.audit_rule {
            write!(f, "; audit rule `{audit}` would deny")?;
        }
        Ok(())
    }
}

/// What a staged (audit) allow rule would add.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Staged {
    pub audit_rule: String,
}

impl fmt::Display for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "would be allowed by audit rule `{}`", self.audit_rule)
    }
}

/// One zone gateway's answer for an identity.
#[derive(Debug, Serialize)]
pub struct ZoneReach {
    pub zone: String,
    pub config: String,
    /// The identity's source zone there; `None` when the gateway does not trust it.
    pub source_zone: Option<String>,
    /// Why nothing is reachable, when nothing is.
    pub refused: Option<String>,
    pub allowed: Vec<Row<Via>>,
    pub staged: Vec<Row<Staged>>,
    pub named_methods: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct IdentityReach {
    /// Set when rules use matchers that are not enumerated ([`super::facts::scope_note`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub identity: String,
    pub zones: Vec<ZoneReach>,
    /// Some path classes may be missing (too many patterns).
    pub incomplete: bool,
}

#[derive(Debug, Serialize)]
pub struct RouteReach {
    /// Set when rules use matchers that are not enumerated ([`super::facts::scope_note`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub zone: String,
    pub route: String,
    pub allowed: Vec<Row<Via>>,
    pub named_methods: Vec<String>,
    pub incomplete: bool,
}

/// One identity's reach in the ranking.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Ranked {
    /// An exact ID, or a `…/*` pattern standing for the IDs below it that nothing names.
    pub identity: String,
    /// `named` (in a rule or the zone map), `pattern`, or `observed` (events only).
    pub kind: &'static str,
    /// The zones the gateways that trust it map it to.
    pub source_zones: Vec<String>,
    /// ZONE/ROUTE reached.
    pub routes: Vec<String>,
    pub zones: usize,
    /// Classes of (route, method, path) allowed: the grain the policies distinguish.
    pub grants: usize,
}

#[derive(Debug, Serialize)]
pub struct Ranking {
    /// Set when rules use matchers that are not enumerated ([`super::facts::scope_note`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub identities: Vec<Ranked>,
    /// Identities considered (before `--top`).
    pub considered: usize,
    pub incomplete: bool,
}

pub fn run(args: &BlastArgs) -> i32 {
    let sides = match load::open_many(&args.config) {
        Ok(s) => s,
        Err(errors) => return load::report_errors(&errors),
    };
    if let Some(id) = &args.identity {
        let id = match SpiffeId::parse(id) {
            Ok(id) => id,
            Err(e) => return usage_error(&format!("--identity: `{id}`: {e}")),
        };
        let answer = identity_reach(&sides, &id);
        return if args.json {
            json_out(&answer)
        } else if args.dot {
            print_out(&identity_dot(&answer))
        } else {
            print_out(&identity_text(&answer))
        };
    }
    if let Some(spec) = &args.route {
        let answer = match route_reach(&sides, spec) {
            Ok(a) => a,
            Err(message) => return usage_error(&message),
        };
        return if args.json {
            json_out(&answer)
        } else if args.dot {
            print_out(&route_dot(&answer))
        } else {
            print_out(&route_text(&answer))
        };
    }
    let observed = match observed_identities(&args.events) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let mut ranking = rank(&sides, &observed);
    ranking.identities.truncate(args.top);
    if args.json {
        json_out(&ranking)
    } else if args.dot {
        print_out(&rank_dot(&ranking))
    } else {
        print_out(&rank_text(&ranking))
    }
}

/// The decided cells of one identity class on one side: allowed (with why) and staged.
fn decide_identity(
    grid: &Grid,
    side: &Loaded,
    identity: usize,
) -> (BTreeMap<Cell, Via>, BTreeMap<Cell, Staged>) {
    let mut allowed = BTreeMap::new();
    let mut staged = BTreeMap::new();
    for method in 0..grid.methods.len() {
        for target in 0..grid.targets.len() {
            let cell = Cell {
                identity,
                method,
                target,
            };
            let Some(probe) = grid.probe(side, cell) else {
                continue;
            };
            let d = side.policy.evaluate(&probe.facts());
            match (d.verdict, d.rule, d.audit) {
                (Verdict::Allow, Some(rule), audit) => {
                    allowed.insert(
                        cell,
                        Via {
                            rule: rule.to_string(),
                            audit_rule: audit.map(|a| a.rule.to_string()),
                        },
                    );
                }
                (Verdict::Deny, _, Some(audit)) if audit.would == Verdict::Allow => {
                    staged.insert(
                        cell,
                        Staged {
                            audit_rule: audit.rule.to_string(),
                        },
                    );
                }
                _ => {}
            }
        }
    }
    (allowed, staged)
}

/// Everything `id` can reach on every side.
pub fn identity_reach(sides: &[Loaded], id: &SpiffeId) -> IdentityReach {
    let mut zones = Vec::new();
    let mut incomplete = false;
    for side in sides {
        let mut gens = Generators::default();
        gens.add(side);
        gens.add_identity(id);
        let grid = Grid::new(gens.build(), &[side]);
        incomplete |= grid.truncated;
        let mut reach = ZoneReach {
            zone: side.zone().to_string(),
            config: side.config.source.display().to_string(),
            source_zone: None,
            refused: None,
            allowed: Vec::new(),
            staged: Vec::new(),
            named_methods: named_methods(&grid),
        };
        if !side.trusts(id.trust_domain()) {
            reach.refused = Some(format!(
                "trust domain `{}` is not trusted: the handshake fails",
                id.trust_domain()
            ));
        } else if let Some(why) = side.config.revocation.check(id.as_str(), "") {
            reach.source_zone = Some(side.config.zone_of(id).to_string());
            reach.refused = Some(format!("revoked: {why}"));
        } else if let Some(class) = grid.identity_of(id) {
            reach.source_zone = Some(side.config.zone_of(id).to_string());
            let (allowed, staged) = decide_identity(&grid, side, class);
            reach.allowed = reach::rows(&grid, side, &allowed);
            reach.staged = reach::rows(&grid, side, &staged);
            // The rows name the identity's class; this answer is about one ID.
            for row in &mut reach.allowed {
                row.identities = vec![id.to_string()];
            }
            for row in &mut reach.staged {
                row.identities = vec![id.to_string()];
            }
        }
        zones.push(reach);
    }
    IdentityReach {
        scope: super::facts::scope_note(sides.iter().flat_map(|l| l.rules())),
        identity: id.to_string(),
        zones,
        incomplete,
    }
}

/// Every identity class allowed on `ZONE/ROUTE`.
pub fn route_reach(sides: &[Loaded], spec: &str) -> Result<RouteReach, String> {
    let Some((zone, route)) = spec.split_once('/') else {
        return Err(format!("--route: `{spec}` is not ZONE/ROUTE"));
    };
    let Some(side) = sides.iter().find(|s| s.zone() == zone) else {
        let zones: Vec<&str> = sides.iter().map(|s| s.zone()).collect();
        return Err(format!(
            "--route: no config for zone `{zone}` (zones: {})",
            zones.join(", ")
        ));
    };
    if !side.config.routes.iter().any(|r| &*r.name == route) {
        let routes: Vec<&str> = side.config.routes.iter().map(|r| &*r.name).collect();
        return Err(format!(
            "--route: zone `{zone}` has no route `{route}` (routes: {})",
            routes.join(", ")
        ));
    }
    let mut gens = Generators::default();
    gens.add(side);
    let grid = Grid::new(gens.build(), &[side]);
    let mut allowed = BTreeMap::new();
    for cell in grid.cells() {
        if grid.route(side, cell.target).as_deref() != Some(route) {
            continue;
        }
        let Some(probe) = grid.probe(side, cell) else {
            continue;
        };
        let d = side.policy.evaluate(&probe.facts());
        if let (Verdict::Allow, Some(rule)) = (d.verdict, d.rule) {
            allowed.insert(
                cell,
                Via {
                    rule: rule.to_string(),
                    audit_rule: d.audit.map(|a| a.rule.to_string()),
                },
            );
        }
    }
    Ok(RouteReach {
        scope: super::facts::scope_note(sides.iter().flat_map(|l| l.rules())),
        zone: zone.to_string(),
        route: route.to_string(),
        allowed: reach::rows(&grid, side, &allowed),
        named_methods: named_methods(&grid),
        incomplete: grid.truncated,
    })
}

/// Distinct `source_spiffe_id`s of request events, streamed.
fn observed_identities(files: &[PathBuf]) -> Result<BTreeSet<String>, i32> {
    let mut seen = BTreeSet::new();
    for file in files {
        let mut reader = match EventReader::open(file) {
            Ok(r) => r,
            Err(e) => return Err(usage_error(&format!("{}: {e}", file.display()))),
        };
        reader.for_each_request(|event| {
            if let Some(id) = event.source_spiffe_id {
                if seen.len() < MAX_OBSERVED_IDENTITIES || seen.contains(id.as_ref()) {
                    seen.insert(id.into_owned());
                }
            }
        });
        reader.report_skipped();
    }
    Ok(seen)
}

/// Ranks the identities of every side's rules and zone maps (and `observed`) by reach.
pub fn rank(sides: &[Loaded], observed: &BTreeSet<String>) -> Ranking {
    let mut gens = Generators::default();
    for side in sides {
        gens.add(side);
    }
    let mut observed_ids = BTreeSet::new();
    for id in observed {
        if let Ok(id) = SpiffeId::parse(id) {
            gens.add_identity(&id);
            observed_ids.insert(id);
        }
    }
    let space: Space = gens.build();
    let named: BTreeSet<String> = sides
        .iter()
        .flat_map(|s| {
            s.rules()
                .iter()
                .flat_map(|r| r.identities.iter())
                .chain(s.config.zone_map.iter().flat_map(|m| m.identities.iter()))
                .map(|p| p.to_string())
        })
        .collect();
    // (routes reached, grants, kind, source zones) per identity witness.
    type Reach = (BTreeSet<String>, usize, &'static str, BTreeSet<String>);
    let mut reach: BTreeMap<String, Reach> = BTreeMap::new();
    for w in &space.identities {
        let kind = if w.label != w.id.as_str() {
            "pattern"
        } else if named.contains(&w.label) {
            "named"
        } else if observed_ids.contains(&w.id) {
            "observed"
        } else {
            // The root of a `…/*` pattern, witnessed for completeness but named by nobody.
            continue;
        };
        reach.insert(w.label.clone(), (BTreeSet::new(), 0, kind, BTreeSet::new()));
    }
    for side in sides {
        let grid = Grid::new(space.clone(), &[side]);
        for (class, group) in grid.identities.iter().enumerate() {
            let (allowed, _) = decide_identity(&grid, side, class);
            let routes: BTreeSet<String> = allowed
                .keys()
                .filter_map(|c| grid.route(side, c.target))
                .map(|r| format!("{}/{r}", side.zone()))
                .collect();
            for w in &group.members {
                if let Some(entry) = reach.get_mut(&w.label) {
                    entry.0.extend(routes.iter().cloned());
                    entry.1 += allowed.len();
                    if side.trusts(w.id.trust_domain()) {
                        entry.3.insert(side.config.zone_of(&w.id).to_string());
                    }
                }
            }
        }
    }
    let mut identities: Vec<Ranked> = reach
        .into_iter()
        .map(|(identity, (routes, grants, kind, source_zones))| {
            let zones: BTreeSet<&str> = routes.iter().filter_map(|r| r.split('/').next()).collect();
            Ranked {
                identity,
                kind,
                source_zones: source_zones.into_iter().collect(),
                zones: zones.len(),
                routes: routes.into_iter().collect(),
                grants,
            }
        })
        .collect();
    identities.sort_by(|a, b| {
        (b.routes.len(), b.grants, &a.identity).cmp(&(a.routes.len(), a.grants, &b.identity))
    });
    Ranking {
        scope: super::facts::scope_note(sides.iter().flat_map(|l| l.rules())),
        considered: identities.len(),
        identities,
        incomplete: space.truncated,
    }
}

/// The scope note and the incompleteness note, when they apply.
fn notes(s: &mut String, scope: &Option<String>, incomplete: bool) {
    use std::fmt::Write;
    if let Some(note) = scope {
        let _ = writeln!(s, "note: {note}");
    }
    if incomplete {
        let _ = writeln!(
            s,
            "note: too many path patterns to enumerate: rows may be missing"
        );
    }
}

fn identity_text(r: &IdentityReach) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "blast radius of {}", r.identity);
    for z in &r.zones {
        let source = z
            .source_zone
            .as_deref()
            .map(|sz| format!(" (source zone {sz})"))
            .unwrap_or_default();
        let _ = writeln!(s, "\nzone {} ({}){source}:", z.zone, z.config);
        if let Some(why) = &z.refused {
            let _ = writeln!(s, "  nothing: {why}");
            continue;
        }
        if z.allowed.is_empty() {
            let _ = writeln!(s, "  nothing allowed");
        }
        for row in &z.allowed {
            let _ = writeln!(s, "  {}", reach_line(row, &z.named_methods));
        }
        for row in &z.staged {
            let _ = writeln!(s, "  staged: {}", reach_line(row, &z.named_methods));
        }
    }
    notes(&mut s, &r.scope, r.incomplete);
    s
}

/// `METHODS route PATHS [except ...]: attr`, without the identity.
fn reach_line<A: fmt::Display>(row: &Row<A>, named: &[String]) -> String {
    let mut line = format!(
        "{} {} {}",
        row.methods.text(named),
        row.route,
        row.paths.join(", ")
    );
    if !row.except.is_empty() {
        line.push_str(&format!(" except {}", row.except.join(", ")));
    }
    format!("{line}: {}", row.attr)
}

fn route_text(r: &RouteReach) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "who reaches {}/{}:", r.zone, r.route);
    if r.allowed.is_empty() {
        let _ = writeln!(s, "  nobody");
    }
    for row in &r.allowed {
        let _ = writeln!(s, "  {}: {}", row_text(row, &r.named_methods), row.attr);
    }
    notes(&mut s, &r.scope, r.incomplete);
    s
}

fn rank_text(r: &Ranking) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let width = r
        .identities
        .iter()
        .map(|i| i.identity.len())
        .max()
        .unwrap_or(8);
    let _ = writeln!(
        s,
        "{:<width$}  {:<8}  {:>5}  {:>6}  {:>6}  reached",
        "identity", "kind", "zones", "routes", "grants"
    );
    for i in &r.identities {
        let _ = writeln!(
            s,
            "{:<width$}  {:<8}  {:>5}  {:>6}  {:>6}  {}",
            i.identity,
            i.kind,
            i.zones,
            i.routes.len(),
            i.grants,
            i.routes.join(" ")
        );
    }
    let _ = writeln!(
        s,
        "{} of {} identities; grants: allowed (route, method, path) classes",
        r.identities.len(),
        r.considered
    );
    notes(&mut s, &r.scope, r.incomplete);
    s
}

/// A DOT string literal; a newline becomes DOT's `\n` line break.
fn q(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

fn dot_edges<A>(
    out: &mut String,
    from: &str,
    zone: &str,
    rows: &[Row<A>],
    named: &[String],
    style: &str,
) {
    use std::fmt::Write;
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        edges
            .entry(row.route.clone())
            .or_default()
            .push(edge_label(row, named));
    }
    for (route, labels) in edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{style}];",
            q(from),
            q(&format!("{zone}/{route}")),
            q(&labels.join("\n"))
        );
    }
}

fn identity_dot(r: &IdentityReach) -> String {
    use std::fmt::Write;
    let mut s = String::from("digraph blast_radius {\n  rankdir=LR;\n  node [shape=box];\n");
    let _ = writeln!(s, "  {} [shape=ellipse];", q(&r.identity));
    for (i, z) in r.zones.iter().enumerate() {
        let routes: BTreeSet<&str> = z
            .allowed
            .iter()
            .map(|row| row.route.as_str())
            .chain(z.staged.iter().map(|row| row.route.as_str()))
            .collect();
        let _ = writeln!(
            s,
            "  subgraph cluster_{i} {{\n    label={};",
            q(&format!("zone {}", z.zone))
        );
        for route in routes {
            let _ = writeln!(s, "    {};", q(&format!("{}/{route}", z.zone)));
        }
        s.push_str("  }\n");
        dot_edges(
            &mut s,
            &r.identity,
            &z.zone,
            &z.allowed,
            &z.named_methods,
            "",
        );
        dot_edges(
            &mut s,
            &r.identity,
            &z.zone,
            &z.staged,
            &z.named_methods,
            ", style=dashed",
        );
    }
    s.push_str("}\n");
    s
}

/// `METHODS PATHS [except PATHS]`.
fn edge_label<A>(row: &Row<A>, named: &[String]) -> String {
    let mut label = format!("{} {}", row.methods.text(named), row.paths.join(", "));
    if !row.except.is_empty() {
        label.push_str(&format!(" except {}", row.except.join(", ")));
    }
    label
}

fn route_dot(r: &RouteReach) -> String {
    use std::fmt::Write;
    let mut s = String::from("digraph route_reach {\n  rankdir=LR;\n  node [shape=ellipse];\n");
    let target = format!("{}/{}", r.zone, r.route);
    let _ = writeln!(s, "  {} [shape=box];", q(&target));
    for row in &r.allowed {
        for id in &row.identities {
            let label = edge_label(row, &r.named_methods);
            let _ = writeln!(s, "  {} -> {} [label={}];", q(id), q(&target), q(&label));
        }
    }
    s.push_str("}\n");
    s
}

fn rank_dot(r: &Ranking) -> String {
    use std::fmt::Write;
    let mut s = String::from("digraph reach {\n  rankdir=LR;\n  node [shape=ellipse];\n");
    let routes: BTreeSet<&str> = r
        .identities
        .iter()
        .flat_map(|i| i.routes.iter().map(String::as_str))
        .collect();
    for route in routes {
        let _ = writeln!(s, "  {} [shape=box];", q(route));
    }
    for i in &r.identities {
        let _ = writeln!(
            s,
            "  {} [label={}];",
            q(&i.identity),
            q(&format!("{}\n{} grants", i.identity, i.grants))
        );
        for route in &i.routes {
            let _ = writeln!(s, "  {} -> {};", q(&i.identity), q(route));
        }
    }
    s.push_str("}\n");
    s
}
