//! Per-request state: the one snapshot the request sees from start to end, and the facts the
//! identity event is made of.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Version;
use pingora_http::RequestHeader;

use super::answer::Refusal;
use super::ids::next_id;
use crate::config::GatewayConfig;
use crate::events::{now_rfc3339, rfc3339_seconds, IdentityEvent, KIND_REQUEST, SCHEMA};
use crate::identity::Identity;
use crate::policy::{Decision, NormalizedTarget, Verdict};
use crate::reload::Snapshot;

/// Longest raw path kept in an event for a request whose path was refused.
const MAX_RAW_PATH_IN_EVENT: usize = 1024;

pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: String,
    pub method: String,
    pub host: Option<String>,
    pub raw_target: String,
    pub identity: Option<Identity>,
    pub source_zone: Option<String>,
    pub cross_zone: bool,
    pub target: Option<NormalizedTarget>,
    pub route: Option<Arc<str>>,
    pub upstream: Option<String>,
    pub upstream_addr: Option<SocketAddr>,
    pub decision: Option<Decision>,
    pub refusal: Option<Refusal>,
    pub detail: Option<String>,
    /// `Authorization` is the gateway's on this route and is removed before proxying.
    pub strip_authorization: bool,
}

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        RequestCtx {
            snapshot,
            started: Instant::now(),
            request_id: String::new(),
            method: String::new(),
            host: None,
            raw_target: String::new(),
            identity: None,
            source_zone: None,
            cross_zone: false,
            target: None,
            route: None,
            upstream: None,
            upstream_addr: None,
            decision: None,
            refusal: None,
            detail: None,
            strip_authorization: false,
        }
    }

    /// Records who the request is from, and the source zone that follows from it.
    pub fn set_identity(&mut self, identity: Identity, config: &GatewayConfig) {
        let zone = config.zone_of_identity(&identity).to_string();
        self.cross_zone = zone != config.zone;
        self.source_zone = Some(zone);
        self.identity = Some(identity);
    }

    /// Records what the client asked for, before any check.
    pub fn describe_request(&mut self, req: &RequestHeader) {
        self.started = Instant::now();
        self.request_id = next_id();
        self.method = req.method.as_str().to_string();
        // The target exactly as the client sent it: normalisation must see every byte, not a
        // parser's reading of it. Invalid UTF-8 becomes U+FFFD, which normalisation refuses.
        self.raw_target = String::from_utf8_lossy(req.raw_path()).into_owned();
        // HTTP/2 carries the authority in the URI; HTTP/1.1 in the Host header.
        let host = req.uri.host().map(str::to_string).or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| strip_port(h).to_string())
        });
        self.host = host.map(|h| h.to_ascii_lowercase());
    }

    /// Every cross-zone attempt, every refusal and every upstream failure is recorded.
    pub fn is_event_worthy(&self) -> bool {
        self.cross_zone || self.refusal.is_some() || self.identity.is_none()
    }

    /// The enforced decision and the reason category, as events and metrics report them.
    pub fn outcome(&self) -> (&'static str, &'static str) {
        let verdict = match (&self.decision, self.refusal) {
            (_, Some(r)) if r.is_denial() => Verdict::Deny,
            (Some(d), _) => d.verdict,
            (None, _) => Verdict::Deny,
        };
        let reason = self.refusal.map_or("allowed", Refusal::reason);
        (verdict.as_str(), reason)
    }

    pub fn to_event(
        &self,
        status: u16,
        peer_addr: Option<String>,
        version: Version,
        elapsed: Duration,
    ) -> IdentityEvent {
        let config = &self.snapshot.config;
        let (decision_name, reason) = self.outcome();
        let svid = self.identity.as_ref().and_then(|i| i.svid.as_deref());
        let token = self.identity.as_ref().and_then(|i| i.token.as_deref());
        let decision = self.decision.as_ref();
        IdentityEvent {
            schema: SCHEMA,
            kind: KIND_REQUEST,
            time: now_rfc3339(),
            event_id: next_id(),
            request_id: self.request_id.clone(),
            decision: decision_name,
            reason,
            detail: self.detail.clone(),
            rule_id: decision.and_then(|d| d.rule.as_deref().map(str::to_string)),
            audit_rule_id: decision.and_then(|d| d.audit.as_ref().map(|a| a.rule.to_string())),
            audit_decision: decision.and_then(|d| d.audit.as_ref().map(|a| a.would.as_str())),
            cross_zone: self.cross_zone,
            credential: self.identity.as_ref().map(Identity::credential_kind),
            source_spiffe_id: self
                .identity
                .as_ref()
                .and_then(|i| i.spiffe_id.as_ref().map(|id| id.to_string())),
            source_zone: self.source_zone.clone(),
            peer_addr,
            cert_serial: svid.map(|s| s.serial_hex.clone()),
            cert_not_after: svid.and_then(|s| rfc3339_seconds(s.not_after_unix)),
            token_issuer: token.map(|t| t.issuer.name.to_string()),
            token_subject: token.map(|t| t.subject.clone()),
            token_jti: token.and_then(|t| t.jti.clone()),
            token_expiry: token.and_then(|t| rfc3339_seconds(t.expires_at)),
            destination_zone: config.zone.clone(),
            route: self.route.as_deref().map(str::to_string),
            upstream: self
                .upstream_addr
                .map(|a| a.to_string())
                .or_else(|| self.upstream.clone()),
            method: self.method.clone(),
            host: self.host.clone(),
            path: self.target.as_ref().map(|t| t.path.clone()),
            raw_path: match (&self.target, self.refusal) {
                (None, Some(Refusal::BadPath)) => {
                    Some(truncate(&self.raw_target, MAX_RAW_PATH_IN_EVENT))
                }
                _ => None,
            },
            http_version: version_name(version),
            status,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            policy_generation: self.snapshot.generation,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop a port after them.
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}
