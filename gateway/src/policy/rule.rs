//! One policy rule and how it matches request facts.

use std::fmt;
use std::sync::Arc;

use super::pattern::PathPattern;
use super::RequestFacts;
use crate::identity::IdPattern;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Enforce` rules decide; `Audit` rules only report what they would have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    Audit,
}

/// A validated rule. An empty matcher list matches anything; a rule matches when every
/// non-empty list has a match.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: Arc<str>,
    /// Why the rule exists, for reviewers and `policy explain`.
    pub description: Option<String>,
    pub effect: Effect,
    pub mode: Mode,
    pub identities: Vec<IdPattern>,
    pub zones: Vec<String>,
    pub routes: Vec<Arc<str>>,
    /// Upper-case method names.
    pub methods: Vec<String>,
    pub paths: Vec<PathPattern>,
}

/// One matcher of a rule: the unit in which `policy explain` says why a rule did not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matcher {
    Routes,
    Methods,
    Zones,
    Identities,
    Paths,
}

impl Matcher {
    /// Every matcher, cheapest first: [`Rule::matches`] stops at the first that fails.
    pub const ALL: [Matcher; 5] = [
        Matcher::Routes,
        Matcher::Methods,
        Matcher::Zones,
        Matcher::Identities,
        Matcher::Paths,
    ];

    /// The rule-file key of this matcher.
    pub fn key(self) -> &'static str {
        match self {
            Matcher::Routes => "routes",
            Matcher::Methods => "methods",
            Matcher::Zones => "zones",
            Matcher::Identities => "identities",
            Matcher::Paths => "paths",
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl Rule {
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        Matcher::ALL.iter().all(|&m| self.accepts(m, facts))
    }

    /// The matchers that reject `facts`, in [`Matcher::ALL`] order; empty when the rule
    /// matches. The same checks as [`Rule::matches`], so an explanation can never disagree
    /// with a decision.
    pub fn mismatches(&self, facts: &RequestFacts<'_>) -> Vec<Matcher> {
        Matcher::ALL
            .into_iter()
            .filter(|&m| !self.accepts(m, facts))
            .collect()
    }

    /// Whether matcher `m` of this rule accepts `facts` (an unset matcher accepts anything).
    pub fn accepts(&self, m: Matcher, facts: &RequestFacts<'_>) -> bool {
        match m {
            Matcher::Routes => {
                self.routes.is_empty() || self.routes.iter().any(|r| &**r == facts.route)
            }
            Matcher::Methods => {
                self.methods.is_empty() || self.methods.iter().any(|x| x == facts.method)
            }
            Matcher::Zones => {
                self.zones.is_empty() || self.zones.iter().any(|z| z == facts.source_zone)
            }
            Matcher::Identities => {
                self.identities.is_empty()
                    || self.identities.iter().any(|p| p.matches(facts.spiffe_id))
            }
            Matcher::Paths => {
                self.paths.is_empty() || self.paths.iter().any(|p| p.matches(facts.path))
            }
        }
    }
}
