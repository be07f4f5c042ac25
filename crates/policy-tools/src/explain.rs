//! `zonegate policy explain`: how the gateway would decide one request, and why.
//!
//! Every step is the gateway's own: trust of the SVID's trust domain (the handshake), then
//! [`crate::admission::admit`], the very function the data plane calls, with the query's facts
//! standing for the certificate and the token. What it adds is the reason: for every rule on
//! the selected route or on every route, which matchers rejected the request.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::facts::{fact_value, rule_values, Probe, ProbeToken};
use super::load::{self, Loaded};
use super::{json_out, usage_error};
use crate::admission::credentials::check_verified_token;
use crate::admission::{self, Authenticator, Compiled, Refusal, Refused, RequestHead};
use crate::config::{Route, UNKNOWN_ZONE};
use crate::identity::{IssuerSpec, SpiffeId, SvidFacts, TokenReason, VerifiedToken};
use crate::policy::{self, Decision, Effect, Mode, Rule, Verdict};

/// `zonegate policy explain`
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The gateway config.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Policy files or directories to use instead of the config's own (e.g. a pull request's).
    #[arg(long)]
    pub policy: Vec<PathBuf>,
    /// The SPIFFE ID of the X.509-SVID the caller presents on the connection.
    #[arg(long, required_unless_present = "issuer")]
    pub spiffe_id: Option<String>,
    /// The request carries a valid token from this configured issuer (`[token_issuer.NAME]`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The token's `sub` (default: the --spiffe-id).
    #[arg(long, requires = "issuer")]
    pub subject: Option<String>,
    /// A token claim NAME=VALUE (repeatable): VALUE is read as JSON when it is JSON (`42`,
    /// `["a","b"]`), else as a string (`scope="payments:read payments:charge"`).
    #[arg(long = "claim", value_name = "NAME=VALUE", requires = "issuer")]
    pub claims: Vec<String>,
    /// The caller presents no certificate, only the token.
    #[arg(long, requires = "issuer")]
    pub token_only: bool,
    /// The HTTP method, as sent (methods are case-sensitive on the wire).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request's host (Host header or :authority); a URL's host is used when absent.
    #[arg(long)]
    pub host: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// The request target as sent (`/payments/x?y=1`), or a URL (`https://host:8443/x`).
    pub target: String,
}

/// One request to explain.
#[derive(Clone, Debug)]
pub struct Query {
    /// The X.509-SVID's SPIFFE ID, when the connection presents one.
    pub spiffe_id: Option<SpiffeId>,
    /// The request's token, taken as valid (signature, time, audience are not explained).
    pub token: Option<ProbeToken>,
    pub method: String,
    /// Lower-case, without port, as the gateway compares it.
    pub host: Option<String>,
    /// The request target exactly as sent.
    pub target: String,
}

/// How the gateway answers, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Explanation {
    /// The identity's SPIFFE ID: the SVID's, else the token's when its issuer speaks for a
    /// trust domain.
    pub spiffe_id: Option<String>,
    /// The token, when the request carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenView>,
    pub method: String,
    pub host: Option<String>,
    pub target: String,
    /// `allow` or `deny`, as the identity event's `decision`.
    pub decision: &'static str,
    /// The identity event's `reason`.
    pub reason: &'static str,
    /// The status the gateway answers with itself; `None` when it proxies (the upstream's).
    pub status: Option<u16>,
    pub detail: Option<String>,
    /// The zone map decides the source zone.
    pub source_zone: Option<String>,
    /// Index of the first `[[zone_map]]` entry that matched; `None`: zone `unknown`.
    pub zone_map_entry: Option<usize>,
    /// The normalised path policy sees.
    pub path: Option<String>,
    pub route: Option<String>,
    pub rule: Option<RuleRef>,
    pub audit: Option<AuditRef>,
    /// Rules on the selected route and on every route, in file order.
    pub rules: Vec<RuleCheck>,
    /// The per-identity limits an allowed request counts against: its route's and its rule's
    /// (a request over one is answered 429 by the gateway; counters are live state, not here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitRef>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LimitRef {
    /// `route NAME` or `rule ID`.
    pub owner: String,
    /// `50/s (burst 100), 20 in flight, per identity`.
    pub limit: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TokenView {
    pub issuer: String,
    pub subject: String,
    /// `x509-svid+jwt-svid`, `jwt`, ...: what the event's `credential` would say.
    pub credential: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleRef {
    pub id: String,
    pub file: String,
    pub line: Option<usize>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AuditRef {
    pub rule: RuleRef,
    /// The decision had audit rules been enforced.
    pub decision: &'static str,
}

/// One rule's verdict on the request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleCheck {
    pub id: String,
    pub effect: &'static str,
    pub mode: &'static str,
    pub file: String,
    pub line: Option<usize>,
    pub matches: bool,
    pub rejected_by: Vec<Rejection>,
}

/// A matcher that rejected the request: what the rule lists and what the request has.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rejection {
    pub matcher: String,
    pub rule_values: Option<Vec<String>>,
    pub request_value: Option<String>,
}

