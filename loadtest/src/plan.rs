//! The validated run: command line and scenario file in, a [`Plan`] out, with every problem
//! reported at once. Files (certificates, keys, tokens) are read here, before any traffic, and
//! the target is resolved and checked to be loopback here too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::Method;
use rustls::pki_types::ServerName;

use crate::cli::Args;
use crate::conn::Connector;
use crate::scenario::{self, Scenario};
use crate::spec::{self, IdentitySpec, RequestSpec};
use crate::target::Target;
use crate::tls;
use crate::weighted::WeightedCycle;

/// No run measures for longer than this, whatever was asked.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Nor sends more measured requests than this.
pub const MAX_REQUESTS: u64 = 100_000_000;
pub const MAX_CONNECTIONS: usize = 20_000;
pub const MAX_STREAMS: usize = 1_000;
pub const MAX_RATE: f64 = 1_000_000.0;
pub const MAX_THREADS: usize = 64;
/// Measured duration when neither --duration nor --requests is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One HTTP/1.1 keep-alive connection per lane.
    KeepAlive,
    /// HTTP/2 connections, each carrying `streams` concurrent requests.
    Multiplexed { streams: usize },
    /// A new connection (and TLS handshake) per request.
    NewConnection,
    /// Open connections, keep them idle, check they are still served at the end.
    Hold,
}

/// One client identity, ready to connect.
pub struct Identity {
    pub name: String,
    pub connector: Connector,
    /// `Bearer <token>`, marked sensitive.
    pub authorization: Option<HeaderValue>,
}

/// One request of the mix.
#[derive(Debug, Clone)]
pub struct RequestKind {
    pub method: Method,
    pub path: PathAndQuery,
    /// `METHOD PATH`, for the report.
    pub label: String,
}

/// Everything the engine needs, validated.
pub struct Plan {
    pub target: Arc<Target>,
    pub identities: Vec<Identity>,
    /// Picks the identity per connection (per request in new-connection mode).
    pub identity_mix: WeightedCycle,
    pub requests: Vec<RequestKind>,
    pub request_mix: WeightedCycle,
    pub headers: HeaderMap,
    pub mode: Mode,
    pub http2: bool,
    pub resume: bool,
    pub connections: usize,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub max_requests: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub threads: usize,
    pub progress: bool,
}

impl Plan {
    /// Validates `args` (and the scenario file it names), reads every file, resolves the
    /// target. `Err` lists every problem found.
    pub fn from_args(args: &Args) -> Result<Plan, Vec<String>> {
        let mut errors = Vec::new();
        let scenario = match &args.scenario {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => scenario::parse(path, &text).unwrap_or_else(|e| {
                    errors.extend(e);
                    Scenario::default()
                }),
                Err(e) => {
                    errors.push(format!("{}: {e}", path.display()));
                    Scenario::default()
                }
            },
            None => Scenario::default(),
        };

        let mut identity_specs: Vec<IdentitySpec> = scenario.identities.clone();
        for s in &args.identities {
            match spec::parse_identity(s) {
                Ok(id) => identity_specs.push(id),
                Err(e) => errors.push(format!("--identity {e}")),
            }
        }
        let mut request_specs: Vec<RequestSpec> = scenario.requests.clone();
        for s in &args.requests {
            match spec::parse_request(s) {
                Ok(r) => request_specs.push(r),
                Err(e) => errors.push(format!("--request {e}")),
            }
        }
        if request_specs.is_empty() {
            request_specs.push(RequestSpec {
                method: "GET".into(),
                path: "/".into(),
                weight: 1,
            });
        }
        let mut headers = HeaderMap::new();
        for s in &args.headers {
            match spec::parse_header(s) {
                Ok((name, value)) => {
                    headers.append(name, value);
                }
                Err(e) => errors.push(format!("--header {e}")),
            }
        }

