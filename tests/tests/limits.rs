//! Per-identity limits over real mTLS: a rule's request rate per identity (429, Retry-After,
//! an event naming the limit), its counters kept across a reload that leaves the limit as it
//! was and reset by one that changes it, and a route's requests in flight per identity.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use zonegate_e2e::*;

fn shop_policy(limit: &str) -> String {
    format!(
        r#"
[[rule]]
id = "shop-charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/*"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/charge"]
limit = {limit}
"#
    )
}

/// Sends `n` requests one after another; the statuses, and the Retry-After of the 429s.
async fn burst(client: &mut Client, n: usize) -> (Vec<u16>, Vec<u64>) {
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for _ in 0..n {
        let reply = client.get("/payments/charge").await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(
                reply.json()["error"],
                "too_many_requests",
                "{:?}",
                reply.body
            );
            let seconds = reply.headers["retry-after"].to_str().unwrap();
            retry_after.push(seconds.parse().unwrap());
        }
    }
    (statuses, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_rate_limit_holds_each_identity_to_its_own_bucket_across_a_reload() {
    let gw = Gateway::start(Setup {
        policy: shop_policy(r#"{ rate = "1/m", burst = 4 }"#),
        ..Setup::default()
    })
    .await;
    let mut checkout = gw.client(CHECKOUT, false).await;
    let (statuses, retry_after) = burst(&mut checkout, 8).await;
    // The burst, then one a minute: eight requests in well under a second get four through.
    assert_eq!(&statuses[..4], [200; 4], "{statuses:?}");
    assert_eq!(&statuses[4..], [429; 4], "{statuses:?}");
    // The next token is a minute away, less the moments since the burst began.
    assert!(
        retry_after.iter().all(|s| (59..=60).contains(s)),
        "{retry_after:?}"
    );
    // Per identity: cart, allowed by the same rule, has a bucket of its own.
    let mut cart = gw.client(CART, true).await;
    let (statuses, _) = burst(&mut cart, 4).await;
    assert_eq!(statuses, [200; 4]);

    let limited = gw.events_where(1, |e| e["reason"] == "rate_limited").await;
    let e = &limited[0];
    assert_eq!(e["status"], 429, "{e}");
    assert_eq!(e["decision"], "deny", "{e}");
    assert_eq!(e["rule_id"], "shop-charges", "{e}");
    assert_eq!(e["source_spiffe_id"], CHECKOUT, "{e}");
    assert_eq!(
        e["detail"], "rule shop-charges: over 1/m (burst 4), per identity",
        "{e}"
    );

    // A reload that leaves the limit as it was keeps checkout's empty bucket...
    gw.replace_file(
        "policy.toml",
        &format!(
            "{}\n[[rule]]\nid = \"unrelated\"\neffect = \"allow\"\nzones = [\"payments\"]\n",
            shop_policy(r#"{ rate = "1/m", burst = 4 }"#)
        ),
    );
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    let (statuses, _) = burst(&mut checkout, 2).await;
    assert_eq!(statuses, [429, 429], "a reload refilled the bucket");
    // ...and one that changes it starts afresh.
    gw.replace_file(
        "policy.toml",
        &shop_policy(r#"{ rate = "1/m", burst = 6 }"#),
    );
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    let (statuses, _) = burst(&mut checkout, 7).await;
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);
}

/// An upstream that answers each request after `delay`.
async fn slow_upstream(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_in_flight_limit_refuses_one_identitys_third_concurrent_request() {
    let slow = slow_upstream(Duration::from_millis(2000)).await;
    let gw = Gateway::start(Setup {
        policy: format!(
            "{POLICY}\n[[rule]]\nid = \"shop-slow\"\neffect = \"allow\"\nzones = [\"shop\"]\nroutes = [\"slow\"]\n"
        ),
        extra_config: format!(
            "[[route]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slow\"\n\
             limit = {{ in_flight = 2 }}\n[upstream.slow]\naddresses = [\"{slow}\"]\n"
        ),
        ..Setup::default()
    })
    .await;
    // Every connection is made first, so that only the requests race.
    let mut checkout = gw.client(CHECKOUT, true).await;
    let mut second = gw.client(CHECKOUT, false).await;
    let mut other = gw.client(CHECKOUT, true).await;
    let mut cart = gw.client(CART, true).await;
    let (a, b, c, d) = tokio::join!(
        checkout.get("/slow/a"),
        second.get("/slow/b"),
        async {
            // Third, once the first two are surely in flight (the upstream holds them 2 s).
            tokio::time::sleep(Duration::from_millis(700)).await;
            other.get("/slow/c").await
        },
        async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cart.get("/slow/d").await
        },
    );
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(c.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", c.body);
    assert!(c.headers.get("retry-after").is_none());
    // Another identity is counted apart.
    assert_eq!(d.status, StatusCode::OK);
    let refused = gw
        .events_where(1, |e| e["reason"] == "concurrency_limited")
        .await;
    assert_eq!(
        refused[0]["detail"],
        "route slow: 2 requests in flight already (2 in flight, per identity)"
    );
    // Once they are done, checkout gets through again.
    assert_eq!(other.get("/slow/e").await.status, StatusCode::OK);
}
