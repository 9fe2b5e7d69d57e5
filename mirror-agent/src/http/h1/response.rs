//! HTTP/1.x response framing: turns the reassembled server → client byte
//! stream of one connection (v1's responses, captured at egress) into
//! [`Answer`]s for the comparison, in stream order.
//!
//! [`ResponseFraming`] is the flow stage's consumer for that direction, as
//! [`Framing`](crate::http::h1::framing::Framing) is for requests: one [`ResponseFramer`] per
//! connection, fed the stream in order. Framed responses go to a
//! [`ResponseSink`], which also knows the requests they answer (a `HEAD` or
//! a `CONNECT` changes how its response is framed).
//!
//! # Rules
//! * Head: parsed by `httparse`, at most [`ResponseConfig::max_head_bytes`]
//!   and [`ResponseConfig::max_headers`] fields. A stream that does not
//!   start with `HTTP/1.` where a response should start is `garbage`.
//! * Interim `1xx` responses (100 Continue, 103 Early Hints, ...) are
//!   skipped; `101 Switching Protocols` is final, and the rest of the
//!   connection is not HTTP/1: it is delivered, then `upgraded`.
//! * Body (RFC 9112 §6.3): none for a `HEAD` request's response, for 204
//!   and 304, and for a `CONNECT`'s 2xx (then `upgraded`); otherwise
//!   `Transfer-Encoding` with `chunked` last → chunked (extensions and
//!   trailers skipped); `Transfer-Encoding` otherwise → until the close;
//!   `Content-Length` (a list of one value) → that length, an invalid one is
//!   `invalid_framing`; none of them → until the close (HTTP/1.0 or 1.1).
//! * A close-delimited body ends with the server's FIN
//!   ([`StreamLoss::Incomplete`](crate::flow::StreamLoss) at
//!   [`StreamConsumer::end`](crate::flow::StreamConsumer::end)); any other
//!   end (reset, idle, evicted) may have cut it: lost.
//! * The body is dechunked into a [`BodyCollector`] that keeps at most
//!   [`ResponseConfig::body_cap`] bytes and hashes all of them; the content
//!   coding (gzip, ...) is kept.
//! * The request a response answers is asked for
//!   ([`ResponseSink::next_request`]) when its final head is parsed; if the
//!   sink does not know it yet, the response is framed as one to a plain
//!   (non-`HEAD`, non-`CONNECT`) request.
//!
//! # Losses
//! Anything that keeps the framer from knowing where the next response
//! starts (a capture gap, garbage, a head over our limits, invalid framing,
//! an upgrade, the end of the connection in the middle of a response, a
//! join in the middle of a connection) is reported once with
//! [`ResponseSink::on_lost`] and the rest of the connection is ignored:
//! unlike requests, responses are never searched for a new start, since
//! pairing them with requests again could not be proved.
//!
//! The one exception: a gap entirely inside a `Content-Length` body. The
//! framing survives (the gap's length is known), but that response's body
//! is not what v1 sent, so it is reported with
//! `on_lost(ResponseLoss::BodyGap)` *instead of* `on_response`: it still
//! answers the next request (the sink drops that request as not
//! comparable), and framing goes on with the next response
//! ([`ResponseLoss::ends_stream`] is false for it alone).

mod framer;
mod head;

#[cfg(doc)]
use crate::http::answer::{Answer, BodyCollector};
use crate::http::response::Headers;
use crate::http::response::{
    Answers, CapturedResponse, ResponseConfig, ResponseLoss, ResponseSink, ResponseStats,
};

pub use framer::{ResponseCtx, ResponseFramer, frame_whole};

#[cfg(test)]
mod tests;
