//! The http stage as the flow stage's [`StreamConsumer`]: one
//! [`RequestFramer`] per connection, the framing limits, the counters of
//! all connections, and the [`RequestSink`] complete requests go to.

use super::{FramerCtx, HttpConfig, HttpStats, RequestFramer, RequestSink, SkipReason};
use crate::capture::FlowId;
use crate::flow::{Budget, StreamConsumer, StreamLoss, WriteEdges};

/// Frames every connection's requests into `S`.
#[derive(Debug)]
pub struct Framing<S> {
    config: HttpConfig,
    stats: HttpStats,
    sink: S,
}

impl<S> Framing<S> {
    pub fn new(config: HttpConfig, sink: S) -> Self {
        Self {
            config,
            stats: HttpStats::default(),
            sink,
        }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Tells the sink when a call lost requests of the connection.
    fn watch_losses(&mut self, framer: &RequestFramer, before: u32)
    where
        S: RequestSink,
    {
        if framer.losses() != before {
            self.sink.on_requests_lost(&framer.flow());
        }
    }

    fn cx<'a>(&'a mut self, budget: &'a mut Budget) -> FramerCtx<'a, S> {
        FramerCtx {
            config: &self.config,
            stats: &mut self.stats,
            budget,
            sink: &mut self.sink,
        }
    }
}

impl From<StreamLoss> for SkipReason {
    fn from(loss: StreamLoss) -> Self {
        match loss {
            StreamLoss::Gap => SkipReason::Gap,
            StreamLoss::BufferCap => SkipReason::BufferCap,
            StreamLoss::Incomplete => SkipReason::Incomplete,
            StreamLoss::Reset => SkipReason::Reset,
            StreamLoss::IdleExpired => SkipReason::IdleExpired,
            StreamLoss::FlowCap => SkipReason::FlowCap,
            StreamLoss::Superseded => SkipReason::Superseded,
        }
    }
}

impl<S: RequestSink> StreamConsumer for Framing<S> {
    type Stream = RequestFramer;

    fn open(&mut self, id: FlowId, joined_midstream: bool) -> RequestFramer {
        if joined_midstream {
            self.sink.on_requests_lost(&id);
            RequestFramer::new_midstream(id)
        } else {
            RequestFramer::new(id)
        }
    }

    fn data(
        &mut self,
        framer: &mut RequestFramer,
        bytes: &[u8],
        edges: WriteEdges,
        ts_ns: u64,
        budget: &mut Budget,
    ) {
        let before = framer.losses();
        framer.feed(bytes, edges, ts_ns, &mut self.cx(budget));
        self.watch_losses(framer, before);
    }

    fn gap(
        &mut self,
        framer: &mut RequestFramer,
        loss: StreamLoss,
        missing: u64,
        budget: &mut Budget,
    ) {
        let before = framer.losses();
        framer.gap(loss.into(), missing, &mut self.cx(budget));
        self.watch_losses(framer, before);
    }

    fn end(&mut self, framer: &mut RequestFramer, loss: StreamLoss, budget: &mut Budget) {
        let before = framer.losses();
        framer.finish(loss.into(), &mut self.cx(budget));
        self.watch_losses(framer, before);
    }

    fn is_done(framer: &RequestFramer) -> bool {
        framer.is_stopped()
    }

    fn skippable(framer: &RequestFramer) -> u64 {
        framer.skippable()
    }

    fn skipped(&mut self, framer: &mut RequestFramer, n: u64, budget: &mut Budget) {
        let before = framer.losses();
        framer.skipped(n, &mut self.cx(budget));
        self.watch_losses(framer, before);
    }

    fn buffered(framer: &RequestFramer) -> usize {
        framer.buffered()
    }
}
