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
    bundle_of_all(&[ca], sequence)
}

fn bundle_of_all(cas: &[&DevCa], sequence: u64) -> Vec<u8> {
    let keys: Vec<_> = cas
        .iter()
        .map(|ca| {
            let der = base64::engine::general_purpose::STANDARD.encode(ca.cert_der());
            serde_json::json!({ "use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [der] })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "keys": keys,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": 1
    }))
    .unwrap()
}

/// An HTTPS bundle endpoint for `localhost` with a certificate from `web`.
async fn endpoint(web: &DevCa, serving: Arc<Mutex<Serving>>) -> SocketAddr {
    let presenting = Arc::new(ServedCert::default());
    presenting.set(web, "spiffe://web.test/bundle-endpoint");
    endpoint_presenting(presenting, serving).await
}

/// The endpoint's certificate, replaceable while it serves.
#[derive(Debug, Default)]
struct ServedCert(Mutex<Option<Arc<rustls::sign::CertifiedKey>>>);

impl ServedCert {
    /// From now on: a certificate for `localhost` and `spiffe_id`, issued by `ca`.
    fn set(&self, ca: &DevCa, spiffe_id: &str) {
        let mut spec = LeafSpec::svid(spiffe_id);
        spec.dns_sans = vec!["localhost".into()];
        let cert = ca.issue(&spec).unwrap();
        let key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(cert.private_key())
            .unwrap();
        *self.0.lock().unwrap() = Some(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.cert_der.clone()],
            key,
        )));
    }
}

impl rustls::server::ResolvesServerCert for ServedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.lock().unwrap().clone()
    }
}

async fn endpoint_presenting(
    presenting: Arc<ServedCert>,
    serving: Arc<Mutex<Serving>>,
) -> SocketAddr {
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(presenting);
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

const ENDPOINT_ID: &str = "spiffe://partner.org/spire/server";

/// A gateway federated with partner.org through an https_spiffe endpoint at `addr` whose
/// server is `ENDPOINT_ID`; the bundle file starts with `bootstrap`'s root.
async fn spiffe_federated_gateway(addr: SocketAddr, bootstrap: &DevCa) -> Gateway {
    Gateway::start(Setup {
        files: vec![(
            "partner.json".into(),
            String::from_utf8(bundle_of(bootstrap, 1)).unwrap(),
        )],
        extra_config: format!(
            "[trust_domain.\"partner.org\"]\nbundle = \"partner.json\"\n\
             bundle_endpoint = \"https://localhost:{}/bundle\"\n\
             endpoint_profile = \"https_spiffe\"\nendpoint_spiffe_id = \"{ENDPOINT_ID}\"\n",
            addr.port()
        ),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_spiffe_endpoint_is_authenticated_by_the_bundle_it_served_last() {
    let old = DevCa::new("partner.org").unwrap();
    let new = DevCa::new("partner.org").unwrap();
    // The partner's server, with an SVID from the root the gateway bootstraps with, serves a
    // bundle that adds its next root.
    let presenting = Arc::new(ServedCert::default());
    presenting.set(&old, ENDPOINT_ID);
    let serving = Arc::new(Mutex::new(Serving::Bundle(bundle_of_all(&[&old, &new], 2))));
    let addr = endpoint_presenting(presenting.clone(), serving.clone()).await;
    let gw = spiffe_federated_gateway(addr, &old).await;
    let new_svid = new.svid(PARTNER).unwrap();
    until_accepted(&gw, &new_svid, true).await;

    // The partner rotates: its server's SVID now comes from the new root, and the old root
    // leaves the bundle. The gateway verifies that fetch with the bundle of the one before.
    presenting.set(&new, ENDPOINT_ID);
    *serving.lock().unwrap() = Serving::Bundle(bundle_of(&new, 3));
    until_accepted(&gw, &old.svid(PARTNER).unwrap(), false).await;
    assert!(accepted(&gw, &new_svid).await);
    assert_eq!(
        std::fs::read(gw.dir.path().join("partner.json")).unwrap(),
        bundle_of(&new, 3)
    );
    assert_eq!(failed_fetches(&gw).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_spiffe_endpoint_with_another_id_or_an_untrusted_svid_is_not_followed() {
    let old = DevCa::new("partner.org").unwrap();
    let new = DevCa::new("partner.org").unwrap();
    let stranger = DevCa::new("partner.org").unwrap();
    for (ca, id) in [
        // The right root, another workload of the partner's.
        (&old, "spiffe://partner.org/ns/billing/sa/api"),
        // The right SPIFFE ID, from a root the gateway does not hold.
        (&stranger, ENDPOINT_ID),
    ] {
        let presenting = Arc::new(ServedCert::default());
        presenting.set(ca, id);
        let serving = Arc::new(Mutex::new(Serving::Bundle(bundle_of(&new, 2))));
        let addr = endpoint_presenting(presenting, serving).await;
        let gw = spiffe_federated_gateway(addr, &old).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while failed_fetches(&gw).await == 0 {
            assert!(Instant::now() < deadline, "{id}: no failed fetch counted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(accepted(&gw, &old.svid(PARTNER).unwrap()).await, "{id}");
        assert!(!accepted(&gw, &new.svid(PARTNER).unwrap()).await, "{id}");
        assert_eq!(
            std::fs::read(gw.dir.path().join("partner.json")).unwrap(),
            bundle_of(&old, 1),
            "{id}: the file was replaced"
        );
    }
}
