//! The SPIFFE Workload API as the gateway's identity source, end to end: a Workload API
//! server built from `workload.proto` on a Unix socket streams the gateway's X.509-SVID, the
//! trust bundles and the JWT authorities; the gateway serves with them over real TLS, follows
//! rotations under load, keeps the last good material when the agent goes away and when a
//! rotation does not build, and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use zonegate_devkit::devpki::{DevCa, Issued, LeafSpec};
use zonegate_devkit::devtoken::TokenSigner;
use zonegate_e2e::workload_api::{x509_response, JwtBundlesResponse, WorkloadApi};
use zonegate_e2e::{
    admin_request, client_tls, handshake, Client, Gateway, Pki, Setup, CHECKOUT, POLICY,
};

const GATEWAY_ID: &str = "spiffe://example.org/ns/payments/sa/zonegate";
const PARTNER: &str = "spiffe://partner.org/ns/billing/sa/invoicer";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt_key() -> &'static TokenSigner {
    static KEY: OnceLock<TokenSigner> = OnceLock::new();
    KEY.get_or_init(|| TokenSigner::generate_es256().unwrap())
}

/// The gateway's SVID as an agent would mint it, valid from `from` to `until`.
fn gateway_svid(ca: &DevCa, from: OffsetDateTime, until: OffsetDateTime) -> Issued {
    let mut spec = LeafSpec::svid(GATEWAY_ID);
    spec.dns_sans = vec!["localhost".into()];
    spec.ip_sans = vec![Ipv4Addr::LOCALHOST.into()];
    spec.not_before = from;
    spec.not_after = until;
    ca.issue(&spec).unwrap()
}

fn day_long_svid(ca: &DevCa) -> Issued {
    let now = OffsetDateTime::now_utc();
    gateway_svid(
        ca,
        now - time::Duration::minutes(1),
        now + time::Duration::days(1),
    )
}

/// The agent's X.509 answer: `svid` under example.org's `roots`, and federated domains.
fn x509(
    svid: &Issued,
    roots: &[&DevCa],
    federated: &[&DevCa],
) -> zonegate_e2e::workload_api::X509SvidResponse {
    let roots: Vec<_> = roots.iter().map(|ca| ca.cert_der()).collect();
    let roots: Vec<&[u8]> = roots.iter().map(|r| r.as_ref()).collect();
    let federated_roots: Vec<_> = federated.iter().map(|ca| ca.cert_der()).collect();
    let federated: Vec<(&str, Vec<&[u8]>)> = federated
        .iter()
        .zip(&federated_roots)
        .map(|(ca, root)| (ca.trust_domain.as_str(), vec![root.as_ref()]))
        .collect();
    let federated: Vec<(&str, &[&[u8]])> =
        federated.iter().map(|(d, r)| (*d, r.as_slice())).collect();
    x509_response(
        GATEWAY_ID,
        &[svid.cert_der.as_ref()],
        &svid.key_der,
        &roots,
        &federated,
    )
}

/// example.org's JWT authorities as SPIRE's agent sends them (no `use`).
fn jwt_bundles() -> JwtBundlesResponse {
    let mut jwk = jwt_key().jwk("sig");
    jwk.as_object_mut().unwrap().remove("use");
    JwtBundlesResponse {
        bundles: [(
            "example.org".to_string(),
            json!({ "keys": [jwk] }).to_string().into_bytes(),
        )]
        .into(),
    }
}

const CONFIG: &str = r#"
[token_issuer.example-org]
kind = "jwt-svid"
trust_domain = "example.org"
algorithms = ["ES256"]

[[route]]
name = "either"
path_prefix = "/tokens/either"
upstream = "payments"
credentials = "either"
"#;

const EXTRA_POLICY: &str = r#"
[[rule]]
id = "checkout-token-route"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["either"]