        let mode = match (args.hold, args.new_conn, args.h2) {
            (true, ..) => Mode::Hold,
            (false, true, _) => Mode::NewConnection,
            (false, false, true) => Mode::Multiplexed {
                streams: args.streams,
            },
            (false, false, false) => Mode::KeepAlive,
        };
        check_range(
            &mut errors,
            "--connections",
            args.connections,
            MAX_CONNECTIONS,
        );
        check_range(&mut errors, "--streams", args.streams, MAX_STREAMS);
        check_range(&mut errors, "--threads", args.threads, MAX_THREADS);
        if let Some(rate) = args.rate {
            if !(rate > 0.0 && rate <= MAX_RATE) {
                errors.push(format!("--rate {rate}: must be > 0 and <= {MAX_RATE}"));
            }
        }
        if let Some(d) = args.duration {
            if d.is_zero() || d > MAX_DURATION {
                errors.push(format!(
                    "--duration {d:?}: must be > 0 and at most {} s",
                    MAX_DURATION.as_secs()
                ));
            }
        }
        if let Some(n) = args.max_requests {
            if n == 0 || n > MAX_REQUESTS {
                errors.push(format!("--requests {n}: must be 1..={MAX_REQUESTS}"));
            }
        }
        if args.warmup > MAX_DURATION {
            errors.push(format!("--warmup: at most {} s", MAX_DURATION.as_secs()));
        }
        if args.timeout.is_zero() {
            errors.push("--timeout: must be > 0".into());
        }

        // No identity: one anonymous client (no client certificate).
        let anonymous = identity_specs.is_empty();
        if anonymous {
            identity_specs.push(IdentitySpec {
                name: String::new(),
                cert: PathBuf::new(),
                key: PathBuf::new(),
                weight: 1,
                bearer_file: None,
            });
        }
        let identity_mix =
            WeightedCycle::new(&identity_specs.iter().map(|i| i.weight).collect::<Vec<_>>());
        let request_mix =
            WeightedCycle::new(&request_specs.iter().map(|r| r.weight).collect::<Vec<_>>());
        if let Err(e) = &identity_mix {
            errors.push(format!("identity weights: {e}"));
        }
        if let Err(e) = &request_mix {
            errors.push(format!("request weights: {e}"));
        }
        let requests: Vec<RequestKind> = request_specs
            .iter()
            .filter_map(|r| {
                let method = Method::from_bytes(r.method.as_bytes()).ok()?;
                let path = r.path.parse::<PathAndQuery>().ok()?;
                Some(RequestKind {
                    label: format!("{method} {path}"),
                    method,
                    path,
                })
            })
            .collect();

        // The target last among the checks that need no files, first among those that act:
        // nothing is read or sent for a non-loopback target.
        let target = match Target::resolve(&args.url) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        let server_name = target.as_ref().and_then(|t| {
            let name = args.server_name.clone().unwrap_or_else(|| t.host.clone());
            ServerName::try_from(name.clone())
                .map_err(|e| errors.push(format!("--server-name `{name}`: {e}")))
                .ok()
        });

        let ca = args.ca.clone().or(scenario.ca.clone());
        let default_bearer = args.bearer_file.clone().or(scenario.bearer_file.clone());
        let tls_target = target.as_ref().is_some_and(|t| t.tls);
        let roots = match (&ca, tls_target) {
            (Some(path), true) => tls::read_roots(path)
                .map(Arc::new)
                .map_err(|e| errors.push(format!("--ca {e}")))
                .ok(),
            (None, true) => {
                errors.push("an https target needs --ca FILE (the server's CA)".into());
                None
            }
            (_, false) => {
                if !anonymous {
                    errors.push(
                        "--identity needs an https target: client certificates travel in TLS"
                            .into(),
                    );
                }
                None
            }
        };
        let alpn: &[&[u8]] = if args.h2 { &[b"h2"] } else { &[b"http/1.1"] };

        let mut identities = Vec::new();
        for spec in &identity_specs {
            let client = if anonymous || !tls_target {
                None
            } else {
                match (tls::read_certs(&spec.cert), tls::read_key(&spec.key)) {
                    (Ok(chain), Ok(key)) => Some((chain, key)),
                    (a, b) => {
                        errors.extend(a.err().into_iter().chain(b.err()));
                        continue;
                    }
                }
            };
            let config = match &roots {
                Some(roots) => match tls::client_config(roots.clone(), client, alpn, args.resume) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(format!("identity `{}`: {e}", spec.name));
                        continue;
                    }
                },
                None => None,
            };
            let bearer = spec.bearer_file.as_ref().or(default_bearer.as_ref());
            let authorization = match bearer.map(|p| read_bearer(p)) {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    errors.push(e);
                    continue;
                }
                None => None,
            };
            if let (Some(target), Some(name)) = (&target, &server_name) {
                identities.push(Identity {
                    name: spec.name.clone(),
                    connector: Connector::new(
                        target.clone(),
                        config,
                        name.clone(),
                        args.h2,
                        args.timeout,
                    ),
                    authorization,
                });
            }
        }

        match (target, identity_mix, request_mix) {
            (Some(target), Ok(identity_mix), Ok(request_mix)) if errors.is_empty() => Ok(Plan {
                target,
                identities,
                identity_mix,
                requests,
                request_mix,
                headers,
                mode,
                http2: args.h2,
                resume: args.resume,
                connections: args.connections,
                rate: args.rate,
                duration: match (args.duration, args.max_requests) {
                    (None, None) => Some(DEFAULT_DURATION),
                    (d, _) => d,
                },
                max_requests: args.max_requests,
                warmup: args.warmup,
                timeout: args.timeout,
                threads: args.threads,
                progress: !args.quiet,
            }),
            // A missing target or a bad mix has been listed already; never an empty list.
            _ if errors.is_empty() => Err(vec!["invalid plan".into()]),
            _ => Err(errors),
        }
    }

    /// `h1`, `h2` or `new-conn`, as reports name the mode.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::KeepAlive => "h1",
            Mode::Multiplexed { .. } => "h2",
            Mode::NewConnection => "new-conn",
            Mode::Hold => "hold",
        }
    }

    pub fn streams(&self) -> usize {
        match self.mode {
            Mode::Multiplexed { streams } => streams,
            _ => 1,
        }
    }
}

