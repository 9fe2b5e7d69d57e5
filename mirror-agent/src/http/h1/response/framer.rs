//! The per-connection response framer: a state machine fed with the
//! server's byte stream in order, one slice at a time.
//!
//! Heads are parsed in place when a slice holds the whole of one; only the
//! start of a head that straddles slices is copied (into `head`, a
//! [`PendingHead`]). A final head is kept (its bytes back the header values
//! of the answer) until its body is complete; body bytes go to a [`BodyCollector`], which
//! keeps at most the configured cap. All of it is charged to the flow
//! stage's [`Budget`].

use bytes::Bytes;

use super::head::{ParsedHead, STATUS_LINE_PREFIX, parse_head};
use super::{
    Answers, CapturedResponse, Headers, ResponseConfig, ResponseLoss, ResponseSink, ResponseStats,
};
use crate::capture::FlowId;
use crate::flow::Budget;
use crate::http::answer::{Answer, BodyCollector};
use crate::http::h1::body_length::{BodyLength, RequestKind, response_body};
use crate::http::h1::chunked::{ChunkedDecoder, Step};
use crate::http::h1::lines::{PendingHead, leading_line_ends, scan_lenient};
use crate::http::request::Ctx;

/// What the response framer needs from its surroundings for one call.
pub type ResponseCtx<'a, S> = Ctx<'a, ResponseConfig, ResponseStats, S>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between responses, or inside a head whose start is in `head`.
    Head,
    /// A Content-Length body with this many bytes to come.
    Length {
        remaining: u64,
    },
    Chunked,
    /// A body that ends with the connection.
    UntilClose,
    /// The rest of a Content-Length body partly lost to a gap (the response
    /// is reported already): skipped.
    Skip {
        remaining: u64,
    },
    /// Nothing more on this connection is framed.
    Stopped,
}

/// The final response whose body is arriving.
struct Current {
    status: u16,
    headers: Headers,
    /// Length of the head its header values point into.
    head_len: usize,
    first_byte_ns: u64,
    body: BodyCollector,
    /// Body bytes seen so far (the collector keeps the first `cap`).
    body_len: u64,
    /// The connection is no longer HTTP/1 after this response.
    upgrade: bool,
}

impl Current {
    fn held(&self, cap: usize) -> usize {
        self.head_len + (self.body_len.min(cap as u64) as usize)
    }
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("status", &self.status)
            .field("head_len", &self.head_len)
            .field("body_len", &self.body_len)
            .field("upgrade", &self.upgrade)
            .finish_non_exhaustive()
    }
}

/// Frames the responses of one connection. See the [module docs](super).
#[derive(Debug)]
pub struct ResponseFramer {
    flow: FlowId,
    state: State,
    /// The head in progress (its start, when it straddles slices).
    head: PendingHead,
    current: Option<Current>,
    chunked: ChunkedDecoder,
    /// Timestamp of the last segment fed (a close-delimited body completes
    /// with it).
    last_ts_ns: u64,
    /// Bytes of `head` and `current` charged to the budget.
    charged: usize,
    /// Cap of the body collector in `current` (for the accounting).
    body_cap: usize,
    /// The bytes of the response in progress as they came, when the
    /// configuration keeps them ([`ResponseConfig::raw_cap`]).
    raw: Vec<u8>,
    /// The response in progress outgrew the raw cap (or the budget): its
    /// bytes are not kept.
    raw_over: bool,
    /// The last handler delivered a response, with the bytes it consumed.
    raw_taken: bool,
}

impl ResponseFramer {
    /// A framer for a connection seen from its start.
    pub fn new(flow: FlowId) -> Self {
        Self {
            flow,
            state: State::Head,
            head: PendingHead::default(),
            current: None,
            chunked: ChunkedDecoder::default(),
            last_ts_ns: 0,
            charged: 0,
            body_cap: 0,
            raw: Vec::new(),
            raw_over: false,
            raw_taken: false,
        }
    }

    /// A framer that frames nothing (a connection joined in the middle:
    /// the caller reports it).
    pub fn stopped(flow: FlowId) -> Self {
        Self {
            state: State::Stopped,
            ..Self::new(flow)
        }
    }

