#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use super::*;

const ID: &str = "spiffe://example.org/ns/shop/sa/batch";

/// Feeds request events of `ID`, each at `minute` from a peer and with a certificate serial.
fn sharing(window_s: u64, uses: &[(u64, &str, &str)]) -> IdentitySummary {
    let mut sharing = Sharing::new(window_s);
    for (minute, ip, serial) in uses {
        let line = serde_json::json!({
            "kind": "request",
            "time": format!("2026-11-23T{:02}:{:02}:07.000Z", minute / 60, minute % 60),
            "decision": "allow",
            "reason": "allowed",
            "method": "GET",
            "source_spiffe_id": ID,
            "peer_addr": format!("{ip}:40000"),
            "cert_serial": serial,
        })
        .to_string();
        let event: RequestEvent<'_> = serde_json::from_str(&line).unwrap();
        sharing.observe(&event);
    }
    sharing.summaries(5).remove(0)
}

#[test]
fn svid_rotation_and_pod_churn_are_not_sharing_but_concurrent_use_is() {
    // One pod whose SVID rotates every half hour for a day: 48 certificates, one at a time.
    let rotation: Vec<(u64, String, String)> = (0..48)
        .map(|i| (i * 30, "10.0.0.7".to_string(), format!("serial-{i}")))
        .collect();
    let rotation: Vec<(u64, &str, &str)> = rotation
        .iter()
        .map(|(m, ip, s)| (*m, ip.as_str(), s.as_str()))
        .collect();
    let s = sharing(600, &rotation);
    assert_eq!((s.cert_serials, s.peak_cert_serials), (48, 1));
    assert!(!s.shared && !s.concurrent, "{s:?}");
    // Counted over the whole day, as before windows, it would be flagged.
    assert!(sharing(0, &rotation).shared);

    // Pods replaced every twenty minutes (new address, new SVID), with a minute of overlap
    // in a rolling update: two at once at most.
    let churn: Vec<(u64, String, String)> = (0..30)
        .flat_map(|i| {
            let (ip, serial) = (format!("10.0.1.{i}"), format!("pod-{i}"));
            [
                (i * 20, ip.clone(), serial.clone()),
                (i * 20 + 21, ip, serial),
            ]
        })
        .collect();
    let churn: Vec<(u64, &str, &str)> = churn
        .iter()
        .map(|(m, ip, s)| (*m, ip.as_str(), s.as_str()))
        .collect();
    let s = sharing(600, &churn);
    assert_eq!(s.peer_ips, 30);
    assert!(s.peak_peer_ips <= 2, "{s:?}");
    assert!(!s.shared, "{s:?}");
    assert!(
        s.concurrent,
        "the rolling update's overlap is two holders at once"
    );

    // Six hosts with six certificates within one minute: shared, at once.
    let at_once: Vec<(u64, String, String)> = (0..6)
        .map(|i| (1, format!("192.168.9.{i}"), format!("leaked-{i}")))
        .collect();
    let at_once: Vec<(u64, &str, &str)> = at_once
        .iter()
        .map(|(m, ip, s)| (*m, ip.as_str(), s.as_str()))
        .collect();
    let s = sharing(600, &at_once);
    assert_eq!((s.peak_peer_ips, s.peak_cert_serials), (6, 6));
    assert!(s.shared && s.concurrent, "{s:?}");
}

#[test]
fn event_times_and_windows_are_read_exactly() {
    assert_eq!(unix_seconds("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(
        unix_seconds("2026-11-23T10:00:15.000Z"),
        Some(1_795_428_015)
    );
    assert_eq!(unix_seconds("2000-02-29T23:59:59Z"), Some(951_868_799));
    assert_eq!(unix_seconds("yesterday"), None);
    assert_eq!(parse_window("10m"), Ok(600));
    assert_eq!(parse_window("1d"), Ok(86_400));
    assert_eq!(parse_window("0"), Ok(0));
    for bad in ["", "10", "m", "0m", "-5m", "10w"] {
        assert!(parse_window(bad).is_err(), "{bad:?}");
    }
    assert_eq!(window_text(600), "10m");
    assert_eq!(window_text(90), "90s");
    assert_eq!(window_text(0), "the whole files");
}
