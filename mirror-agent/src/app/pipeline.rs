//! The pipeline the capture task drives: capture events → flow table
//! (reassembly) → framing → the request sink (the shadows' dispatcher),
//! plus the bookkeeping the rest of the agent reads — the stats snapshot
//! for scrapes and the summary, and the "ring drained" heartbeat for
//! /readyz. Publishing is throttled: the hot path does not pay per event.

use std::sync::{Arc, atomic::Ordering};

use crate::{
    capture::{Direction, Event, EventSink, PayloadFilter},
    compare::V1Responses,
    flow::{FlowConfig, FlowTable},
    http::{Framing, HttpConfig, RequestSink, ResponseFraming},
    telemetry::{PipelineStats, Stats, endpoint::Readiness},
};

/// How often the stats snapshot is refreshed.
const PUBLISH_EVERY_NS: u64 = 100_000_000;

pub struct Pipeline<S: RequestSink> {
    table: FlowTable<Framing<S>>,
    /// v1's responses (server → client), when the comparison is on: a
    /// table of their own, the same reassembly, framed into responses.
    responses: Option<FlowTable<ResponseFraming<V1Responses>>>,
    /// Where the stats are published for the rest of the agent.
    published: Arc<PipelineStats>,
    readiness: Arc<Readiness>,
    next_publish_ns: u64,
}

impl<S: RequestSink> Pipeline<S> {
    pub fn new(
        flow: FlowConfig,
        http: HttpConfig,
        sink: S,
        filter: Box<dyn PayloadFilter>,
        stats: Arc<PipelineStats>,
        readiness: Arc<Readiness>,
    ) -> Self {
        Self {
            table: FlowTable::new(flow, Framing::new(http, sink)).with_filter(filter),
            responses: None,
            published: stats,
            readiness,
            next_publish_ns: 0,
        }
    }

    /// Also frames v1's responses (the capture attached at egress too).
    pub fn with_responses(
        mut self,
        flow: FlowConfig,
        framing: ResponseFraming<V1Responses>,
    ) -> Self {
        self.responses = Some(FlowTable::new(flow, framing));
        self
    }

    /// Ends every connection (shutdown): requests in progress are counted,
    /// not lost silently.
    pub fn end_all(&mut self) {
        self.table.end_all();
        if let Some(responses) = &mut self.responses {
            responses.end_all();
        }
    }

    /// The counters of every stage now.
    pub fn stats(&self) -> Stats {
        Stats {
            flow: self.table.stats(),
            http: *self.table.consumer().stats(),
        }
    }

    /// Publishes the current stats now (at exit, for the final counts).
    pub fn publish(&self) {
        self.published.publish(self.stats());
    }
}

impl<S: RequestSink> EventSink for Pipeline<S> {
    fn on_event(&mut self, event: &Event<'_>) {
        match event.direction {
            Direction::ToServer => self.table.on_event(event),
            Direction::ToClient => {
                if let Some(responses) = &mut self.responses {
                    responses.on_event(event);
                }
            }
        }
    }

    fn on_batch_end(&mut self, now_ns: u64) {
        self.table.on_batch_end(now_ns);
        if let Some(responses) = &mut self.responses {
            responses.on_batch_end(now_ns);
        }
        self.readiness
            .last_drain_ns
            .store(now_ns, Ordering::Relaxed);
        if now_ns >= self.next_publish_ns {
            self.publish();
            self.next_publish_ns = now_ns + PUBLISH_EVERY_NS;
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let responses = self.responses.as_ref().and_then(|r| r.next_deadline());
        match (self.table.next_deadline(), responses) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_sleep(&mut self, asleep: bool) {
        // Scrapes read the numbers as they are when the capture sleeps.
        self.publish();
        self.readiness.asleep.store(asleep, Ordering::Relaxed);
    }
}
