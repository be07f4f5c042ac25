//! SPIFFE federation: the bundles of federated trust domains, fetched from their bundle
//! endpoints. The https_web profile checks the endpoint's certificate against web roots (the
//! system's or `endpoint_ca`) for the URL's host; https_spiffe checks that it is an X.509-SVID
//! with the configured SPIFFE ID, verified against the bundle in force for that ID's trust
//! domain: for the federated domain itself, the last bundle fetched, so each fetch is
//! authenticated by the one before it.
//!
//! A fetched bundle is written into the domain's `bundle` file, which the config watcher
//! follows: the usual reload validates it and applies it live, and one that does not load is
//! refused while the last good bundle stays in force. The file is the bootstrap before the
//! first fetch and the last good bundle across restarts. Fetches follow the bundle's
//! `spiffe_refresh_hint`; a failed one is retried sooner, and the file is left as it is.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::SnapshotStore;
use crate::admin::metrics::Metrics;
use crate::config::{BundleEndpoint, EndpointProfile};
use crate::identity::bundle::x509_authorities;
use crate::identity::upstream::UpstreamIdVerifier;
use crate::identity::{IdPattern, SpiffeId};
use crate::outbound;

/// Refresh bounds: a hint outside them is clamped; no hint means the default.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// A failed fetch is tried again after this long, or sooner if the refresh is sooner.
const RETRY: Duration = Duration::from_secs(10);
/// Longest wait for an endpoint, and the largest bundle taken from one.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BUNDLE_BYTES: u64 = 1 << 20;

/// Runs one fetcher per configured endpoint, started and stopped as reloads change them.
pub async fn follow_bundle_endpoints(store: Arc<SnapshotStore>, metrics: Arc<Metrics>) {
    let mut generations = store.subscribe();
    // Dropping a fetcher's sender stops it.
    let mut running: HashMap<BundleEndpoint, Sender<()>> = HashMap::new();
    loop {
        let wanted = store.load().config.bundle_endpoints.clone();
        running.retain(|endpoint, _| wanted.contains(endpoint));
        for endpoint in wanted {
            if running.contains_key(&endpoint) {
                continue;
            }
            let (stop, stopped) = channel();
            let metrics = metrics.clone();
            let fetching = endpoint.clone();
            let trust = store.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("zonegate-bundle-{}", endpoint.trust_domain))
                .spawn(move || fetch_loop(&fetching, &trust, &metrics, &stopped));
            match spawned {
                Ok(_) => {
                    running.insert(endpoint, stop);
                }
                Err(e) => warn!(error = %e, "cannot start a bundle endpoint fetcher"),
            }
        }
        if generations.changed().await.is_err() {
            return;
        }
    }
}

fn fetch_loop(
    endpoint: &BundleEndpoint,
    store: &SnapshotStore,
    metrics: &Metrics,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    info!(trust_domain = %endpoint.trust_domain, url = %endpoint.url, "bundle endpoint: fetching");
    let mut refresh = DEFAULT_REFRESH;
    loop {
        // A client per fetch: with https_spiffe its roots are the bundle in force now.
        let fetched = http_client(endpoint, store).and_then(|client| fetch_once(&client, endpoint));
        let wait = match fetched {
            Ok((changed, hint)) => {
                metrics.record_bundle_fetch(if changed { "updated" } else { "unchanged" });
                refresh = hint;
                refresh
            }
            Err(e) => {
                metrics.record_bundle_fetch("failed");
                warn!(trust_domain = %endpoint.trust_domain, url = %endpoint.url, error = %e, "bundle endpoint: fetch failed; the last good bundle stays in force");
                RETRY.min(refresh)
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            // The sender was dropped: the endpoint left the config.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One fetch: the bundle is checked, then written if it differs from the file. Returns whether
/// it changed and when to fetch again.
fn fetch_once(
    client: &reqwest::blocking::Client,
    endpoint: &BundleEndpoint,
) -> Result<(bool, Duration), String> {
    let response = client
        .get(&endpoint.url)
        .send()
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let body = outbound::read_bounded(response, MAX_BUNDLE_BYTES)?;
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err("not a SPIFFE bundle (JSON)".into());
    }
    let found = x509_authorities(&body, &endpoint.trust_domain)?;
    let refresh = found
        .refresh_hint_s
        .map_or(DEFAULT_REFRESH, Duration::from_secs)
        .clamp(MIN_REFRESH, MAX_REFRESH);
    let current = std::fs::read(&endpoint.bundle_path).unwrap_or_default();
    if current == body {
        return Ok((false, refresh));
    }
    write_atomically(&endpoint.bundle_path, &body)
        .map_err(|e| format!("cannot write {}: {e}", endpoint.bundle_path.display()))?;
    info!(trust_domain = %endpoint.trust_domain, roots = found.roots.len(), sequence = ?found.sequence, "bundle endpoint: new bundle written; the reload applies it");
    Ok((true, refresh))
}

/// Writes `bytes` to a file beside `path`, then renames it over `path`: the watcher never
/// reads half a bundle.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.fetched"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// rustls with the gateway's ring provider, authenticating the endpoint by its profile.
fn http_client(
    endpoint: &BundleEndpoint,
    store: &SnapshotStore,
) -> Result<reqwest::blocking::Client, String> {
    let builder = match &endpoint.profile {
        EndpointProfile::Web { ca } => {
            outbound::client_builder(outbound::web_roots(ca.as_deref())?)?
        }
        EndpointProfile::Spiffe { id } => {
            let expected = IdPattern::parse(id).map_err(|e| format!("`{id}`: {e}"))?;
            let spiffe_id = SpiffeId::parse(id).map_err(|e| format!("`{id}`: {e}"))?;
            let domain = spiffe_id.trust_domain();
            let snapshot = store.load();
            let mut roots = rustls::RootCertStore::empty();
            for root in snapshot
                .config
                .trust_domains
                .get(domain)
                .into_iter()
                .flatten()
            {
                let _ = roots.add(root.clone());
            }
            if roots.is_empty() {
                return Err(format!(
                    "no roots of {domain} to verify the endpoint's SVID with"
                ));
            }
            let provider = rustls::crypto::ring::default_provider();
            let verifier = UpstreamIdVerifier::new(
                Arc::new(roots),
                vec![expected],
                provider.signature_verification_algorithms,
            );
            outbound::client_builder_verifying(Arc::new(verifier))?
        }
    };
    builder
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}
