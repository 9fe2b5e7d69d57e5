//! A small HTTP/1.x server for the kernel tests and the vm-test guest: it
//! frames every request it receives with framing code of its own (httparse
//! for the head, then `Content-Length` or chunked decoding written here),
//! independent of the agent's framer, keeps each request per connection in
//! arrival order, and answers each with [`RESPONSE`]. What it kept is what
//! the agent must extract from the captured packets, byte for byte.
//!
//! Keep-alive and pipelining (HTTP/1.1, or HTTP/1.0 with
//! `Connection: keep-alive`), `Connection: close` and plain HTTP/1.0, and
//! `Expect: 100-continue` (answered with `100 Continue` before the body is
//! read, as curl waits for it).

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    netns::Netns,
    tcp::{IO_TIMEOUT, wait_readable},
};

/// The answer to every request on a connection that stays open (HTTP/1.1).
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// The answer to an HTTP/1.0 request asking for keep-alive (ab -k looks
/// for `keep-alive` in the response before it reuses the connection).
pub const RESPONSE_KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
/// The answer to the last request of a connection the server then closes.
pub const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Largest head (and trailer section) the server accepts.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 128;
/// How often the acceptor looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

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

/// The server: listens on an address in a namespace, a thread per
/// connection. Dropped without [`HttpServer::stop`] (a failed test) it
/// stops accepting; connection threads end with their connections.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Requests framed so far, all connections.
    framed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<Received>>>,
}

