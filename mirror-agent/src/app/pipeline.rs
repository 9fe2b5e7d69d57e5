//! The pipeline the capture task drives: capture events → flow table
//! (reassembly) → framing → the request sink (the shadows' dispatcher),
//! plus the bookkeeping the rest of the agent reads — the stats snapshot
//! for scrapes and the summary, and the "ring drained" heartbeat for
//! /readyz. Publishing is throttled: the hot path does not pay per event.

use std::sync::{Arc, atomic::Ordering};

use crate::{
    capture::{Direction, Event, EventSink, FlowId, PayloadFilter},
    flow::{FlowConfig, FlowTable},
    http::{
        Answers, CapturedResponse, Framing, HttpConfig, RequestSink, ResponseFraming, ResponseLoss,
        ResponseSink,
    },
    telemetry::{PipelineStats, Stats, endpoint::Readiness},
};

/// How often the stats snapshot is refreshed.
const PUBLISH_EVERY_NS: u64 = 100_000_000;

/// The response sink of a pipeline that does not capture responses.
pub struct NoResponses;

impl ResponseSink for NoResponses {
    fn next_request(&mut self, _: &FlowId) -> Option<Answers> {
        None
    }
    fn on_response(&mut self, _: &FlowId, _: CapturedResponse) {}
    fn on_lost(&mut self, _: &FlowId, _: ResponseLoss) {}
}

pub struct Pipeline<S: RequestSink, R: ResponseSink = NoResponses> {
    table: FlowTable<Framing<S>>,
    /// v1's responses (server → client), when they are captured (for the
    /// comparison, or a recording): a table of their own, the same
    /// reassembly, framed into responses.
    responses: Option<FlowTable<ResponseFraming<R>>>,
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
    pub fn with_responses<R: ResponseSink>(
        self,
        flow: FlowConfig,
        framing: ResponseFraming<R>,
    ) -> Pipeline<S, R> {
        self.responses_to(Some(FlowTable::new(flow, framing)))
    }

    /// The same pipeline, of the type of one that could frame responses
    /// (for code that handles both).
    pub fn without_responses<R: ResponseSink>(self) -> Pipeline<S, R> {
        self.responses_to(None)
    }

    fn responses_to<R: ResponseSink>(
        self,
        responses: Option<FlowTable<ResponseFraming<R>>>,
    ) -> Pipeline<S, R> {
        Pipeline {
            table: self.table,
            responses,
            published: self.published,
            readiness: self.readiness,
            next_publish_ns: self.next_publish_ns,
        }
    }
}

impl<S: RequestSink, R: ResponseSink> Pipeline<S, R> {
    /// The response side's sink, if responses are framed.
    pub fn response_sink_mut(&mut self) -> Option<&mut R> {
        self.responses.as_mut().map(|t| t.consumer_mut().sink_mut())
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

impl<S: RequestSink, R: ResponseSink> EventSink for Pipeline<S, R> {
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
