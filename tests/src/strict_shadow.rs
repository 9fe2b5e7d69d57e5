//! A shadow that frames requests by RFC 9112's grammar alone and never
//! gives up on a test: CRLF line ends only, no obs-fold, one `Host` in
//! HTTP/1.1, a `Transfer-Encoding` of exactly `chunked` and never beside a
//! `Content-Length`, one decimal `Content-Length`. Whatever it cannot frame
//! that way is kept as bytes ([`Arrival::Refused`]), answered 400 and the
//! connection closed: a test sees every byte a shadow was sent, including
//! what a lenient server would have read as some other request.
//!
//! Arrivals are kept in one list across connections, in the order they
//! were framed, each with the number of its connection: a test that sends
//! one case at a time reads what that case brought with
//! [`StrictShadow::arrivals_since`].

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use mirror_testkit::Netns;

/// The answer to every request framed.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// The answer to a HEAD request: the same head, no body.
const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const REFUSED: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
/// Largest head or trailer section.
const MAX_HEAD: usize = 64 << 10;
/// How often the threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// One request as this shadow framed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrictRequest {
    /// Request line, fields and the empty line, as received.
    pub head: Vec<u8>,
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    /// Decoded (chunk framing removed).
    pub body: Vec<u8>,
    pub chunked: bool,
    /// Trailer lines with their CRLF, without the final empty line.
    pub trailers: Vec<u8>,
}

/// What reached the shadow, in framing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    Request {
        connection: usize,
        request: StrictRequest,
    },
    /// Bytes that are not a request by the grammar (from where framing
    /// failed to what had arrived then), or that a connection ended with.
    Refused {
        connection: usize,
        why: String,
        bytes: Vec<u8>,
    },
}

impl Arrival {
    pub fn connection(&self) -> usize {
        match self {
            Arrival::Request { connection, .. } | Arrival::Refused { connection, .. } => {
                *connection
            }
        }
    }
}

/// See the [module](self). Dropping it stops accepting; connection threads
/// end with their connections or at the next poll.
pub struct StrictShadow {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    thread: Option<JoinHandle<()>>,
}

impl StrictShadow {
    /// Listens on `addr` inside `netns` (listening when this returns).
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (thread_stop, thread_arrivals) = (Arc::clone(&stop), Arc::clone(&arrivals));
        let thread = std::thread::Builder::new()
            .name(format!("strict {addr}"))
            .spawn(move || accept_loop(&listener, &thread_stop, &thread_arrivals))
            .expect("spawning a thread");
        Ok(Self {
            addr,
            stop,
            arrivals,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many arrivals so far.
    pub fn count(&self) -> usize {
        self.arrivals.lock().expect("not poisoned").len()
    }

    /// The arrivals from the `from`th on.
    pub fn arrivals_since(&self, from: usize) -> Vec<Arrival> {
        let arrivals = self.arrivals.lock().expect("not poisoned");
        arrivals.get(from..).unwrap_or_default().to_vec()
    }

    /// Stops, closes every connection (what a connection held unframed is
    /// kept as refused bytes) and returns every arrival.
    pub fn stop(mut self) -> Vec<Arrival> {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        std::mem::take(&mut *self.arrivals.lock().expect("not poisoned"))
    }
}

impl Drop for StrictShadow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &Arc<AtomicBool>,
    arrivals: &Arc<Mutex<Vec<Arrival>>>,
) {
    let mut threads = Vec::new();
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let connection = threads.len();
                let (stop, arrivals) = (Arc::clone(stop), Arc::clone(arrivals));
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("strict conn {connection}"))
                        .spawn(move || serve(stream, connection, &stop, &arrivals))
                        .expect("spawning a thread"),
                );
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 5),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for thread in threads {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Serves one connection until the peer closes it, the grammar fails, a
/// request ends the connection, or the shadow stops.
fn serve(
    mut stream: TcpStream,
    connection: usize,
    stop: &AtomicBool,
    arrivals: &Mutex<Vec<Arrival>>,
) {
    let push = |arrival| arrivals.lock().expect("not poisoned").push(arrival);
    let refuse = |why: &str, bytes: &[u8]| {
        push(Arrival::Refused {
            connection,
            why: why.to_owned(),
            bytes: bytes.to_vec(),
        })
    };
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut continued = false;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        // Frame what is there first: pipelined requests need no new read.
        match frame(&buf) {
            Ok(Framed::Request {
                request,
                len,
                closes,
            }) => {
                let head = request.method == b"HEAD";
                buf.drain(..len);
                continued = false;
                push(Arrival::Request {
                    connection,
                    request,
                });
                if stream.write_all(if head { OK_HEAD } else { OK }).is_err() {
                    return;
                }
                if closes {
                    // What follows a request that ends the connection is
                    // no request: kept as refused, never answered.
                    drain_after_close(&mut stream, &mut buf, stop);
                    if !buf.is_empty() {
                        refuse("after a request that closes the connection", &buf);
                    }
                    return;
                }
                continue;
            }
            Ok(Framed::Incomplete { expects_continue }) => {
                if expects_continue && !continued {
                    continued = true;
                    if stream.write_all(CONTINUE).is_err() {
                        return;
                    }
                }
            }
            Err(why) => {
                refuse(&why, &buf);
                let _ = stream.write_all(REFUSED);
                return;
            }
        }
        if stop.load(Ordering::Acquire) {
            if !buf.is_empty() {
                refuse("unframed when the shadow stopped", &buf);
            }
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !buf.is_empty() {
                    refuse("cut by the peer's close", &buf);
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                if !buf.is_empty() {
                    refuse("cut by a connection error", &buf);
                }
                return;
            }
        }
    }
}

