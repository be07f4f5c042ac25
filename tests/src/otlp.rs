//! An OTLP/HTTP trace receiver for the tests, as the OTLP specification defines it: `POST
//! /v1/traces` with an `application/x-protobuf` body holding an `ExportTraceServiceRequest`
//! (decoded with the messages generated from the published `.proto` files), answered 200 with
//! an `ExportTraceServiceResponse`. It keeps every span it got, with its resource, and can be
//! told to fail (503) to show that the gateway does not care.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::net::TcpListener;

/// One span as received, with the attributes of its resource.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// `SpanKind` as the proto numbers it (2 is SERVER).
    pub kind: i32,
    /// `Status.code` (2 is ERROR).
    pub status_code: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: HashMap<String, String>,
    pub resource: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct State {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    requests: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
}

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    state: State,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind otlp");
        let addr = listener.local_addr().expect("otlp addr");
        let state = State::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.export(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        OtlpReceiver { addr, state, task }
    }

    /// The collector address for `[tracing] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer 503 to every export from now on (`false`: accept again).
    pub fn fail(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn export_requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let errors = self.state.errors.lock().expect("lock");
        assert!(errors.is_empty(), "exports that are not OTLP: {errors:?}");
        self.state.spans.lock().expect("lock").clone()
    }

    /// Waits until `n` spans satisfy `keep` (10 s at most), and returns those.
    pub async fn wait_for(
        &self,
        n: usize,
        keep: impl Fn(&ReceivedSpan) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kept: Vec<ReceivedSpan> = self.spans().into_iter().filter(|s| keep(s)).collect();
            if kept.len() >= n {
                return kept;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} matching spans, got {kept:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl State {
    async fn export(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let fail = |status: StatusCode, why: String| {
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(why)))
                .expect("response")
        };
        if request.method() != http::Method::POST || request.uri().path() != "/v1/traces" {
            let why = format!("{} {}", request.method(), request.uri());
            self.errors.lock().expect("lock").push(why.clone());
            return fail(StatusCode::NOT_FOUND, why);
        }
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if content_type != "application/x-protobuf" {
            let why = format!("content-type `{content_type}`");
            self.errors.lock().expect("lock").push(why.clone());
            return fail(StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
        }
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if self.failing.load(Ordering::SeqCst) {
            return fail(StatusCode::SERVICE_UNAVAILABLE, "failing on purpose".into());
        }
        let export = match ExportTraceServiceRequest::decode(body) {
            Ok(export) => export,
            Err(e) => {
                let why = format!("not an ExportTraceServiceRequest: {e}");
                self.errors.lock().expect("lock").push(why.clone());
                return fail(StatusCode::BAD_REQUEST, why);
            }
        };
        let mut spans = self.spans.lock().expect("lock");
        for resource_spans in export.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        status_code: span.status.map_or(0, |s| s.code),
                        start_ns: span.start_time_unix_nano,
                        end_ns: span.end_time_unix_nano,
                        attributes: attributes(&span.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
        let answer = ExportTraceServiceResponse {
            partial_success: None,
        };
        Response::builder()
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(answer.encode_to_vec())))
            .expect("response")
    }
}

/// Attribute values as text (`true`, `200`, `spiffe://...`).
fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
