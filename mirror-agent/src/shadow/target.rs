//! One shadow target at run time: a bounded queue filled by the router,
//! `max_in_flight` workers that take requests from it, and the target's
//! addresses with their connection pools.
//!
//! ```text
//! router ──try_send──▶ [queue: queue_size] ──▶ worker × max_in_flight ──▶ pooled TcpStream
//!   (over the rate:     one job out per        pick address (round robin),    write head + body,
//!    rate_limited;      client connection      idle conn or connect           read response to its end
//!    full: queue_full)
//! ```
//!
//! The copies of one captured client connection go out one at a time, in
//! v1's order, each once the one before ended (see `queue`): as the client
//! did with v1, so that a service that keeps state answers as v1 did.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info};

use super::endpoints::{AddressState, Endpoints, Resolve, connect, literal_ip};
use super::rate::RateLimit;
use super::reply::{AnswerFailure, Answered, NoAnswer, Reply};
use super::stats::{DropReason, StatusClass, TargetStats};
use super::tls::{TlsClient, TlsSettings};
use super::wire::{read_response, stream_error, write_request, write_streamed};

mod queue;

use crate::clock::monotonic_ns;
use crate::http::{Answer, BodyReader, StreamError};
use crate::route::{PreparedRequest, TargetUrl};
pub use queue::FlowTag;
use queue::{Job, PushError, Queue};

/// Transport settings of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSettings {
    /// Requests waiting for a worker; beyond it they are dropped
    /// (`queue_full`). Default 1024.
    pub queue_size: usize,
    /// Requests sent at once (workers, and so at most this many open
    /// connections per address). Default 32.
    pub max_in_flight: usize,
    /// Default 3 s: Linux retransmits a lost SYN after 1 s, so a 1 s timeout
    /// would turn one lost SYN into a dropped copy.
    pub connect_timeout: Duration,
    /// From the first byte written to the last byte of the response read.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// How often the host name is resolved again. Default 10 s.
    pub resolve_interval: Duration,
    /// How long an idle keep-alive connection is kept. Default 30 s.
    pub idle_timeout: Duration,
    /// A request captured longer ago than this when a worker takes it is
    /// dropped (`expired`) rather than sent late: after an outage the
    /// shadow gets current traffic, not a replay of the past. Default 3 s.
    pub max_age: Duration,
    /// Keep each answer (status, headers, body up to this many bytes) for
    /// the comparison; `None`: answers are read and discarded.
    pub keep_answer: Option<usize>,
    /// At most this many requests a second are queued (`--rate-limit`);
    /// the excess is dropped (`rate_limited`). `None`: no limit.
    pub rate_limit: Option<u32>,
    /// How an `https://` target's certificate is checked (`ca_file`,
    /// `insecure_skip_verify`); `None` for http targets, and the defaults
    /// (system roots, verified) for an https one.
    pub tls: Option<TlsSettings>,
}

impl Default for TargetSettings {
    fn default() -> Self {
        Self {
            queue_size: 1024,
            max_in_flight: 32,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_age: Duration::from_secs(3),
            keep_answer: None,
            rate_limit: None,
            tls: None,
        }
    }
}

/// What a target is: where and how to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// Label in logs and metrics; unique among targets. Defaults to the URL.
    pub name: String,
    pub url: TargetUrl,
    pub settings: TargetSettings,
}

