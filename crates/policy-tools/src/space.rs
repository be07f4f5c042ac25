//! The request space the analyses enumerate: a finite set of witness requests that stands for
//! every request a gateway could decide, grouped into classes the policy cannot tell apart.
//!
//! Rules are conjunctions of per-dimension matchers (identity and its zone; method; host and
//! path, which select the route), so the decision is constant on every product of per-dimension
//! classes. Per dimension, the witnesses are built from what the configs and rules name:
//!
//! - identities: every exact SPIFFE ID; for every `…/*` pattern, an ID below it that nothing
//!   else names; for every trusted trust domain, an ID that no pattern names;
//! - methods: every method a rule names, and one it does not;
//! - paths: one path per state of the subset automaton of all path patterns (rules' and the
//!   routes' prefixes), so every combination of patterns that some path matches has a witness;
//!   hosts: every host a route names, and none.
//!
//! Witnesses never decide anything themselves: [`Grid::new`] asks `Rule::accepts` which
//! witnesses every matcher of every rule treats alike, and keeps one representative per class.
//! The analyses then decide each class with `Policy::evaluate`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::facts::Probe;
use super::load::Loaded;
use crate::identity::{IdPattern, SpiffeId};
use crate::policy::{Matcher, PathPattern};

/// Most path automaton states explored; beyond it the analysis says it is incomplete.
const MAX_PATH_STATES: usize = 20_000;

/// Methods tried, in order, for the one no rule names.
const OTHER_METHODS: [&str; 12] = [
    "DELETE", "PUT", "PATCH", "POST", "GET", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
    "MKCOL", "LOCK",
];

/// Stands for an identity in probes that vary another dimension. `.invalid` is reserved
/// (RFC 2606), so no trust bundle or rule can name it.
const PLACEHOLDER_ID: &str = "spiffe://zonegate.invalid/placeholder";

/// An identity witness and the pattern it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityWitness {
    pub id: SpiffeId,
    /// An exact ID, or the `…/*` pattern whose otherwise unnamed IDs it stands for.
    pub label: String,
}

/// A method witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodWitness {
    pub method: String,
    /// False for the witness of every method no rule names.
    pub named: bool,
}

/// A host and path witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetWitness {
    /// `None`: a request naming a host no route names (or none).
    pub host: Option<String>,
    pub path: String,
    /// The most specific rule or route pattern that matches `path`.
    pub label: String,
}

/// What the witnesses are built from.
#[derive(Default)]
pub struct Generators {
    id_patterns: Vec<IdPattern>,
    trust_domains: BTreeSet<String>,
    path_patterns: BTreeSet<String>,
    methods: BTreeSet<String>,
    hosts: BTreeSet<String>,
}

impl Generators {
    /// Everything `loaded` names: rule matchers, zone map, routes, trust domains.
    pub fn add(&mut self, loaded: &Loaded) {
        for rule in loaded.rules() {
            self.id_patterns.extend(rule.identities.iter().cloned());
            self.methods.extend(rule.methods.iter().cloned());
            self.path_patterns
                .extend(rule.paths.iter().map(|p| p.as_str().to_string()));
        }
        for mapping in &loaded.config.zone_map {
            self.id_patterns.extend(mapping.identities.iter().cloned());
        }
        for route in &loaded.config.routes {
            self.hosts.extend(route.hosts.iter().cloned());
            // The route's prefix as patterns, so that route selection splits the witnesses
            // too. A prefix with `*` or not in normal form never equals a normalised path
            // segment-wise as a pattern would read it, so it adds no split.
            let prefix = &route.path_prefix;
            if prefix.contains('*') || PathPattern::parse(prefix).is_err() {
                continue;
            }
            if prefix == "/" {
                self.path_patterns.insert("/**".to_string());
            } else {
                self.path_patterns.insert(prefix.clone());
                self.path_patterns.insert(format!("{prefix}/**"));
            }
        }
        self.trust_domains
            .extend(loaded.config.trust_domains.keys().cloned());
    }

    /// One more identity that must have a witness of its own.
    pub fn add_identity(&mut self, id: &SpiffeId) {
        self.id_patterns.push(IdPattern::Exact(id.clone()));
    }

