//! The per-connection request framer: a state machine fed with the
//! connection's byte stream in order, one slice at a time.
//!
//! Slices are parsed in place. Only a unit that straddles two slices is
//! copied: the start of a head (into `pending`, then parsed from there), a
//! candidate request line while resynchronising, and a body that is not
//! complete in one slice (into `body`, sized from its Content-Length).
//! Everything held is charged to the flow stage's [`Budget`], shared by all
//! connections.

use bytes::Bytes;

use super::chunked::{ChunkedDecoder, Step};
use super::head::{BodyKind, ParsedHead, parse_head};
use super::line::{Found, LineCheck, check_request_line, find_request_line, scan_head_end};
use super::{HttpConfig, HttpStats, Request, RequestSink, SkipReason};
use crate::capture::FlowId;
use crate::flow::Budget;

/// Bytes looked at to classify the start of a head (TLS, HTTP/2, garbage).
const START_PROBE: usize = 64;
/// The first line of the HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// A buffer that empties keeps its allocation up to this size; larger ones
/// are freed so idle connections hold (almost) nothing.
const KEEP_CAPACITY: usize = 512;
/// Most body bytes reserved up front from a Content-Length: a client that
/// announces a large body and sends nothing gets no large allocation.
const MAX_BODY_RESERVE: u64 = 1 << 20;

/// What a framer needs from its surroundings for one call.
pub struct FramerCtx<'a, S> {
    pub config: &'a HttpConfig,
    pub stats: &'a mut HttpStats,
    pub budget: &'a mut Budget,
    pub sink: &'a mut S,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a request boundary, or inside a head whose start is in `pending`.
    Head,
    /// Skipping the rest of a head that exceeded the limit, up to its end
    /// (so its header lines are never searched for a request line).
    SkipHead,
    /// Looking for the next request line; `pending` may hold a candidate.
    /// `lost` is counted when the first byte is actually skipped.
    Resync {
        lost: Option<SkipReason>,
    },
    /// A Content-Length body; `keep` false when it is being skipped.
    Body {
        remaining: u64,
        keep: bool,
    },
    Chunked {
        keep: bool,
    },
    /// Nothing more on this connection is HTTP/1 (or it has ended).
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Ok,
    NeedMore,
    Tls,
    Http2,
    Garbage,
}

fn check_start(view: &[u8]) -> Start {
    if let [0x16, rest @ ..] = view {
        // A TLS handshake record: content type 22, version 3.x.
        return match rest {
            [] | [_] => Start::NeedMore,
            [3, minor, ..] if *minor <= 4 => Start::Tls,
            _ => Start::Garbage,
        };
    }
    let n = view.len().min(H2_PREFACE_LINE.len());
    if view[..n] == H2_PREFACE_LINE[..n] {
        return if n == H2_PREFACE_LINE.len() {
            Start::Http2
        } else {
            Start::NeedMore
        };
    }
    // Only the shape counts here: a line longer than the head limit is
    // `head_too_large`, found by the head scan, not garbage.
    match check_request_line(view, usize::MAX, false) {
        LineCheck::Valid(_) => Start::Ok,
        LineCheck::Invalid => Start::Garbage,
        // A long target: the rest is httparse's to judge.
        LineCheck::NeedMore if view.len() >= START_PROBE => Start::Ok,
        LineCheck::NeedMore => Start::NeedMore,
    }
}

/// A parsed head whose body is still arriving.
#[derive(Debug)]
struct Current {
    head: Bytes,
    parsed: ParsedHead,
    first_byte_ns: u64,
}

/// Frames the requests of one connection. See the [module docs](super).
#[derive(Debug)]
pub struct RequestFramer {
    flow: FlowId,
    state: State,
    /// Start of a head, or a candidate request line, that straddles slices.
    pending: Vec<u8>,
    /// [`scan_head_end`] state over `pending`.
    head_scan: u8,
    /// The start of the head in `pending` passed [`check_start`].
    start_checked: bool,
    first_byte_ns: u64,
    current: Option<Current>,
    body: Vec<u8>,
    trailers: Vec<u8>,
    chunked: ChunkedDecoder,
    /// Bytes of `pending`, `body` and `trailers` charged to the budget.
    charged: usize,
}