impl TargetConfig {
    pub fn new(url: TargetUrl) -> Self {
        Self {
            name: url.to_string(),
            url,
            settings: TargetSettings::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// Take no new requests; send what is queued.
    Draining,
    /// Stop now: what is queued or in flight is dropped (`shutdown`).
    Stopped,
}

struct Inner {
    config: TargetConfig,
    /// Bounds the connects per second (see [`CONNECTS_PER_SECOND`]).
    connects: ConnectBudget,
    /// Shared with an earlier target of the same name (a reload that
    /// removed it, or changed its settings): a metric series only goes up.
    stats: Arc<TargetStats>,
    endpoints: Endpoints,
    /// The name, shared by the replies of compared requests.
    label: Arc<str>,
    /// How an https target's connections are secured.
    tls: Tls,
    /// Streamed requests under way (each in a task of its own).
    streams: std::sync::atomic::AtomicUsize,
}

/// Whether a target speaks TLS, and with what.
enum Tls {
    Plain,
    Client(TlsClient),
    /// An https target whose TLS client could not be made (logged at
    /// start): every connect fails (`tls_handshake`).
    Unusable(String),
}

struct Control {
    workers: Vec<JoinHandle<()>>,
    resolver: Option<JoinHandle<()>>,
}

/// A running target. Created by [`Target::start`]; stopped by
/// [`Target::shutdown`] (dropping it stops its tasks too, without the
/// accounting of what was left).
pub struct Target {
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    /// `--rate-limit`, checked before the queue.
    rate: Option<RateLimit>,
    accepting: AtomicBool,
    phase: watch::Sender<Phase>,
    control: std::sync::Mutex<Option<Control>>,
    /// Where streamed requests' tasks run (queued from the capture task).
    runtime: tokio::runtime::Handle,
}

impl Target {
    /// Resolves the host once (bounded by the connect timeout), then starts
    /// the workers and the periodic resolution on the current runtime.
    pub async fn start(config: TargetConfig, resolver: Arc<dyn Resolve>) -> Arc<Target> {
        Self::start_counting_into(config, resolver, Arc::default()).await
    }

    /// [`start`](Self::start), counting into `stats` (an earlier target's of
    /// the same name).
    pub async fn start_counting_into(
        config: TargetConfig,
        resolver: Arc<dyn Resolve>,
        stats: Arc<TargetStats>,
    ) -> Arc<Target> {
        let settings = config.settings.clone();
        let tls = if config.url.tls {
            let tls_settings = settings.tls.clone().unwrap_or_default();
            match TlsClient::new(&tls_settings, &config.url.host, &config.name) {
                Ok(client) => Tls::Client(client),
                Err(message) => {
                    error!(target_name = %config.name, error = %message, "https target without TLS: every request will be dropped (tls_handshake)");
                    Tls::Unusable(message)
                }
            }
        } else {
            Tls::Plain
        };
        let inner = Arc::new(Inner {
            tls,
            streams: Default::default(),
            connects: ConnectBudget::new(CONNECTS_PER_SECOND),
            endpoints: Endpoints::new(config.name.clone()),
            stats,
            label: config.name.as_str().into(),
            config,
        });
        let url = &inner.config.url;
        let resolver_task = match literal_ip(&url.host) {
            Some(ip) => {
                inner.endpoints.update(vec![SocketAddr::new(ip, url.port)]);
                None
            }
            None => {
                let first = inner.endpoints.refresh(&*resolver, &url.host, url.port);
                let _ = tokio::time::timeout(
                    settings.connect_timeout.max(Duration::from_secs(1)),
                    first,
                )
                .await;
                let inner = inner.clone();
                Some(tokio::spawn(async move {
                    let url = &inner.config.url;
                    let mut tick = tokio::time::interval(inner.config.settings.resolve_interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        inner
                            .endpoints
                            .refresh(&*resolver, &url.host, url.port)
                            .await;
                    }
                }))
            }
        };
        let queue = Arc::new(Queue::new(settings.queue_size));
        let (phase, _) = watch::channel(Phase::Running);
        let workers = (0..settings.max_in_flight.max(1))
            .map(|_| tokio::spawn(worker(inner.clone(), queue.clone(), phase.subscribe())))
            .collect();
        info!(
            target_name = %inner.config.name,
            url = %inner.config.url,
            addresses = inner.endpoints.len(),
            "shadow target started"
        );
        Arc::new(Target {
            runtime: tokio::runtime::Handle::current(),
            rate: settings.rate_limit.map(RateLimit::new),
            inner,
            queue,
            accepting: AtomicBool::new(true),
            phase,
            control: std::sync::Mutex::new(Some(Control {
                workers,
                resolver: resolver_task,
            })),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The name, shared (see [`Reply`]).
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.inner.label)
    }

    pub fn config(&self) -> &TargetConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &TargetStats {
        &self.inner.stats
    }

    /// The counters, to hand to a target that takes this one's place.
    pub fn shared_stats(&self) -> Arc<TargetStats> {
        Arc::clone(&self.inner.stats)
    }

    /// The resolved addresses and whether each is set aside.
    pub fn addresses(&self) -> Vec<AddressState> {
        self.inner.endpoints.states()
    }

    /// Whether the queue would take a request of `len` bytes now (its
    /// count and its bytes, [`MAX_QUEUED_BYTES`]): a replay waits for this
    /// instead of having the request dropped (`queue_full`).
    pub fn has_room_for(&self, len: usize) -> bool {
        self.queue.has_room_for(len)
    }

    /// Queues a request without waiting. A request over the rate limit is
    /// dropped (`rate_limited`), one that finds the queue full too
    /// (`queue_full`), and one for a target shutting down (`shutdown`);
    /// each is counted here and returned. Never blocks. Sent in no
    /// particular order with the others.
    pub fn try_send(&self, request: Arc<PreparedRequest>) -> Result<(), DropReason> {
        self.try_send_replying(request, None, None)
    }

    /// [`try_send`](Self::try_send) for a request of the captured client
    /// connection `flow` (sent after the ones queued before it, each once
    /// the one before ended), or of none; when it is compared, the answer,
    /// or why there is none, goes to `reply` (also when it is dropped
    /// here).
    pub fn try_send_replying(
        &self,
        request: Arc<PreparedRequest>,
        flow: Option<FlowTag>,
        reply: Option<Reply>,
    ) -> Result<(), DropReason> {
        let stats = &self.inner.stats;
        let refuse = |reason: DropReason, reply: Option<Reply>| {
            stats.drop_one(reason);
            if let Some(reply) = reply {
                reply.send(Err(reason));
            }
            Err(reason)
        };
        if !self.accepting.load(Relaxed) {
            return refuse(DropReason::Shutdown, reply);
        }
        if let Some(rate) = &self.rate
            && !rate.try_take()
        {
            return refuse(DropReason::RateLimited, reply);
        }
        // Counted before the send so a worker never takes it below zero.
        stats.queue_depth.fetch_add(1, Relaxed);
        // A streamed body's reader starts here, on the capture task, before
        // any of the body is written.
        let body = request.streamed().map(|s| s.body.reader());
        let job = Job {
            request,
            body,
            reply,
            flow,
        };
        let pushed = if job.body.is_some() {
            self.queue.push_or_take(job).map(|now| {
                if let Some(job) = now {
                    stats.queue_depth.fetch_sub(1, Relaxed);
                    let _runtime = self.runtime.enter();
                    spawn_stream(&self.inner, &self.queue, job, &self.phase.subscribe());
                }
            })
        } else {
            self.queue.push(job)
        };
        match pushed {
            Ok(()) => Ok(()),
            Err((err, job)) => {
                stats.queue_depth.fetch_sub(1, Relaxed);
                let reason = match err {
                    PushError::Full => DropReason::QueueFull,
                    PushError::Closed => DropReason::Shutdown,
                };
                refuse(reason, job.reply)
            }
        }
    }

    /// Whether this target keeps its answers for the comparison.
    pub fn keeps_answers(&self) -> bool {
        self.inner.config.settings.keep_answer.is_some()
    }

    /// Stops at once (a second stop signal): what is queued or in flight is
    /// dropped (`shutdown`) by a [`shutdown`](Self::shutdown) under way or
    /// to come.
    pub fn stop_now(&self) {
        self.accepting.store(false, Relaxed);
        self.queue.close();
        self.phase.send_replace(Phase::Stopped);
    }

    /// Stops taking requests and sends what is queued until `deadline`;
    /// then whatever is still queued or in flight is dropped (`shutdown`).
    /// Returns when every worker has ended. Calling it again does nothing.
    pub async fn shutdown(&self, deadline: Instant) {
        let Some(control) = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        self.accepting.store(false, Relaxed);
        self.phase.send_replace(Phase::Draining);
        // Draining: what is queued is still taken, then the workers end.
        self.queue.close();
        let mut workers = control.workers.into_iter();
        let mut stopped = false;
        for mut handle in workers.by_ref() {
            if !stopped {
                if tokio::time::timeout_at(deadline, &mut handle).await.is_ok() {
                    continue;
                }
                self.phase.send_replace(Phase::Stopped);
                stopped = true;
            }
            let _ = handle.await;
        }
        // Streamed requests run in tasks of their own: they finish by the
        // deadline, or stop (counted `shutdown`) once told to.
        while self.inner.streams.load(Relaxed) > 0 {
            if Instant::now() >= deadline {
                self.phase.send_replace(Phase::Stopped);
                if Instant::now() >= deadline + Duration::from_secs(1) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(resolver) = control.resolver {
            resolver.abort();
        }
        for job in self.queue.drain() {
            self.inner.stats.queue_depth.fetch_sub(1, Relaxed);
            self.inner.stats.drop_one(DropReason::Shutdown);
            if let Some(reply) = job.reply {
                reply.send(Err(DropReason::Shutdown));
            }
        }
        info!(
            target_name = %self.name(),
            stats = %self.inner.stats.snapshot(),
            "shadow target stopped"
        );
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(control) = self
            .control
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            if let Some(r) = control.resolver {
                r.abort();
            }
            for w in control.workers {
                w.abort();
            }
        }
    }
}

/// Connections one target may close on its side (after an error or a
/// timeout) and replace, per second: each such close leaves a TIME_WAIT
/// socket for 60 s and the ~28,000 ephemeral ports of a destination last
/// ~470 a second, so a failing shadow cannot exhaust the host's ports.
/// Beyond it a request that needs a new connection is dropped
/// (`connect_limit`). Connections the shadow closes (HTTP/1.0,
/// `Connection: close`) leave their TIME_WAIT on its side and do not count.
pub const CONNECTS_PER_SECOND: u32 = 400;

/// A token bucket of those closes: `rate` a second, a second's worth at
/// once.
struct ConnectBudget {
    state: std::sync::Mutex<(f64, Instant)>,
    rate: f64,
}

impl ConnectBudget {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            state: std::sync::Mutex::new((rate, Instant::now())),
            rate,
        }
    }

    fn refill(&self) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        state
    }

    /// A connection may be made.
    fn has_room(&self) -> bool {
        self.refill().0 >= 1.0
    }

    /// A connection was closed on our side.
    fn charge(&self) {
        let mut state = self.refill();
        state.0 = (state.0 - 1.0).max(-self.rate);
    }
}

/// Resolves when the phase reaches `at_least` (or the target is gone).
async fn reached(phase: &mut watch::Receiver<Phase>, at_least: Phase) {
    let _ = phase.wait_for(|p| *p >= at_least).await;
}

async fn worker(inner: Arc<Inner>, queue: Arc<Queue>, phase: watch::Receiver<Phase>) {
    let mut stop = phase;
    loop {
        let job = tokio::select! {
            biased;
            _ = reached(&mut stop, Phase::Stopped) => return,
            job = queue.pop() => match job {
                Some(job) => job,
                None => return,
            },
        };
        inner.stats.queue_depth.fetch_sub(1, Relaxed);
        if job.body.is_some() {
            spawn_stream(&inner, &queue, job, &stop);
        } else {
            // Answered or failed: the flow's next copy may go (this worker
            // takes from the queue next).
            if let Some(flow) = run(&inner, job, &mut stop).await {
                queue.done(flow);
            }
        }
    }
}

/// A streamed body lasts as long as the client's upload: it gets a task of
/// its own, so the workers go on with the queue.
fn spawn_stream(inner: &Arc<Inner>, queue: &Arc<Queue>, job: Job, stop: &watch::Receiver<Phase>) {
    let (inner, queue, mut stop) = (inner.clone(), queue.clone(), stop.clone());
    inner.streams.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        // No worker follows on from here: the flow's next copy needs one.
        if let Some(flow) = run(&inner, job, &mut stop).await {
            queue.done_elsewhere(flow);
        }
        inner.streams.fetch_sub(1, Relaxed);
    });
}

