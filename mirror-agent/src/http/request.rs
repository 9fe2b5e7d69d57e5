//! A request as every protocol's framer delivers it ([`Request`], to a
//! [`RequestSink`]), why one is not delivered ([`SkipReason`]), the
//! request framing's limits and counters, and what a framer is handed for
//! one call ([`Ctx`]).

use std::ops::Range;

use bytes::Bytes;

use super::body_stream::{BodyStream, StreamLimits};
use crate::capture::FlowId;
use crate::flow::Budget;

/// Limits of the framer. All of them bound memory per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request head (request line + header fields + the empty line),
    /// and largest chunked trailer section. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in one head; at most [`MAX_HEADERS_LIMIT`].
    /// Default 100.
    pub max_headers: usize,
    /// Largest body mirrored (decoded size for chunked). Larger bodies are
    /// skipped without buffering. Default 16 GiB: a streamed body costs
    /// no more memory for being large; a body gathered whole (record,
    /// replay) is held within the flow stage's budget.
    pub max_body_bytes: u64,
    /// Bodies over [`StreamLimits::after`] go on as they arrive (live
    /// mirroring); `None`: every body is gathered whole (record, replay,
    /// where the stage after framing wants it in one piece).
    pub stream: Option<StreamLimits>,
}

/// Hard ceiling for [`HttpConfig::max_headers`] (the parser's scratch array).
pub const MAX_HEADERS_LIMIT: usize = 256;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 16 << 30,
            stream: None,
        }
    }
}

/// What a framer needs from its surroundings for one call: its limits
/// (`C`), the counters of its direction (`St`), the flow stage's memory
/// budget and the sink what it frames goes to.
pub struct Ctx<'a, C, St, S> {
    pub config: &'a C,
    pub stats: &'a mut St,
    pub budget: &'a mut Budget,
    pub sink: &'a mut S,
}

/// Receives every complete request, in stream order per connection. The
/// stages after framing implement it; tests collect into a `Vec`.
///
/// Called on the capture task: an implementation must not block.
pub trait RequestSink {
    fn on_request(&mut self, request: Request);

    /// A request of `flow` was lost (or the connection was joined in the
    /// middle): from here on its requests and v1's responses no longer
    /// pair up one to one. For the comparison; nothing to do otherwise.
    fn on_requests_lost(&mut self, _flow: &FlowId) {}
}

impl RequestSink for Vec<Request> {
    fn on_request(&mut self, request: Request) {
        self.push(request);
    }
}

/// Byte range into [`Request::head`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header field of a head: name and value as ranges of the head bytes
/// (the value without surrounding whitespace, as httparse returns it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// HTTP/1.0 or HTTP/1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A complete request as the client sent it.
///
/// `head` holds the exact bytes of the request line, the header fields and
/// the empty line that ends them, so a replay reproduces method, target,
/// header names (case and order) and values byte for byte. `body` is the
/// decoded content: for a chunked request the chunk framing is removed (so
/// a replay can re-frame it) and `chunked`/`trailers` tell how it came.
///
/// A body over [`StreamLimits::after`] (when streaming is on) is not in
/// `body`: the request is delivered as soon as its head is complete, with
/// `stream` to read the body from as it arrives (its trailers come at its
/// end), and `complete_ns` is the head's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub flow: FlowId,
    pub head: Bytes,
    pub body: Bytes,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Raw trailer field lines of a chunked body (each with its line end),
    /// without the final empty line; empty if none.
    pub trailers: Bytes,
    /// The body, streamed (see above); `None` when it is in `body`.
    pub stream: Option<BodyStream>,
    pub version: Version,
    pub method: Span,
    pub target: Span,
    pub headers: Vec<HeaderSpan>,
    /// The head carries `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An upgrade (`Upgrade` + `Connection: upgrade`): the framer ignores
    /// the rest of this connection.
    pub upgrade: bool,
    /// Timestamp (monotonic ns) of the segment with the first head byte.
    pub first_byte_ns: u64,
    /// Timestamp (monotonic ns) of the segment that completed the request.
    pub complete_ns: u64,
}

impl Request {
    pub fn method(&self) -> &[u8] {
        self.head.get(self.method.range()).unwrap_or_default()
    }

    pub fn target(&self) -> &[u8] {
        self.head.get(self.target.range()).unwrap_or_default()
    }

    /// Header fields in the order they were sent.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers.iter().map(|h| {
            (
                self.head.get(h.name.range()).unwrap_or_default(),
                self.head.get(h.value.range()).unwrap_or_default(),
            )
        })
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