    /// Builds the witnesses.
    pub fn build(&self) -> Space {
        let identities = identity_witnesses(&self.id_patterns, &self.trust_domains);
        let methods = method_witnesses(&self.methods);
        let patterns: Vec<String> = self.path_patterns.iter().cloned().collect();
        let (paths, truncated) = path_witnesses(&patterns, MAX_PATH_STATES);
        let labeller = PathLabeller::new(&patterns);
        let mut targets = Vec::new();
        let hosts = std::iter::once(None).chain(self.hosts.iter().cloned().map(Some));
        for host in hosts {
            for path in &paths {
                targets.push(TargetWitness {
                    host: host.clone(),
                    path: path.clone(),
                    label: labeller.label(path),
                });
            }
        }
        Space {
            identities,
            methods,
            targets,
            truncated,
        }
    }
}

/// The witnesses of every dimension.
#[derive(Clone, Debug)]
pub struct Space {
    pub identities: Vec<IdentityWitness>,
    pub methods: Vec<MethodWitness>,
    pub targets: Vec<TargetWitness>,
    /// The path automaton was larger than [`MAX_PATH_STATES`]: some classes may be missing.
    pub truncated: bool,
}

/// Witnesses the policy (of every side) treats alike: one representative and all members.
#[derive(Clone, Debug)]
pub struct Group<W> {
    pub rep: W,
    pub members: Vec<W>,
}

/// One class of requests: an identity class, a method class and a target class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub identity: usize,
    pub method: usize,
    pub target: usize,
}

/// The classes of a space for one or more gateways ("sides"): witnesses are grouped when no
/// matcher of any rule of any side, nor the zone map, trust or route selection of any side,
/// tells them apart.
pub struct Grid {
    pub identities: Vec<Group<IdentityWitness>>,
    pub methods: Vec<Group<MethodWitness>>,
    pub targets: Vec<Group<TargetWitness>>,
    pub truncated: bool,
}

impl Grid {
    pub fn new(space: Space, sides: &[&Loaded]) -> Grid {
        // A placeholder that parses: the constant is a valid SPIFFE ID.
        let placeholder = SpiffeId::parse(PLACEHOLDER_ID).ok();
        let identities = group(space.identities, |w| {
            let mut sig = Signature::default();
            for side in sides {
                let trusted = side.trusts(w.id.trust_domain());
                let zone = side.config.zone_of(&w.id).to_string();
                sig.push_bit(trusted);
                sig.push_str(Some(&zone));
                let probe = Probe {
                    svid: true,
                    token: None,
                    spiffe_id: Some(w.id.clone()),
                    source_zone: zone,
                    route: Arc::from(""),
                    method: String::new(),
                    path: "/".to_string(),
                };
                sig.push_accepts(side, &probe);
            }
            sig
        });
        let methods = group(space.methods, |w| {
            let mut sig = Signature::default();
            sig.push_bit(w.named);
            if let Some(id) = &placeholder {
                for side in sides {
                    let probe = Probe {
                        svid: true,
                        token: None,
                        spiffe_id: Some(id.clone()),
                        source_zone: String::new(),
                        route: Arc::from(""),
                        method: w.method.clone(),
                        path: "/".to_string(),
                    };
                    sig.push_accepts(side, &probe);
                }
            }
            sig
        });
        let targets = group(space.targets, |w| {
            let mut sig = Signature::default();
            for side in sides {
                let route = side.routes.select(w.host.as_deref(), &w.path);
                sig.push_str(route.map(|r| &*r.name));
                if let Some(id) = &placeholder {
                    let probe = Probe {
                        svid: true,
                        token: None,
                        spiffe_id: Some(id.clone()),
                        source_zone: String::new(),
                        route: route.map_or_else(|| Arc::from(""), |r| r.name.clone()),
                        method: String::new(),
                        path: w.path.clone(),
                    };
                    sig.push_accepts(side, &probe);
                }
            }
            sig
        });
        Grid {
            identities,
            methods,
            targets,
            truncated: space.truncated,
        }
    }

