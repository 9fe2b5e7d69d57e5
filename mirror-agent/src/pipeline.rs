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
        let outcomes = self.route_with_outcomes(&request);
        debug!(
            target: REQUEST_TARGET,
            method = %String::from_utf8_lossy(request.method()),
            path = %String::from_utf8_lossy(path_of(request.target())),
            targets = %outcomes.join(" "),
            "request"
        );
    }

    /// Routes `request`; returns `target=outcome` for every target it
    /// reached.
    fn route_with_outcomes(&mut self, request: &Request) -> Vec<String> {
        let targets = self.handle.targets();
        let before: Vec<Counts> = targets.iter().map(|t| Counts::of(t)).collect();
        self.router.route(request);
        targets
            .iter()
            .zip(before)
            .filter_map(|(t, before)| Some(format!("{}={}", t.name(), before.outcome(t)?)))
            .collect()
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::capture::FlowKey;
    use crate::flow::FlowId;
    use crate::http::{Budget, FramerCtx, HttpConfig, HttpStats, RequestFramer};
    use crate::route::{RouteConfig, RouteTarget};
    use crate::shadow::{TargetConfig, TargetUrl};

    fn request(stream: &[u8]) -> Request {
        let flow = FlowId {
            key: FlowKey {
                client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), 40000)),
                server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
            },
            generation: 1,
        };
        let mut out = Vec::new();
        RequestFramer::new(flow).feed(
            stream,
            0,
            &mut FramerCtx {
                config: &HttpConfig::default(),
                stats: &mut HttpStats::default(),
                budget: &mut Budget::new(usize::MAX),
                sink: &mut out,
            },
        );
        out.pop().expect("one request")
    }

    fn target(name: &str, url: &str) -> RouteTarget {
        let mut config = TargetConfig::new(TargetUrl::parse(url).unwrap());
        config.name = name.to_owned();
        RouteTarget::new(config)
    }

    #[tokio::test]
    async fn a_sampled_request_says_what_each_target_did_with_it() {
        let mut posts_only = target("b", "http://127.0.0.1:2");
        posts_only.rules.methods = vec!["POST".to_owned()];
        let config = RouteConfig {
            targets: vec![target("a", "http://127.0.0.1:1"), posts_only],
            ..RouteConfig::default()
        };
        let handle = RouterHandle::start(config).await;
        let share = Arc::new(AtomicU32::new(0));
        let mut router = LoggedRouter::new(handle.clone(), Arc::clone(&share));
        let get = request(b"GET /x?secret=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            router.route_with_outcomes(&get),
            ["a=queued", "b=filtered:method"]
        );
        let looped = request(b"GET / HTTP/1.1\r\nX-Mirrored-By: mirror\r\n\r\n");
        assert_eq!(
            router.route_with_outcomes(&looped),
            ["a=filtered:loop", "b=filtered:loop"]
        );
        handle.shutdown(Duration::ZERO).await;
        assert_eq!(
            router.route_with_outcomes(&get),
            ["a=dropped:shutdown", "b=filtered:method"]
        );
    }

    #[tokio::test]
    async fn the_share_of_sampled_requests_is_exact_and_zero_is_off() {
        let handle = RouterHandle::start(RouteConfig::default()).await;
        let share = Arc::new(AtomicU32::new(2500));
        let mut router = LoggedRouter::new(handle, Arc::clone(&share));
        let sampled = (0..100).filter(|_| router.sampled()).count();
        assert_eq!(sampled, 25);
        share.store(0, Ordering::Relaxed);
        assert_eq!((0..100).filter(|_| router.sampled()).count(), 0);
        share.store(SAMPLE_ALL, Ordering::Relaxed);
        assert_eq!((0..100).filter(|_| router.sampled()).count(), 100);
    }
}
