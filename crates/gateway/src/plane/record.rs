//! What one request leaves behind: its identity event and its metrics.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use http::Version;

use crate::admission::{Admission, Refusal, Refused};
use crate::events::{AddrText, Clock, IdentityEvent, Plain, SecondsText, KIND_REQUEST, SCHEMA};
use crate::identity::Identity;
use crate::ids::Id;
use crate::policy::Verdict;
use crate::reload::Snapshot;
use crate::traces::RequestSpan;

/// Longest raw path kept in an event for a request whose path was refused.
const MAX_RAW_PATH_IN_EVENT: usize = 1024;

/// The facts of one request that admission does not produce.
pub struct Exchange<'r> {
    pub request_id: &'r Id,
    pub method: &'r str,
    pub host: Option<&'r str>,
    pub raw_target: &'r str,
    pub version: Version,
    pub peer_addr: SocketAddr,
    /// Drawn for `[events] in_zone_sample`: recorded even if allowed within the zone.
    pub sampled: bool,
    /// The request's span, when `[tracing]` records it.
    pub span: Option<&'r RequestSpan>,
}

/// Whether this request falls in the `[events] in_zone_sample` share.
pub fn sampled(share: f64) -> bool {
    share >= 1.0 || (share > 0.0 && rand::random::<f64>() < share)
}

/// How the request ended: refused (by admission or after it), or answered by the upstream.
pub struct Ending<'e> {
    pub refused: Option<&'e Refused>,
    pub status: u16,
    pub upstream: Option<SocketAddr>,
    pub elapsed: Duration,
}

impl Ending<'_> {
    /// The enforced decision and the reason category, as events and metrics report them.
    pub fn outcome(&self, admission: &Admission<'_>) -> (&'static str, &'static str) {
        let refusal = self.refused.map(|r| r.refusal);
        let verdict = match (&admission.decision, refusal) {
            (_, Some(r)) if r.is_denial() => Verdict::Deny,
            (Some(d), _) => d.verdict,
            (None, _) => Verdict::Deny,
        };
        (verdict.as_str(), refusal.map_or("allowed", Refusal::reason))
    }
}

/// Whether an admitted request will be recorded whatever its answer (it is cross-zone,
/// carries no identity, or was sampled): what `[events] fail_closed` refuses while events
/// are lost.
pub fn would_be_evented(admission: &Admission<'_>, exchange: &Exchange<'_>) -> bool {
    admission.cross_zone || admission.identity.is_none() || exchange.sampled
}

/// Every cross-zone attempt, every refusal and every upstream failure is recorded, and the
/// sampled share of the rest.
pub fn is_event_worthy(
    admission: &Admission<'_>,
    exchange: &Exchange<'_>,
    ending: &Ending<'_>,
) -> bool {
    would_be_evented(admission, exchange) || ending.refused.is_some()
}

/// The texts only an event holds (its time, its id, the upstream's address, the credentials'
/// expiry), kept per thread and set again for each event: within a second the time changes
/// only in its milliseconds, and the upstream and the expiry are usually the last event's, so
/// for most events nothing is allocated or formatted for them.
pub struct EventTexts {
    clock: Clock,
    event_id: Option<Id>,
    /// Each kept text, and whether this event has it.
    upstream: (AddrText, bool),
    cert_not_after: (SecondsText, bool),
    token_expiry: (SecondsText, bool),
}

thread_local! {
    // Const: read on every evented request, so no lazy set-up to check each time.
    static TEXTS: RefCell<EventTexts> = const { RefCell::new(EventTexts::new()) };
}

impl EventTexts {
    const fn new() -> EventTexts {
        EventTexts {
            clock: Clock::new(),
            event_id: None,
            upstream: (AddrText::new(), false),
            cert_not_after: (SecondsText::new(), false),
            token_expiry: (SecondsText::new(), false),
        }
    }

    /// Runs `f` with this thread's texts, set for the event of `admission` and `ending`.
    pub fn with<R>(
        admission: &Admission<'_>,
        ending: &Ending<'_>,
        f: impl FnOnce(&EventTexts) -> R,
    ) -> R {
        TEXTS.with_borrow_mut(|texts| {
            texts.set(admission, ending);
            f(texts)
        })
    }

