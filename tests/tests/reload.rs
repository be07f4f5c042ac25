//! Hot reload: policy, certificates, bundles and revocation lists change while serving, no
//! request fails or is mis-decided, and a broken change is refused while the old one serves.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use zonegate_devkit::devpki::{DevCa, LeafSpec};
use zonegate_e2e::*;

const FLIP_ALLOWED: &str = r#"
[[rule]]
id = "flip"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
paths = ["/payments/flip"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_every_100ms_under_load_fails_and_misdecides_nothing() {
    let allow = format!("{POLICY}{FLIP_ALLOWED}");
    let deny = POLICY.to_string();
    let gw = Arc::new(
        Gateway::start(Setup {
            policy: allow.clone(),
            ..Setup::default()
        })
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for h2 in [false, false, true, true] {
        let mut client = gw.client(CHECKOUT, h2).await;
        let stop = stop.clone();
        loaders.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = client
                    .send(Method::GET, "/payments/flip", &[], Bytes::new())
                    .await
                    .expect("a request failed during reloads");
                let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
                seen.push((id, reply.status));
            }
            seen
        }));
    }
    // generation -> whether its policy allows the flip
    let mut allows: HashMap<u64, bool> = HashMap::from([(1, true)]);
    let started = Instant::now();
    let mut i = 0u32;
    while started.elapsed() < Duration::from_secs(10) {
        i += 1;
        let allowed = i.is_multiple_of(2);
        gw.replace_file("policy.toml", if allowed { &allow } else { &deny });
        let (status, answer) = gw.reload().await;
        assert_eq!(status, 200, "{answer}");
        allows.insert(answer["generation"].as_u64().unwrap(), allowed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut responses = Vec::new();
    for loader in loaders {
        responses.extend(loader.await.unwrap());
    }
    assert!(allows.len() > 50, "only {} generations", allows.len());
    assert!(responses.len() > 200, "only {} requests", responses.len());

    let events = gw.events(responses.len()).await;
    let generation_of: HashMap<&str, u64> = events
        .iter()
        .filter(|e| e["kind"] == "request")
        .map(|e| {
            (
                e["request_id"].as_str().unwrap(),
                e["policy_generation"].as_u64().unwrap(),
            )
        })
        .collect();
    let (mut allowed, mut denied) = (0, 0);
    for (id, status) in &responses {
        let generation = generation_of[id.as_str()];
        let want = if allows[&generation] {
            allowed += 1;
            StatusCode::OK
        } else {
            denied += 1;
            StatusCode::FORBIDDEN
        };
        assert_eq!(*status, want, "request {id} under generation {generation}");
    }
    assert!(
        allowed > 0 && denied > 0,
        "allowed {allowed}, denied {denied}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_is_refused_while_the_old_one_serves() {
    let gw = Gateway::start(Setup::default()).await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let broken = POLICY.replace("effect = \"deny\"\npaths", "effect = \"forbid\"\npaths")
        + "\n[[rule]]\nid = \"x\"\nbogus = 1\n";
    gw.replace_file("policy.toml", &broken);
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["result"], "refused");
    assert_eq!(answer["generation"], 1);
    let errors = answer["errors"].to_string();
    assert!(errors.contains("policy.toml"), "{errors}");
    assert!(errors.contains("unknown field `bogus`"), "{errors}");
    // The old policy still decides.
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    assert_eq!(
        checkout.get("/payments/admin").await.status,
        StatusCode::FORBIDDEN
    );

    let (_, status) = gw.admin_get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["generation"], 1);
    assert!(
        status["last_reload_error"].to_string().contains("bogus"),
        "{status}"
    );
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("zonegate_config_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );

    // Restoring the serving policy resolves the refusal without a new generation...
    gw.replace_file("policy.toml", POLICY);
    let (status, answer) = gw.reload().await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("unchanged")),
        "{answer}"
    );
    // ...and a fixed, changed policy is taken. The refusal was an event.
    gw.replace_file("policy.toml", &format!("{POLICY}{FLIP_ALLOWED}"));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["generation"], 2, "{answer}");
    assert_eq!(checkout.get("/payments/flip").await.status, StatusCode::OK);
    let events = gw.events(1).await;
    let refused = events
        .iter()
        .find(|e| e["kind"] == "config_reload" && e["result"] == "refused");
    assert!(refused.is_some(), "{events:?}");
    let (_, status) = gw.admin_get("/status").await;
    assert!(status.contains("\"last_reload_error\":null"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_picked_up_without_being_asked() {
    let gw = Gateway::start(Setup::default()).await;
    let mut cart = gw.client(CART, false).await;
    assert_eq!(
        cart.get("/payments/charge").await.status,
        StatusCode::FORBIDDEN
    );
    let cart_allowed = POLICY.replace(
        "identities = [\"spiffe://example.org/ns/shop/sa/checkout\"]",
        "identities = [\"spiffe://example.org/ns/shop/sa/checkout\", \"spiffe://example.org/ns/shop/sa/cart\"]",
    );
    gw.replace_file("policy.toml", &cart_allowed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cart.get("/payments/charge").await.status != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the watcher never applied the new policy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_configmap_swap_is_picked_up() {
    // ConfigMap volumes: files are symlinks through `..data`, which is swapped atomically.
    let gw = Gateway::start(Setup::default()).await;
    let dir = gw.dir.path();
    let version = |n: u32, policy: &str| {
        let v = dir.join(format!("..2026_11_23_{n}"));
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join("policy.toml"), policy).unwrap();
        v
    };
    let first = version(1, POLICY);
    std::os::unix::fs::symlink(&first, dir.join("..data")).unwrap();
    std::fs::remove_file(dir.join("policy.toml")).unwrap();
    std::os::unix::fs::symlink("..data/policy.toml", dir.join("policy.toml")).unwrap();
    let mut cart = gw.client(CART, false).await;
    assert_eq!(
        cart.get("/payments/charge").await.status,
        StatusCode::FORBIDDEN
    );

    let allow_cart = format!(
        "{POLICY}\n[[rule]]\nid = \"cart\"\neffect = \"allow\"\nidentities = [\"{CART}\"]\n"
    );
    let second = version(2, &allow_cart);
    std::os::unix::fs::symlink(&second, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cart.get("/payments/charge").await.status != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the ConfigMap swap was never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_identity_is_refused_on_its_open_connections() {
    let gw = Gateway::start(Setup {
        extra_config: "[revocation]\nfile = \"revoked.toml\"\n".into(),
        files: vec![("revoked.toml".into(), String::new())],
        ..Setup::default()
    })
    .await;
    let ledger_svid = gw.pki.svid(LEDGER);
    let mut h1 = gw.client(CHECKOUT, false).await;
    let mut h2 = gw.client(CHECKOUT, true).await;
    let mut ledger = Client::connect(gw.addr(), &gw.pki, &ledger_svid, false)
        .await
        .unwrap();
    for c in [&mut h1, &mut h2] {
        assert_eq!(c.get("/payments/charge").await.status, StatusCode::OK);
    }
    assert_eq!(ledger.get("/payments/ledger").await.status, StatusCode::OK);

    let serial = serial_hex(&ledger_svid.cert_der);
    gw.replace_file(
        "revoked.toml",
        &format!("spiffe_ids = [\"{CHECKOUT}\"]\nserials = [\"{serial}\"]\n"),
    );
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    for c in [&mut h1, &mut h2] {
        let reply = c.get("/payments/charge").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        ledger.get("/payments/ledger").await.status,
        StatusCode::UNAUTHORIZED
    );
    let revoked = gw
        .events_where(3, |e| e["reason"] == "credential_revoked")
        .await;
    assert_eq!(revoked.len(), 3, "{revoked:?}");
    assert!(revoked
        .iter()
        .any(|e| e["detail"] == "certificate serial is revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_trust_domain_is_refused_on_open_connections() {
    let partner = DevCa::new("partner.org").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("partner.crt");
    std::fs::write(&bundle, partner.cert_pem()).unwrap();
    let partner_td = format!(
        "[trust_domain.\"partner.org\"]\nbundle = \"{}\"\n",
        bundle.display()
    );
    let gw = Gateway::start(Setup {
        extra_config: partner_td.clone(),
        policy: format!("{POLICY}\n[[rule]]\nid = \"partner\"\neffect = \"allow\"\nidentities = [\"spiffe://partner.org/*\"]\n"),
        ..Setup::default()
    })
    .await;
    let svid = partner
        .svid("spiffe://partner.org/ns/billing/sa/api")
        .unwrap();
    let mut client = Client::connect(gw.addr(), &gw.pki, &svid, true)
        .await
        .unwrap();
    let mut checkout = gw.client(CHECKOUT, true).await;
    assert_eq!(client.get("/payments/x").await.status, StatusCode::OK);

    gw.edit_config(|text| text.replace(&partner_td, ""));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    let reply = client.get("/payments/x").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Identities of the remaining trust domain are unaffected.
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    let untrusted = gw
        .events_where(1, |e| e["reason"] == "credential_untrusted")
        .await;
    assert_eq!(
        untrusted[0]["source_spiffe_id"],
        "spiffe://partner.org/ns/billing/sa/api"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_certificate_is_served_without_restart() {
    let gw = Gateway::start(Setup::default()).await;
    let svid = gw.pki.svid(CHECKOUT);
    let served = || async {
        let tls = handshake(gw.addr(), client_tls(&gw.pki, &svid, &[b"h2"]))
            .await
            .unwrap();
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        serial_hex(&cert)
    };
    let before = served().await;
    let mut open = gw.client(CHECKOUT, false).await;
    let mut spec = LeafSpec::svid("spiffe://example.org/ns/payments/sa/zonegate");
    spec.dns_sans = vec!["localhost".into()];
    let rotated = gw.pki.ca.issue(&spec).unwrap();
    std::fs::write(gw.pki.path().join("gateway.crt.new"), &rotated.cert_pem).unwrap();
    std::fs::write(gw.pki.path().join("gateway.key.new"), &rotated.key_pem).unwrap();
    // Key first, then cert would leave a mismatched pair for a moment: a reload in between is
    // refused (keys_match) and the old pair keeps serving; so order does not matter.
    std::fs::rename(
        gw.pki.path().join("gateway.key.new"),
        gw.pki.path().join("gateway.key"),
    )
    .unwrap();
    std::fs::rename(
        gw.pki.path().join("gateway.crt.new"),
        gw.pki.path().join("gateway.crt"),
    )
    .unwrap();
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    let after = served().await;
    assert_ne!(before, after);
    assert_eq!(after, serial_hex(&rotated.cert_der));
    // Connections made before the rotation keep working.
    assert_eq!(open.get("/payments/charge").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let gw = Gateway::start(Setup::default()).await;
    assert_eq!(gw.admin_get("/healthz").await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.admin_get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut checkout = gw.client(CHECKOUT, false).await;
    checkout.get("/payments/charge").await;
    checkout.get("/payments/nope").await;
    // Metrics are counted as each request finishes, just after its response is sent.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let (status, metrics) = gw.admin_get("/metrics").await;
        assert_eq!(status, 200);
        if metrics.contains("zonegate_request_duration_seconds_count{route=\"payments-api\"} 2")
            || Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for want in [
        "zonegate_requests_total{decision=\"allow\",reason=\"allowed\",route=\"payments-api\",source_zone=\"shop\",destination_zone=\"payments\"} 1",
        "zonegate_requests_total{decision=\"deny\",reason=\"default_deny\",route=\"payments-api\",source_zone=\"shop\",destination_zone=\"payments\"} 1",
        "zonegate_request_duration_seconds_count{route=\"payments-api\"} 2",
        "zonegate_config_generation 1",
        "zonegate_decision_cache_misses_total 2",
        "zonegate_events_written_total",
        "zonegate_server_certificate_expiry_timestamp_seconds",
    ] {
        assert!(metrics.contains(want), "missing `{want}` in\n{metrics}");
    }
    let (_, status) = gw.admin_get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["zone"], "payments");
    assert_eq!(status["ready"], true);
    assert_eq!(status["policy_hash"].as_str().unwrap().len(), 64);
    assert!(status["files"].as_array().unwrap().len() >= 5);
    assert_eq!(gw.admin_get("/nope").await.0, 404);
    assert_eq!(gw.admin_get("/reload").await.0, 405);
}

fn serial_hex(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reading_the_files_does_not_trigger_the_next_one() {
    let gw = Gateway::start(Setup::default()).await;
    let reloads = |metrics: &str, result: &str| -> u64 {
        let line = format!("zonegate_config_reloads_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.parse().ok())
            .unwrap_or(0)
    };
    // Reading every config file opens and closes them: the watcher must not take that for a
    // change (it did, and reloaded itself every debounce period, forever).
    let (status, body) = gw.reload().await;
    assert_eq!((status, body["result"].as_str()), (200, Some("unchanged")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert_eq!(reloads(&metrics, "unchanged"), 1, "{metrics}");
    assert_eq!(reloads(&metrics, "ok"), 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_settings_apply_on_reload_and_an_address_change_waits_for_a_restart() {
    let gw = Gateway::start(Setup::default()).await;
    // Required: a client without a certificate gets no answer at all.
    let refused = match Client::connect_with(gw.addr(), anonymous_tls(&gw.pki, false), false).await
    {
        Err(_) => true,
        Ok(mut client) => client
            .send(Method::GET, "/payments/charge", &[], Bytes::new())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was answered");

    gw.edit_config(|c| c.replace("client_cert = \"required\"", "client_cert = \"optional\""));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    // New connections get the new setting a moment after the reload answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        let attempt =
            match Client::connect_with(gw.addr(), anonymous_tls(&gw.pki, false), false).await {
                Ok(mut client) => client
                    .send(Method::GET, "/payments/charge", &[], Bytes::new())
                    .await
                    .ok(),
                Err(_) => None,
            };
        if let Some(reply) = attempt {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "client_cert = optional was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let events = gw.events_where(1, |e| e["reason"] == "no_credential").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (_, status) = gw.admin_get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["restart_required"], serde_json::json!([]));

    let port = free_port();
    gw.edit_config(|c| format!("{c}\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n"));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    let want = serde_json::json!([format!("listener 127.0.0.1:{port} added")]);
    restart_required_becomes(&gw, want).await;
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(metrics.contains("zonegate_restart_required 1"), "{metrics}");
    // Not applied: nothing listens there.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// The event sink and the tracer are built at start: a reload that changes them is reported
/// as needing a restart, and the running sink keeps writing what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_or_tracing_change_is_reported_as_needing_a_restart() {
    let gw = Gateway::start(Setup::default()).await;
    gw.edit_config(|c| {
        c.replace("[events]\n", "[events]\nformat = \"ocsf\"\n")
            + "\n[tracing]\nendpoint = \"http://127.0.0.1:4318\"\n"
    });
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    let want = serde_json::json!([
        "[events] sink, format or capacity changed",
        "[tracing] changed"
    ]);
    restart_required_becomes(&gw, want).await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    assert_eq!(
        checkout.get("/payments/charge").await.status,
        StatusCode::OK
    );
    let events = gw
        .events_where(1, |e| e["source_spiffe_id"] == CHECKOUT)
        .await;
    assert_eq!(
        events[0]["schema"], "zonegate.identity/v1",
        "still the started format"
    );
}

/// Waits (5 s at most) until `/status` lists `want` as needing a restart: the listeners and
/// the sink follow the published snapshot a moment after the reload answers.
async fn restart_required_becomes(gw: &Gateway, want: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, status) = gw.admin_get("/status").await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        if status["restart_required"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
