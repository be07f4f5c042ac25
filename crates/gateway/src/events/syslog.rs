//! The syslog output of the event sink: each record one RFC 5424 message, its JSON line (in
//! the configured format) as the MSG, sent over UDP (RFC 5426: one message per datagram), TCP
//! (RFC 6587: octet-counting framing) or a unix datagram socket (`/dev/log`).
//!
//! It runs on the sink's writer thread, so its waits never touch the request path: a send
//! waits at most [`SEND_TIMEOUT`], and while the receiver is unreachable the writer tries
//! again after a backoff instead of on every batch; what it cannot send is counted as dropped
//! by the sink, like a failed file write.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{now_rfc3339, Severity};
use crate::config::{SyslogTarget, SyslogTransport};

/// Longest wait for a connection or a send before the batch counts as lost.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait before connecting again after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// APP-NAME of every message.
const APP_NAME: &str = "zonegate";

/// One encoded record in a batch: where its line ends, and what its message header says.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mark {
    pub end: usize,
    pub severity: Severity,
    /// The record's kind: the message's MSGID.
    pub kind: &'static str,
}

/// Records that could not be sent, and why.
#[derive(Debug)]
pub(super) struct Lost {
    pub events: u64,
    pub error: io::Error,
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

pub(super) struct Syslog {
    target: SyslogTarget,
    connection: Option<Connection>,
    /// HOSTNAME and PROCID of every message.
    hostname: String,
    procid: String,
    retry_at: Instant,
    backoff: Duration,
}

impl Syslog {
    /// Connects at once (so a bad address shows in the log at startup), and again on demand.
    pub(super) fn new(target: SyslogTarget) -> Syslog {
        let mut syslog = Syslog {
            target,
            connection: None,
            hostname: hostname(),
            procid: std::process::id().to_string(),
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
        };
        if let Err(e) = syslog.connect() {
            warn!(receiver = %syslog.target, error = %e, "cannot reach the syslog receiver yet; events are dropped (and counted) until it answers");
        }
        syslog
    }

    fn connect(&mut self) -> io::Result<()> {
        let connection = match self.target.transport {
            SyslogTransport::Udp => {
                let addr = resolve(&self.target.address)?;
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Connection::Udp(socket)
            }
            SyslogTransport::Tcp => {
                let addr = resolve(&self.target.address)?;
                let stream = TcpStream::connect_timeout(&addr, SEND_TIMEOUT)?;
                stream.set_write_timeout(Some(SEND_TIMEOUT))?;
                stream.set_nodelay(true)?;
                Connection::Tcp(stream)
            }
            SyslogTransport::Unix => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(&self.target.address)?;
                socket.set_write_timeout(Some(SEND_TIMEOUT))?;
                Connection::Unix(socket)
            }
        };
        self.connection = Some(connection);
        Ok(())
    }

    /// Sends each line of `bytes` (ending at `marks`) as one message.
    pub(super) fn send(&mut self, bytes: &[u8], marks: &[Mark]) -> Result<(), Lost> {
        let all = marks.len() as u64;
        if let Some(Connection::Tcp(stream)) = &self.connection {
            if !still_open(stream) {
                info!(receiver = %self.target, "the syslog receiver closed the connection; connecting again");
                self.connection = None;
            }
        }
        if self.connection.is_none() {
            if Instant::now() < self.retry_at {
                return Err(Lost {
                    events: all,
                    error: io::Error::new(
                        io::ErrorKind::NotConnected,
                        format!("syslog receiver {} unreachable", self.target),
                    ),
                });
            }
            if let Err(error) = self.connect() {
                self.failed();
                return Err(Lost { events: all, error });
            }
            info!(receiver = %self.target, "connected to the syslog receiver");
        }
        let timestamp = now_rfc3339();
        let result = if let Some(Connection::Tcp(_)) = self.connection {
            // One write for the batch: each message prefixed by its length.
            let mut frames = Vec::with_capacity(bytes.len() + marks.len() * 96);
            let mut message = Vec::with_capacity(1024);
            for (line, mark) in lines(bytes, marks) {
                message.clear();
                self.header(&mut message, mark, &timestamp);
                message.extend_from_slice(line);
                frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
                frames.extend_from_slice(&message);
            }
            match &mut self.connection {
                // What part of the batch the receiver took before a failure cannot be
                // known: all of it counts as lost.
                Some(Connection::Tcp(stream)) => stream
                    .write_all(&frames)
                    .map_err(|error| Lost { events: all, error }),
                _ => Ok(()),
            }
        } else {
            self.send_datagrams(bytes, marks, &timestamp)
        };
        match &result {
            Ok(()) => self.backoff = FIRST_BACKOFF,
            Err(_) => self.failed(),
        }
        result
    }

