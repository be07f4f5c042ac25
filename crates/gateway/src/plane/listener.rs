//! Client connections: accept, the TLS handshake with the SPIFFE verifier, HTTP/1.1 or HTTP/2
//! by ALPN, and the connection's whole life: idle timeout, GOAWAY when its certificate is
//! refused, the end of its certificate (expiry, revocation, trust withdrawn) ending every
//! stream on it, and drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::Either;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::server::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::gate::Watch;
use super::head_clock::HeadClock;
use super::service::{Activity, Connection};
use super::upstream::H1Cache;
use super::{until_unix, Shared};
use crate::admin::metrics::Metrics;
use crate::admission::PeerSvid;
use crate::config::Listener;
use crate::events::{
    now_rfc3339, EventSink, HandshakeEvent, UnparsedEvent, KIND_HANDSHAKE_REFUSED,
    KIND_REQUEST_UNPARSED, SCHEMA,
};
use crate::identity::verifier::SvidRefused;
use crate::identity::{RefusalObserver, SpiffeClientVerifier, TrustSource};
use crate::ids::next_id;
use crate::proxy_protocol::{self, IpRange, Parse};
use crate::reload::SnapshotStore;

/// HTTP/2 streams a client may reset before the server has answered them, before the
/// connection is closed (rapid reset, CVE-2023-44487).
const MAX_PENDING_RESET_STREAMS: usize = 20;
/// Streams the gateway itself may reset for protocol errors before closing the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Handshake refusal events per second; more are counted, not written.
const HANDSHAKE_EVENTS_PER_SECOND: u32 = 50;

