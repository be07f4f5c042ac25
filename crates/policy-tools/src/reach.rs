//! Turning decided cells of a [`Grid`] into rows a reviewer reads: (identities, route, methods,
//! paths), where a broad path pattern lists the narrower ones it does not cover as exceptions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::load::Loaded;
use super::space::{specificity, Cell, Grid};
use crate::identity::IdPattern;
use crate::policy::PathPattern;

/// One row: every (identity, method, path) combination in it shares the attribute `A` (the
/// deciding rule, the change...).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Row<A> {
    /// Exact IDs and `…/*` patterns; a pattern stands for the IDs it matches that no other row
    /// names.
    pub identities: Vec<String>,
    /// The source zones of those identities.
    pub zones: Vec<String>,
    pub route: String,
    pub methods: Methods,
    pub paths: Vec<String>,
    /// Narrower paths under `paths` that are not in this row.
    pub except: Vec<String>,
    #[serde(flatten)]
    pub attr: A,
}

/// A set of methods: the named ones, plus (with `others`) every method no rule names.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Methods {
    pub named: Vec<String>,
    pub others: bool,
    /// Every method whatsoever.
    pub any: bool,
}

impl Methods {
    /// `GET,POST`, `*`, or `* except DELETE`.
    pub fn text(&self, all_named: &[String]) -> String {
        if self.any {
            "*".to_string()
        } else if self.others {
            let missing: Vec<&str> = all_named
                .iter()
                .filter(|m| !self.named.contains(m))
                .map(String::as_str)
                .collect();
            format!("* except {}", missing.join(","))
        } else {
            self.named.join(",")
        }
    }
}

/// Every method name the grid's rules name.
pub(crate) fn named_methods(grid: &Grid) -> Vec<String> {
    let mut all: Vec<String> = grid
        .methods
        .iter()
        .flat_map(|g| g.members.iter())
        .filter(|w| w.named)
        .map(|w| w.method.clone())
        .collect();
    all.sort();
    all
}

fn methods_of(grid: &Grid, set: &BTreeSet<usize>) -> Methods {
    let mut named = Vec::new();
    let mut others = false;
    for &m in set {
        for w in &grid.methods[m].members {
            if w.named {
                named.push(w.method.clone());
            } else {
                others = true;
            }
        }
    }
    named.sort();
    Methods {
        named,
        others,
        any: set.len() == grid.methods.len(),
    }
}

/// Classes of a dimension, by index into the grid.
type Classes = BTreeSet<usize>;

/// Compresses `selected` (cells of `side`, each with its attribute) into rows.
pub(crate) fn rows<A: Ord + Clone>(
    grid: &Grid,
    side: &Loaded,
    selected: &BTreeMap<Cell, A>,
) -> Vec<Row<A>> {
    // Methods per (identity, target, attribute).
    let mut by_it: BTreeMap<(usize, usize, A), Classes> = BTreeMap::new();
    for (cell, attr) in selected {
        by_it
            .entry((cell.identity, cell.target, attr.clone()))
            .or_default()
            .insert(cell.method);
    }
    // Targets per (route, methods, attribute, identity).
    let mut by_route: BTreeMap<(String, Classes, A, usize), Classes> = BTreeMap::new();
    for ((i, t, attr), methods) in by_it {
        let Some(route) = grid.route(side, t) else {
            continue;
        };
        by_route
            .entry((route.to_string(), methods, attr, i))
            .or_default()
            .insert(t);
    }
    // Identities per (route, methods, attribute, targets).
    let mut by_paths: BTreeMap<(String, Classes, A, Classes), Classes> = BTreeMap::new();
    for ((route, methods, attr, i), targets) in by_route {
        by_paths
            .entry((route, methods, attr, targets))
            .or_default()
            .insert(i);
    }
    let mut out: Vec<Row<A>> = by_paths
        .into_iter()
        .map(|((route, methods, attr, targets), identities)| {
            let paths = path_labels(grid, &targets);
            let except = exceptions(
                grid,
                side,
                selected,
                &route,
                &identities,
                &methods,
                &targets,
                &paths,
            );
            let zones: BTreeSet<String> = identities
                .iter()
                .filter_map(|&i| grid.zone(side, i))
                .map(str::to_string)
                .collect();
            Row {
                identities: identity_labels(grid, &identities),
                zones: zones.into_iter().collect(),
                route,
                methods: methods_of(grid, &methods),
                paths,
                except,
                attr,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.route, &a.identities, &a.paths, &a.methods).cmp(&(
            &b.route,
            &b.identities,
            &b.paths,
            &b.methods,
        ))
    });
    out
}

