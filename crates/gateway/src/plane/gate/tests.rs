use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use tokio::sync::Notify;

use super::Watch;

/// A future that counts its polls and never ends.
struct Counted(Arc<AtomicUsize>);

impl Future for Counted {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }
}

/// The watchers are polled once, then not again while only the connection wakes; when one
/// of their wakers fires they are polled, and their answer ends the wait.
#[tokio::test(flavor = "current_thread")]
async fn watchers_are_polled_only_when_their_waker_fired() {
    let watch = Watch::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Notify::new());
    let conn_wake = Arc::new(Notify::new());
    // The connection: wakes ten times (as a busy connection does) and never ends.
    let mut conn = pin!({
        let conn_wake = conn_wake.clone();
        async move {
            loop {
                conn_wake.notified().await;
            }
        }
    });
    let watchers = pin!({
        let polls = polls.clone();
        let stop = stop.clone();
        async move {
            let mut counted = pin!(Counted(polls));
            let mut stopped = pin!(stop.notified());
            std::future::poll_fn(|cx| {
                let _ = counted.as_mut().poll(cx);
                stopped.as_mut().poll(cx)
            })
            .await;
            "stopped"
        }
    });
    let driver = {
        let conn_wake = conn_wake.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                conn_wake.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            stop.notify_one();
        })
    };
    let out = watch.first(conn.as_mut(), watchers).await;
    driver.await.unwrap();
    assert!(matches!(out, Either::Right("stopped")));
    // Once at first, once when `stop` fired: not on the connection's ten wakes.
    assert_eq!(polls.load(Ordering::SeqCst), 2);
}

/// The connection's end wins over watchers that have not fired, and a later call on the same
/// gate polls its new watchers at once.
#[tokio::test(flavor = "current_thread")]
async fn the_connections_end_is_returned_and_new_watchers_start_polled() {
    let watch = Watch::new();
    let mut conn = pin!(async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        7
    });
    let out = watch
        .first(conn.as_mut(), pin!(std::future::pending::<()>()))
        .await;
    assert!(matches!(out, Either::Left(7)));
    let mut never = pin!(std::future::pending::<()>());
    let out = watch.first(never.as_mut(), pin!(async { "at once" })).await;
    assert!(matches!(out, Either::Right("at once")));
}