/// The TLS server config of a listener: the gateway's certificate and trust bundles come from
/// the snapshot in force at each handshake, so a reload reaches new connections at once.
pub fn tls_config(
    store: &Arc<SnapshotStore>,
    listener: &Listener,
    refusals: Arc<dyn RefusalObserver>,
) -> Result<Arc<ServerConfig>, String> {
    let mut verifier = SpiffeClientVerifier::new(store.clone()).with_observer(refusals);
    if !listener.client_cert_required {
        verifier = verifier.optional();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("listener {}: {e}", listener.address))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(store.clone());
    config.alpn_protocols = if listener.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Accepts connections until `shutdown`, serving each on this worker's runtime with the
/// worker's idle upstream connections. Every connection task holds a clone of `alive`, so the
/// worker knows when the last one ended.
pub async fn accept(
    shared: Arc<Shared>,
    upstreams: Arc<H1Cache>,
    listener: TcpListener,
    configured: SocketAddr,
    tls: watch::Receiver<Arc<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (tcp, peer_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                // Out of file descriptors: let other connections end before trying again.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        // Read per connection, so a reload that changes the trusted balancers applies to the
        // next connection.
        let proxy_from = shared
            .store
            .load()
            .config
            .listeners
            .iter()
            .find(|l| l.address == configured)
            .map(|l| l.proxy_protocol_from.clone())
            .unwrap_or_default();
        tokio::spawn(serve(
            shared.clone(),
            upstreams.clone(),
            tcp,
            peer_addr,
            proxy_from,
            acceptor,
            shutdown.clone(),
            alive.clone(),
        ));
    }
}

/// The client's address as the balancer in front states it in its PROXY header, read (and
/// consumed, not a byte more) before the TLS handshake; the balancer's own address for its
/// `LOCAL` connections (health checks). Refused: a connection from anyone but a configured
/// balancer, and a missing, malformed or late header.
async fn proxied_source(
    tcp: &TcpStream,
    peer_addr: SocketAddr,
    trusted: &[IpRange],
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<SocketAddr, (&'static str, String)> {
    if !trusted.iter().any(|range| range.contains(peer_addr.ip())) {
        return Err((
            "proxy_untrusted",
            format!("{peer_addr} is not a balancer this listener takes PROXY headers from"),
        ));
    }
    let read = async {
        let mut buf = vec![0u8; proxy_protocol::V2_MAX];
        let mut wait = Duration::from_millis(1);
        loop {
            let n = tcp.peek(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before its PROXY header".to_string());
            }
            match proxy_protocol::parse(&buf[..n]) {
                Parse::Complete(header) => {
                    // Take exactly the header: the TLS handshake starts right after it.
                    let mut header_bytes = vec![0u8; header.len];
                    let mut taken = 0;
                    while taken < header.len {
                        tcp.readable().await.map_err(|e| e.to_string())?;
                        match tcp.try_read(&mut header_bytes[taken..]) {
                            Ok(0) => return Err("connection closed in its PROXY header".into()),
                            Ok(k) => taken += k,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    return Ok(header.source.unwrap_or(peer_addr));
                }
                Parse::Invalid(why) => return Err(why.to_string()),
                // Peeking again returns at once with what is there: wait for more to arrive
                // (a header nearly always comes whole, in the first segment).
                Parse::Incomplete => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(50));
                }
            }
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(source)) => Ok(source),
        Ok(Err(why)) => Err(("proxy_header", why)),
        Err(_) => Err((
            "proxy_header",
            format!("no complete PROXY header within {timeout:?}"),
        )),
    }
}

/// One client connection, from handshake to close.
#[allow(clippy::too_many_arguments)]
async fn serve(
    shared: Arc<Shared>,
    upstreams: Arc<H1Cache>,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    proxy_from: Vec<IpRange>,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let _ = tcp.set_nodelay(true);
    // One deadline for the PROXY header and the handshake together.
    let timeout = shared.store.load().config.limits.handshake_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let peer_addr = if proxy_from.is_empty() {
        peer_addr
    } else {
        match proxied_source(&tcp, peer_addr, &proxy_from, deadline, timeout).await {
            Ok(source) => source,
            Err((reason, detail)) => {
                return record_handshake_refusal(&shared, reason, detail, None, Some(peer_addr))
            }
        }
    };
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return handshake_failed(&shared, peer_addr, &e),
        Err(_) => {
            return record_handshake_refusal(
                &shared,
                "handshake_timeout",
                format!("no TLS handshake within {timeout:?}"),
                None,
                Some(peer_addr),
            )
        }
    };
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    // The verifier admitted this chain microseconds ago. A bundle change landing in exactly
    // that window is not seen by this connection until the next bundle change: the price of
    // not verifying every chain twice.
    let epoch = shared.store.trust_store().epoch;
    let peer = session.peer_certificates().and_then(|chain| {
        let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
        PeerSvid::new(chain, epoch)
            .map_err(
                |e| warn!(error = %e, "verified client certificate could not be read as an SVID"),
            )
            .ok()
    });
    let snapshot = shared.store.load();
    let config = &snapshot.config;
    let idle_timeout = config.idle_timeout;
    let limits = config.limits.clone();
    let connection = Arc::new(Connection {
        shared: shared.clone(),
        peer,
        peer_addr,
        upstreams,
        close: tokio::sync::Notify::new(),
        activity: Arc::new(Activity::new()),
        identity_headers: Default::default(),
        event_source: Default::default(),
    });
    drop(snapshot);
    // The request's future is boxed for both protocols. HTTP/1.1: hyper allocates a slot for
    // it when the connection starts and keeps it while the connection idles; unboxed, that was
    // the whole request state (~5 KiB) on every idle connection. HTTP/2: hyper spawns a task
    // per stream, and the spawn moves its future several times (into the task, its cell, its
    // stage); boxed, the state is written once and the spawn moves a pointer.
    let service = {
        let connection = connection.clone();
        service_fn(move |request| {
            let connection = connection.clone();
            Box::pin(async move { Ok::<_, Infallible>(connection.handle(request).await) })
        })
    };
    // HTTP/1.1 heads have a deadline of their own (see head_clock); HTTP/2 frames its headers
    // and bounds them by size, and its idle connections carry control frames.
    let head_timeout = (!h2).then_some(limits.request_head_timeout);
    let mut generations = shared.store.subscribe();
    // The connection ends, with every stream on it, when its certificate does.
    let expiry = connection
        .peer
        .as_ref()
        // The certificate is valid through its notAfter second.
        .map(|p| until_unix(p.facts.not_after_unix.saturating_add(1)));

    /// What ends a turn of the connection's loop besides the connection's own end.
    enum Watched {
        Close,
        Expired,
        Generation(bool),
        IdleCheck,
    }
    let gate = Watch::new();

    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            let mut closing = false;
            // An idle connection is left for its next request, which is refused with 401 and
            // closes it; streams in flight when the certificate lapses are ended here.
            let mut expired_seen = false;
            let expired = tokio::time::sleep(expiry.unwrap_or(Duration::MAX / 4));
            tokio::pin!(expired);
            loop {
                let turn = {
                    let idle_check =
                        tokio::time::sleep(idle_timeout.min(Duration::from_secs(1)));
                    let watchers = async {
                        tokio::select! {
                            _ = connection.close.notified(), if !closing => Watched::Close,
                            _ = shutdown.wait_for(|stop| *stop), if !closing => Watched::Close,
                            _ = &mut expired, if expiry.is_some() && !expired_seen => Watched::Expired,
                            changed = generations.changed() => Watched::Generation(changed.is_ok()),
                            _ = idle_check, if !closing => Watched::IdleCheck,
                        }
                    };
                    tokio::pin!(watchers);
                    gate.first(conn.as_mut(), watchers).await
                };
                match turn {
                    Either::Left(result) => {
                        if let Err(e) = result {
                            debug!(error = %e, %peer_addr, "client connection ended with an error");
                            record_unparsed(&shared, &connection, &e);
                        }
                        break;
                    }
                    Either::Right(Watched::Close) => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Either::Right(Watched::Expired) => {
                        expired_seen = true;
                        if connection.activity.idle_for().is_none() {
                            debug!(%peer_addr, "client certificate expired: ending its streams");
                            connection.activity.cut(false);
                            break;
                        }
                    }
                    Either::Right(Watched::Generation(changed)) => {
                        if !changed {
                            continue;
                        }
                        if connection.activity.idle_for().is_none()
                            && !still_admissible(&shared.store, connection.peer.as_ref())
                        {
                            debug!(%peer_addr, "client certificate refused by the new snapshot: ending its streams");
                            connection.activity.cut(true);
                            break;
                        }
                    }
                    Either::Right(Watched::IdleCheck) => {
                        let head_late = head_timeout.zip(connection.activity.head_age())
                            .is_some_and(|(limit, age)| age >= limit);
                        if head_late {
                            debug!(%peer_addr, "request head not complete in time: closing");
                            shared.metrics.record_connection_closed("request_head_timeout");
                            break;
                        }
                        if connection.activity.idle_for().is_some_and(|idle| idle >= idle_timeout) {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
        }};
    }

    if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(
                u32::try_from(limits.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
            )
            .max_pending_accept_reset_streams(MAX_PENDING_RESET_STREAMS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
            .keep_alive_interval(None);
        drive!(builder.serve_connection(TokioIo::new(tls), service));
    } else {
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            // No timer of hyper's: a slow head and the wait for the next request are bounded by
            // the connection's loop above (`IdleCheck`: the head clock and the idle timeout).
            // hyper's was one more timer allocated, armed and dropped on every request: 1,600
            // instructions a request, measured.
            .header_read_timeout(None)
            // Past the configured limits only by so much that the service can answer
            // 431/414 with an event; beyond this hyper answers alone.
            .max_buf_size(
                (limits.max_header_bytes + limits.max_target_bytes)
                    .saturating_mul(2)
                    .max(8192),
            )
            .max_headers(
                limits
                    .max_headers
                    .saturating_mul(2)
                    .max(limits.max_headers + 1),
            );
        let io = TokioIo::new(HeadClock::new(tls, connection.activity.clone()));
        drive!(builder.serve_connection(io, service).with_upgrades());
    }
}

/// Whether the connection's certificate still passes under the snapshot just published:
/// revocation and trust, judged on open connections, not only on their next request.
fn still_admissible(store: &SnapshotStore, peer: Option<&PeerSvid>) -> bool {
    let Some(peer) = peer else {
        return true;
    };
    let snapshot = store.load();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    peer.check(&snapshot.compiled(), &snapshot.trust, now)
        .is_ok()
}

/// Records a handshake that failed for a reason the verifier did not already report.
fn handshake_failed(shared: &Shared, peer_addr: SocketAddr, e: &std::io::Error) {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = match tls_error {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)))
            if other.0.downcast_ref::<SvidRefused>().is_some() =>
        {
            // Counted and evented by the verifier, with the SPIFFE ID it claimed.
            return;
        }
        Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
        Some(_) => "tls_error",
        None => {
            // Closed or reset before TLS said anything (a port probe, a TCP health check):
            // nothing was refused, so it is counted but not an event.
            shared
                .metrics
                .record_handshake_failure("closed_before_handshake");
            return;
        }
    };
    record_handshake_refusal(shared, reason, e.to_string(), None, Some(peer_addr));
}

