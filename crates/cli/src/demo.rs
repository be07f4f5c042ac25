//! `zonegate demo`: the embedded default. Mints a dev PKI if missing, writes a sample
//! `payments` zone config and policy, starts the built-in echo upstream and the gateway, and
//! prints ready-to-paste curl commands.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::cli::EXIT_FAILURE;
use crate::config::EXIT_CONFIG;
use crate::events::EventSink;
use crate::reload::SnapshotStore;
use crate::{devpki, echo, server};

const TRUST_DOMAIN: &str = "example.org";
/// The token issuer's config name.
const TRUST_DOMAIN_NAME: &str = "example-org";

/// The demo zone's policy: checkout (zone `shop`) may charge; the payments zone's own ledger
/// may read; a staged rule audits refunds from `shop`. Everything else is denied by default.
pub(crate) const DEMO_POLICY: &str = r#"# Demo policy for the `payments` zone. Default deny: only what a rule allows gets through.

[[rule]]
id = "checkout-charges"
description = "shop's checkout may create and read charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/charge", "/payments/charges/**"]

[[rule]]
id = "payments-zone-read"
description = "workloads of the payments zone may read everything"
effect = "allow"
zones = ["payments"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]

[[rule]]
id = "no-admin-from-other-zones"
description = "staged: nothing outside the payments zone reaches admin paths"
effect = "deny"
mode = "audit"
identities = ["spiffe://example.org/ns/shop/*"]
paths = ["/payments/charges/**"]
"#;

fn demo_config(port: u16, admin_port: u16, upstream: SocketAddr) -> String {
    format!(
        r#"# Demo gateway for the `payments` zone (written by `zonegate demo`).
zone = "payments"

[[listener]]
address = "127.0.0.1:{port}"
# Workloads without an SVID on the connection may still call with a JWT-SVID.
client_cert = "optional"

[tls]
cert = "certs/gateway.crt"
key = "certs/gateway.key"

[trust_domain."{TRUST_DOMAIN}"]
bundle = "certs/ca.crt"

[[zone_map]]
zone = "shop"
identities = ["spiffe://{TRUST_DOMAIN}/ns/shop/*"]

[[zone_map]]
zone = "payments"
identities = ["spiffe://{TRUST_DOMAIN}/ns/payments/*"]

# JWT-SVIDs of {TRUST_DOMAIN}, signed with the dev key (`zonegate token mint`). Their audience
# must be this gateway's SPIFFE ID (the default); they may live at most 10 minutes.
[token_issuer.{TRUST_DOMAIN_NAME}]
kind = "jwt-svid"
trust_domain = "{TRUST_DOMAIN}"
keys = "certs/jwt-bundle.json"
algorithms = ["ES256"]
max_lifetime_s = 600

[[route]]
name = "payments-api"
path_prefix = "/payments"
upstream = "echo"
# An SVID on the connection, a JWT-SVID on the request, or both (then they must match).
credentials = "either"

[upstream.echo]
addresses = ["{upstream}"]

[policy]
files = ["policy"]

[events]
sink = "file"
path = "events.jsonl"

[admin]
address = "127.0.0.1:{admin_port}"
"#
    )
}

/// Runs the demo until Ctrl-C.
pub(crate) fn run(dir: &Path, port: u16, admin_port: u16) -> i32 {
    match start(dir, port, admin_port) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zonegate demo: {e}");
            EXIT_FAILURE
        }
    }
}

fn start(dir: &Path, port: u16, admin_port: u16) -> Result<i32, String> {
    let certs = dir.join("certs");
    let complete = ["ca.crt", "gateway.key", "jwt-signer.key", "jwt-bundle.json"]
        .iter()
        .all(|f| certs.join(f).exists());
    if !complete {
        devpki::write_dev_pki(&certs, TRUST_DOMAIN)
            .map_err(|e| format!("cannot mint the dev PKI: {e}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let upstream = runtime
        .block_on(echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .map_err(|e| format!("cannot start the echo upstream: {e}"))?;

    std::fs::create_dir_all(dir.join("policy")).map_err(|e| e.to_string())?;
    let config_path = dir.join("zonegate.toml");
    std::fs::write(&config_path, demo_config(port, admin_port, upstream))
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("policy/payments.toml"), DEMO_POLICY).map_err(|e| e.to_string())?;

    let store = match SnapshotStore::open(&config_path) {
        Ok(store) => Arc::new(store),
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(EXIT_CONFIG);
        }
    };
    let events = EventSink::start(&store.load().config.events)
        .map_err(|e| format!("cannot open events.jsonl: {e}"))?;
    let gateway = server::build(store, events, &server::StartOptions::default())?;
    let running = gateway.spawn().map_err(|e| e.to_string())?;
    wait_listening(port)?;
    print_instructions(dir, port, admin_port);
    runtime.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    running.stop();
    Ok(0)
}

fn wait_listening(port: u16) -> Result<(), String> {
    for _ in 0..200 {
        if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    Err(format!(
        "the gateway did not start listening on 127.0.0.1:{port} (is the port in use? try --port)"
    ))
}

fn print_instructions(dir: &Path, port: u16, admin_port: u16) {
    let d = dir.display();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "zonegate".into());
    let gateway_id = format!("spiffe://{TRUST_DOMAIN}{}", devpki::DEV_GATEWAY_PATH);
    let curl = |who: &str| {
        format!(
            "curl --cacert {d}/certs/ca.crt --cert {d}/certs/{who}.crt --key {d}/certs/{who}.key"
        )
    };
    println!(
        r#"
zonegate demo: zone `payments` listening on https://localhost:{port} (mTLS, SPIFFE trust domain {TRUST_DOMAIN})
  config  {d}/zonegate.toml      policy  {d}/policy/payments.toml
  events  {d}/events.jsonl       certs   {d}/certs/

Allowed: shop's checkout charges a card (cross-zone shop -> payments, rule checkout-charges)
  {checkout} -X POST https://localhost:{port}/payments/charge -d '{{"amount":42}}'

Denied (403): shop's cart has no rule for payments (default deny)
  {cart} https://localhost:{port}/payments/charge

Allowed with a token, no client certificate: checkout proves itself with a JWT-SVID
  TOKEN=$({exe} token mint --key {d}/certs/jwt-signer.key \
      --sub spiffe://{TRUST_DOMAIN}/ns/shop/sa/checkout --aud {gateway_id})
  curl --cacert {d}/certs/ca.crt -H "Authorization: Bearer $TOKEN" -X POST https://localhost:{port}/payments/charge

The identity events those three requests produced:
  tail -n 3 {d}/events.jsonl

Edit {d}/policy/payments.toml: the change is live on the next request (no restart).
Admin:  curl http://127.0.0.1:{admin_port}/status   (also /metrics, /readyz, POST /reload)
Press Ctrl-C to stop.
"#,
        checkout = curl("checkout"),
        cart = curl("cart"),
    );
}
