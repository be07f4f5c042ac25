//! Host-name upstream addresses: what each name resolved to last, and when to ask again.
//!
//! One `Names` lives as long as the gateway (reloads carry it over), so a reload never
//! forgets a resolution. A name is resolved when a snapshot that uses it is built for the
//! first time (the snapshot is published only after that, so a reload that adds a name never
//! routes to an empty pool), and then again by the refresher when its TTL, clamped to the
//! configured bounds, runs out. A failed resolution keeps the last good addresses and is asked
//! again after `min_ttl`; it is counted here and reported by the refresher.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use tracing::warn;

use crate::config::DnsConfig;

/// A host name and port from an upstream's `addresses`.
pub type NameKey = (String, u16);

/// `host:port`, as the config spells it and metrics, status and events name it.
pub fn name_of((host, port): &NameKey) -> String {
    format!("{host}:{port}")
}

/// What a round of resolution changed, for the refresher to apply and report.
#[derive(Debug)]
pub struct Outcome {
    pub key: NameKey,
    /// `Ok(n)`: resolved to n addresses; `Err`: failed, the last good addresses kept.
    pub result: Result<usize, String>,
    /// Whether the name's addresses are not what they were.
    pub changed: bool,
    /// Whether the previous resolution of this name had failed.
    pub recovered: bool,
}

