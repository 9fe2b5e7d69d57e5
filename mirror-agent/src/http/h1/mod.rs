//! The HTTP/1 grammar, written once (RFC 9110, RFC 9112) and used by every
//! framer of HTTP/1 in the agent: the request framer (v1's requests), v1's
//! response framer (the comparison) and the shadow client (the shadows'
//! answers). A `Content-Length`, a `Transfer-Encoding` or a line end means
//! the same thing to the three of them.
//!
//! * [`syntax`]: whitespace, lists, tokens, decimal and hex digits, and
//!   the header fields that decide framing and keep-alive.
//! * [`body_length`]: the message-body length rule (RFC 9112 §6.3), for a
//!   request (strict) and for a response (by request method and status).
//! * [`lines`]: where a head ends (strict CRLF for requests).
//! * [`target`]: the request-target forms that are framed.
//! * [`request_line`]: the quick check of a request line at the start of
//!   every head (garbage, TLS and HTTP/2 found early).
//! * [`chunked`]: the incremental decoder of the chunked coding, for the
//!   three framers alike.
//! * [`head`] and [`framer`]: the request framer (one per connection) and
//!   its head parser, built on the above.
//! * [`response`]: v1's response framer (one per connection) and its head
//!   parser, on the same grammar; the shadow client (`shadow/wire.rs`)
//!   uses it too.
//! * [`in_order`]: HTTP/1's pairing, the n-th response of a connection
//!   answers its n-th request.
//!
//! `http/` itself holds what does not depend on HTTP/1 (requests, answers,
//! responses, skip reasons, sinks, the stages' pairing traits), where
//! HTTP/2 can sit beside.

pub(crate) mod body_length;
pub(crate) mod chunked;
pub(crate) mod framer;
pub(crate) mod framing;
pub(crate) mod head;
pub(crate) mod in_order;
pub(crate) mod lines;
pub(crate) mod request_line;
pub(crate) mod response;
pub(crate) mod syntax;
pub(crate) mod target;
