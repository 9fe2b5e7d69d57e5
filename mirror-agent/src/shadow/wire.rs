//! HTTP/1.x on the wire, client side: writing a [`PreparedRequest`] (the
//! bytes the routing stage prepared) and reading a response to its end so
//! that the connection can carry the next request.
//!
//! No HTTP client library is used on purpose: none keeps header names,
//! their case and their order byte for byte. The response is framed by the
//! agent's one [HTTP/1 grammar](crate::http) (the body-length rule, the
//! chunked decoder), the same that frames v1's responses.

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::h1::body_length::{BodyLength, RequestKind, response_body};
use crate::http::h1::chunked::{ChunkedDecoder, Step as ChunkedStep};
use crate::http::h1::syntax::FramingFields;
use crate::http::{Answer, BodyCollector, BodyRead, BodyReader, StreamError};
use crate::route::{PreparedRequest, StreamedBody, write_hex_line};

/// Largest response head (and chunk-size or trailer line) accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_RESPONSE_HEADERS: usize = 128;
/// Read size while discarding bodies.
const READ_CHUNK: usize = 16 * 1024;
/// A connection's first read, before its buffer is allocated: a small
/// answer's head and body.
const FIRST_READ: usize = 256;

/// Writes the whole request with vectored writes (the body is not copied).
pub(crate) async fn write_request<W: AsyncWrite + Unpin>(
    io: &mut W,
    request: &PreparedRequest,
) -> io::Result<()> {
    let parts = request.parts();
    let mut slices = [
        IoSlice::new(parts[0]),
        IoSlice::new(parts[1]),
        IoSlice::new(parts[2]),
    ];
    write_slices(io, &mut slices).await?;
    io.flush().await
}

async fn write_slices<W: AsyncWrite + Unpin>(
    io: &mut W,
    slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut remaining: &mut [IoSlice<'_>] = slices;
    IoSlice::advance_slices(&mut remaining, 0);
    while !remaining.is_empty() {
        let n = io.write_vectored(remaining).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, n);
    }
    Ok(())
}

/// Writes a request whose body streams (`streamed`, read through this
/// target's `reader`): the head, then the client's bytes as they arrive
/// (one chunk per read when the request is chunked, then the last chunk
/// and the trailers). Waiting for the client has no timeout (the body
/// takes as long as the client takes; the capture ends a body whose client
/// went idle); each write must progress within `stall` (a target that
/// stopped reading, once the body ended, would hold it forever), and a
/// target that reads too slowly is cut by the stream. A reader cut or a
/// body the capture lost stops the write mid-body with an error whose
/// source is the [`StreamError`] (the connection must then be closed).
pub(crate) async fn write_streamed<W: AsyncWrite + Unpin>(
    io: &mut W,
    request: &PreparedRequest,
    streamed: &StreamedBody,
    reader: &mut BodyReader,
    stall: Duration,
) -> io::Result<()> {
    let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
    let mut head = [IoSlice::new(request.head())];
    let writing = write_slices(io, &mut head);
    tokio::time::timeout(stall, writing)
        .await
        .map_err(|_| timed_out())??;
    let mut line = Vec::new();
    loop {
        match reader.read().await.map_err(io::Error::other)? {
            BodyRead::Data(pieces) => {
                let len: usize = pieces.iter().map(|p| p.len()).sum();
                line.clear();
                if streamed.chunked {
                    write_hex_line(&mut line, len);
                }
                let mut slices = Vec::with_capacity(pieces.len() + 2);
                slices.push(IoSlice::new(&line));
                slices.extend(pieces.iter().map(|p| IoSlice::new(p)));
                if streamed.chunked {
                    slices.push(IoSlice::new(b"\r\n"));
                }
                tokio::select! {
                    written = tokio::time::timeout(stall, write_slices(io, &mut slices)) => {
                        written.map_err(|_| timed_out())??
                    }
                    error = reader.dropped() => return Err(io::Error::other(error)),
                }
                drop(slices);
                reader.advance(len);
            }
            BodyRead::End(trailers) => {
                if streamed.chunked {
                    let trailers = streamed.trailers(&trailers);
                    let mut slices = [
                        IoSlice::new(b"0\r\n"),
                        IoSlice::new(&trailers),
                        IoSlice::new(b"\r\n"),
                    ];
                    let tail = write_slices(io, &mut slices);
                    tokio::time::timeout(stall, tail)
                        .await
                        .map_err(|_| timed_out())??;
                }
                return io.flush().await;
            }
        }
    }
}

