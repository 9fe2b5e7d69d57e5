//! Reassembly of one connection's client → server byte stream.
//!
//! Sequence numbers become 64-bit stream offsets (offset 0 = first byte
//! after the SYN, or the first byte seen on a joined connection): a segment's
//! offset is the expected offset plus the signed 32-bit distance of its
//! sequence number from the expected one, so wraparound at 2^32 needs no
//! special case and everything below works on plain `u64`s.
//!
//! In-order bytes go straight from the event to the consumer. Segments ahead
//! of a hole are held (only their bytes not held already) until the hole
//! fills; held bytes and a per-segment overhead count against the per-flow
//! cap and the shared budget. When a segment cannot be held, the flow stops
//! waiting for its oldest hole: the consumer is told about the gap and the
//! held bytes after it are delivered. A `Truncated` record is such a hole
//! known in advance, held as a marker.

use std::collections::BTreeMap;

use mirror_common::Ignore;

use super::{Budget, FlowConfig, FlowStats, StreamConsumer, StreamLoss, WriteEdges};
use crate::capture::{FlowId, PayloadFilter};

/// Bytes charged per held segment on top of its payload (allocation and
/// map node), so that many tiny segments cannot dodge the cap.
pub(super) const SEGMENT_OVERHEAD: usize = 64;

/// Segments further ahead than this are not part of the connection's
/// window (TCP windows stop at 1 GiB) and are ignored.
const MAX_AHEAD: i64 = 1 << 30;

/// Fewest bytes the consumer skips that are worth telling the kernel about
/// (an update of its map is a system call).
const MIN_SKIP: u64 = 64 << 10;

#[derive(Debug)]
enum Held {
    /// Bytes, and whether they end a client write (the segment's PSH).
    Data(Vec<u8>, bool),
    /// Bytes the kernel could not copy, and whether they end a write.
    Lost(u64, bool),
}

impl Held {
    fn len(&self) -> u64 {
        match self {
            Held::Data(bytes, _) => bytes.len() as u64,
            Held::Lost(len, _) => *len,
        }
    }

    fn cost(&self) -> usize {
        match self {
            Held::Data(bytes, _) => bytes.len() + SEGMENT_OVERHEAD,
            Held::Lost(..) => SEGMENT_OVERHEAD,
        }
    }
}

/// What a flow needs from the table for one call.
pub(super) struct FlowCtx<'a, C> {
    pub config: &'a FlowConfig,
    pub stats: &'a mut FlowStats,
    pub budget: &'a mut Budget,
    pub consumer: &'a mut C,
    pub filter: &'a mut dyn PayloadFilter,
}

/// One connection; `T` is what the consumer keeps for it.
#[derive(Debug)]
pub(super) struct Flow<T> {
    pub id: FlowId,
    /// Ended by FIN or RST; kept a while so late retransmissions are not
    /// taken for a new connection joined in the middle.
    pub closed: bool,
    /// Sequence number of the SYN, if seen.
    isn: Option<u32>,
    /// Sequence number of stream offset 0.
    base_seq: u32,
    /// Offset of the next byte the consumer expects.
    pub next_off: u64,
    held: BTreeMap<u64, Held>,
    /// Cost of `held`, charged to the per-flow cap and the budget.
    held_cost: usize,
    /// Offset of the FIN, once seen.
    fin_off: Option<u64>,
    /// Where the client's latest write began, as far as TCP shows it: the
    /// first byte after the SYN, or the byte after a segment that carried
    /// PSH. Unknown on a joined connection until its first PSH.
    write_start: Option<u64>,
    /// The kernel was told to leave out some of this connection's payload
    /// (the entry goes when the flow ends).
    pub filtered: bool,
    /// ... all of it from now on.
    ignores_all: bool,
    /// The consumer's state of this connection.
    pub stream: T,
    pub last_seen: u64,
    /// Since when the flow waits for a hole without progress.
    pub blocked_since: Option<u64>,
    pub in_hole_queue: bool,
}

impl<T> Flow<T> {
    /// A connection seen from its SYN.
    pub fn from_syn(id: FlowId, isn: u32, ts_ns: u64, stream: T) -> Self {
        let mut flow = Self::new(id, Some(isn), isn.wrapping_add(1), stream, ts_ns);
        flow.write_start = Some(0);
        flow
    }

    /// A connection joined in the middle, at the first byte seen, which may
    /// be anywhere in a write (a segment boundary inside an upload is no
    /// evidence of anything).
    pub fn joined(id: FlowId, seq: u32, ts_ns: u64, stream: T) -> Self {
        Self::new(id, None, seq, stream, ts_ns)
    }

    fn new(id: FlowId, isn: Option<u32>, base_seq: u32, stream: T, ts_ns: u64) -> Self {
        Self {
            id,
            closed: false,
            isn,
            base_seq,
            next_off: 0,
            held: BTreeMap::new(),
            held_cost: 0,
            fin_off: None,
            write_start: None,
            filtered: false,
            ignores_all: false,
            stream,
            last_seen: ts_ns,
            blocked_since: None,
            in_hole_queue: false,
        }
    }

