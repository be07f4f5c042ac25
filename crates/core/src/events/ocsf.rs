//! The event stream as OCSF (Open Cybersecurity Schema Framework) 1.3.0, for SIEMs that
//! ingest it: `[events] format = "ocsf"`. Each record maps to the class that fits it, its
//! identity facts to OCSF's objects, and whatever OCSF has no attribute for to `unmapped`,
//! so nothing the zonegate schema says is lost. docs/events.md has the mapping table.
//!
//! - `request`, `request_unparsed`, `request_end`: HTTP Activity (4002), with the
//!   security-control profile's `action_id` and `disposition_id` for the decision and
//!   `authorizations` for the deciding (and the audit) rule;
//! - `handshake_refused`: Authentication (3002), a failed logon by certificate;
//! - `config_reload`, `upstream_resolution`, `workload_api`, `events_dropped`: Base Event (0),
//!   with the record in `unmapped`: OCSF 1.3.0 has no class for them.
//!
//! Absent facts are omitted, not `null`, as OCSF producers do.

use serde_json::{json, Map, Value};

use super::{
    DropReport, HandshakeEvent, IdentityEvent, Record, ReloadEvent, RequestEndEvent,
    ResolutionEvent, Severity, UnparsedEvent, WorkloadApiEvent,
};

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.3.0";

const CATEGORY_NETWORK: u32 = 4;
const CATEGORY_IAM: u32 = 3;
const CLASS_HTTP_ACTIVITY: u32 = 4002;
const CLASS_AUTHENTICATION: u32 = 3002;
const CLASS_BASE_EVENT: u32 = 0;

/// `action_id` (security-control profile).
const ACTION_ALLOWED: u32 = 1;
const ACTION_DENIED: u32 = 2;
/// `disposition_id` (security-control profile).
const DISPOSITION_ALLOWED: u32 = 1;
const DISPOSITION_BLOCKED: u32 = 2;
const DISPOSITION_UNAUTHORIZED: u32 = 26;
const DISPOSITION_ERROR: u32 = 27;
/// `status_id`.
const STATUS_SUCCESS: u32 = 1;
const STATUS_FAILURE: u32 = 2;
/// `activity_id` 99: not one OCSF names (see `activity_name`).
const ACTIVITY_OTHER: u32 = 99;

/// Appends `record` as one OCSF JSON line.
pub fn write_record(record: &Record, out: &mut Vec<u8>) {
    let value = match record {
        Record::Request(event) => request(event),
        Record::Handshake(event) => handshake(event),
        Record::Unparsed(event) => unparsed(event),
        Record::RequestEnd(event) => request_end(event),
        Record::Reload(event) => reload(event),
        Record::Resolution(event) => resolution(event),
        Record::WorkloadApi(event) => workload_api(event),
        Record::Dropped(report) => dropped(report),
    };
    line(value, out);
}

/// Appends a request's identity event as one OCSF JSON line: what the request path writes in
/// OCSF mode, from the borrowed event, as [`IdentityEvent::write_json_line`] does otherwise.
pub fn write_request(event: &IdentityEvent<'_>, out: &mut Vec<u8>) {
    line(request(event), out);
}

fn line(mut value: Value, out: &mut Vec<u8>) {
    prune(&mut value);
    // Writing a Value to a Vec cannot fail; keep the stream whole-line regardless.
    let mark = out.len();
    if serde_json::to_writer(&mut *out, &value).is_ok() {
        out.push(b'\n');
    } else {
        out.truncate(mark);
    }
}

