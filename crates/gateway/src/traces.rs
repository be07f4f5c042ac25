//! OpenTelemetry traces (`[tracing]`): a server span per recorded request, with the
//! identity facts as attributes, exported with OTLP/HTTP in batches by the SDK's own thread.
//!
//! The sampling decision is made first and costs nothing beyond it: an unrecorded request
//! creates no span and leaves the caller's `traceparent` as it came, so the upstream continues
//! the caller's trace. A recorded request's span is the upstream's parent: the upstream gets
//! `traceparent` with the gateway's span. W3C Trace Context parent-based sampling: a caller's
//! sampled flag is followed (`follow_parent`), else a share of new traces is recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter,
};
use opentelemetry_sdk::Resource;
use tracing::{info, warn};

use crate::admin::metrics::Metrics;
use crate::config::TracingConfig;
use crate::events::IdentityEvent;
use crate::outbound;

/// The gateway's tracer: the sampling settings and the SDK's provider.
pub struct Traces {
    metrics: Arc<Metrics>,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    sample: f64,
    follow_parent: bool,
}

/// A recorded request's span, from its head to its answer.
pub struct RequestSpan {
    span: Mutex<Option<Span>>,
    context: Context,
}

impl Traces {
    /// Builds the exporter and its batch thread. Fails on a CA that cannot be read or an HTTP
    /// client that cannot be made; a collector that is down is not an error here (spans wait
    /// in the queue, then are dropped).
    pub fn start(
        config: &TracingConfig,
        zone: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Traces, String> {
        let client = http_client(config)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()
            .map_err(|e| format!("tracing exporter: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.max_queue)
            .with_scheduled_delay(config.batch_delay)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(Counted {
                    inner: exporter,
                    metrics: metrics.clone(),
                })
                .with_batch_config(batch)
                .build(),
            )
            // The decision is made before a span exists (`start`): every span is recorded.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .with_attributes([
                        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                        KeyValue::new("zonegate.zone", zone.to_string()),
                    ])
                    .build(),
            )
            .build();
        let tracer = provider.tracer("zonegate");
        info!(endpoint = %config.endpoint, sample = config.sample, "tracing: exporting spans with OTLP/HTTP");
        Ok(Traces {
            metrics,
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            sample: config.sample,
            follow_parent: config.follow_parent,
        })
    }

    /// The span of a request that is recorded, or `None`: the decision, from the caller's
    /// `traceparent` and the configured share.
    pub fn start_request(&self, headers: &HeaderMap, method: &str) -> Option<RequestSpan> {
        let has_parent = headers.contains_key("traceparent");
        let parent = if has_parent {
            self.propagator.extract(&HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let caller = parent.span().span_context().clone();
        let recorded = if self.follow_parent && caller.is_valid() {
            caller.is_sampled()
        } else {
            self.sample >= 1.0 || (self.sample > 0.0 && rand::random::<f64>() < self.sample)
        };
        if !recorded {
            return None;
        }
        // A caller whose decision is not followed still gives the trace its id.
        let parent = if caller.is_valid() {
            parent
        } else {
            Context::new()
        };
        let span = self
            .tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Server)
            .with_start_time(SystemTime::now())
            .start_with_context(&self.tracer, &parent);
        let context = Context::new().with_remote_span_context(span.span_context().clone());
        Some(RequestSpan {
            span: Mutex::new(Some(span)),
            context,
        })
    }

    /// Sends what is queued and stops the export thread (the gateway is stopping).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            warn!(error = %e, "tracing: spans not all exported at shutdown");
        }
    }
}

impl RequestSpan {
    /// Sets `traceparent` (and the caller's `tracestate`) of the upstream request: the
    /// gateway's span is the upstream's parent.
    pub fn inject(&self, headers: &mut HeaderMap, propagator: &Traces) {
        propagator
            .propagator
            .inject_context(&self.context, &mut HeaderInjector(headers));
    }

    /// Ends the span with the request's outcome, as its identity event says it.
    pub fn finish(&self, event: &IdentityEvent<'_>, traces: &Traces) {
        let Some(mut span) = self
            .span
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        if let Some(route) = event.route {
            // `{method} {target}`, the target being the route (a low-cardinality name).
            span.update_name(format!("{} {route}", event.method));
        }
        span.set_attributes(attributes(event));
        if event.status >= 500 {
            span.set_status(Status::error(event.reason));
        }
        span.end();
        traces.metrics.record_trace_spans("recorded", 1);
    }
}

/// The OTLP exporter, counting what it sends and what fails for `/metrics`.
struct Counted<E> {
    inner: E,
    metrics: Arc<Metrics>,
}

impl<E: std::fmt::Debug> std::fmt::Debug for Counted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let outcome = if result.is_ok() { "exported" } else { "failed" };
        self.metrics.record_trace_spans(outcome, n);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The span's attributes: OpenTelemetry's HTTP semantic conventions, and the identity facts
/// under `zonegate.*`.
fn attributes(e: &IdentityEvent<'_>) -> Vec<KeyValue> {
    let mut kv = vec![
        KeyValue::new("http.request.method", e.method.to_string()),
        KeyValue::new("http.response.status_code", i64::from(e.status)),
        KeyValue::new(
            "network.protocol.version",
            e.http_version
                .strip_prefix("HTTP/")
                .unwrap_or(e.http_version),
        ),
        KeyValue::new("zonegate.request_id", e.request_id.to_string()),
        KeyValue::new("zonegate.decision", e.decision),
        KeyValue::new("zonegate.reason", e.reason),
        KeyValue::new("zonegate.destination.zone", e.destination_zone.to_string()),
        KeyValue::new("zonegate.cross_zone", e.cross_zone),
        KeyValue::new("zonegate.policy_generation", e.policy_generation as i64),
    ];
    let optional = [
        ("url.path", e.path),
        ("server.address", e.host),
        ("http.route", e.route),
        ("zonegate.route", e.route),
        ("zonegate.rule", e.rule_id),
        ("zonegate.audit_rule", e.audit_rule_id),
        ("zonegate.audit_decision", e.audit_decision),
        ("zonegate.credential", e.credential),
        ("zonegate.source.spiffe_id", e.source_spiffe_id),
        ("zonegate.source.zone", e.source_zone),
        ("zonegate.token.issuer", e.token_issuer),
        ("zonegate.upstream", e.upstream),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            kv.push(KeyValue::new(key, value.to_string()));
        }
    }
    if let Some(peer) = e.peer_addr {
        kv.push(KeyValue::new("client.address", peer.ip().to_string()));
        kv.push(KeyValue::new("client.port", i64::from(peer.port())));
    }
    kv
}

/// The exporter's HTTP client: rustls with the gateway's crypto provider, trusting only the
/// configured CA for an `https` collector (and nothing for a plain `http` one).
fn http_client(config: &TracingConfig) -> Result<reqwest::blocking::Client, String> {
    let roots = match &config.ca {
        Some(ca) => outbound::roots_from(ca).map_err(|e| format!("tracing.ca: {e}"))?,
        None => rustls::RootCertStore::empty(),
    };
    let builder = outbound::client_builder(roots)
        .map_err(|e| format!("tracing: {e}"))?
        .timeout(config.export_timeout);
    // reqwest's blocking client runs a runtime of its own; it is built (and later dropped)
    // on a thread of its own, never inside the gateway's.
    std::thread::spawn(move || builder.build())
        .join()
        .map_err(|_| "tracing HTTP client: its thread panicked".to_string())?
        .map_err(|e| format!("tracing HTTP client: {e}"))
}
