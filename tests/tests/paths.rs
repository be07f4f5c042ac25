//! Policy sees the path the upstream will see: normalisation bypass attempts are refused or
//! decided on the normalised path, and the upstream receives exactly that path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use http::StatusCode;
use zonegate_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalisation_bypass_attempts_are_refused() {
    let gw = Gateway::start(Setup::default()).await;
    let svid = gw.pki.svid(CHECKOUT);
    // (request target, expected status, path the upstream must see when forwarded)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/payments/public/x", 200, Some("/payments/public/x")),
        (
            "/payments/public/./a//b?q=%2F",
            200,
            Some("/payments/public/a/b?q=%2F"),
        ),
        (
            "/payments/public/%7Euser",
            200,
            Some("/payments/public/~user"),
        ),
        ("/payments/public/../admin/users", 403, None),
        ("/payments/public/%2e%2e/admin/users", 403, None),
        ("/payments/public/%2E%2E/%2e%2E/payments/admin", 403, None),
        ("//payments//admin", 403, None),
        ("/payments/public/..;/admin", 400, None),
        ("/payments/public/.;x/admin", 400, None),
        ("/payments/public%2F..%2Fadmin", 400, None),
        ("/payments/public%2f..%2fadmin", 400, None),
        ("/payments/public/..%5Cadmin", 400, None),
        ("/payments/public/%00", 400, None),
        ("/payments/public/%zz", 400, None),
        ("/payments/../../etc/passwd", 400, None),
        ("/payments/admin;jsessionid=x", 400, None),
        ("/payments/admin%3Bx", 400, None),
    ];
    for (target, status, upstream_path) in cases {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let response = raw_request(gw.addr(), &gw.pki, &svid, &request).await;
        assert_eq!(raw_status(&response), *status, "{target}: {response}");
        if let Some(want) = upstream_path {
            let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
            let echo: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(echo["path"], *want, "{target}");
        }
    }
    // Every refused attempt left an event with the raw path for the investigator.
    // 3 allowed + 4 denied + 10 refused, all cross-zone (checkout is in `shop`).
    let events = gw.events(17).await;
    assert_eq!(events.len(), 17);
    let bad: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "bad_path")
        .collect();
    assert_eq!(bad.len(), 10, "{events:?}");
    assert!(bad
        .iter()
        .all(|e| e["raw_path"].is_string() && e["path"].is_null()));
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "policy_denied")
        .collect();
    assert!(
        denied
            .iter()
            .all(|e| e["path"].as_str().unwrap().starts_with("/payments/admin")),
        "{denied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    let gw = Gateway::start(Setup::default()).await;
    let svid = gw.pki.svid(CHECKOUT);
    for request in [
        "GET /payments/public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "GET payments/public/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "BLAH\r\n\r\n",
    ] {
        let response = raw_request(gw.addr(), &gw.pki, &svid, request).await;
        assert_eq!(raw_status(&response), StatusCode::BAD_REQUEST.as_u16(), "{request:?}: {response}");
    }
}
