//! The Snapshot: everything the request path needs, built complete and validated off the
//! request path, then published through one `ArcSwap`. Only this module writes it.
//!
//! A request loads the snapshot once and keeps it for its whole life, so it never sees half of
//! an old configuration and half of a new one. A snapshot that fails to build is refused and
//! the current one keeps serving.

mod federation;
mod jwks;
mod watch;
mod workload;

pub use federation::follow_bundle_endpoints;
pub(crate) use jwks::FETCH_TIMEOUT as KEY_FETCH_TIMEOUT;
pub use jwks::{follow_issuer_keys, KeyFetchers};
pub use workload::{follow_workload_api, WorkloadFeed};

pub use watch::{ConfigWatcher, ReloadOutcome, ReloadStatus, Reloader};

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::FromDer;

use crate::admission::{Compiled, RouteTable};
use crate::config::{self, ConfigErrors, GatewayConfig, UpstreamAddress, WorkloadMaterial};
use crate::identity::{TokenVerifier, TrustSource, TrustStore};
use crate::plane::limits::Limiters;
use crate::plane::names::Names;
use crate::plane::upstream::UpstreamPool;
use crate::policy::Policy;

/// One immutable generation of the gateway's state.
pub struct Snapshot {
    pub generation: u64,
    pub config: GatewayConfig,
    pub policy: Policy,
    pub trust: Arc<TrustStore>,
    /// Token issuers and the verified-token cache.
    pub tokens: Arc<TokenVerifier>,
    pub routes: RouteTable,
    pub upstreams: HashMap<String, Arc<UpstreamPool>>,
    /// The pools of [`RouteTable::upstreams`], in its order: a route's pool is
    /// `route_pools[route.upstream_slot]`.
    pub route_pools: Vec<Arc<UpstreamPool>>,
    /// What the upstreams' host names resolved to; shared by every snapshot.
    pub names: Arc<Names>,
    pub server_cert: Arc<CertifiedKey>,
    /// notBefore and notAfter of the gateway's own certificate (Unix seconds; 0 when its
    /// leaf cannot be read).
    pub server_cert_not_before: i64,
    pub server_cert_not_after: i64,
    /// The per-identity limits' counters; a limit unchanged by a reload keeps its own.
    pub limits: Arc<Limiters>,
}

