//! The SPIFFE Workload API as the source of the gateway's SVID, trust bundles and JWT
//! authorities (`[spiffe]`).
//!
//! One thread follows the agent: it streams X.509 contexts and JWT bundles, and publishes
//! each complete set of material. The reload side ([`super::SnapshotStore::apply_workload`])
//! applies it to the configuration in force, so a rotation is validated like an edited file
//! and a refused one leaves the last good material serving. When the agent goes away the
//! last good material stays in force (the gateway stays ready: its SVID is still valid), the
//! loss is reported, and the thread reconnects with backoff.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use spiffe::{JwtBundleSet, WorkloadApiClient, X509Context};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Reloader;
use crate::config::{WorkloadMaterial, WorkloadSvid};
use crate::events::{now_rfc3339, rfc3339_seconds, WorkloadApiEvent, KIND_WORKLOAD_API, SCHEMA};
use crate::ids::next_id;

/// Reconnection backoff: doubled from the first to the last after each failed attempt.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_LAST: Duration = Duration::from_secs(30);
/// How often a gateway still waiting for its first SVID says so.
const WAITING_LOG: Duration = Duration::from_secs(5);
const WAIT_STEP: Duration = Duration::from_millis(20);
/// How often the agent's connection and the SVID's remaining life are looked at.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// What the agent delivered last, and whether it is connected.
pub struct WorkloadFeed {
    pub endpoint: String,
    material: watch::Sender<Option<Arc<WorkloadMaterial>>>,
    connected: AtomicBool,
    /// Agent connections lost (streams ended or failed), and material sets received.
    pub losses: AtomicU64,
    pub updates: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The SVID in force is close to its end with no replacement (reported once).
    expiring: AtomicBool,
}

impl WorkloadFeed {
    /// Starts following the agent at `endpoint` on a thread of its own.
    pub fn start(endpoint: &str) -> std::io::Result<Arc<WorkloadFeed>> {
        let feed = Arc::new(WorkloadFeed {
            endpoint: endpoint.to_string(),
            material: watch::channel(None).0,
            connected: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            last_error: Mutex::new(None),
            expiring: AtomicBool::new(false),
        });
        let following = feed.clone();
        std::thread::Builder::new()
            .name("zonegate-workload-api".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(follow(&following)),
                    Err(e) => warn!(error = %e, "cannot start the Workload API client"),
                }
            })?;
        Ok(feed)
    }

    /// The material in force from the agent, if it has sent a complete set.
    pub fn latest(&self) -> Option<Arc<WorkloadMaterial>> {
        self.material.borrow().clone()
    }

    /// Follows new material sets.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<WorkloadMaterial>>> {
        self.material.subscribe()
    }

    /// Blocks until the agent has sent a complete set (an SVID, its bundles, its JWT
    /// authorities), saying every few seconds that the gateway waits for it.
    pub fn wait_first(&self) -> Arc<WorkloadMaterial> {
        loop {
            if let Some(material) = self.wait_first_for(WAITING_LOG) {
                return material;
            }
            warn!(
                endpoint = %self.endpoint,
                error = self.last_error().as_deref().unwrap_or("no answer yet"),
                "waiting for the gateway's X.509-SVID from the SPIFFE Workload API"
            );
        }
    }

    /// [`WorkloadFeed::wait_first`], for at most `limit`.
    pub fn wait_first_for(&self, limit: Duration) -> Option<Arc<WorkloadMaterial>> {
        let mut waited = Duration::ZERO;
        loop {
            if let Some(material) = self.latest() {
                return Some(material);
            }
            if waited >= limit {
                return None;
            }
            std::thread::sleep(WAIT_STEP);
            waited += WAIT_STEP;
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// For `/status`.
    pub fn status(&self) -> serde_json::Value {
        json!({
            "endpoint": self.endpoint,
            "connected": self.connected(),
            "updates": self.updates.load(Ordering::Relaxed),
            "losses": self.losses.load(Ordering::Relaxed),
            "last_error": self.last_error(),
            "svid_expiring": self.expiring.load(Ordering::Relaxed),
        })
    }

    /// The Workload API's lines of `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let rows = [
            ("zonegate_workload_api_connected", "gauge", "1 while the SPIFFE Workload API streams to the gateway; 0 while the last good material serves without it.", u64::from(self.connected())),
            ("zonegate_workload_api_updates_total", "counter", "Material sets (SVID, bundles, JWT authorities) received from the Workload API.", self.updates.load(Ordering::Relaxed)),
            ("zonegate_workload_api_losses_total", "counter", "Connections to the Workload API lost.", self.losses.load(Ordering::Relaxed)),
            ("zonegate_svid_expiring", "gauge", "1 when the gateway's X.509-SVID has less than a quarter of its lifetime left and the Workload API has sent no new one.", u64::from(self.expiring.load(Ordering::Relaxed))),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }

    fn set_connected(&self, connected: bool, error: Option<String>) {
        self.connected.store(connected, Ordering::Release);
        if let Ok(mut last) = self.last_error.lock() {
            if error.is_some() {
                *last = error;
            }
        }
    }
}

