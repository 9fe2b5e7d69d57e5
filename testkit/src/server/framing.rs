//! How the test server frames a request: httparse for the head, then
//! `Content-Length` or chunked decoding written here, independent of the
//! agent's framer (the server is the oracle the tests compare the agent
//! against). Strict: lines end in CRLF only, lengths and chunk sizes are
//! digits only; anything else ends the connection with an error that
//! [`Server::stop`](super::Server::stop) reports. Stricter still under
//! [`Builder::refuse_unframeable`](super::Builder::refuse_unframeable)
//! ([`Grammar::Rfc9112`]): what a lenient server could read otherwise is
//! refused too, so that a test sees every such byte a shadow was sent.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::tcp::IO_TIMEOUT;

/// Largest head (and trailer section) the server accepts.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 128;

/// One request as the server framed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Request line, header fields and the empty line, exactly as received.
    pub head: Vec<u8>,
    /// The body, decoded (chunk framing removed).
    pub body: Vec<u8>,
    pub chunked: bool,
    /// Raw trailer lines of a chunked body, each with its CRLF, without the
    /// final empty line.
    pub trailers: Vec<u8>,
}

impl ReceivedRequest {
    /// The request line's method.
    pub fn method(&self) -> &str {
        self.request_line().next().unwrap_or("")
    }

    /// The request line's target (`/path?query`).
    pub fn target(&self) -> &str {
        self.request_line().nth(1).unwrap_or("")
    }

    /// Whether the request line says HTTP/1.0.
    pub fn http10(&self) -> bool {
        self.request_line().nth(2) == Some("HTTP/1.0")
    }

    /// The value of the first field named `name` (any case), without its
    /// surrounding whitespace.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of the first field named `name`, as text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header field in order: (name, value without surrounding
    /// whitespace).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let text = self.head.strip_suffix(b"\r\n\r\n").unwrap_or(&self.head);
        text.split(|b| *b == b'\n').skip(1).filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name, line[colon + 1..].trim_ascii()))
        })
    }

    /// Whether the connection stays open after the answer to this request
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        let (mut close, mut keep_alive) = (false, false);
        for (name, value) in self.headers() {
            if name.eq_ignore_ascii_case("connection") {
                for token in value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        !close && (!self.http10() || keep_alive)
    }

    fn request_line(&self) -> std::str::SplitAsciiWhitespace<'_> {
        let end = self.head.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
        std::str::from_utf8(&self.head[..end])
            .unwrap_or("")
            .split_ascii_whitespace()
    }
}

/// Everything one connection carried, in arrival order.
#[derive(Clone, Debug)]
pub struct ServerConnection {
    pub client: SocketAddr,
    pub requests: Vec<ReceivedRequest>,
}

/// What the server received, connections in accept order.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub connections: Vec<ServerConnection>,
}

impl Received {
    pub fn request_count(&self) -> usize {
        self.connections.iter().map(|c| c.requests.len()).sum()
    }

    pub fn requests(&self) -> impl Iterator<Item = &ReceivedRequest> + '_ {
        self.connections.iter().flat_map(|c| &c.requests)
    }
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// How strictly heads and trailers are held to RFC 9112.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Grammar {
    /// CRLF only, digits only; what else httparse takes.
    Framing,
    /// Also: exactly one `Host` in HTTP/1.1; a `Transfer-Encoding` of
    /// exactly `chunked`, in HTTP/1.1 only, never beside a
    /// `Content-Length`; one `Content-Length` field of at most 18 digits;
    /// chunk sizes of at most 15 hex digits, no whitespace before an
    /// extension; trailer lines that are field
    /// lines (no obs-fold, a token name, no control character).
    Rfc9112,
}

/// What the server needs to know from a head.
#[derive(Debug)]
pub(super) struct HeadInfo {
    pub http10: bool,
    pub framing: Framing,
    pub expect_continue: bool,
}

/// A connected stream: a TCP socket, or a Unix socket pair in unit tests.
pub(super) trait Socket: Read + Write {
    fn shutdown_write(&self) -> std::io::Result<()>;
}

