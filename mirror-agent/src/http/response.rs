//! v1's responses as the stages after framing see them, whatever the
//! protocol frames them: the framing's limits ([`ResponseConfig`]), what a
//! request changes in its response's framing ([`Answers`]), one framed
//! response ([`CapturedResponse`]), where framed responses go
//! ([`ResponseSink`]), why they are lost ([`ResponseLoss`], counted in
//! [`ResponseStats`]) and why a request gets none ([`Unanswered`]).
//! HTTP/1's response framer is in `h1/response.rs`.

use bytes::Bytes;

use super::answer::Answer;
use crate::capture::FlowId;

/// Limits of the response framer; all of them bound memory per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseConfig {
    /// Largest response head (status line, header fields and the empty
    /// line), and largest chunked trailer section. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in one head; at most
    /// [`MAX_HEADERS_LIMIT`](super::request::MAX_HEADERS_LIMIT). Default 100.
    pub max_headers: usize,
    /// Body bytes kept per response (the hash and length cover the whole
    /// body). Default 256 KiB.
    pub body_cap: usize,
    /// Also keep each response's bytes as they came (interim responses and
    /// transfer framing included), up to this many, for a recording; 0:
    /// not kept (the comparison needs only the [`Answer`]).
    pub raw_cap: usize,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            body_cap: 256 * 1024,
            raw_cap: 0,
        }
    }
}

/// What the request a response answers changes in its framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    /// The request is a `HEAD`: its response has no body.
    pub head: bool,
    /// The request is a `CONNECT`: a 2xx response has no body, and the
    /// connection is a tunnel after it.
    pub connect: bool,
}

impl Answers {
    /// What `request`'s response is framed by.
    pub fn to(request: &super::request::Request) -> Self {
        Self {
            head: request.method() == b"HEAD",
            connect: request.method() == b"CONNECT",
        }
    }
}

/// Why a request gets no response (whatever the protocol pairs by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The connection's order was lost: which response answers it is not
    /// known.
    Unpaired,
    /// Its response was lost, or the connection ended without it.
    NoResponse,
}

/// One final response of v1, framed from the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedResponse {
    pub answer: Answer,
    /// Timestamp (monotonic ns) of the segment with the first byte of the
    /// final response's head (interim responses before it not counted).
    pub first_byte_ns: u64,
    /// Timestamp (monotonic ns) of the segment that completed it (for a
    /// close-delimited body: the last segment before the FIN).
    pub complete_ns: u64,
    /// The response's bytes as they came, when [`ResponseConfig::raw_cap`]
    /// asks for them and they fit in it.
    pub raw: Option<Bytes>,
}

/// Where framed responses go, and who knows the requests they answer.
///
/// Called on the capture task: an implementation must not block.
pub trait ResponseSink {
    /// What the next response on this connection answers, if the request
    /// is known yet (the request side registers requests in order; the
    /// response side peeks when a final head is parsed). `None`: framed as
    /// the answer to a plain request.
    fn next_request(&mut self, flow: &FlowId) -> Option<Answers>;

    /// One final response (1xx interim skipped).
    fn on_response(&mut self, flow: &FlowId, response: CapturedResponse);

    /// Responses are lost. For every reason but
    /// [`ResponseLoss::BodyGap`] the stream can no longer be framed (gap,
    /// garbage, limit, upgrade, end): this is the last call for `flow`, and
    /// pairing of this connection must stop. `BodyGap` stands for exactly
    /// one response (the next one to pair) whose body was partly lost;
    /// responses after it are delivered as usual.
    fn on_lost(&mut self, flow: &FlowId, reason: ResponseLoss);

    /// The connection ended (after any `on_lost`): nothing more comes for
    /// `flow`.
    fn on_end(&mut self, _flow: &FlowId) {}
}

mirror_common::labelled! {
    /// Why v1's responses on a connection (or one of them) could not be
    /// framed.
    pub enum ResponseLoss {
        /// Bytes of the stream were never captured, outside a
        /// Content-Length body.
        Gap => "gap",
        /// Bytes of one Content-Length body were never captured: that
        /// response is lost, the framing goes on. The only loss that does
        /// not end the stream.
        BodyGap => "body_gap",
        /// Buffering would exceed the flow stage's `max_buffered_bytes`.
        BufferCap => "buffer_cap",
        /// A head over `max_head_bytes`.
        HeadTooLarge => "head_too_large",
        /// A head with more than `max_headers` fields.
        TooManyHeaders => "too_many_headers",
        /// httparse rejected the head (or its status is below 100).
        InvalidHead => "invalid_head",
        /// An invalid Content-Length, or a malformed chunked body.
        InvalidFraming => "invalid_framing",
        /// A chunked trailer section over `max_head_bytes`.
        TrailersTooLarge => "trailers_too_large",
        /// Bytes where a response should start that are not `HTTP/1.x`.
        Garbage => "garbage",
        /// After a `101 Switching Protocols`, or a `CONNECT`'s 2xx (both
        /// delivered): the rest of the connection is not HTTP/1.
        Upgraded => "upgraded",
        /// The capture joined the connection in the middle: where a
        /// response starts cannot be known.
        MidstreamJoin => "midstream_join",
        /// The server closed (FIN) in the middle of a response.
        Incomplete => "incomplete",
        /// The connection was reset in the middle of a response (or of a
        /// close-delimited body, which a reset may have cut).
        Reset => "reset",
        /// The connection went idle in the middle of a response.
        IdleExpired => "idle_expired",
        /// The connection was evicted (`max_flows`) in the middle of a
        /// response.
        FlowCap => "flow_cap",
        /// A new SYN reused the 4-tuple in the middle of a response.
        Superseded => "superseded",
    }
}

impl ResponseLoss {
    /// Whether nothing more of the connection is framed after this loss
    /// (all but [`ResponseLoss::BodyGap`]).
    pub fn ends_stream(self) -> bool {
        self != ResponseLoss::BodyGap
    }
}

reason_counts! {
    /// A counter per [`ResponseLoss`].
    LossCounts, ResponseLoss
}

/// Counters of the response framing (all connections together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseStats {
    /// Final responses delivered to the sink.
    pub responses: u64,
    /// Interim (1xx) responses skipped.
    pub interim: u64,
    /// Body bytes of delivered responses (dechunked, all of them, kept or
    /// not).
    pub body_bytes: u64,
    /// Stream bytes not framed: after a loss that ends the stream, and the
    /// rest of a body lost to a gap.
    pub ignored_bytes: u64,
    /// Losses by reason (each connection's end-of-stream loss once, each
    /// body gap once).
    pub lost: LossCounts,
}

/// Header fields of a response, in order, for an [`Answer`].
pub(crate) type Headers = Vec<(String, Bytes)>;
