//! The run itself: lanes that send requests, the open-loop pacer, the once-a-second progress
//! line, and the end of the run.
//!
//! A *lane* is one request in flight at a time: an HTTP/1.1 keep-alive connection, one HTTP/2
//! stream of a shared connection, or a loop of one-request connections. Lanes take tickets from
//! the shared [`Budget`] in a closed loop; in an open loop the pacer takes them from the budget
//! and hands each to a free lane at its intended time. The pacer is an OS thread because tokio's
//! timer has millisecond granularity, coarser than the latencies a loopback benchmark measures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{ErrorKind, Sender};
use crate::plan::{Identity, Mode, Plan, MAX_DURATION};
use crate::report::{Report, RunShape};
use crate::schedule::{latency, Budget, Ticket};
use crate::stats::{Outcome, Recorder, Sample};

/// Pause after a failed connection attempt in a closed loop, so a server that is down is not
/// hammered in a tight loop (an open loop is paced anyway).
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// The pacer sleeps until this close to a send time, then yields until it is due: the OS
/// sleep overshoots by tens of microseconds.
const PACER_SPIN: Duration = Duration::from_micros(80);
/// Longest single sleep of the pacer, so it notices a stopped run quickly.
const PACER_SLICE: Duration = Duration::from_millis(50);
/// `--hold`: connections being opened at once, so thousands of handshakes do not overflow the
/// server's accept queue.
const HOLD_OPENING: usize = 64;

struct Ctx {
    plan: Arc<Plan>,
    budget: Arc<Budget>,
    recorder: Arc<Recorder>,
    /// Open loop: tickets the pacer hands out at their intended send times. Lanes queue on the
    /// (fair) mutex, so each ticket wakes one lane, however many lanes there are.
    tickets: Option<Mutex<mpsc::Receiver<Ticket>>>,
    /// `--hold`: connections that answered again after the idle period.
    held: AtomicU64,
}

/// How an HTTP/2 stream lane ended.
enum StreamEnd {
    /// No more tickets.
    Done,
    /// The connection died; the connection task opens a new one.
    ConnectionLost,
}

/// Runs `plan` to its end and reports. `Err` only when the run could not start.
pub async fn run(plan: Arc<Plan>) -> Result<Report, String> {
    let start = Instant::now();
    let budget = Arc::new(Budget::new(
        start,
        plan.warmup,
        plan.duration,
        plan.max_requests,
        plan.rate,
        MAX_DURATION,
    ));
    let tickets = match budget.schedule() {
        Some(_) => Some(Mutex::new(spawn_pacer(budget.clone(), plan.connections)?)),
        None => None,
    };
    let ctx = Arc::new(Ctx {
        recorder: Arc::new(Recorder::new(plan.threads * 4)),
        plan,
        budget,
        tickets,
        held: AtomicU64::new(0),
    });
    let progress = ctx
        .plan
        .progress
        .then(|| tokio::spawn(progress(ctx.clone())));
    let interrupt = {
        let budget = ctx.budget.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the requests in flight");
                budget.stop();
            }
        })
    };

    let mut lanes = JoinSet::new();
    let opening = Arc::new(Semaphore::new(HOLD_OPENING));
    for lane in 0..ctx.plan.connections {
        let ctx = ctx.clone();
        match ctx.plan.mode {
            Mode::KeepAlive => lanes.spawn(keepalive_lane(ctx, lane)),
            Mode::Multiplexed { streams } => {
                lanes.spawn(multiplexed_connection(ctx, lane, streams))
            }
            Mode::NewConnection => lanes.spawn(new_connection_lane(ctx, lane)),
            Mode::Hold => lanes.spawn(hold_lane(ctx, lane, opening.clone())),
        };
    }
    // Every request has a timeout, so lanes end soon after the deadline; this bound is only
    // for a lane stuck somewhere no timeout covers.
    let hard_end = ctx.budget.deadline + ctx.plan.timeout * 2 + Duration::from_secs(1);
    let drain = async { while lanes.join_next().await.is_some() {} };
    if tokio::time::timeout_at(hard_end.into(), drain)
        .await
        .is_err()
    {
        eprintln!("some connections did not finish in time; aborting them");
    }
    let end = Instant::now();
    ctx.budget.stop();
    lanes.abort_all();
    interrupt.abort();
    if let Some(p) = progress {
        p.abort();
    }

    let plan = &ctx.plan;
    let shape = RunShape {
        target: plan.target.url(),
        mode: plan.mode_name().into(),
        http2: plan.http2,
        resume: plan.resume,
        rate: plan.rate,
        connections: plan.connections,
        streams: plan.streams(),
        threads: plan.threads,
        warmup_s: plan.warmup.as_secs_f64(),
    };
    let elapsed = end.saturating_duration_since(ctx.budget.measure_from);
    let identities: Vec<String> = plan.identities.iter().map(|i| i.name.clone()).collect();
    let requests: Vec<String> = plan.requests.iter().map(|r| r.label.clone()).collect();
    let mut report = Report::new(
        shape,
        &ctx.recorder.merged(),
        elapsed.as_secs_f64(),
        &identities,
        &requests,
    );
    if plan.mode == Mode::Hold {
        report.held = Some(ctx.held.load(Ordering::Relaxed));
    }
    Ok(report)
}

