//! Assembles the running gateway: Pingora server, TLS listeners with the SPIFFE verifier, the
//! proxy service, and background services; and runs it until a shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::protocols::ALPN;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use tokio::sync::watch;

use crate::admin::metrics::Metrics;
use crate::admin::{AdminServer, Readiness};
use crate::events::{now_rfc3339, EventSink, HandshakeEvent, KIND_HANDSHAKE_REFUSED, SCHEMA};
use crate::identity::{RefusalObserver, SpiffeClientVerifier};
use crate::proxy::ids::next_id;
use crate::proxy::tls::PeerSvidRecorder;
use crate::proxy::Gateway;
use crate::reload::{ConfigWatcher, Reloader, SnapshotStore};

/// Default interval between upstream health-check rounds when no pool sets a faster one.
const HEALTH_TICK: Duration = Duration::from_millis(500);

/// How the binary starts the server.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// Take the listening sockets over from a running old process (zero-downtime upgrade).
    pub upgrade: bool,
}

/// Builds the Pingora server for the snapshot in `store`: the proxy on every listener, the
/// config watcher, health checks and (when configured) the admin listener. Listeners bind
/// when it runs.
pub fn build(
    store: Arc<SnapshotStore>,
    events: EventSink,
    options: &StartOptions,
) -> Result<Built, String> {
    let snapshot = store.load();
    let config = &snapshot.config;
    let threads = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let conf = ServerConf {
        threads,
        // One current-thread runtime per worker: no cross-thread scheduling on the request
        // path (connections are spread over workers as they are accepted).
        work_stealing: false,
        // Pingora's grace period starts when the listeners close: it is our drain time.
        grace_period_seconds: Some(config.shutdown.drain_timeout.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.shutdown.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let metrics = Metrics::new();
    let reloader = Arc::new(Reloader::new(
        store.clone(),
        &config.source,
        metrics.clone(),
        events.clone(),
    ));
    let refusals: Arc<dyn RefusalObserver> = Arc::new(HandshakeRefusals {
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
    });
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(store.clone(), events.clone(), metrics.clone()),
        "zonegate",
    );
    if let Some(app) = proxy.app_logic_mut() {
        // HTTP/2 connections with no open stream are closed after the idle timeout (taken at
        // start); HTTP/1.1 keep-alive follows the snapshot in force, request by request.
        let mut options = pingora_core::apps::HttpServerOptions::default();
        options.h2_idle_timeout = Some(config.idle_timeout);
        app.server_options = Some(options);
    }
    for listener in &config.listeners {
        let recorder = PeerSvidRecorder {
            trust: store.clone(),
        };
        let mut tls = TlsSettings::with_callbacks(Box::new(recorder))
            .map_err(|e| format!("listener {}: {e}", listener.address))?;
        tls.set_cert_resolver(store.clone());
        let mut verifier = SpiffeClientVerifier::new(store.clone()).with_observer(refusals.clone());
        if !listener.client_cert_required {
            verifier = verifier.optional();
        }
        tls.set_client_cert_verifier(Arc::new(verifier));
        tls.set_alpn(if listener.http2 { ALPN::H2H1 } else { ALPN::H1 });
        // No L4 read buffer: rustls buffers TLS records itself, and pingora's default 64 KiB
        // read buffer per connection only added a copy and most of an idle connection's memory.
        let buffers = L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE);
        proxy.add_listener(
            ListenerConfig::tcp(listener.address.to_string())
                .tls(tls)
                .l4_buffer(buffers),
        );
    }
    let readiness = Arc::new(Readiness::default());
    let phases = server.watch_execution_phase();
    server.add_service(proxy);
    server.add_service(background_service(
        "upstream health",
        UpstreamHealth {
            store: store.clone(),
        },
    ));
    server.add_service(background_service(
        "config watcher",
        ConfigWatcher {
            reloader: reloader.clone(),
        },
    ));
    if let Some(address) = config.admin {
        server.add_service(background_service(
            "admin",
            AdminServer {
                address,
                reloader,
                metrics,
                events,
                readiness: readiness.clone(),
                phases: std::sync::Mutex::new(Some(phases)),
            },
        ));
    }
    Ok(Built {
        server,
        readiness,
        grace: config.shutdown.grace_period,
    })
}

