//! HTTP/2 abuse past rapid reset and stream counts (those are in plane.rs), byte for byte over
//! real mTLS: control-frame floods from a client that never reads its answers (PING,
//! CVE-2019-9512; SETTINGS, CVE-2019-9515), a CONTINUATION flood (CVE-2024-27316's class), and
//! a header list past the connection's hard limit. Each is bounded, none reaches the upstream,
//! and everyone else is served meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use zonegate_e2e::*;

const PING: u8 = 0x6;
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One HTTP/2 frame: its 9-byte header (length, type, flags, stream) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HTTP/2 connection as a hostile client holds it: mTLS with a valid SVID, the preface and
/// an empty SETTINGS frame written, nothing read. Its receive buffer is small, so that a
/// server that answers every frame fills it soon.
async fn raw_h2(gw: &Gateway) -> TlsStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(gw.addr()).await.unwrap();
    let mut tls = tls_over(gw, tcp, CHECKOUT, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    tls
}

/// How a flood ended.
#[derive(Debug, PartialEq)]
enum Flood {
    /// The gateway stopped reading: a write made no progress for the stall time.
    Stalled { written: usize },
    /// The gateway closed the connection.
    Closed { written: usize },
    /// The gateway took every byte up to the cap: nothing bounded it.
    Unbounded,
}

/// Writes `one` over and over, a batch at a time, without reading.
async fn flood(tls: &mut TlsStream<tokio::net::TcpStream>, one: &[u8], cap: usize) -> Flood {
    let batch: Vec<u8> = one.repeat(1024);
    let mut written = 0;
    while written < cap {
        match tokio::time::timeout(Duration::from_secs(2), tls.write_all(&batch)).await {
            Err(_) => return Flood::Stalled { written },
            Ok(Err(_)) => return Flood::Closed { written },
            Ok(Ok(())) => written += batch.len(),
        }
    }
    Flood::Unbounded
}

/// Everything the gateway sent until it closed (or went quiet for a second), as frames.
async fn frames_until_close(tls: &mut TlsStream<tokio::net::TcpStream>) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if rest.len() < 9 + len {
            break;
        }
        frames.push((rest[3], rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

async fn gateway() -> (Gateway, CountedEcho) {
    let upstream = CountedEcho::start().await;
    let gw = Gateway::start(Setup {
        upstream: Some(upstream.addr),
        extra_config: "[connections]\nmax_header_bytes = 4096\n".into(),
        ..Setup::default()
    })
    .await;
    (gw, upstream)
}

/// PING and SETTINGS each oblige the server to answer. The gateway answers one before it reads
/// the next, so a client that floods them and never reads is soon held back by its own full
/// socket: the gateway queues no answers for it, and serves everyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_ping_and_settings_floods_from_a_client_that_never_reads_are_bounded() {
    let (gw, upstream) = gateway().await;
    const CAP: usize = 64 << 20;
    for (what, one) in [
        ("PING", frame(PING, 0, 0, b"zonegate")),
        ("SETTINGS", frame(SETTINGS, 0, 0, &[])),
    ] {
        let mut flooder = raw_h2(&gw).await;
        let ended = flood(&mut flooder, &one, CAP).await;
        let written = match ended {
            Flood::Stalled { written } | Flood::Closed { written } => written,
            Flood::Unbounded => panic!("{what} flood: the gateway read {CAP} bytes of it"),
        };
        // What the gateway took is what the sockets between it and the client hold, a few
        // MiB at most on loopback, not the flood.
        assert!(
            written < 16 << 20,
            "{what} flood: {written} bytes taken before it stopped reading ({ended:?})"
        );
        // While the flooder is held (its connection still open), others are served.
        let mut other = gw.client(CHECKOUT, true).await;
        let reply = tokio::time::timeout(Duration::from_secs(5), other.get("/payments/charge"))
            .await
            .unwrap_or_else(|_| panic!("{what} flood: another client was not served"));
        assert_eq!(reply.status, StatusCode::OK, "{what} flood");
        drop(flooder);
    }
    // The floods carried no request: only the two controls reached the upstream.
    let events = gw.events(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(upstream.bytes.load(Ordering::SeqCst) > 0);
}

/// A header block split into endless CONTINUATION frames never completes, so the server can
/// only buffer it; the gateway ends such a connection with GOAWAY (ENHANCE_YOUR_CALM) long
/// before its header-list limit's worth of frames, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_ends_the_connection_with_goaway() {
    let (gw, upstream) = gateway().await;
    let mut flooder = raw_h2(&gw).await;
    // HPACK: :method GET, :scheme https, :path / (static table 2, 7, 4), no END_HEADERS.
    flooder
        .write_all(&frame(HEADERS, END_STREAM, 1, &[0x82, 0x87, 0x84]))
        .await
        .unwrap();
    // Each CONTINUATION adds a literal `x-a: b` (never indexed) and does not end the block.
    let one = frame(
        CONTINUATION,
        0,
        1,
        &[0x10, 0x03, b'x', b'-', b'a', 0x01, b'b'],
    );
    let ended = flood(&mut flooder, &one, 64 << 20).await;
    assert!(
        matches!(ended, Flood::Closed { .. } | Flood::Stalled { .. }),
        "{ended:?}"
    );
    let frames = frames_until_close(&mut flooder).await;
    let goaway = frames
        .iter()
        .find(|(kind, _)| *kind == GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY after a CONTINUATION flood ({ended:?})"));
    let code = u32::from_be_bytes(goaway.1[4..8].try_into().unwrap());
    assert_eq!(code, ENHANCE_YOUR_CALM, "GOAWAY {:?}", goaway.1);
    assert_eq!(upstream.bytes.load(Ordering::SeqCst), 0);
    let mut other = gw.client(CHECKOUT, true).await;
    assert_eq!(other.get("/payments/charge").await.status, StatusCode::OK);
}

/// A header list past the connection's hard limit (twice `max_header_bytes`, which HTTP/2
/// SETTINGS advertise) is refused with 431 by the HTTP/2 layer before it is decoded into a
/// request; the connection and its other streams go on, and nothing reaches the upstream.
/// (Within the hard limit, past `max_header_bytes`, the gateway answers 431 with an event:
/// plane.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_header_list_past_the_hard_limit_is_refused_and_the_connection_goes_on() {
    let (gw, upstream) = gateway().await;
    let mut client = gw.client(CHECKOUT, true).await;
    let huge = "h".repeat(20 * 1024);
    let reply = client
        .send(
            Method::GET,
            "/payments/charge",
            &[("x-huge", huge.as_str())],
            Bytes::new(),
        )
        .await
        .expect("answered, not reset");
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(upstream.bytes.load(Ordering::SeqCst), 0);
    assert!(client.is_open());
    let ok = client.get("/payments/charge").await;
    assert_eq!(ok.status, StatusCode::OK);
}

/// The first HEADERS block the gateway sends on `stream`, read from `client` (which must have
/// asked for it).
async fn response_head(client: &mut TlsStream<tokio::net::TcpStream>, stream: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("stream {stream} was not answered"))
            .unwrap();
        assert!(n > 0, "the gateway closed the connection");
        bytes.extend_from_slice(&buf[..n]);
        let mut rest = &bytes[..];
        while rest.len() >= 9 {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            if rest.len() < 9 + len {
                break;
            }
            if rest[3] == HEADERS && u32::from_be_bytes(rest[5..9].try_into().unwrap()) == stream {
                return rest[9..9 + len].to_vec();
            }
            rest = &rest[9 + len..];
        }
    }
}