/// The [`StreamError`] that stopped [`write_streamed`], if that is what
/// `error` is.
pub(crate) fn stream_error(error: &io::Error) -> Option<StreamError> {
    error.get_ref()?.downcast_ref::<StreamError>().copied()
}

/// What a response told about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    /// Status of the final response (1xx interim responses are skipped; a
    /// `101 Switching Protocols` is final).
    pub status: u16,
    /// The connection is clean and open after it: keep-alive on both sides,
    /// body delimited by length or chunks, nothing extra received.
    pub reusable: bool,
    /// The final response itself, when it was asked for (`keep`): status,
    /// header fields in order, body dechunked and capped, content coding
    /// kept.
    pub answer: Option<Answer>,
}

/// What [`Reader::head`] found.
struct HeadInfo {
    status: u16,
    len: usize,
    http11: bool,
    fields: FramingFields,
    /// The header fields of a final response, when asked for.
    kept: Option<Vec<(String, Bytes)>>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Whether a status ends the exchange: all but the 1xx interim ones
/// (100 Continue, 102, 103 Early Hints), `101 Switching Protocols` being
/// final.
fn is_final(status: u16) -> bool {
    !(100..200).contains(&status) || status == 101
}

/// Reads one response to its end. `buf` is the connection's read buffer,
/// reused from request to request; it must be empty on entry (a reusable
/// connection leaves it empty).
///
/// `keep: None` discards the body and allocates nothing. `Some(cap)` also
/// returns the final response as an [`Answer`] (for the comparison): its
/// header fields, and its body dechunked through a [`BodyCollector`] that
/// keeps `cap` bytes and hashes them all.
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    request: &PreparedRequest,
    keep: Option<usize>,
) -> io::Result<Response> {
    let mut reader = Reader { io, buf, pos: 0 };
    reader.buf.clear();
    loop {
        let head = reader.head(keep.is_some()).await?;
        reader.pos += head.len;
        let status = head.status;
        if !is_final(status) {
            continue;
        }
        let kind = RequestKind {
            head: request.is_head(),
            connect: request.is_connect(),
        };
        // An invalid Content-Length: the exchange ends abnormally and the
        // connection is closed (the caller drops it on any error).
        let body = response_body(&head.fields, status, kind)
            .map_err(|_| invalid("invalid Content-Length"))?;
        let mut reusable =
            head.fields.keeps_alive(head.http11) && request.reusable() && status != 101;
        let mut collector = keep.map(BodyCollector::new);
        let sink = collector.as_mut();
        match body {
            BodyLength::None => {}
            BodyLength::Length(n) => reader.skip(n, sink).await?,
            BodyLength::Chunked => reader.chunked(sink).await?,
            BodyLength::UntilClose => {
                reusable = false;
                reader.until_close(sink).await?;
            }
        }
        // Bytes beyond the response: the server is not speaking in turn.
        reusable &= reader.pos == reader.buf.len();
        reader.buf.clear();
        let answer = collector.map(|body| Answer {
            status,
            headers: head.kept.unwrap_or_default(),
            body: body.finish(),
        });
        return Ok(Response {
            status,
            reusable,
            answer,
        });
    }
}

