//! One policy rule and how it matches request facts.

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

impl Rule {
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        (self.identities.is_empty() || self.identities.iter().any(|p| p.matches(facts.spiffe_id)))
            && (self.zones.is_empty() || self.zones.iter().any(|z| z == facts.source_zone))
            && (self.routes.is_empty() || self.routes.iter().any(|r| &**r == facts.route))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == facts.method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(facts.path)))
    }
}
