//! The hyper service of one client connection: per request, it gathers the facts, calls
//! [`admission::admit`], writes the answer or forwards the request, and records the event. It
//! decides nothing itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Incoming};
use tokio::sync::Notify;
use tracing::debug;

use super::answer;
use super::body::{RequestBody, ResponseBody, StreamEnd};
use super::headers;
use super::limits::Permits;
use super::record::{self, Ending, Exchange};
use super::upstream::{H1Cache, UpstreamError};
use super::{until_unix, Shared};
use crate::admission::credentials::{bearer, check_token};
use crate::admission::{
    self, Admission, Authenticator, Bearer, Compiled, PeerSvid, Refusal, Refused, RequestHead,
};
use crate::config::{Route, UnderscoreAction};
use crate::events::{EventFormat, IdentityEvent};
use crate::identity::{Identity, SvidFacts, VerifiedToken};
use crate::ids::Id;
use crate::reload::{Snapshot, KEY_FETCH_TIMEOUT};
use crate::traces::RequestSpan;

/// One client connection, as every request on it sees it.
pub struct Connection {
    pub shared: Arc<Shared>,
    pub peer: Option<PeerSvid>,
    pub peer_addr: SocketAddr,
    /// The worker's idle HTTP/1.1 upstream connections.
    pub upstreams: Arc<H1Cache>,
    /// Asks the connection's owner to end it (GOAWAY on HTTP/2): its certificate failed.
    pub close: Notify,
    pub activity: Arc<Activity>,
    /// The identity headers of requests proved by the certificate alone, made once per
    /// snapshot (the gateway's own ID and the zone map come from it).
    pub identity_headers: PerSnapshot<Arc<[(HeaderName, HeaderValue)]>>,
    /// The source fields of the identity events of requests proved by the certificate alone
    /// (`IdentityEvent::write_source_fields`), made once per snapshot for the same reason.
    pub event_source: PerSnapshot<Arc<[u8]>>,
}

/// A value a connection makes from its certificate and the snapshot in force, kept with the
/// generation of the snapshot it was made from.
pub struct PerSnapshot<T>(Mutex<Option<(u64, T)>>);

impl<T> Default for PerSnapshot<T> {
    fn default() -> Self {
        PerSnapshot(Mutex::new(None))
    }
}

impl<T: Clone> PerSnapshot<T> {
    /// The value made for `generation`, made now by `make` if the one kept is older.
    fn get_or_make(&self, generation: u64, make: impl FnOnce() -> T) -> T {
        // A poisoned lock only means another request panicked while holding it: the cache
        // holds whole values either way.
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*kept {
            Some((made_for, value)) if *made_for == generation => value.clone(),
            _ => {
                let value = make();
                *kept = Some((generation, value.clone()));
                value
            }
        }
    }
}

/// In-flight requests and the time of the last one, for the idle timeout; and why the
/// gateway ended the connection, if it did.
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `started` at which the connection last went idle.
    last_ms: AtomicU64,
    /// Why the gateway cut the connection's streams: an index into [`CUT_REASONS`], 0 for none.
    cut: AtomicU8,
    /// Milliseconds since `started`, plus one, at which the first byte of a request head
    /// arrived while no request was in flight; 0 while no head is arriving (HTTP/1.1).
    head_started_ms: AtomicU64,
}

/// What the gateway can end a connection's streams for, as `request_end` events say it.
const CUT_REASONS: [&str; 3] = ["", "credential_expired", "credential_revoked"];

