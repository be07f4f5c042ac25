//! End-to-end harness: a real gateway (the library's server, real TLS listeners) in front of
//! a real upstream, driven by real rustls/hyper clients, with certificates minted by rcgen at
//! test time. Nothing is mocked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// The gateway's own allocator (`zonegate_gateway::alloc`), as the binary has it: every e2e
/// test runs the gateway's workers on its cache.
#[global_allocator]
static ALLOCATOR: zonegate_gateway::alloc::ThreadCache = zonegate_gateway::alloc::ThreadCache;

pub mod dns;
pub mod issuer;
pub mod otlp;
pub mod syslog;
pub mod workload_api;

use zonegate_devkit::devpki::{DevCa, Issued, LeafSpec};
use zonegate_gateway::events::EventSink;
use zonegate_gateway::reload::SnapshotStore;
use zonegate_gateway::server;

pub const TD: &str = "example.org";
pub const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
pub const CART: &str = "spiffe://example.org/ns/shop/sa/cart";
pub const LEDGER: &str = "spiffe://example.org/ns/payments/sa/ledger";

/// The policy most tests run under.
pub const POLICY: &str = r#"
[[rule]]
id = "checkout-charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/charge", "/payments/charges/**", "/payments/public/**"]

[[rule]]
id = "payments-zone-read"
effect = "allow"
zones = ["payments"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]

[[rule]]
id = "no-admin"
effect = "deny"
paths = ["/payments/admin/**", "/payments/admin"]

[[rule]]
id = "audit-refunds-from-shop"
effect = "deny"
mode = "audit"
zones = ["shop"]
paths = ["/payments/charges/*/refund"]

[[rule]]
id = "grpc-ledger"
effect = "allow"
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
routes = ["grpc"]
methods = ["POST"]
paths = ["/ledger.Ledger/**"]
"#;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// A dev PKI in a temp directory.
pub struct Pki {
    pub ca: DevCa,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = DevCa::new(TD).expect("CA");
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write ca");
        let mut gw = LeafSpec::svid("spiffe://example.org/ns/payments/sa/zonegate");
        gw.dns_sans = vec!["localhost".into()];
        gw.ip_sans = vec![Ipv4Addr::LOCALHOST.into()];
        let gw = ca.issue(&gw).expect("gateway SVID");
        std::fs::write(dir.path().join("gateway.crt"), &gw.cert_pem).expect("write");
        std::fs::write(dir.path().join("gateway.key"), &gw.key_pem).expect("write");
        Pki { ca, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn svid(&self, spiffe_id: &str) -> Issued {
        self.ca.svid(spiffe_id).expect("mint SVID")
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// What a test wants the gateway to look like.
pub struct Setup {
    pub policy: String,
    /// Extra TOML appended to the gateway config (more routes, upstreams...).
    pub extra_config: String,
    /// Address of the `payments-api` upstream; default: a fresh echo upstream.
    pub upstream: Option<SocketAddr>,
    /// A `host:port` address for the `payments` pool instead of `upstream` (resolved by the
    /// gateway; `extra_config` names the DNS server).
    pub upstream_name: Option<String>,
    pub upstream_http2: bool,
    /// Event queue length (the default drops under sustained load from several clients).
    pub events_capacity: usize,
    /// Files written into the config directory before start: (relative path, contents).
    pub files: Vec<(String, String)>,
    /// Let clients without a certificate finish the handshake (token-only callers).
    pub client_cert_optional: bool,
    /// More keys for the data-plane `[[listener]]` table.
    pub listener_extra: String,
    /// The event file (default `events.jsonl` in the config directory), and more `[events]` keys.
    pub events_path: Option<String>,
    pub events_extra: String,
    /// The `[events]` sink keys instead of the event file (`sink = "syslog"` and its address).
    pub events_sink: Option<String>,
    /// Where the gateway's own identity comes from, instead of `[tls]` files and the
    /// example.org bundle file (`[spiffe]` for the Workload API).
    pub identity: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            policy: POLICY.to_string(),
            extra_config: String::new(),
            upstream: None,
            upstream_name: None,
            upstream_http2: false,
            events_capacity: 65_536,
            files: Vec::new(),
            client_cert_optional: false,
            listener_extra: String::new(),
            events_path: None,
            events_extra: String::new(),
            events_sink: None,
            identity: None,
        }
    }
}

/// A running gateway with its upstream.
pub struct Gateway {
    pub pki: Pki,
    pub port: u16,
    pub admin_port: u16,
    pub upstream: SocketAddr,
    pub dir: tempfile::TempDir,
    pub events_path: PathBuf,
    running: Option<server::Running>,
}

impl Gateway {
    pub async fn start(setup: Setup) -> Gateway {
        Gateway::start_with_pki(Pki::new(), setup).await
    }

