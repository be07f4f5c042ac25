//! zonegate: the per-zone, identity-aware east-west gateway.
//!
//! A workload connects with mTLS and presents a SPIFFE X.509-SVID; the SVID becomes an
//! [`identity::Identity`]; a per-request [`policy::Policy`] decides; the request is proxied or
//! refused; and the attempt is recorded as an [`events::IdentityEvent`]. Everything a request
//! needs lives in one immutable [`reload::Snapshot`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devpki;
pub mod devtoken;
pub mod echo;
pub mod events;
pub mod identity;
pub mod intel;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod server;