/// Removes `null` members (absent facts), and the objects and lists left empty.
fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, v| {
                !(v.is_null()
                    || v.as_object().is_some_and(Map::is_empty)
                    || v.as_array().is_some_and(Vec::is_empty))
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

/// The attributes every class has: classification, time, severity, metadata.
struct Classified {
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    activity_id: u32,
    activity_name: String,
    severity: Severity,
    /// The record's RFC 3339 time.
    time: String,
    event_id: Option<String>,
    /// Ties a request's records together (its `request_id`).
    correlation: Option<String>,
}

impl Classified {
    fn into_value(self, rest: Value) -> Value {
        let mut value = json!({
            "category_uid": self.category_uid,
            "category_name": self.category_name,
            "class_uid": self.class_uid,
            "class_name": self.class_name,
            "activity_id": self.activity_id,
            "activity_name": self.activity_name,
            "type_uid": u64::from(self.class_uid) * 100 + u64::from(self.activity_id),
            "type_name": format!("{}: {}", self.class_name, self.activity_name),
            "severity_id": self.severity.ocsf_id(),
            "severity": self.severity.ocsf_name(),
            "time": epoch_millis(&self.time),
            "time_dt": self.time,
            "metadata": {
                "version": OCSF_VERSION,
                "uid": self.event_id,
                "correlation_uid": self.correlation,
                "profiles": ["security_control", "datetime"],
                "product": {
                    "name": "zonegate",
                    "vendor_name": "zonegate",
                    "version": env!("CARGO_PKG_VERSION"),
                },
            },
        });
        if let (Value::Object(map), Value::Object(rest)) = (&mut value, rest) {
            map.extend(rest);
        }
        value
    }
}

/// RFC 3339 as milliseconds since the Unix epoch (OCSF's `timestamp_t`); `null` if the text is
/// not a time, which the writer never produces.
fn epoch_millis(time: &str) -> Value {
    chrono::DateTime::parse_from_rfc3339(time).map_or(Value::Null, |t| t.timestamp_millis().into())
}

/// `ip` and `port` of an endpoint from `ip:port` text (`[v6]:port` included).
fn endpoint(addr: Option<&str>) -> Value {
    let Some(parsed) = addr.and_then(|a| a.parse::<std::net::SocketAddr>().ok()) else {
        return Value::Null;
    };
    json!({ "ip": parsed.ip().to_string(), "port": parsed.port() })
}

/// The workload identity as an OCSF user: the SPIFFE ID is its `uid` and `name`, the trust
/// domain its `domain`.
fn workload(spiffe_id: Option<&str>, credential_uid: Option<&str>) -> Value {
    let Some(id) = spiffe_id else {
        return Value::Null;
    };
    let domain = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next());
    json!({
        "uid": id,
        "name": id,
        "domain": domain,
        "type_id": 99,
        "type": "Workload",
        "credential_uid": credential_uid,
    })
}

/// HTTP Activity's `activity_id` for a method (OCSF 1.3.0 names eight).
fn http_activity(method: &str) -> (u32, String) {
    let id = match method {
        "CONNECT" => 1,
        "DELETE" => 2,
        "GET" => 3,
        "HEAD" => 4,
        "OPTIONS" => 5,
        "POST" => 6,
        "PUT" => 7,
        "TRACE" => 8,
        _ => ACTIVITY_OTHER,
    };
    let name = match id {
        ACTIVITY_OTHER => method.to_string(),
        _ => {
            let mut name = method.to_ascii_lowercase();
            name[..1].make_ascii_uppercase();
            name
        }
    };
    (id, name)
}

/// `HTTP/1.1` -> `1.1`, as OCSF's `http_request.version` spells it.
fn http_version(version: &str) -> &str {
    version.strip_prefix("HTTP/").unwrap_or(version)
}