/// Connects, streams, and reconnects with backoff, for the life of the process.
async fn follow(feed: &WorkloadFeed) {
    let mut backoff = BACKOFF_FIRST;
    // What each stream last said; a set is published once both have spoken.
    let mut x509: Option<X509Context> = None;
    let mut jwt: Option<JwtBundleSet> = None;
    loop {
        let ended = stream(feed, &mut x509, &mut jwt, &mut backoff).await;
        if feed.connected() {
            feed.losses.fetch_add(1, Ordering::Relaxed);
            warn!(endpoint = %feed.endpoint, error = %ended, "lost the SPIFFE Workload API; the last good SVID and bundles stay in force");
        }
        feed.set_connected(false, Some(ended));
        let jitter = Duration::from_millis(rand::random::<u64>() % 100);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_LAST);
    }
}

/// One connection: until either stream ends or fails; returns why.
async fn stream(
    feed: &WorkloadFeed,
    x509: &mut Option<X509Context>,
    jwt: &mut Option<JwtBundleSet>,
    backoff: &mut Duration,
) -> String {
    let client = match WorkloadApiClient::connect_to(&feed.endpoint).await {
        Ok(client) => client,
        Err(e) => return format!("cannot connect: {e}"),
    };
    let mut contexts = match client.stream_x509_contexts().await {
        Ok(s) => s,
        Err(e) => return format!("FetchX509SVID: {e}"),
    };
    let mut bundles = match client.stream_jwt_bundles().await {
        Ok(s) => s,
        Err(e) => return format!("FetchJWTBundles: {e}"),
    };
    loop {
        tokio::select! {
            next = contexts.next() => match next {
                Some(Ok(context)) => *x509 = Some(context),
                Some(Err(e)) => return format!("FetchX509SVID: {e}"),
                None => return "FetchX509SVID: the agent closed the stream".into(),
            },
            next = bundles.next() => match next {
                Some(Ok(set)) => *jwt = Some(set),
                Some(Err(e)) => return format!("FetchJWTBundles: {e}"),
                None => return "FetchJWTBundles: the agent closed the stream".into(),
            },
        }
        if let (Some(context), Some(set)) = (x509.as_ref(), jwt.as_ref()) {
            match material_of(context, set) {
                Ok(material) => {
                    if !feed.connected() {
                        info!(endpoint = %feed.endpoint, "SPIFFE Workload API connected");
                    }
                    feed.set_connected(true, None);
                    *backoff = BACKOFF_FIRST;
                    feed.updates.fetch_add(1, Ordering::Relaxed);
                    feed.material.send_replace(Some(Arc::new(material)));
                }
                Err(reason) => {
                    warn!(endpoint = %feed.endpoint, "Workload API material not used: {reason}")
                }
            }
        }
    }
}

