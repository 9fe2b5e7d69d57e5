//! The per-connection request framer: a state machine fed with the
//! connection's byte stream in order, one slice at a time.
//!
//! Slices are parsed in place. Only a unit that straddles two slices is
//! copied: the start of a head (into `head`, a [`PendingHead`], then parsed
//! from there) and a body that is not complete in one slice (into `body`,
//! sized from its Content-Length). Everything held is charged to the flow stage's
//! [`Budget`](crate::flow::Budget), shared by all connections.
//!
//! # Losing and finding the framing
//!
//! A shadow must only ever get requests v1 got, so the framer sends a
//! request only when the byte stream proves where it starts: from the
//! connection's first byte, it follows the framing request after request.
//! When the framing is lost (a gap it cannot step over, a head over our
//! limits, a join in the middle of a connection) the connection is
//! *desynced*: its bytes are skipped, never searched for something that
//! looks like a request line (an upload's body may be full of them). Only
//! where a client write starts ([`WriteEdges`]) is a candidate tried, *on
//! probation*: it must be a complete, valid request that ends exactly where
//! a write ends (a client sends a request and then waits for the answer).
//! If it is, it is delivered and the framing is back (`resyncs`); if
//! anything else happens, the framer quietly goes back to skipping.
//!
//! A request that breaks the protocol, or that not every server would frame
//! the same way (garbage, a head httparse rejects, a bare line end,
//! obs-fold, doubtful lengths: see the rules in the [module docs](crate::http)),
//! ends the connection for us: v1 answers such a request with 400 and
//! closes (RFC 9112 §11.2 says it must not guess the framing), so whatever
//! the client sends after it is not requests v1 served. After a request on
//! which v1 closes by itself, the same holds (`State::Closed`).

mod body;
mod stream;

use bytes::Bytes;

use super::chunked::ChunkedDecoder;
use super::head::{BodyKind, ParsedHead, parse_head};
use super::lines::{HeadScan, PendingHead, leading_line_ends, scan_strict};
use super::request_line::{START_PROBE, Start, check_start};
use crate::capture::FlowId;
use crate::flow::WriteEdges;
use crate::http::request::{Ctx, HttpConfig, HttpStats, Request, RequestSink, SkipReason};

/// What the request framer needs from its surroundings for one call.
pub type FramerCtx<'a, S> = Ctx<'a, HttpConfig, HttpStats, S>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a request boundary, or inside a head whose start is in `head`.
    Head,
    /// The framing is lost: bytes are skipped up to the next write start.
    Desync,
    /// A Content-Length body; `keep` false when it is being skipped.
    Body {
        remaining: u64,
        keep: bool,
    },
    Chunked {
        keep: bool,
    },
    /// v1 closes after the request delivered last: bytes after it are
    /// counted once (`after_close`), then ignored.
    Closed,
    /// Nothing more on this connection is HTTP/1 (or it has ended).
    Stopped,
}

/// A parsed head whose body is still arriving.
#[derive(Debug)]
struct Current {
    head: Bytes,
    parsed: ParsedHead,
    first_byte_ns: u64,
}

/// Frames the requests of one connection. See the [module docs](crate::http).
#[derive(Debug)]
pub struct RequestFramer {
    flow: FlowId,
    state: State,
    /// The head in progress (its start, when it straddles slices).
    head: PendingHead,
    current: Option<Current>,
    /// Set while the body of the request in progress streams.
    streaming: Option<stream::Streaming>,
    body: Vec<u8>,
    trailers: Vec<u8>,
    chunked: ChunkedDecoder,
    /// Bytes of `head`, `body` and `trailers` charged to the budget.
    charged: usize,
    /// The request in progress started at a write start while desynced: it
    /// is delivered only if it ends where a write ends, and anything wrong
    /// with it sends the framer back to `Desync` without counting a loss.
    probation: bool,
    /// Counted once, when a desynced stretch actually skips a byte.
    desync_reason: Option<SkipReason>,
    /// The slice being fed ends a client write.
    slice_ends_write: bool,
    /// Requests lost or framing lost so far: when it moves, the requests
    /// and responses of this connection no longer pair up one to one.
    losses: u32,
}

impl RequestFramer {
    /// How many times a request or the framing was lost (see `losses`).
    pub fn losses(&self) -> u32 {
        self.losses
    }

