//! The capture task's sink: the flow table (which feeds the framer and the
//! router) plus the bookkeeping the rest of the agent reads — the stats
//! snapshot for scrapes and the summary, and the "ring drained" heartbeat
//! for /readyz. Publishing is throttled: the hot path does not pay per event.
//!
//! [`LoggedRouter`] is the router as the flow table's request sink, with the
//! opt-in sampled request log.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use mirror_common::SAMPLE_ALL;
use tracing::debug;

use crate::{
    capture::{Event, EventSink},
    flow::FlowTable,
    http::{Request, RequestSink},
    logging::REQUEST_TARGET,
    metrics::{PipelineStats, Readiness},
    route::{Router, RouterHandle, path_of},
    shadow::{DropReason, FilterReason, Target},
};

/// How often the stats snapshot is refreshed.
const PUBLISH_EVERY_NS: u64 = 100_000_000;

pub struct Pipeline<S> {
    table: FlowTable<S>,
    stats: Arc<PipelineStats>,
    readiness: Arc<Readiness>,
    next_publish_ns: u64,
}

impl<S: RequestSink> Pipeline<S> {
    pub fn new(table: FlowTable<S>, stats: Arc<PipelineStats>, readiness: Arc<Readiness>) -> Self {
        Self {
            table,
            stats,
            readiness,
            next_publish_ns: 0,
        }
    }

    pub fn table(&self) -> &FlowTable<S> {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut FlowTable<S> {
        &mut self.table
    }

    /// Publishes the current stats now (at exit, for the final counts).
    pub fn publish(&self) {
        self.stats.publish(self.table.stats());
    }
}

impl<S: RequestSink> EventSink for Pipeline<S> {
    fn on_event(&mut self, event: &Event<'_>) {
        self.table.on_event(event);
    }

    fn on_batch_end(&mut self, now_ns: u64) {
        self.table.on_batch_end(now_ns);
        self.readiness
            .last_drain_ns
            .store(now_ns, Ordering::Relaxed);
        if now_ns >= self.next_publish_ns {
            self.publish();
            self.next_publish_ns = now_ns + PUBLISH_EVERY_NS;
        }
    }
}

/// The router with the opt-in sampled request log (`--log-requests`): a
/// share of the requests is logged at debug level (target
/// [`REQUEST_TARGET`]) with method, path and what each target did with it:
/// `queued`, `filtered:<reason>` or `dropped:<reason>`. (Whether a queued
/// request was then answered is in the metrics, not in this line.)
///
/// Off (share 0), a request costs one relaxed atomic load more.
pub struct LoggedRouter {
    router: Router,
    handle: RouterHandle,
    /// Basis points of requests logged; changed by a reload.
    share: Arc<AtomicU32>,
    /// Adds the share per request; a request is logged each time it passes
    /// 10 000 (exactly the share, evenly spread).
    credit: u32,
}

impl LoggedRouter {
    pub fn new(handle: RouterHandle, share: Arc<AtomicU32>) -> Self {
        Self {
            router: handle.router(),
            handle,
            share,
            credit: 0,
        }
    }

    fn sampled(&mut self) -> bool {
        let share = self.share.load(Ordering::Relaxed);
        if share == 0 {
            return false;
        }
        self.credit += share.min(SAMPLE_ALL);
        if self.credit >= SAMPLE_ALL {
            self.credit -= SAMPLE_ALL;
            return true;
        }
        false
    }

    fn route_logged(&mut self, request: Request) {
        let targets = self.handle.targets();
        let before: Vec<Counts> = targets.iter().map(|t| Counts::of(t)).collect();
        self.router.route(&request);
        let outcomes: Vec<String> = targets
            .iter()
            .zip(before)
            .filter_map(|(t, before)| Some(format!("{}={}", t.name(), before.outcome(t)?)))
            .collect();
        debug!(
            target: REQUEST_TARGET,
            method = %String::from_utf8_lossy(request.method()),
            path = %String::from_utf8_lossy(path_of(request.target())),
            targets = %outcomes.join(" "),
            "request"
        );
    }
}

impl RequestSink for LoggedRouter {
    fn on_request(&mut self, request: Request) {
        if self.sampled() {
            self.route_logged(request);
        } else {
            self.router.route(&request);
        }
    }
}

/// The counters of a target that only the router (this thread) changes.
struct Counts {
    captured: u64,
    filtered: [u64; FilterReason::COUNT],
    queue_full: u64,
    shutdown: u64,
}

impl Counts {
    fn of(target: &Target) -> Self {
        let stats = target.stats();
        Self {
            captured: stats.captured.load(Ordering::Relaxed),
            filtered: std::array::from_fn(|i| stats.filtered_by(FilterReason::ALL[i])),
            queue_full: stats.dropped_by(DropReason::QueueFull),
            shutdown: stats.dropped_by(DropReason::Shutdown),
        }
    }

    /// What happened to the request just routed, if it reached `target`.
    fn outcome(&self, target: &Target) -> Option<String> {
        let now = Counts::of(target);
        if now.captured == self.captured {
            return None;
        }
        if let Some(i) = (0..FilterReason::COUNT).find(|i| now.filtered[*i] > self.filtered[*i]) {
            return Some(format!("filtered:{}", FilterReason::ALL[i]));
        }
        if now.queue_full > self.queue_full {
            return Some(format!("dropped:{}", DropReason::QueueFull));
        }
        if now.shutdown > self.shutdown {
            return Some(format!("dropped:{}", DropReason::Shutdown));
        }
        Some("queued".to_owned())
    }
}