impl RequestFramer {
    /// A framer for a connection seen from its start.
    pub fn new(flow: FlowId) -> Self {
        Self::with_state(flow, State::Head)
    }

    /// A framer for a connection joined in the middle (no SYN seen): it
    /// starts by looking for a request line, and counts `midstream_join` if
    /// it has to skip bytes to find one.
    pub fn new_midstream(flow: FlowId) -> Self {
        Self::with_state(
            flow,
            State::Resync {
                lost: Some(SkipReason::MidstreamJoin),
            },
        )
    }

    fn with_state(flow: FlowId, state: State) -> Self {
        Self {
            flow,
            state,
            pending: Vec::new(),
            head_scan: 0,
            start_checked: false,
            first_byte_ns: 0,
            current: None,
            body: Vec::new(),
            trailers: Vec::new(),
            chunked: ChunkedDecoder::default(),
            charged: 0,
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

    /// Feeds the next bytes of the stream; `ts_ns` is the timestamp of the
    /// segment they came in.
    pub fn feed<S: RequestSink>(&mut self, mut data: &[u8], ts_ns: u64, cx: &mut FramerCtx<'_, S>) {
        while !data.is_empty() {
            let n = match self.state {
                State::Head => self.on_head(data, ts_ns, cx),
                State::Resync { .. } => self.on_resync(data, ts_ns, cx),
                State::SkipHead => self.on_skip_head(data, cx),
                State::Body { remaining, keep } => self.on_body(data, remaining, keep, ts_ns, cx),
                State::Chunked { keep } => self.on_chunked(data, keep, ts_ns, cx),
                State::Stopped => {
                    cx.stats.skipped_bytes += data.len() as u64;
                    data.len()
                }
            };
            // Every handler consumes input or changes state; `min` keeps a
            // bug from ever turning into a panic.
            data = &data[n.min(data.len())..];
        }
    }

    /// The stream lost bytes at the current position (a capture gap): the
    /// request in progress is dropped with `reason` and the framer looks for
    /// the next request line after the gap.
    pub fn gap<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) {
        match self.state {
            State::Stopped => {}
            State::Resync { .. }
            | State::SkipHead
            | State::Body { keep: false, .. }
            | State::Chunked { keep: false } => {
                // Already counted as lost.
                self.clear(cx);
                self.state = State::Resync { lost: None };
            }
            // Between requests a gap still loses the request it starts.
            State::Head | State::Body { .. } | State::Chunked { .. } => self.lose(reason, cx),
        }
    }

    /// The connection ends: a request in progress is dropped with `reason`,
    /// buffers are released and the framer ignores anything after.
    pub fn finish<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) {
        let in_progress = match self.state {
            State::Head => !self.pending.is_empty(),
            State::Body { keep, .. } | State::Chunked { keep } => keep,
            State::Resync { .. } | State::SkipHead | State::Stopped => false,
        };
        if in_progress {
            cx.stats.dropped.add(reason);
        }
        self.clear(cx);
        self.pending = Vec::new();
        self.state = State::Stopped;
    }

    // --- bookkeeping -------------------------------------------------------

    fn held(&self) -> usize {
        self.pending.len() + self.body.len() + self.trailers.len()
    }