/// Sends one job taken from the queue and counts what became of it;
/// returns its flow, whose next copy may now go (the caller says so to
/// the queue).
async fn run(inner: &Inner, job: Job, stop: &mut watch::Receiver<Phase>) -> Option<FlowTag> {
    let Job {
        request,
        mut body,
        reply,
        flow,
    } = job;
    let stats = &inner.stats;
    if inner.expired(&request) {
        stats.drop_one(DropReason::Expired);
        if let Some(reply) = reply {
            reply.send(Err(DropReason::Expired));
        }
        // Given up, not reordered: its flow moves on to the next.
        return flow;
    }
    stats.in_flight.fetch_add(1, Relaxed);
    let keep = reply.as_ref().and(inner.config.settings.keep_answer);
    let outcome = tokio::select! {
        biased;
        _ = reached(stop, Phase::Stopped) => Err(DropReason::Shutdown.into()),
        outcome = inner.send(&request, keep, body.as_mut()) => outcome,
    };
    // A streamed body's pieces are not kept for this target any longer.
    drop(body);
    match outcome {
        Ok((class, latency, answer)) => {
            stats.sent_one(class, latency);
            if let Some(reply) = reply {
                reply.send(
                    answer
                        .map(|answer| Answered { answer, latency })
                        .ok_or(DropReason::IoError),
                );
            }
        }
        Err(failed) => {
            stats.drop_one(failed.reason);
            if let Some(reply) = reply {
                reply.send(Err(failed));
            }
        }
    }
    stats.in_flight.fetch_sub(1, Relaxed);
    flow
}