[[rule]]
id = "partner-reads"
effect = "allow"
identities = ["spiffe://partner.org/ns/billing/sa/invoicer"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/public/**"]
"#;

/// An agent serving `svid` (and example.org's JWT authorities), and a gateway following it.
async fn start(pki: Pki, svid: &Issued) -> (Arc<WorkloadApi>, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(WorkloadApi::start(&dir.path().join("agent.sock")));
    agent.set_x509(x509(svid, &[&pki.ca], &[]));
    agent.set_jwt_bundles(jwt_bundles());
    let gateway = Gateway::start_with_pki(
        pki,
        Setup {
            identity: Some(format!("[spiffe]\nworkload_api = \"{}\"", agent.address())),
            policy: format!("{POLICY}\n{EXTRA_POLICY}"),
            extra_config: CONFIG.to_string(),
            client_cert_optional: true,
            ..Setup::default()
        },
    )
    .await;
    // The socket's directory lives as long as the gateway's.
    std::mem::forget(dir);
    (agent, gateway)
}

/// The leaf certificate the gateway serves now.
async fn served_leaf(gw: &Gateway) -> Vec<u8> {
    let client = gw.pki.svid(CHECKOUT);
    let tls = handshake(gw.addr(), client_tls(&gw.pki, &client, &[b"http/1.1"]))
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn wait_for_leaf(gw: &Gateway, leaf: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_leaf(gw).await != leaf {
        assert!(
            Instant::now() < deadline,
            "the gateway never served the new SVID"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let (_, text) = admin_request(gw.admin_port, "GET", "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_for_metric(gw: &Gateway, name: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = metric(gw, name).await;
        if seen == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {seen:?}, not {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(gw: &Gateway) -> Value {
    let (code, body) = admin_request(gw.admin_port, "GET", "/status").await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_with_the_svid_bundle_and_jwt_keys_of_the_workload_api() {
    let pki = Pki::new();
    let svid = day_long_svid(&pki.ca);
    let (agent, gw) = start(pki, &svid).await;

    assert_eq!(served_leaf(&gw).await, svid.cert_der.to_vec());
    // The bundle from the agent verifies a workload's SVID.
    let mut client = gw.client(CHECKOUT, false).await;
    assert_eq!(client.get("/payments/charge").await.status, StatusCode::OK);
    // A JWT-SVID checked with the agent's JWT authorities, for the default audience: the
    // SPIFFE ID of the SVID the agent sent.
    let t = now();
    let token = jwt_key()
        .sign(&json!({ "sub": CHECKOUT, "aud": GATEWAY_ID, "iat": t, "exp": t + 300 }))
        .unwrap();
    let mut anonymous = gw.anonymous_client(false).await;
    let reply = anonymous
        .with_token(Method::GET, "/tokens/either/x", &token)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // A token signed by another key is refused: the keys are the agent's, not any.
    let other = TokenSigner::generate_es256().unwrap();
    let forged = other
        .sign(&json!({ "sub": CHECKOUT, "aud": GATEWAY_ID, "iat": t, "exp": t + 300 }))
        .unwrap();
    let reply = anonymous
        .with_token(Method::GET, "/tokens/either/x", &forged)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // The agent's JWT authorities rotate: the new key verifies, the old one no longer does.
    let mut rotated = other.jwk("jwt-svid");
    rotated["kid"] = json!("rotated");
    agent.set_jwt_bundles(JwtBundlesResponse {
        bundles: [(
            "example.org".to_string(),
            json!({ "keys": [rotated] }).to_string().into_bytes(),
        )]
        .into(),
    });
    let forged = other
        .sign_with_header(
            &json!({ "alg": "ES256", "typ": "JWT", "kid": "rotated" }),
            &json!({ "sub": CHECKOUT, "aud": GATEWAY_ID, "iat": t, "exp": t + 300 }),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = anonymous
            .with_token(Method::GET, "/tokens/either/x", &forged)
            .await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated JWT key never verified"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = anonymous
        .with_token(Method::GET, "/tokens/either/x", &token)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // The client sent the Workload API's security header on both streams.
    assert!(agent.calls("FetchX509SVID") >= 1);
    assert!(agent.calls("FetchJWTBundles") >= 1);
    assert_eq!(agent.refused(), 0);
    let status = status(&gw).await;
    assert_eq!(status["workload_api"]["connected"], true, "{status}");
    assert_eq!(status["trust_domains"], json!(["example.org"]));
    wait_for_metric(&gw, "zonegate_workload_api_connected", 1.0).await;
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_under_load_fail_no_request() {
    let pki = Pki::new();
    let first = day_long_svid(&pki.ca);
    let (agent, gw) = start(pki, &first).await;
    let gw = Arc::new(gw);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for n in 0..4 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            // Half the callers reconnect for every request (new handshakes meet the new
            // SVID), half keep their connection.
            let mut kept: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) {
                let client = match (n % 2, kept.take()) {
                    (0, Some(client)) => client,
                    _ => gw.client(CHECKOUT, n == 0).await,
                };
                let mut client = client;
                match client.get("/payments/charge").await.status {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                kept = Some(client);
            }
        }));
    }
    // Three SVID rotations, the last with a new CA beside the old one in the bundle (the
    // first step of a CA rotation: the new root is trusted before anything is signed by it).
    let new_ca = DevCa::new("example.org").unwrap();
    let mut last = first;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = day_long_svid(&gw.pki.ca);
        let roots: &[&DevCa] = if round == 2 {
            &[&gw.pki.ca, &new_ca]
        } else {
            &[&gw.pki.ca]
        };
        agent.set_x509(x509(&next, roots, &[]));
        last = next;
    }
    wait_for_leaf(&gw, &last.cert_der).await;
    // A workload whose SVID the new CA signed is trusted now.
    let renewed = new_ca.svid(CHECKOUT).unwrap();
    let mut client = Client::connect_with(
        gw.addr(),
        client_tls(&gw.pki, &renewed, &[b"http/1.1"]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(client.get("/payments/charge").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 50, "only {ok} requests under rotation");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during rotation",
        ok + failed
    );
    // Each rotation was applied as a reload by the agent.
    let status = status(&gw).await;
    assert_eq!(status["last_reload"]["trigger"], "workload_api", "{status}");
    assert_eq!(status["last_reload"]["result"], "ok", "{status}");
    assert!(
        status["workload_api"]["updates"].as_u64().unwrap() >= 4,
        "{status}"
    );
    let events = gw
        .events_where(3, |e| {
            e["kind"] == "config_reload" && e["trigger"] == "workload_api"
        })
        .await;
    assert!(events.iter().all(|e| e["result"] == "applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_lost_leaves_the_last_good_material_in_force_until_it_returns() {
    let pki = Pki::new();
    let first = day_long_svid(&pki.ca);
    let (agent, gw) = start(pki, &first).await;

    agent.stop();
    wait_for_metric(&gw, "zonegate_workload_api_connected", 0.0).await;
    let lost = gw
        .events_where(1, |e| e["kind"] == "workload_api" && e["result"] == "lost")
        .await;
    assert_eq!(lost[0]["spiffe_id"], GATEWAY_ID);
    assert!(lost[0]["error"].is_string(), "{}", lost[0]);
    // Still serving, with the SVID it had, and still ready.
    let mut client = gw.client(CHECKOUT, true).await;
    assert_eq!(client.get("/payments/charge").await.status, StatusCode::OK);
    assert_eq!(served_leaf(&gw).await, first.cert_der.to_vec());
    assert_eq!(admin_request(gw.admin_port, "GET", "/readyz").await.0, 200);
    let status = status(&gw).await;
    assert_eq!(status["workload_api"]["connected"], false, "{status}");
    assert!(status["workload_api"]["last_error"].is_string(), "{status}");
    // A few reconnection attempts while it is gone: backoff, not a busy loop.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back with a rotated SVID: the gateway reconnects and takes it.
    let second = day_long_svid(&gw.pki.ca);
    agent.set_x509(x509(&second, &[&gw.pki.ca], &[]));
    agent.resume();
    wait_for_leaf(&gw, &second.cert_der).await;
    wait_for_metric(&gw, "zonegate_workload_api_connected", 1.0).await;
    assert!(metric(&gw, "zonegate_workload_api_losses_total").await >= Some(1.0));
    gw.events_where(1, |e| {
        e["kind"] == "workload_api" && e["result"] == "connected"
    })
    .await;
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_trust_domain_is_added_and_removed_live() {
    let pki = Pki::new();
    let svid = day_long_svid(&pki.ca);
    let (agent, gw) = start(pki, &svid).await;
    let partner = DevCa::new("partner.org").unwrap();
    let invoicer = partner.svid(PARTNER).unwrap();
    let partner_tls = || client_tls(&gw.pki, &invoicer, &[b"http/1.1"]);

    assert!(
        handshake(gw.addr(), partner_tls()).await.is_err(),
        "partner.org is not federated yet"
    );
    agent.set_x509(x509(&svid, &[&gw.pki.ca], &[&partner]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake(gw.addr(), partner_tls()).await.is_err() {
        assert!(Instant::now() < deadline, "partner.org never trusted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = Client::connect_with(gw.addr(), partner_tls(), false)
        .await
        .unwrap();
    let reply = client.get("/payments/public/rates").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // Its roots are its own: they do not vouch for example.org.
    let impostor = partner.svid(CHECKOUT).unwrap();
    assert!(
        handshake(gw.addr(), client_tls(&gw.pki, &impostor, &[b"http/1.1"]))
            .await
            .is_err()
    );
    assert_eq!(
        status(&gw).await["trust_domains"],
        json!(["example.org", "partner.org"])
    );

    agent.set_x509(x509(&svid, &[&gw.pki.ca], &[]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake(gw.addr(), partner_tls()).await.is_ok() {
        assert!(Instant::now() < deadline, "partner.org still trusted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_svid_near_its_end_with_no_replacement_is_reported() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    // 70 s of life, 10 s left: less than a quarter.
    let short = gateway_svid(
        &pki.ca,
        now - time::Duration::seconds(60),
        now + time::Duration::seconds(10),
    );
    let (agent, gw) = start(pki, &short).await;
    wait_for_metric(&gw, "zonegate_svid_expiring", 1.0).await;
    let events = gw
        .events_where(1, |e| {
            e["kind"] == "workload_api" && e["result"] == "svid_expiring"
        })
        .await;
    assert_eq!(events[0]["spiffe_id"], GATEWAY_ID);
    assert!(events[0]["svid_not_after"].is_string());
    assert_eq!(status(&gw).await["workload_api"]["svid_expiring"], true);

    // The agent's next SVID clears it.
    agent.set_x509(x509(&day_long_svid(&gw.pki.ca), &[&gw.pki.ca], &[]));
    wait_for_metric(&gw, "zonegate_svid_expiring", 0.0).await;
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_does_not_build_keeps_the_last_good_svid_and_a_broken_file_does_not_hold_one_up(
) {
    let pki = Pki::new();
    let first = day_long_svid(&pki.ca);
    let (agent, gw) = start(pki, &first).await;

    // An SVID with somebody else's key: refused, recorded, and the first one still served.
    let other = day_long_svid(&gw.pki.ca);
    let mut mismatched = x509(&other, &[&gw.pki.ca], &[]);
    mismatched.svids[0].x509_svid_key = first.key_der.clone();
    agent.set_x509(mismatched);
    let refused = gw
        .events_where(1, |e| {
            e["kind"] == "config_reload"
                && e["trigger"] == "workload_api"
                && e["result"] == "refused"
        })
        .await;
    assert!(
        refused[0]["errors"].to_string().contains("tls.key"),
        "{}",
        refused[0]
    );
    assert_eq!(served_leaf(&gw).await, first.cert_der.to_vec());

    // The config on disk is broken by an edit in progress: a rotation still applies, to the
    // configuration in force.
    gw.edit_config(|c| format!("{c}\n[[route]]\nname = \"half-written"));
    gw.events_where(1, |e| {
        e["kind"] == "config_reload" && e["trigger"] == "file" && e["result"] == "refused"
    })
    .await;
    let second = day_long_svid(&gw.pki.ca);
    agent.set_x509(x509(&second, &[&gw.pki.ca], &[]));
    wait_for_leaf(&gw, &second.cert_der).await;
    let mut client = gw.client(CHECKOUT, false).await;
    assert_eq!(client.get("/payments/charge").await.status, StatusCode::OK);
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_identity_source_is_reported_as_needing_a_restart() {
    // A gateway following an agent, whose config is edited to name another endpoint: the
    // rest of the config applies, the endpoint change waits for a restart and says so.
    let pki = Pki::new();
    let svid = day_long_svid(&pki.ca);
    let (agent, gw) = start(pki, &svid).await;
    let moved = agent.address().replace("agent.sock", "elsewhere.sock");
    gw.edit_config(|c| c.replace(&agent.address(), &moved));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status(&gw).await;
        if status["restart_required"] == json!(["[spiffe] changed"]) {
            assert_eq!(status["last_reload"]["result"], "ok", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_metric(&gw, "zonegate_restart_required", 1.0).await;
    // Still following the agent it started with.
    let next = day_long_svid(&gw.pki.ca);
    agent.set_x509(x509(&next, &[&gw.pki.ca], &[]));
    wait_for_leaf(&gw, &next.cert_der).await;
    gw.stop();

    // A gateway started with [tls] files, told to follow an agent: refused, with the reason.
    let files = Gateway::start(Setup::default()).await;
    files.edit_config(|c| {
        let start = c.find("[tls]").unwrap();
        let end = c.find("[[zone_map]]").unwrap();
        format!(
            "{}[spiffe]\nworkload_api = \"{}\"\n{}",
            &c[..start],
            agent.address(),
            &c[end..]
        )
    });
    let (code, body) = files.reload().await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.to_string()
            .contains("following the Workload API instead needs a restart"),
        "{body}"
    );
    files.stop();
}
