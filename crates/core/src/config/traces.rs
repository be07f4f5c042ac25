//! `[tracing]`: OpenTelemetry traces of the requests, exported with OTLP over HTTP.
//!
//! Absent, nothing is traced and the request path does no tracing work. Present, a share of
//! new traces (and every request whose caller's `traceparent` says it is sampled) gets a
//! server span, exported in batches by a thread of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigErrors;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracing {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub sample: Option<f64>,
    #[serde(default)]
    pub follow_parent: Option<bool>,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub batch_delay_ms: Option<u64>,
    #[serde(default)]
    pub max_queue: Option<usize>,
    #[serde(default)]
    pub export_timeout_ms: Option<u64>,
}

/// The validated `[tracing]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// The OTLP/HTTP traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// The share of new traces recorded: 0 none, 1 all.
    pub sample: f64,
    /// Whether a caller's sampled `traceparent` makes the request recorded (and an unsampled
    /// one keeps it unrecorded), as W3C Trace Context's parent-based sampling does.
    pub follow_parent: bool,
    pub service_name: String,
    /// The CA that signs an `https` collector's certificate.
    pub ca: Option<PathBuf>,
    /// Spans wait at most this long before they are sent.
    pub batch_delay: Duration,
    /// Spans queued for export at most; more are dropped (and counted by the exporter).
    pub max_queue: usize,
    pub export_timeout: Duration,
}

const DEFAULT_SAMPLE: f64 = 0.01;

pub(super) fn convert(
    file: &Path,
    raw: Option<&RawTracing>,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut ConfigErrors,
) -> Option<TracingConfig> {
    let raw = raw?;
    let Some(endpoint) = raw.endpoint.as_deref() else {
        errors.push(
            file,
            "tracing.endpoint",
            "required: the collector's OTLP/HTTP address, e.g. http://127.0.0.1:4318",
        );
        return None;
    };
    let endpoint = match traces_url(endpoint) {
        Ok(url) => url,
        Err(why) => {
            errors.push(file, "tracing.endpoint", why);
            return None;
        }
    };
    let https = endpoint.starts_with("https://");
    let ca = raw.ca.as_deref().map(resolve);
    if https && ca.is_none() {
        errors.push(
            file,
            "tracing.ca",
            "required with an https endpoint: the CA that signs the collector's certificate",
        );
    }
    if !https && ca.is_some() {
        errors.push(file, "tracing.ca", "set only with an https endpoint");
    }
    let sample = match raw.sample {
        None => DEFAULT_SAMPLE,
        Some(share) if (0.0..=1.0).contains(&share) => share,
        Some(share) => {
            errors.push(
                file,
                "tracing.sample",
                format!("{share} is not a share between 0 and 1"),
            );
            DEFAULT_SAMPLE
        }
    };
    let service_name = raw
        .service_name
        .clone()
        .unwrap_or_else(|| "zonegate".to_string());
    if service_name.is_empty() {
        errors.push(file, "tracing.service_name", "must not be empty");
    }
    let mut positive = |key: &str, value: Option<u64>, default: u64, max: u64| match value {
        None => default,
        Some(v) if (1..=max).contains(&v) => v,
        Some(v) => {
            errors.push(file, key, format!("{v} is not between 1 and {max}"));
            default
        }
    };
    let batch_delay = positive("tracing.batch_delay_ms", raw.batch_delay_ms, 5000, 60_000);
    let export_timeout = positive(
        "tracing.export_timeout_ms",
        raw.export_timeout_ms,
        10_000,
        60_000,
    );
    let max_queue = positive(
        "tracing.max_queue",
        raw.max_queue.map(|q| q as u64),
        2048,
        1 << 20,
    );
    Some(TracingConfig {
        endpoint,
        sample,
        follow_parent: raw.follow_parent.unwrap_or(true),
        service_name,
        ca,
        batch_delay: Duration::from_millis(batch_delay),
        max_queue: max_queue as usize,
        export_timeout: Duration::from_millis(export_timeout),
    })
}

/// The traces URL of a collector: `http(s)://host:port` gets OTLP's `/v1/traces`, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL with a path is taken as it is.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let bad = || format!("`{endpoint}` is not an http:// or https:// URL with a host");
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') || endpoint.contains(['?', '#', ' ']) {
        return Err(bad());
    }
    if endpoint.parse::<http::Uri>().is_err() {
        return Err(bad());
    }
    Ok(match path {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_address_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example.org/").unwrap(),
            "https://otel.example.org/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/custom/traces").unwrap(),
            "http://c:4318/custom/traces"
        );
        for bad in [
            "127.0.0.1:4318",
            "grpc://c:4317",
            "http://",
            "http://u:p@c:4318",
            "http://c:4318/v1/traces?x=1",
        ] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
