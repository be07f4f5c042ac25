use serde_json::Value;

use super::*;
use crate::events::{tests::full, IdentityEvent, KIND_HANDSHAKE_REFUSED, SCHEMA};

fn ocsf(event: &IdentityEvent<'_>) -> Value {
    let mut out = Vec::new();
    write_request(event, &mut out);
    assert_eq!(out.last(), Some(&b'\n'), "one line");
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    serde_json::from_slice(&out).unwrap()
}

fn record(record: &Record) -> Value {
    let mut out = Vec::new();
    write_record(record, &mut out);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    serde_json::from_slice(&out).unwrap()
}

/// Absent facts are omitted: no `null`, no empty object, anywhere.
fn assert_no_nulls(value: &Value, at: &str) {
    match value {
        Value::Null => panic!("null at {at}"),
        Value::Object(map) => {
            assert!(!map.is_empty() || at.is_empty(), "empty object at {at}");
            for (k, v) in map {
                assert_no_nulls(v, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_no_nulls(v, &format!("{at}[{i}]"))),
        _ => {}
    }
}

/// What every OCSF record has: classification consistent with itself, time, metadata.
fn assert_classified(v: &Value, class_uid: u64, category_uid: u64) {
    assert_eq!(v["class_uid"], class_uid);
    assert_eq!(v["category_uid"], category_uid);
    let activity = v["activity_id"].as_u64().unwrap();
    assert_eq!(v["type_uid"], class_uid * 100 + activity);
    assert!(
        v["time"].as_i64().unwrap() > 1_700_000_000_000,
        "epoch milliseconds"
    );
    assert!((1..=4).contains(&v["severity_id"].as_u64().unwrap()));
    assert_eq!(v["metadata"]["version"], "1.3.0");
    assert_eq!(v["metadata"]["product"]["name"], "zonegate");
    assert!(v["metadata"]["product"]["vendor_name"].is_string());
    assert_no_nulls(v, "");
}

#[test]
fn a_denied_request_is_http_activity_with_its_identity_rule_and_endpoints() {
    let event = full();
    let v = ocsf(&event);
    assert_classified(&v, 4002, 4);
    assert_eq!(v["activity_id"], 3, "GET");
    assert_eq!(v["activity_name"], "Get");
    assert_eq!(v["action_id"], 2);
    assert_eq!(v["disposition_id"], 2, "403 is blocked");
    assert_eq!(v["status_id"], 2);
    assert_eq!(v["severity_id"], 3);
    let millis = chrono::DateTime::parse_from_rfc3339(event.time.as_str())
        .unwrap()
        .timestamp_millis();
    assert_eq!(v["time"], millis);
    assert_eq!(v["metadata"]["uid"], event.event_id.as_str());
    assert_eq!(v["metadata"]["correlation_uid"], event.request_id.as_str());
    let user = &v["actor"]["user"];
    assert_eq!(user["uid"], "spiffe://example.org/ns/shop/sa/checkout");
    assert_eq!(user["domain"], "example.org");
    assert_eq!(user["credential_uid"], "2d3fa5927cb52e5ab235c23dfcce2e31");
    assert_eq!(v["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(v["src_endpoint"]["port"], 48260);
    assert_eq!(v["src_endpoint"]["zone"], "shop");
    assert_eq!(v["dst_endpoint"]["zone"], "payments");
    assert_eq!(v["dst_endpoint"]["svc_name"], "payments-api");
    assert_eq!(v["http_request"]["http_method"], "GET");
    assert_eq!(v["http_request"]["version"], "1.1");
    assert_eq!(v["http_request"]["url"]["path"], "/payments/charge");
    assert_eq!(v["http_response"]["code"], 403);
    let rules = v["authorizations"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["decision"], "deny");
    assert_eq!(rules[0]["policy"]["uid"], "no-admin");
    assert_eq!(rules[0]["policy"]["is_applied"], true);
    assert_eq!(rules[1]["policy"]["uid"], "audit-\u{0}");
    assert_eq!(rules[1]["decision"], "allow");
    assert_eq!(rules[1]["policy"]["is_applied"], false);
    assert_eq!(v["status_detail"], *event.detail.unwrap());
    assert_eq!(v["unmapped"]["reason"], "policy_denied");
    assert_eq!(v["unmapped"]["token_jti"], "j\"ti");
    assert_eq!(v["unmapped"]["policy_generation"], u64::MAX);
    assert_eq!(
        v["tls"]["certificate"]["expiration_time"],
        1_765_015_942_000_i64
    );
}

#[test]
fn allowed_failed_default_denied_and_unauthenticated_requests_map_as_documented() {
    let allowed = IdentityEvent {
        decision: "allow",
        reason: "allowed",
        status: 200,
        rule_id: Some("shop-reads"),
        audit_rule_id: None,
        audit_decision: None,
        method: "PATCH",
        ..full()
    };
    let v = ocsf(&allowed);
    assert_eq!(v["action_id"], 1);
    assert_eq!(v["disposition_id"], 1);
    assert_eq!(v["status_id"], 1);
    assert_eq!(v["severity_id"], 1);
    assert_eq!(v["activity_id"], 99, "OCSF 1.3.0 names no PATCH activity");
    assert_eq!(v["activity_name"], "PATCH");
    assert_eq!(v["type_uid"], 400_299);

    let upstream_failed = IdentityEvent {
        status: 502,
        reason: "upstream_unavailable",
        ..allowed.clone()
    };
    let v = ocsf(&upstream_failed);
    assert_eq!(v["action_id"], 1);
    assert_eq!(v["disposition_id"], 27, "error");
    assert_eq!(v["severity_id"], 2);

    let default_deny = IdentityEvent {
        decision: "deny",
        reason: "default_deny",
        rule_id: None,
        status: 403,
        ..allowed.clone()
    };
    let v = ocsf(&default_deny);
    assert_eq!(v["authorizations"][0]["policy"]["name"], "default deny");
    assert!(v["authorizations"][0]["policy"].get("uid").is_none());

    let unauthenticated = IdentityEvent {
        decision: "deny",
        reason: "no_credential",
        rule_id: None,
        status: 401,
        source_spiffe_id: None,
        source_zone: None,
        cert_serial: None,
        cert_not_after: None,
        token_jti: None,
        ..allowed
    };
    let v = ocsf(&unauthenticated);
    assert_eq!(v["disposition_id"], 26, "unauthorized");
    assert!(v.get("actor").is_none(), "no identity, no actor");
    assert!(v.get("authorizations").is_none(), "no policy ran");
    assert_no_nulls(&v, "");
}

#[test]
fn every_other_record_kind_has_its_class() {
    let time = "2026-11-29T10:00:00.123Z".to_string();
    let refused = HandshakeEvent {
        schema: SCHEMA,
        kind: KIND_HANDSHAKE_REFUSED,
        time: time.clone(),
        event_id: "e1".into(),
        decision: "deny",
        reason: "svid_refused",
        detail: "leaf certificate has 2 URI SANs".into(),
        claimed_spiffe_id: Some("spiffe://other.org/x".into()),
        peer_addr: Some("[::1]:4000".into()),
        destination_zone: "payments".into(),
    };
    let v = record(&Record::from(refused.clone()));
    assert_classified(&v, 3002, 3);
    assert_eq!(v["time"], 1_795_946_400_123_i64);
    assert_eq!(v["activity_id"], 1, "logon");
    assert_eq!(v["status_id"], 2);
    assert_eq!(v["user"]["uid"], "spiffe://other.org/x");
    assert_eq!(v["src_endpoint"]["ip"], "::1");
    assert_eq!(v["status_detail"], "leaf certificate has 2 URI SANs");

    let anonymous = HandshakeEvent {
        reason: "handshake_timeout",
        claimed_spiffe_id: None,
        peer_addr: None,
        ..refused
    };
    let v = record(&Record::from(anonymous));
    assert_classified(&v, 3002, 3);
    assert_eq!(v["user"]["name"], "unknown", "OCSF requires a user");
    assert_eq!(v["severity_id"], 2);

    let unparsed = Record::from(UnparsedEvent {
        schema: SCHEMA,
        kind: crate::events::KIND_REQUEST_UNPARSED,
        time: time.clone(),
        event_id: "e2".into(),
        decision: "deny",
        reason: "headers_too_large",
        status: 431,
        detail: "message head is too large".into(),
        source_spiffe_id: None,
        peer_addr: "10.0.0.1:5000".into(),
        http_version: "HTTP/1.1",
        destination_zone: "payments".into(),
    });
    let v = record(&unparsed);
    assert_classified(&v, 4002, 4);
    assert_eq!(v["http_response"]["code"], 431);
    assert_eq!(v["action_id"], 2);

    let end = Record::from(RequestEndEvent {
        schema: SCHEMA,
        kind: crate::events::KIND_REQUEST_END,
        time: time.clone(),
        event_id: "e3".into(),
        request_id: "r3".into(),
        route: Some("stream".into()),
        status: 200,
        end: "credential_expired",
        response_bytes: 4096,
        duration_ms: 1500.4,
        destination_zone: "payments".into(),
    });
    let v = record(&end);
    assert_classified(&v, 4002, 4);
    assert_eq!(v["metadata"]["correlation_uid"], "r3");
    assert_eq!(v["traffic"]["bytes_out"], 4096);
    assert_eq!(v["duration"], 1500);
    assert_eq!(v["status_detail"], "credential_expired");

    let reload = Record::from(ReloadEvent {
        schema: SCHEMA,
        kind: crate::events::KIND_CONFIG_RELOAD,
        time: time.clone(),
        event_id: "e4".into(),
        result: "refused",
        trigger: "file",
        generation: 3,
        policy_hash: "ab".into(),
        errors: vec!["gateway.toml: routes.x: unknown upstream".into()],
    });
    let v = record(&reload);
    assert_classified(&v, 0, 0);
    assert_eq!(v["severity_id"], 4);
    assert_eq!(
        v["unmapped"]["errors"][0],
        "gateway.toml: routes.x: unknown upstream"
    );

    let dropped = Record::from(DropReport {
        schema: SCHEMA,
        time,
        kind: crate::events::KIND_EVENTS_DROPPED,
        dropped: 12,
        dropped_total: 40,
        reason: "queue_full".into(),
    });
    let v = record(&dropped);
    assert_classified(&v, 0, 0);
    assert_eq!(v["unmapped"]["dropped"], 12);
    assert!(v["metadata"].get("uid").is_none());
}

#[test]
fn strings_from_clients_stay_strings() {
    let event = IdentityEvent {
        path: None,
        raw_path: Some("/\"},\"class_uid\":1,{\"a\":\"<script>"),
        ..full()
    };
    let v = ocsf(&event);
    assert_eq!(v["class_uid"], 4002);
    assert_eq!(
        v["http_request"]["url"]["path"],
        "/\"},\"class_uid\":1,{\"a\":\"<script>"
    );
}
