//! The built-in echo upstream: the demo's internal API and the tests' real upstream.
//!
//! It answers every request with a JSON description of what it received (method, path,
//! headers), so a caller can see exactly what the gateway forwarded. Requests with
//! `content-type: application/grpc` are streamed back frame by frame as they arrive, ending
//! with `grpc-status: 0` trailers, like a bidirectional-streaming gRPC method.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the echo upstream saw of one request.
#[derive(Serialize)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: BTreeMap<String, String>,
    pub body_bytes: usize,
}

type EchoBody = BoxBody<Bytes, std::io::Error>;

/// Serves the echo upstream on `listener` until the task is dropped: plain HTTP/1.1 and h2c
/// when `tls` is `None`, otherwise TLS with ALPN as the config says.
pub async fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let service = service_fn(handle);
            match acceptor {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                }
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
            }
        });
    }
}

/// Binds `addr` and serves the echo upstream in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, None));
    Ok(bound)
}

async fn handle(req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        return Ok(stream_back(req));
    }
    let (parts, body) = req.into_parts();
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let echo = Echo {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_default(),
        version: format!("{:?}", parts.version),
        headers: header_map(&parts.headers),
        body_bytes,
    };
    let json = serde_json::to_vec_pretty(&echo).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(json)).map_err(|e| match e {}).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Echoes each request data frame as soon as it arrives, then trailers.
fn stream_back(req: Request<Incoming>) -> Response<EchoBody> {
    let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            if let Ok(data) = frame.into_data() {
                if tx.send(Ok(Frame::data(data))).await.is_err() {
                    return;
                }
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("echoed"));
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(rx)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}