    /// Every cell, identity-major.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for identity in 0..self.identities.len() {
            for method in 0..self.methods.len() {
                for target in 0..self.targets.len() {
                    cells.push(Cell {
                        identity,
                        method,
                        target,
                    });
                }
            }
        }
        cells
    }

    /// The zone `side` maps the identity class to, or `None` when it does not trust the
    /// class's trust domain (the handshake fails before any policy).
    pub fn zone<'a>(&self, side: &'a Loaded, identity: usize) -> Option<&'a str> {
        let id = &self.identities[identity].rep.id;
        side.trusts(id.trust_domain())
            .then(|| side.config.zone_of(id))
    }

    /// The route `side` selects for the target class (`None`: 404 before any policy).
    pub fn route(&self, side: &Loaded, target: usize) -> Option<Arc<str>> {
        let w = &self.targets[target].rep;
        side.routes
            .select(w.host.as_deref(), &w.path)
            .map(|r| r.name.clone())
    }

    /// The request of `cell` as `side` would decide it; `None` when it never reaches policy.
    pub fn probe(&self, side: &Loaded, cell: Cell) -> Option<Probe> {
        let zone = self.zone(side, cell.identity)?;
        let route = self.route(side, cell.target)?;
        Some(Probe {
            svid: true,
            token: None,
            spiffe_id: Some(self.identities[cell.identity].rep.id.clone()),
            source_zone: zone.to_string(),
            route,
            method: self.methods[cell.method].rep.method.clone(),
            path: self.targets[cell.target].rep.path.clone(),
        })
    }

    /// The identity class holding exactly this ID, if it has a witness.
    pub fn identity_of(&self, id: &SpiffeId) -> Option<usize> {
        self.identities
            .iter()
            .position(|g| g.members.iter().any(|w| w.id == *id))
    }
}

/// What tells witnesses apart: per side, route or zone names and every (rule, matcher) accept.
#[derive(Default, PartialEq, Eq, Hash)]
struct Signature {
    bits: Vec<bool>,
    names: Vec<Option<String>>,
}

impl Signature {
    fn push_bit(&mut self, bit: bool) {
        self.bits.push(bit);
    }

    fn push_str(&mut self, name: Option<&str>) {
        self.names.push(name.map(str::to_string));
    }

    /// Every matcher of every rule: a matcher added later splits classes too, by whatever it
    /// reads of the probe.
    fn push_accepts(&mut self, side: &Loaded, probe: &Probe) {
        let facts = probe.facts();
        for rule in side.rules() {
            for m in Matcher::ALL {
                self.bits.push(rule.accepts(m, &facts));
            }
        }
    }
}

/// Groups witnesses by signature, in first-seen order.
fn group<W: Clone>(witnesses: Vec<W>, signature: impl Fn(&W) -> Signature) -> Vec<Group<W>> {
    let mut index: HashMap<Signature, usize> = HashMap::new();
    let mut groups: Vec<Group<W>> = Vec::new();
    for w in witnesses {
        let sig = signature(&w);
        match index.get(&sig) {
            Some(&i) => groups[i].members.push(w),
            None => {
                index.insert(sig, groups.len());
                groups.push(Group {
                    rep: w.clone(),
                    members: vec![w],
                });
            }
        }
    }
    groups
}

/// Exact IDs, one unnamed ID below every `…/*` base (and the base itself when it can be a
/// workload's ID), and one unnamed ID per trust domain.
fn identity_witnesses(
    patterns: &[IdPattern],
    trust_domains: &BTreeSet<String>,
) -> Vec<IdentityWitness> {
    let named: BTreeSet<String> = patterns
        .iter()
        .filter_map(|p| match p {
            IdPattern::Exact(id) | IdPattern::Below(id) => Some(id.to_string()),
            IdPattern::Any => None,
        })
        .collect();
    let mut out: Vec<IdentityWitness> = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |id: SpiffeId, label: String, out: &mut Vec<IdentityWitness>| {
        if seen.insert(id.to_string()) {
            out.push(IdentityWitness { id, label });
        }
    };
    for pattern in patterns {
        match pattern {
            IdPattern::Exact(id) => push(id.clone(), id.to_string(), &mut out),
            IdPattern::Below(base) => {
                if let Some(id) = unnamed_below(base.as_str(), &named) {
                    push(id, pattern.to_string(), &mut out);
                }
                // A leaf SVID's ID has a path; a trust domain's own ID never reaches policy.
                if !base.path().is_empty() {
                    push(base.clone(), base.to_string(), &mut out);
                }
            }
            IdPattern::Any => {}
        }
    }
    for td in trust_domains {
        if let Some(id) = unnamed_below(&format!("spiffe://{td}"), &named) {
            push(id, format!("spiffe://{td}/*"), &mut out);
        }
    }
    out
}