fn record_handshake_refusal(
    shared: &Shared,
    reason: &'static str,
    detail: String,
    claimed: Option<&str>,
    peer_addr: Option<SocketAddr>,
) {
    debug!(reason, detail = %detail, "TLS handshake refused");
    emit_handshake_refusal(
        &shared.store,
        &shared.events,
        &shared.metrics,
        &shared.handshake_events,
        reason,
        detail,
        claimed,
        peer_addr,
    );
}

#[allow(clippy::too_many_arguments)]
fn emit_handshake_refusal(
    store: &SnapshotStore,
    events: &EventSink,
    metrics: &Metrics,
    budget: &EventBudget,
    reason: &'static str,
    detail: String,
    claimed: Option<&str>,
    peer_addr: Option<SocketAddr>,
) {
    metrics.record_handshake_failure(reason);
    if reason == "svid_refused" || reason == "no_certificate" {
        metrics.record_auth_failure(reason);
    }
    if !budget.take() {
        metrics.record_handshake_event_suppressed();
        return;
    }
    events.emit(HandshakeEvent {
        schema: SCHEMA,
        kind: KIND_HANDSHAKE_REFUSED,
        time: now_rfc3339(),
        event_id: next_id(),
        decision: "deny",
        reason,
        detail,
        claimed_spiffe_id: claimed.map(str::to_string),
        peer_addr: peer_addr.map(|a| a.to_string()),
        destination_zone: store.load().config.zone.clone(),
    });
}