fn request(e: &IdentityEvent<'_>) -> Value {
    let (activity_id, activity_name) = http_activity(e.method);
    let denied = e.decision == "deny";
    let disposition = match (denied, e.status) {
        (false, status) if status >= 500 => DISPOSITION_ERROR,
        (false, _) => DISPOSITION_ALLOWED,
        (true, 401) => DISPOSITION_UNAUTHORIZED,
        (true, _) => DISPOSITION_BLOCKED,
    };
    let mut authorizations = Vec::new();
    if e.rule_id.is_some() || e.reason == "default_deny" {
        authorizations.push(json!({
            "decision": e.decision,
            "policy": {
                "uid": e.rule_id,
                "name": e.rule_id.unwrap_or("default deny"),
                "version": e.policy_generation.to_string(),
                "is_applied": true,
            },
        }));
    }
    if let Some(audit) = e.audit_rule_id {
        authorizations.push(json!({
            "decision": e.audit_decision,
            "policy": {
                "uid": audit,
                "name": audit,
                "version": e.policy_generation.to_string(),
                "is_applied": false,
            },
        }));
    }
    let credential_uid = e.cert_serial.or(e.token_jti);
    let peer = e.peer_addr.map(super::socket_addr_text);
    let rest = json!({
        "action_id": if denied { ACTION_DENIED } else { ACTION_ALLOWED },
        "action": if denied { "Denied" } else { "Allowed" },
        "disposition_id": disposition,
        "disposition": disposition_name(disposition),
        "status_id": if e.status < 400 { STATUS_SUCCESS } else { STATUS_FAILURE },
        "status": if e.status < 400 { "Success" } else { "Failure" },
        "status_code": e.status.to_string(),
        "status_detail": e.detail,
        "message": format!("{} {} {} ({})", e.decision, e.method, e.path.or(e.raw_path).unwrap_or("-"), e.reason),
        "duration": e.duration_ms.round() as i64,
        "actor": { "user": workload(e.source_spiffe_id, credential_uid) },
        "src_endpoint": merge(endpoint(peer.as_deref()), json!({ "zone": e.source_zone })),
        "dst_endpoint": {
            "zone": e.destination_zone,
            "svc_name": e.route,
            "hostname": e.host,
        },
        "http_request": {
            "uid": e.request_id,
            "http_method": e.method,
            "version": http_version(e.http_version),
            "url": {
                "path": e.path.or(e.raw_path),
                "hostname": e.host,
            },
        },
        "http_response": { "code": e.status },
        "http_status": e.status,
        "authorizations": authorizations,
        "tls": {
            "certificate": {
                "serial_number": e.cert_serial,
                "expiration_time": e.cert_not_after.map(epoch_millis),
            },
        },
        "unmapped": {
            "schema": e.schema,
            "kind": e.kind,
            "reason": e.reason,
            "cross_zone": e.cross_zone,
            "credential": e.credential,
            "token_issuer": e.token_issuer,
            "token_subject": e.token_subject,
            "token_jti": e.token_jti,
            "token_expiry": e.token_expiry,
            "upstream": e.upstream,
            "raw_path": e.raw_path,
            "policy_generation": e.policy_generation,
        },
    });
    Classified {
        category_uid: CATEGORY_NETWORK,
        category_name: "Network Activity",
        class_uid: CLASS_HTTP_ACTIVITY,
        class_name: "HTTP Activity",
        activity_id,
        activity_name,
        severity: e.severity(),
        time: e.time.to_string(),
        event_id: Some(e.event_id.to_string()),
        correlation: Some(e.request_id.to_string()),
    }
    .into_value(rest)
}

fn disposition_name(id: u32) -> &'static str {
    match id {
        DISPOSITION_ALLOWED => "Allowed",
        DISPOSITION_BLOCKED => "Blocked",
        DISPOSITION_UNAUTHORIZED => "Unauthorized",
        DISPOSITION_ERROR => "Error",
        _ => "Other",
    }
}

/// `a` with `b`'s members added (both objects; a `null` `a` stands for an empty one).
fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            a.extend(b);
            Value::Object(a)
        }
        (Value::Null, b) => b,
        (a, _) => a,
    }
}

fn unparsed(e: &UnparsedEvent) -> Value {
    let rest = json!({
        "action_id": ACTION_DENIED,
        "action": "Denied",
        "disposition_id": DISPOSITION_BLOCKED,
        "disposition": disposition_name(DISPOSITION_BLOCKED),
        "status_id": STATUS_FAILURE,
        "status": "Failure",
        "status_code": e.status.to_string(),
        "status_detail": e.detail,
        "message": format!("request head refused by the HTTP parser ({})", e.reason),
        "actor": { "user": workload(e.source_spiffe_id.as_deref(), None) },
        "src_endpoint": endpoint(Some(&e.peer_addr)),
        "dst_endpoint": { "zone": e.destination_zone },
        // OCSF requires both: the request is what could not be parsed, so only its version is
        // known.
        "http_request": { "version": http_version(e.http_version) },
        "http_response": { "code": e.status },
        "http_status": e.status,
        "unmapped": { "schema": e.schema, "kind": e.kind, "reason": e.reason },
    });
    Classified {
        category_uid: CATEGORY_NETWORK,
        category_name: "Network Activity",
        class_uid: CLASS_HTTP_ACTIVITY,
        class_name: "HTTP Activity",
        activity_id: 0,
        activity_name: "Unknown".to_string(),
        severity: Severity::Warning,
        time: e.time.clone(),
        event_id: Some(e.event_id.clone()),
        correlation: None,
    }
    .into_value(rest)
}