    pub fn isn(&self) -> Option<u32> {
        self.isn
    }

    /// Stream offset of `seq`, relative to the expected byte (may be
    /// negative for bytes before the stream start).
    fn offset(&self, seq: u32) -> i64 {
        let expected = self.base_seq.wrapping_add(self.next_off as u32);
        self.next_off as i64 + i64::from(seq.wrapping_sub(expected) as i32)
    }

    /// Waiting for bytes before data already held, or before the FIN.
    pub fn is_blocked(&self) -> bool {
        !self.held.is_empty() || self.fin_off.is_some_and(|fin| self.next_off < fin)
    }

    /// Everything up to the FIN has been delivered (or the consumer wants
    /// no more).
    pub fn fin_reached<C: StreamConsumer<Stream = T>>(&self) -> bool {
        self.fin_off
            .is_some_and(|fin| self.next_off >= fin || C::is_done(&self.stream))
    }

    pub fn held_bytes(&self) -> usize {
        self.held_cost
    }

    /// A segment's payload; `push` when it ends a client write (PSH).
    pub fn on_data<C: StreamConsumer<Stream = T>>(
        &mut self,
        seq: u32,
        payload: &[u8],
        push: bool,
        ts_ns: u64,
        cx: &mut FlowCtx<'_, C>,
    ) {
        if payload.is_empty() {
            return;
        }
        let off = self.offset(seq);
        self.accept(off, payload.len() as u64, Some(payload), push, ts_ns, cx);
    }

    /// Bytes the kernel could not copy; `push` as for [`Self::on_data`].
    pub fn on_truncated<C: StreamConsumer<Stream = T>>(
        &mut self,
        seq: u32,
        len: u32,
        push: bool,
        ts_ns: u64,
        cx: &mut FlowCtx<'_, C>,
    ) {
        if len == 0 {
            return;
        }
        let off = self.offset(seq);
        self.accept(off, u64::from(len), None, push, ts_ns, cx);
    }

    /// A FIN at `seq` (already past any payload of its segment).
    pub fn on_fin(&mut self, seq: u32) {
        let off = self.offset(seq);
        if off >= 0 && off - (self.next_off as i64) <= MAX_AHEAD {
            self.fin_off = Some(off as u64);
        }
    }

    /// Takes `[off, off + len)`: bytes (`data`) or a known loss (`None`);
    /// `push` when they end a write.
    fn accept<C: StreamConsumer<Stream = T>>(
        &mut self,
        off: i64,
        len: u64,
        data: Option<&[u8]>,
        push: bool,
        ts_ns: u64,
        cx: &mut FlowCtx<'_, C>,
    ) {
        let end = off + len as i64;
        loop {
            let next = self.next_off as i64;
            if end <= next {
                cx.stats.duplicate_bytes += len;
                return;
            }
            if off - next > MAX_AHEAD {
                cx.stats.out_of_window_segments += 1;
                return;
            }
            if C::is_done(&self.stream) {
                // Nothing more to parse: only track where the stream is.
                self.release_held(cx);
                self.next_off = end as u64;
                return;
            }
            if off <= next {
                let skip = (next - off) as usize;
                cx.stats.duplicate_bytes += skip as u64;
                match data {
                    Some(bytes) => self.deliver(&bytes[skip.min(bytes.len())..], push, ts_ns, cx),
                    None => self.lost(end as u64, push, StreamLoss::Gap, cx),
                }
                self.drain(ts_ns, cx);
                return;
            }
            // Ahead of a hole: hold what is not held yet.
            let (start, end) = (off as u64, end as u64);
            let pieces = self.uncovered(start, end);
            let cost: usize = pieces
                .iter()
                .map(|(s, e)| match data {
                    Some(_) => (e - s) as usize + SEGMENT_OVERHEAD,
                    None => SEGMENT_OVERHEAD,
                })
                .sum();
            if pieces.is_empty() {
                cx.stats.duplicate_bytes += len;
                return;
            }
            let over_flow_cap = self.held_cost + cost > cx.config.max_ooo_bytes_per_flow;
            if !over_flow_cap && cx.budget.take(cost) {
                for (s, e) in pieces {
                    // Only the piece that ends the segment ends the write.
                    let push = push && e == end;
                    let held = match data {
                        Some(bytes) => Held::Data(
                            bytes[(s - start) as usize..(e - start) as usize].to_vec(),
                            push,
                        ),
                        None => Held::Lost(e - s, push),
                    };
                    self.held.insert(s, held);
                }
                self.held_cost += cost;
                cx.stats.out_of_order_segments += 1;
                return;
            }
            // Cannot hold it: stop waiting for the oldest hole.
            let reason = if over_flow_cap {
                StreamLoss::Gap
            } else {
                StreamLoss::BufferCap
            };
            cx.stats.holes_abandoned += 1;
            let first_held = self.held.keys().next().copied().unwrap_or(start);
            self.skip_to(first_held.min(start), reason, ts_ns, cx);
        }
    }

