//! The data plane: TLS listeners (tokio-rustls with the SPIFFE verifier), the hyper service of
//! each client connection, and the upstream pools. It gathers facts, asks
//! [`crate::admission`], and writes the answer; it decides nothing itself.

pub mod answer;
pub mod body;
pub mod head_clock;
pub mod headers;
pub mod listener;
pub mod names;
pub mod record;
pub mod service;
pub mod upstream;

use std::sync::Arc;

use crate::admin::metrics::Metrics;
use crate::events::EventSink;
use crate::reload::SnapshotStore;

/// What every connection of every worker shares.
pub struct Shared {
    pub store: Arc<SnapshotStore>,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub handshake_events: Arc<listener::EventBudget>,
}