impl Activity {
    pub fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            cut: AtomicU8::new(0),
            head_started_ms: AtomicU64::new(0),
        }
    }

    /// Bytes came in: with no request in flight they start a request head, whose clock runs
    /// until the request begins.
    pub fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            let now = self.started.elapsed().as_millis() as u64 + 1;
            self.head_started_ms.store(now, Ordering::Relaxed);
        }
    }

    /// How long the request head now arriving has taken so far, if one is arriving.
    pub fn head_age(&self) -> Option<Duration> {
        match self.head_started_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    /// Records that the gateway ends the connection's streams because its credential expired
    /// (`revoked` false) or was refused by a new snapshot.
    pub fn cut(&self, revoked: bool) {
        self.cut
            .store(if revoked { 2 } else { 1 }, Ordering::Release);
    }

    pub fn cut_reason(&self) -> Option<&'static str> {
        match self.cut.load(Ordering::Acquire) {
            0 => None,
            n => CUT_REASONS.get(usize::from(n)).copied(),
        }
    }

    /// How long the connection has been idle, or `None` while a request is in flight.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(last))
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // The head is complete: hyper hands a request over only then.
        self.head_started_ms.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// A request in flight, from its head until its response body has been sent or abandoned.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_millis() as u64;
        self.0.last_ms.store(now, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The live connection's credentials: its SVID, and the request's `Authorization` header.
struct Live<'r> {
    connection: &'r Connection,
    snapshot: &'r Snapshot,
    parts: &'r Parts,
}

impl Authenticator for Live<'_> {
    fn svid(&self) -> Option<&Arc<SvidFacts>> {
        self.connection.peer.as_ref().map(|p| &p.facts)
    }

    fn check_svid(&self, compiled: &Compiled<'_>, now: i64) -> Result<(), Refused> {
        match &self.connection.peer {
            Some(peer) => peer.check(compiled, &self.snapshot.trust, now),
            None => Err(Refusal::NoCredential.into()),
        }
    }

    fn token(
        &self,
        compiled: &Compiled<'_>,
        svid: Option<&SvidFacts>,
        now: i64,
    ) -> Result<Option<Arc<VerifiedToken>>, Refused> {
        let values = self.parts.headers.get_all(AUTHORIZATION).iter();
        match bearer(values.map(HeaderValue::as_bytes))? {
            Bearer::Token(token) => check_token(compiled, &self.snapshot.tokens, token, svid, now)
                .map(Some)
                .map_err(Refused::from),
            Bearer::Absent | Bearer::OtherScheme => Ok(None),
        }
    }
}

/// An admitted request on its way to the upstream. If the client goes away first (an HTTP/2
/// stream reset, a closed connection), hyper drops the request's future, and this records the
/// request as cancelled, with the decision that was made.
struct Unanswered<'r, 'a> {
    connection: &'r Connection,
    snapshot: &'r Snapshot,
    admission: &'r Admission<'a>,
    exchange: &'r Exchange<'r>,
    started: Instant,
    /// Cleared once the upstream has answered (or failed): the answer records itself.
    armed: bool,
}

impl Unanswered<'_, '_> {
    fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for Unanswered<'_, '_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        debug!(
            request_id = self.exchange.request_id.as_str(),
            "request cancelled by the client before its answer"
        );
        let refused = Refused::new(
            Refusal::Cancelled,
            "the client went away before the answer".to_string(),
        );
        self.connection.finish(
            self.snapshot,
            self.admission,
            self.exchange,
            &Ending {
                refused: Some(&refused),
                status: refused.refusal.status(),
                upstream: None,
                elapsed: self.started.elapsed(),
            },
        );
    }
}

