//! Assembles the running gateway: the data plane ([`crate::plane`]) on its own workers, and
//! beside it the config watcher, upstream health checks and the admin listener, composed under
//! Pingora's server lifecycle (signals, zero-downtime upgrade by socket hand-off, drain).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{
    ListenFds, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::Service;
use rustls::server::ServerConfig;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::admin::metrics::Metrics;
use crate::admin::{AdminServer, Readiness};
use crate::config::Listener;
use crate::events::{now_rfc3339, EventSink, ResolutionEvent, KIND_UPSTREAM_RESOLUTION, SCHEMA};
use crate::identity::RefusalObserver;
use crate::ids::next_id;
use crate::plane::listener::{self, EventBudget, HandshakeRefusals};
use crate::plane::names::{name_of, NameKey, Outcome};
use crate::plane::upstream::H1Cache;
use crate::plane::Shared;
use crate::reload::{ConfigWatcher, KeyFetchers, Reloader, Snapshot, SnapshotStore};
use crate::traces::Traces;

/// Default interval between upstream health-check rounds when no pool sets a faster one.
const HEALTH_TICK: Duration = Duration::from_millis(500);

/// How the binary starts the server.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// Take the listening sockets over from a running old process (zero-downtime upgrade).
    pub upgrade: bool,
}

