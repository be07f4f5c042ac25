//! SPIFFE federation: a federated trust domain's bundle fetched from its bundle endpoint
//! (https_web), written to the domain's bundle file and applied by the reload; refresh by the
//! bundle's hint; a failing endpoint keeps the last good bundle.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use zonegate_devkit::devpki::{DevCa, LeafSpec};
use zonegate_e2e::*;

const PARTNER: &str = "spiffe://partner.org/ns/billing/sa/api";

/// What the endpoint serves: a bundle (with its refresh hint), or an error status.
#[derive(Clone)]
enum Serving {
    Bundle(Vec<u8>),
    Status(StatusCode),
}

/// A SPIFFE bundle for partner.org whose X.509 authority is `ca`.
fn bundle_of(ca: &DevCa, sequence: u64) -> Vec<u8> {
    let der = base64::engine::general_purpose::STANDARD.encode(ca.cert_der());
    serde_json::to_vec(&serde_json::json!({
        "keys": [{ "use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [der] }],
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": 1
    }))
    .unwrap()
}

/// An HTTPS bundle endpoint for `localhost` with a certificate from `web`.
async fn endpoint(web: &DevCa, serving: Arc<Mutex<Serving>>) -> SocketAddr {
    let mut spec = LeafSpec::svid("spiffe://web.test/bundle-endpoint");
    spec.dns_sans = vec!["localhost".into()];
    let cert = web.issue(&spec).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let serving = serving.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request| {
                    let now = serving.lock().unwrap().clone();
                    async move {
                        let response = match now {
                            Serving::Bundle(body) => Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body))),
                            Serving::Status(status) => Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, Infallible>(response.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway federated with partner.org through the endpoint at `addr`, trusting `web` for
/// its certificate; its bundle file starts with `bootstrap`'s root, as saved before the first
/// fetch.
async fn federated_gateway(addr: SocketAddr, web: &DevCa, bootstrap: &DevCa) -> Gateway {
    Gateway::start(Setup {
        files: vec![
            (
                "partner.json".into(),
                String::from_utf8(bundle_of(bootstrap, 1)).unwrap(),
            ),
            ("web-ca.pem".into(), web.cert_pem()),
        ],
        extra_config: format!(
            "[trust_domain.\"partner.org\"]\nbundle = \"partner.json\"\n\
             bundle_endpoint = \"https://localhost:{}/bundle\"\nendpoint_ca = \"web-ca.pem\"\n",
            addr.port()
        ),
        ..Setup::default()
    })
    .await
}

async fn accepted(gw: &Gateway, svid: &zonegate_devkit::devpki::Issued) -> bool {
    handshake(gw.addr(), client_tls(&gw.pki, svid, &[b"http/1.1"]))
        .await
        .is_ok()
}

/// Waits (10 s at most) until a handshake with `svid` is accepted (`true`) or refused.
async fn until_accepted(gw: &Gateway, svid: &zonegate_devkit::devpki::Issued, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted(gw, svid).await != want {
        assert!(Instant::now() < deadline, "handshake never became {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_is_fetched_refreshed_and_kept_when_the_endpoint_fails() {
    let web = DevCa::new("web.test").unwrap();
    let old = DevCa::new("partner.org").unwrap();
    let new = DevCa::new("partner.org").unwrap();
    let serving = Arc::new(Mutex::new(Serving::Bundle(bundle_of(&new, 2))));
    let addr = endpoint(&web, serving.clone()).await;
    let gw = federated_gateway(addr, &web, &old).await;
    let old_svid = old.svid(PARTNER).unwrap();
    let new_svid = new.svid(PARTNER).unwrap();

    // The endpoint's bundle replaces the bootstrap: the new root in, the old one out.
    until_accepted(&gw, &new_svid, true).await;
    assert!(
        !accepted(&gw, &old_svid).await,
        "the old root still trusted"
    );
    let written = std::fs::read(gw.dir.path().join("partner.json")).unwrap();
    assert_eq!(
        written,
        bundle_of(&new, 2),
        "the file holds the fetched bundle"
    );

    // The endpoint fails, then serves a bundle with no root for partner.org: each time the
    // last good bundle stays in force (and in the file), and the failure is counted.
    for bad in [
        Serving::Status(StatusCode::SERVICE_UNAVAILABLE),
        Serving::Bundle(bundle_of(&DevCa::new("other.org").unwrap(), 3)),
    ] {
        let before = failed_fetches(&gw).await;
        *serving.lock().unwrap() = bad;
        let deadline = Instant::now() + Duration::from_secs(10);
        while failed_fetches(&gw).await == before {
            assert!(Instant::now() < deadline, "no failed fetch counted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(accepted(&gw, &new_svid).await);
        assert_eq!(
            std::fs::read(gw.dir.path().join("partner.json")).unwrap(),
            bundle_of(&new, 2)
        );
    }

    // Back, with the old root again (a rollback the partner chose): followed.
    *serving.lock().unwrap() = Serving::Bundle(bundle_of(&old, 4));
    until_accepted(&gw, &old_svid, true).await;
    until_accepted(&gw, &new_svid, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_whose_certificate_is_not_trusted_is_not_followed() {
    let web = DevCa::new("web.test").unwrap();
    let stranger = DevCa::new("web.test").unwrap();
    let old = DevCa::new("partner.org").unwrap();
    let new = DevCa::new("partner.org").unwrap();
    let serving = Arc::new(Mutex::new(Serving::Bundle(bundle_of(&new, 2))));
    // The endpoint's certificate is from a CA the gateway was not told to trust.
    let addr = endpoint(&stranger, serving).await;
    let gw = federated_gateway(addr, &web, &old).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed_fetches(&gw).await == 0 {
        assert!(Instant::now() < deadline, "no failed fetch counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted(&gw, &old.svid(PARTNER).unwrap()).await);
    assert!(!accepted(&gw, &new.svid(PARTNER).unwrap()).await);
}

async fn failed_fetches(gw: &Gateway) -> u64 {
    let (_, metrics) = gw.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("zonegate_bundle_endpoint_fetches_total{result=\"failed\"} ")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
