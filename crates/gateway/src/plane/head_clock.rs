//! The request-head deadline of an HTTP/1.1 connection.
//!
//! hyper's own head timer is off: it also ran while the connection was idle, so it could only
//! be as long as the idle timeout, and it cost a timer per request. A slow-loris client, which
//! keeps a head coming a byte at a time, is bounded here instead: the connection's reads note
//! when the first byte of a head arrived (a byte read while no request is in flight), the
//! service notes when the head was complete (a request began), and the connection's owner
//! closes it when a head has been arriving for longer than
//! `[connections] request_head_timeout_s`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::service::Activity;

/// An HTTP/1.1 connection's I/O, noting on its activity when bytes of a request head arrive.
pub struct HeadClock<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> HeadClock<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> HeadClock<T> {
        HeadClock { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadClock<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadClock<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