/// Header fields of a response head, in order: the head copied once, each
/// value a slice of that copy.
fn kept_headers(head: &[u8], fields: &[httparse::Header<'_>]) -> Vec<(String, Bytes)> {
    let copy = Bytes::copy_from_slice(head);
    let base = head.as_ptr() as usize;
    fields
        .iter()
        .map(|h| {
            // httparse hands out subslices of `head`.
            let start = (h.value.as_ptr() as usize)
                .wrapping_sub(base)
                .min(copy.len());
            let end = (start + h.value.len()).min(copy.len());
            (h.name.to_string(), copy.slice(start..end))
        })
        .collect()
}

struct Reader<'a, R> {
    io: &'a mut R,
    buf: &'a mut Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
}

impl<R: AsyncRead + Unpin> Reader<'_, R> {
    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads more bytes after the unconsumed ones; `Ok(false)` at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() == 0 {
            // A connection's first answer (a streamed request's has one of
            // its own, and thousands may wait at once): nothing is
            // allocated until bytes are there.
            let mut first = [0u8; FIRST_READ];
            let n = self.io.read(&mut first).await?;
            self.buf.extend_from_slice(&first[..n]);
            return Ok(n > 0);
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        Ok(self.io.read_buf(self.buf).await? > 0)
    }

    async fn fill_or_eof(&mut self) -> io::Result<()> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response ended",
            ))
        }
    }

    /// Parses a response head at `pos`: status, head length, body framing,
    /// keep-alive, and the header fields of a final response if `keep`.
    async fn head(&mut self, keep: bool) -> io::Result<HeadInfo> {
        loop {
            if self.available() > 0 {
                let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                let input = &self.buf[self.pos..];
                match response.parse(input) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = response.code.unwrap_or(0);
                        let mut fields = FramingFields::default();
                        for h in response.headers.iter() {
                            fields.add(h.name.as_bytes(), h.value);
                        }
                        let kept = (keep && is_final(status))
                            .then(|| kept_headers(&input[..len], response.headers));
                        return Ok(HeadInfo {
                            status,
                            len,
                            http11: response.version == Some(1),
                            fields,
                            kept,
                        });
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(err) => return Err(invalid(&format!("bad response head: {err}"))),
                }
                if self.available() > MAX_RESPONSE_HEAD {
                    return Err(invalid("response head too large"));
                }
            }
            self.fill_or_eof().await?;
        }
    }

    /// Consumes `n` body bytes (into `body` if given).
    async fn skip(&mut self, mut n: u64, mut body: Option<&mut BodyCollector>) -> io::Result<()> {
        loop {
            let here = (self.available() as u64).min(n);
            if let Some(body) = body.as_deref_mut() {
                body.push(&self.buf[self.pos..self.pos + here as usize]);
            }
            self.pos += here as usize;
            n -= here;
            if n == 0 {
                return Ok(());
            }
            self.fill_or_eof().await?;
        }
    }

    /// Consumes a chunked body; its data (dechunked) goes to `body` if
    /// given. Framed by the decoder v1's responses go through.
    async fn chunked(&mut self, mut body: Option<&mut BodyCollector>) -> io::Result<()> {
        let mut decoder = ChunkedDecoder::default();
        loop {
            if self.available() == 0 {
                self.fill_or_eof().await?;
            }
            let input = &self.buf[self.pos..];
            let (n, step) = decoder.step(input, None, MAX_RESPONSE_HEAD);
            let n = n.min(input.len());
            if step == ChunkedStep::Data
                && let Some(body) = body.as_deref_mut()
            {
                body.push(&input[..n]);
            }
            self.pos += n;
            match step {
                ChunkedStep::Progress | ChunkedStep::Data => {}
                ChunkedStep::Done => return Ok(()),
                ChunkedStep::Invalid => return Err(invalid("bad chunked body")),
                ChunkedStep::TrailersTooLarge => return Err(invalid("trailers too large")),
            }
        }
    }

    /// Consumes everything up to the end of the stream (into `body` if
    /// given).
    async fn until_close(&mut self, mut body: Option<&mut BodyCollector>) -> io::Result<()> {
        loop {
            if let Some(body) = body.as_deref_mut() {
                body.push(&self.buf[self.pos..]);
            }
            self.pos = self.buf.len();
            if !self.fill().await? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::http::testing::hash_of;
    use crate::route::BodyFraming;

    fn get() -> PreparedRequest {
        PreparedRequest::new(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Bytes::new(),
            BodyFraming::AsIs,
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    fn read(mut stream: &[u8], request: &PreparedRequest) -> io::Result<Response> {
        let mut buf = Vec::new();
        runtime().block_on(read_response(&mut stream, &mut buf, request, None))
    }

    /// Reads with the answer kept (body cap `cap`); the answer must be there.
    fn read_keep(mut stream: &[u8], request: &PreparedRequest, cap: usize) -> (Response, Answer) {
        let mut buf = Vec::new();
        let mut r = runtime()
            .block_on(read_response(&mut stream, &mut buf, request, Some(cap)))
            .unwrap();
        let answer = r.answer.take().expect("the answer is kept");
        (r, answer)
    }

    /// A 200 whose chunked body is `pieces`, one chunk each.
    fn chunked<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in pieces {
            stream.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            stream.extend_from_slice(piece);
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b"0\r\n\r\n");
        stream
    }

    /// Reads `stream` (a GET's response) written through a pipe of `pipe`
    /// bytes, so in small reads, with the body cap `keep`: the response
    /// and the read buffer (to see that the body did not pile up in it).
    fn read_piped(
        stream: Vec<u8>,
        pipe: usize,
        keep: Option<usize>,
    ) -> (io::Result<Response>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(pipe);
        let writer = async move {
            server.write_all(&stream).await.unwrap();
            server
        };
        let mut buf = Vec::new();
        let request = get();
        let (r, _server) = runtime().block_on(async {
            tokio::join!(read_response(&mut client, &mut buf, &request, keep), writer)
        });
        (r, buf)
    }

    #[test]
    fn responses_are_read_to_their_end() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &get()).unwrap();
        assert_eq!((r.status, r.reusable), (200, true));

        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n";
        let r = read(chunked, &get()).unwrap();
        assert_eq!((r.status, r.reusable), (201, true));

        let r = read(
            b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbody until close",
            &get(),
        )
        .unwrap();
        assert_eq!((r.status, r.reusable), (500, false));

        let r = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &get()).unwrap();
        assert_eq!(
            (r.status, r.reusable),
            (200, false),
            "1.0 closes by default"
        );
    }

    #[test]
    fn without_keep_no_answer_is_returned() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &get()).unwrap();
        assert_eq!(
            r,
            Response {
                status: 200,
                reusable: true,
                answer: None
            }
        );
    }

    #[test]
    fn with_keep_each_framing_gives_the_answer() {
        let (r, a) = read_keep(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: 2\r\nx-a:  1 \r\n\r\nhello",
            &get(),
            1024,
        );
        assert_eq!((r.status, r.reusable), (200, true));
        assert_eq!(a.status, 200);
        assert_eq!(
            a.headers,
            vec![
                ("Content-Length".to_string(), Bytes::from_static(b"5")),
                ("X-B".to_string(), Bytes::from_static(b"2")),
                ("x-a".to_string(), Bytes::from_static(b"1")),
            ]
        );
        assert_eq!(&a.body.bytes[..], b"hello");
        assert_eq!((a.body.len, a.body.hash), (5, hash_of(b"hello")));

        let chunked = b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n\x1f\x8b\x08\x00\x00\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        let (r, a) = read_keep(chunked, &get(), 1024);
        assert_eq!((r.status, r.reusable), (201, true));
        assert_eq!(
            &a.body.bytes[..],
            b"\x1f\x8b\x08\x00\x00abc",
            "dechunked, coding kept"
        );
        assert_eq!(a.header("content-encoding"), Some(&b"gzip"[..]));
        assert_eq!(a.header("t"), None, "trailers are not headers");

        let (r, a) = read_keep(
            b"HTTP/1.0 500 Oops\r\nServer: x\r\n\r\nbody until close",
            &get(),
            1024,
        );
        assert_eq!((r.status, r.reusable), (500, false));
        assert_eq!(&a.body.bytes[..], b"body until close");

        let (_, a) = read_keep(
            b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 204 No Content\r\nX-Final: 1\r\n\r\n",
            &get(),
            1024,
        );
        assert_eq!(a.status, 204);
        assert_eq!(
            a.headers,
            vec![("X-Final".to_string(), Bytes::from_static(b"1"))],
            "only the final response's fields"
        );
        assert_eq!((a.body.len, a.body.hash), (0, hash_of(b"")));

        let head = get().with_connection(b"HEAD", true, false);
        let (r, a) = read_keep(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            &head,
            1024,
        );
        assert!(r.reusable);
        assert_eq!((a.status, a.body.len), (200, 0));
    }

    #[test]
    fn with_keep_a_body_over_the_cap_keeps_its_start_and_the_hash_of_all_of_it() {
        let (_, a) = read_keep(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
            &get(),
            4,
        );
        assert_eq!(&a.body.bytes[..], b"hell");
        assert_eq!((a.body.len, a.body.hash), (11, hash_of(b"hello world")));
    }

    #[test]
    fn interim_responses_are_skipped_and_some_responses_have_no_body() {
        let head = get().with_connection(b"HEAD", true, false);
        let upgrade = get().with_connection(b"GET", true, true);
        let connect = get().with_connection(b"CONNECT", true, true);
        let cases: [(&[u8], &PreparedRequest, (u16, bool)); 5] = [
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                &get(),
                (204, true),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &head, (200, true)),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
                &get(),
                (304, true),
            ),
            // The connection is someone else's after a switch or a tunnel.
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &upgrade, (101, false)),
            (b"HTTP/1.1 200 Connection established\r\n\r\n", &connect, (200, false)),
        ];
        for (response, request, expected) in cases {
            let r = read(response, request).unwrap();
            assert_eq!(
                (r.status, r.reusable),
                expected,
                "{}",
                response.escape_ascii()
            );
        }
    }

    #[test]
    fn a_truncated_or_garbled_response_is_an_error() {
        assert!(read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel", &get()).is_err());
        assert!(
            read(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                &get()
            )
            .is_err()
        );
        assert!(read(b"SSH-2.0-OpenSSH\r\n\r\n", &get()).is_err());
        assert!(read(b"HTTP/1.1 200 OK\r\n", &get()).is_err());
    }

    #[test]
    fn extra_bytes_after_a_response_make_the_connection_unusable() {
        let r = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
            &get(),
        )
        .unwrap();
        assert_eq!((r.status, r.reusable), (200, false));
    }

    #[test]
    fn a_large_chunked_response_in_small_reads_is_consumed() {
        let piece = [b'z'; 0x1000];
        let (r, buf) = read_piped(chunked([&piece[..]; 50]), 777, None);
        let r = r.unwrap();
        assert_eq!((r.status, r.reusable), (200, true));
        assert!(buf.capacity() < 256 * 1024, "the body was not accumulated");
    }

    #[test]
    fn a_1_mb_chunked_body_with_a_1_kib_cap_keeps_1_kib_and_the_hash_of_all() {
        let content: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
        let (r, buf) = read_piped(chunked(content.chunks(3000)), 4096, Some(1024));
        let r = r.unwrap();
        assert!(r.reusable);
        let body = r.answer.expect("kept").body;
        assert_eq!(&body.bytes[..], &content[..1024]);
        assert_eq!(body.len, 1 << 20);
        assert_eq!(body.hash, hash_of(&content));
        assert!(buf.capacity() < 256 * 1024, "the body was not accumulated");
    }
}