impl HttpServer {
    /// Listens on `addr` inside `netns` (listening when this returns) and
    /// accepts connections until [`HttpServer::stop`].
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let framed = Arc::new(AtomicUsize::new(0));
        let (thread_stop, thread_framed) = (Arc::clone(&stop), Arc::clone(&framed));
        let thread = std::thread::Builder::new()
            .name(format!("http {addr}"))
            .spawn(move || accept_loop(listener, &thread_stop, &thread_framed))
            .expect("spawning a thread");
        Ok(Self {
            addr,
            stop,
            framed,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests the server has framed so far (to wait for traffic
    /// to arrive; [`HttpServer::stop`] gives the requests themselves).
    pub fn request_count(&self) -> usize {
        self.framed.load(Ordering::Acquire)
    }

    /// Stops accepting (connections already queued are still served) and
    /// waits until every connection has ended, that is until each client
    /// closed its side: its FIN has then passed the capture. Call it once
    /// the clients are done.
    pub fn stop(mut self) -> Result<Received> {
        let thread = self.thread.take().expect("only stop() takes the thread");
        self.stop.store(true, Ordering::Release);
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

type ConnectionThread = JoinHandle<Result<ServerConnection>>;

fn accept_loop(
    listener: TcpListener,
    stop: &AtomicBool,
    framed: &Arc<AtomicUsize>,
) -> Result<Received> {
    let mut threads: Vec<ConnectionThread> = Vec::new();
    loop {
        // Read the flag before emptying the queue: a connection the client
        // completed before stop() is in the queue by then.
        let stopping = stop.load(Ordering::Acquire);
        loop {
            match listener.accept() {
                Ok((stream, client)) => {
                    threads.push(spawn_connection(stream, client, Arc::clone(framed))?)
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context("accept"),
            }
        }
        if stopping {
            break;
        }
        wait_readable(&listener, ACCEPT_POLL)?;
    }
    drop(listener);
    let mut received = Received::default();
    let mut first_error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(connection)) => received.connections.push(connection),
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(received),
    }
}

fn spawn_connection(
    stream: TcpStream,
    client: SocketAddr,
    framed: Arc<AtomicUsize>,
) -> Result<ConnectionThread> {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit.
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(std::thread::Builder::new()
        .name(format!("http {client}"))
        .spawn(move || {
            let mut requests = Vec::new();
            serve(Conn::new(stream), &mut requests, &framed).with_context(|| {
                format!(
                    "connection from {client}, after {} requests",
                    requests.len()
                )
            })?;
            Ok(ServerConnection { client, requests })
        })
        .expect("spawning a thread"))
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What the server needs to know from a head.
#[derive(Debug)]
struct HeadInfo {
    http10: bool,
    framing: Framing,
    expect_continue: bool,
    keep_alive: bool,
}

/// A connected stream: a TCP socket, or a Unix socket pair in unit tests.
trait Socket: Read + Write {
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

/// Serves one connection until the client closes it (or, after a request
/// that ends the connection, until the client's FIN).
fn serve<T: Socket>(
    mut conn: Conn<T>,
    requests: &mut Vec<ReceivedRequest>,
    framed: &AtomicUsize,
) -> Result<()> {
    loop {
        let Some(head_len) = conn.head_len()? else {
            return Ok(()); // the client closed between requests
        };
        let head = conn.take(head_len);
        let info = head_info(&head)?;
        if info.expect_continue && !info.http10 && info.framing != Framing::None {
            conn.stream.write_all(CONTINUE)?;
        }
        let mut request = ReceivedRequest {
            head,
            body: Vec::new(),
            chunked: info.framing == Framing::Chunked,
            trailers: Vec::new(),
        };
        match info.framing {
            Framing::None => {}
            Framing::Length(len) => {
                request.body = conn.take_exact(usize::try_from(len)?)?;
            }
            Framing::Chunked => conn.chunked_body(&mut request)?,
        }
        requests.push(request);
        framed.fetch_add(1, Ordering::AcqRel);
        let response = match (info.keep_alive, info.http10) {
            (false, _) => RESPONSE_CLOSE,
            (true, true) => RESPONSE_KEEP_ALIVE,
            (true, false) => RESPONSE,
        };
        conn.stream.write_all(response)?;
        if !info.keep_alive {
            // Close our side, then wait for the client's FIN so that
            // stop() returns only once it went past the capture.
            conn.stream.shutdown_write()?;
            let extra = conn.rest()?;
            ensure!(
                extra == 0,
                "{extra} bytes arrived after a request that closed the connection"
            );
            return Ok(());
        }
    }
}

fn head_info(head: &[u8]) -> Result<HeadInfo> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(head).context("parsing a complete head")?;
    ensure!(status.is_complete(), "the head is not complete");
    let http10 = request.version == Some(0);
    let mut transfer_encoding: Option<Vec<u8>> = None;
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    let mut close = false;
    let mut keep_alive = false;
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
            let text = std::str::from_utf8(value)?.trim();
            let len: u64 = text
                .parse()
                .with_context(|| format!("Content-Length {text:?}"))?;
            if let Some(previous) = content_length {
                ensure!(previous == len, "two Content-Length values");
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
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
        keep_alive: !close && (!http10 || keep_alive),
    })
}

/// A connection with its unread bytes.
struct Conn<T> {
    stream: T,
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
}

impl<T: Socket> Conn<T> {
    fn new(stream: T) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(64 << 10),
            start: 0,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads what the socket has (at least one byte unless EOF); returns
    /// how many bytes came, 0 at EOF.
    fn fill(&mut self) -> Result<usize> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + (64 << 10), 0);
        let read = loop {
            match self.stream.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => {
                    self.buf.truncate(len);
                    return Err(err).context("reading from the client");
                }
            }
        };
        self.buf.truncate(len + read);
        Ok(read)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let bytes = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        bytes
    }

    /// The length of the next complete head, or None if the client closed
    /// before sending a byte of it.
    fn head_len(&mut self) -> Result<Option<usize>> {
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
                if self.available().is_empty() {
                    return Ok(None);
                }
                bail!(
                    "the client closed inside a head ({} bytes of it)",
                    self.available().len()
                );
            }
        }
    }

    fn take_exact(&mut self, n: usize) -> Result<Vec<u8>> {
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

    /// One line with its CRLF.
    fn line(&mut self) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.available()[searched..]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                return Ok(self.take(searched + at + 2));
            }
            searched = self.available().len().saturating_sub(1);
            ensure!(searched <= MAX_HEAD, "line over {MAX_HEAD} bytes");
            if self.fill()? == 0 {
                bail!("the client closed inside a chunked body");
            }
        }
    }

    /// `chunk-size [; ext] CRLF data CRLF` ... `0 CRLF trailers CRLF`.
    fn chunked_body(&mut self, request: &mut ReceivedRequest) -> Result<()> {
        loop {
            let line = self.line()?;
            let text = std::str::from_utf8(&line[..line.len() - 2])?;
            let size_text = text.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size_text, 16)
                .with_context(|| format!("chunk size line {text:?}"))?;
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
            request.trailers.extend_from_slice(&line);
            ensure!(request.trailers.len() <= MAX_HEAD, "trailers too large");
        }
    }

    /// Reads to EOF; returns how many bytes came (unread ones included).
    fn rest(&mut self) -> Result<usize> {
        let mut total = self.available().len();
        self.start = self.buf.len();
        loop {
            let n = self.fill()?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            self.start = self.buf.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Serves what `client_bytes` holds over a socket pair; returns the
    /// requests and everything the server wrote back.
    fn serve_bytes(client_bytes: &[u8]) -> (Result<Vec<ReceivedRequest>>, Vec<u8>) {
        let (mut client, server) = UnixStream::pair().unwrap();
        let thread = std::thread::spawn(move || {
            let mut requests = Vec::new();
            let result = serve(Conn::new(server), &mut requests, &AtomicUsize::new(0));
            result.map(|()| requests)
        });
        client.write_all(client_bytes).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        (thread.join().unwrap(), answer)
    }

    #[test]
    fn pipelined_requests_are_framed_and_answered_in_order() {
        let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".as_slice();
        let second = b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n".as_slice();
        let third =
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                .as_slice();
        let chunks = b"3;name=v\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n";
        let mut stream = [first, second, b"hello", third, chunks].concat();
        let fourth = b"GET /d HTTP/1.0\r\n\r\n".as_slice();
        stream.extend_from_slice(fourth);
        let (requests, answer) = serve_bytes(&stream);
        let requests = requests.unwrap();
        assert_eq!(requests.len(), 4);
        assert_eq!(requests[0].head, first);
        assert!(requests[0].body.is_empty());
        assert_eq!(requests[1].head, second);
        assert_eq!(requests[1].body, b"hello");
        assert_eq!(requests[2].head, third);
        assert_eq!(requests[2].body, b"abc0123456789abcdef");
        assert!(requests[2].chunked);
        assert_eq!(requests[2].trailers, b"X-Sum: 1\r\n");
        assert_eq!(requests[3].head, fourth);
        let expected = [RESPONSE, RESPONSE, CONTINUE, RESPONSE, RESPONSE_CLOSE].concat();
        assert_eq!(answer, expected);
    }

    #[test]
    fn a_truncated_body_is_an_error_and_a_clean_close_is_not() {
        let (requests, _) = serve_bytes(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc");
        assert!(requests.is_err());
        let (requests, answer) = serve_bytes(b"");
        assert!(requests.unwrap().is_empty());
        assert!(answer.is_empty());
    }

    #[test]
    fn head_info_reads_the_framing_and_the_connection_options() {
        let info = head_info(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(info.framing, Framing::Length(12));
        assert!(info.keep_alive && !info.http10 && !info.expect_continue);

        let info = head_info(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(info.framing, Framing::Chunked);
        assert!(info.expect_continue && !info.keep_alive);

        let info = head_info(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(info.framing, Framing::None);
        assert!(info.http10 && !info.keep_alive);
        let info = head_info(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(info.keep_alive);

        assert!(head_info(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
    }
}