/// The agent's answer in the config's terms: the default SVID (the first, as the Workload
/// API specification says), every trust domain's roots, every trust domain's JWT
/// authorities as a JWK Set.
fn material_of(context: &X509Context, jwt: &JwtBundleSet) -> Result<WorkloadMaterial, String> {
    let svid = context
        .default_svid()
        .ok_or("the X.509 context holds no SVID")?;
    let chain = svid
        .cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        svid.private_key().as_bytes().to_vec(),
    ));
    let mut x509_bundles = BTreeMap::new();
    for (domain, bundle) in context.bundle_set().iter() {
        let roots = bundle
            .authorities()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        x509_bundles.insert(domain.to_string(), roots);
    }
    let mut jwt_bundles = BTreeMap::new();
    for (domain, bundle) in jwt.iter() {
        let mut keys = Vec::new();
        for authority in bundle.jwt_authorities() {
            let jwk: serde_json::Value = serde_json::from_slice(authority.jwk_json())
                .map_err(|e| format!("a JWT authority of {domain} is not JSON: {e}"))?;
            keys.push(jwk);
        }
        jwt_bundles.insert(
            domain.to_string(),
            json!({ "keys": keys }).to_string().into_bytes(),
        );
    }
    Ok(WorkloadMaterial {
        svid: Some(WorkloadSvid { chain, key }),
        x509_bundles,
        jwt_bundles,
    })
}

/// Applies each new material set from the agent, and reports the agent's comings and goings
/// and an SVID close to its end with no replacement (status, metric, event, log).
pub async fn follow_workload_api(reloader: Arc<Reloader>, feed: Arc<WorkloadFeed>) {
    let mut updates = feed.subscribe();
    let mut check = tokio::time::interval(EXPIRY_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What came between the store's first load and now is applied first (most often the
    // very material of that load, found unchanged).
    let mut pending = updates.borrow_and_update().clone();
    let mut was_connected = true;
    loop {
        if let Some(material) = pending.take() {
            let applying = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || applying.apply_workload(&material)).await;
        }
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                pending = updates.borrow_and_update().clone();
            }
            _ = check.tick() => {}
        }
        let connected = feed.connected();
        if connected != was_connected {
            was_connected = connected;
            emit(
                &reloader,
                &feed,
                if connected { "connected" } else { "lost" },
            );
        }
        let snapshot = reloader.store().load();
        let expiring = svid_expiring(
            snapshot.server_cert_not_before,
            snapshot.server_cert_not_after,
            now_unix(),
        );
        let reported = feed.expiring.swap(expiring, Ordering::AcqRel);
        if expiring && !reported {
            warn!(
                endpoint = %feed.endpoint,
                not_after = %rfc3339(snapshot.server_cert_not_after),
                "the gateway's X.509-SVID is close to its end and the Workload API has sent no new one"
            );
            emit(&reloader, &feed, "svid_expiring");
        }
    }
}

fn emit(reloader: &Reloader, feed: &WorkloadFeed, result: &'static str) {
    let snapshot = reloader.store().load();
    reloader.events().emit(WorkloadApiEvent {
        schema: SCHEMA,
        kind: KIND_WORKLOAD_API,
        time: now_rfc3339(),
        event_id: next_id(),
        result,
        endpoint: feed.endpoint.clone(),
        error: if result == "connected" {
            None
        } else {
            feed.last_error()
        },
        spiffe_id: snapshot
            .config
            .tls
            .spiffe_id
            .as_ref()
            .map(|id| id.as_str().to_string()),
        svid_not_after: Some(rfc3339(snapshot.server_cert_not_after)),
        destination_zone: snapshot.config.zone.clone(),
    });
}

/// Less than a quarter of the SVID's lifetime left: SPIRE rotates at half, so a gateway
/// this far along has missed at least one rotation.
fn svid_expiring(from: i64, until: i64, now: i64) -> bool {
    // 0: the snapshot could not read its leaf's validity.
    until != 0 && until - now < (until - from) / 4
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(unix: i64) -> String {
    rfc3339_seconds(unix).unwrap_or_default()
}
