//! The Pingora `ProxyHttp` implementation: the one place that speaks HTTP to clients.
//!
//! Each phase hands off to a named component: identity from the connection, route selection,
//! the compiled policy, the event sink. Errors become status codes in [`answer`] only.

pub mod answer;
pub mod authn;
mod ctx;
pub mod headers;
pub mod ids;
pub mod route;
pub mod tls;
pub mod upstream;

pub use ctx::RequestCtx;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::admin::metrics::Metrics;
use crate::events::EventSink;
use crate::identity::{Identity, VerifiedToken};
use crate::policy::{self, Presented, RequestFacts, TokenFacts, Verdict};
use crate::reload::{Snapshot, SnapshotStore};
use answer::Refusal;
use authn::Bearer;
use tls::PeerSvid;

/// The gateway's proxy logic.
pub struct Gateway {
    store: Arc<SnapshotStore>,
    events: EventSink,
    metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn new(store: Arc<SnapshotStore>, events: EventSink, metrics: Arc<Metrics>) -> Self {
        Gateway {
            store,
            events,
            metrics,
        }
    }

    /// Authenticates, routes and authorizes one request, filling `ctx`; `Err` is the refusal.
    fn admit(&self, session: &Session, ctx: &mut RequestCtx) -> std::result::Result<(), Refusal> {
        let snapshot = ctx.snapshot.clone();
        let config = &snapshot.config;
        let now = unix_now();

        let peer = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|tls| tls.extension.get::<PeerSvid>());
        if let Some(peer) = peer {
            // Attribute the request to the certificate at once, so that even a refusal's
            // event says who was refused.
            ctx.set_identity(
                Identity {
                    spiffe_id: Some(peer.facts.spiffe_id.clone()),
                    svid: Some(peer.facts.clone()),
                    token: None,
                },
                config,
            );
            authn::check_svid(&snapshot, peer, now, &mut ctx.detail)?;
        }
        if peer.is_none() {
            // Without a certificate only a token can authenticate, and it must do so before
            // the request learns anything about routes.
            let Bearer::Token(token) = authn::bearer(session.req_header())? else {
                return Err(Refusal::NoCredential);
            };
            let token = self.verify_token(&snapshot, token, None, now, ctx)?;
            ctx.set_identity(
                Identity {
                    spiffe_id: token.spiffe_id.clone(),
                    svid: None,
                    token: Some(token.clone()),
                },
                config,
            );
        }

        let target = policy::normalize(&ctx.raw_target).map_err(|e| {
            ctx.detail = Some(e.to_string());
            Refusal::BadPath
        })?;
        let route = snapshot
            .routes
            .select(ctx.host.as_deref(), &target.path)
            .ok_or(Refusal::NoRoute)?;
        ctx.route = Some(route.name.clone());
        ctx.upstream = Some(route.upstream.clone());
        // Where the route accepts tokens, `Authorization` is the gateway's, whatever it holds.
        ctx.strip_authorization = route.credentials.accepts_tokens() && !route.forward_token;

        if let (Some(peer), true) = (peer, route.credentials.accepts_tokens()) {
            if let Bearer::Token(token) = authn::bearer(session.req_header())? {
                let token = self.verify_token(&snapshot, token, Some(peer), now, ctx)?;
                // Bound to the SVID (check_token): the SPIFFE ID and zone stay the SVID's, so
                // the identity recorded at the start only gains the token.
                if let Some(identity) = ctx.identity.as_mut() {
                    identity.token = Some(token);
                }
            }
        }

