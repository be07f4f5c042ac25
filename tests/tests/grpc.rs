//! gRPC-style bidirectional streaming over HTTP/2 end to end: frames flow through the gateway
//! as they are sent (no buffering of the whole body) and trailers reach the client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use zonegate_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_grpc_exchange_with_trailers() {
    let gw = Gateway::start(Setup {
        upstream_http2: true,
        ..Setup::default()
    })
    .await;
    let (mut tx, mut body) = open_stream(&gw, LEDGER).await;

    // Each message comes back before the next is sent: the gateway streams both ways.
    let first = next_data(&mut body).await.into_data().unwrap();
    assert_eq!(&first[..], b"\0\0\0\0\x03one");
    tx.send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x03two"))))
        .await
        .unwrap();
    let second = next_data(&mut body).await.into_data().unwrap();
    assert_eq!(&second[..], b"\0\0\0\0\x03two");
    drop(tx);

    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Ok(t) = frame.into_trailers() {
            trailers = Some(t);
        }
    }
    let trailers = trailers.expect("no trailers reached the client");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}

/// Opens a bidirectional stream to the echo upstream as `spiffe_id` over HTTP/2, sends the
/// message `one`, and returns the sending side and the response body (status 200 checked).
async fn open_stream(
    gw: &Gateway,
    spiffe_id: &str,
) -> (
    mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    hyper::body::Incoming,
) {
    let svid = gw.pki.svid(spiffe_id);
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(client_tls(&gw.pki, &svid, &[b"h2"])))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let request = Request::post("https://localhost/ledger.Ledger/Stream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(rx))
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x03one"))))
        .await
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    (tx, response.into_body())
}

/// The usual policy, and checkout may open gRPC streams.
fn checkout_may_stream() -> String {
    format!(
        "{POLICY}\n[[rule]]\nid = \"checkout-stream\"\neffect = \"allow\"\n\
         identities = [\"{CHECKOUT}\"]\nroutes = [\"grpc\"]\n"
    )
}

async fn next_data(body: &mut hyper::body::Incoming) -> Frame<Bytes> {
    tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("frame did not arrive: the gateway buffered the stream")
        .expect("stream ended")
        .expect("frame error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_method_denied_for_other_identities() {
    let gw = Gateway::start(Setup {
        upstream_http2: true,
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, true).await;
    let reply = checkout
        .send(
            http::Method::POST,
            "/ledger.Ledger/Stream",
            &[("content-type", "application/grpc")],
            Bytes::from_static(b"\0\0\0\0\x01x"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, http::StatusCode::FORBIDDEN);
}

/// A long-lived stream does not outlive its credential: when a reload revokes the identity,
/// the stream in flight ends, and the event of its allowed start was written when it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_ends_when_its_identity_is_revoked() {
    let gw = Gateway::start(Setup {
        upstream_http2: true,
        policy: checkout_may_stream(),
        extra_config: "[revocation]\nfile = \"revoked.toml\"\n".into(),
        files: vec![("revoked.toml".into(), String::new())],
        ..Setup::default()
    })
    .await;
    // Checkout is in `shop`: its stream is cross-zone, so its start is an identity event.
    let (tx, mut body) = open_stream(&gw, CHECKOUT).await;
    let first = next_data(&mut body).await.into_data().unwrap();
    assert_eq!(&first[..], b"\0\0\0\0\x03one");
    // Visible while it runs.
    let started = gw
        .events_where(1, |e| e["route"] == "grpc" && e["decision"] == "allow")
        .await;
    assert_eq!(started[0]["source_spiffe_id"], CHECKOUT);

    gw.replace_file("revoked.toml", &format!("spiffe_ids = [\"{CHECKOUT}\"]\n"));
    let (status, answer) = gw.reload().await;
    assert_eq!(status, 200, "{answer}");
    // The stream ends (with an error or a reset), without the client closing it.
    assert!(
        ends_within(&mut body, Duration::from_secs(5)).await,
        "the revoked identity's stream is still open"
    );
    drop(tx);
    // And its end is on record: who ended it, and what had been sent.
    let end = gw.events_where(1, |e| e["kind"] == "request_end").await;
    assert_eq!(end[0]["request_id"], started[0]["request_id"]);
    assert_eq!(end[0]["end"], "credential_revoked");
    assert_eq!(end[0]["response_bytes"], 8);
    assert_eq!(end[0]["route"], "grpc");
}

/// The end of a long-lived stream is an event of its own (the start was one when it was
/// decided): status, bytes and duration; a stream the client walks away from says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_and_an_abandoned_one_leave_their_ends_on_record() {
    let gw = Gateway::start(Setup {
        upstream_http2: true,
        policy: checkout_may_stream(),
        ..Setup::default()
    })
    .await;
    let (mut tx, mut body) = open_stream(&gw, CHECKOUT).await;
    next_data(&mut body).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x03two"))))
        .await
        .unwrap();
    next_data(&mut body).await;
    drop(tx);
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
    let ends = gw.events_where(1, |e| e["kind"] == "request_end").await;
    assert_eq!(ends[0]["end"], "complete");
    assert_eq!(ends[0]["status"], 200);
    assert_eq!(ends[0]["response_bytes"], 16);
    assert!(
        ends[0]["duration_ms"].as_f64().unwrap() >= 1100.0,
        "{}",
        ends[0]
    );

    // Quick and complete: no second event. Walked away from: one, however quick.
    let mut ledger = gw.client(CHECKOUT, true).await;
    assert_eq!(ledger.get("/payments/charge").await.status, 200);
    let (tx, mut body) = open_stream(&gw, CHECKOUT).await;
    next_data(&mut body).await;
    drop(body);
    drop(tx);
    let ends = gw.events_where(2, |e| e["kind"] == "request_end").await;
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(ends[1]["end"], "abandoned");
    assert_eq!(ends[1]["response_bytes"], 8);
}
