//! Identity events: the record of every cross-zone attempt and every in-zone refusal. The
//! schema lives here; the sink that writes them is the gateway's.
//!
//! The schema is versioned (`schema` field) and documented in docs/events.md; fields are only
//! ever added within a version.

use std::net::SocketAddr;

use serde::Serialize;

mod line;
pub mod ocsf;
mod time;

pub use line::{socket_addr_text, AddrText, Plain};
pub use time::{now_rfc3339, rfc3339_seconds, Clock, SecondsText};

/// The schema identifier written in every event.
pub const SCHEMA: &str = "zonegate.identity/v1";
/// The `kind` of a request's identity event.
pub const KIND_REQUEST: &str = "request";
/// The `kind` of a configuration reload's event.
pub const KIND_CONFIG_RELOAD: &str = "config_reload";
/// The `kind` of a refused handshake's event.
pub const KIND_HANDSHAKE_REFUSED: &str = "handshake_refused";

/// One request's identity event. Absent facts are `null`, never guessed.
///
/// Its strings are borrowed where the request already holds them: the gateway writes an event
/// per cross-zone request, and builds it from the admission without copying them. Its time and
/// ids are [`Plain`] (the gateway makes them from characters JSON never escapes), so the line
/// copies them without looking.
/// [`IdentityEvent::write_json_line`] encodes it exactly as serde does, faster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdentityEvent<'a> {
    pub schema: &'static str,
    /// Always `request` for identity events (other record kinds share the stream).
    pub kind: &'static str,
    /// RFC 3339 UTC with milliseconds.
    pub time: Plain<'a>,
    pub event_id: Plain<'a>,
    pub request_id: Plain<'a>,
    /// `allow` or `deny`: what the gateway enforced.
    pub decision: &'static str,
    /// A stable reason category (see docs/events.md).
    pub reason: &'static str,
    /// Free-text detail for operators (never sent to the client).
    pub detail: Option<&'a str>,
    /// The rule that decided; `null` for the default deny or when no policy ran.
    pub rule_id: Option<&'a str>,
    /// The audit rule that would have changed the decision, and to what.
    pub audit_rule_id: Option<&'a str>,
    pub audit_decision: Option<&'static str>,
    pub cross_zone: bool,
    pub credential: Option<&'static str>,
    pub source_spiffe_id: Option<&'a str>,
    pub source_zone: Option<&'a str>,
    pub peer_addr: Option<SocketAddr>,
    pub cert_serial: Option<&'a str>,
    /// RFC 3339 UTC.
    pub cert_not_after: Option<&'a str>,
    /// The configured name of the token's issuer, when a token authenticated the request.
    pub token_issuer: Option<&'a str>,
    pub token_subject: Option<&'a str>,
    pub token_jti: Option<&'a str>,
    /// RFC 3339 UTC.
    pub token_expiry: Option<&'a str>,
    pub destination_zone: &'a str,
    pub route: Option<&'a str>,
    /// The upstream address that answered, else the route's pool name.
    pub upstream: Option<&'a str>,
    pub method: &'a str,
    pub host: Option<&'a str>,
    /// The normalised path (what policy saw and the upstream received); for a path that could
    /// not be normalised, `null`, with `raw_path` set instead.
    pub path: Option<&'a str>,
    pub raw_path: Option<&'a str>,
    pub http_version: &'static str,
    pub status: u16,
    pub duration_ms: f64,
    pub policy_generation: u64,
}

/// A TLS handshake refused because the client certificate is not an acceptable X.509-SVID.
/// No HTTP request exists yet, so only certificate facts are known.
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeEvent {
    pub schema: &'static str,
    /// Always `handshake_refused`.
    pub kind: &'static str,
    pub time: String,
    pub event_id: String,
    pub decision: &'static str,
    /// `svid_refused` (the certificate, or the proof of its key, was refused),
    /// `no_certificate` (none on a listener that requires one), `handshake_timeout` or
    /// `tls_error` (anything else that ended the handshake).
    pub reason: &'static str,
    pub detail: String,
    /// The SPIFFE ID the certificate claims (unverified), when it has one.
    pub claimed_spiffe_id: Option<String>,
    /// The client's address, where the listener knows it.
    pub peer_addr: Option<String>,
    pub destination_zone: String,
}

/// A configuration reload: applied, or refused with the errors `zonegate check` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadEvent {
    pub schema: &'static str,
    /// Always `config_reload`.
    pub kind: &'static str,
    pub time: String,
    pub event_id: String,
    /// `applied` or `refused`.
    pub result: &'static str,
    /// What asked for it: `file`, `signal`, `admin`, or `workload_api` (new material from
    /// the agent).
    pub trigger: &'static str,
    /// The generation in force after the attempt.
    pub generation: u64,
    pub policy_hash: String,
    pub errors: Vec<String>,
}

