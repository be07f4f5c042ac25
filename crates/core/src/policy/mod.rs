//! Authorization: compiled rules, matching, the decision and its reason, and the decision
//! cache. A pure function of (identity, request facts): no I/O, no sockets, no files.
//!
//! Semantics: default deny; among enforced rules that match, any `deny` wins over any `allow`.
//! Audit rules never change the enforced decision; they are evaluated as if they were enforced,
//! and when that would have changed the outcome the audit rule is reported beside the decision.

pub mod cache;
mod index;
pub mod limit;
pub mod path;
pub mod pattern;
mod rule;

pub use cache::DecisionCache;
pub use limit::{Limit, LimitScope, Rate};
pub use path::{normalize, NormalizedTarget, PathError};
pub use pattern::{PathPattern, PatternError};
pub use rule::{ClaimMatcher, Effect, Matcher, Mode, Rule, SubjectPattern};

use std::collections::HashMap;
use std::sync::Arc;

use crate::identity::SpiffeId;

/// The facts a decision depends on. `path` is the normalised path the upstream will receive.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// `None` when the caller proved an identity that is not a SPIFFE ID (a bearer token
    /// from an issuer that speaks for no trust domain): `identities` matchers never match it.
    pub spiffe_id: Option<&'a SpiffeId>,
    pub source_zone: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub presented: Presented,
    pub token: Option<TokenFacts<'a>>,
}

/// Which credentials authenticated the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Presented {
    pub svid: bool,
    pub token: bool,
}

/// The verified facts of the request's token.
#[derive(Clone, Copy, Debug)]
pub struct TokenFacts<'a> {
    /// The configured name of the issuer that vouched for the token.
    pub issuer: &'a str,
    pub subject: &'a str,
    /// The token's other claims (registered time claims included).
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
}

/// Which credentials a route requires, or a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// An X.509-SVID on the connection.
    Mtls,
    /// A token on the request.
    Token,
    /// Either, or both (then bound to each other).
    Either,
    /// Both, bound to each other.
    Both,
}

impl Credentials {
    pub fn parse(s: &str) -> Option<Credentials> {
        Some(match s {
            "mtls" => Credentials::Mtls,
            "token" => Credentials::Token,
            "either" => Credentials::Either,
            "both" => Credentials::Both,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Credentials::Mtls => "mtls",
            Credentials::Token => "token",
            Credentials::Either => "either",
            Credentials::Both => "both",
        }
    }

    /// Whether a request that presented `presented` meets this requirement.
    pub fn admits(self, presented: Presented) -> bool {
        match self {
            Credentials::Mtls => presented.svid,
            Credentials::Token => presented.token,
            Credentials::Either => presented.svid || presented.token,
            Credentials::Both => presented.svid && presented.token,
        }
    }

    /// Whether a token on the request is the gateway's to verify (rather than the upstream's).
    pub fn accepts_tokens(self) -> bool {
        !matches!(self, Credentials::Mtls)
    }
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

/// A compiled policy: rules indexed by route and identity ([`index`]), plus a decision cache
/// that lives and dies with this policy, so a new policy can never see a decision made under
/// an older one.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Rules per route name, for rules that name routes.
    by_route: HashMap<Arc<str>, index::Bucket>,
    /// Rules that apply to every route.
    any_route: index::Bucket,
    /// Names of the token claims some rule matches on: the decision depends on them, so the
    /// cache key carries their values.
    claim_names: Vec<String>,
    cache: DecisionCache,
}

impl Policy {
    pub fn compile(rules: Vec<Rule>, cache_capacity: usize) -> Policy {
        let mut by_route: HashMap<Arc<str>, index::Bucket> = HashMap::new();
        let mut any_route = index::Bucket::default();
        for (i, rule) in rules.iter().enumerate() {
            if rule.routes.is_empty() {
                any_route.add(i, &rule.identities);
            } else {
                for route in &rule.routes {
                    by_route
                        .entry(route.clone())
                        .or_default()
                        .add(i, &rule.identities);
                }
            }
        }
        let mut claim_names: Vec<String> = rules
            .iter()
            .flat_map(|r| r.claims.iter().map(|c| c.name.clone()))
            .collect();
        claim_names.sort();
        claim_names.dedup();
        Policy {
            rules,
            by_route,
            any_route,
            claim_names,
            cache: DecisionCache::new(cache_capacity),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn cache(&self) -> &DecisionCache {
        &self.cache
    }

    /// Decides, serving repeated facts (identity, zone, route, method, path, credentials and
    /// the token facts rules read) from the cache.
    pub fn decide(&self, facts: &RequestFacts<'_>) -> Decision {
        let Some(key) = DecisionCache::key(facts, &self.claim_names) else {
            // Facts too large to be worth caching (huge claims): decide afresh.
            return self.evaluate(facts);
        };
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
        // The rules that may match, in file order: the route's and every route's rules, less
        // those written for other identities.
        let mut candidates = Vec::new();
        if let Some(bucket) = self.by_route.get(facts.route) {
            bucket.candidates(facts.spiffe_id, &mut candidates);
        }
        self.any_route.candidates(facts.spiffe_id, &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();
        for index in candidates {
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

#[cfg(test)]
mod tests;
