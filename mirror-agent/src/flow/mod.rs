//! Flow stage: per-connection TCP reassembly of the client → server stream,
//! handed in order to the next stage, a [`StreamConsumer`] (the http
//! stage's framing), which keeps a state of its own per connection.
//!
//! [`FlowTable`] is the capture stage's [`EventSink`](crate::capture::EventSink).
//! For each event it finds the connection ([`FlowId`] = 4-tuple + a
//! generation, so a new SYN on a reused 4-tuple starts a new flow), puts the
//! payload in stream order and hands it to the consumer.
//!
//! # Rules
//! * In order: the payload slice is framed where it lies in the ring, no
//!   copy. Ahead of a hole: held (per-flow cap, shared budget) until the
//!   hole fills. Retransmissions and overlaps: only bytes not seen yet are
//!   used (the first copy of a byte wins). Sequence numbers wrap at 2^32.
//! * No SYN seen (the agent started after the connection): the flow starts
//!   at the first byte seen, and the consumer is told it joined mid-stream
//!   (`midstream_joins`).
//! * Client writes: each slice handed on says whether it starts a write
//!   (the stream's first byte after the SYN, or the byte after a segment
//!   with PSH) and whether it ends one ([`WriteEdges`]). A joined
//!   connection's first segment starts nothing known: it may be any
//!   segment of an upload.
//! * Gaps: a `Truncated` record, a segment that cannot be held (then the
//!   flow stops waiting for its oldest hole), a hole that stays open for
//!   [`FlowConfig::hole_timeout_ns`] without progress (a lost record never
//!   comes back; a lost packet is retransmitted well within that), or a FIN
//!   or idle expiry beyond a hole. The consumer is told ([`StreamLoss`]) and
//!   goes on after the gap.
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

use crate::capture::FlowId;

pub use table::FlowTable;

/// The next stage: it is fed every connection's byte stream in order, and
/// keeps a [`StreamConsumer::Stream`] of its own per connection (the http
/// stage: a request framer), stored in the flow table beside the flow.
///
/// Called on the capture task: an implementation must not block.
pub trait StreamConsumer {
    /// What the consumer keeps per connection.
    type Stream;

    /// A new connection: seen from its SYN, or joined in the middle (no SYN
    /// seen: the first bytes may be anywhere in the stream).
    fn open(&mut self, id: FlowId, joined_midstream: bool) -> Self::Stream;

    /// The next bytes of the stream; `edges` says whether they start or end
    /// one of the client's writes, `ts_ns` is the timestamp of the segment
    /// they came in. What the consumer buffers is charged to `budget`.
    fn data(
        &mut self,
        stream: &mut Self::Stream,
        bytes: &[u8],
        edges: WriteEdges,
        ts_ns: u64,
        budget: &mut Budget,
    );

    /// `missing` bytes are lost at the current position; the stream goes on
    /// after them.
    fn gap(
        &mut self,
        stream: &mut Self::Stream,
        loss: StreamLoss,
        missing: u64,
        budget: &mut Budget,
    );

    /// The connection ended; `loss` says how, should the consumer have
    /// something in progress. Nothing follows.
    fn end(&mut self, stream: &mut Self::Stream, loss: StreamLoss, budget: &mut Budget);

    /// The consumer wants no more bytes of this connection.
    fn is_done(stream: &Self::Stream) -> bool;

    /// How many of the next bytes the consumer will skip without looking
    /// (the rest of a body it dropped): the flow stage may leave them out,
    /// then says so with [`StreamConsumer::skipped`].
    fn skippable(stream: &Self::Stream) -> u64;

    /// `n` bytes of [`StreamConsumer::skippable`] went by unseen.
    fn skipped(&mut self, stream: &mut Self::Stream, n: u64, budget: &mut Budget);

    /// Bytes the stream holds, charged to the budget.
    fn buffered(stream: &Self::Stream) -> usize;
}

/// Where a slice of the stream sits among the client's writes, as TCP
/// shows them: a segment with PSH ends the data of one `send`, so the byte
/// after it starts the next one (so does the first byte of a connection).
/// A client writes a request and then waits for its answer, so a request
/// starts a write and ends one; bytes that merely look like a request in
/// the middle of an upload do not. The http stage uses this as evidence
/// when it has to find where a request starts.
///
/// PSH marks at least every write's end (a sender may also push in the
/// middle of a large write), so `starts_write` may be true in the middle of
/// a write, never false at the start of one that TCP delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteEdges {
    /// The first byte of the slice starts a write.
    pub starts_write: bool,
    /// The last byte of the slice ends a write (its segment carried PSH).
    pub ends_write: bool,
}