/// A host-name upstream address that failed to resolve, or resolved again after failing.
#[derive(Clone, Debug, Serialize)]
pub struct ResolutionEvent {
    pub schema: &'static str,
    /// Always `upstream_resolution`.
    pub kind: &'static str,
    pub time: String,
    pub event_id: String,
    /// `failed` (the last good addresses stay in use) or `recovered`.
    pub result: &'static str,
    /// The `host:port` from the upstream's `addresses`.
    pub name: String,
    pub error: Option<String>,
    /// How many addresses the name stands for after this.
    pub addresses: usize,
    pub destination_zone: String,
}

/// The `kind` of a Workload API event.
pub const KIND_WORKLOAD_API: &str = "workload_api";

/// The SPIFFE Workload API as the source of the gateway's identity: the agent lost or back,
/// and the gateway's SVID close to expiry with no replacement.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadApiEvent {
    pub schema: &'static str,
    /// Always `workload_api`.
    pub kind: &'static str,
    pub time: String,
    pub event_id: String,
    /// `connected` (material streams again), `lost` (the last good material stays in force)
    /// or `svid_expiring` (less than a quarter of the SVID's lifetime left, no new one).
    pub result: &'static str,
    pub endpoint: String,
    pub error: Option<String>,
    /// The gateway's SPIFFE ID and the end of its SVID, from the material in force.
    pub spiffe_id: Option<String>,
    pub svid_not_after: Option<String>,
    pub destination_zone: String,
}

impl WorkloadApiEvent {
    pub fn severity(&self) -> Severity {
        match self.result {
            "connected" => Severity::Informational,
            "lost" => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// The end of a request whose response streamed for a long time, or that did not end
/// normally: the request's own event (same `request_id`) was written when it was decided.
#[derive(Clone, Debug, Serialize)]
pub struct RequestEndEvent {
    pub schema: &'static str,
    /// Always `request_end`.
    pub kind: &'static str,
    pub time: String,
    pub event_id: String,
    pub request_id: String,
    pub route: Option<String>,
    pub status: u16,
    /// `complete`, `abandoned` (the client went away or reset the stream), `upstream_error`,
    /// `credential_expired` or `credential_revoked` (the gateway ended it).
    pub end: &'static str,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// From the request head to the end of the response.
    pub duration_ms: f64,
    pub destination_zone: String,
}

/// The `kind` of a request end's event.
pub const KIND_REQUEST_END: &str = "request_end";

/// The `kind` of a host-name resolution's event.
pub const KIND_UPSTREAM_RESOLUTION: &str = "upstream_resolution";

/// The `kind` of a request head refused by the HTTP parser.
pub const KIND_REQUEST_UNPARSED: &str = "request_unparsed";

/// A request head the HTTP/1.1 parser refused before there was a request to admit: past the
/// hard size limits (twice the configured ones), or not HTTP. The parser has answered (431 or
/// 400) and closed the connection; this says who sent it.
#[derive(Clone, Debug, Serialize)]
pub struct UnparsedEvent {
    pub schema: &'static str,
    /// Always `request_unparsed`.
    pub kind: &'static str,
    pub time: String,
    pub event_id: String,
    pub decision: &'static str,
    /// `headers_too_large` or `bad_request`.
    pub reason: &'static str,
    /// What the parser answered.
    pub status: u16,
    pub detail: String,
    /// The connection's verified SVID, when it has one.
    pub source_spiffe_id: Option<String>,
    pub peer_addr: String,
    pub http_version: &'static str,
    pub destination_zone: String,
}

/// The `kind` of the sink's own record of events it lost.
pub const KIND_EVENTS_DROPPED: &str = "events_dropped";

/// Events the sink lost (a full queue, a failed write) since its last such record: written
/// into the same stream, so that whoever reads it sees the loss.
#[derive(Clone, Debug, Serialize)]
pub struct DropReport {
    pub schema: &'static str,
    pub time: String,
    /// Always `events_dropped`.
    pub kind: &'static str,
    pub dropped: u64,
    pub dropped_total: u64,
    /// `queue_full`, or the write error that lost them (`write_failed: ...`).
    pub reason: String,
}

/// How much a record matters to whoever watches the stream: the syslog severity of its
/// message and its OCSF `severity_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Traffic as the policy wants it.
    Informational,
    /// Worth a look: a failure that is not a refusal (an upstream error, a stream cut short).
    Notice,
    /// A refusal: the gateway kept something out.
    Warning,
    /// Records were lost, or the gateway could not do what it was asked.
    Error,
}

impl Severity {
    /// The RFC 5424 severity code.
    pub fn syslog_code(self) -> u8 {
        match self {
            Severity::Informational => 6,
            Severity::Notice => 5,
            Severity::Warning => 4,
            Severity::Error => 3,
        }
    }

    /// OCSF `severity_id`: Informational 1, Low 2, Medium 3, High 4.
    pub fn ocsf_id(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Notice => 2,
            Severity::Warning => 3,
            Severity::Error => 4,
        }
    }

    /// OCSF `severity`, the caption of [`ocsf_id`](Self::ocsf_id).
    pub fn ocsf_name(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Notice => "Low",
            Severity::Warning => "Medium",
            Severity::Error => "High",
        }
    }
}