mirror_common::labelled! {
    /// Why a request (or a stretch of a connection) was not delivered: the
    /// `reason` of `mirror_requests_skipped_total`.
    pub enum SkipReason {
        /// Bytes of the stream were never captured: a `Truncated` record, or a
        /// hole that could not be filled (out-of-order cap, FIN or idle timeout
        /// beyond it). Counted once per gap; a long gap can swallow more than
        /// one request.
        Gap => "gap",
        /// The head exceeded `max_head_bytes`.
        HeadTooLarge => "head_too_large",
        /// The head had more than `max_headers` fields.
        TooManyHeaders => "too_many_headers",
        /// httparse rejected the head (bad header name, bad characters, ...).
        InvalidHead => "invalid_head",
        /// A malformed chunked body.
        InvalidFraming => "invalid_framing",
        /// The chunked trailer section exceeded `max_head_bytes`.
        TrailersTooLarge => "trailers_too_large",
        /// The body exceeded `max_body_bytes`; it was skipped unbuffered.
        BodyTooLarge => "body_too_large",
        /// Bytes where a request line should start that are not one; the rest
        /// of the connection is ignored.
        Garbage => "garbage",
        /// The connection speaks HTTP/2 (prior-knowledge preface, or a
        /// `PRI *` request line).
        UnsupportedHttp2 => "unsupported_http2",
        /// The connection speaks TLS.
        UnsupportedTls => "unsupported_tls",
        /// The connection was upgraded (WebSocket, h2c) after a delivered
        /// request; the rest of it is ignored.
        Upgraded => "upgraded",
        /// The capture joined an established connection (no SYN seen) inside a
        /// request; its bytes were skipped until a request proved where it
        /// starts. Counted once per join.
        MidstreamJoin => "midstream_join",
        /// The connection was evicted to stay within `max_flows`.
        FlowCap => "flow_cap",
        /// Buffering would exceed `max_buffered_bytes` (all flows together).
        BufferCap => "buffer_cap",
        /// The connection went idle with a request in progress.
        IdleExpired => "idle_expired",
        /// The client closed (FIN) in the middle of a request.
        Incomplete => "incomplete",
        /// The connection was reset (RST) in the middle of a request.
        Reset => "reset",
        /// A new SYN reused the 4-tuple while a request was in progress.
        Superseded => "superseded",
        /// A head with a bare LF or a bare CR as a line end (servers split
        /// such lines differently: a smuggling path). The rest of the
        /// connection is ignored, as for every refusal below.
        BareLineEnd => "bare_line_end",
        /// A header line starting with whitespace (obs-fold, or whitespace
        /// before the first field).
        ObsFold => "obs_fold",
        /// A `Transfer-Encoding` that is not one field holding one
        /// `chunked` in HTTP/1.1 (`deflate, chunked`, repeated fields, any
        /// in HTTP/1.0).
        InvalidTransferEncoding => "invalid_transfer_encoding",
        /// Differing, non-decimal or overflowing `Content-Length` values.
        InvalidContentLength => "invalid_content_length",
        /// HTTP/1.1 without `Host`, or more than one `Host`.
        InvalidHost => "invalid_host",
        /// `CONNECT`, an asterisk-form target other than `OPTIONS *`, or a
        /// target that is neither origin-form nor an http(s) absolute URI.
        UnsupportedTarget => "unsupported_target",
        /// An absolute-form target whose authority is not a plain
        /// `host[:port]` (userinfo, an empty or invalid host or port).
        InvalidAuthority => "invalid_authority",
        /// Bytes after a request on which v1 closes (`Connection: close`,
        /// HTTP/1.0 without keep-alive): v1 never read them. Counted once
        /// per connection.
        AfterClose => "after_close",
    }
}

reason_counts! {
    /// A counter per [`SkipReason`].
    ReasonCounts, SkipReason
}

/// Counters of the framing stage (all connections together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests delivered to the sink.
    pub requests: u64,
    /// Of those, with a chunked body.
    pub chunked_requests: u64,
    /// Body bytes delivered (decoded).
    pub body_bytes: u64,
    /// Requests with `Expect: 100-continue`.
    pub expect_continue: u64,
    /// Of the delivered requests, those whose body streamed (delivered at
    /// the head, the body following).
    pub streamed_requests: u64,
    /// Times a connection's framing was lost (a gap it could not step
    /// over, a request over our limits): its bytes are skipped until a
    /// request proves where it starts. Joins in the middle of a connection
    /// start that way too (the flow stage counts them).
    pub desyncs: u64,
    /// Times a desynced connection proved itself again with a request.
    pub resyncs: u64,
    /// Stream bytes skipped while desynced, or ignored after an upgrade /
    /// on a refused or unsupported connection, or of skipped bodies.
    pub skipped_bytes: u64,
    /// Lost requests by reason.
    pub dropped: ReasonCounts,
}
