//! The pipeline the capture task drives: capture events → [`Traffic`]
//! (flow table, framing of both directions, the sinks the assembly chose),
//! plus the bookkeeping the rest of the agent reads — the stats snapshot
//! for scrapes and the summary, and the "ring drained" heartbeat for
//! /readyz. Publishing is throttled: the hot path does not pay per event.

use std::sync::{Arc, atomic::Ordering};

use crate::{
    capture::{Event, EventSink},
    http::{NoResponses, RequestSink, ResponseSink, Traffic},
    telemetry::{PipelineStats, Stats, endpoint::Readiness},
};

/// How often the stats snapshot is refreshed.
const PUBLISH_EVERY_NS: u64 = 100_000_000;

pub struct Pipeline<S: RequestSink, R: ResponseSink = NoResponses> {
    traffic: Traffic<S, R>,
    /// Where the stats are published for the rest of the agent.
    published: Arc<PipelineStats>,
    readiness: Arc<Readiness>,
    next_publish_ns: u64,
}

impl<S: RequestSink, R: ResponseSink> Pipeline<S, R> {
    pub fn new(
        traffic: Traffic<S, R>,
        stats: Arc<PipelineStats>,
        readiness: Arc<Readiness>,
    ) -> Self {
        Self {
            traffic,
            published: stats,
            readiness,
            next_publish_ns: 0,
        }
    }

    pub fn traffic_mut(&mut self) -> &mut Traffic<S, R> {
        &mut self.traffic
    }

    /// Ends every connection (shutdown): requests in progress are counted,
    /// not lost silently.
    pub fn end_all(&mut self) {
        self.traffic.end_all();
    }

    /// The counters of every stage now.
    pub fn stats(&self) -> Stats {
        Stats {
            flow: self.traffic.flow_stats(),
            http: self.traffic.http_stats(),
        }
    }

    /// Publishes the current stats now (at exit, for the final counts).
    pub fn publish(&self) {
        self.published.publish(self.stats());
    }
}

impl<S: RequestSink, R: ResponseSink> EventSink for Pipeline<S, R> {
    fn on_event(&mut self, event: &Event<'_>) {
        self.traffic.on_event(event);
    }

    fn on_batch_end(&mut self, now_ns: u64) {
        self.traffic.on_batch_end(now_ns);
        self.readiness
            .last_drain_ns
            .store(now_ns, Ordering::Relaxed);
        if now_ns >= self.next_publish_ns {
            self.publish();
            self.next_publish_ns = now_ns + PUBLISH_EVERY_NS;
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.traffic.next_deadline()
    }

    fn on_sleep(&mut self, asleep: bool) {
        // Scrapes read the numbers as they are when the capture sleeps.
        self.publish();
        self.readiness.asleep.store(asleep, Ordering::Relaxed);
    }
}