impl IdentityEvent<'_> {
    /// A refusal is a warning, an allowed request that failed upstream a notice.
    pub fn severity(&self) -> Severity {
        match (self.decision, self.status) {
            ("deny", _) => Severity::Warning,
            (_, status) if status >= 500 => Severity::Notice,
            _ => Severity::Informational,
        }
    }
}

impl HandshakeEvent {
    /// A refused credential is a warning; a connection that never finished its handshake or
    /// broke it, a notice (port scans, health probes and slow clients look like that).
    pub fn severity(&self) -> Severity {
        match self.reason {
            "handshake_timeout" | "tls_error" | "proxy_header" => Severity::Notice,
            _ => Severity::Warning,
        }
    }
}

impl RequestEndEvent {
    /// A stream the gateway ended or that broke is a notice.
    pub fn severity(&self) -> Severity {
        match self.end {
            "complete" => Severity::Informational,
            _ => Severity::Notice,
        }
    }
}

impl ReloadEvent {
    /// A refused reload is an error: the gateway runs on its last good configuration.
    pub fn severity(&self) -> Severity {
        match self.result {
            "applied" => Severity::Informational,
            _ => Severity::Error,
        }
    }
}

impl ResolutionEvent {
    pub fn severity(&self) -> Severity {
        match self.result {
            "failed" => Severity::Warning,
            _ => Severity::Informational,
        }
    }
}

/// One line of the event stream.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Record {
    Request(Box<IdentityEvent<'static>>),
    Handshake(HandshakeEvent),
    Reload(ReloadEvent),
    Resolution(ResolutionEvent),
    WorkloadApi(WorkloadApiEvent),
    RequestEnd(RequestEndEvent),
    Unparsed(Box<UnparsedEvent>),
    Dropped(DropReport),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Request(e) => e.kind,
            Record::Handshake(e) => e.kind,
            Record::Reload(e) => e.kind,
            Record::Resolution(e) => e.kind,
            Record::WorkloadApi(e) => e.kind,
            Record::RequestEnd(e) => e.kind,
            Record::Unparsed(e) => e.kind,
            Record::Dropped(e) => e.kind,
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Record::Request(e) => e.severity(),
            Record::Handshake(e) => e.severity(),
            Record::Reload(e) => e.severity(),
            Record::Resolution(e) => e.severity(),
            Record::WorkloadApi(e) => e.severity(),
            Record::RequestEnd(e) => e.severity(),
            Record::Unparsed(_) => Severity::Warning,
            Record::Dropped(_) => Severity::Error,
        }
    }

    /// Appends the record as one line in `format`.
    pub fn write_line(&self, format: EventFormat, out: &mut Vec<u8>) {
        match (format, self) {
            (EventFormat::Zonegate, Record::Request(event)) => event.write_json_line(out),
            (EventFormat::Zonegate, record) => {
                let mark = out.len();
                match serde_json::to_writer(&mut *out, record) {
                    Ok(()) => out.push(b'\n'),
                    // Keep the stream whole-line: drop the half-encoded bytes.
                    Err(_) => out.truncate(mark),
                }
            }
            (EventFormat::Ocsf, record) => ocsf::write_record(record, out),
        }
    }
}

/// How records are written: zonegate's own schema (this module, docs/events.md), or OCSF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventFormat {
    #[default]
    Zonegate,
    Ocsf,
}

impl IdentityEvent<'_> {
    /// Appends the event as one line in `format`: what the request path writes.
    pub fn write_line(&self, format: EventFormat, out: &mut Vec<u8>) {
        match format {
            EventFormat::Zonegate => self.write_json_line(out),
            EventFormat::Ocsf => ocsf::write_request(self, out),
        }
    }
}

impl From<DropReport> for Record {
    fn from(report: DropReport) -> Self {
        Record::Dropped(report)
    }
}

impl From<UnparsedEvent> for Record {
    fn from(event: UnparsedEvent) -> Self {
        Record::Unparsed(Box::new(event))
    }
}

impl From<RequestEndEvent> for Record {
    fn from(event: RequestEndEvent) -> Self {
        Record::RequestEnd(event)
    }
}

impl From<WorkloadApiEvent> for Record {
    fn from(event: WorkloadApiEvent) -> Self {
        Record::WorkloadApi(event)
    }
}

impl From<ResolutionEvent> for Record {
    fn from(event: ResolutionEvent) -> Self {
        Record::Resolution(event)
    }
}

impl From<ReloadEvent> for Record {
    fn from(event: ReloadEvent) -> Self {
        Record::Reload(event)
    }
}

impl From<IdentityEvent<'static>> for Record {
    fn from(event: IdentityEvent<'static>) -> Self {
        Record::Request(Box::new(event))
    }
}

impl From<HandshakeEvent> for Record {
    fn from(event: HandshakeEvent) -> Self {
        Record::Handshake(event)
    }
}

#[cfg(test)]
mod tests;
