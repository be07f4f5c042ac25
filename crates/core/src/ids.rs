//! Request and event ids: unique per process run, cheap to make on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: OnceLock<u64> = OnceLock::new();

/// A 32-hex-digit id: a random per-process prefix and a counter. Unique across restarts and
/// gateways with overwhelming probability, and needs no system call per id.
pub fn next_id() -> String {
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

#[cfg(test)]
mod tests;