fn check_range(errors: &mut Vec<String>, flag: &str, value: usize, max: usize) {
    if value == 0 || value > max {
        errors.push(format!("{flag} {value}: must be 1..={max}"));
    }
}

/// Reads a token file: its first line, trimmed, as a sensitive `Bearer` header value.
fn read_bearer(path: &Path) -> Result<HeaderValue, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("bearer file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(format!("bearer file {}: empty", path.display()));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| format!("bearer file {}: not a header-safe token", path.display()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn plan(argv: &[&str]) -> Result<Plan, Vec<String>> {
        let mut full = vec!["zonegate-loadtest"];
        full.extend_from_slice(argv);
        Plan::from_args(&Args::parse_from(full))
    }

    #[test]
    fn plain_http_defaults() {
        let p = plan(&["http://127.0.0.1:9"]).unwrap();
        assert_eq!(p.mode, Mode::KeepAlive);
        assert_eq!(p.duration, Some(DEFAULT_DURATION));
        assert_eq!(p.requests.len(), 1);
        assert_eq!(p.requests[0].label, "GET /");
        assert_eq!(p.connections, 16);
        let p = plan(&["http://127.0.0.1:9", "-n", "5", "--h2", "--streams", "8"]).unwrap();
        assert_eq!(p.duration, None);
        assert_eq!(p.mode, Mode::Multiplexed { streams: 8 });
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_sent_to_remote_targets() {
        let errors = plan(&[
            "https://10.9.8.7:8443",
            "--request",
            "GET nopath",
            "--rate",
            "0",
            "-c",
            "0",
            "--duration",
            "20m",
        ])
        .err()
        .unwrap();
        let all = errors.join("\n");
        for want in [
            "not loopback",
            "--request",
            "--rate",
            "--connections",
            "--duration",
        ] {
            assert!(all.contains(want), "missing {want}: {all}");
        }
    }

    #[test]
    fn https_needs_a_ca_and_readable_files() {
        let errors = plan(&["https://127.0.0.1:9"]).err().unwrap();
        assert!(errors.join("\n").contains("--ca"), "{errors:?}");
        let errors = plan(&[
            "https://127.0.0.1:9",
            "--ca",
            "/nonexistent/ca.crt",
            "--identity",
            "/nonexistent/a.crt,/nonexistent/a.key",
            "--bearer-file",
            "/nonexistent/token",
        ])
        .err()
        .unwrap();
        let all = errors.join("\n");
        assert!(all.contains("/nonexistent/ca.crt"), "{all}");
        let errors = plan(&["http://127.0.0.1:9", "--identity", "a.crt,a.key"])
            .err()
            .unwrap();
        assert!(
            errors.join("\n").contains("needs an https target"),
            "{errors:?}"
        );
    }

    #[test]
    fn bearer_tokens_are_read_trimmed_and_sensitive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jwt");
        std::fs::write(&path, "eyJhbGciOi.x.y \n").unwrap();
        let v = read_bearer(&path).unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer eyJhbGciOi.x.y");
        assert!(v.is_sensitive());
        std::fs::write(&path, "\n").unwrap();
        assert!(read_bearer(&path).unwrap_err().contains("empty"));
        std::fs::write(&path, "a\u{7f}b").unwrap();
        assert!(read_bearer(&path).is_err());
    }
}
