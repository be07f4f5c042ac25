//! Upstream pools: the addresses behind a route (round robin, health-aware through
//! pingora-load-balancing) and the connections to them.
//!
//! Idle HTTP/1.1 connections are kept per worker ([`H1Cache`]): every client connection of a
//! worker thread reuses them, so the request path never takes a lock another thread holds, and
//! the number of upstream connections follows the requests in flight, not the number of
//! clients (ten thousand idle clients hold no upstream connection). HTTP/2 connections are
//! multiplexed and shared by the whole pool, one per address.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::health_check::TcpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

use super::body::{BodyTooLarge, RequestBody};
use super::names::{NameKey, Names};
use crate::config::{ServerTls, Upstream, UpstreamAddress, UpstreamTls};
use crate::identity::UpstreamIdVerifier;

/// Most idle HTTP/1.1 upstream connections one worker keeps, across its pools.
const MAX_IDLE_PER_WORKER: usize = 256;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Why an upstream request failed before a response head arrived.
#[derive(Debug)]
pub enum UpstreamError {
    /// No address, refused connection, failed TLS, broken connection.
    Unavailable(String),
    /// Connect or response-head deadline missed.
    Timeout(String),
    /// The client's body went past the route's limit while it was being forwarded.
    BodyTooLarge,
}

/// One upstream pool, built with its snapshot (and reused by the next when unchanged).
pub struct UpstreamPool {
    pub config: Arc<Upstream>,
    /// Distinguishes this pool's cached connections from those of a pool it replaced.
    id: u64,
    balancer: LoadBalancer<RoundRobin>,
    /// The host names among the pool's addresses.
    names: Vec<NameKey>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Shared HTTP/2 connections, one per address.
    h2: Mutex<Vec<(SocketAddr, http2::SendRequest<RequestBody>)>>,
    /// The pool's one address, while it has exactly one and no health checks: there is
    /// nothing to choose then, and the balancer's selection (a health lookup keyed by a
    /// hash of the backend) cost ~1,700 instructions per request. One Kubernetes Service
    /// address is the common case.
    only: ArcSwapOption<SocketAddr>,
}

impl UpstreamPool {
    /// Builds the pool; its host names' addresses come from `names` (resolved already, or
    /// empty until they are), and [`refresh_members`](Self::refresh_members) picks up new
    /// resolutions.
    pub fn new(
        config: Arc<Upstream>,
        own: &ServerTls,
        names: &Arc<Names>,
    ) -> Result<UpstreamPool, String> {
        let mut fixed = Vec::new();
        let mut hosts = Vec::new();
        for address in &config.addresses {
            match address {
                UpstreamAddress::Ip(addr) => fixed.push(*addr),
                UpstreamAddress::Name { host, port } => hosts.push((host.clone(), *port)),
            }
        }
        let members = Members {
            fixed,
            names: hosts.clone(),
            source: names.clone(),
        };
        let mut balancer =
            LoadBalancer::<RoundRobin>::from_backends(Backends::new(Box::new(members)));
        // Discovery reads memory only: nothing here waits on I/O.
        futures::executor::block_on(balancer.update()).map_err(|e| e.to_string())?;
        if config.health_check_interval.is_some() {
            let mut check = TcpHealthCheck::new();
            check.peer_template.options.connection_timeout = Some(config.connect_timeout);
            balancer.set_health_check(check);
            balancer.health_check_frequency = config.health_check_interval;
        }
        let tls = match config.tls {
            UpstreamTls::None => None,
            UpstreamTls::Tls | UpstreamTls::Mtls => Some(client_tls(&config, own)?),
        };
        let pool = UpstreamPool {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            config,
            balancer,
            names: hosts,
            tls,
            h2: Mutex::new(Vec::new()),
            only: ArcSwapOption::empty(),
        };
        pool.note_members();
        Ok(pool)
    }

    /// Notes the one address, if the pool has exactly one and does not check health.
    fn note_members(&self) {
        let backends = self.balancer.backends().get_backend();
        let only = match backends.iter().next() {
            Some(backend) if backends.len() == 1 && self.config.health_check_interval.is_none() => {
                backend.addr.as_inet().copied().map(Arc::new)
            }
            _ => None,
        };
        self.only.store(only);
    }

