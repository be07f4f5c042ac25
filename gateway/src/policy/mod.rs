//! Authorization: compiled rules, matching, the decision and its reason, and the decision
//! cache. A pure function of (identity, request facts): no I/O, no sockets, no files.
//!
//! Semantics: default deny; among enforced rules that match, any `deny` wins over any `allow`.
//! Audit rules never change the enforced decision; they are evaluated as if they were enforced,
//! and when that would have changed the outcome the audit rule is reported beside the decision.

pub mod cache;
pub mod path;
pub mod pattern;
mod rule;

pub use cache::DecisionCache;
pub use path::{normalize, NormalizedTarget, PathError};
pub use pattern::{PathPattern, PatternError};
pub use rule::{Effect, Matcher, Mode, Rule};

use std::collections::HashMap;
use std::sync::Arc;

use crate::identity::SpiffeId;

/// The facts a decision depends on. `path` is the normalised path the upstream will receive.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub spiffe_id: &'a SpiffeId,
    pub source_zone: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// The enforced outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// An audit rule that would have changed the decision had it been enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFinding {
    pub rule: Arc<str>,
    /// What the decision would have been with the audit rules enforced.
    pub would: Verdict,
}

/// A decision with its reason: the rule that decided (`None` is the default deny) and the
/// audit rule that would have decided otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Option<Arc<str>>,
    pub audit: Option<AuditFinding>,
}

/// A compiled policy: rules indexed by route, plus a decision cache that lives and dies with
/// this policy, so a new policy can never see a decision made under an older one.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Rule indexes (ascending) per route name, for rules that name routes.
    by_route: HashMap<Arc<str>, Vec<usize>>,
    /// Rule indexes (ascending) of rules that apply to every route.
    any_route: Vec<usize>,
    cache: DecisionCache,
}

impl Policy {
    pub fn compile(rules: Vec<Rule>, cache_capacity: usize) -> Policy {
        let mut by_route: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
        let mut any_route = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            if rule.routes.is_empty() {
                any_route.push(index);
            } else {
                for route in &rule.routes {
                    by_route.entry(route.clone()).or_default().push(index);
                }
            }
        }
        Policy {
            rules,
            by_route,
            any_route,
            cache: DecisionCache::new(cache_capacity),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn cache(&self) -> &DecisionCache {
        &self.cache
    }

    /// Decides, serving repeated (identity, zone, route, method, path) from the cache.
    pub fn decide(&self, facts: &RequestFacts<'_>) -> Decision {
        let key = DecisionCache::key(facts);
        if let Some(hit) = self.cache.lookup(&key) {
            return hit;
        }
        let decision = self.evaluate(facts);
        self.cache.store(key, decision.clone());
        decision
    }

    /// Decides without the cache: the reference semantics.
    pub fn evaluate(&self, facts: &RequestFacts<'_>) -> Decision {
        let mut enforced = Outcome::default();
        let mut shadow = Outcome::default();
        let route_rules = self
            .by_route
            .get(facts.route)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for index in merge_ascending(route_rules, &self.any_route) {
            let rule = &self.rules[index];
            if !rule.matches(facts) {
                continue;
            }
            shadow.note(rule, index);
            if rule.mode == Mode::Enforce {
                enforced.note(rule, index);
            }
        }
        let (verdict, rule) = enforced.resolve(&self.rules);
        let (would, shadow_rule) = shadow.resolve(&self.rules);
        let audit = match shadow_rule {
            Some(audit_rule) if would != verdict => Some(AuditFinding {
                rule: audit_rule,
                would,
            }),
            _ => None,
        };
        Decision {
            verdict,
            rule,
            audit,
        }
    }
}

/// The first matching allow and deny rule seen, by rule order.
#[derive(Default)]
struct Outcome {
    first_allow: Option<usize>,
    first_deny: Option<usize>,
}

impl Outcome {
    fn note(&mut self, rule: &Rule, index: usize) {
        let slot = match rule.effect {
            Effect::Allow => &mut self.first_allow,
            Effect::Deny => &mut self.first_deny,
        };
        slot.get_or_insert(index);
    }

    fn resolve(&self, rules: &[Rule]) -> (Verdict, Option<Arc<str>>) {
        match (self.first_deny, self.first_allow) {
            (Some(deny), _) => (Verdict::Deny, Some(rules[deny].id.clone())),
            (None, Some(allow)) => (Verdict::Allow, Some(rules[allow].id.clone())),
            (None, None) => (Verdict::Deny, None),
        }
    }
}

/// Merges two ascending index lists, so rules are always visited in file order.
fn merge_ascending<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

#[cfg(test)]
mod tests;