/// What a target counts for a streamed body it gave up.
fn stream_drop(error: StreamError) -> DropReason {
    match error {
        StreamError::Behind => DropReason::BodyTooSlow,
        StreamError::Lost => DropReason::BodyCut,
    }
}

impl Inner {
    /// Captured longer ago than `max_age` (requests without a capture time
    /// never expire).
    fn expired(&self, request: &PreparedRequest) -> bool {
        let captured = request.captured_ns();
        let max_age = u64::try_from(self.config.settings.max_age.as_nanos()).unwrap_or(u64::MAX);
        captured > 0 && monotonic_ns().saturating_sub(captured) > max_age
    }

    /// Sends one request and reads its response: the status class and
    /// latency, or why it failed (and, once the request was written, how
    /// the answer failed: [`NoAnswer`]). No retries: a refused connect
    /// moves on to the next address (nothing was sent yet), nothing else
    /// is tried twice.
    async fn send(
        &self,
        request: &PreparedRequest,
        keep: Option<usize>,
        body: Option<&mut BodyReader>,
    ) -> Result<(StatusClass, Duration, Option<Answer>), NoAnswer> {
        let settings = &self.config.settings;
        // A body that fell behind while its copy waited: not even a connect.
        if let Some(error) = body.as_deref().and_then(BodyReader::status) {
            return Err(stream_drop(error).into());
        }
        let mut tries = self.endpoints.len().max(1);
        let picked_ms = self.endpoints.now_ms();
        let (endpoint, mut conn, fresh) = loop {
            let endpoint = self.endpoints.pick()?;
            if let Some(conn) = endpoint.take_idle(settings.idle_timeout) {
                break (endpoint, conn, false);
            }
            if !self.connects.has_room() {
                return Err(DropReason::ConnectLimit.into());
            }
            let tls = match &self.tls {
                Tls::Plain => None,
                Tls::Client(client) => Some(client),
                Tls::Unusable(message) => {
                    debug!(target_name = %self.config.name, error = %message, "no TLS client");
                    return Err(DropReason::TlsHandshake.into());
                }
            };
            // Boxed: a TLS handshake's state is most of a request's future,
            // and a streamed request's task keeps that future for as long
            // as the upload lasts (thousands at once).
            match Box::pin(connect(endpoint.addr, settings.connect_timeout, tls)).await {
                Ok(conn) => break (endpoint, conn, true),
                Err((DropReason::FdLimit, _)) => {
                    // The agent's own limit: the address is fine.
                    return Err(DropReason::FdLimit.into());
                }
                Err((reason, error)) => {
                    if matches!(
                        reason,
                        DropReason::TlsHandshake | DropReason::TlsCertificate
                    ) {
                        debug!(
                            target_name = %self.config.name,
                            address = %endpoint.addr,
                            reason = reason.as_str(),
                            %error,
                            "shadow TLS handshake failed"
                        );
                        // The connection is closed on our side.
                        self.connects.charge();
                    }
                    self.endpoints
                        .set_aside(&endpoint, reason, &error, picked_ms);
                    tries -= 1;
                    if reason != DropReason::ConnectRefused || tries == 0 {
                        return Err(reason.into());
                    }
                }
            }
        };
        // More waiting than connections can take on one tick: read this
        // response as soon as it arrives (see `stream`).
        let backlog = self.stats.queue_depth.load(Relaxed) >= settings.max_in_flight as u64;
        if let Err(error) = conn.stream.set_prompt(backlog) {
            debug!(target_name = %self.config.name, address = %endpoint.addr, %error, "shadow connection lost");
            return Err(DropReason::IoError.into());
        }
        let start = Instant::now();
        // Whether the request went out: a failure before that is the
        // connection's (the copy never reached the target: not compared),
        // after it the answer's (the target's verdict: `failed`).
        let mut sent = false;
        let record_delay = || {
            let captured = request.captured_ns();
            if captured > 0 {
                self.stats
                    .send_delay
                    .record_ns(monotonic_ns().saturating_sub(captured));
            }
        };
        let outcome = match (request.streamed(), body) {
            (Some(streamed), Some(reader)) => {
                // The timeout runs from the body's end: the body takes as
                // long as the client takes (a slow target is cut by the
                // stream instead).
                record_delay();
                let stall = settings.request_timeout;
                match write_streamed(&mut conn.stream, request, streamed, reader, stall).await {
                    Err(error) => Ok(Err(error)),
                    Ok(()) => {
                        sent = true;
                        let reading = read_response(&mut conn.stream, &mut conn.buf, request, keep);
                        tokio::time::timeout(settings.request_timeout, reading).await
                    }
                }
            }
            _ => {
                let exchange = async {
                    write_request(&mut conn.stream, request).await?;
                    sent = true;
                    record_delay();
                    read_response(&mut conn.stream, &mut conn.buf, request, keep).await
                };
                tokio::time::timeout(settings.request_timeout, exchange).await
            }
        };
        if !matches!(outcome, Ok(Ok(_))) {
            // The connection is closed on our side and will be replaced.
            self.connects.charge();
        }
        // The shadow's counter stays what it always was; the comparison
        // learns whether the request was out, and how its answer failed.
        let failed = |reason: DropReason, failure: AnswerFailure| -> NoAnswer {
            if sent {
                NoAnswer::after_sending(reason, failure)
            } else {
                reason.into()
            }
        };
        if let Ok(Err(error)) = &outcome
            && let Some(given_up) = stream_error(error)
        {
            // Not the target's failure: the copy is given up mid-body (the
            // connection is closed), never compared.
            let reason = stream_drop(given_up);
            debug!(target_name = %self.config.name, address = %endpoint.addr, reason = reason.as_str(), "streamed body given up");
            return Err(reason.into());
        }
        match outcome {
            Err(_) => Err(failed(DropReason::Timeout, AnswerFailure::Timeout)),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::TimedOut => {
                Err(failed(DropReason::Timeout, AnswerFailure::Timeout))
            }
            Ok(Err(error)) => {
                debug!(target_name = %self.config.name, address = %endpoint.addr, %error, "shadow request failed");
                // A connection just made that fails before the request
                // is out: the address is set aside as after a refusal, or
                // every request would reconnect at once (an error storm).
                // Once the request is out, a bad answer (malformed, cut,
                // reset mid-response) costs that one request: the
                // connection is dropped, the address stays unless every
                // answer fails (invariant 11). A pooled connection may
                // just have been closed by the server meanwhile.
                if fresh && !sent {
                    self.endpoints
                        .set_aside(&endpoint, DropReason::IoError, &error, picked_ms);
                } else if fresh {
                    self.endpoints.answer_failed(&endpoint, &error, picked_ms);
                }
                Err(failed(DropReason::IoError, AnswerFailure::of(&error)))
            }
            Ok(Ok(response)) => {
                let latency = start.elapsed();
                let class = StatusClass::of(response.status);
                let Some(class) = class else {
                    // A status outside 100..=599 is not an answer.
                    if fresh {
                        let error = std::io::Error::other("status outside 100..=599");
                        self.endpoints.answer_failed(&endpoint, &error, picked_ms);
                    }
                    return Err(failed(DropReason::IoError, AnswerFailure::Malformed));
                };
                self.endpoints.served(&endpoint);
                // An answer that ended cleanly leaves the connection ready
                // for the next request; anything else closes it.
                if response.reusable {
                    if request.streamed().is_some() {
                        // Streams come in numbers: an idle connection of
                        // theirs keeps no read buffer.
                        conn.buf = Vec::new();
                    }
                    endpoint.put_idle(conn);
                }
                Ok((class, latency, response.answer))
            }
        }
    }
}

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
