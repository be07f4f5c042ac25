//! The pure core of zonegate: the config model and its loading, identity (SPIFFE IDs,
//! X.509-SVIDs, tokens, trust bundles, revocation, the zone map), policy, routing, admission and
//! the identity event schema. It knows nothing of sockets, runtimes or HTTP servers: the data
//! plane (`zonegate-gateway`) and the offline policy tools (`zonegate-policy-tools`) both
//! decide through [`admission::admit`].
#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
pub mod events;
pub mod identity;
pub mod ids;
pub mod policy;
pub mod proxy_protocol;
