//! A SPIFFE Workload API server for the tests, built from the published `workload.proto`
//! (the messages below mirror it field for field) and the gRPC over HTTP/2 wire protocol:
//! `FetchX509SVID` and `FetchJWTBundles` are server streams on a Unix socket that send the
//! current material at once and again at every change. As the Workload API specification
//! requires, a call without the `workload.spiffe.io: true` metadata is refused with
//! InvalidArgument. The server can be stopped and started again on the same socket, the way
//! an agent restarts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// `message X509SVIDResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct X509SvidResponse {
    #[prost(message, repeated, tag = "1")]
    pub svids: Vec<X509Svid>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub crl: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "3")]
    pub federated_bundles: HashMap<String, Vec<u8>>,
}

/// `message X509SVID`: the chain and roots are ASN.1 DER certificates back to back, the key
/// PKCS#8 DER.
#[derive(Clone, PartialEq, Message)]
pub struct X509Svid {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub x509_svid: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub x509_svid_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub bundle: Vec<u8>,
    #[prost(string, tag = "5")]
    pub hint: String,
}

/// `message JWTBundlesResponse`: per trust domain, a JWK Set.
#[derive(Clone, PartialEq, Message)]
pub struct JwtBundlesResponse {
    #[prost(map = "string, bytes", tag = "1")]
    pub bundles: HashMap<String, Vec<u8>>,
}

/// gRPC status codes used here.
const GRPC_INVALID_ARGUMENT: u32 = 3;
const GRPC_UNIMPLEMENTED: u32 = 12;

#[derive(Clone)]
struct State {
    x509: watch::Sender<Option<X509SvidResponse>>,
    jwt: watch::Sender<Option<JwtBundlesResponse>>,
    /// Calls by method name, and calls refused for missing metadata.
    calls: Arc<Mutex<HashMap<String, usize>>>,
    refused: Arc<AtomicUsize>,
}

/// The agent: its socket, its material, and whether it is serving.
pub struct WorkloadApi {
    pub socket: PathBuf,
    state: State,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Open connections, ended with the server.
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Drop for WorkloadApi {
    fn drop(&mut self) {
        self.stop();
    }
}

impl WorkloadApi {
    /// Serves on a new socket at `socket` (its directory must exist).
    pub fn start(socket: &Path) -> WorkloadApi {
        let api = WorkloadApi {
            socket: socket.to_path_buf(),
            state: State {
                x509: watch::channel(None).0,
                jwt: watch::channel(None).0,
                calls: Arc::default(),
                refused: Arc::default(),
            },
            running: Mutex::new(None),
            connections: Arc::default(),
        };
        api.resume();
        api
    }

    /// `unix://` address of the socket, as `[spiffe] workload_api` takes it.
    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Sets the SVID (and its trust domain's roots) and the federated bundles; every open
    /// `FetchX509SVID` stream gets the new response.
    pub fn set_x509(&self, response: X509SvidResponse) {
        self.state.x509.send_replace(Some(response));
    }

    pub fn set_jwt_bundles(&self, response: JwtBundlesResponse) {
        self.state.jwt.send_replace(Some(response));
    }

    pub fn calls(&self, method: &str) -> usize {
        self.state
            .calls
            .lock()
            .expect("calls")
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// The agent goes away: the socket is removed and every stream is cut.
    pub fn stop(&self) {
        if let Some(task) = self.running.lock().expect("running").take() {
            task.abort();
        }
        for connection in self.connections.lock().expect("connections").drain(..) {
            connection.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// The agent is back on the same socket, with the material it had.
    pub fn resume(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket).expect("bind the Workload API socket");
        let state = self.state.clone();
        let connections = self.connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                connections
                    .lock()
                    .expect("connections")
                    .push(connection.abort_handle());
            }
        });
        *self.running.lock().expect("running") = Some(task);
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let method = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    *state
        .calls
        .lock()
        .expect("calls")
        .entry(method.clone())
        .or_default() += 1;
    let security_header = req
        .headers()
        .get("workload.spiffe.io")
        .is_some_and(|v| v == "true");
    // The request message is empty for both streams; read it to the end.
    let _ = req.into_body().collect().await;
    if !security_header {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return trailers_only(
            GRPC_INVALID_ARGUMENT,
            "security header missing from request",
        );
    }
    match method.as_str() {
        "FetchX509SVID" => streaming(state.x509.subscribe()),
        "FetchJWTBundles" => streaming(state.jwt.subscribe()),
        _ => trailers_only(GRPC_UNIMPLEMENTED, "not served by this test agent"),
    }
}

/// A server stream: the current message, then one per change, for as long as it lasts.
fn streaming<M: Message + Clone + Send + Sync + 'static>(
    updates: watch::Receiver<Option<M>>,
) -> Response<Body> {
    let frames = futures::stream::unfold((updates, true), |(mut updates, first)| async move {
        loop {
            if !first || updates.borrow().is_none() {
                updates.changed().await.ok()?;
            }
            let current = updates.borrow_and_update().clone();
            if let Some(message) = current {
                let frame = Frame::data(grpc_frame(&message));
                return Some((Ok::<_, Infallible>(frame), (updates, false)));
            }
        }
    });
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A call refused before any message: the status in the response headers.
fn trailers_only(code: u32, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", code.into());
    if let Ok(value) = http::HeaderValue::from_str(message) {
        headers.insert("grpc-message", value);
    }
    response
}

/// A length-prefixed message, uncompressed.
fn grpc_frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + body.len());
    frame.put_u8(0);
    frame.put_u32(body.len() as u32);
    frame.put_slice(&body);
    frame.freeze()
}

/// An `X509SVIDResponse` for one SVID: `chain` (leaf first) with its PKCS#8 key, the
/// SVID's trust domain's roots, and federated domains' roots.
pub fn x509_response(
    spiffe_id: &str,
    chain: &[&[u8]],
    key_pkcs8: &[u8],
    roots: &[&[u8]],
    federated: &[(&str, &[&[u8]])],
) -> X509SvidResponse {
    X509SvidResponse {
        svids: vec![X509Svid {
            spiffe_id: spiffe_id.to_string(),
            x509_svid: chain.concat(),
            x509_svid_key: key_pkcs8.to_vec(),
            bundle: roots.concat(),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: federated
            .iter()
            .map(|(domain, roots)| (domain.to_string(), roots.concat()))
            .collect(),
    }
}