impl Snapshot {
    /// The parts admission reads.
    pub fn compiled(&self) -> Compiled<'_> {
        Compiled {
            config: &self.config,
            routes: &self.routes,
            policy: &self.policy,
        }
    }

    /// Builds a snapshot from a validated config. Errors name the config file and key.
    ///
    /// Parts whose inputs did not change are shared with `previous`: the trust store (so open
    /// connections need not verify their chains again), the token verifier (so its cache of
    /// verified tokens survives a policy change) and upstream pools (so health state and
    /// balancing carry over).
    pub fn build(
        config: GatewayConfig,
        generation: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigErrors> {
        Snapshot::assemble(config, generation, previous, true)
    }

    /// Builds a snapshot as `zonegate check` does: everything validated, nothing asked of the
    /// network (host-name upstreams stay unresolved).
    pub fn offline(config: GatewayConfig) -> Result<Snapshot, ConfigErrors> {
        Snapshot::assemble(config, 0, None, false)
    }

    fn assemble(
        config: GatewayConfig,
        generation: u64,
        previous: Option<&Snapshot>,
        resolve: bool,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let file = config.source.clone();

        let trust = match previous {
            Some(prev) if prev.config.trust_domains == config.trust_domains => prev.trust.clone(),
            _ => {
                let mut trust = TrustStore::new(generation);
                for (name, roots) in &config.trust_domains {
                    if let Err(e) = trust.add_bundle(name, roots.clone()) {
                        errors.push(&file, format!("trust_domain.\"{name}\".bundle"), e.0);
                    }
                }
                Arc::new(trust)
            }
        };

        let tokens = match previous {
            Some(prev)
                if prev.config.token_issuers == config.token_issuers
                    && prev.config.tokens == config.tokens =>
            {
                prev.tokens.clone()
            }
            _ => Arc::new(TokenVerifier::new(
                config.token_issuers.clone(),
                config.tokens.max_token_bytes,
                config.tokens.cache_entries,
            )),
        };

        let own_tls_unchanged = previous.is_some_and(|p| {
            p.config.tls.chain == config.tls.chain
                && p.config.tls.key.secret_der() == config.tls.key.secret_der()
        });
        // Resolutions outlive snapshots; a name this config brings is resolved before the
        // snapshot is published, so no request meets its pool empty.
        let names = previous.map_or_else(|| Arc::new(Names::new()), |p| p.names.clone());
        let hosts: Vec<_> = config
            .upstreams
            .values()
            .flat_map(|u| &u.addresses)
            .filter_map(|a| match a {
                UpstreamAddress::Name { host, port } => Some((host.clone(), *port)),
                UpstreamAddress::Ip(_) => None,
            })
            .collect();
        if resolve {
            names.resolve_new_blocking(&config.dns, &hosts);
        }
        let mut upstreams = HashMap::new();
        for (name, upstream) in &config.upstreams {
            let reusable = previous
                .and_then(|p| p.upstreams.get(name))
                .filter(|pool| own_tls_unchanged && *pool.config == **upstream);
            if let Some(pool) = reusable {
                upstreams.insert(name.clone(), pool.clone());
                continue;
            }
            match UpstreamPool::new(upstream.clone(), &config.tls, &names) {
                Ok(pool) => {
                    upstreams.insert(name.clone(), Arc::new(pool));
                }
                Err(e) => errors.push(
                    &file,
                    format!("upstream.{name}"),
                    format!("cannot build pool: {e}"),
                ),
            }
        }

        let provider = rustls::crypto::ring::default_provider();
        let server_cert = match provider
            .key_provider
            .load_private_key(config.tls.key.clone_key())
        {
            Ok(key) => {
                let certified = CertifiedKey::new(config.tls.chain.clone(), key);
                if let Err(e) = certified.keys_match() {
                    errors.push(&file, "tls.key", format!("does not match tls.cert: {e}"));
                }
                Some(Arc::new(certified))
            }
            Err(e) => {
                errors.push(&file, "tls.key", format!("unusable private key: {e}"));
                None
            }
        };
        let (server_cert_not_before, server_cert_not_after) = config
            .tls
            .chain
            .first()
            .and_then(|leaf| x509_parser::certificate::X509Certificate::from_der(leaf).ok())
            .map_or((0, 0), |(_, cert)| {
                let validity = cert.validity();
                (
                    validity.not_before.timestamp(),
                    validity.not_after.timestamp(),
                )
            });

        let policy = Policy::compile(config.rules.clone(), config.decision_cache_entries);
        let limits = Arc::new(Limiters::build(&config, previous.map(|p| &*p.limits)));
        let routes = RouteTable::new(&config.routes);
        // Config validation ties every route to a pool; a route whose pool failed to build
        // has an error above, and the snapshot is refused.
        let route_pools: Vec<Arc<UpstreamPool>> = routes
            .upstreams()
            .iter()
            .filter_map(|name| upstreams.get(name).cloned())
            .collect();
        if route_pools.len() != routes.upstreams().len() && errors.is_empty() {
            errors.push(&file, "route", "a route names an upstream that has no pool");
        }
        match server_cert {
            Some(server_cert) if errors.is_empty() => Ok(Snapshot {
                generation,
                config,
                policy,
                trust,
                tokens,
                routes,
                route_pools,
                upstreams,
                names,
                server_cert,
                server_cert_not_before,
                server_cert_not_after,
                limits,
            }),
            _ => Err(errors),
        }
    }
}