/// One name's state, as `/metrics` and `/status` show it.
#[derive(Clone, Debug)]
pub struct NameState {
    pub name: String,
    pub addresses: usize,
    pub failures: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    /// The last good resolution (empty until one succeeds).
    addrs: Vec<SocketAddr>,
    /// When to ask again.
    next: Option<Instant>,
    failures: u64,
    /// Set while the latest attempt failed.
    last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Names {
    entries: Mutex<HashMap<NameKey, Entry>>,
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    /// The last good addresses of `key` (empty if it never resolved).
    pub fn addresses(&self, key: &NameKey) -> Vec<SocketAddr> {
        self.lock()
            .get(key)
            .map(|e| e.addrs.clone())
            .unwrap_or_default()
    }

    /// Resolves the names of `keys` that were never asked, waiting for the answers (at most
    /// the configured timeout). Runs on a thread of its own, so it may be called from
    /// anywhere, a runtime's thread included.
    pub fn resolve_new_blocking(&self, config: &DnsConfig, keys: &[NameKey]) {
        let new: Vec<NameKey> = {
            let entries = self.lock();
            keys.iter()
                .filter(|k| !entries.contains_key(*k))
                .cloned()
                .collect()
        };
        if new.is_empty() {
            return;
        }
        let config = config.clone();
        let answers = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(runtime) => runtime.block_on(resolve_all(&config, &new)),
                        Err(e) => new
                            .iter()
                            .map(|k| (k.clone(), Err(format!("no runtime to resolve in: {e}"))))
                            .collect(),
                    }
                })
                .join()
                .unwrap_or_default()
        });
        for outcome in self.apply(&config, answers, Instant::now()) {
            if let Err(why) = &outcome.result {
                warn!(name = %outcome.key.0, error = %why, "cannot resolve upstream host name; retrying");
            }
        }
    }

    /// Resolves the names of `keys` whose time has come; returns what happened to each.
    pub async fn refresh_due(&self, config: &DnsConfig, keys: &[NameKey]) -> Vec<Outcome> {
        let now = Instant::now();
        let due: Vec<NameKey> = {
            let entries = self.lock();
            keys.iter()
                .filter(|k| {
                    entries
                        .get(*k)
                        .and_then(|e| e.next)
                        .is_none_or(|next| next <= now)
                })
                .cloned()
                .collect()
        };
        if due.is_empty() {
            return Vec::new();
        }
        let answers = resolve_all(config, &due).await;
        self.apply(config, answers, Instant::now())
    }

    /// When the earliest of `keys` is due.
    pub fn next_due(&self, keys: &[NameKey]) -> Option<Instant> {
        let entries = self.lock();
        keys.iter()
            .filter_map(|k| entries.get(k).and_then(|e| e.next))
            .min()
    }

    /// Every name's state, sorted by name.
    pub fn states(&self) -> Vec<NameState> {
        let mut states: Vec<NameState> = self
            .lock()
            .iter()
            .map(|(key, e)| NameState {
                name: name_of(key),
                addresses: e.addrs.len(),
                failures: e.failures,
                last_error: e.last_error.clone(),
            })
            .collect();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        states
    }

    fn apply(
        &self,
        config: &DnsConfig,
        answers: Vec<(NameKey, Answer)>,
        now: Instant,
    ) -> Vec<Outcome> {
        let mut entries = self.lock();
        answers
            .into_iter()
            .map(|(key, answer)| {
                let entry = entries.entry(key.clone()).or_default();
                let recovered = entry.last_error.is_some();
                match answer {
                    Ok((mut addrs, ttl)) => {
                        addrs.sort();
                        addrs.dedup();
                        let changed = entry.addrs != addrs;
                        let n = addrs.len();
                        entry.addrs = addrs;
                        entry.next = Some(now + ttl.clamp(config.min_ttl, config.max_ttl));
                        entry.last_error = None;
                        Outcome {
                            key,
                            result: Ok(n),
                            changed,
                            recovered,
                        }
                    }
                    Err(why) => {
                        entry.failures += 1;
                        entry.next = Some(now + config.min_ttl);
                        entry.last_error = Some(why.clone());
                        Outcome {
                            key,
                            result: Err(why),
                            changed: false,
                            recovered: false,
                        }
                    }
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NameKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Addresses and how long they may be kept, or why there are none.
type Answer = Result<(Vec<SocketAddr>, Duration), String>;

/// Resolves every key at once, each within the configured timeout.
async fn resolve_all(config: &DnsConfig, keys: &[NameKey]) -> Vec<(NameKey, Answer)> {
    let resolver = match resolver(config) {
        Ok(r) => r,
        Err(why) => return keys.iter().map(|k| (k.clone(), Err(why.clone()))).collect(),
    };
    let lookups = keys.iter().map(|(host, port)| {
        let resolver = &resolver;
        async move {
            let lookup = tokio::time::timeout(config.timeout, resolver.lookup_ip(host.as_str()));
            let answer = match lookup.await {
                Err(_) => Err(format!("no answer within {:?}", config.timeout)),
                Ok(Err(e)) if e.is_nx_domain() => Err("no such name (NXDOMAIN)".to_string()),
                Ok(Err(e)) if e.is_no_records_found() => {
                    Err("the name has no address records".to_string())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(found)) => {
                    let addrs: Vec<SocketAddr> = found
                        .iter()
                        .map(|ip: IpAddr| SocketAddr::new(ip, *port))
                        .collect();
                    let ttl = found
                        .valid_until()
                        .saturating_duration_since(Instant::now());
                    if addrs.is_empty() {
                        Err("the name has no address records".to_string())
                    } else {
                        Ok((addrs, ttl))
                    }
                }
            };
            ((host.clone(), *port), answer)
        }
    });
    futures::future::join_all(lookups).await
}

/// A resolver for `config`: its name servers, else the system's. It keeps no cache: the
/// gateway keeps the answers, and asks again only when their time has come.
fn resolver(config: &DnsConfig) -> Result<TokioResolver, String> {
    let mut builder = if config.nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("system resolver settings: {e}"))?
    } else {
        let servers: Vec<NameServerConfig> = config
            .nameservers
            .iter()
            .flat_map(|&addr| {
                [
                    NameServerConfig::new(addr, Protocol::Udp),
                    NameServerConfig::new(addr, Protocol::Tcp),
                ]
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            TokioConnectionProvider::default(),
        )
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.cache_size = 0;
    options.timeout = config.timeout;
    options.attempts = 2;
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> NameKey {
        (host.to_string(), 80)
    }

    #[test]
    fn a_failure_keeps_the_last_good_addresses_and_asks_again_after_min_ttl() {
        let names = Names::new();
        let config = DnsConfig {
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(60),
            ..DnsConfig::default()
        };
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:80".parse().unwrap();
        // A TTL of 0 is held to min_ttl; a long one to max_ttl.
        let out = names.apply(
            &config,
            vec![
                (key("a"), Ok((vec![a, b, a], Duration::ZERO))),
                (key("b"), Ok((vec![b], Duration::from_secs(3600)))),
            ],
            t0,
        );
        assert!(out.iter().all(|o| o.changed && o.result.is_ok()));
        assert_eq!(names.addresses(&key("a")), vec![b, a]);
        assert_eq!(
            names.next_due(&[key("a")]),
            Some(t0 + Duration::from_secs(5))
        );
        assert_eq!(
            names.next_due(&[key("b")]),
            Some(t0 + Duration::from_secs(60))
        );
        let out = names.apply(&config, vec![(key("a"), Err("SERVFAIL".into()))], t0);
        assert_eq!(out[0].result, Err("SERVFAIL".to_string()));
        assert_eq!(names.addresses(&key("a")), vec![b, a]);
        let state = &names.states()[0];
        assert_eq!((state.failures, state.addresses), (1, 2));
        let out = names.apply(&config, vec![(key("a"), Ok((vec![a], Duration::ZERO)))], t0);
        assert!(out[0].recovered && out[0].changed);
        assert_eq!(names.states()[0].last_error, None);
    }
}