    /// A framer for a connection seen from its start.
    pub fn new(flow: FlowId) -> Self {
        Self::with_state(flow, State::Head)
    }

    /// A framer for a connection joined in the middle (no SYN seen): it
    /// starts desynced, and counts `midstream_join` if it has to skip bytes
    /// before a request proves itself.
    pub fn new_midstream(flow: FlowId) -> Self {
        let mut framer = Self::with_state(flow, State::Desync);
        framer.desync_reason = Some(SkipReason::MidstreamJoin);
        // Requests before the join are unknown: nothing to pair with.
        framer.losses = 1;
        framer
    }

    fn with_state(flow: FlowId, state: State) -> Self {
        Self {
            flow,
            state,
            head: PendingHead::default(),
            current: None,
            streaming: None,
            body: Vec::new(),
            trailers: Vec::new(),
            chunked: ChunkedDecoder::default(),
            losses: 0,
            charged: 0,
            probation: false,
            desync_reason: None,
            slice_ends_write: false,
        }
    }

    pub fn flow(&self) -> FlowId {
        self.flow
    }

    /// Bytes this framer holds (charged to the budget).
    pub fn buffered(&self) -> usize {
        self.charged
    }

    /// The rest of the connection is ignored (upgraded, unsupported, ended).
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Feeds the next bytes of the stream; `edges` says where they sit
    /// among the client's writes, `ts_ns` is the timestamp of the segment
    /// they came in.
    pub fn feed<S: RequestSink>(
        &mut self,
        mut data: &[u8],
        edges: WriteEdges,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) {
        self.slice_ends_write = edges.ends_write;
        let mut at_write_start = edges.starts_write;
        while !data.is_empty() {
            let n = match self.state {
                State::Head => self.on_head(data, ts_ns, cx),
                State::Desync => self.on_desync(data, at_write_start, cx),
                State::Body { remaining, keep } => self.on_body(data, remaining, keep, ts_ns, cx),
                State::Chunked { keep } => self.on_chunked(data, keep, ts_ns, cx),
                State::Closed => self.on_closed(data, cx),
                State::Stopped => {
                    cx.stats.skipped_bytes += data.len() as u64;
                    data.len()
                }
            };
            // Every handler consumes input or changes state; `min` keeps a
            // bug from ever turning into a panic.
            data = &data[n.min(data.len())..];
            at_write_start = false;
        }
    }

    /// How many of the next bytes the framer will skip without looking:
    /// the rest of a body it dropped (not while on probation, where the
    /// body's last segment must show that it ends a write).
    pub fn skippable(&self) -> u64 {
        match self.state {
            State::Body {
                remaining,
                keep: false,
            } if !self.probation => remaining,
            _ => 0,
        }
    }

    /// `n` bytes of [`Self::skippable`] went by unseen.
    pub fn skipped<S>(&mut self, n: u64, cx: &mut FramerCtx<'_, S>) {
        let State::Body {
            remaining,
            keep: false,
        } = self.state
        else {
            return;
        };
        let n = n.min(remaining);
        cx.stats.skipped_bytes += n;
        self.unkept_body_passed(n, remaining, cx);
    }

    /// `n` of the `remaining` bytes of a body we do not keep went by: the
    /// request ends with them, or its body goes on without them.
    fn unkept_body_passed<S>(&mut self, n: u64, remaining: u64, cx: &mut FramerCtx<'_, S>) {
        if n == remaining {
            self.skipped_request_done(false, cx);
        } else {
            self.state = State::Body {
                remaining: remaining - n,
                keep: false,
            };
        }
    }

    /// `missing` bytes of the stream are lost at the current position (a
    /// capture gap): the request in progress is dropped with `reason`. Inside
    /// a Content-Length body the framing survives (the gap's length is
    /// known); anywhere else the connection is desynced.
    pub fn gap<S>(&mut self, reason: SkipReason, missing: u64, cx: &mut FramerCtx<'_, S>) {
        if self.probation {
            self.back_to_desync(cx);
            return;
        }
        match self.state {
            State::Stopped | State::Closed | State::Desync => {}
            State::Body { remaining, keep } if missing <= remaining => {
                if keep {
                    cx.stats.dropped.add(reason);
                    self.losses += 1;
                    cx.stats.skipped_bytes += self.body.len() as u64;
                    self.body = Vec::new();
                    // A streamed body is lost for its readers.
                    self.streaming = None;
                    self.sync(cx);
                }
                self.unkept_body_passed(missing, remaining, cx);
            }
            // Already counted as lost: only the framing goes.
            State::Body { keep: false, .. } | State::Chunked { keep: false } => {
                self.desync(cx);
            }
            // Between requests a gap still loses the request it starts.
            State::Head | State::Body { .. } | State::Chunked { .. } => self.lose(reason, cx),
        }
    }

