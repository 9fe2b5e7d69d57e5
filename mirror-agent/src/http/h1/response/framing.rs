//! The response framing as the flow stage's [`StreamConsumer`] for the
//! server → client direction: one [`ResponseFramer`] per connection, the
//! limits, the counters of all connections, and the [`ResponseSink`]
//! framed responses go to.

use super::{
    ResponseConfig, ResponseCtx, ResponseFramer, ResponseLoss, ResponseSink, ResponseStats,
};
use crate::capture::FlowId;
use crate::flow::{Budget, StreamConsumer, StreamLoss, WriteEdges};

/// Frames every connection's responses into `S`.
#[derive(Debug)]
pub struct ResponseFraming<S> {
    config: ResponseConfig,
    stats: ResponseStats,
    sink: S,
}

impl<S> ResponseFraming<S> {
    pub fn new(config: ResponseConfig, sink: S) -> Self {
        Self {
            config,
            stats: ResponseStats::default(),
            sink,
        }
    }

    pub fn config(&self) -> &ResponseConfig {
        &self.config
    }

    pub fn stats(&self) -> &ResponseStats {
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

    fn cx<'a>(&'a mut self, budget: &'a mut Budget) -> ResponseCtx<'a, S> {
        ResponseCtx {
            config: &self.config,
            stats: &mut self.stats,
            budget,
            sink: &mut self.sink,
        }
    }
}

impl From<StreamLoss> for ResponseLoss {
    fn from(loss: StreamLoss) -> Self {
        match loss {
            StreamLoss::Gap => ResponseLoss::Gap,
            StreamLoss::BufferCap => ResponseLoss::BufferCap,
            StreamLoss::Incomplete => ResponseLoss::Incomplete,
            StreamLoss::Reset => ResponseLoss::Reset,
            StreamLoss::IdleExpired => ResponseLoss::IdleExpired,
            StreamLoss::FlowCap => ResponseLoss::FlowCap,
            StreamLoss::Superseded => ResponseLoss::Superseded,
        }
    }
}

impl<S: ResponseSink> StreamConsumer for ResponseFraming<S> {
    type Stream = ResponseFramer;

    /// A connection joined in the middle is lost at once
    /// ([`ResponseLoss::MidstreamJoin`]): where its responses start, and
    /// which requests they answer, cannot be known.
    fn open(&mut self, id: FlowId, joined_midstream: bool) -> ResponseFramer {
        if joined_midstream {
            self.stats.lost.add(ResponseLoss::MidstreamJoin);
            self.sink.on_lost(&id, ResponseLoss::MidstreamJoin);
            ResponseFramer::stopped(id)
        } else {
            ResponseFramer::new(id)
        }
    }

    /// Write edges mean nothing here: a response's start is only ever
    /// found by framing the previous one.
    fn data(
        &mut self,
        framer: &mut ResponseFramer,
        bytes: &[u8],
        _edges: WriteEdges,
        ts_ns: u64,
        budget: &mut Budget,
    ) {
        framer.feed(bytes, ts_ns, &mut self.cx(budget));
    }

    fn gap(
        &mut self,
        framer: &mut ResponseFramer,
        loss: StreamLoss,
        missing: u64,
        budget: &mut Budget,
    ) {
        framer.gap(loss.into(), missing, &mut self.cx(budget));
    }

    fn end(&mut self, framer: &mut ResponseFramer, loss: StreamLoss, budget: &mut Budget) {
        framer.finish(loss.into(), &mut self.cx(budget));
        self.sink.on_end(&framer.flow());
    }

    fn is_done(framer: &ResponseFramer) -> bool {
        framer.is_stopped()
    }

    fn skippable(framer: &ResponseFramer) -> u64 {
        framer.skippable()
    }

    fn skipped(&mut self, framer: &mut ResponseFramer, n: u64, budget: &mut Budget) {
        framer.skipped(n, &mut self.cx(budget));
    }

    fn buffered(framer: &ResponseFramer) -> usize {
        framer.buffered()
    }
}
