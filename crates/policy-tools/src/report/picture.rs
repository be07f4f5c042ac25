//! The picture of the zones behind `report --html`: who may reach what (the blast-radius
//! ranking over the gateway configs), who did (request events), joined per (identity,
//! ZONE/ROUTE) into the graph's edges, with each identity's blast radius, sharing and stale
//! grants. Data only, sorted so that the page is the same for the same input; the page itself
//! is drawn by [`super::html`].
//!
//! Nothing is matched here: grants are the ranking's (`Policy::evaluate` over the witness
//! classes of [`crate::space`]), uses are what the gateways decided and wrote down.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::IdentitySummary;
use crate::blast::Ranking;
use crate::events::RequestEvent;
use crate::load::Loaded;
use crate::template::template;

/// Most (identity, zone, route) pairs kept from events; requests of new pairs beyond are
/// counted.
const MAX_PAIRS: usize = 20_000;
/// Most distinct denied requests (method, path template, why) kept per pair.
const MAX_SAMPLES: usize = 5;

/// What the events show each identity did on each route of the given zones, bounded.
#[derive(Default)]
pub(crate) struct Observations {
    /// Keyed by (identity, `ZONE/ROUTE`).
    pairs: HashMap<(Box<str>, Box<str>), Traffic>,
    /// Request events of gateways not given, or naming a route their config no longer has.
    pub(crate) outside: u64,
    /// Request events of new pairs once [`MAX_PAIRS`] were kept.
    pub(crate) untracked: u64,
}

#[derive(Default)]
struct Traffic {
    allowed: u64,
    denied: u64,
    samples: BTreeSet<String>,
}

/// How an identity and a route are related.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EdgeKind {
    /// The policy allows it, and events show it allowed.
    GrantedUsed,
    /// The policy allows it; no event shows it used.
    Stale,
    /// Events show it allowed, but the current policy grants nothing there (it changed since).
    ObservedUngranted,
    /// Events show attempts the gateway refused.
    ObservedDenied,
}

/// An identity node: one ranked identity (an exact ID, or a `…/*` pattern for the IDs under it
/// that nothing names), or an ID seen in events that is not a valid SPIFFE ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct IdentityNode {
    pub(crate) id: String,
    /// `named`, `pattern` or `observed`, as in the ranking.
    pub(crate) kind: &'static str,
    /// The zone it is drawn in: its source zone, `unknown` when no gateway maps it.
    pub(crate) zone: String,
    /// Blast radius: routes and zones reached, and (route, method, path) classes allowed.
    pub(crate) routes: usize,
    pub(crate) zones: usize,
    pub(crate) grants: usize,
    /// Observed requests to the given zones' routes.
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    /// Flagged by the sharing analysis, with its peaks within one window.
    pub(crate) shared: bool,
    pub(crate) peak_peer_ips: usize,
    pub(crate) peak_cert_serials: usize,
    /// `ZONE/ROUTE`s granted that no event shows used.
    pub(crate) stale: Vec<String>,
}

/// A route of one of the given zones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RouteNode {
    /// `ZONE/ROUTE`.
    pub(crate) id: String,
    pub(crate) zone: String,
    pub(crate) route: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Edge {
    /// An [`IdentityNode::id`].
    pub(crate) from: String,
    /// A [`RouteNode::id`].
    pub(crate) to: String,
    pub(crate) kind: EdgeKind,
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    /// Some refused requests: `METHOD TEMPLATE (rule or reason)`.
    pub(crate) samples: Vec<String>,
}

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub(crate) struct Picture {
    /// The given gateways' zones, sorted.
    pub(crate) zones: Vec<String>,
    /// Sorted by (zone, id).
    pub(crate) identities: Vec<IdentityNode>,
    /// Sorted by (zone, route).
    pub(crate) routes: Vec<RouteNode>,
    /// Sorted by (from, to, kind).
    pub(crate) edges: Vec<Edge>,
    pub(crate) shared_threshold: usize,
    /// The window peers and certificates were counted in (seconds; 0: the whole files).
    pub(crate) window_s: u64,
    /// What the reader must know to read the picture right.
    pub(crate) notes: Vec<String>,
}

