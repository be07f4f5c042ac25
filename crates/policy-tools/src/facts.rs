//! The requests the policy tools reason about, and what they know about each matcher.
//!
//! Every [`RequestFacts`] the tools evaluate is built by [`Probe::facts`], so a new request
//! fact (a token's issuer, subject, claims) is added in one place. The tools never match rules
//! themselves: they ask [`crate::policy::Rule::accepts`] and
//! [`crate::policy::Policy::evaluate`], so an explanation cannot disagree with the gateway.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::identity::SpiffeId;
use crate::policy::{Matcher, Presented, RequestFacts, Rule, TokenFacts};

/// One request as policy sees it, owned: the identity and its zone, the selected route, the
/// method and the normalised path, and the credentials that proved the identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    /// `None` for a token identity from an issuer that speaks for no trust domain.
    pub spiffe_id: Option<SpiffeId>,
    pub source_zone: String,
    pub route: Arc<str>,
    pub method: String,
    pub path: String,
    /// An X.509-SVID was presented on the connection.
    pub svid: bool,
    /// The request's (verified) token.
    pub token: Option<Arc<ProbeToken>>,
}

/// The verified facts of a token, as `explain --issuer/--subject/--claim` states them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeToken {
    /// The configured issuer name.
    pub issuer: String,
    pub subject: String,
    pub claims: Map<String, Value>,
}

impl Hash for ProbeToken {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.issuer.hash(state);
        self.subject.hash(state);
        // A JSON map is ordered by key: its text is canonical.
        Value::Object(self.claims.clone()).to_string().hash(state);
    }
}

impl Probe {
    /// A request authenticated by an X.509-SVID alone: what the enumerated probes stand for.
    pub fn svid(
        spiffe_id: SpiffeId,
        source_zone: String,
        route: Arc<str>,
        method: String,
        path: String,
    ) -> Probe {
        Probe {
            spiffe_id: Some(spiffe_id),
            source_zone,
            route,
            method,
            path,
            svid: true,
            token: None,
        }
    }

    /// The facts the gateway would decide this request on. The only place the tools build
    /// [`RequestFacts`].
    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            spiffe_id: self.spiffe_id.as_ref(),
            source_zone: &self.source_zone,
            route: &self.route,
            method: &self.method,
            path: &self.path,
            presented: Presented {
                svid: self.svid,
                token: self.token.is_some(),
            },
            token: self.token.as_deref().map(|t| TokenFacts {
                issuer: &t.issuer,
                subject: &t.subject,
                claims: &t.claims,
            }),
        }
    }
}

/// Whether the tools can enumerate the values of matcher `m` (and so reason about every
/// request it accepts). The token matchers are not: the enumerated probes stand for requests
/// authenticated by an X.509-SVID alone, and rules the token matchers restrict are reported
/// as analysed only for those (explain takes token facts from the command line).
pub fn enumerable(m: Matcher) -> bool {
    matches!(
        m,
        Matcher::Routes | Matcher::Methods | Matcher::Zones | Matcher::Identities | Matcher::Paths
    )
}

/// The values rule `rule` lists for matcher `m`, as written; empty when the matcher is unset
/// (accepts anything); `None` for a matcher the tools cannot show.
pub fn rule_values(rule: &Rule, m: Matcher) -> Option<Vec<String>> {
    let values = match m {
        Matcher::Routes => rule.routes.iter().map(|r| r.to_string()).collect(),
        Matcher::Methods => rule.methods.clone(),
        Matcher::Zones => rule.zones.clone(),
        Matcher::Identities => rule.identities.iter().map(|p| p.to_string()).collect(),
        Matcher::Paths => rule.paths.iter().map(|p| p.to_string()).collect(),
        Matcher::Credentials => rule
            .credentials
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        Matcher::Issuers => rule.issuers.iter().map(|i| i.to_string()).collect(),
        Matcher::Subjects => rule.subjects.iter().map(|s| s.to_string()).collect(),
        Matcher::Claims => rule
            .claims
            .iter()
            .map(|c| format!("{}={}", c.name, c.values.join("|")))
            .collect(),
    };
    Some(values)
}

/// The value of the request fact matcher `m` looks at; `None` for a matcher the tools cannot
/// show.
pub fn fact_value(probe: &Probe, m: Matcher) -> Option<String> {
    let value = match m {
        Matcher::Routes => probe.route.to_string(),
        Matcher::Methods => probe.method.clone(),
        Matcher::Zones => probe.source_zone.clone(),
        Matcher::Identities => probe
            .spiffe_id
            .as_ref()
            .map_or_else(|| "(no SPIFFE ID)".to_string(), |id| id.to_string()),
        Matcher::Paths => probe.path.clone(),
        Matcher::Credentials => match (probe.svid, probe.token.is_some()) {
            (true, true) => "svid and token",
            (true, false) => "svid",
            (false, true) => "token",
            (false, false) => "none",
        }
        .to_string(),
        Matcher::Issuers => probe.token.as_ref()?.issuer.clone(),
        Matcher::Subjects => probe.token.as_ref()?.subject.clone(),
        Matcher::Claims => Value::Object(probe.token.as_ref()?.claims.clone()).to_string(),
    };
    Some(value)
}

/// Matchers of `rule` the tools cannot enumerate that reject `probe`: the rule is narrower
/// than the analysis can describe.
pub fn opaque_rejections(rule: &Rule, probe: &Probe) -> Vec<Matcher> {
    let facts = probe.facts();
    Matcher::ALL
        .into_iter()
        .filter(|&m| !enumerable(m) && !rule.accepts(m, &facts))
        .collect()
}

/// The matchers the tools cannot enumerate that some of `rules` set.
pub fn opaque_matchers<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Vec<Matcher> {
    let rules: Vec<&Rule> = rules.into_iter().collect();
    Matcher::ALL
        .into_iter()
        .filter(|&m| !enumerable(m))
        .filter(|&m| {
            rules
                .iter()
                .any(|r| rule_values(r, m).is_some_and(|v| !v.is_empty()))
        })
        .collect()
}

/// What every whole-space answer says when some rules use matchers the tools do not
/// enumerate: its classes stand for requests with an X.509-SVID and nothing else.
pub fn scope_note<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Option<String> {
    let opaque = opaque_matchers(rules);
    (!opaque.is_empty()).then(|| {
        let names: Vec<&str> = opaque.iter().map(|m| m.key()).collect();
        format!(
            "rules use matchers {} that are evaluated for requests authenticated by an X.509-SVID alone; requests with other credentials are not enumerated",
            names.join(", ")
        )
    })
}

/// `--claim NAME=VALUE` arguments as token claims: VALUE is read as JSON when it is JSON (`42`,
/// `true`, `["a","b"]`), else taken as a string (`scope=payments:read payments:charge`).
pub fn parse_claims(args: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut claims = serde_json::Map::new();
    for claim in args {
        let (name, value) = claim
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| format!("--claim `{claim}`: expected NAME=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::from(value));
        claims.insert(name.to_string(), value);
    }
    Ok(claims)
}
