//! Harnesses for tests, benches and fuzzing (feature `test-support`): one
//! connection's framer with its limits, counters, budget and the requests
//! it delivered, fed by hand; and the flow table with the real framing.

use std::net::{Ipv4Addr, SocketAddr};

use super::answer::BodyCollector;
use super::h1::framer::{FramerCtx, RequestFramer};
use super::h1::framing::Framing;
use super::request::{HttpConfig, HttpStats, Request, RequestSink, SkipReason};
use crate::capture::{FlowId, FlowKey};
use crate::flow::{Budget, FlowConfig, FlowStats, FlowTable, WriteEdges};

/// The hash an [`Answer`](super::Answer)'s body carries for `bytes`, the
/// whole body (however much of it was kept).
pub fn hash_of(bytes: &[u8]) -> u64 {
    let mut collector = BodyCollector::new(0);
    collector.push(bytes);
    collector.finish().hash
}

/// The connection every harness frames: 10.200.0.1:40000 → 10.200.0.2:80.
pub fn test_flow(generation: u64) -> FlowId {
    FlowId {
        key: FlowKey {
            client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), 40000)),
            server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
        },
        generation,
    }
}

/// One framer and everything around it.
#[derive(Debug)]
pub struct Harness {
    pub config: HttpConfig,
    pub stats: HttpStats,
    pub budget: Budget,
    pub requests: Vec<Request>,
    pub framer: RequestFramer,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new(HttpConfig::default())
    }
}

impl Harness {
    /// A connection seen from its start, an unlimited budget.
    pub fn new(config: HttpConfig) -> Self {
        Self {
            config,
            stats: HttpStats::default(),
            budget: Budget::new(usize::MAX),
            requests: Vec::new(),
            framer: RequestFramer::new(test_flow(1)),
        }
    }

    /// A connection joined in the middle.
    pub fn midstream(config: HttpConfig) -> Self {
        Self {
            framer: RequestFramer::new_midstream(test_flow(1)),
            ..Self::new(config)
        }
    }

    pub fn with_budget(mut self, cap: usize) -> Self {
        self.budget = Budget::new(cap);
        self
    }

    fn cx(&mut self) -> (&mut RequestFramer, FramerCtx<'_, Vec<Request>>) {
        (
            &mut self.framer,
            FramerCtx {
                config: &self.config,
                stats: &mut self.stats,
                budget: &mut self.budget,
                sink: &mut self.requests,
            },
        )
    }

    /// The next bytes of the stream as one whole client write, from a
    /// segment seen at `ts_ns`.
    pub fn feed(&mut self, bytes: &[u8], ts_ns: u64) -> &mut Self {
        self.feed_edges(bytes, WriteEdges::WHOLE, ts_ns)
    }

    /// The next bytes of the stream, placed among the writes by `edges`.
    pub fn feed_edges(&mut self, bytes: &[u8], edges: WriteEdges, ts_ns: u64) -> &mut Self {
        let (framer, mut cx) = self.cx();
        framer.feed(bytes, edges, ts_ns, &mut cx);
        self
    }

    /// Each slice as one segment of a single client write, timestamps 0, 1,
    /// 2, ...
    pub fn feed_all(&mut self, slices: &[&[u8]]) -> &mut Self {
        self.feed_write(slices, |i| i as u64)
    }

    /// The slices as the segments of one client write, all seen at `ts_ns`.
    pub fn feed_all_at(&mut self, slices: &[&[u8]], ts_ns: u64) -> &mut Self {
        self.feed_write(slices, |_| ts_ns)
    }

    /// Empty slices are left out, as the flow stage never hands one on.
    fn feed_write(&mut self, slices: &[&[u8]], ts: impl Fn(usize) -> u64) -> &mut Self {
        let segments: Vec<(usize, &[u8])> = (0..slices.len())
            .map(|i| (i, slices[i]))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let last = segments.len().saturating_sub(1);
        for (n, (i, slice)) in segments.into_iter().enumerate() {
            let edges = WriteEdges {
                starts_write: n == 0,
                ends_write: n == last,
            };
            self.feed_edges(slice, edges, ts(i));
        }
        self
    }

    /// `missing` bytes lost at the current position.
    pub fn gap(&mut self, reason: SkipReason, missing: u64) -> &mut Self {
        let (framer, mut cx) = self.cx();
        framer.gap(reason, missing, &mut cx);
        self
    }

    pub fn finish(&mut self, reason: SkipReason) -> &mut Self {
        let (framer, mut cx) = self.cx();
        framer.finish(reason, &mut cx);
        self
    }
}

/// The requests framed from `stream` fed in one piece.
pub fn frame(stream: &[u8]) -> Vec<Request> {
    let mut harness = Harness::default();
    harness.feed(stream, 0);
    harness.requests
}

/// The one request framed from `stream`; panics (a test failure) otherwise.
pub fn frame_one(stream: &[u8]) -> Request {
    let mut requests = frame(stream);
    assert_eq!(
        requests.len(),
        1,
        "one request expected in {:?}",
        String::from_utf8_lossy(stream)
    );
    requests.remove(0)
}

/// The flow table with the real framing as its consumer: capture events
/// in, requests out — the pipeline without the kernel and the shadows.
pub type FramedTable<S = Vec<Request>> = FlowTable<Framing<S>>;

/// A [`FramedTable`] with the default framing limits.
pub fn framed_table<S: RequestSink>(config: FlowConfig, sink: S) -> FramedTable<S> {
    FlowTable::new(config, Framing::new(HttpConfig::default(), sink))
}

/// Both stages' counters of a [`FramedTable`].
#[derive(Clone, Copy, Debug)]
pub struct TableStats {
    pub flow: FlowStats,
    pub http: HttpStats,
}

pub fn table_stats<S: RequestSink>(table: &FramedTable<S>) -> TableStats {
    TableStats {
        flow: table.stats(),
        http: *table.consumer().stats(),
    }
}
