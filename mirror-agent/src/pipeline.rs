//! The capture task's sink: the flow table (which feeds the framer and the
//! router) plus the bookkeeping the rest of the agent reads — the stats
//! snapshot for scrapes and the summary, and the "ring drained" heartbeat
//! for /readyz. Publishing is throttled: the hot path does not pay per event.

use std::sync::{Arc, atomic::Ordering};

use crate::{
    capture::{Event, EventSink},
    flow::FlowTable,
    http::RequestSink,
    metrics::{PipelineStats, Readiness},
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
