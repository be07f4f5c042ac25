//! Opening connections (TCP, TLS, HTTP/1.1 or HTTP/2) and naming what went wrong.
//!
//! Failures are sorted by phase first: a failed TCP connect is `connect`, a failed handshake
//! is `tls`, and only errors on an established connection are looked at more closely (reset,
//! closed, timeout, protocol). The same kinds appear in the report's error counts.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::target::Target;

/// What went wrong with a request that got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection could not be made (refused, unreachable).
    Connect,
    /// The TLS handshake failed, or the server refused the client certificate with an alert.
    Tls,
    /// No answer within `--timeout` (connect, handshake or response).
    Timeout,
    /// The connection was reset or the pipe broke mid-request.
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The response was not valid HTTP, or another HTTP-level failure.
    Protocol,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
        }
    }

    /// Names an error seen on an established connection by walking its cause chain.
    pub fn of_request_error(error: &(dyn StdError + 'static)) -> ErrorKind {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = cause {
            if e.is::<rustls::Error>() {
                return ErrorKind::Tls;
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => return ErrorKind::Reset,
                    io::ErrorKind::TimedOut => return ErrorKind::Timeout,
                    io::ErrorKind::UnexpectedEof => return ErrorKind::Closed,
                    _ => {}
                }
                // io::Error's `source` skips the error it wraps; look at that one itself.
                if let Some(inner) = io.get_ref() {
                    cause = Some(inner);
                    continue;
                }
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_timeout() {
                    return ErrorKind::Timeout;
                }
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    // A more precise cause (reset, TLS alert) may sit below.
                    if let Some(kind) = h.source().map(ErrorKind::of_request_error) {
                        if kind != ErrorKind::Protocol {
                            return kind;
                        }
                    }
                    return ErrorKind::Closed;
                }
            }
            cause = e.source();
        }
        ErrorKind::Protocol
    }
}

/// A ready-to-use HTTP connection.
pub enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// A new connection and what its opening cost.
pub struct Opened {
    pub sender: Sender,
    /// TCP connect + TLS handshake + HTTP/2 preface.
    pub took: Duration,
    /// Full or resumed (TLS only).
    pub handshake: Option<HandshakeKind>,
}

/// How to open connections to the target for one identity.
#[derive(Clone)]
pub struct Connector {
    pub target: Arc<Target>,
    /// `None` for a plain-HTTP target.
    pub tls: Option<TlsConnector>,
    pub server_name: ServerName<'static>,
    pub h2: bool,
    pub timeout: Duration,
}

impl Connector {
    pub fn new(
        target: Arc<Target>,
        tls: Option<Arc<ClientConfig>>,
        server_name: ServerName<'static>,
        h2: bool,
        timeout: Duration,
    ) -> Connector {
        Connector {
            target,
            tls: tls.map(TlsConnector::from),
            server_name,
            h2,
            timeout,
        }
    }

    /// Opens one connection: everything up to a usable HTTP sender, within the timeout.
    pub async fn open(&self) -> Result<Opened, ErrorKind> {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.open_inner()).await {
            Ok(Ok((sender, handshake))) => Ok(Opened {
                sender,
                took: started.elapsed(),
                handshake,
            }),
            Ok(Err(kind)) => Err(kind),
            Err(_) => Err(ErrorKind::Timeout),
        }
    }

    async fn open_inner(&self) -> Result<(Sender, Option<HandshakeKind>), ErrorKind> {
        let tcp = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Connect,
            })?;
        // Small requests and responses: do not let Nagle hold a request back.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok((self.handshake_http(TokioIo::new(tcp)).await?, None)),
            Some(tls) => {
                let stream = tls
                    .connect(self.server_name.clone(), tcp)
                    .await
                    .map_err(|_| ErrorKind::Tls)?;
                let kind = stream.get_ref().1.handshake_kind();
                Ok((self.handshake_http(TokioIo::new(stream)).await?, kind))
            }
        }
    }

    async fn handshake_http<T>(&self, io: TokioIo<T>) -> Result<Sender, ErrorKind>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if self.h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| ErrorKind::of_request_error(&e))?;
            tokio::spawn(conn);
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| ErrorKind::of_request_error(&e))?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_named_by_kind() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(ErrorKind::of_request_error(&reset), ErrorKind::Reset);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(ErrorKind::of_request_error(&eof), ErrorKind::Closed);
        let other = io::Error::other("odd");
        assert_eq!(ErrorKind::of_request_error(&other), ErrorKind::Protocol);
    }

    #[test]
    fn a_tls_alert_inside_an_io_error_is_tls() {
        // How tokio-rustls reports a fatal alert received after the handshake (TLS 1.3 servers
        // refuse a client certificate this way).
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, alert);
        assert_eq!(ErrorKind::of_request_error(&wrapped), ErrorKind::Tls);
    }

    #[test]
    fn kinds_have_distinct_names() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