    /// The connection ends: a request in progress is dropped with `reason`,
    /// buffers are released and the framer ignores anything after.
    pub fn finish<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) {
        let in_progress = !self.probation
            && match self.state {
                State::Head => !self.head.bytes.is_empty(),
                State::Body { keep, .. } | State::Chunked { keep } => keep,
                State::Desync | State::Closed | State::Stopped => false,
            };
        if in_progress {
            cx.stats.dropped.add(reason);
            self.losses += 1;
        }
        self.clear(cx);
        self.head.bytes = Vec::new();
        self.probation = false;
        self.state = State::Stopped;
    }

    // --- bookkeeping -------------------------------------------------------

    fn held(&self) -> usize {
        self.head.bytes.len() + self.body.len() + self.trailers.len()
    }

    /// Brings the budget in line with what the buffers hold.
    fn sync<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        let held = self.held();
        cx.budget.settle(&mut self.charged, held);
    }

    /// Empties every buffer and forgets the request in progress (a
    /// streamed body is lost for its readers).
    fn clear<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        self.streaming = None;
        self.head.clear();
        self.body = Vec::new();
        self.trailers = Vec::new();
        self.current = None;
        self.sync(cx);
    }

    /// Drops the request in progress for `reason`; the framing is lost.
    fn lose<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) {
        cx.stats.dropped.add(reason);
        self.losses += 1;
        self.desync(cx);
    }

    /// The framing is lost: skip up to a write start (the loss of what is
    /// in progress is the caller's to count).
    fn desync<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        cx.stats.desyncs += 1;
        self.losses += 1;
        self.desync_reason = None;
        self.clear(cx);
        self.state = State::Desync;
    }

    /// The candidate on probation was not a request (or not a whole one):
    /// what it held is skipped, nothing is counted as lost but the bytes,
    /// and the framer skips to the next write start again.
    fn back_to_desync<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        self.probation = false;
        let held = self.held() + self.current.as_ref().map_or(0, |c| c.head.len());
        self.clear(cx);
        self.state = State::Desync;
        self.skip(held, cx);
    }

    /// On probation, bytes our limits or the protocol refuse only show the
    /// candidate was not a request: they are skipped with it and the framer
    /// desyncs. Returns whether it was on probation (nothing more to do).
    fn end_probation<S>(&mut self, skipped: usize, cx: &mut FramerCtx<'_, S>) -> bool {
        if !self.probation {
            return false;
        }
        self.back_to_desync(cx);
        self.skip(skipped, cx);
        true
    }

    /// A request our limits cannot take (`reason`): v1 may well have served
    /// it, so the connection is desynced, not given up.
    fn over_limit<S>(&mut self, reason: SkipReason, skipped: usize, cx: &mut FramerCtx<'_, S>) {
        if self.end_probation(skipped, cx) {
            return;
        }
        cx.stats.skipped_bytes += (self.held() + skipped) as u64;
        self.lose(reason, cx);
    }

    /// Bytes that break the protocol (`reason`), or a protocol we do not
    /// frame: the rest of the connection is ignored (see the module docs).
    /// On probation they only show the candidate was not a request.
    fn refuse<S>(&mut self, reason: SkipReason, skipped: usize, cx: &mut FramerCtx<'_, S>) {
        if self.end_probation(skipped, cx) {
            return;
        }
        self.stop(reason, skipped, cx);
    }

    /// Ignores the rest of the connection.
    fn stop<S>(&mut self, reason: SkipReason, skipped: usize, cx: &mut FramerCtx<'_, S>) {
        cx.stats.dropped.add(reason);
        self.losses += 1;
        cx.stats.skipped_bytes += (self.held() + skipped) as u64;
        self.clear(cx);
        self.state = State::Stopped;
    }

    /// Skips `n` bytes of a desynced stretch; its first skipped byte counts
    /// the stretch's reason, if it has one.
    fn skip<S>(&mut self, n: usize, cx: &mut FramerCtx<'_, S>) {
        if n == 0 {
            return;
        }
        cx.stats.skipped_bytes += n as u64;
        if let Some(reason) = self.desync_reason.take() {
            cx.stats.dropped.add(reason);
            self.losses += 1;
        }
    }

    /// Whether a request that ends `at_end` of the slice ends a client
    /// write; on probation only such a request proves itself.
    fn proven<S>(&mut self, at_end: bool, cx: &mut FramerCtx<'_, S>) -> bool {
        if !self.probation {
            return true;
        }
        if !(at_end && self.slice_ends_write) {
            return false;
        }
        self.probation = false;
        self.desync_reason = None;
        cx.stats.resyncs += 1;
        true
    }

    // --- heads -------------------------------------------------------------

    fn on_head<S: RequestSink>(
        &mut self,
        data: &[u8],
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        let max_head = cx.config.max_head_bytes;
        if self.head.bytes.is_empty() {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            let blank = leading_line_ends(data);
            if blank > 0 {
                if self.probation {
                    // A candidate starts with its request line right at
                    // the write start: these may end a request whose
                    // start was lost.
                    self.back_to_desync(cx);
                    self.skip(blank, cx);
                }
                return blank;
            }
            self.head.begin(ts_ns);
        }
        if !self.head.start_checked {
            let mut probe = [0u8; START_PROBE];
            let from_pending = self.head.bytes.len().min(START_PROBE);
            probe[..from_pending].copy_from_slice(&self.head.bytes[..from_pending]);
            let from_data = data.len().min(START_PROBE - from_pending);
            probe[from_pending..from_pending + from_data].copy_from_slice(&data[..from_data]);
            match check_start(&probe[..from_pending + from_data]) {
                Start::Ok => self.head.start_checked = true,
                Start::NeedMore => {}
                start => {
                    let reason = match start {
                        Start::Tls => SkipReason::UnsupportedTls,
                        Start::Http2 => SkipReason::UnsupportedHttp2,
                        _ => SkipReason::Garbage,
                    };
                    self.refuse(reason, data.len(), cx);
                    return data.len();
                }
            }
        }
        match scan_strict(&mut self.head.scan, data) {
            HeadScan::BareLineEnd(n) => {
                self.refuse(SkipReason::BareLineEnd, n, cx);
                n
            }
            HeadScan::ObsFold(n) => {
                self.refuse(SkipReason::ObsFold, n, cx);
                n
            }
            HeadScan::End(end) => {
                if self.head.bytes.len() + end > max_head {
                    self.over_limit(SkipReason::HeadTooLarge, end, cx);
                } else if self.head.bytes.is_empty() {
                    self.on_head_complete(&data[..end], end == data.len(), ts_ns, cx);
                } else if !cx.budget.has_room(end) {
                    self.over_limit(SkipReason::BufferCap, end, cx);
                } else {
                    self.head.bytes.extend_from_slice(&data[..end]);
                    let head = std::mem::take(&mut self.head.bytes);
                    self.sync(cx);
                    self.on_head_complete(&head, end == data.len(), ts_ns, cx);
                }
                end
            }
            HeadScan::More => {
                if self.probation && self.slice_ends_write {
                    // A candidate's head comes in one write: bytes that end
                    // a write before their head does may be the tail of an
                    // upload, glued to the next request's start.
                    self.back_to_desync(cx);
                    self.skip(data.len(), cx);
                } else if self.head.bytes.len() + data.len() >= max_head {
                    self.over_limit(SkipReason::HeadTooLarge, data.len(), cx);
                } else if !cx.budget.has_room(data.len()) {
                    self.over_limit(SkipReason::BufferCap, data.len(), cx);
                } else {
                    self.head.bytes.extend_from_slice(data);
                    self.sync(cx);
                }
                data.len()
            }
        }
    }

    /// A complete head (its bytes are skipped by the caller whatever
    /// happens here); `at_end` when it ends the slice.
    fn on_head_complete<S: RequestSink>(
        &mut self,
        head: &[u8],
        at_end: bool,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) {
        let parsed = match parse_head(head, cx.config.max_headers) {
            Ok(parsed) => parsed,
            // Our limit, not the protocol's: v1 may have served it.
            Err(reason @ SkipReason::TooManyHeaders) => {
                self.over_limit(reason, head.len(), cx);
                return;
            }
            Err(reason) => {
                self.refuse(reason, head.len(), cx);
                return;
            }
        };
        if parsed.expect_continue {
            cx.stats.expect_continue += 1;
        }
        let body = parsed.body;
        self.current = Some(Current {
            head: Bytes::copy_from_slice(head),
            parsed,
            first_byte_ns: self.head.first_byte_ns,
        });
        match body {
            BodyKind::None => self.deliver(Bytes::new(), Bytes::new(), at_end, ts_ns, cx),
            BodyKind::Length(n) => {
                let mut keep = n <= cx.config.max_body_bytes;
                if !keep {
                    cx.stats.dropped.add(SkipReason::BodyTooLarge);
                    self.losses += 1;
                } else if self.streams(n, cx) {
                    keep = self.start_stream(ts_ns, cx);
                }
                self.state = State::Body { remaining: n, keep };
            }
            BodyKind::Chunked => {
                self.chunked.reset();
                self.state = State::Chunked { keep: true };
            }
            // Never for a request (the grammar frames none until close).
            BodyKind::UntilClose => self.refuse(SkipReason::InvalidFraming, 0, cx),
        }
    }

    /// The body of a request that was already counted as dropped has gone
    /// by (`at_end` of the slice): on to the next request (or nothing,
    /// after an upgrade).
    fn skipped_request_done<S>(&mut self, at_end: bool, cx: &mut FramerCtx<'_, S>) {
        if !self.proven(at_end, cx) {
            self.back_to_desync(cx);
            return;
        }
        self.state = match self.current.take() {
            Some(c) if c.parsed.upgrade => State::Stopped,
            Some(c) if c.parsed.close => State::Closed,
            _ => State::Head,
        };
    }

    /// Like [`Self::refuse`], for a request whose loss is counted already.
    fn refuse_counted<S>(&mut self, skipped: usize, cx: &mut FramerCtx<'_, S>) {
        if self.probation {
            self.back_to_desync(cx);
            self.skip(skipped, cx);
            return;
        }
        cx.stats.skipped_bytes += (self.held() + skipped) as u64;
        self.clear(cx);
        self.state = State::Stopped;
    }

    /// A complete request (`at_end` of the slice) goes to the sink.
    fn deliver<S: RequestSink>(
        &mut self,
        body: Bytes,
        trailers: Bytes,
        at_end: bool,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) {
        if !self.proven(at_end, cx) {
            cx.stats.skipped_bytes += (body.len() + trailers.len()) as u64;
            self.back_to_desync(cx);
            return;
        }
        let Some(current) = self.current.take() else {
            self.state = State::Head;
            return;
        };
        let parsed = current.parsed;
        let chunked = parsed.body == BodyKind::Chunked;
        cx.stats.requests += 1;
        cx.stats.body_bytes += body.len() as u64;
        if chunked {
            cx.stats.chunked_requests += 1;
        }
        if parsed.upgrade {
            cx.stats.dropped.add(SkipReason::Upgraded);
            self.losses += 1;
            self.state = State::Stopped;
        } else if parsed.close {
            self.state = State::Closed;
        } else {
            self.state = State::Head;
        }
        cx.sink.on_request(Request {
            flow: self.flow,
            head: current.head,
            body,
            chunked,
            trailers,
            stream: None,
            version: parsed.version,
            method: parsed.method,
            target: parsed.target,
            headers: parsed.headers,
            expect_continue: parsed.expect_continue,
            upgrade: parsed.upgrade,
            first_byte_ns: current.first_byte_ns,
            complete_ns: ts_ns,
        });
    }

    /// Bytes after a request on which v1 closes: v1 never read them. Line
    /// ends alone (a client's stray CRLF after a body) are not a request;
    /// anything else is counted once and the rest ignored.
    fn on_closed<S>(&mut self, data: &[u8], cx: &mut FramerCtx<'_, S>) -> usize {
        let blank = leading_line_ends(data);
        cx.stats.skipped_bytes += blank as u64;
        if blank < data.len() {
            self.stop(SkipReason::AfterClose, data.len() - blank, cx);
        }
        data.len()
    }

    // --- desynchronised ---------------------------------------------------

    /// Skips bytes up to a write start, where a candidate request is tried
    /// on probation (see the module docs).
    fn on_desync<S>(
        &mut self,
        data: &[u8],
        at_write_start: bool,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        if at_write_start {
            self.probation = true;
            self.state = State::Head;
            return 0;
        }
        self.skip(data.len(), cx);
        data.len()
    }
}
