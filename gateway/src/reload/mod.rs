//! The Snapshot: everything the request path needs, built complete and validated off the
//! request path, then published through one `ArcSwap`. Only this module writes it.
//!
//! A request loads the snapshot once and keeps it for its whole life, so it never sees half of
//! an old configuration and half of a new one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{self, ConfigErrors, GatewayConfig};
use crate::identity::{TrustSource, TrustStore};
use crate::policy::Policy;
use crate::proxy::route::RouteTable;
use crate::proxy::upstream::UpstreamPool;

/// One immutable generation of the gateway's state.
pub struct Snapshot {
    pub generation: u64,
    pub config: GatewayConfig,
    pub policy: Policy,
    pub trust: Arc<TrustStore>,
    pub routes: RouteTable,
    pub upstreams: HashMap<String, Arc<UpstreamPool>>,
    pub server_cert: Arc<CertifiedKey>,
}

impl Snapshot {
    /// Builds a snapshot from a validated config. Errors name the config file and key.
    pub fn build(config: GatewayConfig, generation: u64) -> Result<Snapshot, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let file = config.source.clone();

        let mut trust = TrustStore::default();
        for (name, roots) in &config.trust_domains {
            if let Err(e) = trust.add_bundle(name, roots.clone()) {
                errors.push(&file, format!("trust_domain.\"{name}\".bundle"), e.0);
            }
        }

        let mut upstreams = HashMap::new();
        for (name, upstream) in &config.upstreams {
            match UpstreamPool::new(upstream.clone(), &config.tls) {
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

        let policy = Policy::compile(config.rules.clone(), config.decision_cache_entries);
        let routes = RouteTable::new(&config.routes);
        match server_cert {
            Some(server_cert) if errors.is_empty() => Ok(Snapshot {
                generation,
                config,
                policy,
                trust: Arc::new(trust),
                routes,
                upstreams,
                server_cert,
            }),
            _ => Err(errors),
        }
    }
}

/// The single writer's handle on the current snapshot; readers load it lock-free.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    next_generation: AtomicU64,
}

impl SnapshotStore {
    pub fn new(first: Snapshot) -> SnapshotStore {
        let next = first.generation + 1;
        SnapshotStore {
            current: ArcSwap::from_pointee(first),
            next_generation: AtomicU64::new(next),
        }
    }

    /// Reads the config at `path` and builds the first snapshot (generation 1).
    pub fn open(path: &Path) -> Result<SnapshotStore, ConfigErrors> {
        let config = config::load(path)?;
        Ok(SnapshotStore::new(Snapshot::build(config, 1)?))
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds a snapshot from `path` and publishes it; on any error the current one stays.
    pub fn reload(&self, path: &Path) -> Result<u64, ConfigErrors> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let snapshot = Snapshot::build(config::load(path)?, generation)?;
        self.current.store(Arc::new(snapshot));
        Ok(generation)
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
