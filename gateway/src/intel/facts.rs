//! The requests the policy tools reason about, and what they know about each matcher.
//!
//! Every [`RequestFacts`] the tools evaluate is built by [`Probe::facts`], so a new request
//! fact (a token's issuer, subject, claims) is added in one place. The tools never match rules
//! themselves: they ask [`crate::policy::Rule::accepts`] and
//! [`crate::policy::Policy::evaluate`], so an explanation cannot disagree with the gateway.

use std::sync::Arc;

use crate::identity::SpiffeId;
use crate::policy::{Matcher, RequestFacts, Rule};

/// One request as policy sees it, owned: the identity and its zone, the selected route, the
/// method and the normalised path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    pub spiffe_id: SpiffeId,
    pub source_zone: String,
    pub route: Arc<str>,
    pub method: String,
    pub path: String,
}

impl Probe {
    /// The facts the gateway would decide this request on. The only place the tools build
    /// [`RequestFacts`]: the probes stand for requests authenticated by an X.509-SVID alone.
    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            spiffe_id: &self.spiffe_id,
            source_zone: &self.source_zone,
            route: &self.route,
            method: &self.method,
            path: &self.path,
        }
    }
}

/// Whether the tools can enumerate the values of matcher `m` (and so reason about every
/// request it accepts). A matcher added later (token issuers, claims...) is not, until the
/// probes learn its facts: rules it restricts are reported as analysed only for the requests
/// the probes stand for.
pub fn enumerable(m: Matcher) -> bool {
    matches!(
        m,
        Matcher::Routes | Matcher::Methods | Matcher::Zones | Matcher::Identities | Matcher::Paths
    )
}

/// The values rule `rule` lists for matcher `m`, as written; empty when the matcher is unset
/// (accepts anything); `None` for a matcher the tools cannot show.
pub fn rule_values(rule: &Rule, m: Matcher) -> Option<Vec<String>> {
    #[allow(unreachable_patterns)] // new matchers fall through until they are taught here
    let values = match m {
        Matcher::Routes => rule.routes.iter().map(|r| r.to_string()).collect(),
        Matcher::Methods => rule.methods.clone(),
        Matcher::Zones => rule.zones.clone(),
        Matcher::Identities => rule.identities.iter().map(|p| p.to_string()).collect(),
        Matcher::Paths => rule.paths.iter().map(|p| p.to_string()).collect(),
        _ => return None,
    };
    Some(values)
}

/// The value of the request fact matcher `m` looks at; `None` for a matcher the tools cannot
/// show.
pub fn fact_value(probe: &Probe, m: Matcher) -> Option<String> {
    #[allow(unreachable_patterns)] // new matchers fall through until they are taught here
    let value = match m {
        Matcher::Routes => probe.route.to_string(),
        Matcher::Methods => probe.method.clone(),
        Matcher::Zones => probe.source_zone.clone(),
        Matcher::Identities => probe.spiffe_id.to_string(),
        Matcher::Paths => probe.path.clone(),
        _ => return None,
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

/// The matchers the tools cannot enumerate (none today), for the note every analysis prints
/// when there are some.
pub fn opaque_matchers() -> Vec<Matcher> {
    Matcher::ALL
        .into_iter()
        .filter(|&m| !enumerable(m))
        .collect()
}

/// What every whole-space answer says when some matchers are not enumerated: its classes stand
/// for requests with an X.509-SVID and nothing else.
pub fn scope_note() -> Option<String> {
    let opaque = opaque_matchers();
    (!opaque.is_empty()).then(|| {
        let names: Vec<&str> = opaque.iter().map(|m| m.key()).collect();
        format!(
            "matchers {} are evaluated for requests authenticated by an X.509-SVID alone; requests with other credentials are not enumerated",
            names.join(", ")
        )
    })
}
