//! The table of flows: lookup by 4-tuple, least-recently-active order for
//! idle expiry and eviction, and the hole timers.
//!
//! Flows live in a slab (`slots`, reused through a free list) threaded on a
//! doubly linked list in order of last activity, so touching, expiring and
//! evicting are O(1). Hole timers are a FIFO of deadlines checked lazily:
//! each flow has at most one live entry, stale ones are skipped (and
//! compacted away if they pile up).

use std::collections::{HashMap, VecDeque};

use mirror_common::{TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

use super::stream::{Flow, FlowCtx};
use super::{Budget, FlowConfig, FlowEndReason, FlowStats, StreamConsumer, StreamLoss};
use crate::capture::{Event, EventKind, EventSink, FlowId, FlowKey, NoFilter, PayloadFilter};

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slot<T> {
    flow: Option<Flow<T>>,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct HoleTimer {
    slot: u32,
    generation: u64,
    deadline: u64,
}

/// Reassembles every connection and hands its stream to the consumer `C`.
/// See the [module docs](super).
pub struct FlowTable<C: StreamConsumer> {
    config: FlowConfig,
    index: HashMap<FlowKey, u32>,
    slots: Vec<Slot<C::Stream>>,
    free: Vec<u32>,
    /// Least recently active flow.
    lru_head: u32,
    /// Most recently active flow.
    lru_tail: u32,
    holes: VecDeque<HoleTimer>,
    next_generation: u64,
    now_ns: u64,
    budget: Budget,
    stats: FlowStats,
    consumer: C,
    filter: Box<dyn PayloadFilter>,
}

impl<C: StreamConsumer> FlowTable<C> {
    pub fn new(config: FlowConfig, consumer: C) -> Self {
        let budget = Budget::new(config.max_buffered_bytes);
        Self {
            config,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            lru_head: NIL,
            lru_tail: NIL,
            holes: VecDeque::new(),
            next_generation: 0,
            now_ns: 0,
            budget,
            stats: FlowStats::default(),
            consumer,
            filter: Box::new(NoFilter),
        }
    }

    /// Where the table says what payload it no longer needs (the kernel
    /// program's ignore map); without one, it only skips it itself.
    pub fn with_filter(mut self, filter: Box<dyn PayloadFilter>) -> Self {
        self.filter = filter;
        self
    }

    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    pub fn consumer(&self) -> &C {
        &self.consumer
    }

    pub fn consumer_mut(&mut self) -> &mut C {
        &mut self.consumer
    }

    pub fn into_consumer(self) -> C {
        self.consumer
    }

    /// A snapshot of every counter and gauge of the flow stage.
    pub fn stats(&self) -> FlowStats {
        let mut flow = self.stats;
        flow.flows_tracked = self.index.len() as u64;
        flow.buffered_bytes = self.budget.used() as u64;
        flow
    }

    /// Recounts the bytes every flow holds; equals `stats().flow.buffered_bytes`
    /// unless the accounting has a bug. For tests and fuzzing (O(flows)).
    #[doc(hidden)]
    pub fn recount_buffered(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| s.flow.as_ref())
            .map(|f| f.held_bytes() + C::buffered(&f.stream))
            .sum()
    }

    /// The id of the open or ended flow tracked for `key`.
    pub fn flow_id(&self, key: &FlowKey) -> Option<FlowId> {
        let slot = *self.index.get(key)?;
        self.flow(slot).map(|f| f.id)
    }

    /// Ends idle flows and gives up holes whose time is up, as of `now_ns`
    /// (monotonic). [`EventSink::on_batch_end`] calls this.
    pub fn expire(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let now = self.now_ns;
        while let Some(timer) = self.holes.front().copied() {
            if timer.deadline > now {
                break;
            }
            self.holes.pop_front();
            self.on_hole_timer(timer);
        }
        let idle = self.config.idle_timeout_ns;
        while self.lru_head != NIL {
            let slot = self.lru_head;
            let Some(flow) = self.flow(slot) else {
                // Never happens: listed slots hold flows. Unlink to be safe.
                self.unlink(slot);
                continue;
            };
            if flow.last_seen.saturating_add(idle) > now {
                break;
            }
            if flow.closed {
                self.remove(slot);
            } else {
                self.end(slot, FlowEndReason::Idle);
            }
        }
    }

    /// When [`expire`](Self::expire) has something to do next: the first
    /// hole timer (perhaps stale: waking early is harmless) or the first
    /// idle expiry. `None` with no flow tracked.
    pub fn next_deadline(&self) -> Option<u64> {
        let hole = self.holes.front().map(|t| t.deadline);
        let idle = self
            .flow(self.lru_head)
            .map(|f| f.last_seen.saturating_add(self.config.idle_timeout_ns));
        match (hole, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends every flow as if idle (shutdown), delivering what can be.
    pub fn end_all(&mut self) {
        while self.lru_head != NIL {
            let slot = self.lru_head;
            match self.flow(slot) {
                Some(flow) if !flow.closed => self.end(slot, FlowEndReason::Idle),
                _ => self.remove(slot),
            }
        }
        self.holes.clear();
    }

    // --- events ------------------------------------------------------------

    fn on_control(&mut self, key: FlowKey, seq: u32, payload_len: u32, flags: u8, ts: u64) {
        if flags & TCP_RST != 0 {
            if let Some(slot) = self.lookup(&key) {
                self.touch(slot, ts);
                if self.flow(slot).is_some_and(|f| !f.closed) {
                    self.end(slot, FlowEndReason::Rst);
                }
            }
            return;
        }
        if flags & TCP_SYN != 0 {
            self.on_syn(key, seq, ts);
        }
        if flags & TCP_FIN != 0 {
            let Some(slot) = self.lookup(&key) else {
                return;
            };
            self.touch(slot, ts);
            // A SYN's payload starts one past its sequence number.
            let fin_seq = seq
                .wrapping_add(payload_len)
                .wrapping_add(u32::from(flags & TCP_SYN != 0));
            let before = match self.flow_mut(slot) {
                Some(flow) if !flow.closed => {
                    flow.on_fin(fin_seq);
                    flow.next_off
                }
                _ => return,
            };
            self.settle(slot, before);
        }
    }

    fn on_syn(&mut self, key: FlowKey, isn: u32, ts: u64) {
        if let Some(slot) = self.lookup(&key) {
            match self.flow(slot) {
                Some(flow) if !flow.closed && flow.isn() == Some(isn) => {
                    // A retransmitted SYN.
                    self.touch(slot, ts);
                    return;
                }
                Some(flow) if !flow.closed => self.end(slot, FlowEndReason::Superseded),
                _ => {}
            }
            // `end` keeps FIN/RST tombstones; a new connection replaces them.
            if self.lookup(&key) == Some(slot) {
                self.remove(slot);
            }
        }
        self.create(key, ts, false, |id, stream| {
            Flow::from_syn(id, isn, ts, stream)
        });
    }

    /// A data or truncated record; `push` when its segment carried PSH.
    fn on_payload(
        &mut self,
        key: FlowKey,
        seq: u32,
        payload: Option<&[u8]>,
        len: u32,
        push: bool,
        ts: u64,
    ) {
        let slot = match self.lookup(&key) {
            Some(slot) => slot,
            // A truncation alone tells nothing about where requests start.
            None if payload.is_none() || len == 0 => return,
            None => {
                self.stats.midstream_joins += 1;
                match self.create(key, ts, true, |id, stream| {
                    Flow::joined(id, seq, ts, stream)
                }) {
                    Some(slot) => slot,
                    None => return,
                }
            }
        };
        self.touch(slot, ts);
        let closed = self.flow(slot).is_none_or(|f| f.closed);
        if closed {
            self.stats.duplicate_bytes += u64::from(len);
            return;
        }
        let before = self.flow(slot).map_or(0, |f| f.next_off);
        self.with_flow(slot, |flow, cx| match payload {
            Some(bytes) => flow.on_data(seq, bytes, push, ts, cx),
            None => flow.on_truncated(seq, len, push, ts, cx),
        });
        self.settle(slot, before);
    }

    /// After an event on an open flow: end it at its FIN, or (re)arm its
    /// hole timer.
    fn settle(&mut self, slot: u32, before: u64) {
        let now = self.now_ns;
        let hole_timeout = self.config.hole_timeout_ns;
        let (fin, blocked) = match self.flow(slot) {
            Some(flow) if !flow.closed => (flow.fin_reached::<C>(), flow.is_blocked()),
            _ => return,
        };
        if fin {
            self.end(slot, FlowEndReason::Fin);
            return;
        }
        let mut arm = None;
        if let Some(flow) = self.flow_mut(slot) {
            if !blocked {
                flow.blocked_since = None;
                return;
            }
            if flow.blocked_since.is_none() || flow.next_off != before {
                flow.blocked_since = Some(now);
            }
            if !flow.in_hole_queue {
                flow.in_hole_queue = true;
                arm = Some(HoleTimer {
                    slot,
                    generation: flow.id.generation,
                    deadline: now.saturating_add(hole_timeout),
                });
            }
        }
        if let Some(timer) = arm {
            self.holes.push_back(timer);
            if self.holes.len() > 2 * self.slots.len() + 64 {
                self.compact_holes();
            }
        }
    }

    fn on_hole_timer(&mut self, timer: HoleTimer) {
        let now = self.now_ns;
        let hole_timeout = self.config.hole_timeout_ns;
        let Some(flow) = self.flow_mut(timer.slot) else {
            return;
        };
        if flow.id.generation != timer.generation || !flow.in_hole_queue {
            return;
        }
        flow.in_hole_queue = false;
        if flow.closed || !flow.is_blocked() {
            flow.blocked_since = None;
            return;
        }
        let deadline = flow
            .blocked_since
            .unwrap_or(now)
            .saturating_add(hole_timeout);
        if deadline > now {
            flow.in_hole_queue = true;
            self.holes.push_back(HoleTimer { deadline, ..timer });
            return;
        }
        self.with_flow(timer.slot, |flow, cx| flow.flush(now, cx));
        let before = self.flow(timer.slot).map_or(0, |f| f.next_off);
        self.settle(timer.slot, before);
    }

    fn compact_holes(&mut self) {
        let slots = &self.slots;
        self.holes.retain(|t| {
            slots
                .get(t.slot as usize)
                .and_then(|s| s.flow.as_ref())
                .is_some_and(|f| f.id.generation == t.generation && f.in_hole_queue)
        });
    }

    // --- flow lifecycle ----------------------------------------------------

    fn create(
        &mut self,
        key: FlowKey,
        ts: u64,
        joined_midstream: bool,
        make: impl FnOnce(FlowId, C::Stream) -> Flow<C::Stream>,
    ) -> Option<u32> {
        if self.config.max_flows == 0 {
            self.stats.flows_refused += 1;
            return None;
        }
        while self.index.len() >= self.config.max_flows && self.lru_head != NIL {
            let victim = self.lru_head;
            let idle_deadline = self.config.idle_timeout_ns;
            let now = self.now_ns;
            match self.flow(victim) {
                Some(flow) if !flow.closed => {
                    let reason = if flow.last_seen.saturating_add(idle_deadline) <= now {
                        FlowEndReason::Idle
                    } else {
                        FlowEndReason::Evicted
                    };
                    self.end(victim, reason);
                    if self.lookup_slot_alive(victim) {
                        self.remove(victim);
                    }
                }
                _ => self.remove(victim),
            }
        }
        let id = FlowId {
            key,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        let stream = self.consumer.open(id, joined_midstream);
        let flow = make(id, stream);
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    s.flow = Some(flow);
                }
                slot
            }
            None => {
                self.slots.push(Slot {
                    flow: Some(flow),
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        self.link_tail(slot);
        if let Some(flow) = self.flow_mut(slot) {
            flow.last_seen = ts;
        }
        self.stats.flows_started += 1;
        self.stats.flows_active += 1;
        Some(slot)
    }

    fn lookup_slot_alive(&self, slot: u32) -> bool {
        self.flow(slot).is_some()
    }

    /// Ends an open flow. FIN and RST leave a tombstone; other reasons
    /// remove the flow.
    fn end(&mut self, slot: u32, reason: FlowEndReason) {
        let now = self.now_ns;
        let lost = match reason {
            FlowEndReason::Fin => StreamLoss::Incomplete,
            FlowEndReason::Rst => StreamLoss::Reset,
            FlowEndReason::Idle => StreamLoss::IdleExpired,
            FlowEndReason::Evicted => StreamLoss::FlowCap,
            FlowEndReason::Superseded => StreamLoss::Superseded,
        };
        let ended = self.with_flow(slot, |flow, cx| {
            if flow.closed {
                return false;
            }
            if matches!(reason, FlowEndReason::Idle | FlowEndReason::Evicted) {
                // Held data after a hole is still worth delivering.
                flow.flush(now, cx);
            }
            cx.consumer.end(&mut flow.stream, lost, cx.budget);
            flow.release_held(cx);
            if flow.filtered {
                cx.filter.forget(&flow.id.key);
            }
            flow.closed = true;
            flow.in_hole_queue = false;
            flow.blocked_since = None;
            true
        });
        if ended != Some(true) {
            return;
        }
        self.stats.flows_ended[reason as usize] += 1;
        self.stats.flows_active = self.stats.flows_active.saturating_sub(1);
        if !matches!(reason, FlowEndReason::Fin | FlowEndReason::Rst) {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        let Some(flow) = self
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.flow.take())
        else {
            return;
        };
        if self.index.get(&flow.id.key) == Some(&slot) {
            self.index.remove(&flow.id.key);
        }
        if !flow.closed {
            // Removed without `end` (never happens today): keep gauges right.
            self.stats.flows_active = self.stats.flows_active.saturating_sub(1);
        }
        self.budget
            .give(flow.held_bytes() + C::buffered(&flow.stream));
        self.free.push(slot);
    }

    // --- helpers -----------------------------------------------------------

    fn lookup(&self, key: &FlowKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    fn flow(&self, slot: u32) -> Option<&Flow<C::Stream>> {
        self.slots.get(slot as usize)?.flow.as_ref()
    }

    fn flow_mut(&mut self, slot: u32) -> Option<&mut Flow<C::Stream>> {
        self.slots.get_mut(slot as usize)?.flow.as_mut()
    }

    fn with_flow<R>(
        &mut self,
        slot: u32,
        f: impl FnOnce(&mut Flow<C::Stream>, &mut FlowCtx<'_, C>) -> R,
    ) -> Option<R> {
        let Self {
            slots,
            config,
            budget,
            stats,
            consumer,
            filter,
            ..
        } = self;
        let flow = slots.get_mut(slot as usize)?.flow.as_mut()?;
        let mut cx = FlowCtx {
            config,
            stats,
            budget,
            consumer,
            filter: filter.as_mut(),
        };
        Some(f(flow, &mut cx))
    }

    /// Marks activity: most recently active, last seen at `ts`.
    fn touch(&mut self, slot: u32, ts: u64) {
        if let Some(flow) = self.flow_mut(slot) {
            flow.last_seen = flow.last_seen.max(ts);
        }
        if self.lru_tail != slot {
            self.unlink(slot);
            self.link_tail(slot);
        }
    }

    fn link_tail(&mut self, slot: u32) {
        let tail = self.lru_tail;
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.prev = tail;
            s.next = NIL;
        }
        match self.slots.get_mut(tail as usize) {
            Some(t) => t.next = slot,
            None => self.lru_head = slot,
        }
        self.lru_tail = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        let (prev, next) = (s.prev, s.next);
        let linked = prev != NIL || next != NIL || self.lru_head == slot;
        if !linked {
            return;
        }
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.lru_head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.lru_tail = prev,
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.prev = NIL;
            s.next = NIL;
        }
    }
}

impl<C: StreamConsumer> EventSink for FlowTable<C> {
    fn on_event(&mut self, event: &Event<'_>) {
        let ts = event.timestamp_ns;
        let push = event.tcp_flags & TCP_PSH != 0;
        self.now_ns = self.now_ns.max(ts);
        match event.kind {
            EventKind::Control {
                seq,
                payload_len,
                flags,
            } => self.on_control(event.flow, seq, payload_len, flags, ts),
            EventKind::Data { seq, payload } => self.on_payload(
                event.flow,
                seq,
                Some(payload),
                payload.len() as u32,
                push,
                ts,
            ),
            EventKind::Truncated { seq, len } => {
                self.on_payload(event.flow, seq, None, len, push, ts)
            }
        }
    }

    fn on_batch_end(&mut self, now_ns: u64) {
        self.expire(now_ns);
    }

    fn next_deadline(&self) -> Option<u64> {
        FlowTable::next_deadline(self)
    }
}