    /// The host names among the pool's addresses.
    pub fn names(&self) -> &[NameKey] {
        &self.names
    }

    /// Takes the current resolutions of the pool's host names as its members. Health state
    /// carries over for addresses that stay.
    pub async fn refresh_members(&self) {
        if let Err(e) = self.balancer.update().await {
            debug!(pool = %self.config.name, error = %e, "cannot update pool members");
        }
        self.note_members();
    }

    /// How many addresses the pool has now.
    pub fn member_count(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }

    /// The next healthy address, or `None` when every address is down.
    pub fn select(&self) -> Option<SocketAddr> {
        if let Some(only) = &*self.only.load() {
            return Some(**only);
        }
        let backend = self.balancer.select(b"", 256)?;
        backend.addr.as_inet().copied()
    }

    /// Runs one round of health checks, when this pool has them.
    pub async fn check_health(&self) {
        if self.config.health_check_interval.is_some() {
            self.balancer.backends().run_health_check(true).await;
        }
    }

    /// Sends `request` to one of the pool's addresses and waits for the response head. A
    /// connection that fails to open is retried once on the next address; a reused HTTP/1.1
    /// connection that closed under the request is replaced when the request was not sent.
    pub async fn send(
        &self,
        cache: &Arc<H1Cache>,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr, Option<Lease>), (UpstreamError, Option<SocketAddr>)>
    {
        let addr = self.select().ok_or_else(|| {
            (
                UpstreamError::Unavailable("no healthy upstream address".into()),
                None,
            )
        })?;
        let deadline = self.config.read_timeout;
        match self.send_to(cache, addr, request).await {
            Ok(ok) => Ok(ok),
            Err(Failure::Connect(request, why)) if self.member_count() > 1 => {
                let Some(next) = self.select().filter(|a| *a != addr) else {
                    return Err((UpstreamError::Unavailable(why), Some(addr)));
                };
                debug!(%addr, %next, error = %why, "upstream connect failed; trying the next address");
                self.send_to(cache, next, *request)
                    .await
                    .map_err(|f| (f.into_error(deadline), Some(next)))
            }
            Err(f) => Err((f.into_error(deadline), Some(addr))),
        }
    }

    /// Sends `request` to `addr` over the pool's protocol.
    async fn send_to(
        &self,
        cache: &Arc<H1Cache>,
        addr: SocketAddr,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr, Option<Lease>), Failure> {
        if self.config.http2 {
            self.send_h2(addr, request).await.map(|r| (r, addr, None))
        } else {
            self.send_h1(cache, addr, request).await
        }
    }

    async fn send_h1(
        &self,
        cache: &Arc<H1Cache>,
        addr: SocketAddr,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr, Option<Lease>), Failure> {
        let mut request = request;
        if let Some(mut sender) = cache.take(self.id, addr) {
            // A lent connection comes back as soon as its response body ends; the connection
            // task may not have marked it idle yet.
            if sender.ready().await.is_err() {
                return Box::pin(self.send_h1_fresh(cache, addr, request)).await;
            }
            match tokio::time::timeout(self.config.read_timeout, sender.try_send_request(request))
                .await
            {
                Err(_) => return Err(Failure::Timeout),
                Ok(Ok(response)) => {
                    return Ok((response, addr, Some(Lease::new(cache, self, addr, sender))))
                }
                Ok(Err(mut e)) => match e.take_message() {
                    // Not sent: the kept connection had closed. Open a fresh one.
                    Some(unsent) => request = unsent,
                    None => return Err(Failure::sending(e.into_error())),
                },
            }
        }
        Box::pin(self.send_h1_fresh(cache, addr, request)).await
    }

