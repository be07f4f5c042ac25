//! One policy rule and how it matches request facts.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::pattern::PathPattern;
use super::{Credentials, RequestFacts, TokenFacts};
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
    /// The credentials the request must have been authenticated with.
    pub credentials: Option<Credentials>,
    /// Names of configured token issuers.
    pub issuers: Vec<Arc<str>>,
    /// Token subjects.
    pub subjects: Vec<SubjectPattern>,
    /// Token claims: every listed claim must match one of its values.
    pub claims: Vec<ClaimMatcher>,
    /// What an identity this rule allows may do (enforced allow rules only).
    pub limit: Option<super::Limit>,
}

/// A token subject: exact, or every subject starting with a prefix (`repo:acme/*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectPattern {
    Exact(String),
    Prefix(String),
}

impl SubjectPattern {
    pub fn parse(s: &str) -> Result<SubjectPattern, String> {
        if s.is_empty() || s == "*" {
            return Err(
                "must name a subject or a prefix (`prefix*`); use no matcher for any".into(),
            );
        }
        match s.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err("`*` may only end the pattern".into()),
            Some(prefix) => Ok(SubjectPattern::Prefix(prefix.to_string())),
            None if s.contains('*') => Err("`*` may only end the pattern".into()),
            None => Ok(SubjectPattern::Exact(s.to_string())),
        }
    }

    pub fn matches(&self, subject: &str) -> bool {
        match self {
            SubjectPattern::Exact(s) => s == subject,
            SubjectPattern::Prefix(p) => subject.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectPattern::Exact(s) => f.write_str(s),
            SubjectPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// One claim and the values it may have. A claim matches a value when it is that string (or
/// number or boolean spelled so), when it is an array holding it, or, for the OAuth `scope`
/// and `scp` claims, when it is a space-separated list holding it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimMatcher {
    pub name: String,
    pub values: Vec<String>,
}

impl ClaimMatcher {
    pub fn matches(&self, token: &TokenFacts<'_>) -> bool {
        let Some(claim) = token.claims.get(&self.name) else {
            return false;
        };
        let scope_list = matches!(self.name.as_str(), "scope" | "scp");
        self.values.iter().any(|want| match claim {
            Value::String(s) if scope_list => s.split(' ').any(|item| item == want),
            Value::Array(items) => items.iter().any(|item| scalar_is(item, want)),
            other => scalar_is(other, want),
        })
    }
}

fn scalar_is(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

/// One matcher of a rule: the unit in which `policy explain` says why a rule did not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matcher {
    Routes,
    Methods,
    Credentials,
    Zones,
    Issuers,
    Identities,
    Subjects,
    Paths,
    Claims,
}

impl Matcher {
    /// Every matcher, cheapest first: [`Rule::matches`] stops at the first that fails.
    pub const ALL: [Matcher; 9] = [
        Matcher::Routes,
        Matcher::Methods,
        Matcher::Credentials,
        Matcher::Zones,
        Matcher::Issuers,
        Matcher::Identities,
        Matcher::Subjects,
        Matcher::Paths,
        Matcher::Claims,
    ];

    /// The rule-file key of this matcher.
    pub fn key(self) -> &'static str {
        match self {
            Matcher::Routes => "routes",
            Matcher::Methods => "methods",
            Matcher::Credentials => "credentials",
            Matcher::Zones => "zones",
            Matcher::Issuers => "issuers",
            Matcher::Identities => "identities",
            Matcher::Subjects => "subjects",
            Matcher::Paths => "paths",
            Matcher::Claims => "claims",
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
            Matcher::Credentials => self
                .credentials
                .is_none_or(|required| required.admits(facts.presented)),
            Matcher::Identities => {
                self.identities.is_empty()
                    || facts
                        .spiffe_id
                        .is_some_and(|id| self.identities.iter().any(|p| p.matches(id)))
            }
            Matcher::Paths => {
                self.paths.is_empty() || self.paths.iter().any(|p| p.matches(facts.path))
            }
            // Token matchers never match a request without a token.
            Matcher::Issuers => {
                self.issuers.is_empty()
                    || facts
                        .token
                        .is_some_and(|t| self.issuers.iter().any(|i| &**i == t.issuer))
            }
            Matcher::Subjects => {
                self.subjects.is_empty()
                    || facts
                        .token
                        .is_some_and(|t| self.subjects.iter().any(|p| p.matches(t.subject)))
            }
            Matcher::Claims => {
                self.claims.is_empty()
                    || facts
                        .token
                        .is_some_and(|t| self.claims.iter().all(|c| c.matches(&t)))
            }
        }
    }
}