impl Ctx {
    /// The next ticket (from the pacer in an open loop); `None` when the run is over.
    async fn next(&self) -> Option<Ticket> {
        match &self.tickets {
            Some(tickets) => tickets.lock().await.recv().await,
            None => self.budget.claim(Instant::now()),
        }
    }

    /// Opens a connection for `identity`, counting it when measuring.
    async fn open(&self, identity: &Identity, shard: usize) -> Result<Sender, ErrorKind> {
        let opened = identity.connector.open().await?;
        if Instant::now() >= self.budget.measure_from {
            self.recorder
                .connection(shard, opened.took, opened.handshake);
        }
        Ok(opened.sender)
    }

    fn record(
        &self,
        shard: usize,
        ticket: &Ticket,
        (identity, request): (usize, usize),
        outcome: Outcome,
        sent: Instant,
    ) {
        let done = Instant::now();
        self.recorder.request(
            shard,
            ticket.measured,
            Sample {
                identity,
                request,
                outcome,
                latency: latency(ticket, sent, done),
                service: done.saturating_duration_since(sent),
            },
        );
    }

    async fn back_off(&self) {
        if self.plan.rate.is_none() {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }

    /// The request of kind `request` as `identity` sends it.
    fn build(
        &self,
        identity: &Identity,
        request: usize,
        close: bool,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let plan = &self.plan;
        let kind = &plan.requests[request];
        let mut builder = Request::builder().method(kind.method.clone());
        if plan.http2 {
            let uri = Uri::builder()
                .scheme(if plan.target.tls { "https" } else { "http" })
                .authority(plan.target.authority.clone())
                .path_and_query(kind.path.clone())
                .build()?;
            builder = builder.uri(uri);
        } else {
            builder = builder
                .uri(kind.path.clone())
                .header(HOST, plan.target.authority.as_str());
            if close {
                builder = builder.header(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if let Some(headers) = builder.headers_mut() {
            headers.extend(plan.headers.clone());
            if let Some(auth) = &identity.authorization {
                headers.insert(AUTHORIZATION, auth.clone());
            }
        }
        builder.body(Full::new(Bytes::new()))
    }

    /// One request and its whole response body, within the timeout.
    async fn exchange(
        &self,
        sender: &mut Sender,
        identity: &Identity,
        request: usize,
        close: bool,
    ) -> Outcome {
        let Ok(req) = self.build(identity, request, close) else {
            return Outcome::Error(ErrorKind::Protocol);
        };
        let exchange = async {
            let response = match sender {
                Sender::H1(s) => s.send_request(req).await?,
                Sender::H2(s) => s.send_request(req).await?,
            };
            let status = response.status().as_u16();
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                frame?;
            }
            Ok::<u16, hyper::Error>(status)
        };
        match tokio::time::timeout(self.plan.timeout, exchange).await {
            Ok(Ok(status)) => Outcome::Status(status),
            Ok(Err(e)) => Outcome::Error(ErrorKind::of_request_error(&e)),
            Err(_) => Outcome::Error(ErrorKind::Timeout),
        }
    }
}

/// A keep-alive connection that is still usable (the server may have closed it, e.g. after a
/// 401 or `Connection: close`: that is a reconnect, not a failed request).
async fn usable(conn: Option<Sender>) -> Option<Sender> {
    match conn? {
        Sender::H1(mut s) => s.ready().await.ok().map(|()| Sender::H1(s)),
        Sender::H2(mut s) => s.ready().await.ok().map(|()| Sender::H2(s)),
    }
}

/// HTTP/1.1 keep-alive: one connection, one request at a time, reconnecting when it closes.
/// The identity is chosen per connection, as a workload holds one SVID per connection.
async fn keepalive_lane(ctx: Arc<Ctx>, lane: usize) {
    let id = ctx.plan.identity_mix.pick(lane as u64);
    let identity = &ctx.plan.identities[id];
    // Connect before the first request, so steady-state latency does not include it.
    let mut conn = ctx.open(identity, lane).await.ok();
    while let Some(ticket) = ctx.next().await {
        let request = ctx.plan.request_mix.pick(ticket.index);
        let sent = Instant::now();
        let mut sender = match usable(conn.take()).await {
            Some(s) => s,
            None => match ctx.open(identity, lane).await {
                Ok(s) => s,
                Err(kind) => {
                    ctx.record(lane, &ticket, (id, request), Outcome::Error(kind), sent);
                    ctx.back_off().await;
                    continue;
                }
            },
        };
        let outcome = ctx.exchange(&mut sender, identity, request, false).await;
        ctx.record(lane, &ticket, (id, request), outcome, sent);
        if let Outcome::Status(_) = outcome {
            conn = Some(sender);
        }
    }
}

/// A new connection (TCP + TLS handshake) per request; latency includes both. The identity is
/// chosen per request, so every pair of the identity and request mixes comes up in proportion.
async fn new_connection_lane(ctx: Arc<Ctx>, lane: usize) {
    let requests_per_cycle = ctx.plan.request_mix.len() as u64;
    while let Some(ticket) = ctx.next().await {
        let id = ctx
            .plan
            .identity_mix
            .pick(ticket.index / requests_per_cycle);
        let identity = &ctx.plan.identities[id];
        let request = ctx.plan.request_mix.pick(ticket.index);
        let sent = Instant::now();
        let outcome = match ctx.open(identity, lane).await {
            Ok(mut sender) => ctx.exchange(&mut sender, identity, request, true).await,
            Err(kind) => Outcome::Error(kind),
        };
        ctx.record(lane, &ticket, (id, request), outcome, sent);
        if let Outcome::Error(ErrorKind::Connect) = outcome {
            ctx.back_off().await;
        }
    }
}

/// One HTTP/2 connection carrying `streams` lanes; reopened when it dies.
async fn multiplexed_connection(ctx: Arc<Ctx>, index: usize, streams: usize) {
    let id = ctx.plan.identity_mix.pick(index as u64);
    let identity = &ctx.plan.identities[id];
    loop {
        if ctx.budget.is_stopped() {
            return;
        }
        let sender = match ctx.open(identity, index).await {
            Ok(Sender::H2(s)) => s,
            // The connector of an HTTP/2 plan only makes HTTP/2 connections.
            Ok(Sender::H1(_)) => return,
            Err(kind) => {
                // Charge the failure to the request that would have gone out, so it shows.
                let Some(ticket) = ctx.next().await else {
                    return;
                };
                let request = ctx.plan.request_mix.pick(ticket.index);
                ctx.record(
                    index,
                    &ticket,
                    (id, request),
                    Outcome::Error(kind),
                    Instant::now(),
                );
                ctx.back_off().await;
                continue;
            }
        };
        let mut lanes = JoinSet::new();
        for _ in 0..streams {
            lanes.spawn(stream_lane(ctx.clone(), sender.clone(), id, index));
        }
        drop(sender);
        let mut lost = false;
        while let Some(end) = lanes.join_next().await {
            lost |= matches!(end, Ok(StreamEnd::ConnectionLost));
        }
        if !lost {
            return;
        }
    }
}

async fn stream_lane(
    ctx: Arc<Ctx>,
    sender: http2::SendRequest<Full<Bytes>>,
    id: usize,
    shard: usize,
) -> StreamEnd {
    let identity = &ctx.plan.identities[id];
    while let Some(ticket) = ctx.next().await {
        let request = ctx.plan.request_mix.pick(ticket.index);
        let sent = Instant::now();
        let mut s = Sender::H2(sender.clone());
        let outcome = match usable(Some(s)).await {
            Some(ready) => {
                s = ready;
                ctx.exchange(&mut s, identity, request, false).await
            }
            None => Outcome::Error(ErrorKind::Closed),
        };
        ctx.record(shard, &ticket, (id, request), outcome, sent);
        if sender.is_closed() {
            return StreamEnd::ConnectionLost;
        }
    }
    StreamEnd::Done
}

/// `--hold`: open a connection and make one request, stay idle until the deadline, then make
/// one more request on the same connection. Both requests are recorded; the second one counts
/// the connection as held when it gets a response.
async fn hold_lane(ctx: Arc<Ctx>, lane: usize, opening: Arc<Semaphore>) {
    let id = ctx.plan.identity_mix.pick(lane as u64);
    let identity = &ctx.plan.identities[id];
    let ticket = Ticket {
        index: lane as u64,
        intended: None,
        measured: true,
    };
    let request = ctx.plan.request_mix.pick(ticket.index);
    let mut sender = {
        // The semaphore is never closed; if it were, opening without it is still correct.
        let _permit = opening.acquire().await.ok();
        let sent = Instant::now();
        let mut sender = match ctx.open(identity, lane).await {
            Ok(s) => s,
            Err(kind) => {
                ctx.record(lane, &ticket, (id, request), Outcome::Error(kind), sent);
                return;
            }
        };
        let outcome = ctx.exchange(&mut sender, identity, request, false).await;
        ctx.record(lane, &ticket, (id, request), outcome, sent);
        if let Outcome::Error(_) = outcome {
            return;
        }
        sender
    };
    tokio::select! {
        _ = tokio::time::sleep_until(ctx.budget.deadline.into()) => {}
        _ = wait_stopped(&ctx.budget) => {}
    }
    let sent = Instant::now();
    let outcome = match usable(Some(sender)).await {
        Some(ready) => {
            sender = ready;
            ctx.exchange(&mut sender, identity, request, false).await
        }
        None => Outcome::Error(ErrorKind::Closed),
    };
    ctx.record(lane, &ticket, (id, request), outcome, sent);
    if let Outcome::Status(_) = outcome {
        ctx.held.fetch_add(1, Ordering::Relaxed);
    }
}

/// Resolves once the run is stopped early (Ctrl-C).
async fn wait_stopped(budget: &Budget) {
    while !budget.is_stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hands out open-loop tickets at their intended send times, from an OS thread. The queue
/// holds one ticket per lane: when every lane is busy, tickets wait there (and the pacer
/// behind them), and each is still charged from its own intended time. Ends at the deadline,
/// when the budget runs out, or when the run stops.
fn spawn_pacer(budget: Arc<Budget>, lanes: usize) -> Result<mpsc::Receiver<Ticket>, String> {
    let (tx, rx) = mpsc::channel(lanes.max(1));
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            // The pacer is the only claimer, so tickets come in schedule order.
            while let Some(ticket) = budget.claim(Instant::now()) {
                let due = ticket.intended.unwrap_or_else(Instant::now);
                if !sleep_until(due, &budget) || tx.blocking_send(ticket).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the pacer thread: {e}"))?;
    Ok(rx)
}

/// Sleeps until `due` with sub-millisecond precision; `false` if the run stopped meanwhile.
fn sleep_until(due: Instant, budget: &Budget) -> bool {
    loop {
        if budget.is_stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        let left = due - now;
        if left > PACER_SPIN {
            std::thread::sleep((left - PACER_SPIN).min(PACER_SLICE));
        } else {
            std::thread::yield_now();
        }
    }
}

/// Once a second on stderr: phase, rate over the last second, totals.
async fn progress(ctx: Arc<Ctx>) {
    use std::sync::atomic::Ordering::Relaxed;
    let start = ctx.budget.start();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0u64;
    loop {
        tick.tick().await;
        let responses = ctx.recorder.live.responses.load(Relaxed);
        let errors = ctx.recorder.live.errors.load(Relaxed);
        let phase = if Instant::now() < ctx.budget.measure_from {
            "warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "[{:>6.1}s] {phase:<9} {:>9} resp/s  {responses:>10} responses  {errors} errors",
            start.elapsed().as_secs_f64(),
            responses - last,
        );
        last = responses;
    }
}
