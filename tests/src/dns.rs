//! A DNS server for the tests: UDP, RFC 1035 messages encoded and decoded with hickory-proto,
//! answering A queries from a table the test changes while the gateway runs, or failing every
//! query with SERVFAIL on demand.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};

type Table = HashMap<String, (Vec<Ipv4Addr>, u32)>;

pub struct DnsServer {
    pub addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    failing: Arc<AtomicBool>,
    /// A queries answered (any outcome).
    pub queries: Arc<AtomicUsize>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind DNS socket");
        let addr = socket.local_addr().expect("DNS address");
        let table: Arc<Mutex<Table>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (t, f, q) = (table.clone(), failing.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let response = answer(&request, &t, &f, &q);
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        DnsServer {
            addr,
            table,
            failing,
            queries,
        }
    }

    /// `name` (no trailing dot) now resolves to `ips`, with records valid for `ttl` seconds.
    pub fn set(&self, name: &str, ips: &[Ipv4Addr], ttl: u32) {
        self.table
            .lock()
            .unwrap()
            .insert(name.to_string(), (ips.to_vec(), ttl));
    }

    /// While `on`, every query is answered SERVFAIL.
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

fn answer(
    request: &Message,
    table: &Mutex<Table>,
    failing: &AtomicBool,
    queries: &AtomicUsize,
) -> Message {
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let Some(query) = request.queries().first() else {
        response.set_response_code(ResponseCode::FormErr);
        return response;
    };
    response.add_query(query.clone());
    if query.query_type() == RecordType::A {
        queries.fetch_add(1, Ordering::SeqCst);
    }
    if failing.load(Ordering::SeqCst) {
        response.set_response_code(ResponseCode::ServFail);
        return response;
    }
    let name = query
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match table.lock().unwrap().get(&name) {
        None => {
            response.set_response_code(ResponseCode::NXDomain);
        }
        Some((ips, ttl)) => {
            // AAAA and other types: the name exists, with no records of that type (NODATA).
            if query.query_type() == RecordType::A {
                for ip in ips {
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        *ttl,
                        RData::A(A(*ip)),
                    ));
                }
            }
        }
    }
    response
}