impl Socket for TcpStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Socket for std::os::unix::net::UnixStream {
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// Reads the framing of a complete head, strictly.
pub(super) fn head_info(head: &[u8], grammar: Grammar) -> Result<HeadInfo> {
    crlf_only(head).context("in the head")?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(head).context("parsing a complete head")?;
    ensure!(status.is_complete(), "the head is not complete");
    let http10 = request.version == Some(0);
    if grammar == Grammar::Rfc9112 {
        rfc9112_fields(request.headers, http10)?;
    }
    let mut transfer_encoding: Option<Vec<u8>> = None;
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            let all = transfer_encoding.get_or_insert_with(Vec::new);
            if !all.is_empty() {
                all.push(b',');
            }
            all.extend_from_slice(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            let len = digits(value.trim_ascii(), 10)
                .with_context(|| format!("Content-Length {:?}", String::from_utf8_lossy(value)))?;
            if let Some(previous) = content_length {
                ensure!(previous == len, "two Content-Length values");
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match transfer_encoding {
        Some(codings) => {
            let last = codings
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|c| !c.is_empty())
                .unwrap_or_default();
            ensure!(
                last.eq_ignore_ascii_case(b"chunked"),
                "unsupported Transfer-Encoding {:?}",
                String::from_utf8_lossy(&codings)
            );
            Framing::Chunked
        }
        None => match content_length {
            Some(len) => Framing::Length(len),
            None => Framing::None,
        },
    };
    Ok(HeadInfo {
        http10,
        framing,
        expect_continue,
    })
}

/// The field rules of [`Grammar::Rfc9112`] that httparse leaves out.
fn rfc9112_fields(headers: &[httparse::Header<'_>], http10: bool) -> Result<()> {
    let values = |name: &str| -> Vec<&[u8]> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
            .collect()
    };
    ensure!(
        http10 || values("host").len() == 1,
        "HTTP/1.1 without exactly one Host"
    );
    let (te, cl) = (values("transfer-encoding"), values("content-length"));
    match te[..] {
        [] => {}
        [one] if one.eq_ignore_ascii_case(b"chunked") && !http10 && cl.is_empty() => {}
        _ => bail!("Transfer-Encoding other than one `chunked` alone in HTTP/1.1"),
    }
    ensure!(
        cl.len() <= 1 && cl.iter().all(|v| v.len() <= 18),
        "Content-Length is not one decimal number"
    );
    Ok(())
}

/// A trailer line by [`Grammar::Rfc9112`]: `name: value` CRLF, the name a
/// token, no control character in the value.
fn trailer_line(line: &[u8]) -> Result<()> {
    let line = &line[..line.len() - 2];
    ensure!(
        !line.first().is_some_and(|b| *b == b' ' || *b == b'\t'),
        "an obs-folded trailer line"
    );
    let colon = line
        .iter()
        .position(|b| *b == b':')
        .context("a trailer line without a colon")?;
    let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    ensure!(
        colon > 0 && line[..colon].iter().all(is_tchar),
        "an invalid trailer name"
    );
    ensure!(
        !line[colon + 1..]
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f),
        "a control character in a trailer value"
    );
    Ok(())
}

/// Fails on a CR not followed by LF or an LF not preceded by CR.
fn crlf_only(bytes: &[u8]) -> Result<()> {
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\n' => ensure!(i > 0 && bytes[i - 1] == b'\r', "a bare LF at byte {i}"),
            b'\r' => ensure!(bytes.get(i + 1) == Some(&b'\n'), "a bare CR at byte {i}"),
            _ => {}
        }
    }
    Ok(())
}

/// A number written with digits of `radix` only (no sign, no space).
fn digits(text: &[u8], radix: u32) -> Result<u64> {
    ensure!(
        !text.is_empty() && text.iter().all(|b| (*b as char).is_digit(radix)),
        "not a number"
    );
    Ok(u64::from_str_radix(std::str::from_utf8(text)?, radix)?)
}

/// A connection with its unread bytes. Reads wait in short slices so that
/// a halted server ends its connections at once.
pub(super) struct Conn<'a, T> {
    pub stream: T,
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
    /// Every byte taken since [`Conn::begin`]: the request as it came.
    wire: Vec<u8>,
    halt: &'a AtomicBool,
}