pub fn run(args: &ExplainArgs) -> i32 {
    let policy_override = (!args.policy.is_empty()).then_some(args.policy.as_slice());
    let loaded = match load::open(&args.config, policy_override) {
        Ok(l) => l,
        Err(errors) => return load::report_errors(&errors),
    };
    if let Some(code) = super::refuse_unknown_routes(&loaded) {
        return code;
    }
    let query = match query(args) {
        Ok(q) => q,
        Err(message) => return usage_error(&message),
    };
    let explanation = explain(&loaded, &query);
    if args.json {
        json_out(&explanation)
    } else {
        print!("{}", render(&explanation));
        0
    }
}

/// The query the command line describes.
pub fn query(args: &ExplainArgs) -> Result<Query, String> {
    if args.spiffe_id.is_none() && args.issuer.is_none() {
        return Err("name the caller: --spiffe-id, --issuer, or both".into());
    }
    let spiffe_id = match &args.spiffe_id {
        Some(id) => Some(SpiffeId::parse(id).map_err(|e| format!("--spiffe-id: `{id}`: {e}"))?),
        None => None,
    };
    let token = match &args.issuer {
        Some(issuer) => {
            let subject = args
                .subject
                .clone()
                .or_else(|| args.spiffe_id.clone())
                .ok_or("--issuer needs --subject (or --spiffe-id)")?;
            let claims = super::facts::parse_claims(&args.claims)?;
            Some(ProbeToken {
                issuer: issuer.clone(),
                subject,
                claims,
            })
        }
        None => None,
    };
    let (url_host, target) = split_url(&args.target)?;
    let host = match args.host.as_deref().or(url_host.as_deref()) {
        Some(h) => Some(host_of(h).ok_or_else(|| format!("--host: `{h}` is not a host"))?),
        None => None,
    };
    if args.method.is_empty() || !args.method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("--method: `{}` is not an HTTP method", args.method));
    }
    Ok(Query {
        spiffe_id: if args.token_only { None } else { spiffe_id },
        token,
        method: args.method.clone(),
        host,
        target,
    })
}

/// A URL's authority and request target; anything else is the target as given.
fn split_url(s: &str) -> Result<(Option<String>, String), String> {
    let rest = match s.split_once("://") {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => rest,
        _ => return Ok((None, s.to_string())),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("`{s}`: the URL has no host"));
    }
    let target = match target {
        "" => "/".to_string(),
        t if t.starts_with('/') => t.to_string(),
        // `https://h?q` asks for `/?q`, as clients send it.
        t => format!("/{t}"),
    };
    Ok((Some(authority.to_string()), target))
}

/// The host as the gateway compares it: the authority's host (HTTP/2's `:authority` is read
/// this way by the gateway; HTTP/1.1's Host has its port dropped the same way), lower-case.
fn host_of(authority: &str) -> Option<String> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority
        .parse::<http::uri::Authority>()
        .ok()
        .map(|a| a.host().to_ascii_lowercase())
}

