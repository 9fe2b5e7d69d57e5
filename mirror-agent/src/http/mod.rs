//! HTTP request framing: turns the reassembled client → server byte
//! stream of one connection into complete [`Request`]s (and, when they are
//! wanted, v1's responses into [`CapturedResponse`]s paired with them).
//! Today's protocol is HTTP/1.x, whose rules follow.
//!
//! [`Framing`] is the flow stage's consumer: the flow table keeps one
//! [`RequestFramer`] per connection for it and feeds it the stream in order,
//! as slices borrowed from the ring wherever it can: the framer parses heads
//! straight from those slices and buffers only what straddles two slices (an
//! incomplete head, a body in progress).
//!
//! # Rules
//! The framer sends on only what every conforming server frames the same
//! way (RFC 9112 §§ 2.2, 3, 6, 7), since a shadow must get only what v1
//! got; the grammar is in [`h1`], shared with the response framers.
//! * Head: CRLF line ends only (a bare LF or CR is `bare_line_end`), no
//!   line starting with whitespace (`obs_fold`); then parsed by `httparse`,
//!   at most [`HttpConfig::max_head_bytes`] bytes and
//!   [`HttpConfig::max_headers`] fields; over either limit the request is
//!   skipped (`head_too_large`, `too_many_headers`).
//! * Target: origin-form, an `http(s)` absolute URI whose authority is a
//!   plain `host[:port]` (else `invalid_authority`: userinfo, odd hosts),
//!   or `OPTIONS *`; `CONNECT`, any other asterisk-form or target is
//!   `unsupported_target`, and `PRI *` (the HTTP/2 preface) is
//!   `unsupported_http2`. HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at
//!   most one (`invalid_host`).
//! * Body (RFC 9112 §6): `Transfer-Encoding` must be one field holding one
//!   `chunked`, in HTTP/1.1 (anything else, e.g. `deflate, chunked` that
//!   nginx answers with 501, is `invalid_transfer_encoding`) → chunked
//!   (extensions skipped, trailers kept; a malformed chunked body is
//!   `invalid_framing`); otherwise `Content-Length` (a list of identical
//!   values is one value; differing values, non-digits or a value over
//!   2^64 are `invalid_content_length`, refused at the head); otherwise no
//!   body: a request is never read until close. Both headers present →
//!   chunked wins and [`HttpStats::te_overrides_cl`] counts it.
//! * A body over [`HttpConfig::max_body_bytes`] is skipped as it streams past,
//!   never buffered (`body_too_large`); the next request is still found since
//!   the framing is known.
//! * Pipelined and keep-alive requests are framed back to back.
//!   `Expect: 100-continue` needs nothing special (the body follows the head
//!   in the stream once the server answered); the request carries a flag.
//! * A request after which v1 closes (`Connection: close`, HTTP/1.0
//!   without keep-alive) is delivered; anything the client sends after it
//!   never reached v1's parser: ignored, counted once (`after_close`).
//! * `Upgrade` (with `Connection: upgrade`): the request is delivered, then
//!   the rest of the connection is ignored (`upgraded`).
//! * A connection that opens with the HTTP/2 preface or a TLS record is
//!   ignored from there on (`unsupported_http2`, `unsupported_tls`).
//! * Anything that breaks the protocol where a request should start
//!   (`garbage`), a head httparse rejects (`invalid_head`), or any refusal
//!   above: the rest of the connection is ignored, as v1 closes it after
//!   its 400, so no byte a conforming parser could read as another request
//!   is ever sent on.
//! * A capture gap (but one inside a Content-Length body, which is stepped
//!   over), a head over our limits, a join in the middle of a connection:
//!   the connection is desynced until a request proves where it starts;
//!   bytes are never searched for request lines (see `h1/framer.rs`).
//!
//! Every request that is lost is counted once, with one [`SkipReason`].
//!
//! # Around the framers
//! HTTP/1 is in `h1/`: the grammar, the request framer (`h1/framer.rs`),
//! v1's response framer (`h1/response.rs`, its rules there), the flow
//! stage's consumers of both directions (`h1/framing.rs`: [`Framing`],
//! [`ResponseFraming`]) and in-order pairing (`h1/in_order.rs`). This
//! level holds what does not depend on it:
//! * [`Request`], [`RequestSink`], [`SkipReason`], [`HttpStats`] (here),
//!   [`Answer`] (`answer.rs`), [`CapturedResponse`], [`ResponseSink`],
//!   [`ResponseLoss`] (`response.rs`), and [`Ctx`], what a framer is
//!   handed for one call.
//! * [`Traffic`]: both directions of the captured connections, each
//!   reassembled by a flow table and framed (requests; v1's responses when
//!   they are wanted). Every packet source feeds one.
//! * [`paired`] (`exchange.rs`): the protocol pairs each of v1's responses
//!   with the request it answers (HTTP/1: in order per connection); the
//!   stages after it see only an opaque exchange token going out with a
//!   request ([`RequestStage`]) and coming back with v1's answer, or why
//!   there is none ([`AnswerStage`]).

/// A counter per reason of a `labelled!` enum (`reason as usize` is its
/// index): the requests' skip reasons and the responses' losses.
macro_rules! reason_counts {
    ($(#[$doc:meta])* $name:ident, $reason:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name([u64; $reason::COUNT]);

        impl Default for $name {
            fn default() -> Self {
                Self([0; $reason::COUNT])
            }
        }

        impl $name {
            pub fn get(&self, reason: $reason) -> u64 {
                self.0[reason as usize]
            }

            pub fn add(&mut self, reason: $reason) {
                self.0[reason as usize] += 1;
            }

            pub fn total(&self) -> u64 {
                self.0.iter().sum()
            }

            /// `(reason, count)` for every reason, zeros included.
            pub fn iter(&self) -> impl Iterator<Item = ($reason, u64)> + '_ {
                $reason::ALL.iter().map(|r| (*r, self.get(*r)))
            }
        }
    };
}

mod answer;
mod exchange;
pub(crate) mod h1;
mod response;
mod traffic;

use std::ops::Range;

use bytes::Bytes;

use crate::capture::FlowId;
use crate::flow::Budget;

pub use answer::{Answer, Body, BodyCollector};
pub use exchange::{AnswerStage, RequestStage, Requests, Responses, paired};
pub use h1::framer::{FramerCtx, RequestFramer};
pub use h1::framing::{Framing, ResponseFraming};
pub use h1::in_order::{InOrder, Unanswered};
pub use h1::response::{ResponseCtx, ResponseFramer, frame_whole};
pub use response::{
    Answers, CapturedResponse, LossCounts, ResponseConfig, ResponseLoss, ResponseSink,
    ResponseStats,
};
pub use traffic::{NoResponses, Traffic};

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// Limits of the framer. All of them bound memory per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request head (request line + header fields + the empty line),
    /// and largest chunked trailer section. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in one head; at most [`MAX_HEADERS_LIMIT`].
    /// Default 100.
    pub max_headers: usize,
    /// Largest body kept (decoded size for chunked). Larger bodies are
    /// skipped without buffering. Default 64 MiB.
    pub max_body_bytes: u64,
}

/// Hard ceiling for [`HttpConfig::max_headers`] (the parser's scratch array).
pub const MAX_HEADERS_LIMIT: usize = 256;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 64 * 1024 * 1024,
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
    /// Requests with both Transfer-Encoding and Content-Length (chunked won).
    pub te_overrides_cl: u64,
    /// Requests with `Expect: 100-continue`.
    pub expect_continue: u64,
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

#[cfg(test)]
mod tests;
