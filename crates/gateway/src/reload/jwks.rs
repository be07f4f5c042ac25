//! Bearer token issuers' keys fetched from their JWK Set URL, or found through their OpenID
//! Connect discovery document, and written into the issuer's `keys` file.
//!
//! As with federation bundles, the config watcher follows the file: the usual reload validates
//! the keys and applies them live, and keys that do not load are refused while the last good
//! ones stay in force. The file is the bootstrap before the first fetch and the last good keys
//! across restarts. Fetches follow the JWK Set's Cache-Control max-age within the issuer's
//! bounds; a failed one is retried sooner and leaves the file as it is.
//!
//! A token naming a `kid` the issuer's keys lack asks for a fetch now ([`KeyFetchers::refetch`]),
//! at most once per `unknown_kid_refetch_s` per issuer, so random key ids cannot make the
//! gateway hammer the issuer; requests arriving while that fetch runs wait for it too.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::federation::write_atomically;
use super::SnapshotStore;
use crate::admin::metrics::Metrics;
use crate::config::{KeysLocation, RemoteKeys};
use crate::identity::token::{parse_key_set, KeyFileFormat};
use crate::outbound;

/// Used when the JWK Set says nothing of its lifetime (within the issuer's bounds).
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// A failed fetch is tried again after this long, or sooner if the refresh is sooner.
const RETRY: Duration = Duration::from_secs(10);
/// Longest wait for one answer of an issuer, and the largest document taken from one.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;

/// The running fetchers, by issuer; what the request path asks for a refetch.
#[derive(Default)]
pub struct KeyFetchers {
    running: Mutex<HashMap<RemoteKeys, Arc<Handle>>>,
}

/// A fetcher as the request path sees it. Dropping the last handle stops the fetcher.
struct Handle {
    state: Arc<FetchState>,
    wake: Sender<()>,
    unknown_kid_refetch: Duration,
}

/// What a fetcher and the requests waiting on it share.
struct FetchState {
    asked: Mutex<Asked>,
    /// The last round fetched: requests wait on it.
    rounds: watch::Sender<Round>,
}