    /// Starts a gateway on `pki`; `CA_PATH` in `setup.extra_config` names its CA file.
    pub async fn start_with_pki(pki: Pki, setup: Setup) -> Gateway {
        // RUST_LOG=debug shows the gateway's own log while a test runs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let upstream = match setup.upstream {
            Some(addr) => addr,
            None => zonegate_devkit::echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .await
                .expect("echo upstream"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        // The data plane and the admin listener bind port 0 and say which port they got:
        // nothing can take a port between choosing and binding it.
        let events_path = dir.path().join("events.jsonl");
        let certs = pki.path().display().to_string();
        let config = format!(
            r#"
zone = "payments"
workers = 1
[[listener]]
address = "127.0.0.1:0"
client_cert = "{client_cert}"
{listener_extra}
{identity}
[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]
[[zone_map]]
zone = "payments"
identities = ["spiffe://example.org/ns/payments/*"]
[[route]]
name = "payments-api"
path_prefix = "/payments"
upstream = "payments"
[[route]]
name = "grpc"
path_prefix = "/ledger.Ledger"
upstream = "payments"
[upstream.payments]
addresses = ["{address}"]
http2 = {h2}
connect_timeout_ms = 500
read_timeout_ms = 5000
[policy]
files = ["policy.toml"]
[events]
{events_sink}
capacity = {capacity}
{events_extra}
[admin]
address = "127.0.0.1:0"
{extra}
"#,
            h2 = setup.upstream_http2,
            identity = setup.identity.clone().unwrap_or_else(|| format!(
                "[tls]\ncert = \"{certs}/gateway.crt\"\nkey = \"{certs}/gateway.key\"\n\
                 [trust_domain.\"example.org\"]\nbundle = \"{certs}/ca.crt\""
            )),
            listener_extra = setup.listener_extra,
            events_sink = setup.events_sink.clone().unwrap_or_else(|| format!(
                "sink = \"file\"\npath = \"{}\"",
                setup.events_path.as_deref().unwrap_or("events.jsonl")
            )),
            events_extra = setup.events_extra,
            address = setup
                .upstream_name
                .clone()
                .unwrap_or_else(|| upstream.to_string()),
            client_cert = if setup.client_cert_optional {
                "optional"
            } else {
                "required"
            },
            capacity = setup.events_capacity,
            extra = setup
                .extra_config
                .replace("CA_PATH", &format!("{certs}/ca.crt")),
        );
        std::fs::write(dir.path().join("policy.toml"), &setup.policy).expect("write policy");
        for (path, contents) in &setup.files {
            std::fs::write(dir.path().join(path), contents).expect("write file");
        }
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let store = match SnapshotStore::open(&config_path) {
            Ok(store) => Arc::new(store),
            Err(errors) => panic!("test config refused:\n{errors}"),
        };
        let events = EventSink::start(&store.load().config.events).expect("event sink");
        let built =
            server::build(store, events, &server::StartOptions::default()).expect("build gateway");
        let port = built
            .local_addrs()
            .first()
            .expect("a bound listener")
            .port();
        let admin_port = built.admin_addr().expect("a bound admin listener").port();
        let running = built.spawn().expect("spawn gateway");
        // Ready: serving, reloading on SIGHUP and watching its files, so a test's first edit
        // is seen.
        let deadline = Instant::now() + Duration::from_secs(10);
        while admin_request(admin_port, "GET", "/readyz").await.0 != 200 {
            assert!(Instant::now() < deadline, "the gateway never became ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Gateway {
            pki,
            port,
            admin_port,
            upstream,
            dir,
            events_path,
            running: Some(running),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A client presenting no certificate (it must authenticate with a token).
    pub async fn anonymous_client(&self, h2: bool) -> Client {
        Client::connect_with(self.addr(), anonymous_tls(&self.pki, h2), h2)
            .await
            .expect("connect")
    }

    /// A client presenting a fresh SVID for `spiffe_id`.
    pub async fn client(&self, spiffe_id: &str, h2: bool) -> Client {
        let svid = self.pki.svid(spiffe_id);
        Client::connect(self.addr(), &self.pki, &svid, h2)
            .await
            .expect("connect")
    }

    /// Waits until at least `n` events were written, and returns them all.
    pub async fn events(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.events_path).unwrap_or_default();
            // Only complete lines: the gateway may be appending the next one as we read.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            let events: Vec<serde_json::Value> = complete
                .lines()
                .map(|l| serde_json::from_str(l).expect("event line is JSON"))
                .collect();
            if events.len() >= n || Instant::now() > deadline {
                assert!(
                    events.len() >= n,
                    "expected {n} events, got {}: {text}",
                    events.len()
                );
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `n` events satisfy `keep`, and returns those.
    pub async fn events_where(
        &self,
        n: usize,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.events(0).await;
            let kept: Vec<_> = all.into_iter().filter(|e| keep(e)).collect();
            if kept.len() >= n || Instant::now() > deadline {
                assert!(
                    kept.len() >= n,
                    "expected {n} matching events, got {kept:?}"
                );
                return kept;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Replaces `path` (relative to the config directory) atomically, as deploy tools do.
    pub fn replace_file(&self, path: &str, contents: &str) {
        let target = self.dir.path().join(path);
        let tmp = self.dir.path().join(format!(".{path}.tmp"));
        std::fs::write(&tmp, contents).expect("write temp file");
        std::fs::rename(&tmp, &target).expect("rename into place");
    }

    /// Rewrites the gateway config through `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config_path()).expect("read config");
        self.replace_file("gateway.toml", &edit(text));
    }

    /// `GET` on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        admin_request(self.admin_port, "GET", path).await
    }

    /// `POST /reload` on the admin listener, as JSON.
    /// The generation of the snapshot in force (`/status`).
    pub async fn generation(&self) -> u64 {
        let (status, body) = admin_request(self.admin_port, "GET", "/status").await;
        assert_eq!(status, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
        status["generation"]
            .as_u64()
            .expect("status has a generation")
    }

    /// Asks for a reload after an edit made at generation `before`, and returns its answer.
    /// The config watcher follows every file the config names and may apply the edit first;
    /// the reload then finds nothing new and answers `unchanged` at a newer generation, which
    /// is returned as `applied` (the edit is in force either way: the body says `by` whom).
    pub async fn reload_after_edit(&self, before: u64) -> (u16, serde_json::Value) {
        let (status, mut body) = self.reload().await;
        let newer = body["generation"].as_u64().is_some_and(|g| g > before);
        if status == 200 && body["result"] == "unchanged" && newer {
            body["result"] = "applied".into();
            body["by"] = "watcher".into();
        }
        (status, body)
    }

    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let (status, body) = admin_request(self.admin_port, "POST", "/reload").await;
        (
            status,
            serde_json::from_str(&body).expect("reload answer is JSON"),
        )
    }

    pub fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

/// A TLS connection to the gateway over `tcp`, presenting a fresh SVID for `spiffe_id` and
/// offering `alpn`, for tests that speak the protocol themselves.
pub async fn tls_over(
    gw: &Gateway,
    tcp: tokio::net::TcpStream,
    spiffe_id: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let svid = gw.pki.svid(spiffe_id);
    TlsConnector::from(Arc::new(client_tls(&gw.pki, &svid, &[alpn])))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// A client TLS config trusting the test CA and presenting `cert`.
pub fn client_tls(pki: &Pki, cert: &Issued, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert_der()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.cert_der.clone()], cert.private_key())
        .expect("client cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client TLS config trusting the test CA that presents `cert` and signs the handshake with
/// `key`, whether or not they belong together (rustls checks that only when asked to), so
/// tests can present certificates an honest client could not.
pub fn presenting_tls(
    pki: &Pki,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    alpn: &[u8],
) -> rustls::ClientConfig {
    /// Presents its certificate whatever the server asks.
    #[derive(Debug)]
    struct Presents(Arc<rustls::sign::CertifiedKey>);

    impl rustls::client::ResolvesClientCert for Presents {
        fn resolve(
            &self,
            _hints: &[&[u8]],
            _schemes: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(key)
        .expect("a key rustls can sign with");
    let presented = rustls::sign::CertifiedKey::new(vec![cert], key);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert_der()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Presents(Arc::new(presented))));
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// A client TLS config trusting the test CA and presenting no certificate.
pub fn anonymous_tls(pki: &Pki, h2: bool) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert_der()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    config
}

/// The TLS handshake alone, so tests can assert that the gateway refuses it.
pub async fn handshake(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await?;
    // In TLS 1.3 the server judges the client certificate after the client finishes: a
    // refusal arrives as an alert on the first read. A 0-byte write plus a short read
    // surfaces it.
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), tls.read(&mut byte)).await {
        Ok(Ok(0)) => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "closed after handshake",
        )),
        Ok(Err(e)) => Err(e),
        _ => Ok(tls),
    }
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The headers the echo upstream received.
    pub fn upstream_headers(&self) -> serde_json::Value {
        self.json()["headers"].clone()
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One mTLS connection to the gateway (HTTP/1.1 keep-alive or HTTP/2).
pub struct Client {
    sender: Sender,
}

impl Client {
    pub async fn connect(
        addr: SocketAddr,
        pki: &Pki,
        cert: &Issued,
        h2: bool,
    ) -> std::io::Result<Client> {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        Client::connect_with(addr, client_tls(pki, cert, alpn), h2).await
    }

    /// Connects with any client TLS config (its ALPN must match `h2`).
    pub async fn connect_with(
        addr: SocketAddr,
        tls_config: rustls::ClientConfig,
        h2: bool,
    ) -> std::io::Result<Client> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        Client::over(tcp, tls_config, h2).await
    }

    /// A client over `tcp`, a connection the caller opened (and may have written to first,
    /// as a balancer writes its PROXY header).
    pub async fn over(
        tcp: tokio::net::TcpStream,
        tls_config: rustls::ClientConfig,
        h2: bool,
    ) -> std::io::Result<Client> {
        let connector = TlsConnector::from(Arc::new(tls_config));
        let tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await?;
        let io = TokioIo::new(tls);
        let sender = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(Client { sender })
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new())
            .await
            .expect("request failed")
    }

    /// `method path` with `Authorization: Bearer token`.
    pub async fn with_token(&mut self, method: Method, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(method, path, &[("authorization", &auth)], Bytes::new())
            .await
            .expect("request failed")
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, hyper::Error> {
        let mut builder = Request::builder().method(method);
        builder = match &self.sender {
            Sender::H1(_) => builder.uri(path).header("host", "localhost"),
            Sender::H2(_) => builder.uri(format!("https://localhost{path}")),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(Full::new(body)).expect("request");
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Whether the underlying connection is still usable.
    pub fn is_open(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }
}

/// Reads `body` until it ends, normally or with an error; `false` if it is still going after
/// `within` (a stream the gateway should have ended).
pub async fn ends_within(body: &mut hyper::body::Incoming, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match body.frame().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends `request` verbatim over a fresh mTLS connection and returns the raw response text,
/// for request targets no well-behaved client library would send.
pub async fn raw_request(addr: SocketAddr, pki: &Pki, cert: &Issued, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let connector = TlsConnector::from(Arc::new(client_tls(pki, cert, &[b"http/1.1"])));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// One plain HTTP/1.1 request to an admin listener; retries the connection while it starts.
pub async fn admin_request(port: u16, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tcp = loop {
        match tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            Ok(tcp) => break tcp,
            Err(e) if Instant::now() > deadline => panic!("admin listener on {port}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .expect("admin write");
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.expect("admin read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = raw_status(&text);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The echo upstream behind a TCP relay that counts the connections the gateway opens to it
/// and every byte it sends, so a test can tell that a refused request never reached the
/// upstream, or how many upstream connections some requests took.
pub struct CountedEcho {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    /// Bytes from the gateway to the upstream.
    pub bytes: Arc<AtomicU64>,
}

impl CountedEcho {
    pub async fn start() -> CountedEcho {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("relay listener");
        CountedEcho::serve(listener).await
    }

    /// A counted echo at `ip:port` (any address of 127.0.0.0/8 is loopback: several of them
    /// can stand for the pods behind one host name, on one port).
    pub async fn start_at(ip: Ipv4Addr, port: u16) -> std::io::Result<CountedEcho> {
        let listener = tokio::net::TcpListener::bind((ip, port)).await?;
        Ok(CountedEcho::serve(listener).await)
    }

    async fn serve(listener: tokio::net::TcpListener) -> CountedEcho {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = zonegate_devkit::echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("echo upstream");
        let addr = listener.local_addr().expect("relay address");
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (opened, counter) = (connections.clone(), bytes.clone());
        tokio::spawn(async move {
            while let Ok((from_gateway, _)) = listener.accept().await {
                opened.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(to_echo) = tokio::net::TcpStream::connect(echo).await else {
                        return;
                    };
                    let (mut gw_read, mut gw_write) = from_gateway.into_split();
                    let (mut echo_read, mut echo_write) = to_echo.into_split();
                    let upward = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match gw_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    counter.fetch_add(n as u64, Ordering::SeqCst);
                                    if echo_write.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = echo_write.shutdown().await;
                    };
                    let downward = async move {
                        let _ = tokio::io::copy(&mut echo_read, &mut gw_write).await;
                        let _ = gw_write.shutdown().await;
                    };
                    tokio::join!(upward, downward);
                });
            }
        });
        CountedEcho {
            addr,
            connections,
            bytes,
        }
    }
}