/// Builds the server for the snapshot in `store`: the data plane on every listener, the
/// config watcher, health checks and (when configured) the admin listener. Listeners are
/// bound here, so a port in use is an error now, not a panic later; with `upgrade` they are
/// taken over from the old process when the server starts.
pub fn build(
    store: Arc<SnapshotStore>,
    events: EventSink,
    options: &StartOptions,
) -> Result<Built, String> {
    let snapshot = store.load();
    let config = &snapshot.config;
    let workers = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let conf = ServerConf {
        // The data plane runs its own workers; Pingora's runtimes only carry the services
        // beside it.
        threads: 1,
        work_stealing: false,
        // Pingora's grace period starts when the listeners close: it is our drain time, at
        // most (the data plane ends the process as soon as it is drained).
        grace_period_seconds: Some(config.shutdown.drain_timeout.as_secs() + 1),
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
    let readiness = Arc::new(Readiness::default());
    let budget = Arc::new(EventBudget::default());
    let refusals: Arc<dyn RefusalObserver> = Arc::new(HandshakeRefusals {
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        budget: budget.clone(),
    });
    let mut listeners = Vec::new();
    for listener in &config.listeners {
        let socket = if options.upgrade {
            None
        } else {
            Some(
                bind(listener.address)
                    .map_err(|e| format!("listener {}: {e}", listener.address))?,
            )
        };
        let tls = listener::tls_config(&store, listener, refusals.clone())?;
        listeners.push(PlaneListener {
            settings: listener.clone(),
            socket,
            tls: watch::channel(tls).0,
        });
    }
    let local_addrs = listeners
        .iter()
        .filter_map(|l| l.socket.as_ref().and_then(|s| s.local_addr().ok()))
        .collect();
    let traces = match &config.tracing {
        Some(tracing) => Some(Arc::new(Traces::start(
            tracing,
            &config.zone,
            metrics.clone(),
        )?)),
        None => None,
    };
    let shared = Arc::new(Shared {
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        handshake_events: budget,
        traces,
        issuer_keys: Arc::new(KeyFetchers::default()),
    });
    let phases = server.watch_execution_phase();
    let exit_when_drained = Arc::new(AtomicBool::new(false));
    server.add_service(DataPlane {
        shared,
        listeners,
        workers,
        drain_timeout: config.shutdown.drain_timeout,
        refusals,
        exit_when_drained: exit_when_drained.clone(),
    });
    server.add_service(background_service(
        "upstream health",
        UpstreamHealth {
            store: store.clone(),
        },
    ));
    server.add_service(background_service(
        "upstream names",
        UpstreamNames {
            store: store.clone(),
            events: events.clone(),
        },
    ));
    server.add_service(background_service(
        "config watcher",
        ConfigWatcher {
            reloader: reloader.clone(),
            readiness: readiness.clone(),
        },
    ));
    let mut admin_addr = None;
    if let Some(address) = config.admin {
        let socket = if options.upgrade {
            None
        } else {
            let socket = bind(address).map_err(|e| format!("admin listener {address}: {e}"))?;
            admin_addr = socket.local_addr().ok();
            Some(socket)
        };
        server.add_service(background_service(
            "admin",
            AdminServer {
                address,
                socket: std::sync::Mutex::new(socket),
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
        local_addrs,
        admin_addr,
        exit_when_drained,
    })
}

/// A listening socket: non-blocking, address reuse as the standard library sets it.
fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = std::net::TcpListener::bind(address)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// One listener of the data plane: its settings, its socket, and its TLS config (replaced
/// when a reload changes the listener's settings).
struct PlaneListener {
    settings: Listener,
    /// Bound at build time; `None` until taken over from the old process on upgrade.
    socket: Option<std::net::TcpListener>,
    tls: watch::Sender<Arc<ServerConfig>>,
}

/// The data plane as a Pingora service: one current-thread runtime per worker thread, each
/// accepting on every listener, so a connection lives on one thread from accept to close.
struct DataPlane {
    shared: Arc<Shared>,
    listeners: Vec<PlaneListener>,
    workers: usize,
    drain_timeout: Duration,
    refusals: Arc<dyn RefusalObserver>,
    /// Set when the process is the gateway (`run`): once the last connection is done the
    /// process ends, instead of sleeping out Pingora's grace period (the drain timeout, a
    /// maximum) whatever is left to drain.
    exit_when_drained: Arc<AtomicBool>,
}

#[async_trait]
impl Service for DataPlane {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut sockets = Vec::new();
        for listener in &mut self.listeners {
            let address = listener.settings.address;
            match take_socket(listener.socket.take(), fds.as_ref(), address) {
                Ok(socket) => sockets.push((socket, address, listener.tls.subscribe())),
                Err(e) => {
                    error!(%address, error = %e, "cannot listen; stopping");
                    std::process::exit(1);
                }
            }
        }
        // Dropped with this future, which ends the workers however the server stops.
        let (stop, stopped) = watch::channel(false);
        let mut done = Vec::new();
        for n in 0..self.workers {
            let (finished, wait) = tokio::sync::oneshot::channel::<()>();
            done.push(wait);
            let mut mine = Vec::new();
            for (socket, address, tls) in &sockets {
                match socket.try_clone() {
                    Ok(copy) => mine.push((copy, *address, tls.clone())),
                    Err(e) => error!(error = %e, "cannot share a listening socket with a worker"),
                }
            }
            let worker = Worker {
                shared: self.shared.clone(),
                sockets: mine,
                stop: stopped.clone(),
                drain_timeout: self.drain_timeout,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("zonegate-worker-{n}"))
                .spawn(move || {
                    worker.run();
                    let _ = finished.send(());
                });
            if let Err(e) = spawned {
                error!(error = %e, "cannot start a worker thread; stopping");
                std::process::exit(1);
            }
        }
        tokio::spawn(crate::reload::follow_bundle_endpoints(
            self.shared.store.clone(),
            self.shared.metrics.clone(),
        ));
        tokio::spawn(crate::reload::follow_issuer_keys(
            self.shared.store.clone(),
            self.shared.issuer_keys.clone(),
            self.shared.metrics.clone(),
        ));
        tokio::spawn(follow_listener_settings(
            self.shared.store.clone(),
            self.listeners
                .iter()
                .map(|l| (l.settings.clone(), l.tls.clone()))
                .collect(),
            self.refusals.clone(),
            self.shared.metrics.clone(),
        ));
        let _ = shutdown.wait_for(|s| *s).await;
        info!("data plane: closing listeners and draining connections");
        let _ = stop.send(true);
        for wait in done {
            let _ = wait.await;
        }
        if self.exit_when_drained.load(Ordering::SeqCst) {
            // Every worker is done: nothing is in flight. Write the events still queued,
            // and stop now rather than at the end of the drain timeout.
            if !self.shared.events.flush(Duration::from_secs(5)) {
                warn!("identity events not all written before exit");
            }
            if let Some(traces) = self.shared.traces.clone() {
                let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
            }
            info!("drained: every connection closed; exiting");
            std::process::exit(0);
        }
        // Kept open to here: Pingora's table names these descriptors, and an upgrade sends
        // them on; closed early, their numbers could be reused by other files.
        drop(sockets);
    }

    fn name(&self) -> &str {
        "zonegate data plane"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(
            self.listeners
                .iter()
                .map(|l| l.settings.address.to_string())
                .collect(),
        )
    }
}

/// The socket for `address`: the one bound at build, or on upgrade the old process's, and
/// recorded in Pingora's table so that a later upgrade can hand it on.
fn take_socket(
    bound: Option<std::net::TcpListener>,
    fds: Option<&ListenFds>,
    address: SocketAddr,
) -> std::io::Result<std::net::TcpListener> {
    let key = address.to_string();
    let socket = match bound {
        Some(socket) => socket,
        None => match fds.and_then(|fds| fds.lock().get(&key).copied()) {
            Some(fd) => crate::fd::adopt_listener(fd)?,
            None => bind(address)?,
        },
    };
    if let Some(fds) = fds {
        use std::os::fd::AsRawFd;
        let mut table = fds.lock();
        if table.get(&key).is_none() {
            table.add(key, socket.as_raw_fd());
        }
    }
    Ok(socket)
}

/// One worker thread: a current-thread runtime accepting on every listener.
struct Worker {
    shared: Arc<Shared>,
    /// Each listening socket, with its configured address (how the config names it).
    sockets: Vec<(
        std::net::TcpListener,
        SocketAddr,
        watch::Receiver<Arc<ServerConfig>>,
    )>,
    stop: watch::Receiver<bool>,
    drain_timeout: Duration,
}

impl Worker {
    fn run(self) {
        // A worker allocates and frees in bursts, one per readiness pass: see `alloc`.
        let _cache = crate::alloc::cache_this_thread();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                error!(error = %e, "cannot start a worker runtime");
                return;
            }
        };
        runtime.block_on(async move {
            let (alive, mut all_closed) = mpsc::channel::<()>(1);
            let upstreams = Arc::new(H1Cache::default());
            for (socket, address, tls) in self.sockets {
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(socket) => {
                        tokio::spawn(listener::accept(
                            self.shared.clone(),
                            upstreams.clone(),
                            socket,
                            address,
                            tls,
                            self.stop.clone(),
                            alive.clone(),
                        ));
                    }
                    Err(e) => error!(error = %e, "worker cannot listen"),
                }
            }
            drop(alive);
            let mut stop = self.stop;
            let _ = stop.wait_for(|s| *s).await;
            // Connections were told to finish; the drain timeout is a maximum.
            let _ = tokio::time::timeout(self.drain_timeout, all_closed.recv()).await;
        });
    }
}