/// An ID directly below `base` that no named ID or base equals or lies below.
fn unnamed_below(base: &str, named: &BTreeSet<String>) -> Option<SpiffeId> {
    (0..1000).find_map(|n| {
        let segment = if n == 0 {
            "x".to_string()
        } else {
            format!("x{n}")
        };
        let candidate = format!("{base}/{segment}");
        let below = format!("{candidate}/");
        let taken = named
            .iter()
            .any(|id| *id == candidate || id.starts_with(&below));
        if taken {
            None
        } else {
            SpiffeId::parse(&candidate).ok()
        }
    })
}

fn method_witnesses(named: &BTreeSet<String>) -> Vec<MethodWitness> {
    let mut out: Vec<MethodWitness> = named
        .iter()
        .map(|m| MethodWitness {
            method: m.clone(),
            named: true,
        })
        .collect();
    let other = OTHER_METHODS
        .iter()
        .map(|m| m.to_string())
        .chain((0..).map(|n| format!("XOTHER{n}")))
        .find(|m| !named.contains(m));
    if let Some(method) = other {
        out.push(MethodWitness {
            method,
            named: false,
        });
    }
    out
}

/// One segment step of a path pattern, read from its text (only to generate witnesses:
/// whether a witness matches is always asked of [`PathPattern`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(String),
    /// `*`, or the one segment a final `**` needs.
    Any,
    /// A segment with `*` in it.
    Glob(String),
    /// `**`: zero or more segments.
    Rest,
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let parts: Vec<&str> = pattern
        .strip_prefix('/')
        .unwrap_or(pattern)
        .split('/')
        .collect();
    let mut toks = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "**" if i + 1 == parts.len() => {
                toks.push(Tok::Any);
                toks.push(Tok::Rest);
            }
            "**" => {
                if toks.last() != Some(&Tok::Rest) {
                    toks.push(Tok::Rest);
                }
            }
            "*" => toks.push(Tok::Any),
            p if p.contains('*') => toks.push(Tok::Glob(p.to_string())),
            p => toks.push(Tok::Lit(p.to_string())),
        }
    }
    toks
}

/// (pattern, position) pairs, sorted: a state of the subset automaton.
type States = Vec<(u32, u32)>;

/// Single-segment globs compiled once, as [`PathPattern`]s over a one-segment path.
#[derive(Default)]
struct Globs {
    compiled: HashMap<String, Option<PathPattern>>,
}

impl Globs {
    fn matches(&mut self, glob: &str, segment: &str) -> bool {
        self.compiled
            .entry(glob.to_string())
            .or_insert_with(|| PathPattern::parse(&format!("/{glob}")).ok())
            .as_ref()
            .is_some_and(|p| p.matches(&format!("/{segment}")))
    }
}

struct Automaton {
    pats: Vec<Vec<Tok>>,
    globs: Globs,
}

impl Automaton {
    fn closure(&self, states: &mut BTreeSet<(u32, u32)>) {
        let mut stack: Vec<(u32, u32)> = states.iter().copied().collect();
        while let Some((p, k)) = stack.pop() {
            if self.pats[p as usize].get(k as usize) == Some(&Tok::Rest)
                && states.insert((p, k + 1))
            {
                stack.push((p, k + 1));
            }
        }
    }

    fn start(&self) -> States {
        let mut set: BTreeSet<(u32, u32)> = (0..self.pats.len() as u32).map(|p| (p, 0)).collect();
        self.closure(&mut set);
        set.into_iter().collect()
    }

