//! The verified-token cache: a token's signature is verified once, then its verified claims
//! are served from here until it expires.
//!
//! Bounded in entries and in bytes (each entry counted at the size of its token, which bounds
//! the claims it keeps): when full, expired entries are swept (at most once a second); if it
//! is still full, new tokens are verified but not stored, so a flood of distinct tokens costs
//! verification time, never unbounded memory. The cache belongs to one verifier, which belongs
//! to one snapshot: new keys or issuers start with an empty cache, so a token can never be
//! served on the word of a key that has since been removed.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::VerifiedToken;

/// SHA-256 of the whole compact token.
pub type CacheKey = [u8; 32];

pub fn key(token: &str) -> CacheKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    // A SHA-256 digest is always 32 bytes.
    key.copy_from_slice(digest.as_ref());
    key
}

/// Bytes of tokens the cache holds at most.
const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug)]
pub struct TokenCache {
    entries: DashMap<CacheKey, (Arc<VerifiedToken>, usize)>,
    len: AtomicUsize,
    bytes: AtomicUsize,
    capacity: usize,
    last_sweep: AtomicI64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: DashMap::new(),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            capacity,
            last_sweep: AtomicI64::new(i64::MIN),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn lookup(&self, key: &CacheKey) -> Option<Arc<VerifiedToken>> {
        let hit = self.entries.get(key).map(|t| t.value().0.clone());
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Stores a verified token of `size` bytes, unless the cache is full.
    pub fn store(&self, key: CacheKey, token: Arc<VerifiedToken>, size: usize, now: i64) {
        let full = || {
            self.len.load(Ordering::Relaxed) >= self.capacity
                || self.bytes.load(Ordering::Relaxed) + size > MAX_BYTES
        };
        if full() {
            self.sweep(now);
            if full() {
                return;
            }
        }
        // A token two requests verified at once is inserted twice: counted once.
        if self.entries.insert(key, (token, size)).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(size, Ordering::Relaxed);
        }
    }

    /// Drops expired tokens; runs at most once a second whoever asks.
    fn sweep(&self, now: i64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now <= last
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.entries.retain(|_, (token, size)| {
            let keep = token.check_time(now).is_ok();
            if !keep {
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(*size, Ordering::Relaxed);
            }
            keep
        });
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
