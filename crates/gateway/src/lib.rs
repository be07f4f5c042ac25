//! The zonegate data plane and its server: TLS listeners and the hyper service
//! ([`plane`]), the snapshot and its reload ([`reload`]), the event sink ([`events`]), the
//! admin listener and metrics ([`admin`]), and the server lifecycle ([`server`]). Every decision
//! is the core's ([`zonegate_core::admission`]); this crate gathers facts and moves bytes.
#![deny(unsafe_code)]

pub mod admin;
pub mod alloc;
pub mod events;
mod fd;
mod outbound;
pub mod plane;
pub mod reload;
pub mod server;
pub mod traces;

// The core's modules, under the names this crate has always used for them.
use zonegate_core::{admission, config, identity, ids, policy, proxy_protocol};