/// Applies a reload's listener settings: `client_cert` and `http2` reach new connections at
/// once; an address added, removed or changed needs a restart, and is reported as such, as is
/// a change to where and how events are written (the sink the gateway started with writes on).
async fn follow_listener_settings(
    store: Arc<SnapshotStore>,
    mut listeners: Vec<(Listener, watch::Sender<Arc<ServerConfig>>)>,
    refusals: Arc<dyn RefusalObserver>,
    metrics: Arc<Metrics>,
) {
    let mut generations = store.subscribe();
    let started = store.load().config.events.clone();
    let started_tracing = store.load().config.tracing.clone();
    let started_spiffe = store.load().config.spiffe.clone();
    while generations.changed().await.is_ok() {
        let snapshot = store.load();
        let wanted = &snapshot.config.listeners;
        let mut restart = Vec::new();
        let events = &snapshot.config.events;
        if (&events.sink, events.format, events.capacity)
            != (&started.sink, started.format, started.capacity)
        {
            restart.push("[events] sink, format or capacity changed".to_string());
        }
        if snapshot.config.tracing != started_tracing {
            restart.push("[tracing] changed".to_string());
        }
        if snapshot.config.spiffe != started_spiffe {
            // The Workload API client follows the endpoint the gateway started with.
            restart.push("[spiffe] changed".to_string());
        }
        for (current, tls) in &mut listeners {
            let Some(next) = wanted.iter().find(|l| l.address == current.address) else {
                restart.push(format!("listener {} removed", current.address));
                continue;
            };
            if next != current {
                match listener::tls_config(&store, next, refusals.clone()) {
                    Ok(config) => {
                        tls.send_replace(config);
                        info!(address = %next.address, client_cert_required = next.client_cert_required, http2 = next.http2, "listener settings applied");
                        *current = next.clone();
                    }
                    Err(e) => warn!(error = %e, "listener settings not applied"),
                }
            }
        }
        for next in wanted {
            if !listeners.iter().any(|(l, _)| l.address == next.address) {
                restart.push(format!("listener {} added", next.address));
            }
        }
        if !restart.is_empty() {
            warn!(changes = ?restart, "settings changed that apply at the next restart or upgrade");
        }
        metrics.set_restart_required(restart);
    }
}