        // The identity was recorded as each credential verified; what is left is whether the
        // credentials are the ones this route takes.
        let Some(identity) = &ctx.identity else {
            return Err(Refusal::Internal);
        };
        let token = identity.token.as_deref();
        let presented = Presented {
            svid: identity.svid.is_some(),
            token: token.is_some(),
        };
        authn::require(route.credentials, presented)?;
        let decision = snapshot.policy.decide(&RequestFacts {
            spiffe_id: identity.spiffe_id.as_ref(),
            source_zone: ctx.source_zone.as_deref().unwrap_or_default(),
            route: &route.name,
            method: session.req_header().method.as_str(),
            path: &target.path,
            presented,
            token: token.map(|t| TokenFacts {
                issuer: &t.issuer.name,
                subject: &t.subject,
                claims: &t.claims,
            }),
        });
        ctx.target = Some(target);
        let verdict = decision.verdict;
        let by_rule = decision.rule.is_some();
        ctx.decision = Some(decision);
        match (verdict, by_rule) {
            (Verdict::Allow, _) => Ok(()),
            (Verdict::Deny, true) => Err(Refusal::PolicyDenied),
            (Verdict::Deny, false) => Err(Refusal::DefaultDeny),
        }
    }

    /// Verifies the request's token; a refusal records the precise reason for the event.
    fn verify_token(
        &self,
        snapshot: &Snapshot,
        token: &str,
        peer: Option<&PeerSvid>,
        now: i64,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<Arc<VerifiedToken>, Refusal> {
        authn::check_token(snapshot, token, peer, now).map_err(|failure| {
            ctx.detail = Some(failure.detail);
            Refusal::Token(failure.reason)
        })
    }

    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Refusal,
    ) -> Result<bool> {
        ctx.refusal = Some(refusal);
        let challenge = !ctx.snapshot.config.token_issuers.is_empty();
        let (header, body) = answer::response(refusal, &ctx.request_id, challenge)?;
        if refusal.closes_connection() {
            // The connection's certificate is the problem: make the client handshake again.
            session.set_keepalive(None);
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.store.load())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.describe_request(session.req_header());
        if session.get_keepalive().is_some() {
            // Pingora keeps an HTTP/1.1 connection open forever between requests by default:
            // bound it, so idle connections cannot pile up.
            session.set_keepalive(Some(ctx.snapshot.config.idle_timeout.as_secs()));
        }
        match self.admit(session, ctx) {
            Ok(()) => Ok(false),
            Err(refusal) => self.refuse(session, ctx, refusal).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .upstream
            .as_deref()
            .and_then(|name| ctx.snapshot.upstreams.get(name))
            .ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "route has no upstream pool")
            })?;
        let addr = pool.select().ok_or_else(|| {
            let mut e = Error::explain(ErrorType::ConnectNoRoute, "no healthy upstream address");
            e.esource = ErrorSource::Upstream;
            e
        })?;
        ctx.upstream_addr = Some(addr);
        Ok(Box::new(pool.peer(addr)))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(identity), Some(target)) = (&ctx.identity, &ctx.target) else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream request before admission",
            );
        };
        // The upstream receives exactly the path policy was evaluated on.
        let path_and_query = target
            .to_request_target()
            .parse::<http::uri::PathAndQuery>()
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "normalised target", e))?;
        let mut parts = upstream.uri.clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        let h2_upstream = ctx
            .upstream
            .as_deref()
            .and_then(|name| ctx.snapshot.upstreams.get(name))
            .is_some_and(|pool| pool.config.http2);
        if h2_upstream && parts.authority.is_none() {
            // HTTP/2 carries the authority in the request; an HTTP/1.1 client put it in Host.
            let host = upstream
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok());
            parts.authority = host;
            parts.scheme = Some(http::uri::Scheme::HTTP);
        }
        let uri = http::Uri::from_parts(parts).map_err(|e| {
            Error::because(ErrorType::InvalidHTTPHeader, "upstream request target", e)
        })?;
        upstream.set_uri(uri);
        let config = &ctx.snapshot.config;
        headers::strip_client_identity(upstream, &config.strip_headers);
        if ctx.strip_authorization {
            // The gateway's credential, spent here: the upstream gets the verified identity,
            // not a bearer token it could replay.
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
        headers::add_verified_identity(
            upstream,
            identity,
            config.tls.spiffe_id.as_ref().map(|id| id.as_str()),
            ctx.source_zone.as_deref().unwrap_or_default(),
            &ctx.request_id,
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut pingora_http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The client can quote this id to find the request's identity event.
        response.insert_header(headers::REQUEST_ID, &ctx.request_id)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let refusal = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Refusal::UpstreamTimeout
            }
            ErrorType::HTTPStatus(400) | ErrorType::InvalidHTTPHeader => Refusal::BadRequest,
            _ => match e.esource() {
                ErrorSource::Upstream => Refusal::UpstreamUnavailable,
                ErrorSource::Downstream => Refusal::BadRequest,
                ErrorSource::Internal | ErrorSource::Unset => Refusal::Internal,
            },
        };
        ctx.refusal.get_or_insert(refusal);
        ctx.detail.get_or_insert_with(|| e.to_string());
        let downstream_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
        if !downstream_gone && session.response_written().is_none() {
            if let Ok((header, body)) = answer::response(refusal, &ctx.request_id, false) {
                let _ = session.write_response_header(Box::new(header), false).await;
                let _ = session.write_response_body(Some(body), true).await;
            }
        }
        FailToProxy {
            error_code: if downstream_gone { 0 } else { refusal.status() },
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.started.elapsed();
        let (decision, reason) = ctx.outcome();
        self.metrics.record_request(
            decision,
            reason,
            ctx.route.as_ref(),
            ctx.source_zone.as_deref().unwrap_or("-"),
            elapsed,
        );
        if ctx
            .refusal
            .is_some_and(|r| r.status() == 401 || r == Refusal::BadAuthorization)
        {
            self.metrics.record_auth_failure(reason);
        }
        if !self.events.is_enabled() || !ctx.is_event_worthy() {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or_else(|| ctx.refusal.map(Refusal::status).unwrap_or(0));
        let peer_addr = session.client_addr().map(|a| a.to_string());
        let version = session.req_header().version;
        self.events
            .emit(ctx.to_event(status, peer_addr, version, elapsed));
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
