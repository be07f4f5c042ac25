//! The admin listener (loopback by default): `/healthz`, `/readyz`, `/metrics`, `/status` and
//! `POST /reload`. Plain HTTP/1.1: it must stay reachable when TLS material is broken.

pub mod metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::events::{rfc3339_seconds, EventSink};
use crate::reload::{ReloadOutcome, Reloader};
use metrics::{Gauges, Metrics};

/// Whether the gateway should receive traffic: listeners up, not shutting down.
#[derive(Debug, Default)]
pub struct Readiness {
    running: AtomicBool,
    draining: AtomicBool,
    /// SIGHUP reloads instead of ending the process, and the config's files are watched.
    reloads: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.running.load(Ordering::Acquire)
            && self.reloads.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
    }

    /// The config watcher handles SIGHUP, and watches the files, from now on.
    pub fn reloads_handled(&self) {
        self.reloads.store(true, Ordering::Release);
    }

    /// From now on the gateway reports unready, for good.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Follows the server's execution phases: ready once running, unready from the moment a
    /// shutdown or upgrade begins, so load balancers drain the gateway before it stops.
    pub async fn follow(self: Arc<Self>, mut phases: broadcast::Receiver<ExecutionPhase>) {
        loop {
            match phases.recv().await {
                Ok(ExecutionPhase::Running) => self.running.store(true, Ordering::Release),
                Ok(
                    ExecutionPhase::Setup
                    | ExecutionPhase::Bootstrap
                    | ExecutionPhase::BootstrapComplete,
                ) => {}
                Ok(_) => self.running.store(false, Ordering::Release),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

pub struct AdminServer {
    pub address: SocketAddr,
    /// Bound at build time; `None` on upgrade, where the old process still holds the port.
    pub socket: std::sync::Mutex<Option<std::net::TcpListener>>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
    pub events: EventSink,
    pub readiness: Arc<Readiness>,
    /// The server's execution phases, taken once when the service starts.
    pub phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl BackgroundService for AdminServer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // During a zero-downtime upgrade the old process still holds the port until it has
        // drained: keep trying rather than run without an admin listener.
        let bound = self.socket.lock().ok().and_then(|mut s| s.take());
        let bound = bound.and_then(|socket| match tokio::net::TcpListener::from_std(socket) {
            Ok(listener) => Some(listener),
            Err(e) => {
                warn!(address = %self.address, error = %e, "cannot use the admin socket; binding again");
                None
            }
        });
        let mut logged = false;
        let listener = loop {
            if let Some(listener) = bound {
                break listener;
            }
            match tokio::net::TcpListener::bind(self.address).await {
                Ok(l) => break l,
                Err(e) => {
                    if !logged {
                        warn!(address = %self.address, error = %e, "cannot bind the admin listener yet; retrying");
                        logged = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
        };
        let address = listener.local_addr().unwrap_or(self.address);
        info!(%address, "admin listener up");
        if let Some(phases) = self.phases.lock().ok().and_then(|mut p| p.take()) {
            tokio::spawn(self.readiness.clone().follow(phases));
        }
        let state = Arc::new(AdminState {
            reloader: self.reloader.clone(),
            metrics: self.metrics.clone(),
            events: self.events.clone(),
            readiness: self.readiness.clone(),
        });
        // The admin listener outlives the shutdown signal: while the proxy drains, `/readyz`
        // keeps answering 503 and `/metrics` stays scrapeable. It ends with the process.
        let readiness = self.readiness.clone();
        tokio::spawn(async move {
            let _ = shutdown.changed().await;
            readiness.start_draining();
        });
        loop {
            let accepted = listener.accept().await;
            let Ok((tcp, _)) = accepted else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    }
}

struct AdminState {
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    events: EventSink,
    readiness: Arc<Readiness>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

fn json_reply(status: StatusCode, value: serde_json::Value) -> Reply {
    reply(status, "application/json", value.to_string())
}

impl AdminState {
    async fn handle(&self, req: Request<Incoming>) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/readyz") => {
                if self.readiness.is_ready() {
                    reply(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
                }
            }
            (&Method::GET, "/metrics") => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.render_metrics(),
            ),
            (&Method::GET, "/status") => json_reply(StatusCode::OK, self.status()),
            (&Method::POST, "/reload") => self.reload().await,
            (_, "/healthz" | "/readyz" | "/metrics" | "/status" | "/reload") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    fn render_metrics(&self) -> String {
        let snapshot = self.reloader.store().load();
        let cache = snapshot.policy.cache();
        let tokens = snapshot.tokens.cache();
        let stats = self.events.stats();
        let gauges = Gauges {
            generation: snapshot.generation,
            cache_hits: cache.hits(),
            cache_misses: cache.misses(),
            cache_entries: cache.len(),
            token_cache_hits: tokens.hits(),
            token_cache_misses: tokens.misses(),
            token_cache_entries: tokens.len(),
            events_written: stats.written.load(Ordering::Relaxed),
            events_dropped: stats.dropped.load(Ordering::Relaxed),
            server_cert_not_after: snapshot.server_cert_not_after,
            dns: snapshot.names.states(),
        };
        let mut text = self.metrics.render(&snapshot.config.zone, &gauges);
        if let Some(feed) = &self.reloader.store().workload {
            feed.write_metrics(&mut text);
        }
        text
    }

    fn status(&self) -> serde_json::Value {
        let snapshot = self.reloader.store().load();
        let config = &snapshot.config;
        let reload = self.reloader.status();
        let mut trust_domains: Vec<&String> = config.trust_domains.keys().collect();
        trust_domains.sort();
        json!({
            "zone": config.zone,
            "generation": snapshot.generation,
            "ready": self.readiness.is_ready(),
            "config_file": config.source.display().to_string(),
            "content_hash": config.content_hash,
            "policy_hash": config.policy_hash,
            "rules": config.rules.len(),
            "files": config.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "listeners": config.listeners.iter().map(|l| l.address.to_string()).collect::<Vec<_>>(),
            "trust_domains": trust_domains,
            "token_issuers": config.token_issuers.iter().map(|i| json!({
                "name": &*i.name,
                "kind": i.kind.as_str(),
                "keys": i.keys.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
                // Where the gateway fetches them (jwks_uri or discovery); null: the file alone.
                "keys_from": config.remote_keys.iter().find(|r| r.issuer == *i.name).map(|r| r.location.url()),
            })).collect::<Vec<_>>(),
            "server_certificate_not_after": rfc3339_seconds(snapshot.server_cert_not_after),
            "last_reload": {
                "time": reload.time,
                "trigger": reload.trigger,
                "result": reload.result,
                "errors": reload.errors,
            },
            "last_reload_error": reload.last_error,
            "workload_api": self.reloader.store().workload.as_ref().map(|feed| feed.status()),
            // Changes in the config in force that apply only at the next restart or upgrade.
            "restart_required": self.metrics.restart_required(),
            "upstream_names": snapshot.names.states().iter().map(|n| json!({
                "name": n.name,
                "addresses": n.addresses,
                "failures": n.failures,
                "last_error": n.last_error,
            })).collect::<Vec<_>>(),
        })
    }

    async fn reload(&self) -> Reply {
        let reloader = self.reloader.clone();
        let result = tokio::task::spawn_blocking(move || reloader.reload("admin")).await;
        let snapshot = self.reloader.store().load();
        match result {
            Ok(Ok(outcome)) => {
                let result = match outcome {
                    ReloadOutcome::Applied(_) => "applied",
                    ReloadOutcome::Unchanged(_) => "unchanged",
                };
                json_reply(
                    StatusCode::OK,
                    json!({
                        "result": result,
                        "generation": snapshot.generation,
                        "policy_hash": snapshot.config.policy_hash,
                    }),
                )
            }
            Ok(Err(errors)) => json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "result": "refused",
                    "generation": snapshot.generation,
                    "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"result": "error", "error": e.to_string()}),
            ),
        }
    }
}