impl Observations {
    /// Counts one request event against the route it was decided on, if that route is one of
    /// `sides`'. Events refused before routing name no route and are not drawn.
    pub(crate) fn observe(&mut self, event: &RequestEvent<'_>, sides: &[Loaded]) {
        let (Some(id), Some(zone), Some(route)) = (
            event.source_spiffe_id.as_deref(),
            event.destination_zone.as_deref(),
            event.route.as_deref(),
        ) else {
            return;
        };
        let known = sides
            .iter()
            .any(|s| s.zone() == zone && s.config.routes.iter().any(|r| &*r.name == route));
        if !known {
            self.outside += 1;
            return;
        }
        let key: (Box<str>, Box<str>) = (id.into(), format!("{zone}/{route}").into());
        if !self.pairs.contains_key(&key) && self.pairs.len() >= MAX_PAIRS {
            self.untracked += 1;
            return;
        }
        let traffic = self.pairs.entry(key).or_default();
        if event.decision == "allow" {
            traffic.allowed += 1;
            return;
        }
        traffic.denied += 1;
        if let Some(path) = event.path.as_deref() {
            if traffic.samples.len() < MAX_SAMPLES {
                let why = event.rule_id.as_deref().unwrap_or(&event.reason);
                traffic
                    .samples
                    .insert(format!("{} {} ({why})", event.method, template(path)));
            }
        }
    }

    /// The identities seen on the given zones' routes, for the ranking to include.
    pub(crate) fn identities(&self) -> BTreeSet<String> {
        self.pairs.keys().map(|(id, _)| id.to_string()).collect()
    }
}

/// Joins the ranking (computed over `sides` with [`Observations::identities`]), the
/// observations and the sharing summaries into the picture.
pub(crate) fn picture(
    sides: &[Loaded],
    ranking: &Ranking,
    observed: &Observations,
    sharing: &[IdentitySummary],
    shared_threshold: usize,
    window_s: u64,
) -> Picture {
    let sharing: HashMap<&str, &IdentitySummary> =
        sharing.iter().map(|s| (s.identity.as_str(), s)).collect();
    let mut nodes: BTreeMap<String, IdentityNode> = BTreeMap::new();
    let mut granted: BTreeSet<(&str, &str)> = BTreeSet::new();
    for r in &ranking.identities {
        for route in &r.routes {
            granted.insert((&r.identity, route));
        }
        let mut n = node(&r.identity, r.kind, r.source_zones.first(), &sharing);
        (n.routes, n.zones, n.grants) = (r.routes.len(), r.zones, r.grants);
        nodes.insert(r.identity.clone(), n);
    }
    let mut edges = Vec::new();
    for &(from, to) in &granted {
        let used = observed
            .pairs
            .get(&(from.into(), to.into()))
            .is_some_and(|t| t.allowed > 0);
        let kind = if used {
            EdgeKind::GrantedUsed
        } else {
            EdgeKind::Stale
        };
        edges.push((from.to_string(), to.to_string(), kind));
    }
    let mut traffic: HashMap<(&str, &str), &Traffic> = HashMap::new();
    for ((from, to), t) in &observed.pairs {
        traffic.insert((from, to), t);
        // An ID no ranking holds is not a valid SPIFFE ID: drawn from what the events say.
        if !nodes.contains_key(&**from) {
            nodes.insert(from.to_string(), node(from, "observed", None, &sharing));
        }
        if let Some(n) = nodes.get_mut(&**from) {
            n.allowed += t.allowed;
            n.denied += t.denied;
        }
        if t.allowed > 0 && !granted.contains(&(&**from, &**to)) {
            edges.push((
                from.to_string(),
                to.to_string(),
                EdgeKind::ObservedUngranted,
            ));
        }
        if t.denied > 0 {
            edges.push((from.to_string(), to.to_string(), EdgeKind::ObservedDenied));
        }
    }
    edges.sort();
    let edges: Vec<Edge> = edges
        .into_iter()
        .map(|(from, to, kind)| {
            let t = traffic.get(&(from.as_str(), to.as_str()));
            Edge {
                allowed: t.map_or(0, |t| t.allowed),
                denied: t.map_or(0, |t| t.denied),
                samples: match (kind, t) {
                    (EdgeKind::ObservedDenied, Some(t)) => t.samples.iter().cloned().collect(),
                    _ => Vec::new(),
                },
                from,
                to,
                kind,
            }
        })
        .collect();
    for e in edges.iter().filter(|e| e.kind == EdgeKind::Stale) {
        if let Some(n) = nodes.get_mut(&e.from) {
            n.stale.push(e.to.clone());
        }
    }
    let mut identities: Vec<IdentityNode> = nodes.into_values().collect();
    identities.sort_by(|a, b| (&a.zone, &a.id).cmp(&(&b.zone, &b.id)));
    let mut routes: Vec<RouteNode> = sides
        .iter()
        .flat_map(|s| {
            s.config.routes.iter().map(|r| RouteNode {
                id: format!("{}/{}", s.zone(), r.name),
                zone: s.zone().to_string(),
                route: r.name.to_string(),
            })
        })
        .collect();
    routes.sort_by(|a, b| (&a.zone, &a.route).cmp(&(&b.zone, &b.route)));
    routes.dedup_by(|a, b| a.id == b.id);
    let zones: BTreeSet<String> = sides.iter().map(|s| s.zone().to_string()).collect();
    Picture {
        zones: zones.into_iter().collect(),
        identities,
        routes,
        edges,
        shared_threshold,
        window_s,
        notes: notes(ranking, observed),
    }
}