impl<'a, T: Socket> Conn<'a, T> {
    pub fn new(stream: T, halt: &'a AtomicBool) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(64 << 10),
            start: 0,
            wire: Vec::new(),
            halt,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads what the socket has (at least one byte unless EOF); returns
    /// how many bytes came, 0 at EOF or once the server halts.
    fn fill(&mut self) -> Result<usize> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + (64 << 10), 0);
        let quiet_since = Instant::now();
        let read = loop {
            if self.halt.load(Ordering::Acquire) {
                break 0;
            }
            match self.stream.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err)
                    if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                        && quiet_since.elapsed() < IO_TIMEOUT => {}
                Err(err) => {
                    self.buf.truncate(len);
                    return Err(err).context("reading from the client");
                }
            }
        };
        self.buf.truncate(len + read);
        Ok(read)
    }

    /// Starts keeping the bytes of a new request.
    pub fn begin(&mut self) {
        self.wire.clear();
    }

    /// The bytes taken since [`Conn::begin`].
    pub fn wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let bytes = self.buf[self.start..self.start + n].to_vec();
        self.wire.extend_from_slice(&bytes);
        self.start += n;
        bytes
    }

    /// The length of the next complete head, or None if the client closed
    /// before sending a byte of it.
    pub fn head_len(&mut self) -> Result<Option<usize>> {
        loop {
            let available = self.available();
            if !available.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let status = httparse::Request::new(&mut headers)
                    .parse(available)
                    .with_context(|| {
                        format!(
                            "invalid head: {:?}",
                            String::from_utf8_lossy(&available[..available.len().min(200)])
                        )
                    })?;
                if let httparse::Status::Complete(len) = status {
                    return Ok(Some(len));
                }
                ensure!(available.len() <= MAX_HEAD, "head over {MAX_HEAD} bytes");
            }
            if self.fill()? == 0 {
                if self.available().is_empty() || self.halt.load(Ordering::Acquire) {
                    return Ok(None);
                }
                bail!(
                    "the client closed inside a head ({} bytes of it)",
                    self.available().len()
                );
            }
        }
    }

    pub fn take_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.available().len() < n {
            if self.fill()? == 0 {
                bail!(
                    "the client closed after {} of {n} body bytes",
                    self.available().len()
                );
            }
        }
        Ok(self.take(n))
    }

    /// One line with its CRLF; a bare CR or LF in it is an error.
    fn line(&mut self) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.available()[searched..]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.take(searched + at + 2);
                crlf_only(&line)?;
                return Ok(line);
            }
            searched = self.available().len().saturating_sub(1);
            ensure!(searched <= MAX_HEAD, "line over {MAX_HEAD} bytes");
            if self.fill()? == 0 {
                bail!("the client closed inside a chunked body");
            }
        }
    }

    /// `chunk-size [; ext] CRLF data CRLF` ... `0 CRLF trailers CRLF`.
    pub fn chunked_body(&mut self, request: &mut ReceivedRequest, grammar: Grammar) -> Result<()> {
        loop {
            let line = self.line()?;
            let text = &line[..line.len() - 2];
            let size_text = text.split(|b| *b == b';').next().unwrap_or_default();
            // Whitespace is allowed before an extension only (not by
            // Grammar::Rfc9112: a lenient server may read it otherwise).
            let size_text = match grammar {
                Grammar::Framing => size_text.trim_ascii_end(),
                Grammar::Rfc9112 => {
                    ensure!(size_text.len() <= 15, "a chunk size over 15 hex digits");
                    size_text
                }
            };
            let size = digits(size_text, 16)
                .with_context(|| format!("chunk size line {:?}", String::from_utf8_lossy(text)))?;
            if size == 0 {
                break;
            }
            let data = self.take_exact(usize::try_from(size)?)?;
            request.body.extend_from_slice(&data);
            ensure!(self.take_exact(2)? == b"\r\n", "no CRLF after a chunk");
        }
        loop {
            let line = self.line()?;
            if line == b"\r\n" {
                return Ok(());
            }
            if grammar == Grammar::Rfc9112 {
                trailer_line(&line)?;
            }
            request.trailers.extend_from_slice(&line);
            ensure!(request.trailers.len() <= MAX_HEAD, "trailers too large");
        }
    }

    /// Reads to EOF (or until the server halts); returns how many bytes
    /// came (unread ones included). With `keep`, they are kept as the wire
    /// of a new request ([`Conn::unframed`]).
    pub fn rest(&mut self, keep: bool) -> Result<usize> {
        self.begin();
        let mut total = 0;
        loop {
            let n = self.available().len();
            total += n;
            self.take(n);
            if !keep {
                self.wire.clear();
            }
            if self.fill()? == 0 {
                return Ok(total);
            }
        }
    }

    /// The bytes of the request being framed (taken since [`Conn::begin`])
    /// and those not yet taken.
    pub fn unframed(&mut self) -> Vec<u8> {
        let mut bytes = self.wire();
        bytes.extend_from_slice(self.available());
        self.start = self.buf.len();
        bytes
    }
}

/// How often a connection's reads look at the halt flag.
pub(super) const READ_SLICE: Duration = Duration::from_millis(50);