    fn set(&mut self, admission: &Admission<'_>, ending: &Ending<'_>) {
        let identity = admission.identity.as_ref();
        let svid = identity.and_then(|i| i.svid.as_deref());
        let token = identity.and_then(|i| i.token.as_deref());
        self.clock.now();
        self.event_id = Some(Id::next());
        self.upstream.1 = ending
            .upstream
            .map(|addr| self.upstream.0.set(addr))
            .is_some();
        self.cert_not_after.1 = svid
            .and_then(|s| self.cert_not_after.0.set(s.not_after_unix))
            .is_some();
        self.token_expiry.1 = token
            .and_then(|t| self.token_expiry.0.set(t.expires_at))
            .is_some();
    }

    fn upstream(&self) -> Option<&str> {
        self.upstream.1.then(|| self.upstream.0.as_str())
    }

    fn cert_not_after(&self) -> Option<&str> {
        self.cert_not_after
            .1
            .then(|| self.cert_not_after.0.as_str())
            .flatten()
    }

    fn token_expiry(&self) -> Option<&str> {
        self.token_expiry
            .1
            .then(|| self.token_expiry.0.as_str())
            .flatten()
    }
}

pub fn identity_event<'e>(
    snapshot: &'e Snapshot,
    admission: &'e Admission<'_>,
    exchange: &'e Exchange<'_>,
    ending: &'e Ending<'_>,
    texts: &'e EventTexts,
) -> IdentityEvent<'e> {
    let config = &snapshot.config;
    let (decision_name, reason) = ending.outcome(admission);
    let identity = admission.identity.as_ref();
    let svid = identity.and_then(|i| i.svid.as_deref());
    let token = identity.and_then(|i| i.token.as_deref());
    let decision = admission.decision.as_ref();
    let refusal = ending.refused.map(|r| r.refusal);
    IdentityEvent {
        schema: SCHEMA,
        kind: KIND_REQUEST,
        time: texts.clock.as_plain(),
        event_id: texts
            .event_id
            .as_ref()
            .map_or_else(Plain::default, Id::as_plain),
        request_id: exchange.request_id.as_plain(),
        decision: decision_name,
        reason,
        detail: ending.refused.and_then(|r| r.detail.as_deref()),
        rule_id: decision.and_then(|d| d.rule.as_deref()),
        audit_rule_id: decision.and_then(|d| d.audit.as_ref().map(|a| &*a.rule)),
        audit_decision: decision.and_then(|d| d.audit.as_ref().map(|a| a.would.as_str())),
        cross_zone: admission.cross_zone,
        credential: identity.map(Identity::credential_kind),
        source_spiffe_id: identity.and_then(|i| i.spiffe_id.as_ref().map(|id| id.as_str())),
        source_zone: admission.source_zone.as_deref(),
        peer_addr: Some(exchange.peer_addr),
        cert_serial: svid.map(|s| s.serial_hex.as_str()),
        cert_not_after: texts.cert_not_after(),
        token_issuer: token.map(|t| &*t.issuer.name),
        token_subject: token.map(|t| t.subject.as_str()),
        token_jti: token.and_then(|t| t.jti.as_deref()),
        token_expiry: texts.token_expiry(),
        destination_zone: config.zone.as_str(),
        route: admission.route.map(|r| &*r.name),
        upstream: texts
            .upstream()
            .or_else(|| admission.route.map(|r| r.upstream.as_str())),
        method: exchange.method,
        host: exchange.host,
        path: admission.target.as_ref().map(|t| t.path.as_str()),
        raw_path: match (&admission.target, refusal) {
            (None, Some(Refusal::BadPath | Refusal::TargetTooLong)) => {
                Some(truncate(exchange.raw_target, MAX_RAW_PATH_IN_EVENT))
            }
            _ => None,
        },
        http_version: version_name(exchange.version),
        status: ending.status,
        // Whole microseconds: finer is noise at this scale, and the line writes them from the
        // integer.
        duration_ms: micros(ending.elapsed) as f64 / 1000.0,
        policy_generation: snapshot.generation,
    }
}

/// `elapsed` in whole microseconds, as a `u64` (`Duration::as_micros`' `u128` takes a
/// software conversion to `f64`; a `u64` of microseconds lasts 584,000 years).
fn micros(elapsed: Duration) -> u64 {
    elapsed
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(elapsed.subsec_micros()))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
