//! Flow stage: per-connection TCP reassembly of the client → server stream,
//! feeding one [`RequestFramer`](crate::http::RequestFramer) per connection.
//!
//! [`FlowTable`] is the capture stage's [`EventSink`](crate::capture::EventSink).
//! For each event it finds the connection ([`FlowId`] = 4-tuple + a
//! generation, so a new SYN on a reused 4-tuple starts a new flow), puts the
//! payload in stream order and hands it to the framer, which emits complete
//! requests to a [`RequestSink`](crate::http::RequestSink).
//!
//! # Rules
//! * In order: the payload slice is framed where it lies in the ring, no
//!   copy. Ahead of a hole: held (per-flow cap, shared budget) until the
//!   hole fills. Retransmissions and overlaps: only bytes not seen yet are
//!   used (the first copy of a byte wins). Sequence numbers wrap at 2^32.
//! * No SYN seen (the agent started after the connection): the flow starts
//!   at the first byte seen and the framer looks for the next request line
//!   (`midstream_joins`; `midstream_join` if bytes had to be skipped).
//! * Gaps: a `Truncated` record, a segment that cannot be held (then the
//!   flow stops waiting for its oldest hole), a hole that stays open for
//!   [`FlowConfig::hole_timeout_ns`] without progress (a lost record never
//!   comes back; a lost packet is retransmitted well within that), or a FIN
//!   or idle expiry beyond a hole. The request in progress is dropped (`gap`)
//!   and framing resumes at the next request line.
//! * FIN ends the flow once every byte before it has arrived; RST ends it at
//!   once. An ended flow stays as a small tombstone (no buffers) until it is
//!   idle for [`FlowConfig::idle_timeout_ns`], so that a retransmission after
//!   the end is not taken for a new connection joined in the middle (which
//!   could deliver a request twice).
//! * Idle expiry: a flow with no event for `idle_timeout_ns` (monotonic
//!   time from event timestamps and [`on_batch_end`](crate::capture::EventSink::on_batch_end))
//!   ends; held data after a hole is delivered first.
//! * Caps: at most [`FlowConfig::max_flows`] flows (tombstones included);
//!   a new flow evicts the least recently active one. Held segments per
//!   flow ≤ [`FlowConfig::max_ooo_bytes_per_flow`]; all buffered bytes
//!   (held segments, partial heads, bodies in progress) ≤
//!   [`FlowConfig::max_buffered_bytes`]. So a flood of half-open
//!   connections costs at most `max_flows` small entries.

mod stream;
mod table;

use crate::capture::FlowKey;
use crate::http::{HttpConfig, HttpStats};

pub use table::FlowTable;

/// One connection: its 4-tuple and a generation number unique within the
/// agent's lifetime (a counter, so a reused 4-tuple never repeats an id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub key: FlowKey,
    pub generation: u64,
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} #{}", self.key, self.generation)
    }
}

/// Limits and timeouts of the flow stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Most connections tracked at once (tombstones of ended ones
    /// included). Default 65 536.
    pub max_flows: usize,
    /// Most bytes held ahead of a hole per connection, counting 64 bytes of
    /// overhead per held segment. Default 1 MiB.
    pub max_ooo_bytes_per_flow: usize,
    /// Most bytes buffered by all connections together: held segments,
    /// partial heads, trailers and bodies in progress. Default 1 GiB.
    pub max_buffered_bytes: usize,
    /// A connection without events for this long ends. Default 60 s.
    pub idle_timeout_ns: u64,
    /// A hole that sees no progress for this long is given up. Default 3 s.
    pub hole_timeout_ns: u64,
    pub http: HttpConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            max_flows: 65_536,
            max_ooo_bytes_per_flow: 1 << 20,
            // With the ring (16 MiB, counted twice) and the shadow queues
            // (64 MiB each at most) this keeps the agent well inside the
            // 512 MiB a sidecar is given in deploy/k8s; 1 GiB let 10,000
            // connections in the middle of 100 KB bodies take 1.1 GB.
            max_buffered_bytes: 256 << 20,
            idle_timeout_ns: 60_000_000_000,
            hole_timeout_ns: 3_000_000_000,
            http: HttpConfig::default(),
        }
    }
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowEndReason {
    Fin,
    Rst,
    /// No event for `idle_timeout_ns`.
    Idle,
    /// Made room for a new flow (`max_flows`).
    Evicted,
    /// A new SYN arrived on the same 4-tuple.
    Superseded,
}

impl FlowEndReason {
    pub const ALL: [FlowEndReason; 5] = [
        FlowEndReason::Fin,
        FlowEndReason::Rst,
        FlowEndReason::Idle,
        FlowEndReason::Evicted,
        FlowEndReason::Superseded,
    ];

    /// Stable snake_case label.
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowEndReason::Fin => "fin",
            FlowEndReason::Rst => "rst",
            FlowEndReason::Idle => "idle",
            FlowEndReason::Evicted => "evicted",
            FlowEndReason::Superseded => "superseded",
        }
    }
}

/// Counters of the flow stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows open now (gauge).
    pub flows_active: u64,
    /// Entries in the table now, tombstones included (gauge).
    pub flows_tracked: u64,
    /// Bytes buffered now, all flows (gauge).
    pub buffered_bytes: u64,
    pub flows_started: u64,
    /// Flows that started without a SYN.
    pub midstream_joins: u64,
    /// Flows ended, by [`FlowEndReason`] (index = `reason as usize`).
    pub flows_ended: [u64; 5],
    /// Segments held ahead of a hole.
    pub out_of_order_segments: u64,
    /// Bytes that arrived again (retransmissions, overlaps, after the end).
    pub duplicate_bytes: u64,
    /// Segments too far ahead of the stream to belong to it.
    pub out_of_window_segments: u64,
    /// Gaps the framer was told about (truncations and abandoned holes).
    pub gaps: u64,
    /// Holes given up (cap reached, timeout, FIN or idle beyond them).
    pub holes_abandoned: u64,
    /// Flows not created because `max_flows` is 0.
    pub flows_refused: u64,
}

impl FlowStats {
    pub fn ended(&self, reason: FlowEndReason) -> u64 {
        self.flows_ended[reason as usize]
    }
}

/// Everything the flow and http stages count, for the metrics module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub flow: FlowStats,
    pub http: HttpStats,
}

#[cfg(test)]
mod tests;