    pub fn flow(&self) -> FlowId {
        self.flow
    }

    /// Bytes this framer holds (charged to the budget).
    pub fn buffered(&self) -> usize {
        self.charged
    }

    /// The rest of the connection is ignored.
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Feeds the next bytes of the stream, from a segment seen at `ts_ns`.
    pub fn feed<S: ResponseSink>(
        &mut self,
        mut data: &[u8],
        ts_ns: u64,
        cx: &mut ResponseCtx<'_, S>,
    ) {
        self.last_ts_ns = ts_ns;
        while !data.is_empty() {
            let state = self.state;
            self.raw_taken = false;
            let n = match state {
                State::Head => self.on_head(data, ts_ns, cx),
                State::Length { remaining } => self.on_length(data, remaining, ts_ns, cx),
                State::Chunked => self.on_chunked(data, ts_ns, cx),
                State::UntilClose => {
                    self.push_body(data, cx);
                    data.len()
                }
                State::Skip { remaining } => {
                    let n = (data.len() as u64).min(remaining);
                    self.skipped(n, cx);
                    n as usize
                }
                State::Stopped => {
                    cx.stats.ignored_bytes += data.len() as u64;
                    data.len()
                }
            };
            // Every handler consumes input or changes state; `min` keeps a
            // bug from ever turning into a panic.
            let n = n.min(data.len());
            let framed = !matches!(state, State::Skip { .. } | State::Stopped);
            if cx.config.raw_cap > 0 && framed && !self.raw_taken && !self.is_stopped() {
                self.keep_raw(&data[..n], cx);
            }
            data = &data[n..];
        }
    }

    /// How many of the next bytes the framer skips without looking: the
    /// rest of a body lost to a gap.
    pub fn skippable(&self) -> u64 {
        match self.state {
            State::Skip { remaining } => remaining,
            _ => 0,
        }
    }

    /// `n` bytes of [`Self::skippable`] went by unseen.
    pub fn skipped<S>(&mut self, n: u64, cx: &mut ResponseCtx<'_, S>) {
        let State::Skip { remaining } = self.state else {
            return;
        };
        let n = n.min(remaining);
        cx.stats.ignored_bytes += n;
        self.state = if n == remaining {
            State::Head
        } else {
            State::Skip {
                remaining: remaining - n,
            }
        };
    }

    /// `missing` bytes of the stream are lost at the current position.
    /// Inside a Content-Length body the framing survives and only that
    /// response is lost ([`ResponseLoss::BodyGap`]); anywhere else the
    /// connection's responses are.
    pub fn gap<S: ResponseSink>(
        &mut self,
        reason: ResponseLoss,
        missing: u64,
        cx: &mut ResponseCtx<'_, S>,
    ) {
        match self.state {
            State::Stopped => {}
            State::Length { remaining } if missing <= remaining => {
                cx.stats.ignored_bytes += self.current.as_ref().map_or(0, |c| c.body_len);
                self.current = None;
                self.drop_raw();
                self.sync(cx);
                self.state = if missing == remaining {
                    State::Head
                } else {
                    State::Skip {
                        remaining: remaining - missing,
                    }
                };
                cx.stats.lost.add(ResponseLoss::BodyGap);
                cx.sink.on_lost(&self.flow, ResponseLoss::BodyGap);
            }
            State::Skip { remaining } if missing <= remaining => {
                self.state = if missing == remaining {
                    State::Head
                } else {
                    State::Skip {
                        remaining: remaining - missing,
                    }
                };
            }
            _ => self.lose(reason, cx),
        }
    }

    /// The connection ends (`reason` says how). A close-delimited body
    /// ends with a FIN; any other response in progress is lost.
    pub fn finish<S: ResponseSink>(&mut self, reason: ResponseLoss, cx: &mut ResponseCtx<'_, S>) {
        match self.state {
            State::UntilClose if reason == ResponseLoss::Incomplete => {
                let ts = self.last_ts_ns;
                self.deliver(ts, &[], cx);
            }
            State::Head if self.head.bytes.is_empty() => {}
            State::Stopped | State::Skip { .. } => {}
            _ => {
                self.lose(reason, cx);
                return;
            }
        }
        self.clear(cx);
        self.state = State::Stopped;
    }

