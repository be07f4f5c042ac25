//! The decision cache: bounded, and owned by one compiled policy.
//!
//! Entries are never invalidated: a policy change builds a new `Policy` with an empty cache.
//! When full, new decisions are computed but not stored, so hostile traffic with endless
//! distinct paths costs evaluation time, never unbounded memory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::{Decision, RequestFacts};

/// Longest key stored: beyond it (huge claim values) decisions are computed, not cached, so
/// the cache's memory stays bounded by entries x this.
const MAX_KEY_BYTES: usize = 2048;

#[derive(Debug)]
pub struct DecisionCache {
    /// Keys hold request paths: the hasher is keyed at random, so they cannot be chosen to
    /// collide.
    entries: DashMap<Box<str>, Decision, ahash::RandomState>,
    len: AtomicUsize,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl DecisionCache {
    pub fn new(capacity: usize) -> Self {
        DecisionCache {
            entries: DashMap::with_hasher(ahash::RandomState::new()),
            len: AtomicUsize::new(0),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cache key: every fact a decision can depend on, or `None` when they are too large
    /// to be worth keeping. Parts are NUL-separated; NUL cannot occur in a SPIFFE ID, zone,
    /// route, method or normalised path, and claim values are JSON-encoded (NUL escaped), so
    /// the joined key is unambiguous.
    pub fn key(facts: &RequestFacts<'_>, claim_names: &[String]) -> Option<Box<str>> {
        let id = facts.spiffe_id.map_or("", |id| id.as_str());
        let mut key = String::with_capacity(
            id.len()
                + facts.source_zone.len()
                + facts.route.len()
                + facts.method.len()
                + facts.path.len()
                + 8,
        );
        let presented = match (facts.presented.svid, facts.presented.token) {
            (false, false) => "-",
            (true, false) => "s",
            (false, true) => "t",
            (true, true) => "st",
        };
        for (i, part) in [
            id,
            facts.source_zone,
            facts.route,
            facts.method,
            facts.path,
            presented,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                key.push('\0');
            }
            key.push_str(part);
        }
        if let Some(token) = &facts.token {
            key.push('\0');
            key.push_str(token.issuer);
            key.push('\0');
            key.push_str(&serde_json::to_string(token.subject).ok()?);
            for name in claim_names {
                key.push('\0');
                if let Some(value) = token.claims.get(name) {
                    key.push_str(&serde_json::to_string(value).ok()?);
                }
                if key.len() > MAX_KEY_BYTES {
                    return None;
                }
            }
        }
        (key.len() <= MAX_KEY_BYTES).then(|| key.into_boxed_str())
    }

    pub fn lookup(&self, key: &str) -> Option<Decision> {
        let hit = self.entries.get(key).map(|d| d.value().clone());
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub fn store(&self, key: Box<str>, decision: Decision) {
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            return;
        }
        if self.entries.insert(key, decision).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}