impl Connection {
    /// The snapshot to admit a request on: `snapshot`, or, when its bearer token names a key
    /// that its issuer's fetched keys lack (the issuer may have just rotated it in), the first
    /// snapshot holding the keys the issuer serves now. The request waits for that refetch
    /// rather than being refused while it runs: a client with a freshly rotated key is not
    /// turned away once. The wait is bounded by the fetch timeout, and the refetch is rate
    /// limited per issuer (`unknown_kid_refetch_s`); without one, the request is judged on the
    /// keys in force (401, `token_unknown_key`).
    async fn with_fresh_keys(
        &self,
        snapshot: Arc<Snapshot>,
        headers: &http::HeaderMap,
    ) -> Arc<Snapshot> {
        if snapshot.config.remote_keys.is_empty() {
            return snapshot;
        }
        let values = headers.get_all(AUTHORIZATION).iter();
        let Ok(Bearer::Token(token)) = bearer(values.map(HeaderValue::as_bytes)) else {
            return snapshot;
        };
        let Some(issuer) = snapshot.tokens.issuer_lacking_key(token).cloned() else {
            return snapshot;
        };
        let Some(refetch) = self.shared.issuer_keys.refetch(&issuer.name) else {
            return snapshot;
        };
        let store = &self.shared.store;
        let newer = async {
            let fetched = refetch.fetched().await?;
            if fetched == issuer.keys.fingerprint {
                // The issuer serves the keys in force: the key is unknown to it too.
                return None;
            }
            let mut generations = store.subscribe();
            loop {
                let current = store.load();
                let applied = current
                    .tokens
                    .issuers()
                    .iter()
                    .any(|i| i.name == issuer.name && i.keys.fingerprint == fetched);
                if applied {
                    return Some(current);
                }
                generations.changed().await.ok()?;
            }
        };
        match tokio::time::timeout(KEY_FETCH_TIMEOUT, newer).await {
            Ok(Some(current)) => current,
            _ => snapshot,
        }
    }

    /// Handles one request from start to end.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let in_flight = self.activity.begin();
        let started = Instant::now();
        let snapshot = self
            .with_fresh_keys(self.shared.store.load(), request.headers())
            .await;
        let request_id = Id::next();
        let request_id_value = HeaderValue::from_bytes(request_id.as_bytes())
            .ok()
            .map(|mut id| {
                // Unique to this request: HTTP/2's header compression would add it to its table
                // only to evict it unused (HPACK "never indexed").
                id.set_sensitive(true);
                id
            });
        let (mut parts, body) = request.into_parts();
        let raw_target = raw_target(&parts);
        let host = host_of(&parts);
        let method = parts.method.clone();
        // Decided from the head as the client sent it, before anything is stripped.
        let span = self
            .shared
            .traces
            .as_ref()
            .and_then(|t| t.start_request(&parts.headers, method.as_str()));
        let exchange = Exchange {
            request_id: &request_id,
            method: method.as_str(),
            host: host.as_deref(),
            raw_target: &raw_target,
            version: parts.version,
            peer_addr: self.peer_addr,
            sampled: record::sampled(snapshot.config.events.in_zone_sample),
            span: span.as_ref(),
        };
        let compiled = snapshot.compiled();