    // --- bookkeeping -------------------------------------------------------

    fn held(&self) -> usize {
        self.head.bytes.len()
            + self.raw.len()
            + self.current.as_ref().map_or(0, |c| c.held(self.body_cap))
    }

    /// Adds bytes of the response in progress to its raw copy, while it
    /// fits in the cap and the budget.
    fn keep_raw<S>(&mut self, mut piece: &[u8], cx: &mut ResponseCtx<'_, S>) {
        if self.raw_over {
            return;
        }
        if self.raw.is_empty() {
            // Stray line ends between responses belong to neither.
            let blank = leading_line_ends(piece);
            piece = &piece[blank..];
        }
        if self.raw.len() + piece.len() > cx.config.raw_cap || !cx.budget.has_room(piece.len()) {
            self.raw = Vec::new();
            self.raw_over = true;
        } else {
            self.raw.extend_from_slice(piece);
        }
        self.sync(cx);
    }

    /// The raw copy of the response being delivered (ending with `tail`,
    /// the bytes of this call), if it is kept whole.
    fn take_raw<S>(&mut self, tail: &[u8], cx: &mut ResponseCtx<'_, S>) -> Option<Bytes> {
        if cx.config.raw_cap == 0 {
            return None;
        }
        self.keep_raw(tail, cx);
        self.raw_taken = true;
        let raw = (!std::mem::take(&mut self.raw_over))
            .then(|| Bytes::from(std::mem::take(&mut self.raw)));
        self.raw = Vec::new();
        self.sync(cx);
        raw
    }

    /// Brings the budget in line with what the framer holds.
    fn sync<S>(&mut self, cx: &mut ResponseCtx<'_, S>) {
        let held = self.held();
        cx.budget.settle(&mut self.charged, held);
    }

    fn clear<S>(&mut self, cx: &mut ResponseCtx<'_, S>) {
        self.head.clear();
        self.current = None;
        self.drop_raw();
        self.sync(cx);
    }

    fn drop_raw(&mut self) {
        self.raw = Vec::new();
        self.raw_over = false;
    }

    /// The connection's responses are lost from here on: reported once,
    /// the rest ignored.
    fn lose<S: ResponseSink>(&mut self, reason: ResponseLoss, cx: &mut ResponseCtx<'_, S>) {
        cx.stats.ignored_bytes += self.held() as u64;
        self.clear(cx);
        self.head.bytes = Vec::new();
        self.state = State::Stopped;
        cx.stats.lost.add(reason);
        cx.sink.on_lost(&self.flow, reason);
    }

    // --- heads -------------------------------------------------------------

    fn on_head<S: ResponseSink>(
        &mut self,
        data: &[u8],
        ts_ns: u64,
        cx: &mut ResponseCtx<'_, S>,
    ) -> usize {
        let max_head = cx.config.max_head_bytes;
        if self.head.bytes.is_empty() {
            // Stray line ends between responses (after a body that ends
            // with an extra CRLF) are tolerated, as between requests.
            let blank = leading_line_ends(data);
            if blank > 0 {
                return blank;
            }
            self.head.begin(ts_ns);
        }
        if !self.head.start_checked {
            let seen = self.head.bytes.len().min(STATUS_LINE_PREFIX.len());
            let wanted = STATUS_LINE_PREFIX.len() - seen;
            let here = data.len().min(wanted);
            if STATUS_LINE_PREFIX[seen..seen + here] != data[..here] {
                self.lose(ResponseLoss::Garbage, cx);
                cx.stats.ignored_bytes += data.len() as u64;
                return data.len();
            }
            self.head.start_checked = here == wanted;
        }
        match scan_lenient(&mut self.head.scan, data) {
            Some(end) => {
                if self.head.bytes.len() + end > max_head {
                    self.lose(ResponseLoss::HeadTooLarge, cx);
                    cx.stats.ignored_bytes += end as u64;
                } else if self.head.bytes.is_empty() {
                    self.on_head_complete(&data[..end], &data[..end], ts_ns, cx);
                } else {
                    let mut head = std::mem::take(&mut self.head.bytes);
                    head.extend_from_slice(&data[..end]);
                    self.on_head_complete(&head, &data[..end], ts_ns, cx);
                }
                end
            }
            None => {
                if self.head.bytes.len() + data.len() >= max_head {
                    self.lose(ResponseLoss::HeadTooLarge, cx);
                    cx.stats.ignored_bytes += data.len() as u64;
                } else if !cx.budget.has_room(data.len()) {
                    self.lose(ResponseLoss::BufferCap, cx);
                    cx.stats.ignored_bytes += data.len() as u64;
                } else {
                    self.head.bytes.extend_from_slice(data);
                    self.sync(cx);
                }
                data.len()
            }
        }
    }

