//! A client connection beside the rare things that may end it (a shutdown, its certificate's
//! expiry, a new snapshot, the idle check), polled so that the rare ones cost nothing per
//! request.
//!
//! `tokio::select!` polls every branch each time the task wakes, and a connection's task wakes
//! several times per request (the client's bytes, the upstream's answer, the write back): five
//! watchers polled each time were ~1,000 instructions per request. Here the watchers run under
//! a waker of their own that marks when one of them fired, and are polled only then.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::future::Either;
use futures::task::AtomicWaker;

/// Marks that a watcher's waker fired, and wakes the connection's task.
pub struct Gate {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// One connection's gate, and the waker its watchers are polled with.
pub struct Watch {
    gate: Arc<Gate>,
    waker: Waker,
}

impl Watch {
    pub fn new() -> Watch {
        let gate = Arc::new(Gate {
            fired: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        Watch {
            waker: Waker::from(gate.clone()),
            gate,
        }
    }

    /// Whichever comes first: `conn`'s end or `watchers`' answer. `conn` is polled on every
    /// wake; `watchers` (made anew for each call) once at first, then only when one of the
    /// wakers they registered fired. Both are pinned by the caller, so an idle connection's
    /// task holds them once, not again in this future.
    pub async fn first<C, W>(
        &self,
        mut conn: Pin<&mut C>,
        mut watchers: Pin<&mut W>,
    ) -> Either<C::Output, W::Output>
    where
        C: Future,
        W: Future,
    {
        self.gate.fired.store(true, Ordering::Release);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                return Poll::Ready(Either::Left(out));
            }
            // Registered before the mark is read: a watcher firing in between finds this
            // task's waker and wakes it again.
            self.gate.task.register(cx.waker());
            if self.gate.fired.swap(false, Ordering::AcqRel) {
                let mut watch_cx = Context::from_waker(&self.waker);
                if let Poll::Ready(out) = watchers.as_mut().poll(&mut watch_cx) {
                    return Poll::Ready(Either::Right(out));
                }
            }
            Poll::Pending
        })
        .await
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

#[cfg(test)]
mod tests;
