//! `zonegate policy explain` agrees with the running gateway: the same requests are sent to a
//! real gateway over mTLS and explained offline from the same config files, and the answers
//! (status, decision, reason, deciding rule, audit rule, route, normalised path) must match the
//! live responses and the identity events they produced.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;

use zonegate_e2e::*;
use zonegate_policy_tools::explain::{explain, query, ExplainArgs};
use zonegate_policy_tools::load;

/// A route of its own for one host, so that explain's host handling is exercised too.
const EXTRA: &str = r#"
[[route]]
name = "admin"
hosts = ["admin.internal"]
path_prefix = "/payments/admin"
upstream = "payments"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_the_live_gateway() {
    let gw = Gateway::start(Setup {
        extra_config: EXTRA.to_string(),
        ..Setup::default()
    })
    .await;
    let loaded = match load::open(&gw.config_path(), None) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    // (identity, method, host, request target)
    let cases: &[(&str, &str, &str, &str)] = &[
        (CHECKOUT, "POST", "localhost", "/payments/charge"),
        (
            CHECKOUT,
            "GET",
            "localhost",
            "/payments/charges/ch_1/refund",
        ),
        (
            CHECKOUT,
            "POST",
            "localhost",
            "/payments/charges/ch_1/refund?x=%2F",
        ),
        (CHECKOUT, "DELETE", "localhost", "/payments/charge"),
        (CHECKOUT, "GET", "localhost", "//payments//charges/./ch_2"),
        (CHECKOUT, "GET", "localhost", "/payments/public/%7Euser"),
        (
            CHECKOUT,
            "GET",
            "localhost",
            "/payments/public/%2e%2e/admin",
        ),
        (CHECKOUT, "GET", "localhost", "/payments/public/..;/admin"),
        (
            CHECKOUT,
            "GET",
            "localhost",
            "/payments/public%2F..%2Fadmin",
        ),
        (CHECKOUT, "GET", "localhost", "/elsewhere"),
        (CART, "GET", "localhost", "/payments/charge"),
        (CART, "GET", "localhost", "/payments/charges/ch_1/refund"),
        (LEDGER, "GET", "localhost", "/payments/ledger"),
        (LEDGER, "POST", "localhost", "/payments/ledger"),
        (LEDGER, "GET", "localhost", "/payments/admin"),
        (LEDGER, "GET", "admin.internal", "/payments/admin/users"),
        (LEDGER, "GET", "ADMIN.internal:8443", "/payments/admin"),
        (LEDGER, "POST", "localhost", "/ledger.Ledger/Append"),
        (LEDGER, "GET", "localhost", "/ledger.Ledger/Append"),
        (
            "spiffe://example.org/ns/data/sa/etl",
            "GET",
            "localhost",
            "/payments/x",
        ),
    ];
    let mut request_ids = Vec::new();
    for &(id, method, host, target) in cases {
        let svid = gw.pki.svid(id);
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let response = raw_request(gw.addr(), &gw.pki, &svid, &request).await;
        let status = raw_status(&response);
        let request_id = response
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .map(str::to_string);
        // The Host header as sent: the command line reads it as the gateway does.
        let args = ExplainArgs {
            config: gw.config_path(),
            policy: Vec::new(),
            spiffe_id: Some(id.to_string()),
            issuer: None,
            subject: None,
            claims: Vec::new(),
            token_only: false,
            method: method.to_string(),
            host: Some(host.to_string()),
            json: false,
            target: target.to_string(),
        };
        let e = explain(&loaded, &query(&args).unwrap());
        // An allowed request is proxied to the echo upstream, which answers 200.
        assert_eq!(
            e.status.unwrap_or(200),
            status,
            "{method} {host} {target}: {e:?}\n{response}"
        );
        request_ids.push((request_id, e));
    }
    // Every request that made an event (cross-zone or refused) was decided for the same
    // reason, by the same rules, on the same route and path.
    // Every refusal and every cross-zone request makes an event: wait for all of them.
    let expected = request_ids
        .iter()
        .filter(|(_, e)| e.status.is_some() || e.source_zone.as_deref() != Some("payments"))
        .count();
    let events = gw.events(expected).await;
    let by_id: HashMap<&str, &serde_json::Value> = events
        .iter()
        .filter_map(|e| Some((e["request_id"].as_str()?, e)))
        .collect();
    let mut compared = 0;
    for (request_id, e) in &request_ids {
        let Some(event) = request_id.as_deref().and_then(|r| by_id.get(r)) else {
            // In-zone and allowed: no event by design (docs/events.md).
            assert_eq!(
                (e.decision, e.source_zone.as_deref()),
                ("allow", Some("payments")),
                "{e:?}"
            );
            continue;
        };
        let rule = e.rule.as_ref().map(|r| r.id.as_str());
        let audit = e.audit.as_ref().map(|a| a.rule.id.as_str());
        let audit_decision = e.audit.as_ref().map(|a| a.decision);
        assert_eq!(event["decision"], e.decision, "{e:?} {event}");
        assert_eq!(event["reason"], e.reason, "{e:?} {event}");
        assert_eq!(event["rule_id"].as_str(), rule, "{e:?} {event}");
        assert_eq!(event["audit_rule_id"].as_str(), audit, "{e:?} {event}");
        assert_eq!(
            event["audit_decision"].as_str(),
            audit_decision,
            "{e:?} {event}"
        );
        assert_eq!(event["route"].as_str(), e.route.as_deref(), "{e:?} {event}");
        // The gateway records the normalised path once a route is selected; explain shows it
        // for a `no_route` answer too.
        if e.route.is_some() {
            assert_eq!(event["path"].as_str(), e.path.as_deref(), "{e:?} {event}");
        }
        assert_eq!(
            event["source_zone"].as_str(),
            e.source_zone.as_deref(),
            "{e:?} {event}"
        );
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} events compared");
    // The cases cover every outcome.
    let reasons: std::collections::BTreeSet<&str> =
        request_ids.iter().map(|(_, e)| e.reason).collect();
    for want in [
        "allowed",
        "policy_denied",
        "default_deny",
        "bad_path",
        "no_route",
    ] {
        assert!(reasons.contains(want), "no case for {want}");
    }
    assert!(request_ids.iter().any(|(_, e)| e.audit.is_some()));
    assert!(request_ids
        .iter()
        .any(|(_, e)| e.route.as_deref() == Some("admin")));
    gw.stop();
}

