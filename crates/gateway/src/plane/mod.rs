//! The data plane: TLS listeners (tokio-rustls with the SPIFFE verifier), the hyper service of
//! each client connection, and the upstream pools. It gathers facts, asks
//! [`crate::admission`], and writes the answer; it decides nothing itself.

pub mod answer;
pub mod body;
pub mod gate;
pub mod head_clock;
pub mod headers;
pub mod limits;
pub mod listener;
pub mod names;
pub mod record;
pub mod service;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::admin::metrics::Metrics;
use crate::events::EventSink;
use crate::reload::{KeyFetchers, SnapshotStore};

/// What every connection of every worker shares.
pub struct Shared {
    pub store: Arc<SnapshotStore>,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub handshake_events: Arc<listener::EventBudget>,
    /// OpenTelemetry traces, when `[tracing]` is set.
    pub traces: Option<Arc<crate::traces::Traces>>,
    /// Token issuers' key fetchers, asked to fetch again when a token names an unknown `kid`.
    pub issuer_keys: Arc<KeyFetchers>,
}

/// How long until the Unix second `at` begins (zero once it has).
pub fn until_unix(at: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(at.max(0) as u64).saturating_sub(now)
}