/// Explains `query` the gateway's way: the handshake's checks (which an offline request
/// can fail only by its trust domain or a missing certificate), then [`admission::admit`] itself,
/// with the query's facts standing for the connection's certificate and the request's token.
pub fn explain(loaded: &Loaded, query: &Query) -> Explanation {
    let config = &loaded.config;
    let mut out = Explanation {
        spiffe_id: query.spiffe_id.as_ref().map(|id| id.to_string()),
        token: None,
        method: query.method.clone(),
        host: query.host.clone(),
        target: query.target.clone(),
        decision: "deny",
        reason: "",
        status: None,
        detail: None,
        source_zone: None,
        zone_map_entry: None,
        path: None,
        route: None,
        rule: None,
        audit: None,
        rules: Vec::new(),
        limits: Vec::new(),
    };
    if let Some(id) = &query.spiffe_id {
        // The handshake: an X.509-SVID chains to the bundle of its own trust domain, and a
        // leaf names a workload (an ID with a path).
        if !loaded.trusts(id.trust_domain()) {
            out.reason = "svid_refused";
            out.detail = Some(format!(
                "the gateway trusts no bundle for trust domain `{}`: the TLS handshake fails",
                id.trust_domain()
            ));
            return out;
        }
        if id.path().is_empty() {
            out.reason = "svid_refused";
            out.detail = Some(format!(
                "`{id}` is a trust domain's ID; a leaf X.509-SVID names a workload: the TLS handshake fails"
            ));
            return out;
        }
    } else if !config.listeners.iter().any(|l| !l.client_cert_required) {
        out.reason = "svid_refused";
        out.detail =
            Some("every listener requires a client certificate: the TLS handshake fails".into());
        return out;
    }

    let facts = Facts {
        loaded,
        query,
        svid: query
            .spiffe_id
            .clone()
            .map(|id| Arc::new(SvidFacts::stated(id))),
    };
    let compiled = Compiled {
        config,
        routes: &loaded.routes,
        policy: &loaded.policy,
    };
    let head = RequestHead {
        method: &query.method,
        host: query.host.as_deref(),
        raw_target: &query.target,
    };
    let admission = admission::admit(&compiled, &facts, &head, 0);

    if let Some(identity) = &admission.identity {
        out.spiffe_id = identity.spiffe_id.as_ref().map(|id| id.to_string());
        out.token = identity.token.as_ref().map(|t| TokenView {
            issuer: t.issuer.name.to_string(),
            subject: t.subject.clone(),
            credential: identity.credential_kind(),
        });
        out.source_zone = admission.source_zone.clone();
        out.zone_map_entry = identity.spiffe_id.as_ref().and_then(|id| {
            config
                .zone_map
                .iter()
                .position(|m| m.identities.iter().any(|p| p.matches(id)))
                .filter(|&i| Some(&config.zone_map[i].zone) == admission.source_zone.as_ref())
        });
    }
    out.route = admission.route.map(|r| r.name.to_string());
    out.path = admission.target.as_ref().map(|t| t.path.clone());
    if let Some(decision) = &admission.decision {
        describe_decision(loaded, decision, &mut out);
        if decision.verdict == Verdict::Allow {
            out.limits = limits_of(loaded, admission.route, decision.rule.as_deref());
        }
        if let (Some(route), Some(target)) = (admission.route, &admission.target) {
            let probe = Probe {
                spiffe_id: admission
                    .identity
                    .as_ref()
                    .and_then(|i| i.spiffe_id.clone()),
                source_zone: admission
                    .source_zone
                    .clone()
                    .unwrap_or_else(|| UNKNOWN_ZONE.to_string()),
                route: route.name.clone(),
                method: query.method.clone(),
                path: target.path.clone(),
                svid: admission
                    .identity
                    .as_ref()
                    .is_some_and(|i| i.svid.is_some()),
                token: admission
                    .identity
                    .as_ref()
                    .and_then(|i| i.token.as_ref())
                    .and_then(|_| query.token.clone())
                    .map(Arc::new),
            };
            out.rules = nearby(loaded, &probe);
        }
    }
    if let Some(refused) = &admission.refused {
        if !matches!(
            refused.refusal,
            Refusal::PolicyDenied | Refusal::DefaultDeny
        ) {
            out.decision = "deny";
            out.reason = refused.refusal.reason();
            out.status = Some(refused.refusal.status());
            out.detail = refused.detail.clone();
        }
    }
    out
}

/// The query's facts, standing for a live connection's certificate and request's token. The
/// certificate is taken as presented and verified; the token as signed and within its time.
struct Facts<'q> {
    loaded: &'q Loaded,
    query: &'q Query,
    svid: Option<Arc<SvidFacts>>,
}

