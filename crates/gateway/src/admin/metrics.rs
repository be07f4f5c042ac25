//! Prometheus metrics: counters kept by the request path and the reloader, rendered in the
//! text exposition format on `/metrics`.
//!
//! Labels are bounded by configuration (routes, zones, reasons), never by identities or paths,
//! so a hostile client cannot grow the series set.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::plane::names::NameState;

/// Upper bounds (seconds) of the request duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestLabels {
    decision: &'static str,
    reason: &'static str,
    route: Arc<str>,
    source_zone: Arc<str>,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Every counter the gateway exports.
#[derive(Default)]
pub struct Metrics {
    requests: DashMap<RequestLabels, AtomicU64, ahash::RandomState>,
    durations: DashMap<Arc<str>, Histogram, ahash::RandomState>,
    auth_failures: DashMap<&'static str, AtomicU64>,
    reloads: DashMap<&'static str, AtomicU64>,
    underscore_headers: DashMap<&'static str, AtomicU64>,
    handshake_failures: DashMap<&'static str, AtomicU64>,
    connections_closed: DashMap<&'static str, AtomicU64>,
    /// Handshake refusals past the event rate limit: counted, not evented.
    handshake_events_suppressed: AtomicU64,
    /// What a reload changed that applies only at the next restart (listener addresses).
    restart_required: std::sync::Mutex<Vec<String>>,
    /// Spans by what became of them: `recorded` (a request's span ended), `exported` (the
    /// collector took it), `failed` (its batch's export failed); the rest wait in the queue or
    /// were dropped from it.
    trace_spans: DashMap<&'static str, AtomicU64>,
    /// Federation bundle endpoint fetches: `updated`, `unchanged`, `failed`.
    bundle_fetches: DashMap<&'static str, AtomicU64>,
    /// Token issuer key fetches by issuer and result: `updated`, `unchanged`, `failed`.
    jwks_fetches: DashMap<(Arc<str>, &'static str), AtomicU64>,
    /// When each issuer with fetched keys last confirmed them (Unix seconds; 0: never).
    jwks_confirmed: DashMap<Arc<str>, AtomicI64>,
}

fn write_counter_family(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &DashMap<&'static str, AtomicU64>,
) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} counter")?;
    let mut rows: Vec<_> = values
        .iter()
        .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
        .collect();
    rows.sort();
    for (key, n) in rows {
        writeln!(out, "{name}{{{label}=\"{key}\"}} {n}")?;
    }
    Ok(())
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Counts one finished request.
    pub fn record_request(
        &self,
        decision: &'static str,
        reason: &'static str,
        route: Option<&Arc<str>>,
        source_zone: &str,
        elapsed: Duration,
    ) {
        let route: Arc<str> = route.cloned().unwrap_or_else(|| Arc::from("-"));
        let labels = RequestLabels {
            decision,
            reason,
            route: route.clone(),
            source_zone: Arc::from(source_zone),
        };
        self.requests
            .entry(labels)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
        let histogram = self.durations.entry(route).or_default();
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            histogram.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        histogram.count.fetch_add(1, Ordering::Relaxed);
        histogram
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn record_auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .entry(reason)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Header fields whose names have underscores: `dropped` (fields) or `rejected` (requests).
    /// Counts `n` spans that came to `what` (`recorded`, `exported`, `failed`).
    pub fn record_trace_spans(&self, what: &'static str, n: u64) {
        self.trace_spans
            .entry(what)
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one bundle endpoint fetch by its `result`.
    pub fn record_bundle_fetch(&self, result: &'static str) {
        self.bundle_fetches
            .entry(result)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one fetch of `issuer`'s keys by its `result`.
    pub fn record_jwks_fetch(&self, issuer: &str, result: &'static str) {
        self.jwks_fetches
            .entry((Arc::from(issuer), result))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records that `issuer`'s keys in force were confirmed (fetched, or written) at `unix`.
    pub fn set_jwks_confirmed(&self, issuer: &str, unix: i64) {
        self.jwks_confirmed
            .entry(Arc::from(issuer))
            .or_default()
            .store(unix, Ordering::Relaxed);
    }

    /// Seconds since `issuer`'s keys were last confirmed.
    pub fn jwks_keys_age_s(&self, issuer: &str) -> i64 {
        let confirmed = self
            .jwks_confirmed
            .get(issuer)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        now.saturating_sub(confirmed)
    }

    /// Drops the series of an issuer whose keys are no longer fetched.
    pub fn forget_jwks_issuer(&self, issuer: &str) {
        self.jwks_confirmed.remove(issuer);
        self.jwks_fetches.retain(|(name, _), _| &**name != issuer);
    }

    pub fn record_underscore_headers(&self, action: &'static str, n: u64) {
        self.underscore_headers
            .entry(action)
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    /// A refused TLS handshake, by reason category.
    pub fn record_handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .entry(reason)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection the gateway closed for how it behaved, by reason.
    pub fn record_connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .entry(reason)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records what the config in force changed that applies only at the next restart.
    pub fn set_restart_required(&self, changes: Vec<String>) {
        *self
            .restart_required
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = changes;
    }

    /// What waits for a restart; empty when everything in force is applied.
    pub fn restart_required(&self) -> Vec<String> {
        self.restart_required
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn record_handshake_event_suppressed(&self) {
        self.handshake_events_suppressed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// `result`: `ok`, `failed` or `unchanged`.
    pub fn record_reload(&self, result: &'static str) {
        self.reloads
            .entry(result)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloads(&self, result: &'static str) -> u64 {
        self.reloads
            .get(result)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Renders the counters kept here plus the `gauges` read from the current state.
    pub fn render(&self, destination_zone: &str, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.write(&mut out, destination_zone, gauges);
        out
    }

    fn write(&self, out: &mut String, zone: &str, g: &Gauges) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP zonegate_requests_total Requests by decision, reason, route and source zone."
        )?;
        writeln!(out, "# TYPE zonegate_requests_total counter")?;
        let mut rows: Vec<_> = self
            .requests
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        rows.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        for (l, n) in rows {
            writeln!(
                out,
                "zonegate_requests_total{{decision=\"{}\",reason=\"{}\",route=\"{}\",source_zone=\"{}\",destination_zone=\"{}\"}} {n}",
                l.decision, l.reason, l.route, l.source_zone, zone
            )?;
        }
        writeln!(
            out,
            "# HELP zonegate_request_duration_seconds Time from request header to end of response."
        )?;
        writeln!(out, "# TYPE zonegate_request_duration_seconds histogram")?;
        for entry in self.durations.iter() {
            let (route, h) = (entry.key(), entry.value());
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                writeln!(out, "zonegate_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}")?;
            }
            let count = h.count.load(Ordering::Relaxed);
            writeln!(
                out,
                "zonegate_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            )?;
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            writeln!(
                out,
                "zonegate_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            )?;
            writeln!(
                out,
                "zonegate_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            )?;
        }
        writeln!(
            out,
            "# HELP zonegate_authentication_failures_total Refused credentials by reason."
        )?;
        writeln!(out, "# TYPE zonegate_authentication_failures_total counter")?;
        for e in self.auth_failures.iter() {
            writeln!(
                out,
                "zonegate_authentication_failures_total{{reason=\"{}\"}} {}",
                e.key(),
                e.value().load(Ordering::Relaxed)
            )?;
        }
        write_counter_family(
            out,
            "zonegate_bundle_endpoint_fetches_total",
            "Federation bundle endpoint fetches: updated (a new bundle written to the domain's bundle file), unchanged, failed (the last good bundle stays).",
            "result",
            &self.bundle_fetches,
        )?;
        writeln!(out, "# HELP zonegate_jwks_fetches_total Token issuer key fetches (JWK Set, through discovery if configured): updated (new keys written to the issuer's keys file), unchanged, failed (the last good keys stay).")?;
        writeln!(out, "# TYPE zonegate_jwks_fetches_total counter")?;
        let mut rows: Vec<_> = self
            .jwks_fetches
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        rows.sort();
        for ((issuer, result), n) in rows {
            writeln!(
                out,
                "zonegate_jwks_fetches_total{{issuer=\"{issuer}\",result=\"{result}\"}} {n}"
            )?;
        }
        writeln!(out, "# HELP zonegate_jwks_keys_age_seconds Seconds since a token issuer last confirmed the keys in force (its last successful fetch, else when its keys file was written).")?;
        writeln!(out, "# TYPE zonegate_jwks_keys_age_seconds gauge")?;
        let mut issuers: Vec<Arc<str>> = self
            .jwks_confirmed
            .iter()
            .map(|e| e.key().clone())
            .collect();
        issuers.sort();
        for issuer in issuers {
            writeln!(
                out,
                "zonegate_jwks_keys_age_seconds{{issuer=\"{issuer}\"}} {}",
                self.jwks_keys_age_s(&issuer)
            )?;
        }
        write_counter_family(
            out,
            "zonegate_trace_spans_total",
            "OpenTelemetry spans by outcome: recorded (a request's span ended), exported (the collector took it), failed (its export failed); recorded minus the others is queued or dropped from the queue.",
            "outcome",
            &self.trace_spans,
        )?;
        write_counter_family(
            out,
            "zonegate_underscore_headers_total",
            "Request header fields with underscores in their names, by action (dropped fields, rejected requests).",
            "action",
            &self.underscore_headers,
        )?;
        write_counter_family(
            out,
            "zonegate_connections_closed_total",
            "Client connections closed by the gateway for how they behaved (request_head_timeout: an HTTP/1.1 request head not complete in time; headers_too_large, bad_request: a head the HTTP/1.1 parser refused).",
            "reason",
            &self.connections_closed,
        )?;
        write_counter_family(
            out,
            "zonegate_handshake_failures_total",
            "Refused TLS handshakes by reason.",
            "reason",
            &self.handshake_failures,
        )?;
        writeln!(
            out,
            "# HELP zonegate_handshake_events_suppressed_total Handshake refusals over the event rate limit (counted, not evented)."
        )?;
        writeln!(
            out,
            "# TYPE zonegate_handshake_events_suppressed_total counter"
        )?;
        writeln!(
            out,
            "zonegate_handshake_events_suppressed_total {}",
            self.handshake_events_suppressed.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP zonegate_restart_required 1 when the config in force changed settings that apply only at the next restart (listener addresses, the events sink, tracing)."
        )?;
        writeln!(out, "# TYPE zonegate_restart_required gauge")?;
        writeln!(
            out,
            "zonegate_restart_required {}",
            u8::from(!self.restart_required().is_empty())
        )?;
        writeln!(
            out,
            "# HELP zonegate_config_reloads_total Configuration reloads by result."
        )?;
        writeln!(out, "# TYPE zonegate_config_reloads_total counter")?;
        for result in ["ok", "failed", "unchanged"] {
            writeln!(
                out,
                "zonegate_config_reloads_total{{result=\"{result}\"}} {}",
                self.reloads(result)
            )?;
        }
        let gauges = [
            (
                "zonegate_config_generation",
                "gauge",
                "Generation of the snapshot in force.",
                g.generation as f64,
            ),
            (
                "zonegate_decision_cache_hits_total",
                "counter",
                "Decision cache hits of the policy in force (resets on reload).",
                g.cache_hits as f64,
            ),
            (
                "zonegate_decision_cache_misses_total",
                "counter",
                "Decision cache misses of the policy in force (resets on reload).",
                g.cache_misses as f64,
            ),
            (
                "zonegate_decision_cache_entries",
                "gauge",
                "Decisions cached by the policy in force.",
                g.cache_entries as f64,
            ),
            (
                "zonegate_token_cache_hits_total",
                "counter",
                "Verified-token cache hits (resets when issuers or keys change).",
                g.token_cache_hits as f64,
            ),
            (
                "zonegate_token_cache_misses_total",
                "counter",
                "Verified-token cache misses: full signature verifications.",
                g.token_cache_misses as f64,
            ),
            (
                "zonegate_token_cache_entries",
                "gauge",
                "Verified tokens cached.",
                g.token_cache_entries as f64,
            ),
            (
                "zonegate_events_written_total",
                "counter",
                "Identity events written.",
                g.events_written as f64,
            ),
            (
                "zonegate_events_dropped_total",
                "counter",
                "Identity events dropped: the sink queue was full, or the write failed (the log and the events_dropped record say which).",
                g.events_dropped as f64,
            ),
            (
                "zonegate_server_certificate_expiry_timestamp_seconds",
                "gauge",
                "notAfter of the gateway's own certificate (Unix time).",
                g.server_cert_not_after as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} {kind}")?;
            writeln!(out, "{name} {value}")?;
        }
        let families: [NameFamily; 3] = [
            (
                "zonegate_upstream_dns_addresses",
                "gauge",
                "Addresses an upstream host name stands for (the last good resolution).",
                |n| n.addresses as u64,
            ),
            (
                "zonegate_upstream_dns_failures_total",
                "counter",
                "Failed resolutions of an upstream host name.",
                |n| n.failures,
            ),
            (
                "zonegate_upstream_dns_failing",
                "gauge",
                "1 while the latest resolution of an upstream host name failed.",
                |n| u64::from(n.last_error.is_some()),
            ),
        ];
        for (name, kind, help, value) in families {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} {kind}")?;
            for state in &g.dns {
                writeln!(out, "{name}{{name=\"{}\"}} {}", state.name, value(state))?;
            }
        }
        Ok(())
    }
}

/// A metric family with one series per upstream host name: name, type, help, value.
type NameFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&NameState) -> u64,
);

/// Values read from the current snapshot and sink when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct Gauges {
    pub generation: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_entries: usize,
    pub token_cache_hits: u64,
    pub token_cache_misses: u64,
    pub token_cache_entries: usize,
    pub events_written: u64,
    pub events_dropped: u64,
    pub server_cert_not_after: i64,
    /// Upstream host names and what they resolved to.
    pub dns: Vec<NameState>,
}