/// Refetches asked for by tokens with an unknown `kid`.
#[derive(Default)]
struct Asked {
    /// Numbered from 1; a round serves every one asked before it started.
    last: u64,
    at: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
struct Round {
    /// The last refetch this round served (asked before it started).
    served: u64,
    /// SHA-256 of the keys file after the round, when the fetch succeeded.
    fingerprint: Option<Vec<u8>>,
    /// When the round ended.
    at: Option<Instant>,
}

/// A refetch asked for (or joined): its outcome once the fetcher has made it.
pub(crate) struct Refetch {
    ticket: u64,
    rounds: watch::Receiver<Round>,
}

impl Refetch {
    /// The SHA-256 of the keys file after the fetch that serves this refetch; `None` when it
    /// failed (the last good keys stay) or the fetcher stopped.
    pub(crate) async fn fetched(mut self) -> Option<Vec<u8>> {
        let ticket = self.ticket;
        let round = self.rounds.wait_for(|r| r.served >= ticket).await.ok()?;
        round.fingerprint.clone()
    }
}

impl KeyFetchers {
    /// Asks for the keys of `issuer` to be fetched now, for a token naming a `kid` they lack:
    /// joins a refetch already under way, else starts one unless one was started less than
    /// the issuer's `unknown_kid_refetch_s` ago, in which case only a fetch that ended just
    /// now is offered (its keys may be on their way into a snapshot). `None`: nothing to wait
    /// for.
    pub(crate) fn refetch(&self, issuer: &str) -> Option<Refetch> {
        let handle = self
            .running
            .lock()
            .ok()?
            .iter()
            .find(|(remote, _)| remote.issuer == issuer)
            .map(|(_, handle)| handle.clone())?;
        let rounds = handle.state.rounds.subscribe();
        let served = rounds.borrow().served;
        let mut asked = handle.state.asked.lock().ok()?;
        if asked.last > served {
            return Some(Refetch {
                ticket: asked.last,
                rounds,
            });
        }
        if asked
            .at
            .is_some_and(|at| at.elapsed() < handle.unknown_kid_refetch)
        {
            // No new fetch; but one that just wrote keys may not be applied yet: a request
            // arriving between the fetch and the reload waits for the reload, not a 401.
            let round = rounds.borrow().clone();
            let fresh = round.fingerprint.is_some()
                && round.at.is_some_and(|at| at.elapsed() < FETCH_TIMEOUT);
            return fresh.then_some(Refetch {
                ticket: served,
                rounds,
            });
        }
        asked.last += 1;
        asked.at = Some(Instant::now());
        handle.wake.send(()).ok()?;
        Some(Refetch {
            ticket: asked.last,
            rounds,
        })
    }
}

/// Runs one fetcher per issuer with remote keys, started and stopped as reloads change them.
pub async fn follow_issuer_keys(
    store: Arc<SnapshotStore>,
    fetchers: Arc<KeyFetchers>,
    metrics: Arc<Metrics>,
) {
    let mut generations = store.subscribe();
    loop {
        let wanted = store.load().config.remote_keys.clone();
        if let Ok(mut running) = fetchers.running.lock() {
            running.retain(|remote, _| {
                let keep = wanted.contains(remote);
                // An issuer whose settings changed keeps its series; one that left drops them.
                if !keep && !wanted.iter().any(|w| w.issuer == remote.issuer) {
                    metrics.forget_jwks_issuer(&remote.issuer);
                }
                keep
            });
            for remote in wanted {
                if running.contains_key(&remote) {
                    continue;
                }
                match start(&remote, &metrics) {
                    Ok(handle) => {
                        running.insert(remote, Arc::new(handle));
                    }
                    Err(e) => {
                        warn!(issuer = %remote.issuer, error = %e, "cannot start a token issuer key fetcher")
                    }
                }
            }
        }
        if generations.changed().await.is_err() {
            return;
        }
    }
}

fn start(remote: &RemoteKeys, metrics: &Arc<Metrics>) -> std::io::Result<Handle> {
    let (wake, woken) = channel();
    let state = Arc::new(FetchState {
        asked: Mutex::new(Asked::default()),
        rounds: watch::channel(Round::default()).0,
    });
    // The file holds the keys last fetched (or written by the operator): as old as it is.
    let written = std::fs::metadata(&remote.keys_path)
        .and_then(|m| m.modified())
        .ok()
        .map_or(0, unix);
    metrics.set_jwks_confirmed(&remote.issuer, written);
    let fetcher = Fetcher {
        remote: remote.clone(),
        state: state.clone(),
        metrics: metrics.clone(),
    };
    std::thread::Builder::new()
        .name(format!("zonegate-jwks-{}", remote.issuer))
        .spawn(move || fetcher.run(&woken))?;
    Ok(Handle {
        state,
        wake,
        unknown_kid_refetch: remote.unknown_kid_refetch,
    })
}

struct Fetcher {
    remote: RemoteKeys,
    state: Arc<FetchState>,
    metrics: Arc<Metrics>,
}

impl Fetcher {
    fn run(&self, woken: &Receiver<()>) {
        let issuer = &self.remote.issuer;
        let url = self.remote.location.url();
        info!(%issuer, %url, "token issuer keys: fetching");
        let mut refresh = DEFAULT_REFRESH.clamp(self.remote.min_refresh, self.remote.max_refresh);
        loop {
            let serving = self.state.asked.lock().map_or(0, |a| a.last);
            // A client per round: a renewed endpoint_ca is trusted from the next fetch on.
            let fetched = http_client(&self.remote).and_then(|c| fetch_once(&c, &self.remote));
            let (wait, fingerprint) = match fetched {
                Ok(fetched) => {
                    self.metrics.record_jwks_fetch(
                        issuer,
                        if fetched.changed {
                            "updated"
                        } else {
                            "unchanged"
                        },
                    );
                    self.metrics
                        .set_jwks_confirmed(issuer, unix(SystemTime::now()));
                    refresh = fetched
                        .max_age
                        .unwrap_or(DEFAULT_REFRESH)
                        .clamp(self.remote.min_refresh, self.remote.max_refresh);
                    (refresh, Some(fetched.fingerprint))
                }
                Err(e) => {
                    self.metrics.record_jwks_fetch(issuer, "failed");
                    let age_s = self.metrics.jwks_keys_age_s(issuer);
                    warn!(%issuer, %url, error = %e, keys_age_s = age_s, "token issuer keys: fetch failed; the last good keys stay in force");
                    (RETRY.min(refresh), None)
                }
            };
            self.state.rounds.send_replace(Round {
                served: serving,
                fingerprint,
                at: Some(Instant::now()),
            });
            match woken.recv_timeout(wait) {
                // A refetch asked for: the next round serves it, and any asked meanwhile.
                Ok(()) => while woken.try_recv().is_ok() {},
                Err(RecvTimeoutError::Timeout) => {}
                // Every handle was dropped: the issuer left the config.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// One fetch's result.
struct Fetched {
    changed: bool,
    /// The JWK Set response's Cache-Control max-age (zero for no-cache or no-store).
    max_age: Option<Duration>,
    /// SHA-256 of the JWK Set, which the keys file now holds.
    fingerprint: Vec<u8>,
}

/// One fetch: the JWK Set (found through discovery, if so configured) is read as the reload
/// will read it, then written if it differs from the file.
fn fetch_once(client: &reqwest::blocking::Client, remote: &RemoteKeys) -> Result<Fetched, String> {
    let jwks_uri = match &remote.location {
        KeysLocation::Jwks(url) => url.clone(),
        KeysLocation::Discovery { url, issuer } => {
            let (document, _) = get(client, url)?;
            jwks_uri_of(&document, issuer).map_err(|e| format!("{url}: {e}"))?
        }
    };
    let (body, max_age) = get(client, &jwks_uri)?;
    let keys = parse_key_set(&body, KeyFileFormat::Jwks, &remote.algorithms)
        .map_err(|e| format!("{jwks_uri}: {}", e.reason))?;
    let fingerprint = keys.fingerprint.clone();
    let current = std::fs::read(&remote.keys_path).unwrap_or_default();
    if current == body {
        return Ok(Fetched {
            changed: false,
            max_age,
            fingerprint,
        });
    }
    write_atomically(&remote.keys_path, &body)
        .map_err(|e| format!("cannot write {}: {e}", remote.keys_path.display()))?;
    for note in &keys.skipped {
        warn!(issuer = %remote.issuer, "token issuer key skipped: {note}");
    }
    info!(issuer = %remote.issuer, keys = keys.keys.len(), "token issuer keys: new keys written; the reload applies them");
    Ok(Fetched {
        changed: true,
        max_age,
        fingerprint,
    })
}

/// A successful answer's body (bounded) and Cache-Control max-age.
fn get(
    client: &reqwest::blocking::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), String> {
    let response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .map_err(|e| format!("{url}: request: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: answered {status}"));
    }
    let max_age = response
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age);
    let body =
        outbound::read_bounded(response, MAX_DOCUMENT_BYTES).map_err(|e| format!("{url}: {e}"))?;
    Ok((body, max_age))
}

/// The `jwks_uri` of an OpenID Connect discovery document whose `issuer` is exactly `issuer`
/// (OpenID Connect Discovery 1.0, 4.3: else it may be another issuer's document).
fn jwks_uri_of(document: &[u8], issuer: &str) -> Result<String, String> {
    let doc: Value =
        serde_json::from_slice(document).map_err(|e| format!("discovery: not JSON: {e}"))?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(found) if found == issuer => {}
        Some(found) => {
            return Err(format!(
                "discovery: `issuer` {found:?} is not the configured {issuer:?}"
            ))
        }
        None => return Err("discovery: no `issuer`".into()),
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery: no `jwks_uri`")?;
    let https = uri
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && uri.parse::<http::Uri>().is_ok();
    if !https {
        return Err(format!("discovery: `jwks_uri` {uri:?} is not an https URL"));
    }
    Ok(uri.to_string())
}

/// `max-age` of one Cache-Control header value; `no-cache` and `no-store` mean zero (the
/// caller's lower bound applies).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        seconds
            .trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// rustls with the gateway's ring provider, trusting the issuer's CA file or the system's
/// roots; redirects are not followed (the configured URL is the issuer's word).
fn http_client(remote: &RemoteKeys) -> Result<reqwest::blocking::Client, String> {
    let roots = outbound::web_roots(remote.ca.as_deref())?;
    outbound::client_builder(roots)?
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age_is_read_and_no_cache_means_the_lower_bound() {
        assert_eq!(max_age("max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(
            max_age("public, Max-Age = \"120\", must-revalidate"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
        assert_eq!(max_age("s-maxage=60"), None);
    }

    #[test]
    fn a_discovery_document_is_taken_only_from_the_configured_issuer() {
        let doc = |issuer: &str, jwks: &str| {
            serde_json::json!({ "issuer": issuer, "jwks_uri": jwks }).to_string()
        };
        let iss = "https://idp.example";
        assert_eq!(
            jwks_uri_of(doc(iss, "https://idp.example/keys").as_bytes(), iss),
            Ok("https://idp.example/keys".to_string())
        );
        for (document, expected) in [
            (
                doc("https://idp.example/", "https://idp.example/keys"),
                "is not the configured",
            ),
            (
                doc("https://evil.example", "https://idp.example/keys"),
                "is not the configured",
            ),
            (doc(iss, "http://idp.example/keys"), "is not an https URL"),
            (
                r#"{"jwks_uri":"https://idp.example/keys"}"#.into(),
                "no `issuer`",
            ),
            (
                r#"{"issuer":"https://idp.example"}"#.into(),
                "no `jwks_uri`",
            ),
            ("<html>".into(), "not JSON"),
        ] {
            let error = jwks_uri_of(document.as_bytes(), iss).unwrap_err();
            assert!(error.contains(expected), "{document}: {error}");
        }
    }
}