impl Authenticator for Facts<'_> {
    fn svid(&self) -> Option<&Arc<SvidFacts>> {
        self.svid.as_ref()
    }

    fn check_svid(&self, compiled: &Compiled<'_>, _now: i64) -> Result<(), Refused> {
        let Some(svid) = &self.svid else {
            return Err(Refusal::NoCredential.into());
        };
        // The serial is unknown offline: only a revoked SPIFFE ID can be explained.
        match compiled
            .config
            .revocation
            .check(svid.spiffe_id.as_str(), "")
        {
            Some(why) => Err(Refused::new(Refusal::CredentialRevoked, why.to_string())),
            None => Ok(()),
        }
    }

    fn token(
        &self,
        compiled: &Compiled<'_>,
        svid: Option<&SvidFacts>,
        _now: i64,
    ) -> Result<Option<Arc<VerifiedToken>>, Refused> {
        let Some(token) = &self.query.token else {
            return Ok(None);
        };
        let Some(issuer) = self
            .loaded
            .config
            .token_issuers
            .iter()
            .find(|i| *i.name == token.issuer)
        else {
            return Err(Refused::new(
                Refusal::Token(TokenReason::UnknownIssuer),
                format!("no [token_issuer.{}] in this config", token.issuer),
            ));
        };
        let spiffe_id = token_spiffe_id(issuer, &token.subject)
            .map_err(|detail| Refused::new(Refusal::Token(TokenReason::BadSubject), detail))?;
        let verified = VerifiedToken {
            issuer: issuer.clone(),
            iss: None,
            subject: token.subject.clone(),
            spiffe_id,
            jti: None,
            expires_at: i64::MAX,
            not_before: None,
            cnf_x5t_s256: None,
            claims: token.claims.clone(),
        };
        check_verified_token(compiled, &verified, svid).map_err(Refused::from)?;
        Ok(Some(Arc::new(verified)))
    }
}

/// The SPIFFE ID a token's subject names: only for an issuer that speaks for a trust domain,
/// and then it must be a workload of it (as the gateway's verifier requires).
fn token_spiffe_id(issuer: &IssuerSpec, subject: &str) -> Result<Option<SpiffeId>, String> {
    let Some(td) = &issuer.trust_domain else {
        return Ok(None);
    };
    let id = SpiffeId::parse(subject)
        .map_err(|e| format!("`sub` `{subject}` is not a SPIFFE ID: {e}"))?;
    if id.trust_domain() != td || id.path().is_empty() {
        return Err(format!(
            "`sub` `{id}` is not a workload of trust domain `{td}`"
        ));
    }
    Ok(Some(id))
}

fn describe_decision(loaded: &Loaded, decision: &Decision, out: &mut Explanation) {
    out.decision = decision.verdict.as_str();
    (out.reason, out.status) = match (decision.verdict, &decision.rule) {
        (Verdict::Allow, _) => ("allowed", None),
        (Verdict::Deny, Some(_)) => ("policy_denied", Some(403)),
        (Verdict::Deny, None) => ("default_deny", Some(403)),
    };
    out.rule = decision.rule.as_deref().and_then(|id| rule_ref(loaded, id));
    out.audit = decision.audit.as_ref().and_then(|a| {
        Some(AuditRef {
            rule: rule_ref(loaded, &a.rule)?,
            decision: a.would.as_str(),
        })
    });
}

/// The limits the gateway counts an allowed request against, as `Limiters::acquire` does: the
/// route's, then the deciding rule's.
fn limits_of(loaded: &Loaded, route: Option<&Route>, rule: Option<&str>) -> Vec<LimitRef> {
    let mut out = Vec::new();
    if let Some((route, limit)) = route.and_then(|r| Some((r, r.limit.as_ref()?))) {
        out.push(LimitRef {
            owner: format!("route {}", route.name),
            limit: limit.to_string(),
        });
    }
    let rule = rule.and_then(|id| Some(&loaded.rules()[loaded.rule_index(id)?]));
    if let Some((rule, limit)) = rule.and_then(|r| Some((r, r.limit.as_ref()?))) {
        out.push(LimitRef {
            owner: format!("rule {}", rule.id),
            limit: limit.to_string(),
        });
    }
    out
}

fn rule_ref(loaded: &Loaded, id: &str) -> Option<RuleRef> {
    let index = loaded.rule_index(id)?;
    let origin = loaded.origin(index);
    Some(RuleRef {
        id: id.to_string(),
        file: origin.file.display().to_string(),
        line: origin.line,
        description: loaded.rules()[index].description.clone(),
    })
}

