use std::net::SocketAddr;

use super::*;
use crate::ids::Id;

fn made_now() -> Clock {
    let mut clock = Clock::default();
    clock.now();
    clock
}

pub(super) fn full() -> IdentityEvent<'static> {
    IdentityEvent {
        schema: SCHEMA,
        kind: KIND_REQUEST,
        // Made as the gateway makes them (kept for the test's whole run).
        time: Box::leak(Box::new(made_now())).as_plain(),
        event_id: Box::leak(Box::new(Id::next())).as_plain(),
        request_id: Box::leak(Box::new(Id::next())).as_plain(),
        decision: "deny",
        reason: "policy_denied",
        detail: Some("no rule allows \"GET\" on /a\\b\n\t\u{1}\u{7f} caf\u{e9} \u{1F600}"),
        rule_id: Some("no-admin"),
        audit_rule_id: Some("audit-\u{0}"),
        audit_decision: Some("allow"),
        cross_zone: true,
        credential: Some("x509-svid+jwt-svid"),
        source_spiffe_id: Some("spiffe://example.org/ns/shop/sa/checkout"),
        source_zone: Some("shop"),
        peer_addr: Some("127.0.0.1:48260".parse().unwrap()),
        cert_serial: Some("2d3fa5927cb52e5ab235c23dfcce2e31"),
        cert_not_after: rfc3339_seconds(1_765_015_942).map(|t| &*t.leak()),
        token_issuer: Some("example-org"),
        token_subject: Some("spiffe://example.org/ns/shop/sa/checkout"),
        token_jti: Some("j\"ti"),
        token_expiry: rfc3339_seconds(1_765_015_000).map(|t| &*t.leak()),
        destination_zone: "payments",
        route: Some("payments-api"),
        upstream: Some("10.0.0.7:9001"),
        method: "GET",
        host: Some("payments.internal"),
        path: Some("/payments/charge"),
        raw_path: Some("/a/%2e%2e/../\u{2028}"),
        http_version: "HTTP/1.1",
        status: 403,
        duration_ms: 13.231341,
        policy_generation: u64::MAX,
    }
}

fn assert_same_as_serde(event: &IdentityEvent<'_>) {
    let mut ours = Vec::new();
    event.write_json_line(&mut ours);
    let mut theirs = serde_json::to_vec(event).unwrap();
    theirs.push(b'\n');
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs)
    );
}

#[test]
fn the_hand_written_line_is_what_serde_writes() {
    assert_same_as_serde(&full());
    assert_same_as_serde(&IdentityEvent::default());
    let addrs: [SocketAddr; 4] = [
        "0.0.0.0:0".parse().unwrap(),
        "255.255.255.255:65535".parse().unwrap(),
        "[::1]:8443".parse().unwrap(),
        "[fe80::1%2]:1".parse().unwrap(),
    ];
    for addr in addrs {
        assert_same_as_serde(&IdentityEvent {
            peer_addr: Some(addr),
            ..full()
        });
    }
    for duration_ms in [0.0, 0.001, 1e-7, 123456789.5, 1e21, f64::NAN, f64::INFINITY] {
        assert_same_as_serde(&IdentityEvent {
            duration_ms,
            ..full()
        });
    }
    assert_same_as_serde(&IdentityEvent {
        audit_decision: None,
        credential: None,
        cross_zone: false,
        status: 0,
        ..full()
    });
}

#[test]
fn a_line_appends_and_parses() {
    let mut out = b"previous\n".to_vec();
    full().write_json_line(&mut out);
    let line = std::str::from_utf8(&out["previous\n".len()..]).unwrap();
    assert!(line.ends_with('\n'));
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["peer_addr"], "127.0.0.1:48260");
    assert_eq!(parsed["status"], 403);
}