/// Reads until the peer closes or the shadow stops, adding to `buf`.
fn drain_after_close(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Acquire) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    Request {
        request: StrictRequest,
        /// Bytes of the buffer it took.
        len: usize,
        /// The connection ends after it (HTTP/1.0 without keep-alive,
        /// `Connection: close`).
        closes: bool,
    },
    Incomplete {
        expects_continue: bool,
    },
}

/// The grammar's tokens (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Frames the request at the start of `buf`, or tells why it is none.
fn frame(buf: &[u8]) -> Result<Framed, String> {
    if buf.is_empty() {
        return Ok(Framed::Incomplete {
            expects_continue: false,
        });
    }
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|at| at + 4) else {
        check_line_ends(buf)?;
        if buf.len() > MAX_HEAD {
            return Err("head too large".into());
        }
        return Ok(Framed::Incomplete {
            expects_continue: false,
        });
    };
    let head = &buf[..head_len];
    check_line_ends(head)?;
    let mut lines = head[..head_len - 4]
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&[u8]> = request_line.split(|b| *b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err("the request line is not METHOD SP TARGET SP VERSION".into());
    };
    if method.is_empty() || !method.iter().all(|b| is_tchar(*b)) {
        return Err("invalid method".into());
    }
    // Raw bytes over 0x7f are no URI, but they frame like any other and
    // servers take them (nginx serves `/café`): only controls and spaces
    // end a target.
    if target.is_empty() || !target.iter().all(|b| *b > 0x20 && *b != 0x7f) {
        return Err("invalid target".into());
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err("not HTTP/1.0 or HTTP/1.1".into()),
    };
    let fields = fields(lines)?;
    let values = |name: &str| -> Vec<&[u8]> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
            .collect()
    };
    if !http10 && values("host").len() != 1 {
        return Err("HTTP/1.1 without exactly one Host".into());
    }
    let te = values("transfer-encoding");
    let cl = values("content-length");
    let chunked = match te[..] {
        [] => false,
        [one] if one.eq_ignore_ascii_case(b"chunked") && !http10 && cl.is_empty() => true,
        _ => return Err("Transfer-Encoding other than one `chunked` alone in HTTP/1.1".into()),
    };
    let length = match cl[..] {
        [] => 0,
        [one] if !one.is_empty() && one.len() <= 18 && one.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(one)
                .expect("digits")
                .parse::<usize>()
                .map_err(|e| e.to_string())?
        }
        _ => return Err("Content-Length is not one decimal number".into()),
    };
    let connection: Vec<Vec<u8>> = values("connection")
        .iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .collect();
    let closes = connection.iter().any(|t| t == b"close")
        || (http10 && !connection.iter().any(|t| t == b"keep-alive"));
    let expects_continue = values("expect")
        .iter()
        .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let rest = &buf[head_len..];
    let body = if chunked {
        chunked_body(rest)?
    } else {
        (rest.len() >= length).then(|| (rest[..length].to_vec(), Vec::new(), length))
    };
    let Some((body, trailers, body_len)) = body else {
        return Ok(Framed::Incomplete { expects_continue });
    };
    Ok(Framed::Request {
        request: StrictRequest {
            head: head.to_vec(),
            method: method.to_vec(),
            target: target.to_vec(),
            body,
            chunked,
            trailers,
        },
        len: head_len + body_len,
        closes,
    })
}