/// A request head hyper's HTTP/1.1 parser refused (past the hard limits, or not HTTP): hyper
/// has answered 431 or 400 and closed; the event says who sent it. Other connection errors
/// (a client gone mid-response, a reset) are no request's refusal and stay in the debug log.
fn record_unparsed(shared: &Shared, connection: &Connection, error: &hyper::Error) {
    let (reason, status) = if error.is_parse_too_large() {
        ("headers_too_large", 431)
    } else if error.is_parse() {
        ("bad_request", 400)
    } else {
        return;
    };
    shared.metrics.record_connection_closed(reason);
    shared.events.emit(UnparsedEvent {
        schema: SCHEMA,
        kind: KIND_REQUEST_UNPARSED,
        time: now_rfc3339(),
        event_id: next_id(),
        decision: "deny",
        reason,
        status,
        detail: error.to_string(),
        source_spiffe_id: connection
            .peer
            .as_ref()
            .map(|p| p.facts.spiffe_id.as_str().to_string()),
        peer_addr: connection.peer_addr.to_string(),
        http_version: "HTTP/1.1",
        destination_zone: shared.store.load().config.zone.clone(),
    });
}

/// Records every client certificate the verifier refuses as a `handshake_refused` event.
pub struct HandshakeRefusals {
    pub store: Arc<SnapshotStore>,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub budget: Arc<EventBudget>,
}

impl RefusalObserver for HandshakeRefusals {
    fn refused(&self, reason: &str, claimed: Option<&str>) {
        emit_handshake_refusal(
            &self.store,
            &self.events,
            &self.metrics,
            &self.budget,
            "svid_refused",
            reason.to_string(),
            claimed,
            None,
        );
    }
}

/// A per-second budget of events, so that a flood of refused handshakes cannot drown the
/// sink; what is over the budget is counted instead.
pub struct EventBudget {
    per_second: u32,
    window: Mutex<(Instant, u32)>,
}

impl EventBudget {
    pub fn new(per_second: u32) -> EventBudget {
        EventBudget {
            per_second,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Takes one event from this second's budget.
    pub fn take(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.0.elapsed() >= Duration::from_secs(1) {
            *window = (Instant::now(), 0);
        }
        if window.1 >= self.per_second {
            return false;
        }
        window.1 += 1;
        true
    }
}

impl Default for EventBudget {
    fn default() -> EventBudget {
        EventBudget::new(HANDSHAKE_EVENTS_PER_SECOND)
    }
}