/// A stream the client resets in the same write as its HEADERS is never forwarded: the
/// gateway reads the reset before the request could start, so nothing reaches the upstream,
/// and if the request was handed over at all it is recorded as cancelled with the decision
/// made, never as an answered or denied request. (A reset that arrives while the upstream is
/// answering is recorded the same way: plane.rs.) Raw frames, because a client library flushes
/// HEADERS and RST_STREAM whenever its connection task runs, which may be apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_in_the_write_of_their_headers_never_reach_the_upstream() {
    let (gw, upstream) = gateway().await;
    // HPACK: :method GET, :scheme https (static 2, 7), then :path and :authority as literals
    // without indexing on the static names 4 and 1, so each block stands alone.
    let mut block = vec![0x82, 0x87, 0x04, 16];
    block.extend_from_slice(b"/payments/charge");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    // HPACK static index 8 is `:status 200`.
    const OK: u8 = 0x88;

    // What one such request sends upstream, on a connection of its own.
    let mut reference = raw_h2(&gw).await;
    reference
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    assert_eq!(response_head(&mut reference, 1).await.first(), Some(&OK));
    let single = upstream.bytes.load(Ordering::SeqCst);
    assert!(single > 0);

    let mut client = raw_h2(&gw).await;
    const RESETS: u32 = 8;
    let mut write = Vec::new();
    for i in 0..RESETS {
        let stream = 2 * i + 1;
        write.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
        write.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    client.write_all(&write).await.unwrap();
    // A stream that is not reset, on the same connection and after them: once it is answered,
    // the gateway has read and handled every frame before it.
    let last = 2 * RESETS + 1;
    client
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, last, &block))
        .await
        .unwrap();
    assert_eq!(response_head(&mut client, last).await.first(), Some(&OK));
    // Only that one reached the upstream (a leaked reset would double the bytes).
    let after = upstream.bytes.load(Ordering::SeqCst) - single;
    assert!(
        after > single / 2 && after < single + single / 2,
        "{after} bytes upstream for the answered stream and {RESETS} resets, {single} for one"
    );
    // Both answered requests are on record (the writer may still be on the second), and
    // whatever was recorded of the resets is a cancellation.
    gw.events_where(2, |e| e["kind"] == "request" && e["status"] == 200)
        .await;
    let events = gw.events(0).await;
    for e in events
        .iter()
        .filter(|e| e["kind"] == "request" && e["status"] != 200)
    {
        assert_eq!(e["reason"], "cancelled", "{e}");
        assert_eq!(e["decision"], "allow", "{e}");
        assert_eq!(e["status"], 499, "{e}");
    }
}