const TOKEN_CONFIG: &str = r#"
[token_issuer.example-org]
kind = "jwt-svid"
trust_domain = "example.org"
keys = "jwt-bundle.json"
algorithms = ["ES256"]

[[route]]
name = "either"
path_prefix = "/tokens/either"
upstream = "payments"
credentials = "either"

[[route]]
name = "both"
path_prefix = "/tokens/both"
upstream = "payments"
credentials = "both"
"#;

const TOKEN_POLICY: &str = r#"
[[rule]]
id = "checkout-token-routes"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["either", "both"]

[[rule]]
id = "scoped-reads"
effect = "allow"
issuers = ["example-org"]
claims = { scope = "reports:read" }
routes = ["either"]
methods = ["GET"]
paths = ["/tokens/either/reports/**"]
"#;

/// (connection SVID, token subject, token scope, method, target)
type TokenCase = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_the_live_gateway_on_tokens() {
    use zonegate_devkit::devtoken::TokenSigner;
    let signer = TokenSigner::generate_es256().unwrap();
    let gw = Gateway::start(Setup {
        policy: format!("{POLICY}\n{TOKEN_POLICY}"),
        extra_config: TOKEN_CONFIG.to_string(),
        client_cert_optional: true,
        files: vec![("jwt-bundle.json".into(), signer.spiffe_bundle().to_string())],
        ..Setup::default()
    })
    .await;
    let loaded = match load::open(&gw.config_path(), None) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = |sub: &str, scope: Option<&str>| {
        let mut claims = serde_json::json!({
            "sub": sub, "aud": "spiffe://example.org/ns/payments/sa/zonegate",
            "iat": now, "exp": now + 300
        });
        if let Some(scope) = scope {
            claims["scope"] = serde_json::json!(scope);
        }
        signer.sign(&claims).unwrap()
    };
    let cases: &[TokenCase] = &[
        (None, Some(CHECKOUT), None, "GET", "/tokens/either/x"),
        (None, Some(CHECKOUT), None, "GET", "/tokens/both/x"),
        (None, Some(CHECKOUT), None, "GET", "/payments/charge"),
        (None, None, None, "GET", "/tokens/either/x"),
        (None, Some(CART), None, "GET", "/tokens/either/x"),
        (
            None,
            Some(CART),
            Some("reports:read"),
            "GET",
            "/tokens/either/reports/1",
        ),
        (
            None,
            Some(CART),
            Some("reports:write"),
            "GET",
            "/tokens/either/reports/1",
        ),
        (
            Some(CHECKOUT),
            Some(CHECKOUT),
            None,
            "GET",
            "/tokens/both/x",
        ),
        (Some(CHECKOUT), None, None, "GET", "/tokens/both/x"),
        (Some(CART), Some(CHECKOUT), None, "GET", "/tokens/either/x"),
        (Some(CART), Some(CHECKOUT), None, "POST", "/payments/charge"),
        (
            Some(LEDGER),
            Some(LEDGER),
            Some("reports:read"),
            "GET",
            "/tokens/either/reports/2",
        ),
    ];
    for &(svid, subject, scope, method, target) in cases {
        let mut client = match svid {
            Some(id) => gw.client(id, false).await,
            None => gw.anonymous_client(false).await,
        };
        let bearer = subject.map(|s| format!("Bearer {}", token(s, scope)));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        let method_value: http::Method = method.parse().unwrap();
        let reply = client
            .send(method_value, target, &headers, bytes::Bytes::new())
            .await
            .unwrap();
        let args = ExplainArgs {
            config: gw.config_path(),
            policy: Vec::new(),
            spiffe_id: svid.or(subject).map(str::to_string),
            issuer: subject.map(|_| "example-org".to_string()),
            subject: subject.map(str::to_string),
            claims: scope.map(|s| format!("scope={s}")).into_iter().collect(),
            token_only: svid.is_none() && subject.is_some(),
            method: method.to_string(),
            host: Some("localhost".into()),
            json: false,
            target: target.to_string(),
        };
        let args = ExplainArgs {
            spiffe_id: if svid.is_none() && subject.is_none() {
                None
            } else {
                args.spiffe_id
            },
            ..args
        };
        let case = format!("{svid:?} {subject:?} {scope:?} {method} {target}");
        if svid.is_none() && subject.is_none() {
            // Nothing to explain an identity from: the command line refuses, the gateway 401s.
            assert!(query(&args).is_err(), "{case}");
            assert_eq!(reply.status.as_u16(), 401, "{case}");
            continue;
        }
        let e = explain(&loaded, &query(&args).unwrap());
        assert_eq!(
            e.status.unwrap_or(200),
            reply.status.as_u16(),
            "{case}: {e:?}"
        );
        // Every refusal and every cross-zone request makes an event (docs/events.md).
        if e.status.is_none() && e.source_zone.as_deref() == Some("payments") {
            continue;
        }
        let request_id = reply.headers["x-request-id"].to_str().unwrap().to_string();
        let event = gw
            .events_where(1, |ev| ev["request_id"] == request_id.as_str())
            .await
            .remove(0);
        assert_eq!(event["reason"], e.reason, "{case}: {e:?} {event}");
        assert_eq!(
            event["rule_id"].as_str(),
            e.rule.as_ref().map(|r| r.id.as_str()),
            "{case}"
        );
        assert_eq!(
            event["source_zone"].as_str(),
            e.source_zone.as_deref(),
            "{case}"
        );
        assert_eq!(
            event["source_spiffe_id"].as_str(),
            e.spiffe_id.as_deref(),
            "{case}"
        );
    }
}
