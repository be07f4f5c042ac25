//! A syslog receiver for the tests, built from the RFC texts: RFC 5424 messages (section 6's
//! ABNF, checked field by field), carried by UDP (RFC 5426, one message per datagram), TCP
//! (RFC 6587 section 3.4.1, octet counting) or a unix datagram socket. Every message that
//! arrives is parsed; one that does not parse is kept as an error for the test to fail on.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket, UnixDatagram};
use tokio::task::JoinHandle;

/// One RFC 5424 message.
#[derive(Clone, Debug)]
pub struct Message {
    pub facility: u8,
    pub severity: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: String,
}

impl Message {
    /// The MSG as JSON (the gateway's records are JSON objects).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.msg)
            .unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {}", self.msg))
    }
}

/// `SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]` (RFC 5424 section 6).
pub fn parse(bytes: &[u8]) -> Result<Message, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let rest = text.strip_prefix('<').ok_or("no `<` before PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("no `>` after PRI")?;
    // PRIVAL: 1-3 digits, 0..=191, no leading zero but for "0".
    if pri.is_empty() || pri.len() > 3 || (pri.len() > 1 && pri.starts_with('0')) {
        return Err(format!("PRI `{pri}`"));
    }
    let prival: u8 = pri.parse().map_err(|_| format!("PRI `{pri}`"))?;
    if prival > 191 {
        return Err(format!("PRI {prival} > 191"));
    }
    let (version, rest) = rest.split_once(' ').ok_or("no VERSION")?;
    if version != "1" {
        return Err(format!("VERSION `{version}`"));
    }
    let mut fields = rest.splitn(6, ' ');
    let mut field = |name: &str, max: usize| -> Result<String, String> {
        let value = fields.next().ok_or(format!("no {name}"))?;
        let printable = value.bytes().all(|b| (33..=126).contains(&b));
        if value.is_empty() || value.len() > max || !printable {
            return Err(format!("{name} `{value}`"));
        }
        Ok(value.to_string())
    };
    let timestamp = field("TIMESTAMP", 64)?;
    let hostname = field("HOSTNAME", 255)?;
    let app_name = field("APP-NAME", 48)?;
    let procid = field("PROCID", 128)?;
    let msgid = field("MSGID", 32)?;
    if timestamp != "-" {
        check_timestamp(&timestamp)?;
    }
    let rest = fields.next().ok_or("no STRUCTURED-DATA")?;
    let (structured_data, msg) = if let Some(msg) = rest.strip_prefix("- ") {
        ("-".to_string(), msg.to_string())
    } else if rest == "-" {
        ("-".to_string(), String::new())
    } else {
        // This receiver only needs the NILVALUE; elements are `[...]` and would need the
        // full SD-ELEMENT grammar.
        return Err(format!("STRUCTURED-DATA other than `-`: {rest}"));
    };
    if msg.starts_with('\u{feff}') {
        return Err("MSG starts with a BOM but the gateway sends MSG-ANY".into());
    }
    Ok(Message {
        facility: prival / 8,
        severity: prival % 8,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        msg,
    })
}

/// `FULL-DATE "T" FULL-TIME` with at most 6 fractional digits and `Z` or an offset, as RFC
/// 5424 section 6.2.3 restricts RFC 3339.
fn check_timestamp(t: &str) -> Result<(), String> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("TIMESTAMP `{t}`: {e}"))?;
    if !t.contains('T') || t.contains('t') || t.contains('z') {
        return Err(format!("TIMESTAMP `{t}`: T and Z must be upper case"));
    }
    if let Some((_, fraction)) = t.split_once('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return Err(format!("TIMESTAMP `{t}`: 1 to 6 fractional digits"));
        }
    }
    Ok(())
}

/// What a receiver got: messages in order of arrival, and anything that did not parse.
#[derive(Clone, Default)]
pub struct Received {
    messages: Arc<Mutex<Vec<Message>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Received {
    fn take(&self, bytes: &[u8]) {
        match parse(bytes) {
            Ok(m) => self.messages.lock().expect("lock").push(m),
            Err(e) => self
                .errors
                .lock()
                .expect("lock")
                .push(format!("{e}: {:?}", String::from_utf8_lossy(bytes))),
        }
    }

    pub fn messages(&self) -> Vec<Message> {
        let errors = self.errors.lock().expect("lock");
        assert!(
            errors.is_empty(),
            "messages that are not RFC 5424: {errors:?}"
        );
        self.messages.lock().expect("lock").clone()
    }

    /// Waits until `n` messages satisfy `keep` (10 s at most), and returns those.
    pub async fn wait_for(&self, n: usize, keep: impl Fn(&Message) -> bool) -> Vec<Message> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kept: Vec<Message> = self.messages().into_iter().filter(|m| keep(m)).collect();
            if kept.len() >= n {
                return kept;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} matching messages, got {kept:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A receiver and the task that feeds it; dropping it stops the task (and closes its socket).
pub struct Receiver {
    pub received: Received,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// RFC 5426: each datagram is one message.
    pub async fn udp() -> (SocketAddr, Receiver) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = socket.local_addr().expect("udp addr");
        (addr, Datagrams::Udp(socket).receive())
    }

    /// Unix datagrams, as `/dev/log` takes them: one message each.
    pub fn unix(path: &Path) -> Receiver {
        Datagrams::Unix(UnixDatagram::bind(path).expect("bind unix datagram")).receive()
    }

    /// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, back to back, on each connection.
    /// Messages go to `received`, so a receiver started again on the same address adds to
    /// what the first one got. Dropping it closes the listener and every connection.
    pub async fn tcp(addr: SocketAddr, received: Received) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(addr).await?;
        let kept = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let sink = received.clone();
                connections.push(AbortOnDrop(tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16_384];
                    loop {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(frame) = octet_counted(&mut buf) {
                            match frame {
                                Ok(message) => sink.take(&message),
                                Err(e) => {
                                    sink.errors.lock().expect("lock").push(e);
                                    return;
                                }
                            }
                        }
                    }
                })));
            }
        });
        Ok(Receiver {
            received: kept,
            task,
        })
    }
}

/// A socket whose every datagram is one message.
enum Datagrams {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Datagrams {
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Datagrams::Udp(socket) => socket.recv(buf).await,
            Datagrams::Unix(socket) => socket.recv(buf).await,
        }
    }

    fn receive(self) -> Receiver {
        let received = Received::default();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = self.recv(&mut buf).await {
                sink.take(&buf[..n]);
            }
        });
        Receiver { received, task }
    }
}

/// Takes one whole octet-counted frame off the front of `buf`, if one is there.
fn octet_counted(buf: &mut Vec<u8>) -> Option<Result<Vec<u8>, String>> {
    let space = buf.iter().position(|&b| b == b' ')?;
    let len = match std::str::from_utf8(&buf[..space])
        .ok()
        .filter(|d| !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<usize>().ok())
    {
        Some(len) => len,
        None => {
            return Some(Err(format!(
                "MSG-LEN `{}` is not a NONZERO-DIGIT *DIGIT",
                String::from_utf8_lossy(&buf[..space])
            )))
        }
    };
    if buf.len() < space + 1 + len {
        return None;
    }
    let message = buf[space + 1..space + 1 + len].to_vec();
    buf.drain(..space + 1 + len);
    Some(Ok(message))
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