/// Every LF must end a CRLF, every CR start one (the last byte may be a
/// CR whose LF has not come yet).
fn check_line_ends(bytes: &[u8]) -> Result<(), String> {
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\n' if i == 0 || bytes[i - 1] != b'\r' => return Err("a bare LF".into()),
            b'\r' if i + 1 < bytes.len() && bytes[i + 1] != b'\n' => {
                return Err("a bare CR".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A field's name and value.
type Field<'a> = (&'a [u8], &'a [u8]);

/// A decoded chunked body: its content, its trailer lines, the bytes it took.
type ChunkedBody = (Vec<u8>, Vec<u8>, usize);

/// Field lines (`name: value`, OWS around the value) by the grammar.
fn fields<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Field<'a>>, String> {
    lines
        .map(|line| {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                return Err("obs-fold".to_owned());
            }
            let colon = line
                .iter()
                .position(|b| *b == b':')
                .ok_or("a field line without a colon")?;
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
                return Err(format!(
                    "invalid field name {:?}",
                    String::from_utf8_lossy(name)
                ));
            }
            if value
                .iter()
                .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
            {
                return Err("a control character in a field value".to_owned());
            }
            Ok((name, value))
        })
        .collect()
}

/// A whole chunked body at the start of `bytes`: (decoded, trailer lines,
/// bytes taken), None until it is all there.
fn chunked_body(bytes: &[u8]) -> Result<Option<ChunkedBody>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(end) = find(&bytes[at..], b"\r\n") else {
            check_line_ends(&bytes[at..])?;
            return Ok(None);
        };
        let line = &bytes[at..at + end];
        check_line_ends(line)?;
        let size = line.split(|b| *b == b';').next().unwrap_or_default();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err("invalid chunk size".into());
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).expect("hex"), 16)
            .map_err(|e| e.to_string())?;
        at += end + 2;
        if size == 0 {
            break;
        }
        if bytes.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&bytes[at..at + size]);
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
    // Trailer section: field lines up to the empty line.
    let trailers_start = at;
    loop {
        let Some(end) = find(&bytes[at..], b"\r\n") else {
            check_line_ends(&bytes[at..])?;
            return Ok(None);
        };
        let line = &bytes[at..at + end];
        check_line_ends(line)?;
        at += end + 2;
        if line.is_empty() {
            break;
        }
        fields(std::iter::once(line))?;
        if at - trailers_start > MAX_HEAD {
            return Err("trailers too large".into());
        }
    }
    let trailers = bytes[trailers_start..at - 2].to_vec();
    Ok(Some((body, trailers, at)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(framed: Result<Framed, String>) -> (StrictRequest, usize, bool) {
        match framed {
            Ok(Framed::Request {
                request,
                len,
                closes,
            }) => (request, len, closes),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn requests_by_the_grammar_are_framed() {
        let wire = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
        let (req, len, closes) = request(frame(wire));
        assert_eq!(
            (req.method.as_slice(), req.target.as_slice()),
            (&b"POST"[..], &b"/a"[..])
        );
        assert_eq!(
            (req.body.as_slice(), len, closes),
            (&b"abc"[..], wire.len() - 3, false)
        );

        let wire = b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\n\r\n";
        let (req, len, _) = request(frame(wire));
        assert_eq!(
            (req.body.as_slice(), req.trailers.as_slice()),
            (&b"abcd"[..], &b"X-T: 1\r\n"[..])
        );
        assert!(req.chunked && len == wire.len());

        let (_, _, closes) = request(frame(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(closes);
        let (_, _, closes) = request(frame(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ));
        assert!(closes);
    }

    #[test]
    fn what_a_lenient_server_would_read_is_refused() {
        for wire in [
            &b"GET / HTTP/1.1\nHost: h\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: 1\r\n 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        ] {
            assert!(frame(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn a_request_still_arriving_is_incomplete() {
        for wire in [
            &b"GET / HTTP/1.1\r\nHost: h\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\n\r",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n",
        ] {
            assert!(
                matches!(frame(wire), Ok(Framed::Incomplete { .. })),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let expect =
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(
            frame(expect),
            Ok(Framed::Incomplete {
                expects_continue: true
            })
        );
    }
}