/// The labels of the identity classes' members, broadest first, without those a kept
/// broader label already covers.
pub(crate) fn identity_labels(grid: &Grid, classes: &BTreeSet<usize>) -> Vec<String> {
    let mut members: Vec<(&str, &crate::identity::SpiffeId)> = classes
        .iter()
        .flat_map(|&i| grid.identities[i].members.iter())
        .map(|w| (w.label.as_str(), &w.id))
        .collect();
    members.sort_by_key(|(label, _)| {
        let pattern = IdPattern::parse(label).ok();
        (
            pattern.map_or(usize::MAX, |p| p.specificity()),
            label.to_string(),
        )
    });
    let mut kept: Vec<(String, Option<IdPattern>)> = Vec::new();
    for (label, id) in members {
        if kept
            .iter()
            .any(|(k, p)| k == label || p.as_ref().is_some_and(|p| p.matches(id)))
        {
            continue;
        }
        kept.push((label.to_string(), IdPattern::parse(label).ok()));
    }
    let mut labels: Vec<String> = kept.into_iter().map(|(l, _)| l).collect();
    labels.sort();
    labels
}

/// The labels of the target classes' members, broadest first, without covered ones.
pub(crate) fn path_labels(grid: &Grid, classes: &BTreeSet<usize>) -> Vec<String> {
    let members: Vec<(&str, &str)> = classes
        .iter()
        .flat_map(|&t| grid.targets[t].members.iter())
        .map(|w| (w.label.as_str(), w.path.as_str()))
        .collect();
    minimize_paths(members)
}

fn minimize_paths(mut members: Vec<(&str, &str)>) -> Vec<String> {
    members.sort_by_key(|(label, _)| {
        let spec = PathPattern::parse(label).ok().map(|p| specificity(&p));
        (spec, label.to_string())
    });
    let mut kept: Vec<(String, Option<PathPattern>)> = Vec::new();
    for (label, path) in members {
        if kept
            .iter()
            .any(|(k, p)| k == label || p.as_ref().is_some_and(|p| p.matches(path)))
        {
            continue;
        }
        kept.push((label.to_string(), PathPattern::parse(label).ok()));
    }
    let mut labels: Vec<String> = kept.into_iter().map(|(l, _)| l).collect();
    labels.sort();
    labels
}

/// Targets on `route` under one of `paths` that are not selected for every identity and
/// method of the row: the holes in a broad pattern.
#[allow(clippy::too_many_arguments)]
fn exceptions<A>(
    grid: &Grid,
    side: &Loaded,
    selected: &BTreeMap<Cell, A>,
    route: &str,
    identities: &BTreeSet<usize>,
    methods: &BTreeSet<usize>,
    targets: &BTreeSet<usize>,
    paths: &[String],
) -> Vec<String> {
    let patterns: Vec<PathPattern> = paths
        .iter()
        .filter_map(|p| PathPattern::parse(p).ok())
        .filter(|p| !p.is_exact())
        .collect();
    if patterns.is_empty() {
        return Vec::new();
    }
    let mut holes: Vec<(&str, &str)> = Vec::new();
    for (t, group) in grid.targets.iter().enumerate() {
        if targets.contains(&t) || grid.route(side, t).as_deref() != Some(route) {
            continue;
        }
        let missing = identities.iter().any(|&identity| {
            methods.iter().any(|&method| {
                !selected.contains_key(&Cell {
                    identity,
                    method,
                    target: t,
                })
            })
        });
        if !missing {
            continue;
        }
        for w in &group.members {
            if patterns.iter().any(|p| p.matches(&w.path)) {
                holes.push((w.label.as_str(), w.path.as_str()));
            }
        }
    }
    let mut labels = minimize_paths(holes);
    labels.retain(|l| !paths.contains(l));
    labels
}

/// `IDS (zones) METHODS route PATHS [except PATHS]` on one line.
pub(crate) fn row_text<A>(row: &Row<A>, all_named: &[String]) -> String {
    let mut s = format!(
        "{} ({}) {} {} {}",
        row.identities.join(", "),
        row.zones.join(", "),
        row.methods.text(all_named),
        row.route,
        row.paths.join(", ")
    );
    if !row.except.is_empty() {
        s.push_str(&format!(" except {}", row.except.join(", ")));
    }
    s
}
