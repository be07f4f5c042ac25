//! zonegate-loadtest: a load generator for zonegate and the proxies it is compared with.
//!
//! It presents X.509-SVIDs (and optional bearer tokens) in a weighted identity mix, sends a
//! weighted request mix over HTTP/1.1 keep-alive, multiplexed HTTP/2 or a new connection per
//! request, in a closed loop or at a fixed rate (open loop, latency from the intended send
//! time), and reports throughput, HDR latency percentiles, statuses and errors by kind. It only
//! ever targets loopback addresses.
#![forbid(unsafe_code)]

pub mod cli;
pub mod conn;
pub mod engine;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod spec;
pub mod stats;
pub mod target;
pub mod tls;
pub mod weighted;