fn request_end(e: &RequestEndEvent) -> Value {
    let complete = e.end == "complete";
    let rest = json!({
        "status_id": if complete { STATUS_SUCCESS } else { STATUS_FAILURE },
        "status": if complete { "Success" } else { "Failure" },
        "status_detail": e.end,
        "message": format!("request {} ended: {}", e.request_id, e.end),
        "duration": e.duration_ms.round() as i64,
        "dst_endpoint": { "zone": e.destination_zone, "svc_name": e.route },
        "http_request": { "uid": e.request_id },
        "http_response": { "code": e.status },
        "http_status": e.status,
        "traffic": { "bytes_out": e.response_bytes },
        "unmapped": { "schema": e.schema, "kind": e.kind, "end": e.end },
    });
    Classified {
        category_uid: CATEGORY_NETWORK,
        category_name: "Network Activity",
        class_uid: CLASS_HTTP_ACTIVITY,
        class_name: "HTTP Activity",
        activity_id: ACTIVITY_OTHER,
        activity_name: "Request End".to_string(),
        severity: e.severity(),
        time: e.time.clone(),
        event_id: Some(e.event_id.clone()),
        correlation: Some(e.request_id.clone()),
    }
    .into_value(rest)
}

fn handshake(e: &HandshakeEvent) -> Value {
    let rest = json!({
        "action_id": ACTION_DENIED,
        "action": "Denied",
        "disposition_id": DISPOSITION_UNAUTHORIZED,
        "disposition": disposition_name(DISPOSITION_UNAUTHORIZED),
        "status_id": STATUS_FAILURE,
        "status": "Failure",
        "status_code": e.reason,
        "status_detail": e.detail,
        "message": format!("TLS handshake refused ({})", e.reason),
        // OCSF requires a user: the identity the certificate claims, unverified, else none.
        "user": match workload(e.claimed_spiffe_id.as_deref(), None) {
            Value::Null => json!({ "name": "unknown", "type_id": 0, "type": "Unknown" }),
            user => user,
        },
        "auth_protocol_id": 99,
        "auth_protocol": "mTLS X.509-SVID",
        "is_remote": true,
        "src_endpoint": endpoint(e.peer_addr.as_deref()),
        "dst_endpoint": { "zone": e.destination_zone },
        "unmapped": {
            "schema": e.schema,
            "kind": e.kind,
            "reason": e.reason,
            "claimed_spiffe_id": e.claimed_spiffe_id,
        },
    });
    Classified {
        category_uid: CATEGORY_IAM,
        category_name: "Identity & Access Management",
        class_uid: CLASS_AUTHENTICATION,
        class_name: "Authentication",
        activity_id: 1,
        activity_name: "Logon".to_string(),
        severity: e.severity(),
        time: e.time.clone(),
        event_id: Some(e.event_id.clone()),
        correlation: None,
    }
    .into_value(rest)
}

/// A record OCSF has no class for: a Base Event with the whole record in `unmapped`.
fn base(
    kind: &str,
    message: String,
    ok: bool,
    severity: Severity,
    time: &str,
    event_id: Option<&str>,
    record: Value,
) -> Value {
    let rest = json!({
        "status_id": if ok { STATUS_SUCCESS } else { STATUS_FAILURE },
        "status": if ok { "Success" } else { "Failure" },
        "message": message,
        "unmapped": record,
    });
    Classified {
        category_uid: 0,
        category_name: "Uncategorized",
        class_uid: CLASS_BASE_EVENT,
        class_name: "Base Event",
        activity_id: ACTIVITY_OTHER,
        activity_name: kind.to_string(),
        severity,
        time: time.to_string(),
        event_id: event_id.map(str::to_string),
        correlation: None,
    }
    .into_value(rest)
}

fn reload(e: &ReloadEvent) -> Value {
    base(
        e.kind,
        format!(
            "configuration reload {} (generation {})",
            e.result, e.generation
        ),
        e.result == "applied",
        e.severity(),
        &e.time,
        Some(&e.event_id),
        serde_json::to_value(e).unwrap_or(Value::Null),
    )
}

fn resolution(e: &ResolutionEvent) -> Value {
    base(
        e.kind,
        format!("upstream name {} resolution {}", e.name, e.result),
        e.result != "failed",
        e.severity(),
        &e.time,
        Some(&e.event_id),
        serde_json::to_value(e).unwrap_or(Value::Null),
    )
}

fn workload_api(e: &WorkloadApiEvent) -> Value {
    base(
        e.kind,
        format!("SPIFFE Workload API {} ({})", e.result, e.endpoint),
        e.result == "connected",
        e.severity(),
        &e.time,
        Some(&e.event_id),
        serde_json::to_value(e).unwrap_or(Value::Null),
    )
}

fn dropped(r: &DropReport) -> Value {
    base(
        r.kind,
        format!("{} identity events dropped ({})", r.dropped, r.reason),
        false,
        Severity::Error,
        &r.time,
        None,
        serde_json::to_value(r).unwrap_or(Value::Null),
    )
}

#[cfg(test)]
mod tests;