/// Rules on the probe's route and on every route (those whose `routes` matcher accepts it),
/// in file order, each with the matchers that rejected the request.
fn nearby(loaded: &Loaded, probe: &Probe) -> Vec<RuleCheck> {
    let facts = probe.facts();
    let mut out = Vec::new();
    for (index, rule) in loaded.rules().iter().enumerate() {
        if !rule.accepts(policy::Matcher::Routes, &facts) {
            continue;
        }
        let mismatches = rule.mismatches(&facts);
        let origin = loaded.origin(index);
        out.push(RuleCheck {
            id: rule.id.to_string(),
            effect: effect_name(rule),
            mode: mode_name(rule),
            file: origin.file.display().to_string(),
            line: origin.line,
            matches: mismatches.is_empty(),
            rejected_by: mismatches
                .into_iter()
                .map(|m| Rejection {
                    matcher: m.key().to_string(),
                    rule_values: rule_values(rule, m),
                    request_value: fact_value(probe, m),
                })
                .collect(),
        });
    }
    out
}

pub(crate) fn effect_name(rule: &Rule) -> &'static str {
    match rule.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

pub(crate) fn mode_name(rule: &Rule) -> &'static str {
    match rule.mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

fn at(file: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    }
}

/// The human form.
pub fn render(e: &Explanation) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "request   {} {}", e.method, e.target);
    let _ = writeln!(s, "host      {}", e.host.as_deref().unwrap_or("(none)"));
    let zone = match (&e.source_zone, e.zone_map_entry) {
        (Some(z), Some(i)) => format!(" (zone {z}, zone_map[{i}])"),
        (Some(z), None) => format!(" (zone {z}: no zone_map entry matches)"),
        (None, _) => String::new(),
    };
    let identity = e.spiffe_id.as_deref().unwrap_or("(no SPIFFE ID)");
    let _ = writeln!(s, "identity  {identity}{zone}");
    if let Some(t) = &e.token {
        let _ = writeln!(
            s,
            "token     issuer {}, subject {} ({})",
            t.issuer, t.subject, t.credential
        );
    }
    if let Some(path) = &e.path {
        let _ = writeln!(s, "path      {path}");
    }
    if let Some(route) = &e.route {
        let _ = writeln!(s, "route     {route}");
    }
    let answer = match e.status {
        Some(status) => format!("{status}, {}", e.reason),
        None if e.reason == "svid_refused" => "TLS handshake refused, svid_refused".to_string(),
        None => format!("proxied, {}", e.reason),
    };
    let by = match &e.rule {
        Some(r) => format!(" by rule {} ({})", r.id, at(&r.file, r.line)),
        None if e.reason == "default_deny" => " by default: no enforced allow rule matches".into(),
        None => String::new(),
    };
    let _ = writeln!(s, "decision  {} ({answer}){by}", e.decision);
    if let Some(detail) = &e.detail {
        let _ = writeln!(s, "detail    {detail}");
    }
    for l in &e.limits {
        let _ = writeln!(s, "limit     {}: {}", l.owner, l.limit);
    }
    if let Some(a) = &e.audit {
        let _ = writeln!(
            s,
            "audit     would be {} if audit rules were enforced: rule {} ({})",
            a.decision,
            a.rule.id,
            at(&a.rule.file, a.rule.line)
        );
    }
    if let Some(route) = &e.route {
        let _ = writeln!(
            s,
            "\nrules on route {route} and on every route, in file order:"
        );
        if e.rules.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        let width = e.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
        for r in &e.rules {
            let verdict = if r.matches { "match" } else { "-" };
            let why: Vec<String> = r.rejected_by.iter().map(rejection_text).collect();
            let _ = writeln!(
                s,
                "  {verdict:<5}  {:<width$}  {:<5} {:<7}  {}{}{}",
                r.id,
                r.effect,
                r.mode,
                at(&r.file, r.line),
                if why.is_empty() { "" } else { "  " },
                why.join("; "),
            );
        }
    }
    s
}

fn rejection_text(r: &Rejection) -> String {
    match (&r.rule_values, &r.request_value) {
        (Some(values), Some(value)) => {
            format!("{} [{}] rejects `{value}`", r.matcher, values.join(", "))
        }
        _ => format!("{} rejects the request", r.matcher),
    }
}

#[cfg(test)]
mod tests;
