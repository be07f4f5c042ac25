//! X.509-SVID verification at the handshake, and identity re-checked on every request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use http::StatusCode;
use rcgen::KeyUsagePurpose;
use time::OffsetDateTime;
use zonegate_devkit::devpki::{DevCa, LeafSpec};
use zonegate_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_svid_rule_violation_fails_the_handshake() {
    let gw = Gateway::start(Setup::default()).await;
    let now = OffsetDateTime::now_utc();
    let svid = LeafSpec::svid;
    let with = |f: &dyn Fn(&mut LeafSpec)| {
        let mut spec = svid(CHECKOUT);
        f(&mut spec);
        spec
    };
    let cases: Vec<(&str, LeafSpec)> = vec![
        (
            "no URI SAN",
            with(&|s| {
                s.uri_sans.clear();
                s.dns_sans = vec!["checkout.shop".into()];
            }),
        ),
        ("two URI SANs", with(&|s| s.uri_sans.push(CART.into()))),
        (
            "not a spiffe URI",
            svid("https://example.org/ns/shop/sa/checkout"),
        ),
        (
            "upper-case scheme",
            svid("SPIFFE://example.org/ns/shop/sa/checkout"),
        ),
        (
            "upper-case trust domain",
            svid("spiffe://EXAMPLE.org/ns/shop/sa/checkout"),
        ),
        (
            "empty path segment",
            svid("spiffe://example.org/ns//checkout"),
        ),
        ("dot segment", svid("spiffe://example.org/ns/./checkout")),
        (
            "dot-dot segment",
            svid("spiffe://example.org/ns/../checkout"),
        ),
        ("trailing slash", svid("spiffe://example.org/ns/shop/")),
        ("query", svid("spiffe://example.org/ns/shop?x=1")),
        ("fragment", svid("spiffe://example.org/ns/shop#x")),
        ("port", svid("spiffe://example.org:443/ns/shop")),
        ("userinfo", svid("spiffe://user@example.org/ns/shop")),
        (
            "bad path character",
            svid("spiffe://example.org/ns/sh%20op"),
        ),
        (
            "too long",
            svid(&format!("spiffe://example.org/{}", "a".repeat(2100))),
        ),
        ("leaf is a CA", with(&|s| s.is_ca = true)),
        ("no key usage", with(&|s| s.key_usages.clear())),
        (
            "no digitalSignature",
            with(&|s| s.key_usages = vec![KeyUsagePurpose::KeyEncipherment]),
        ),
        (
            "keyCertSign",
            with(&|s| s.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        ),
        (
            "cRLSign",
            with(&|s| s.key_usages.push(KeyUsagePurpose::CrlSign)),
        ),
        (
            "expired",
            with(&|s| {
                s.not_before = now - time::Duration::days(2);
                s.not_after = now - time::Duration::days(1);
            }),
        ),
        (
            "not yet valid",
            with(&|s| {
                s.not_before = now + time::Duration::days(1);
                s.not_after = now + time::Duration::days(2);
            }),
        ),
    ];
    // The control: a well-formed SVID from the same CA is accepted.
    let good = gw.pki.svid(CHECKOUT);
    handshake(gw.addr(), client_tls(&gw.pki, &good, &[b"http/1.1"]))
        .await
        .expect("a valid SVID was refused");
    let refused = cases.len();
    for (name, spec) in cases {
        let cert = gw.pki.ca.issue(&spec).expect(name);
        let result = handshake(gw.addr(), client_tls(&gw.pki, &cert, &[b"http/1.1"])).await;
        assert!(
            result.is_err(),
            "handshake with SVID violation `{name}` succeeded"
        );
    }
    // Each refusal is an identity event with its reason.
    let events = gw.events(refused).await;
    assert_eq!(events.len(), refused);
    for e in &events {
        assert_eq!(e["kind"], "handshake_refused");
        assert_eq!(e["reason"], "svid_refused");
        assert_eq!(e["destination_zone"], "payments");
        assert!(!e["detail"].as_str().unwrap().is_empty());
    }
    // ...naming the precise rule broken, in the order the attempts were made.
    let expected = [
        "no URI SAN",
        "2 URI SANs",
        "scheme is not `spiffe://`",
        "scheme is not `spiffe://`",
        "trust domain contains a character",
        "empty segment",
        "`.` or `..` segment",
        "`.` or `..` segment",
        "ends with a slash",
        "carries a query",
        "carries a fragment",
        "carries a port",
        "carries userinfo",
        "path contains a character",
        "longer than 2048 bytes",
        "CaUsedAsEndEntity",
        "no keyUsage",
        "lacks digitalSignature",
        "sets keyCertSign",
        "sets cRLSign",
        "certificate expired",
        "certificate not valid yet",
    ];
    assert_eq!(expected.len(), events.len());
    for (event, want) in events.iter().zip(expected) {
        let detail = event["detail"].as_str().unwrap();
        assert!(detail.contains(want), "`{detail}` does not say `{want}`");
    }
    assert_eq!(events[1]["claimed_spiffe_id"], serde_json::Value::Null);
    assert_eq!(events[15]["claimed_spiffe_id"], CHECKOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svids_chain_only_to_their_own_trust_domain() {
    let gw = Gateway::start(Setup::default()).await;
    // Same trust domain, different (untrusted) CA.
    let rogue = DevCa::new(TD).unwrap();
    let forged = rogue.svid(CHECKOUT).unwrap();
    assert!(handshake(gw.addr(), client_tls(&gw.pki, &forged, &[b"h2"]))
        .await
        .is_err());
    // A trust domain with no bundle configured.
    let partner = DevCa::new("partner.org").unwrap();
    let foreign = partner
        .svid("spiffe://partner.org/ns/shop/sa/checkout")
        .unwrap();
    assert!(
        handshake(gw.addr(), client_tls(&gw.pki, &foreign, &[b"h2"]))
            .await
            .is_err()
    );
    // The trusted CA signing an ID of another trust domain.
    let cross = gw.pki.svid("spiffe://partner.org/ns/shop/sa/checkout");
    assert!(handshake(gw.addr(), client_tls(&gw.pki, &cross, &[b"h2"]))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_trust_domains_each_use_their_own_bundle() {
    let partner = DevCa::new("partner.org").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("partner.crt");
    std::fs::write(&bundle, partner.cert_pem()).unwrap();
    let gw = Gateway::start(Setup {
        extra_config: format!(
            "[trust_domain.\"partner.org\"]\nbundle = \"{}\"\n",
            bundle.display()
        ),
        policy: format!(
            "{POLICY}\n[[rule]]\nid = \"partner\"\neffect = \"allow\"\nidentities = [\"spiffe://partner.org/*\"]\npaths = [\"/payments/partner\"]\n"
        ),
        ..Setup::default()
    })
    .await;
    let svid = partner
        .svid("spiffe://partner.org/ns/billing/sa/api")
        .unwrap();
    let mut client = Client::connect(gw.addr(), &gw.pki, &svid, false)
        .await
        .unwrap();
    assert_eq!(client.get("/payments/partner").await.status, StatusCode::OK);
    // The partner CA cannot vouch for example.org identities.
    let impostor = partner.svid(CHECKOUT).unwrap();
    assert!(
        handshake(gw.addr(), client_tls(&gw.pki, &impostor, &[b"h2"]))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_svid_that_expires_on_an_open_connection_is_refused() {
    let gw = Gateway::start(Setup::default()).await;
    for h2 in [false, true] {
        let mut spec = LeafSpec::svid(CHECKOUT);
        spec.not_after = OffsetDateTime::now_utc() + time::Duration::seconds(2);
        let short = gw.pki.ca.issue(&spec).unwrap();
        let mut client = Client::connect(gw.addr(), &gw.pki, &short, h2)
            .await
            .unwrap();
        assert_eq!(client.get("/payments/charge").await.status, StatusCode::OK);
        let remaining = spec.not_after - OffsetDateTime::now_utc();
        if remaining.is_positive() {
            tokio::time::sleep(Duration::from_millis(
                remaining.whole_milliseconds() as u64 + 1100,
            ))
            .await;
        }
        let reply = client.get("/payments/charge").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "h2={h2}");
        assert_eq!(reply.json()["error"], "unauthenticated");
    }
    let events = gw.events(4).await;
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "credential_expired")
        .collect();
    assert_eq!(expired.len(), 2, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_both_accepted() {
    let gw = Gateway::start(Setup::default()).await;
    let svid = gw.pki.svid(CHECKOUT);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(gw.pki.ca.cert_der()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![svid.cert_der.clone()], svid.private_key())
        .unwrap();
        let tls = handshake(gw.addr(), config).await.expect("handshake");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

/// Issue: SPIRE's bundle formats. A trust domain's bundle may be a SPIFFE bundle (JSON) or a
/// PEM file holding several domains' roots (spiffe-helper with federated domains): a root that
/// names another domain never vouches for this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_in_the_spiffe_format_and_a_federated_pem_keep_each_domain_to_its_roots() {
    use base64::Engine;
    let gw = Gateway::start(Setup::default()).await;
    let partner = DevCa::new("partner.org").unwrap();
    // The partner domain's CA signs a certificate claiming one of ours.
    let forged = partner.svid(CHECKOUT).unwrap();
    let use_bundle = |name: &str, contents: &[u8]| {
        std::fs::write(gw.dir.path().join(name), contents).unwrap();
        let certs = gw.pki.path().display().to_string();
        gw.edit_config(|c| {
            c.replace(
                &format!("bundle = \"{certs}/ca.crt\""),
                &format!("bundle = \"{name}\""),
            )
            .replace("bundle = \"bundle.json\"", &format!("bundle = \"{name}\""))
        });
    };

    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let bundle = serde_json::json!({
        "keys": [
            { "use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [b64(&gw.pki.ca.cert_der())] },
            { "use": "jwt-svid", "kty": "EC", "kid": "j1", "crv": "P-256", "x": "AA", "y": "AA" }
        ],
        "spiffe_sequence": 1
    });
    let before = gw.generation().await;
    use_bundle("bundle.json", &serde_json::to_vec(&bundle).unwrap());
    let (status, answer) = gw.reload_after_edit(before).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "applied", "{answer}");
    let mut checkout = gw.client(CHECKOUT, false).await;
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );

    let mixed = format!("{}{}", gw.pki.ca.cert_pem(), partner.cert_pem());
    let before = gw.generation().await;
    use_bundle("federated.pem", mixed.as_bytes());
    let (status, answer) = gw.reload_after_edit(before).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "applied", "{answer}");
    assert!(
        std::fs::read_to_string(gw.config_path())
            .unwrap()
            .contains("bundle = \"federated.pem\""),
        "the reload read the federated file"
    );
    let mut fresh = gw.client(CHECKOUT, false).await;
    assert_eq!(fresh.get("/payments/charge").await.status, StatusCode::OK);
    let refused = handshake(gw.addr(), client_tls(&gw.pki, &forged, &[b"http/1.1"])).await;
    assert!(
        refused.is_err(),
        "a partner.org root vouched for example.org"
    );
    let events = gw
        .events_where(1, |e| e["kind"] == "handshake_refused")
        .await;
    assert_eq!(events[0]["claimed_spiffe_id"], CHECKOUT, "{:?}", events[0]);
}