    /// Sends `request` on a new HTTP/1.1 connection to `addr`. Boxed by its callers: opening
    /// a connection (TCP, TLS) makes a large future, and inlined it would be moved with every
    /// request's future, though most requests reuse a kept connection.
    async fn send_h1_fresh(
        &self,
        cache: &Arc<H1Cache>,
        addr: SocketAddr,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr, Option<Lease>), Failure> {
        let io = match self.connect(addr).await {
            Ok(io) => io,
            Err(why) => return Err(Failure::Connect(Box::new(request), why)),
        };
        let (mut sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| Failure::Broken(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(error = %e, "upstream connection ended");
            }
        });
        match tokio::time::timeout(self.config.read_timeout, sender.send_request(request)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::sending(e)),
            Ok(Ok(response)) => Ok((response, addr, Some(Lease::new(cache, self, addr, sender)))),
        }
    }

    async fn send_h2(
        &self,
        addr: SocketAddr,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, Failure> {
        let shared = {
            let mut conns = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            conns.retain(|(_, s)| !s.is_closed());
            conns
                .iter()
                .find(|(a, _)| *a == addr)
                .map(|(_, s)| s.clone())
        };
        let mut sender = match shared {
            Some(sender) => sender,
            // Boxed, as `send_h1_fresh` is: inlined, the connection's opening (TCP, TLS, the
            // HTTP/2 handshake: ~2 KiB of future) was moved with every request's future.
            None => match Box::pin(self.open_h2(addr)).await {
                Ok(sender) => sender,
                Err(Opening::Connect(why)) => return Err(Failure::Connect(Box::new(request), why)),
                Err(Opening::Handshake(why)) => return Err(Failure::Broken(why)),
            },
        };
        match tokio::time::timeout(self.config.read_timeout, sender.send_request(request)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::sending(e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Opens an HTTP/2 connection to `addr` and keeps its sender for the pool's requests.
    async fn open_h2(&self, addr: SocketAddr) -> Result<http2::SendRequest<RequestBody>, Opening> {
        let io = self.connect(addr).await.map_err(Opening::Connect)?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| Opening::Handshake(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        let mut conns = self.h2.lock().unwrap_or_else(|p| p.into_inner());
        conns.push((addr, sender.clone()));
        Ok(sender)
    }

    /// Opens a connection to `addr`: TCP, then TLS when the pool says so, within the connect
    /// timeout.
    async fn connect(&self, addr: SocketAddr) -> Result<UpstreamIo, String> {
        let connect = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(UpstreamIo::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| UpstreamIo::Tls(Box::new(tls)))
                    .map_err(|e| format!("TLS with {addr}: {e}")),
            }
        };
        tokio::time::timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| {
                format!(
                    "connect {addr}: timed out after {:?}",
                    self.config.connect_timeout
                )
            })?
    }
}

/// The rustls client config of a TLS pool: its CA, its SNI name, ALPN by `http2`, and for
/// mTLS the gateway's own SVID.
fn client_tls(
    config: &Upstream,
    own: &ServerTls,
) -> Result<(TlsConnector, ServerName<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in config.ca.iter().flatten() {
        roots
            .add(ca.clone())
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if config.spiffe_ids.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        // The SPIFFE ID, not a DNS name, is what the upstream must prove.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UpstreamIdVerifier::new(
                Arc::new(roots),
                config.spiffe_ids.clone(),
                algorithms,
            )))
    };
    let mut tls = match config.tls {
        UpstreamTls::Mtls => builder
            .with_client_auth_cert(own.chain.clone(), own.key.clone_key())
            .map_err(|e| format!("the gateway's SVID cannot be a client certificate: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = if config.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let name = if config.sni.is_empty() {
        // No name configured: the certificate must name the first address, IP or host name.
        match config.addresses.first().ok_or("no address")? {
            UpstreamAddress::Ip(addr) => ServerName::IpAddress(addr.ip().into()),
            UpstreamAddress::Name { host, .. } => ServerName::try_from(host.clone())
                .map_err(|e| format!("host name `{host}` as a TLS server name: {e}"))?,
        }
    } else {
        ServerName::try_from(config.sni.clone())
            .map_err(|e| format!("sni `{}`: {e}", config.sni))?
    };
    Ok((TlsConnector::from(Arc::new(tls)), name))
}

/// A pool's members: its IP addresses, and what its host names resolved to last.
struct Members {
    fixed: Vec<SocketAddr>,
    names: Vec<NameKey>,
    source: Arc<Names>,
}

#[async_trait::async_trait]
impl ServiceDiscovery for Members {
    async fn discover(
        &self,
    ) -> pingora_core::Result<(
        std::collections::BTreeSet<Backend>,
        std::collections::HashMap<u64, bool>,
    )> {
        let resolved = self.names.iter().flat_map(|k| self.source.addresses(k));
        let backends = self
            .fixed
            .iter()
            .copied()
            .chain(resolved)
            .map(|addr| Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                weight: 1,
                ext: http::Extensions::new(),
            })
            .collect();
        Ok((backends, std::collections::HashMap::new()))
    }
}