    /// Brings the budget in line with what the buffers hold.
    fn sync<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        let held = self.held();
        if held >= self.charged {
            cx.budget.charge(held - self.charged);
        } else {
            cx.budget.give(self.charged - held);
        }
        self.charged = held;
    }

    /// Empties every buffer and forgets the request in progress.
    fn clear<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        self.pending.clear();
        if self.pending.capacity() > KEEP_CAPACITY {
            self.pending = Vec::new();
        }
        self.body = Vec::new();
        self.trailers = Vec::new();
        self.current = None;
        self.sync(cx);
    }

    /// Drops the request in progress for `reason` and resynchronises.
    fn lose<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) {
        cx.stats.dropped.add(reason);
        self.clear(cx);
        self.state = State::Resync { lost: None };
    }

    /// Ignores the rest of the connection.
    fn stop<S>(&mut self, reason: SkipReason, skipped: usize, cx: &mut FramerCtx<'_, S>) {
        cx.stats.dropped.add(reason);
        cx.stats.skipped_bytes += (self.pending.len() + skipped) as u64;
        self.clear(cx);
        self.state = State::Stopped;
    }

    /// Skips `n` bytes while resynchronising.
    fn skip<S>(&mut self, n: usize, cx: &mut FramerCtx<'_, S>) {
        if n == 0 {
            return;
        }
        cx.stats.skipped_bytes += n as u64;
        if let State::Resync { lost } = &mut self.state
            && let Some(reason) = lost.take()
        {
            cx.stats.dropped.add(reason);
        }
    }

    // --- heads -------------------------------------------------------------

    fn on_head<S: RequestSink>(
        &mut self,
        data: &[u8],
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        let max_head = cx.config.max_head_bytes;
        if self.pending.is_empty() {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            let blank = data
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if blank > 0 {
                return blank;
            }
            self.first_byte_ns = ts_ns;
            self.head_scan = 0;
            self.start_checked = false;
        }
        if !self.start_checked {
            let mut probe = [0u8; START_PROBE];
            let from_pending = self.pending.len().min(START_PROBE);
            probe[..from_pending].copy_from_slice(&self.pending[..from_pending]);
            let from_data = data.len().min(START_PROBE - from_pending);
            probe[from_pending..from_pending + from_data].copy_from_slice(&data[..from_data]);
            match check_start(&probe[..from_pending + from_data]) {
                Start::Ok => self.start_checked = true,
                Start::NeedMore => {}
                Start::Tls => {
                    self.stop(SkipReason::UnsupportedTls, data.len(), cx);
                    return data.len();
                }
                Start::Http2 => {
                    self.stop(SkipReason::UnsupportedHttp2, data.len(), cx);
                    return data.len();
                }
                Start::Garbage => {
                    // Step past the first byte and search from the next one,
                    // whether it is in `pending` or in `data`.
                    let held = std::mem::take(&mut self.pending);
                    cx.stats.skipped_bytes += 1;
                    self.lose(SkipReason::Garbage, cx);
                    if held.is_empty() {
                        return 1;
                    }
                    // At most START_PROBE bytes: the search may find a
                    // request line (and a head start) among them.
                    self.feed(&held[1..], ts_ns, cx);
                    return 0;
                }
            }
        }
        match scan_head_end(&mut self.head_scan, data) {
            Some(end) => {
                if self.pending.len() + end > max_head {
                    cx.stats.skipped_bytes += (self.pending.len() + end) as u64;
                    self.lose(SkipReason::HeadTooLarge, cx);
                } else if self.pending.is_empty() {
                    self.on_head_complete(&data[..end], ts_ns, cx);
                } else if !cx.budget.has_room(end) {
                    cx.stats.skipped_bytes += (self.pending.len() + end) as u64;
                    self.lose(SkipReason::BufferCap, cx);
                } else {
                    self.pending.extend_from_slice(&data[..end]);
                    let head = std::mem::take(&mut self.pending);
                    self.sync(cx);
                    self.on_head_complete(&head, ts_ns, cx);
                }
                end
            }
            None => {
                if self.pending.len() + data.len() >= max_head {
                    cx.stats.skipped_bytes += (self.pending.len() + data.len()) as u64;
                    self.lose(SkipReason::HeadTooLarge, cx);
                    // `head_scan` goes on where this slice ends.
                    self.state = State::SkipHead;
                } else if !cx.budget.has_room(data.len()) {
                    cx.stats.skipped_bytes += (self.pending.len() + data.len()) as u64;
                    self.lose(SkipReason::BufferCap, cx);
                } else {
                    self.pending.extend_from_slice(data);
                    self.sync(cx);
                }
                data.len()
            }
        }
    }

    /// A complete head (its bytes are skipped by the caller whatever
    /// happens here).
    fn on_head_complete<S: RequestSink>(
        &mut self,
        head: &[u8],
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) {
        let parsed = match parse_head(head, cx.config.max_headers) {
            Ok(parsed) => parsed,
            Err(reason) => {
                cx.stats.skipped_bytes += head.len() as u64;
                self.lose(reason, cx);
                return;
            }
        };
        if parsed.te_overrides_cl {
            cx.stats.te_overrides_cl += 1;
        }
        if parsed.expect_continue {
            cx.stats.expect_continue += 1;
        }
        let body = parsed.body;
        self.current = Some(Current {
            head: Bytes::copy_from_slice(head),
            parsed,
            first_byte_ns: self.first_byte_ns,
        });
        match body {
            BodyKind::None => self.deliver(Bytes::new(), Bytes::new(), ts_ns, cx),
            BodyKind::Length(n) => {
                let keep = n <= cx.config.max_body_bytes;
                if !keep {
                    cx.stats.dropped.add(SkipReason::BodyTooLarge);
                }
                self.state = State::Body { remaining: n, keep };
            }
            BodyKind::Chunked => {
                self.chunked.reset();
                self.state = State::Chunked { keep: true };
            }
        }
    }

    fn on_skip_head<S>(&mut self, data: &[u8], cx: &mut FramerCtx<'_, S>) -> usize {
        let n = match scan_head_end(&mut self.head_scan, data) {
            Some(end) => {
                self.state = State::Resync { lost: None };
                end
            }
            None => data.len(),
        };
        cx.stats.skipped_bytes += n as u64;
        n
    }

    // --- bodies ------------------------------------------------------------

    fn on_body<S: RequestSink>(
        &mut self,
        data: &[u8],
        remaining: u64,
        mut keep: bool,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        let n = (data.len() as u64).min(remaining) as usize;
        let chunk = &data[..n];
        let remaining = remaining - n as u64;
        if keep {
            if remaining == 0 && self.body.is_empty() {
                // The whole body is in this slice: one copy, into the request.
                self.deliver(Bytes::copy_from_slice(chunk), Bytes::new(), ts_ns, cx);
                return n;
            }
            if cx.budget.has_room(n) {
                if self.body.is_empty() {
                    let total = remaining + n as u64;
                    self.body.reserve(total.min(MAX_BODY_RESERVE) as usize);
                }
                self.body.extend_from_slice(chunk);
                self.sync(cx);
            } else {
                cx.stats.dropped.add(SkipReason::BufferCap);
                keep = false;
                cx.stats.skipped_bytes += self.body.len() as u64;
                self.body = Vec::new();
                self.sync(cx);
            }
        }
        if !keep {
            cx.stats.skipped_bytes += n as u64;
        }
        if remaining > 0 {
            self.state = State::Body { remaining, keep };
        } else if keep {
            let body = Bytes::from(std::mem::take(&mut self.body));
            self.sync(cx);
            self.deliver(body, Bytes::new(), ts_ns, cx);
        } else {
            self.skipped_request_done();
        }
        n
    }

    fn on_chunked<S: RequestSink>(
        &mut self,
        data: &[u8],
        mut keep: bool,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        let trailers = if keep { Some(&mut self.trailers) } else { None };
        let (n, step) = self.chunked.step(data, trailers, cx.config.max_head_bytes);
        let n = n.min(data.len());
        match step {
            Step::Progress => {
                // Trailer lines may have been kept.
                if keep
                    && self.held() > self.charged
                    && !cx.budget.has_room(self.held() - self.charged)
                {
                    keep = self.drop_body(SkipReason::BufferCap, cx);
                }
                self.sync(cx);
                self.state = State::Chunked { keep };
            }
            Step::Data => {
                if keep {
                    if (self.body.len() + n) as u64 > cx.config.max_body_bytes {
                        keep = self.drop_body(SkipReason::BodyTooLarge, cx);
                    } else if !cx.budget.has_room(n) {
                        keep = self.drop_body(SkipReason::BufferCap, cx);
                    } else {
                        self.body.extend_from_slice(&data[..n]);
                        self.sync(cx);
                    }
                }
                if !keep {
                    cx.stats.skipped_bytes += n as u64;
                }
                self.state = State::Chunked { keep };
            }
            Step::Done => {
                if keep {
                    let body = Bytes::from(std::mem::take(&mut self.body));
                    let trailers = Bytes::from(std::mem::take(&mut self.trailers));
                    self.sync(cx);
                    self.deliver(body, trailers, ts_ns, cx);
                } else {
                    self.skipped_request_done();
                }
            }
            Step::Invalid | Step::TrailersTooLarge => {
                if keep {
                    let reason = if step == Step::Invalid {
                        SkipReason::InvalidFraming
                    } else {
                        SkipReason::TrailersTooLarge
                    };
                    self.lose(reason, cx);
                } else {
                    self.clear(cx);
                    self.state = State::Resync { lost: None };
                }
            }
        }
        n
    }

    /// Stops keeping the chunked body in progress (counted with `reason`);
    /// its remaining chunks are skipped. Returns the new `keep` (false).
    fn drop_body<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) -> bool {
        cx.stats.dropped.add(reason);
        cx.stats.skipped_bytes += self.body.len() as u64;
        self.body = Vec::new();
        self.trailers = Vec::new();
        self.sync(cx);
        false
    }

    /// The body of a request that was already counted as dropped has gone
    /// by: on to the next request (or nothing, after an upgrade).
    fn skipped_request_done(&mut self) {
        let upgrade = self.current.take().is_some_and(|c| c.parsed.upgrade);
        self.state = if upgrade { State::Stopped } else { State::Head };
    }

    fn deliver<S: RequestSink>(
        &mut self,
        body: Bytes,
        trailers: Bytes,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) {
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
            self.state = State::Stopped;
        } else {
            self.state = State::Head;
        }
        cx.sink.on_request(Request {
            flow: self.flow,
            head: current.head,
            body,
            chunked,
            trailers,
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

    // --- resynchronisation -------------------------------------------------

    fn on_resync<S>(&mut self, data: &[u8], ts_ns: u64, cx: &mut FramerCtx<'_, S>) -> usize {
        let max_line = cx.config.max_head_bytes;
        if self.pending.is_empty() {
            return match find_request_line(data, max_line) {
                Found::Line(0) => {
                    self.resynced(cx);
                    0
                }
                Found::Partial(0) => {
                    if cx.budget.has_room(data.len()) {
                        self.pending.extend_from_slice(data);
                        self.first_byte_ns = ts_ns;
                        self.sync(cx);
                    } else {
                        self.skip(data.len(), cx);
                    }
                    data.len()
                }
                Found::Line(p) | Found::Partial(p) => {
                    self.skip(p, cx);
                    p
                }
                Found::None => {
                    self.skip(data.len(), cx);
                    data.len()
                }
            };
        }
        // `pending` holds a candidate without a line end: complete its line.
        let line_end = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
        let take = line_end
            .min(max_line.saturating_sub(self.pending.len()))
            .max(1);
        if !cx.budget.has_room(take) {
            let n = self.pending.len();
            self.skip(n + take, cx);
            self.clear(cx);
            return take;
        }
        self.pending.extend_from_slice(&data[..take]);
        match find_request_line(&self.pending, max_line) {
            Found::Line(p) => {
                self.skip(p, cx);
                self.pending.drain(..p);
                self.sync(cx);
                // The line ends with the only `\n` in `pending`.
                self.head_scan = 1;
                self.start_checked = true;
                self.resynced(cx);
            }
            Found::Partial(p) => {
                // Shorter than `max_line` (longer candidates are invalid).
                self.skip(p, cx);
                self.pending.drain(..p);
                self.sync(cx);
            }
            Found::None => {
                let n = self.pending.len();
                self.skip(n, cx);
                self.clear(cx);
            }
        }
        take
    }

    fn resynced<S>(&mut self, cx: &mut FramerCtx<'_, S>) {
        if matches!(self.state, State::Resync { lost: None }) {
            cx.stats.resyncs += 1;
        }
        self.state = State::Head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_classification() {
        assert_eq!(check_start(b"\x16\x03\x01\x02\x00"), Start::Tls);
        assert_eq!(check_start(b"\x16\x03"), Start::NeedMore);
        assert_eq!(
            check_start(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Start::Http2
        );
        assert_eq!(check_start(b"PRI * HT"), Start::NeedMore);
        assert_eq!(check_start(b"GET / HTTP/1.1\r\n"), Start::Ok);
        assert_eq!(check_start(b"\x00\x01"), Start::Garbage);
    }
}
