//! The routing stage's output: one request exactly as a target will
//! receive it, ready to be written to any number of connections.

use std::borrow::Cow;

use bytes::Bytes;

use super::rewrite::strip_trailers;
use crate::http::BodyStream;

/// How the body follows the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming<'a> {
    /// As the head says (Content-Length, or no body): the bytes as they are.
    AsIs,
    /// The head says `Transfer-Encoding: chunked`: the decoded body goes out
    /// as a single chunk, then the last chunk with these trailer lines
    /// (each ending with its line end) and the final empty line.
    Chunked { trailers: &'a [u8] },
}

/// A body that follows its head as it arrives (see [`BodyStream`]): each
/// target reads it with a reader of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamedBody {
    pub body: BodyStream,
    /// Re-framed as chunks (one per piece read), then the last chunk and
    /// the trailers; as it is otherwise (Content-Length).
    pub chunked: bool,
    /// Header names left out of the trailers (the rewrites').
    pub drop_trailers: Vec<String>,
}

impl StreamedBody {
    /// The trailer lines this target gets of the client's `trailers`.
    pub fn trailers<'a>(&self, trailers: &'a [u8]) -> Cow<'a, [u8]> {
        strip_trailers(&self.drop_trailers, trailers)
    }
}

/// One request ready to be written to any number of connections: the head
/// with its rewrites applied, then the body (shared with the captured
/// request, never copied), then the chunked framing's tail if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedRequest {
    /// `buf[..split]` goes before the body, `buf[split..]` after it.
    buf: Vec<u8>,
    split: usize,
    body: Bytes,
    /// The body streams instead (`body` is empty, `buf` the head alone).
    streamed: Option<StreamedBody>,
    /// The response to a HEAD request has no body, whatever it announces.
    head_method: bool,
    /// A 2xx response to CONNECT has no body (a tunnel follows).
    connect_method: bool,
    /// The request itself leaves the connection open (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    keep_alive: bool,
    /// An upgrade or CONNECT: the connection is not reused after it.
    upgrade: bool,
    /// When the request was captured (monotonic ns, the ring record's
    /// clock), for the send delay; 0 if unknown.
    captured_ns: u64,
}

impl PreparedRequest {
    /// `head` holds the complete head to send (request line, header fields,
    /// empty line); the body is framed after it as `framing` says.
    pub fn new(mut head: Vec<u8>, body: Bytes, framing: BodyFraming<'_>) -> Self {
        let split;
        match framing {
            BodyFraming::AsIs => split = head.len(),
            BodyFraming::Chunked { trailers } => {
                if !body.is_empty() {
                    write_hex_line(&mut head, body.len());
                }
                split = head.len();
                if !body.is_empty() {
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(b"0\r\n");
                head.extend_from_slice(trailers);
                head.extend_from_slice(b"\r\n");
            }
        }
        Self {
            buf: head,
            split,
            body,
            streamed: None,
            head_method: false,
            connect_method: false,
            keep_alive: true,
            upgrade: false,
            captured_ns: 0,
        }
    }

    /// The body follows the head as it arrives, from `streamed` (made with
    /// no body).
    pub fn streaming(mut self, streamed: StreamedBody) -> Self {
        self.streamed = Some(streamed);
        self
    }

    /// The streamed body, if the body streams.
    pub fn streamed(&self) -> Option<&StreamedBody> {
        self.streamed.as_ref()
    }

    /// Says how the response and the connection behave: the method (HEAD
    /// and CONNECT responses have no body), whether the request keeps the
    /// connection open, whether it is an upgrade or CONNECT (the connection
    /// is not reused after it).
    pub fn with_connection(mut self, method: &[u8], keep_alive: bool, upgrade: bool) -> Self {
        self.head_method = method == b"HEAD";
        self.connect_method = method == b"CONNECT";
        self.keep_alive = keep_alive;
        self.upgrade = upgrade;
        self
    }

    /// When the request was captured (CLOCK_MONOTONIC ns, as
    /// `Request::complete_ns`): the send delay runs from there.
    pub fn with_captured_ns(mut self, captured_ns: u64) -> Self {
        self.captured_ns = captured_ns;
        self
    }

    /// See [`with_captured_ns`](Self::with_captured_ns); 0 if unknown.
    pub fn captured_ns(&self) -> u64 {
        self.captured_ns
    }

    /// The three pieces written in order: head (and chunk-size line), body,
    /// chunked tail.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.buf[..self.split], &self.body, &self.buf[self.split..]]
    }

    /// Bytes on the wire (of a streamed request, the head's).
    pub fn len(&self) -> usize {
        self.buf.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything in one buffer (tests, debugging).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }

    /// The head as it will be sent.
    pub fn head(&self) -> &[u8] {
        &self.buf[..self.split]
    }

    /// A HEAD request: its response has no body, whatever it announces.
    pub fn is_head(&self) -> bool {
        self.head_method
    }

    /// A CONNECT request: a 2xx response has no body (a tunnel follows).
    pub fn is_connect(&self) -> bool {
        self.connect_method
    }

    /// The connection may carry another request after this one's response
    /// (as far as the request is concerned).
    pub fn reusable(&self) -> bool {
        self.keep_alive && !self.upgrade
    }
}

/// `n` in hex and a line end: a chunk-size line.
pub(crate) fn write_hex_line(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(n >> (i * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_goes_out_as_one_chunk_with_its_trailers() {
        let p = PreparedRequest::new(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            Bytes::from_static(&[b'a'; 300]),
            BodyFraming::Chunked {
                trailers: b"X-Sum: 1\r\n",
            },
        );
        let mut expected = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n".to_vec();
        expected.extend_from_slice(&[b'a'; 300]);
        expected.extend_from_slice(b"\r\n0\r\nX-Sum: 1\r\n\r\n");
        assert_eq!(p.to_vec(), expected);
        assert_eq!(p.len(), expected.len());

        let empty = PreparedRequest::new(
            b"POST / HTTP/1.1\r\n\r\n".to_vec(),
            Bytes::new(),
            BodyFraming::Chunked { trailers: b"" },
        );
        assert_eq!(empty.to_vec(), b"POST / HTTP/1.1\r\n\r\n0\r\n\r\n");
        let mut one = Vec::new();
        write_hex_line(&mut one, 1);
        write_hex_line(&mut one, 0x10000);
        assert_eq!(one, b"1\r\n10000\r\n");
    }
}
