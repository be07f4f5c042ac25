//! Per-identity limits at run time (the policy's `limit` on rules and routes): one counter
//! table per limit, kept across reloads that leave that limit as it was, so a reload neither
//! resets a bucket an identity has emptied nor forgets requests in flight. Each replica counts
//! on its own. A request costs one lock and one hash lookup per limit that covers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use zonegate_core::admission::{Refusal, Refused};
use zonegate_core::config::GatewayConfig;
use zonegate_core::policy::{Limit, LimitScope};

/// Counters kept per limit, at most: past this, idle ones are swept, and if none is idle the
/// request is refused (a table that cannot grow must not stop limiting).
const MAX_COUNTERS: usize = 65_536;

/// The maps the request path reads: randomly keyed like SipHash, several times cheaper
/// (callgrind: SipHash was 2.4k of a limited request's 81k instructions).
type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// The limits of one snapshot, by owner.
#[derive(Default)]
pub struct Limiters {
    by_rule: FastMap<Arc<str>, Arc<Limiter>>,
    by_route: FastMap<Arc<str>, Arc<Limiter>>,
}

impl Limiters {
    /// The limits `config` sets; a limit unchanged since `previous` keeps its counters.
    pub fn build(config: &GatewayConfig, previous: Option<&Limiters>) -> Limiters {
        let keep = |old: Option<&Arc<Limiter>>, owner: String, limit: &Limit| match old {
            Some(old) if old.limit == *limit => old.clone(),
            _ => Arc::new(Limiter::new(owner, limit.clone())),
        };
        let mut limiters = Limiters::default();
        for rule in &config.rules {
            if let Some(limit) = &rule.limit {
                let old = previous.and_then(|p| p.by_rule.get(&rule.id));
                let limiter = keep(old, format!("rule {}", rule.id), limit);
                limiters.by_rule.insert(rule.id.clone(), limiter);
            }
        }
        for route in &config.routes {
            if let Some(limit) = &route.limit {
                let old = previous.and_then(|p| p.by_route.get(&route.name));
                let limiter = keep(old, format!("route {}", route.name), limit);
                limiters.by_route.insert(route.name.clone(), limiter);
            }
        }
        limiters
    }

    /// Whether no rule or route sets a limit: then no request needs to look.
    pub fn is_empty(&self) -> bool {
        self.by_route.is_empty() && self.by_rule.is_empty()
    }

    /// Takes a place under every limit that covers the request: the route's, then the
    /// deciding rule's. The permits end the request's in-flight count when dropped.
    pub fn acquire(
        &self,
        route: &str,
        rule: Option<&str>,
        identity: &str,
        now: Instant,
    ) -> Result<Permits, Refused> {
        let mut permits = Permits::default();
        let limiters = [
            self.by_route.get(route),
            rule.and_then(|id| self.by_rule.get(id)),
        ];
        for limiter in limiters.into_iter().flatten() {
            if let Some(permit) = limiter.acquire(identity, route, now)? {
                permits.0.get_or_insert_with(Vec::new).push(permit);
            }
        }
        Ok(permits)
    }
}

/// One limit's counters, per identity (or identity and route).
pub struct Limiter {
    /// `rule NAME` or `route NAME`, for events and logs.
    owner: String,
    limit: Limit,
    counters: Mutex<FastMap<String, Counter>>,
}

struct Counter {
    /// Tokens in the bucket at `refilled`.
    tokens: f64,
    refilled: Instant,
    in_flight: u32,
}

impl Limiter {
    fn new(owner: String, limit: Limit) -> Limiter {
        Limiter {
            owner,
            limit,
            counters: Mutex::new(FastMap::default()),
        }
    }

    fn acquire(
        self: &Arc<Self>,
        identity: &str,
        route: &str,
        now: Instant,
    ) -> Result<Option<Permit>, Refused> {
        let composite;
        let key: &str = match self.limit.per {
            LimitScope::Identity => identity,
            LimitScope::IdentityAndRoute => {
                // A NUL is in neither a SPIFFE ID nor a route name.
                composite = format!("{identity}\0{route}");
                &composite
            }
        };
        // Counters are whole after every change, so a poisoned lock loses nothing.
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !counters.contains_key(key) && counters.len() >= MAX_COUNTERS {
            self.sweep(&mut counters, now);
            if counters.len() >= MAX_COUNTERS {
                return Err(Refused::new(
                    Refusal::RateLimited,
                    format!(
                        "{}: {} identities counted already; none idle to forget",
                        self.owner, MAX_COUNTERS
                    ),
                ));
            }
        }
        let burst = self.limit.rate.map_or(0.0, |r| f64::from(r.burst));
        if !counters.contains_key(key) {
            counters.insert(
                key.to_string(),
                Counter {
                    tokens: burst,
                    refilled: now,
                    in_flight: 0,
                },
            );
        }
        let Some(counter) = counters.get_mut(key) else {
            return Err(Refusal::Internal.into());
        };
        if let Some(max) = self.limit.in_flight {
            if counter.in_flight >= max {
                return Err(Refused::new(
                    Refusal::ConcurrencyLimited,
                    format!(
                        "{}: {max} requests in flight already ({})",
                        self.owner, self.limit
                    ),
                ));
            }
        }
        if let Some(rate) = self.limit.rate {
            let elapsed = now
                .saturating_duration_since(counter.refilled)
                .as_secs_f64();
            counter.tokens = (counter.tokens + elapsed * rate.per_second).min(burst);
            counter.refilled = now;
            if counter.tokens < 1.0 {
                let mut refused = Refused::new(
                    Refusal::RateLimited,
                    format!("{}: over {}", self.owner, self.limit),
                );
                refused.retry_after_s = Some(rate.wait_for_one(counter.tokens).ceil() as u64);
                return Err(refused);
            }
            counter.tokens -= 1.0;
        }
        if self.limit.in_flight.is_none() {
            return Ok(None);
        }
        counter.in_flight += 1;
        Ok(Some(Permit {
            limiter: self.clone(),
            key: key.to_string(),
        }))
    }

    /// Forgets counters that hold nothing: no request in flight, the bucket full again.
    fn sweep(&self, counters: &mut FastMap<String, Counter>, now: Instant) {
        let rate = self.limit.rate;
        counters.retain(|_, c| {
            let full = rate.is_none_or(|r| {
                let elapsed = now.saturating_duration_since(c.refilled).as_secs_f64();
                c.tokens + elapsed * r.per_second >= f64::from(r.burst)
            });
            c.in_flight > 0 || !full
        });
    }

    fn release(&self, key: &str) {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(counter) = counters.get_mut(key) {
            counter.in_flight = counter.in_flight.saturating_sub(1);
        }
    }
}

/// A request's place under an in-flight limit, given back when it ends.
pub struct Permit {
    limiter: Arc<Limiter>,
    key: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(&self.key);
    }
}

/// The permits of one request; nothing allocated when no in-flight limit covers it.
#[derive(Default)]
pub struct Permits(Option<Vec<Permit>>);

#[cfg(test)]
mod tests;