    fn step(&mut self, states: &States, segment: &str) -> States {
        let mut next = BTreeSet::new();
        for &(p, k) in states {
            let Some(tok) = self.pats[p as usize].get(k as usize).cloned() else {
                continue;
            };
            let advance = match tok {
                Tok::Rest => {
                    next.insert((p, k));
                    false
                }
                Tok::Any => true,
                Tok::Lit(l) => l == segment,
                Tok::Glob(g) => self.globs.matches(&g, segment),
            };
            if advance {
                next.insert((p, k + 1));
            }
        }
        self.closure(&mut next);
        next.into_iter().collect()
    }

    /// Segment values that together reach every successor class of `states`: the literals
    /// and globs alive here, globs filled with each other (their intersections), one value
    /// none of them names, and the empty last segment of a trailing-slash path.
    fn candidates(&mut self, states: &States) -> Vec<String> {
        let mut lits = BTreeSet::new();
        let mut globs = BTreeSet::new();
        for &(p, k) in states {
            match self.pats[p as usize].get(k as usize) {
                Some(Tok::Lit(l)) => {
                    lits.insert(l.clone());
                }
                Some(Tok::Glob(g)) => {
                    globs.insert(g.clone());
                }
                _ => {}
            }
        }
        let fresh = (0..)
            .map(|n| {
                if n == 0 {
                    "x".to_string()
                } else {
                    format!("x{n}")
                }
            })
            .find(|c| !lits.contains(c) && !globs.iter().any(|g| self.globs.matches(g, c)))
            .unwrap_or_default();
        let fill = |glob: &str, filler: &str| glob.split('*').collect::<Vec<_>>().join(filler);
        let mut out: BTreeSet<String> = lits;
        for g in &globs {
            out.insert(fill(g, ""));
            out.insert(fill(g, &fresh));
            for h in &globs {
                if g != h {
                    out.insert(fill(g, &fill(h, &fresh)));
                    out.insert(fill(g, &fill(h, "")));
                }
            }
        }
        out.insert(fresh);
        out.insert(String::new());
        // Dot segments never survive normalisation.
        out.retain(|s| s != "." && s != "..");
        out.into_iter().collect()
    }
}

/// One path per reachable state of the subset automaton of `patterns` (the empty state
/// included: a path no pattern matches), shortest first. Returns whether `cap` cut it short.
fn path_witnesses(patterns: &[String], cap: usize) -> (Vec<String>, bool) {
    let mut auto = Automaton {
        pats: patterns.iter().map(|p| tokens(p)).collect(),
        globs: Globs::default(),
    };
    let mut reached: HashSet<States> = HashSet::new();
    let mut expanded: HashSet<States> = HashSet::new();
    let mut queue: VecDeque<(String, States)> = VecDeque::new();
    queue.push_back((String::new(), auto.start()));
    let mut out = Vec::new();
    while let Some((prefix, states)) = queue.pop_front() {
        for segment in auto.candidates(&states) {
            let next = auto.step(&states, &segment);
            let path = format!("{prefix}/{segment}");
            if reached.insert(next.clone()) {
                out.push(path.clone());
                if out.len() >= cap {
                    return (out, true);
                }
            }
            // Only the last segment of a normalised path is empty.
            if !segment.is_empty() && !next.is_empty() && expanded.insert(next.clone()) {
                queue.push_back((path, next));
            }
        }
    }
    (out, false)
}

/// Labels a witness path with the most specific pattern that matches it.
pub struct PathLabeller {
    patterns: Vec<PathPattern>,
}

impl PathLabeller {
    pub fn new(patterns: &[String]) -> PathLabeller {
        PathLabeller {
            patterns: patterns
                .iter()
                .filter_map(|p| PathPattern::parse(p).ok())
                .collect(),
        }
    }

    pub fn label(&self, path: &str) -> String {
        self.patterns
            .iter()
            .filter(|p| p.matches(path))
            .max_by_key(|p| specificity(p))
            .map_or_else(|| path.to_string(), |p| p.as_str().to_string())
    }
}

/// Exact beats fixed-length globs beats `**`; then more literal text; then longer.
pub fn specificity(p: &PathPattern) -> (u8, usize, usize) {
    let s = p.as_str();
    let class = if p.is_exact() {
        2
    } else if s.contains("**") {
        0
    } else {
        1
    };
    (class, s.chars().filter(|&c| c != '*').count(), s.len())
}

#[cfg(test)]
mod tests;