    /// Parts of `[start, end)` not covered by held segments.
    fn uncovered(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut pieces = Vec::new();
        let mut cur = start;
        if let Some((&k, held)) = self.held.range(..start).next_back() {
            cur = cur.max(k + held.len());
        }
        for (&k, held) in self.held.range(start..end) {
            if cur >= end {
                break;
            }
            if k > cur {
                pieces.push((cur, k));
            }
            cur = cur.max(k + held.len());
        }
        if cur < end {
            pieces.push((cur, end));
        }
        pieces
    }

    /// Hands the next bytes of the stream on, with where they sit among
    /// the client's writes; `push` when they end one.
    fn deliver<C: StreamConsumer<Stream = T>>(
        &mut self,
        bytes: &[u8],
        push: bool,
        ts_ns: u64,
        cx: &mut FlowCtx<'_, C>,
    ) {
        let edges = WriteEdges {
            starts_write: self.write_start == Some(self.next_off),
            ends_write: push,
        };
        self.next_off += bytes.len() as u64;
        if push {
            self.write_start = Some(self.next_off);
        }
        cx.consumer
            .data(&mut self.stream, bytes, edges, ts_ns, cx.budget);
        self.leave_out_unwanted(cx);
    }

    /// Payload the consumer will not look at (the rest of a body it
    /// dropped, or everything once it is done) is skipped here, and the
    /// kernel is told not to copy it: a client streaming at line rate then
    /// leaves the ring to the others. Bytes of it already in the ring come
    /// as duplicates.
    fn leave_out_unwanted<C: StreamConsumer<Stream = T>>(&mut self, cx: &mut FlowCtx<'_, C>) {
        if C::is_done(&self.stream) {
            if !self.ignores_all {
                self.ignores_all = true;
                self.filtered = true;
                cx.filter.ignore(&self.id.key, Ignore::FOREVER);
            }
            return;
        }
        let n = C::skippable(&self.stream);
        if n < MIN_SKIP {
            return;
        }
        cx.consumer.skipped(&mut self.stream, n, cx.budget);
        let from = self.base_seq.wrapping_add(self.next_off as u32);
        self.next_off += n;
        cx.stats.left_out_bytes += n;
        self.filtered = true;
        cx.filter.ignore(&self.id.key, Ignore::bytes(from, n));
    }

    /// The bytes up to `to` are lost (`push` when they ended a write): the
    /// consumer is told how many.
    fn lost<C: StreamConsumer<Stream = T>>(
        &mut self,
        to: u64,
        push: bool,
        loss: StreamLoss,
        cx: &mut FlowCtx<'_, C>,
    ) {
        let missing = to.saturating_sub(self.next_off);
        cx.stats.gaps += 1;
        cx.stats.gap_bytes += missing;
        cx.consumer.gap(&mut self.stream, loss, missing, cx.budget);
        self.next_off = to;
        if push {
            self.write_start = Some(to);
        }
    }

    /// Delivers held segments that the expected offset has reached.
    fn drain<C: StreamConsumer<Stream = T>>(&mut self, ts_ns: u64, cx: &mut FlowCtx<'_, C>) {
        while let Some(entry) = self.held.first_entry() {
            let start = *entry.key();
            if start > self.next_off {
                break;
            }
            let held = entry.remove();
            let cost = held.cost();
            self.held_cost -= cost;
            cx.budget.give(cost);
            let end = start + held.len();
            if end <= self.next_off {
                continue;
            }
            let skip = (self.next_off - start) as usize;
            match held {
                Held::Data(bytes, push) => {
                    self.deliver(&bytes[skip.min(bytes.len())..], push, ts_ns, cx)
                }
                Held::Lost(_, push) => self.lost(end, push, StreamLoss::Gap, cx),
            }
        }
    }

    /// Gives up the bytes up to `target`: the consumer is told (`reason`)
    /// and goes on from the held data there.
    fn skip_to<C: StreamConsumer<Stream = T>>(
        &mut self,
        target: u64,
        reason: StreamLoss,
        ts_ns: u64,
        cx: &mut FlowCtx<'_, C>,
    ) {
        if target > self.next_off {
            self.lost(target, false, reason, cx);
        }
        self.drain(ts_ns, cx);
    }

    /// Stops waiting for holes: each one becomes a gap, held data after it
    /// is delivered, and the stream is taken up to the FIN if there is one.
    pub fn flush<C: StreamConsumer<Stream = T>>(&mut self, ts_ns: u64, cx: &mut FlowCtx<'_, C>) {
        while self.is_blocked() {
            let target = match self.held.keys().next() {
                Some(&first) => first,
                None => match self.fin_off {
                    Some(fin) => fin,
                    None => break,
                },
            };
            cx.stats.holes_abandoned += 1;
            let before = self.next_off;
            self.skip_to(target, StreamLoss::Gap, ts_ns, cx);
            if self.next_off == before && self.held.keys().next() == Some(&target) {
                // Cannot happen (drain removes what starts at next_off), but
                // never loop forever.
                break;
            }
        }
    }

    /// Frees held segments.
    pub fn release_held<C>(&mut self, cx: &mut FlowCtx<'_, C>) {
        self.held.clear();
        cx.budget.give(self.held_cost);
        self.held_cost = 0;
    }
}