    /// One datagram per message; a message that does not go out is lost, the others are sent.
    fn send_datagrams(&self, bytes: &[u8], marks: &[Mark], timestamp: &str) -> Result<(), Lost> {
        let mut lost = 0;
        let mut last_error = None;
        let mut message = Vec::with_capacity(1024);
        for (line, mark) in lines(bytes, marks) {
            message.clear();
            self.header(&mut message, mark, timestamp);
            message.extend_from_slice(line);
            let sent = match &self.connection {
                Some(Connection::Udp(socket)) => socket.send(&message),
                Some(Connection::Unix(socket)) => socket.send(&message),
                _ => Ok(message.len()),
            };
            if let Err(e) = sent {
                lost += 1;
                last_error = Some(e);
            }
        }
        match last_error {
            None => Ok(()),
            Some(error) => Err(Lost {
                events: lost,
                error,
            }),
        }
    }

    /// Drops the connection and waits longer before the next attempt.
    fn failed(&mut self) {
        self.connection = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - ` (no structured data: the record
    /// is the MSG, a JSON object).
    fn header(&self, out: &mut Vec<u8>, mark: Mark, timestamp: &str) {
        let pri = u16::from(self.target.facility) * 8 + u16::from(mark.severity.syslog_code());
        out.push(b'<');
        out.extend_from_slice(format!("{pri}>1 ").as_bytes());
        for field in [timestamp, &self.hostname, APP_NAME, &self.procid, mark.kind] {
            out.extend_from_slice(field.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"- ");
    }
}

/// Whether the receiver still holds the connection open. A receiver never sends anything, so
/// a readable socket means it closed (or reset) it: writing then would succeed into the
/// kernel's buffer and be lost without an error, the classic pitfall of syslog over TCP.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match stream.peek(&mut [0u8; 1]) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        Ok(0) => false,
        // Bytes from a receiver that should send none: keep the connection, ignore them.
        Ok(_) => true,
    };
    stream.set_nonblocking(false).is_ok() && open
}

/// Each line of `bytes` without its newline, with its mark.
fn lines<'a>(bytes: &'a [u8], marks: &'a [Mark]) -> impl Iterator<Item = (&'a [u8], Mark)> + 'a {
    let mut start = 0;
    marks.iter().map(move |mark| {
        let line = bytes.get(start..mark.end).unwrap_or_default();
        start = mark.end;
        (line.strip_suffix(b"\n").unwrap_or(line), *mark)
    })
}

fn resolve(address: &str) -> io::Result<std::net::SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{address} resolves to no address"),
        )
    })
}

/// The host's name as RFC 5424 wants it (printable US-ASCII, at most 255), else `-`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    header_field(name.trim(), 255)
}

/// `value` if it is a valid header field of at most `max` characters, else the NILVALUE.
fn header_field(value: &str, max: usize) -> String {
    let printable = value.bytes().all(|b| (33..=126).contains(&b));
    if value.is_empty() || value.len() > max || !printable {
        "-".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_printable_ascii_or_the_nil_value() {
        assert_eq!(header_field("gw-7f9c", 255), "gw-7f9c");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(header_field("has space", 255), "-");
        assert_eq!(header_field("caf\u{e9}", 255), "-");
        assert_eq!(header_field(&"a".repeat(256), 255), "-");
    }

    #[test]
    fn the_header_carries_facility_severity_and_kind() {
        let syslog = Syslog {
            target: SyslogTarget {
                transport: SyslogTransport::Udp,
                address: "127.0.0.1:1".into(),
                facility: 16,
            },
            connection: None,
            hostname: "gw".into(),
            procid: "42".into(),
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
        };
        let mut out = Vec::new();
        let mark = Mark {
            end: 0,
            severity: Severity::Warning,
            kind: "request",
        };
        syslog.header(&mut out, mark, "2026-11-29T10:00:00.123Z");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<132>1 2026-11-29T10:00:00.123Z gw zonegate 42 request - "
        );
    }

    #[test]
    fn lines_are_cut_at_their_marks_without_newlines() {
        let bytes = b"{\"a\":1}\n{\"b\":2}\n";
        let mark = |end| Mark {
            end,
            severity: Severity::Informational,
            kind: "request",
        };
        let marks = [mark(8), mark(16)];
        let got: Vec<&[u8]> = lines(bytes, &marks).map(|(l, _)| l).collect();
        assert_eq!(got, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
    }
}