    /// A complete head (its bytes are consumed by the caller whatever
    /// happens here); `tail`: the part of it in this call's slice.
    fn on_head_complete<S: ResponseSink>(
        &mut self,
        head: &[u8],
        tail: &[u8],
        ts_ns: u64,
        cx: &mut ResponseCtx<'_, S>,
    ) {
        let head_len = head.len();
        let parsed = parse_head(&Bytes::copy_from_slice(head), cx.config.max_headers);
        // The head left `head.bytes` (if it was there): release it.
        self.head.bytes.clear();
        self.sync(cx);
        let ParsedHead {
            status,
            headers,
            fields,
        } = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                cx.stats.ignored_bytes += head_len as u64;
                self.lose(reason, cx);
                return;
            }
        };
        if (100..200).contains(&status) && status != 101 {
            // 100 Continue, 102, 103 Early Hints: the final response follows.
            cx.stats.interim += 1;
            self.state = State::Head;
            return;
        }
        let answers = cx.sink.next_request(&self.flow).unwrap_or_default();
        let upgrade = status == 101 || (answers.connect && (200..300).contains(&status));
        let kind = RequestKind {
            head: answers.head,
            connect: answers.connect,
        };
        let Ok(framing) = response_body(&fields, status, kind) else {
            cx.stats.ignored_bytes += head_len as u64;
            self.lose(ResponseLoss::InvalidFraming, cx);
            return;
        };
        self.body_cap = cx.config.body_cap;
        self.current = Some(Current {
            status,
            headers,
            head_len,
            first_byte_ns: self.head.first_byte_ns,
            body: BodyCollector::new(cx.config.body_cap),
            body_len: 0,
            upgrade,
        });
        self.sync(cx);
        match framing {
            BodyLength::None => self.deliver(ts_ns, tail, cx),
            BodyLength::Length(n) => self.state = State::Length { remaining: n },
            BodyLength::Chunked => {
                self.chunked.reset();
                self.state = State::Chunked;
            }
            BodyLength::UntilClose => self.state = State::UntilClose,
        }
    }

    // --- bodies ------------------------------------------------------------

    /// Adds body bytes to the response in progress; false if the budget
    /// could not take them (the stream is lost then).
    fn push_body<S: ResponseSink>(&mut self, piece: &[u8], cx: &mut ResponseCtx<'_, S>) -> bool {
        let cap = self.body_cap as u64;
        let Some(current) = self.current.as_mut() else {
            return true;
        };
        let kept_before = current.body_len.min(cap);
        let kept_after = (current.body_len + piece.len() as u64).min(cap);
        let added = (kept_after - kept_before) as usize;
        if added > 0 && !cx.budget.has_room(added) {
            cx.stats.ignored_bytes += piece.len() as u64;
            self.lose(ResponseLoss::BufferCap, cx);
            return false;
        }
        current.body.push(piece);
        current.body_len += piece.len() as u64;
        self.sync(cx);
        true
    }

    fn on_length<S: ResponseSink>(
        &mut self,
        data: &[u8],
        remaining: u64,
        ts_ns: u64,
        cx: &mut ResponseCtx<'_, S>,
    ) -> usize {
        let n = (data.len() as u64).min(remaining) as usize;
        if !self.push_body(&data[..n], cx) {
            return data.len();
        }
        let remaining = remaining - n as u64;
        if remaining == 0 {
            self.deliver(ts_ns, &data[..n], cx);
        } else {
            self.state = State::Length { remaining };
        }
        n
    }

    fn on_chunked<S: ResponseSink>(
        &mut self,
        data: &[u8],
        ts_ns: u64,
        cx: &mut ResponseCtx<'_, S>,
    ) -> usize {
        let (n, step) = self.chunked.step(data, None, cx.config.max_head_bytes);
        let n = n.min(data.len());
        match step {
            Step::Progress => {}
            Step::Data => {
                if !self.push_body(&data[..n], cx) {
                    return data.len();
                }
            }
            Step::Done => self.deliver(ts_ns, &data[..n], cx),
            Step::Invalid => {
                cx.stats.ignored_bytes += n as u64;
                self.lose(ResponseLoss::InvalidFraming, cx);
            }
            Step::TrailersTooLarge => {
                cx.stats.ignored_bytes += n as u64;
                self.lose(ResponseLoss::TrailersTooLarge, cx);
            }
        }
        n
    }

    /// The response in progress is complete (in the segment seen at
    /// `ts_ns`; `tail`: its last bytes, in this call's slice): to the sink.
    fn deliver<S: ResponseSink>(&mut self, ts_ns: u64, tail: &[u8], cx: &mut ResponseCtx<'_, S>) {
        let Some(current) = self.current.take() else {
            self.state = State::Head;
            return;
        };
        let raw = self.take_raw(tail, cx);
        self.sync(cx);
        self.state = State::Head;
        cx.stats.responses += 1;
        cx.stats.body_bytes += current.body_len;
        let upgrade = current.upgrade;
        cx.sink.on_response(
            &self.flow,
            CapturedResponse {
                answer: Answer {
                    status: current.status,
                    headers: current.headers,
                    body: current.body.finish(),
                },
                first_byte_ns: current.first_byte_ns,
                complete_ns: ts_ns,
                raw,
            },
        );
        if upgrade {
            self.lose(ResponseLoss::Upgraded, cx);
        }
    }
}

