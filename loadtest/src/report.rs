//! The result of a run: one serialisable [`Report`] (printed with `--json`) and its human
//! table. Latencies are in microseconds; throughput counts responses of any status per second
//! of the measured window.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::{Outcome, Totals};

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Some(Percentiles {
            count: h.len(),
            mean: (h.mean() / 100.0).round() / 10.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// TLS handshakes made while measuring, as the client saw them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
}

/// Outcomes of one (identity, request) pair of the mix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixRow {
    pub identity: String,
    pub request: String,
    pub count: u64,
    pub status: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

/// How the run was set up, echoed in the report so a result file explains itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunShape {
    pub target: String,
    /// `h1` (keep-alive), `h2` (multiplexed) or `new-conn` (a connection per request).
    pub mode: String,
    pub http2: bool,
    pub resume: bool,
    /// Requests per second of an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
    pub connections: usize,
    pub streams: usize,
    pub threads: usize,
    pub warmup_s: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub shape: RunShape,
    /// Length of the measured window: from the end of the warm-up to the last response.
    pub elapsed_s: f64,
    /// Measured requests: responses plus errors.
    pub requests: u64,
    pub responses: u64,
    pub errors: u64,
    /// Responses (any status) per second.
    pub rps: f64,
    /// 2xx responses per second.
    pub rps_2xx: f64,
    /// From the intended send time in an open loop, from the send otherwise.
    pub latency_us: Option<Percentiles>,
    /// From the actual send (open loop only): the server's share of `latency_us`.
    pub service_us: Option<Percentiles>,
    /// Opening a connection (TCP + TLS + HTTP/2 preface), for connections opened while
    /// measuring.
    pub connect_us: Option<Percentiles>,
    pub status: BTreeMap<String, u64>,
    pub error_kinds: BTreeMap<String, u64>,
    pub connections_opened: u64,
    pub tls_handshakes: Handshakes,
    /// `--hold`: connections still served after being held idle.
    pub held: Option<u64>,
    pub mix: Vec<MixRow>,
}

impl Report {
    /// Builds the report; `identities` and `requests` name the indexes in `totals.mix`.
    pub fn new(
        shape: RunShape,
        totals: &Totals,
        elapsed_s: f64,
        identities: &[String],
        requests: &[String],
    ) -> Report {
        let mut status = BTreeMap::new();
        let mut error_kinds = BTreeMap::new();
        let (mut responses, mut errors, mut ok) = (0, 0, 0);
        for (outcome, n) in totals.outcomes() {
            match outcome {
                Outcome::Status(code) => {
                    responses += n;
                    if (200..300).contains(&code) {
                        ok += n;
                    }
                    status.insert(code.to_string(), n);
                }
                Outcome::Error(kind) => {
                    errors += n;
                    error_kinds.insert(kind.as_str().to_string(), n);
                }
            }
        }
        let mut rows: BTreeMap<(usize, usize), MixRow> = BTreeMap::new();
        for ((identity, request, outcome), n) in &totals.mix {
            let row = rows.entry((*identity, *request)).or_insert_with(|| MixRow {
                identity: identities.get(*identity).cloned().unwrap_or_default(),
                request: requests.get(*request).cloned().unwrap_or_default(),
                count: 0,
                status: BTreeMap::new(),
                errors: BTreeMap::new(),
            });
            row.count += n;
            match outcome {
                Outcome::Status(code) => *row.status.entry(code.to_string()).or_default() += n,
                Outcome::Error(kind) => {
                    *row.errors.entry(kind.as_str().to_string()).or_default() += n
                }
            }
        }
        let per_second = |n: u64| {
            if elapsed_s > 0.0 {
                (n as f64 / elapsed_s * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let open_loop = shape.rate.is_some();
        Report {
            shape,
            elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
            requests: responses + errors,
            responses,
            errors,
            rps: per_second(responses),
            rps_2xx: per_second(ok),
            latency_us: Percentiles::of(&totals.latency),
            service_us: if open_loop {
                Percentiles::of(&totals.service)
            } else {
                None
            },
            connect_us: Percentiles::of(&totals.connect),
            status,
            error_kinds,
            connections_opened: totals.connections,
            tls_handshakes: Handshakes {
                full: totals.tls_full,
                resumed: totals.tls_resumed,
            },
            held: None,
            mix: rows.into_values().collect(),
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = &self.shape;
        let mut out = String::new();
        let mode = match s.mode.as_str() {
            "h1" => "HTTP/1.1 keep-alive".to_string(),
            "hold" => "idle connections held".to_string(),
            "h2" => format!("HTTP/2, {} streams per connection", s.streams),
            _ => format!(
                "new {} connection per request{}",
                if s.http2 { "HTTP/2" } else { "HTTP/1.1" },
                if s.resume { ", TLS resumption on" } else { "" }
            ),
        };
        let drive = match s.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "target      {}  ({mode}; {} connections; {drive}; {} thread{})",
            s.target,
            s.connections,
            s.threads,
            if s.threads == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "requests    {} in {:.2} s: {:.1} req/s ({:.1} 2xx/s), {} errors",
            self.requests, self.elapsed_s, self.rps, self.rps_2xx, self.errors
        );
        let latency_label = if s.rate.is_some() {
            "latency     (from the intended send time)"
        } else {
            "latency"
        };
        for (label, p) in [
            (latency_label, &self.latency_us),
            ("service     (from the actual send)", &self.service_us),
            ("connect     (TCP + TLS)", &self.connect_us),
        ] {
            if let Some(p) = p {
                let _ = writeln!(
                    out,
                    "{label}\n            p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}  (n={})",
                    us(p.p50),
                    us(p.p90),
                    us(p.p99),
                    us(p.p999),
                    us(p.max),
                    us(p.mean),
                    p.count
                );
            }
        }
        let _ = writeln!(out, "status      {}", counts(&self.status));
        let _ = writeln!(out, "errors      {}", counts(&self.error_kinds));
        let _ = writeln!(
            out,
            "connections {} opened while measuring (TLS: {} full, {} resumed)",
            self.connections_opened, self.tls_handshakes.full, self.tls_handshakes.resumed
        );
        if let Some(held) = self.held {
            let _ = writeln!(
                out,
                "held        {held} of {} connections still served after the idle period",
                s.connections
            );
        }
        if self.mix.len() > 1 || self.mix.iter().any(|r| !r.identity.is_empty()) {
            let width = self
                .mix
                .iter()
                .map(|r| r.identity.len())
                .max()
                .unwrap_or(0)
                .max(8);
            let rwidth = self
                .mix
                .iter()
                .map(|r| r.request.len())
                .max()
                .unwrap_or(0)
                .max(7);
            let _ = writeln!(out, "mix");
            let _ = writeln!(
                out,
                "  {:width$}  {:rwidth$}  {:>9}  outcomes",
                "identity", "request", "count"
            );
            for r in &self.mix {
                let mut outcomes = counts(&r.status);
                if !r.errors.is_empty() {
                    outcomes = format!("{outcomes}, errors {}", counts(&r.errors));
                }
                let _ = writeln!(
                    out,
                    "  {:width$}  {:rwidth$}  {:>9}  {outcomes}",
                    r.identity, r.request, r.count
                );
            }
        }
        out
    }
}

/// `812.3 us` below a millisecond, `1.25 ms` above.
fn us(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.1} us")
    } else {
        format!("{:.2} ms", v / 1000.0)
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