        let head_refusal = self.check_head(&snapshot, &raw_target, &mut parts);
        let admission = match head_refusal {
            Some(refused) => {
                let mut admission =
                    admission::attributed(&compiled, self.peer.as_ref().map(|p| &p.facts));
                admission.refused = Some(refused);
                admission
            }
            None => {
                let live = Live {
                    connection: self,
                    snapshot: &snapshot,
                    parts: &parts,
                };
                let head = RequestHead {
                    method: method.as_str(),
                    host: host.as_deref(),
                    raw_target: &raw_target,
                };
                admission::admit(&compiled, &live, &head, unix_now())
            }
        };
        if let Some(refused) = &admission.refused {
            return self.refuse(&snapshot, &admission, &exchange, refused, started);
        }
        // Config validation ties every route to a pool; a route without one is a bug.
        let Some((route, pool)) = admission
            .route
            .and_then(|r| snapshot.route_pools.get(r.upstream_slot).map(|p| (r, p)))
        else {
            return self.refuse(
                &snapshot,
                &admission,
                &exchange,
                &Refusal::Internal.into(),
                started,
            );
        };
        let permits = match self.limit(&snapshot, &admission, route) {
            Ok(permits) => permits,
            Err(refused) => {
                return self.refuse(&snapshot, &admission, &exchange, &refused, started)
            }
        };
        // Fail closed: a request that would be recorded is not served while events are lost.
        if snapshot.config.events.fail_closed
            && !self.shared.events.is_recording()
            && record::would_be_evented(&admission, &exchange)
        {
            let refused = Refused::new(
                Refusal::EventsUnavailable,
                "the event sink is not recording (events.fail_closed)".to_string(),
            );
            return self.refuse(&snapshot, &admission, &exchange, &refused, started);
        }
        if let (Some(limit), Some(len)) = (route.max_body_bytes, content_length(&parts)) {
            if len > limit {
                let refused = Refused::new(
                    Refusal::BodyTooLarge,
                    format!("content-length {len} is over the route's {limit} bytes"),
                );
                return self.refuse(&snapshot, &admission, &exchange, &refused, started);
            }
        }
        let upstream_request = match self.upstream_request(
            &snapshot,
            &admission,
            parts,
            body,
            request_id_value.as_ref(),
            pool.config.http2,
            exchange.span,
        ) {
            Ok(r) => r,
            Err(refused) => {
                return self.refuse(&snapshot, &admission, &exchange, &refused, started)
            }
        };
        let (upstream_request, client_upgrade) = upstream_request;
        let unanswered = Unanswered {
            connection: self,
            snapshot: &snapshot,
            admission: &admission,
            exchange: &exchange,
            started,
            armed: true,
        };
        // A stream the client resets now ends this future at its first wait; the request is
        // still in the upstream connection's queue then, and hyper's client drops a queued
        // request whose caller has gone, so it costs no upstream request.
        let sent = pool.send(&self.upstreams, upstream_request).await;
        unanswered.answered();
        match sent {
            Ok((mut response, addr, lease)) => {
                let status = response.status();
                let upgrading =
                    status == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_some();
                headers::strip_hop_by_hop(response.headers_mut(), upgrading);
                if let Some(id) = request_id_value {
                    response.headers_mut().insert(headers::REQUEST_ID, id);
                }
                if upgrading {
                    if let Some(client) = client_upgrade {
                        let upstream = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client, upstream));
                    }
                }
                let ending = Ending {
                    refused: None,
                    status: status.as_u16(),
                    upstream: Some(addr),
                    elapsed: started.elapsed(),
                };
                let evented = self.finish(&snapshot, &admission, &exchange, &ending);
                // A body that is already over (no content) is never polled: its connection
                // is free now.
                let lease = match lease {
                    Some(lease) if response.body().is_end_stream() => {
                        lease.release();
                        None
                    }
                    lease => lease,
                };
                // The request stays in flight while its body streams: a long-lived stream is
                // neither idle nor beyond its credential's reach.
                let end = evented.then(|| StreamEnd {
                    shared: self.shared.clone(),
                    activity: self.activity.clone(),
                    request_id,
                    route: Some(route.name.clone()),
                    status: status.as_u16(),
                    started,
                    bytes: 0,
                    complete: response.body().is_end_stream(),
                    upstream_error: false,
                    cut: None,
                });
                // A token's admission lasts as long as the token: a response still streaming
                // when it expires is cut (the certificate's expiry ends the connection).
                let expires = admission
                    .identity
                    .as_ref()
                    .and_then(|i| i.token.as_ref())
                    .filter(|_| !response.body().is_end_stream())
                    .map(|token| Box::pin(tokio::time::sleep(until_unix(token.refused_from()))));
                response.map(|inner| ResponseBody::Upstream {
                    inner,
                    lease,
                    _in_flight: in_flight,
                    _limits: permits,
                    end,
                    expires,
                })
            }
            Err((error, addr)) => {
                let refused = match error {
                    UpstreamError::Unavailable(why) => {
                        Refused::new(Refusal::UpstreamUnavailable, why)
                    }
                    UpstreamError::Timeout(why) => Refused::new(Refusal::UpstreamTimeout, why),
                    UpstreamError::BodyTooLarge => Refused::new(
                        Refusal::BodyTooLarge,
                        "request body over the route's limit".to_string(),
                    ),
                };
                let response = answer::response(
                    refused.refusal,
                    request_id.as_str(),
                    false,
                    exchange.version,
                    true,
                );
                self.finish(
                    &snapshot,
                    &admission,
                    &exchange,
                    &Ending {
                        refused: Some(&refused),
                        status: refused.refusal.status(),
                        upstream: addr,
                        elapsed: started.elapsed(),
                    },
                );
                response
            }
        }
    }

    /// A place under the limits on the route and on the rule that allowed the request, for
    /// the identity admission found.
    fn limit(
        &self,
        snapshot: &Snapshot,
        admission: &Admission<'_>,
        route: &Route,
    ) -> Result<Permits, Refused> {
        let limits = &snapshot.limits;
        // Most configurations set no limit: no clock read or key for them.
        if limits.is_empty() {
            return Ok(Permits::default());
        }
        let Some(identity) = &admission.identity else {
            return Ok(Permits::default());
        };
        let rule = admission.decision.as_ref().and_then(|d| d.rule.as_deref());
        let now = Instant::now();
        match (&identity.spiffe_id, &identity.token) {
            (Some(id), _) => limits.acquire(&route.name, rule, id.as_str(), now),
            // A bearer token's subject means something only within its issuer.
            (None, Some(token)) => {
                let who = format!("{}:{}", token.issuer.name, token.subject);
                limits.acquire(&route.name, rule, &who, now)
            }
            (None, None) => Ok(Permits::default()),
        }
    }

    /// The head limits and the underscore rule, before anything reads the head.
    fn check_head(
        &self,
        snapshot: &Snapshot,
        raw_target: &str,
        parts: &mut Parts,
    ) -> Option<Refused> {
        let limits = &snapshot.config.limits;
        if raw_target.len() > limits.max_target_bytes {
            return Some(Refused::new(
                Refusal::TargetTooLong,
                format!(
                    "request target of {} bytes; the limit is {}",
                    raw_target.len(),
                    limits.max_target_bytes
                ),
            ));
        }
        let count = parts.headers.len();
        if count > limits.max_headers {
            return Some(Refused::new(
                Refusal::HeadersTooLarge,
                format!("{count} header fields; the limit is {}", limits.max_headers),
            ));
        }
        let bytes: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if bytes > limits.max_header_bytes {
            return Some(Refused::new(
                Refusal::HeadersTooLarge,
                format!(
                    "{bytes} bytes of header fields; the limit is {}",
                    limits.max_header_bytes
                ),
            ));
        }
        if headers::has_underscore_names(&parts.headers) {
            match limits.underscores {
                UnderscoreAction::Allow => {}
                UnderscoreAction::Drop => {
                    let dropped = headers::drop_underscore_names(&mut parts.headers);
                    self.shared
                        .metrics
                        .record_underscore_headers("dropped", dropped as u64);
                }
                UnderscoreAction::Reject => {
                    self.shared.metrics.record_underscore_headers("rejected", 1);
                    return Some(Refused::new(
                        Refusal::UnderscoreHeader,
                        "a header name has an underscore".to_string(),
                    ));
                }
            }
        }
        None
    }

    /// The request the upstream receives: the normalised target policy was decided on, the
    /// client's identity headers and hop-by-hop headers removed, the verified identity added.
    #[allow(clippy::too_many_arguments)]
    fn upstream_request(
        &self,
        snapshot: &Snapshot,
        admission: &Admission<'_>,
        mut parts: Parts,
        body: Incoming,
        request_id: Option<&HeaderValue>,
        http2: bool,
        span: Option<&RequestSpan>,
    ) -> Result<(Request<RequestBody>, Option<hyper::upgrade::OnUpgrade>), Refused> {
        let (Some(identity), Some(target), Some(route)) =
            (&admission.identity, &admission.target, admission.route)
        else {
            return Err(Refusal::Internal.into());
        };
        let config = &snapshot.config;
        let authority = parts.uri.authority().cloned().or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<Authority>().ok())
        });
        let path_and_query = target
            .to_request_target()
            .parse::<PathAndQuery>()
            .map_err(|e| Refused::new(Refusal::BadPath, e.to_string()))?;
        let mut uri = Uri::builder();
        if http2 {
            let authority = authority.clone().ok_or_else(|| {
                Refused::new(
                    Refusal::BadRequest,
                    "no host to name to an HTTP/2 upstream".to_string(),
                )
            })?;
            uri = uri.scheme(Scheme::HTTP).authority(authority);
        }
        parts.uri = uri
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| Refused::new(Refusal::BadRequest, e.to_string()))?;
        // HTTP/1.1 Upgrade (WebSocket) is forwarded only now, after admission, and only from
        // an HTTP/1.1 client to an HTTP/1.1 upstream.
        let upgrade = (parts.version == Version::HTTP_11 && !http2 && is_upgrade(&parts))
            .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();
        let headers = &mut parts.headers;
        headers::strip_hop_by_hop(headers, upgrade.is_some());
        headers::strip_client_identity(headers, &config.strip_headers);
        if route.credentials.accepts_tokens() && !route.forward_token {
            // The gateway's credential, spent here: the upstream gets the verified identity,
            // not a bearer token it could replay.
            headers.remove(AUTHORIZATION);
        }
        let identity_headers = self.identity_headers(snapshot, admission, identity);
        headers::add_verified_identity(headers, &identity_headers, request_id);
        if let (Some(span), Some(traces)) = (span, &self.shared.traces) {
            span.inject(headers, traces);
        }
        if http2 {
            headers.remove(HOST);
            parts.version = Version::HTTP_2;
        } else {
            if !headers.contains_key(HOST) {
                if let Some(value) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                {
                    headers.insert(HOST, value);
                }
            }
            parts.version = Version::HTTP_11;
        }
        parts.extensions = http::Extensions::new();
        let body = RequestBody::new(body, route.max_body_bytes);
        Ok((Request::from_parts(parts, body), upgrade))
    }

    /// The identity headers for `identity`: the connection's, made once per snapshot, when the
    /// certificate alone proved it; made for this request when a token took part.
    fn identity_headers(
        &self,
        snapshot: &Snapshot,
        admission: &Admission<'_>,
        identity: &Identity,
    ) -> Arc<[(HeaderName, HeaderValue)]> {
        let make = || -> Arc<[(HeaderName, HeaderValue)]> {
            headers::identity_headers(
                identity,
                snapshot.config.tls.spiffe_id.as_ref().map(|id| id.as_str()),
                admission.source_zone.as_deref().unwrap_or_default(),
            )
            .into()
        };
        if !self.by_certificate_alone(identity) {
            return make();
        }
        self.identity_headers.get_or_make(snapshot.generation, make)
    }

    /// Whether the connection's own certificate alone proved `identity` (no token took part):
    /// then whatever follows from the identity and the snapshot is the same for every such
    /// request on the connection, and made once per snapshot.
    fn by_certificate_alone(&self, identity: &Identity) -> bool {
        let connection_svid = self.peer.as_ref().map(|p| &p.facts);
        identity.token.is_none()
            && identity
                .svid
                .as_ref()
                .is_some_and(|svid| connection_svid.is_some_and(|c| Arc::ptr_eq(c, svid)))
    }

    /// The source fields of `event` in the zonegate format, from the connection's cache when
    /// the certificate alone proved the request's identity; `None` otherwise (the event then
    /// writes them itself).
    fn event_source(
        &self,
        snapshot: &Snapshot,
        admission: &Admission<'_>,
        event: &IdentityEvent<'_>,
    ) -> Option<Arc<[u8]>> {
        if !self.by_certificate_alone(admission.identity.as_ref()?) {
            return None;
        }
        let fields = self.event_source.get_or_make(snapshot.generation, || {
            let mut fields = Vec::with_capacity(512);
            event.write_source_fields(&mut fields);
            fields.into()
        });
        // What makes the cache sound: every test that writes an event checks it.
        #[cfg(debug_assertions)]
        {
            let mut fresh = Vec::new();
            event.write_source_fields(&mut fresh);
            debug_assert_eq!(*fields, *fresh, "a cached event source went stale");
        }
        Some(fields)
    }

    fn refuse(
        &self,
        snapshot: &Snapshot,
        admission: &Admission<'_>,
        exchange: &Exchange<'_>,
        refused: &Refused,
        started: Instant,
    ) -> Response<ResponseBody> {
        let refusal = refused.refusal;
        let closes = refusal.closes_connection();
        if closes {
            // The connection's certificate is the problem: make the client handshake again.
            self.close.notify_one();
        }
        let challenge = !snapshot.config.token_issuers.is_empty();
        let mut response = answer::response(
            refusal,
            exchange.request_id.as_str(),
            challenge,
            exchange.version,
            closes,
        );
        if let Some(seconds) = refused.retry_after_s {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        self.finish(
            snapshot,
            admission,
            exchange,
            &Ending {
                refused: Some(refused),
                status: refusal.status(),
                upstream: None,
                elapsed: started.elapsed(),
            },
        );
        response
    }

    /// Metrics and the identity event of a request, recorded when its answer is decided;
    /// returns whether the request has an event.
    fn finish(
        &self,
        snapshot: &Snapshot,
        admission: &Admission<'_>,
        exchange: &Exchange<'_>,
        ending: &Ending<'_>,
    ) -> bool {
        let (decision, reason) = ending.outcome(admission);
        let metrics = &self.shared.metrics;
        metrics.record_request(
            decision,
            reason,
            admission.route.map(|r| &r.name),
            admission.source_zone.as_deref().unwrap_or("-"),
            ending.elapsed,
        );
        if ending
            .refused
            .is_some_and(|r| r.refusal.status() == 401 || r.refusal == Refusal::BadAuthorization)
        {
            metrics.record_auth_failure(reason);
        }
        let events = &self.shared.events;
        let evented = events.is_enabled() && record::is_event_worthy(admission, exchange, ending);
        if evented || exchange.span.is_some() {
            // Made here, from what the request already holds: the event borrows it all.
            record::EventTexts::with(admission, ending, |texts| {
                let event = record::identity_event(snapshot, admission, exchange, ending, texts);
                if let (Some(span), Some(traces)) = (exchange.span, &self.shared.traces) {
                    span.finish(&event, traces);
                }
                if evented {
                    let format = events.format();
                    let source = match format {
                        EventFormat::Zonegate => self.event_source(snapshot, admission, &event),
                        EventFormat::Ocsf => None,
                    };
                    events.emit_with(event.severity(), event.kind, |out| match &source {
                        Some(fields) => event.write_json_line_with(out, Some(fields)),
                        None => event.write_line(format, out),
                    });
                }
            });
        }
        evented
    }
}

/// The request target exactly as the client sent it. HTTP/2 always carries origin-form in
/// `:path`; an HTTP/1.1 absolute-form or authority-form target is kept whole, so that
/// normalisation refuses it.
fn raw_target(parts: &Parts) -> String {
    let uri = &parts.uri;
    if parts.version == Version::HTTP_2 || uri.authority().is_none() {
        uri.path_and_query()
            .map_or_else(|| uri.to_string(), |pq| pq.as_str().to_string())
    } else {
        uri.to_string()
    }
}

/// HTTP/2 carries the authority in the URI; HTTP/1.1 in the Host header. Lower-case, no port.
fn host_of(parts: &Parts) -> Option<String> {
    let host = parts.uri.host().or_else(|| {
        parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(strip_port)
    })?;
    Some(host.to_ascii_lowercase())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop a port after them.
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn is_upgrade(parts: &Parts) -> bool {
    parts.headers.contains_key(http::header::UPGRADE)
        && parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies bytes both ways between an upgraded client connection and its upstream.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
        debug!("upgrade did not complete");
        return;
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        debug!(error = %e, "upgraded connection ended");
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