/// A built gateway, ready to run.
pub struct Built {
    server: Server,
    readiness: Arc<Readiness>,
    grace: Duration,
    local_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    exit_when_drained: Arc<AtomicBool>,
}

impl Built {
    /// The addresses the data plane listens on (bound at build; empty on upgrade, where the
    /// sockets come from the old process).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The address the admin listener is bound to (`None` without one, or on upgrade).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Runs until a signal: SIGTERM drains (see [`UnixSignals`]), SIGINT stops at once,
    /// SIGQUIT hands the listening sockets to a new process started with `--upgrade`.
    pub fn run(self) {
        let signals = UnixSignals {
            readiness: self.readiness,
            grace: self.grace,
        };
        self.exit_when_drained.store(true, Ordering::SeqCst);
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

/// Resolves the upstream host names of whichever snapshot is current when their time comes,
/// updates the pools that use them, and reports failures and recoveries (log and event; the
/// counts are in `/metrics` and `/status`).
struct UpstreamNames {
    store: Arc<SnapshotStore>,
    events: EventSink,
}

/// Longest wait between two looks at the names (a reload may bring new ones sooner).
const NAMES_TICK: Duration = Duration::from_secs(1);

#[async_trait]
impl BackgroundService for UpstreamNames {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut changes = self.store.subscribe();
        loop {
            let snapshot = self.store.load();
            let mut keys: Vec<NameKey> = snapshot
                .upstreams
                .values()
                .flat_map(|p| p.names().iter().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            let outcomes = snapshot
                .names
                .refresh_due(&snapshot.config.dns, &keys)
                .await;
            let changed: Vec<&NameKey> = outcomes
                .iter()
                .filter(|o| o.changed)
                .map(|o| &o.key)
                .collect();
            for pool in snapshot.upstreams.values() {
                if pool.names().iter().any(|k| changed.contains(&k)) {
                    pool.refresh_members().await;
                }
            }
            for outcome in &outcomes {
                self.report(&snapshot, outcome);
            }
            let wait = snapshot
                .names
                .next_due(&keys)
                .map_or(NAMES_TICK, |at| {
                    at.saturating_duration_since(std::time::Instant::now())
                })
                .min(NAMES_TICK);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changes.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl UpstreamNames {
    fn report(&self, snapshot: &Snapshot, outcome: &Outcome) {
        let name = name_of(&outcome.key);
        let addresses = snapshot.names.addresses(&outcome.key).len();
        let (result, error) = match &outcome.result {
            Err(why) => {
                warn!(%name, error = %why, addresses, "cannot resolve upstream host name; keeping its last good addresses");
                ("failed", Some(why.clone()))
            }
            Ok(n) if outcome.recovered => {
                info!(%name, addresses = n, "upstream host name resolves again");
                ("recovered", None)
            }
            Ok(n) => {
                if outcome.changed {
                    info!(%name, addresses = n, "upstream host name resolves to new addresses");
                }
                return;
            }
        };
        self.events.emit(ResolutionEvent {
            schema: SCHEMA,
            kind: KIND_UPSTREAM_RESOLUTION,
            time: now_rfc3339(),
            event_id: next_id(),
            result,
            name,
            error,
            addresses,
            destination_zone: snapshot.config.zone.clone(),
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