/// Why a new upstream connection could not be used: the request was not sent on it either way.
enum Opening {
    /// TCP or TLS failed (the request may go to another address).
    Connect(String),
    /// The HTTP/2 handshake failed.
    Handshake(String),
}

enum Failure {
    /// The connection could not be opened; the request was not sent and comes back.
    Connect(Box<Request<RequestBody>>, String),
    Broken(String),
    Timeout,
    BodyTooLarge,
}

impl Failure {
    /// A request that failed on its way: the client's body over its limit, or the connection.
    fn sending(e: hyper::Error) -> Failure {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<BodyTooLarge>() {
                return Failure::BodyTooLarge;
            }
            source = err.source();
        }
        Failure::Broken(e.to_string())
    }

    fn into_error(self, read_timeout: Duration) -> UpstreamError {
        match self {
            Failure::Connect(_, why) | Failure::Broken(why) => UpstreamError::Unavailable(why),
            Failure::Timeout => {
                UpstreamError::Timeout(format!("no response head within {read_timeout:?}"))
            }
            Failure::BodyTooLarge => UpstreamError::BodyTooLarge,
        }
    }
}

/// The idle HTTP/1.1 upstream connections of one worker.
#[derive(Default)]
pub struct H1Cache {
    idle: Mutex<IdleSet>,
}

#[derive(Default)]
struct IdleSet {
    entries: Vec<Idle>,
    /// When closed and expired connections were last swept out (at most once a second, so a
    /// request does not walk every idle connection of its worker).
    swept: Option<Instant>,
}

impl IdleSet {
    fn sweep(&mut self, now: Instant, force: bool) {
        let due = self
            .swept
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if force || due {
            self.entries
                .retain(|i| !i.sender.is_closed() && i.expires > now);
            self.swept = Some(now);
        }
    }
}

struct Idle {
    pool: u64,
    addr: SocketAddr,
    sender: http1::SendRequest<RequestBody>,
    /// The pool's `idle_timeout_ms` from when it went idle: closed after that.
    expires: Instant,
}

impl H1Cache {
    fn take(&self, pool: u64, addr: SocketAddr) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        idle.sweep(now, false);
        // The most recently used first: it is the least likely to have been closed. Closed or
        // expired ones met on the way are dropped.
        while let Some(at) = idle
            .entries
            .iter()
            .rposition(|i| i.pool == pool && i.addr == addr)
        {
            let candidate = idle.entries.remove(at);
            if !candidate.sender.is_closed() && candidate.expires > now {
                return Some(candidate.sender);
            }
        }
        None
    }

    fn put(
        &self,
        pool: u64,
        addr: SocketAddr,
        sender: http1::SendRequest<RequestBody>,
        idle_timeout: Duration,
    ) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.entries.len() >= MAX_IDLE_PER_WORKER {
            idle.sweep(Instant::now(), true);
        }
        if idle.entries.len() >= MAX_IDLE_PER_WORKER {
            idle.entries.remove(0);
        }
        idle.entries.push(Idle {
            pool,
            addr,
            sender,
            expires: Instant::now() + idle_timeout,
        });
    }
}

/// An HTTP/1.1 upstream connection lent to one response: it goes back to its worker's cache
/// when the response body has been read to its end, and is closed if the body is abandoned
/// half-read.
pub struct Lease {
    cache: Arc<H1Cache>,
    idle_timeout: Duration,
    pool: u64,
    addr: SocketAddr,
    sender: http1::SendRequest<RequestBody>,
}

impl Lease {
    fn new(
        cache: &Arc<H1Cache>,
        pool: &UpstreamPool,
        addr: SocketAddr,
        sender: http1::SendRequest<RequestBody>,
    ) -> Lease {
        Lease {
            cache: cache.clone(),
            idle_timeout: pool.config.idle_timeout,
            pool: pool.id,
            addr,
            sender,
        }
    }

    /// The response was read to its end: the connection is free for the next request.
    pub fn release(self) {
        self.cache
            .put(self.pool, self.addr, self.sender, self.idle_timeout);
    }
}

/// A connection to an upstream, plain or TLS.
enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
