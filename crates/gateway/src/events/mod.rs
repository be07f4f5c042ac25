//! Identity events: the schema is the core's ([`zonegate_core::events`]); this crate owns the
//! bounded, non-blocking sink that writes them as JSON lines.

mod sink;
mod syslog;

pub use sink::{EventSink, SinkStats};
pub use zonegate_core::events::*;