/// A node without reach or traffic yet. Its zone is the one the gateways map it to, else the
/// one its events name (an ID of a trust domain no given gateway trusts), else `unknown`.
fn node(
    id: &str,
    kind: &'static str,
    mapped_zone: Option<&String>,
    sharing: &HashMap<&str, &IdentitySummary>,
) -> IdentityNode {
    let shared = sharing.get(id);
    let zone = mapped_zone
        .or_else(|| shared.and_then(|s| s.source_zones.first()))
        .map_or(crate::config::UNKNOWN_ZONE, String::as_str);
    IdentityNode {
        id: id.to_string(),
        kind,
        zone: zone.to_string(),
        routes: 0,
        zones: 0,
        grants: 0,
        allowed: 0,
        denied: 0,
        shared: shared.is_some_and(|s| s.shared),
        peak_peer_ips: shared.map_or(0, |s| s.peak_peer_ips),
        peak_cert_serials: shared.map_or(0, |s| s.peak_cert_serials),
        stale: Vec::new(),
    }
}

fn notes(ranking: &Ranking, observed: &Observations) -> Vec<String> {
    // Allowed requests within the gateway's own zone produce no event (docs/events.md).
    let mut notes = vec![
        "events record cross-zone requests and refusals: a grant used only in-zone looks stale"
            .to_string(),
    ];
    notes.extend(ranking.scope.clone());
    if ranking.incomplete {
        notes.push("too many path patterns to enumerate: grants may be missing".to_string());
    }
    if observed.outside > 0 {
        notes.push(format!(
            "{} request event(s) of other gateways, or of routes their config no longer defines, are not drawn",
            observed.outside
        ));
    }
    if observed.untracked > 0 {
        notes.push(format!(
            "more than {MAX_PAIRS} (identity, route) pairs observed: {} request event(s) of the others are not drawn",
            observed.untracked
        ));
    }
    notes
}

#[cfg(test)]
mod tests;