/// A built gateway, ready to run.
pub struct Built {
    server: Server,
    readiness: Arc<Readiness>,
    grace: Duration,
}

impl Built {
    /// Runs until a signal: SIGTERM drains (see [`UnixSignals`]), SIGINT stops at once,
    /// SIGQUIT hands the listening sockets to a new process started with `--upgrade`.
    pub fn run(self) {
        let signals = UnixSignals {
            readiness: self.readiness,
            grace: self.grace,
        };
        self.server.run(RunArgs {
            shutdown_signal: Box::new(signals),
        });
    }

    /// Runs on its own thread until the returned handle stops it (tests, `demo`).
    pub fn spawn(self) -> std::io::Result<Running> {
        let (stop, rx) = watch::channel(false);
        let server = self.server;
        let thread = std::thread::Builder::new()
            .name("zonegate-server".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopSignal(rx)),
                })
            })?;
        Ok(Running {
            stop,
            thread: Some(thread),
        })
    }
}

/// A handle that stops a gateway started by [`Built::spawn`].
pub struct Running {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops the gateway and waits for its threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Unix signals, with a grace period before a graceful stop: on SIGTERM the gateway reports
/// unready at once but keeps accepting for `grace`, so load balancers and Kubernetes endpoints
/// stop sending before the listeners close; then in-flight requests get the drain time.
struct UnixSignals {
    readiness: Arc<Readiness>,
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for UnixSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                self.readiness.start_draining();
                tracing::info!(grace = ?self.grace, "SIGTERM: unready, closing listeners after the grace period");
                tokio::time::sleep(self.grace).await;
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = quit.recv() => {
                self.readiness.start_draining();
                ShutdownSignal::GracefulUpgrade
            }
        }
    }
}

struct StopSignal(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

/// Records every refused client certificate as a `handshake_refused` event.
struct HandshakeRefusals {
    store: Arc<SnapshotStore>,
    events: EventSink,
    metrics: Arc<Metrics>,
}

impl RefusalObserver for HandshakeRefusals {
    fn refused(&self, reason: &str, claimed: Option<&str>) {
        self.metrics.record_auth_failure("svid_refused");
        self.events.emit(HandshakeEvent {
            schema: SCHEMA,
            kind: KIND_HANDSHAKE_REFUSED,
            time: now_rfc3339(),
            event_id: next_id(),
            decision: "deny",
            reason: "svid_refused",
            detail: reason.to_string(),
            claimed_spiffe_id: claimed.map(str::to_string),
            destination_zone: self.store.load().config.zone.clone(),
        });
    }
}

/// Health-checks the pools of whichever snapshot is current, so pools built by a reload are
/// checked from the next round on.
struct UpstreamHealth {
    store: Arc<SnapshotStore>,
}

#[async_trait]
impl BackgroundService for UpstreamHealth {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last_run: std::collections::HashMap<String, tokio::time::Instant> =
            Default::default();
        loop {
            let snapshot = self.store.load();
            let now = tokio::time::Instant::now();
            for (name, pool) in &snapshot.upstreams {
                let Some(every) = pool.config.health_check_interval else {
                    continue;
                };
                let due = last_run
                    .get(name)
                    .is_none_or(|at| now.duration_since(*at) >= every);
                if due {
                    pool.check_health().await;
                    last_run.insert(name.clone(), now);
                }
            }
            let tick = snapshot
                .upstreams
                .values()
                .filter_map(|p| p.config.health_check_interval)
                .min()
                .unwrap_or(HEALTH_TICK)
                .min(HEALTH_TICK);
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