/// The single writer's handle on the current snapshot; readers load it lock-free.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    next_generation: AtomicU64,
    /// Serialises writers: two reloads never interleave their read-build-publish.
    writer: Mutex<()>,
    /// The generation in force, for those who act on a change (open connections re-judge
    /// their certificate).
    published: tokio::sync::watch::Sender<u64>,
    /// With `[spiffe]`: the SPIFFE Workload API, whose material every load takes.
    pub workload: Option<Arc<WorkloadFeed>>,
}

impl SnapshotStore {
    pub fn new(first: Snapshot) -> SnapshotStore {
        let next = first.generation + 1;
        let (published, _) = tokio::sync::watch::channel(first.generation);
        SnapshotStore {
            current: ArcSwap::from_pointee(first),
            next_generation: AtomicU64::new(next),
            writer: Mutex::new(()),
            published,
            workload: None,
        }
    }

    /// Reads the config at `path` and builds the first snapshot (generation 1). With
    /// `[spiffe]`, the Workload API is followed from now on, and this waits for its first
    /// material: without an SVID there is nothing to serve.
    pub fn open(path: &Path) -> Result<SnapshotStore, ConfigErrors> {
        let feed = match config::workload_endpoint(path) {
            Some(endpoint) => Some(WorkloadFeed::start(&endpoint).map_err(|e| {
                let mut errors = ConfigErrors::default();
                errors.push(
                    path,
                    "spiffe.workload_api",
                    format!("cannot start the Workload API client: {e}"),
                );
                errors
            })?),
            None => None,
        };
        let material = feed.as_ref().map(|feed| feed.wait_first());
        let config = config::load_with(path, material.as_deref(), None)?;
        let mut store = SnapshotStore::new(Snapshot::build(config, 1, None)?);
        store.workload = feed;
        Ok(store)
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Follows the generation in force: changes each time a snapshot is published.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Builds a snapshot from `path` and publishes it, unless nothing it reads changed. On any
    /// error the current snapshot stays.
    pub fn reload(&self, path: &Path) -> Result<ReloadOutcome, ConfigErrors> {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.workload.is_none() && config::workload_endpoint(path).is_some() {
            let mut errors = ConfigErrors::default();
            errors.push(
                path,
                "spiffe",
                "the gateway started with its certificate from files: following the Workload \
                 API instead needs a restart",
            );
            return Err(errors);
        }
        let material = self.workload.as_ref().and_then(|feed| feed.latest());
        let config = config::load_with(path, material.as_deref(), None)?;
        self.publish(config)
    }

    /// Applies new material from the Workload API to the configuration in force (read from
    /// the bytes it was built from, not from the disk, so a config being edited meanwhile
    /// neither joins in nor holds up a rotation). On any error the current snapshot stays.
    pub fn apply_workload(
        &self,
        material: &WorkloadMaterial,
    ) -> Result<ReloadOutcome, ConfigErrors> {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.current.load_full();
        let config = config::load_with(
            &current.config.source,
            Some(material),
            current.config.captured.clone(),
        )?;
        self.publish(config)
    }

    /// Builds and publishes a snapshot of `config`, unless nothing it was read from changed.
    /// The caller holds the writer lock.
    fn publish(&self, config: GatewayConfig) -> Result<ReloadOutcome, ConfigErrors> {
        let current = self.current.load_full();
        if config.content_hash == current.config.content_hash {
            return Ok(ReloadOutcome::Unchanged(current.generation));
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let snapshot = Snapshot::build(config, generation, Some(&current))?;
        self.current.store(Arc::new(snapshot));
        self.published.send_replace(generation);
        Ok(ReloadOutcome::Applied(generation))
    }
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("generation", &self.current.load().generation)
            .finish()
    }
}

impl TrustSource for SnapshotStore {
    fn trust_store(&self) -> Arc<TrustStore> {
        self.current.load().trust.clone()
    }
}

impl ResolvesServerCert for SnapshotStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().server_cert.clone())
    }
}
