//! SPIFFE federation: the bundles of federated trust domains, fetched from their bundle
//! endpoints (the https_web profile: the endpoint's certificate is checked against web roots,
//! the system's or `endpoint_ca`).
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
use crate::config::BundleEndpoint;
use crate::identity::bundle::x509_authorities;
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
            let spawned = std::thread::Builder::new()
                .name(format!("zonegate-bundle-{}", endpoint.trust_domain))
                .spawn(move || fetch_loop(&fetching, &metrics, &stopped));
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
    metrics: &Metrics,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let client = match http_client(endpoint) {
        Ok(client) => client,
        Err(e) => {
            warn!(trust_domain = %endpoint.trust_domain, error = %e, "bundle endpoint: no client; not fetching");
            metrics.record_bundle_fetch("failed");
            return;
        }
    };
    info!(trust_domain = %endpoint.trust_domain, url = %endpoint.url, "bundle endpoint: fetching");
    let mut refresh = DEFAULT_REFRESH;
    loop {
        let wait = match fetch_once(&client, endpoint) {
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

/// rustls with the gateway's ring provider, trusting the endpoint's CA file or the system's
/// roots (the https_web profile).
fn http_client(endpoint: &BundleEndpoint) -> Result<reqwest::blocking::Client, String> {
    let roots = outbound::web_roots(endpoint.ca.as_deref())?;
    outbound::client_builder(roots)?
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}
