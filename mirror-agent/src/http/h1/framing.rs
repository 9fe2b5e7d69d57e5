//! HTTP/1 as the flow stage's [`StreamConsumer`], in both directions: one
//! framer per connection ([`RequestFramer`] client → server,
//! [`ResponseFramer`] server → client), the framing limits, the counters of
//! all connections, and the sink what is framed goes to. The two directions
//! hold and hand out the same things ([`Framers`], [`Ctx`]); they differ in
//! what a loss tells their sink.

use super::framer::RequestFramer;
use super::response::ResponseFramer;
use crate::capture::FlowId;
use crate::flow::{Budget, StreamConsumer, StreamLoss, WriteEdges};
use crate::http::request::{Ctx, HttpConfig, HttpStats, RequestSink, SkipReason};
use crate::http::response::{ResponseConfig, ResponseLoss, ResponseSink, ResponseStats};

/// The framers of every connection in one direction: their limits (`C`),
/// their counters (`St`) and the sink (`S`) what they frame goes to.
#[derive(Debug)]
pub struct Framers<C, St, S> {
    config: C,
    stats: St,
    sink: S,
}

/// Frames every connection's requests into `S`.
pub type Framing<S> = Framers<HttpConfig, HttpStats, S>;

/// Frames every connection's responses (v1's) into `S`.
pub type ResponseFraming<S> = Framers<ResponseConfig, ResponseStats, S>;

impl<C, St: Default, S> Framers<C, St, S> {
    pub fn new(config: C, sink: S) -> Self {
        Self {
            config,
            stats: St::default(),
            sink,
        }
    }
}

impl<C, St, S> Framers<C, St, S> {
    pub fn config(&self) -> &C {
        &self.config
    }

    pub fn stats(&self) -> &St {
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

    fn cx<'a>(&'a mut self, budget: &'a mut Budget) -> Ctx<'a, C, St, S> {
        Ctx {
            config: &self.config,
            stats: &mut self.stats,
            budget,
            sink: &mut self.sink,
        }
    }
}

/// The flow stage's losses have the same names in both directions'
/// reasons.
macro_rules! from_stream_loss {
    ($reason:ident) => {
        impl From<StreamLoss> for $reason {
            fn from(loss: StreamLoss) -> Self {
                match loss {
                    StreamLoss::Gap => $reason::Gap,
                    StreamLoss::BufferCap => $reason::BufferCap,
                    StreamLoss::Incomplete => $reason::Incomplete,
                    StreamLoss::Reset => $reason::Reset,
                    StreamLoss::IdleExpired => $reason::IdleExpired,
                    StreamLoss::FlowCap => $reason::FlowCap,
                    StreamLoss::Superseded => $reason::Superseded,
                }
            }
        }
    };
}

from_stream_loss!(SkipReason);
from_stream_loss!(ResponseLoss);

impl<S: RequestSink> Framing<S> {
    /// Tells the sink when a call lost requests of the connection.
    fn watch_losses(&mut self, framer: &RequestFramer, before: u32) {
        if framer.losses() != before {
            self.sink.on_requests_lost(&framer.flow());
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
