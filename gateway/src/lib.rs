//! zonegate: the per-zone, identity-aware east-west gateway.
//!
//! A workload connects with mTLS and presents a SPIFFE X.509-SVID; the SVID becomes an
//! [`identity::Identity`]; a per-request [`policy::Policy`] decides; the request is proxied or
//! refused; and the attempt is recorded as an [`events::IdentityEvent`]. Everything a request
//! needs lives in one immutable [`reload::Snapshot`].
#![deny(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devpki;
pub mod devtoken;
pub mod echo;
pub mod events;
mod fd;
pub mod identity;
pub mod ids;
pub mod intel;
pub mod plane;
pub mod policy;
pub mod reload;
pub mod server;
