//! PROXY protocol on a listener: the client's address as a trusted balancer states it is the
//! one events see; a connection from anyone else, or without a valid header, is refused
//! before TLS, and the refusal is counted and evented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::{Ipv4Addr, SocketAddr};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use zonegate_e2e::*;

/// A gateway whose listener takes PROXY headers from 127.0.0.1 only.
async fn behind_a_balancer() -> Gateway {
    Gateway::start(Setup {
        listener_extra: "proxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1/32\"]".into(),
        ..Setup::default()
    })
    .await
}

/// A version 2 header for a TCP/IPv4 connection from `source`.
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (source, destination) else {
        panic!("IPv4 only here");
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&src.ip().octets());
    out.extend_from_slice(&dst.ip().octets());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

async fn request_with_header(gw: &Gateway, header: &[u8]) -> Reply {
    let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let svid = gw.pki.svid(CHECKOUT);
    let mut client = Client::over(tcp, client_tls(&gw.pki, &svid, &[b"h2"]), true)
        .await
        .unwrap();
    client.get("/payments/charge").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancers_header_names_the_client_in_events() {
    let gw = behind_a_balancer().await;
    let workload: SocketAddr = "10.9.8.7:4242".parse().unwrap();
    let reply = request_with_header(&gw, &v2_header(workload, gw.addr())).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v1 = format!("PROXY TCP4 10.1.1.1 10.0.0.1 5151 {}\r\n", gw.port);
    assert_eq!(
        request_with_header(&gw, v1.as_bytes()).await.status,
        StatusCode::OK
    );
    let events = gw.events_where(2, |e| e["kind"] == "request").await;
    assert_eq!(events[0]["peer_addr"], "10.9.8.7:4242");
    assert_eq!(events[1]["peer_addr"], "10.1.1.1:5151");
    // LOCAL: the balancer's own connection keeps its real address.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert_eq!(request_with_header(&gw, local).await.status, StatusCode::OK);
    let events = gw.events_where(3, |e| e["kind"] == "request").await;
    assert!(events[2]["peer_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

/// Sends `bytes` on a connection from `from` and returns what came back before it closed.
async fn refused(gw: &Gateway, from: Ipv4Addr, bytes: &[u8]) -> Vec<u8> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut tcp = socket.connect(gw.addr()).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let mut back = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut back),
    );
    assert!(read.await.is_ok(), "the gateway kept the connection open");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_from_anyone_but_the_balancer_or_without_a_valid_header_are_refused() {
    let gw = behind_a_balancer().await;
    // From an address that is not a configured balancer: its header would be believed.
    let forged = v2_header("10.9.8.7:4242".parse().unwrap(), gw.addr());
    assert!(refused(&gw, Ipv4Addr::new(127, 0, 0, 2), &forged)
        .await
        .is_empty());
    // From the balancer, but a TLS ClientHello where the header should be, and garbage.
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert!(refused(&gw, Ipv4Addr::LOCALHOST, hello).await.is_empty());
    let garbage = b"PROXY TCP4 10.1.2.3 10.0.0.1 99999 1\r\n";
    assert!(refused(&gw, Ipv4Addr::LOCALHOST, garbage).await.is_empty());
    let events = gw
        .events_where(3, |e| e["kind"] == "handshake_refused")
        .await;
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["proxy_untrusted", "proxy_header", "proxy_header"]);
    assert!(events[0]["peer_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.2:"));
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("zonegate_handshake_failures_total{reason=\"proxy_header\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("zonegate_handshake_failures_total{reason=\"proxy_untrusted\"} 1"));
}