/// Frames `data`, one recorded response (answering a request like
/// `answers`) as a whole: its answer, or why it is not one complete
/// response.
pub fn frame_whole(
    data: &[u8],
    answers: Answers,
    config: &ResponseConfig,
) -> Result<Answer, ResponseLoss> {
    /// Hands out the one request and keeps the one response.
    struct One {
        answers: Answers,
        answer: Option<Answer>,
        lost: Option<ResponseLoss>,
    }
    impl ResponseSink for One {
        fn next_request(&mut self, _: &FlowId) -> Option<Answers> {
            Some(self.answers)
        }
        fn on_response(&mut self, _: &FlowId, response: CapturedResponse) {
            self.answer.get_or_insert(response.answer);
        }
        fn on_lost(&mut self, _: &FlowId, reason: ResponseLoss) {
            self.lost.get_or_insert(reason);
        }
    }
    let mut sink = One {
        answers,
        answer: None,
        lost: None,
    };
    let mut stats = ResponseStats::default();
    let mut budget = Budget::new(usize::MAX);
    let mut cx = ResponseCtx {
        config,
        stats: &mut stats,
        budget: &mut budget,
        sink: &mut sink,
    };
    let flow = FlowId {
        key: crate::capture::FlowKey {
            client: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            server: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        },
        generation: 0,
    };
    let mut framer = ResponseFramer::new(flow);
    framer.feed(data, 0, &mut cx);
    // A body that ends with the connection ends with the payload.
    framer.finish(ResponseLoss::Incomplete, &mut cx);
    match (sink.answer, sink.lost) {
        (Some(answer), _) => Ok(answer),
        (None, Some(lost)) => Err(lost),
        (None, None) => Err(ResponseLoss::Incomplete),
    }
}