impl WriteEdges {
    /// A slice that is a whole write of its own.
    pub const WHOLE: Self = Self {
        starts_write: true,
        ends_write: true,
    };
    /// A slice somewhere inside a write.
    pub const INSIDE: Self = Self {
        starts_write: false,
        ends_write: false,
    };
}

mirror_common::labelled! {
    /// Why the flow stage could not hand a stretch of a stream over in
    /// order, or ended it: the consumer counts what it loses with it.
    pub enum StreamLoss {
        /// Bytes never captured: a truncation, or a hole given up (per-flow
        /// cap, timeout, FIN or idle beyond it).
        Gap => "gap",
        /// Holding the bytes after a hole would exceed `max_buffered_bytes`.
        BufferCap => "buffer_cap",
        /// The client closed (FIN).
        Incomplete => "incomplete",
        /// The connection was reset (RST).
        Reset => "reset",
        /// The connection went idle.
        IdleExpired => "idle_expired",
        /// The connection was evicted to stay within `max_flows`.
        FlowCap => "flow_cap",
        /// A new SYN reused the 4-tuple.
        Superseded => "superseded",
    }
}

/// Bytes buffered by all connections (held segments here, and whatever the
/// consumer keeps) against one cap: `max_buffered_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    used: usize,
    cap: usize,
}

impl Budget {
    pub fn new(cap: usize) -> Self {
        Self { used: 0, cap }
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Whether `n` more bytes fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.used.saturating_add(n) <= self.cap
    }

    /// Takes `n` bytes if they fit.
    pub fn take(&mut self, n: usize) -> bool {
        if self.has_room(n) {
            self.used += n;
            true
        } else {
            false
        }
    }

    /// Counts `n` bytes already held, even past the cap.
    pub fn charge(&mut self, n: usize) {
        self.used = self.used.saturating_add(n);
    }

    pub fn give(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
    }

    /// A holder that had `charged` bytes counted now holds `held`: the
    /// difference is charged or given back, and `charged` follows.
    pub fn settle(&mut self, charged: &mut usize, held: usize) {
        if held >= *charged {
            self.charge(held - *charged);
        } else {
            self.give(*charged - held);
        }
        *charged = held;
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
    /// Most bytes buffered by all connections together: held segments, and
    /// what the consumer holds (partial heads, trailers and bodies in
    /// progress). Default 256 MiB.
    pub max_buffered_bytes: usize,
    /// A connection without events for this long ends. Default 60 s.
    pub idle_timeout_ns: u64,
    /// A hole that sees no progress for this long is given up. Default 3 s.
    pub hole_timeout_ns: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            max_flows: 65_536,
            max_ooo_bytes_per_flow: 1 << 20,
            // With the ring and the shadow queues, this keeps the agent
            // inside the 512 MiB a sidecar is given in deploy/k8s
            // (docs/design-notes.md).
            max_buffered_bytes: 256 << 20,
            idle_timeout_ns: 60_000_000_000,
            hole_timeout_ns: 3_000_000_000,
        }
    }
}

mirror_common::labelled! {
    /// Why a flow ended: the `end` of `mirror_flows_total`.
    pub enum FlowEndReason {
        Fin => "fin",
        Rst => "rst",
        /// No event for `idle_timeout_ns`.
        Idle => "idle",
        /// Made room for a new flow (`max_flows`).
        Evicted => "evicted",
        /// A new SYN arrived on the same 4-tuple.
        Superseded => "superseded",
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
    pub flows_ended: [u64; FlowEndReason::COUNT],
    /// Segments held ahead of a hole.
    pub out_of_order_segments: u64,
    /// Bytes that arrived again (retransmissions, overlaps, after the end).
    pub duplicate_bytes: u64,
    /// Segments too far ahead of the stream to belong to it.
    pub out_of_window_segments: u64,
    /// Gaps the framer was told about (truncations and abandoned holes).
    pub gaps: u64,
    /// Stream bytes those gaps lost: where the framing survives a gap the
    /// requests it lost are counted by the next stage, elsewhere only
    /// these bytes tell how much was lost.
    pub gap_bytes: u64,
    /// Holes given up (cap reached, timeout, FIN or idle beyond them).
    pub holes_abandoned: u64,
    /// Bytes the consumer said it would skip, left out without being
    /// delivered; the kernel was told not to copy them.
    pub left_out_bytes: u64,
    /// Flows not created because `max_flows` is 0.
    pub flows_refused: u64,
}

impl FlowStats {
    pub fn ended(&self, reason: FlowEndReason) -> u64 {
        self.flows_ended[reason as usize]
    }
}

#[cfg(test)]
mod tests;
