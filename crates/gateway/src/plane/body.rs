//! The bodies the data plane streams: the client's request body on its way to the upstream
//! (bounded by the route's limit), and the answer the client gets (the gateway's own, or the
//! upstream's streamed through). Both pass frames through as they come, so backpressure holds
//! end to end and trailers (gRPC) are kept.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::limits::Permits;
use super::service::{Activity, InFlight};
use super::upstream::Lease;
use super::Shared;
use crate::events::{now_rfc3339, RequestEndEvent, KIND_REQUEST_END, SCHEMA};
use crate::ids::{next_id, Id};

/// A response that streams this long gets an event when it ends, beside the one written when
/// it was decided; a shorter one only if it did not end normally.
const LONG_LIVED: Duration = Duration::from_secs(1);

/// The client's request body, cut off at the route's limit.
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Bytes still allowed; `u64::MAX` when the route sets no limit.
    remaining: u64,
}

/// The request body went past the route's limit.
#[derive(Debug)]
pub struct BodyTooLarge;

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body over the route's limit")
    }
}

impl std::error::Error for BodyTooLarge {}

impl RequestBody {
    pub fn new(inner: Incoming, limit: Option<u64>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            remaining: limit.unwrap_or(u64::MAX),
        }
    }

    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            remaining: 0,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// What the client receives.
// The upstream's variant is the large one and the usual one; boxing it would cost an
// allocation per request to save bytes in the connection's (or stream's) one slot for it.
#[allow(clippy::large_enum_variant)]
pub enum ResponseBody {
    /// The gateway's own answer.
    Answer(Option<Bytes>),
    /// The upstream's body, and the upstream connection to give back once it is read.
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
        /// Held until the body is done with: the connection counts the request as in flight.
        _in_flight: InFlight,
        /// Its places under the in-flight limits that cover it, likewise.
        _limits: Permits,
        /// For a request that has an identity event: how its response ended. Not boxed: an
        /// allocation per request costs more than the ~100 bytes it adds to the connection's
        /// one slot for the response body.
        end: Option<StreamEnd>,
        /// When the request's token expires: a response still streaming then is cut (the
        /// connection's certificate is watched by the connection itself).
        expires: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

/// A response cut by the gateway because the token that admitted it expired.
#[derive(Debug)]
pub struct TokenExpired;

impl fmt::Display for TokenExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request's token expired while its response streamed")
    }
}

impl std::error::Error for TokenExpired {}

/// How an evented request's response ended, written as a `request_end` event when it was
/// long-lived or did not end normally (see [`LONG_LIVED`]).
pub struct StreamEnd {
    pub shared: Arc<Shared>,
    pub activity: Arc<Activity>,
    pub request_id: Id,
    pub route: Option<Arc<str>>,
    pub status: u16,
    pub started: Instant,
    pub bytes: u64,
    pub complete: bool,
    pub upstream_error: bool,
    /// Set when the gateway itself ended this response (its token expired).
    pub cut: Option<&'static str>,
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let end = if self.complete {
            "complete"
        } else if let Some(cut) = self.cut {
            cut
        } else if self.upstream_error {
            "upstream_error"
        } else {
            self.activity.cut_reason().unwrap_or("abandoned")
        };
        if end == "complete" && elapsed < LONG_LIVED {
            return;
        }
        let snapshot = self.shared.store.load();
        self.shared.events.emit(RequestEndEvent {
            schema: SCHEMA,
            kind: KIND_REQUEST_END,
            time: now_rfc3339(),
            event_id: next_id(),
            request_id: self.request_id.as_str().to_owned(),
            route: self.route.as_deref().map(str::to_string),
            status: self.status,
            end,
            response_bytes: self.bytes,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            destination_zone: snapshot.config.zone.clone(),
        });
    }
}

impl ResponseBody {
    pub fn answer(bytes: Bytes) -> ResponseBody {
        ResponseBody::Answer(Some(bytes))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Answer(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream {
                inner,
                lease,
                end,
                expires,
                ..
            } => {
                if let Some(deadline) = expires {
                    if deadline.as_mut().poll(cx).is_ready() {
                        // The upstream connection is mid-response: it is not given back.
                        lease.take();
                        *expires = None;
                        if let Some(end) = end {
                            end.cut = Some("credential_expired");
                        }
                        return Poll::Ready(Some(Err(Box::new(TokenExpired))));
                    }
                }
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                // The server stops polling a body of known length once it has its last byte,
                // so the end is taken from the body itself, not only from a final `None`.
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    _ => false,
                };
                if let Some(end) = end {
                    match &polled {
                        Poll::Ready(Some(Ok(frame))) => {
                            end.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        Poll::Ready(Some(Err(_))) => end.upstream_error = true,
                        _ => {}
                    }
                    end.complete |= ended;
                }
                if ended {
                    if let Some(lease) = lease.take() {
                        lease.release();
                    }
                }
                polled.map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Answer(bytes) => bytes.is_none(),
            ResponseBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Answer(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
