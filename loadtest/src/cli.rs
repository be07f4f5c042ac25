//! The command line as typed (clap). [`crate::plan::Plan::from_args`] validates it into what
//! the engine runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::spec::parse_duration;

/// Load generator for zonegate: mTLS with X.509-SVIDs, optional bearer tokens, weighted
/// identity and request mixes, closed or open loop, HDR latency. Targets loopback only.
#[derive(Debug, Parser)]
#[command(name = "zonegate-loadtest", version, after_help = EXAMPLES)]
pub struct Args {
    /// https://HOST:PORT (TLS, mTLS with --identity) or http://HOST:PORT. HOST must resolve to
    /// loopback addresses only (127.0.0.0/8, ::1).
    pub url: String,

    /// PEM roots the server certificate must chain to (required for https).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// A client identity: its X.509-SVID chain and key, its share of connections, its own
    /// bearer token. Repeat for a weighted mix.
    #[arg(
        long = "identity",
        value_name = "CERT,KEY[,weight=N][,bearer=FILE][,name=NAME]"
    )]
    pub identities: Vec<String>,

    /// A token sent as `Authorization: Bearer` by identities without their own `bearer=`.
    #[arg(long, value_name = "FILE")]
    pub bearer_file: Option<PathBuf>,

    /// A request and its share of the requests. Repeat for a mix. Default: 'GET /'.
    #[arg(long = "request", value_name = "'METHOD PATH [weight=N]'")]
    pub requests: Vec<String>,

    /// Identities and requests from a TOML file (added before those on the command line).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// An extra request header. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "'Name: value'")]
    pub headers: Vec<String>,

    /// Concurrent connections (per-request-connection mode: concurrent requests).
    #[arg(short = 'c', long, default_value_t = 16)]
    pub connections: usize,

    /// HTTP/2 (ALPN h2), multiplexing --streams requests per connection.
    #[arg(long)]
    pub h2: bool,

    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, default_value_t = 1, requires = "h2")]
    pub streams: usize,

    /// A new connection, with a full TLS handshake, for every request.
    #[arg(long)]
    pub new_conn: bool,

    /// Hold idle connections: open --connections connections (one request each), keep them
    /// idle for --duration, then send one more request on each and count those still served.
    #[arg(long, conflicts_with_all = ["new_conn", "rate", "max_requests", "streams"])]
    pub hold: bool,

    /// Allow TLS session resumption (each identity keeps a session cache). Off by default, so
    /// --new-conn measures full handshakes.
    #[arg(long)]
    pub resume: bool,

    /// Open loop: send at this fixed rate (requests per second) and measure latency from each
    /// request's intended send time. Without it: closed loop, as fast as responses come.
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,

    /// Measured duration (e.g. 10s, 500ms, 2m). Default 10s when --requests is not given.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Measured requests, after which the run stops.
    #[arg(short = 'n', long = "requests", value_name = "N")]
    pub max_requests: Option<u64>,

    /// Load sent before measuring starts, not recorded.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// Per-request timeout (connect + handshake + response).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// Runtime worker threads (pin the process with taskset to choose the cores).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// TLS server name (SNI and certificate check). Default: the URL's host.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

const EXAMPLES: &str = "\
Examples:
  # 30 s keep-alive, 16 connections, checkout and cart 3:1, 10 % denied refunds
  zonegate-loadtest https://localhost:8443 --ca ca.crt \\
    --identity checkout.crt,checkout.key,weight=3 --identity cart.crt,cart.key,weight=1 \\
    --request 'GET /payments/charge weight=9' --request 'POST /payments/refund weight=1' -d 30s

  # latency at a fixed 1,000 req/s over 16 connections, after 2 s of warm-up
  zonegate-loadtest https://localhost:8443 --ca ca.crt --identity checkout.crt,checkout.key \\
    --request 'GET /payments/charge' --rate 1000 -c 16 --warmup 2s -d 10s --json

  # full mTLS handshakes per second (add --resume for resumed ones)
  zonegate-loadtest https://localhost:8443 --ca ca.crt --identity checkout.crt,checkout.key \\
    --new-conn -c 16 -d 10s

  # hold 10,000 idle mTLS connections for 30 s (measure the server's memory meanwhile)
  zonegate-loadtest https://localhost:8443 --ca ca.crt --identity checkout.crt,checkout.key \\
    --request 'GET /payments/charge' --hold -c 10000 -d 30s

Exit status: 0 when the run completed and got at least one response, 1 when it got none,
64 when the command line or a file it names is wrong (nothing was sent).";
