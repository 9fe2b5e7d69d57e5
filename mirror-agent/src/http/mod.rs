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
//!   `invalid_framing`, and so is an obs-folded trailer line); otherwise
//!   one `Content-Length` value (more than one value, even identical ones,
//!   non-digits or a value over 2^64 are `invalid_content_length`, refused
//!   at the head); otherwise no body: a request is never read until close.
//!   Both headers present is `invalid_transfer_encoding` (nginx refuses it;
//!   RFC 9112 §6.1 lets a server refuse it or close after it).
//! * Method: upper-case only (nginx refuses `get`: `invalid_head`); Host:
//!   one `host[:port]`, not empty (`invalid_host`).
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
//! * [`Request`], [`RequestSink`], [`SkipReason`], [`HttpStats`] and
//!   [`Ctx`], what a framer is handed for one call (`request.rs`);
//!   [`Answer`] (`answer.rs`); [`CapturedResponse`], [`ResponseSink`],
//!   [`ResponseLoss`] (`response.rs`). This file only names them, so the
//!   files inside `http/` import each other one way.
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
mod body_stream;
mod exchange;
pub(crate) mod h1;
mod request;
mod response;
mod traffic;

pub use answer::{Answer, Body, BodyCollector};
pub use body_stream::{
    BodyReader, BodyStream, BodyWriter, Read as BodyRead, StreamBudget, StreamError, StreamLimits,
};
pub use exchange::{AnswerStage, RequestStage, Requests, Responses, paired};
pub use h1::framer::{FramerCtx, RequestFramer};
pub use h1::framing::{Framing, ResponseFraming};
pub use h1::in_order::InOrder;
pub use h1::response::{ResponseCtx, ResponseFramer, frame_whole};
pub use request::{
    Ctx, HeaderSpan, HttpConfig, HttpStats, MAX_HEADERS_LIMIT, ReasonCounts, Request, RequestSink,
    SkipReason, Span, Version,
};
pub use response::{
    Answers, CapturedResponse, LossCounts, ResponseConfig, ResponseLoss, ResponseSink,
    ResponseStats, Unanswered,
};
pub use traffic::{NoResponses, Traffic};

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

#[cfg(test)]
mod tests;
