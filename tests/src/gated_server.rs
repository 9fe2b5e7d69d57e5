//! A shadow that stalls and recovers: it reads every request as soon as
//! it arrives and notes when, but answers only while its gate is open.
//! A closed gate is a shadow that stops answering without refusing
//! anything (a long pause, an overloaded application); opening it again
//! is the recovery, and everything held is answered at once.
//!
//! Requests are GETs or have a `Content-Length` body; a connection that
//! breaks ends quietly, as the agent may give up on it at any time.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use mirror_testkit::{Netns, server::RESPONSE};

const POLL: Duration = Duration::from_millis(5);

/// One request as the server read it.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When its last byte was read.
    pub at: Instant,
    /// Request line, headers and the empty line.
    pub head: Vec<u8>,
}

impl Arrival {
    /// The request target of the request line.
    pub fn target(&self) -> &str {
        std::str::from_utf8(&self.head)
            .ok()
            .and_then(|head| head.split(' ').nth(1))
            .unwrap_or("")
    }
}

#[derive(Debug, Default)]
struct State {
    open: AtomicBool,
    stop: AtomicBool,
    arrivals: Mutex<Vec<Arrival>>,
}

/// The server; stops on [`GatedServer::stop`] or drop.
pub struct GatedServer {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl GatedServer {
    /// Listens on `addr` in `netns` (listening when this returns), the gate
    /// open.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(State::default());
        state.open.store(true, Ordering::Release);
        let accepting = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("gated {addr}"))
            .spawn(move || {
                while !accepting.stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = Arc::clone(&accepting);
                            std::thread::spawn(move || {
                                let _ = serve(stream, &state);
                            });
                        }
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })
            .expect("spawning a thread");
        Ok(Self {
            state,
            thread: Some(thread),
        })
    }

    /// From now on requests are read but not answered.
    pub fn close_gate(&self) {
        self.state.open.store(false, Ordering::Release);
    }

    /// Answers what is held, and every request from now on.
    pub fn open_gate(&self) {
        self.state.open.store(true, Ordering::Release);
    }

    /// The requests read so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting and answering; returns every request read.
    pub fn stop(mut self) -> Vec<Arrival> {
        self.state.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.arrivals()
    }
}

impl Drop for GatedServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
    }
}

fn serve(mut stream: TcpStream, state: &State) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL * 10))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let (head_len, len) = loop {
            if let Some(lens) = request_len(&buf)?
                && buf.len() >= lens.1
            {
                break lens;
            }
            if !read_more(&mut stream, &mut buf, state)? {
                return Ok(());
            }
        };
        let arrival = Arrival {
            at: Instant::now(),
            head: buf[..head_len].to_vec(),
        };
        buf.drain(..len);
        state
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(arrival);
        while !state.open.load(Ordering::Acquire) {
            if state.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        stream.write_all(RESPONSE)?;
    }
}

/// Reads what comes; false at EOF or once stopped.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, state: &State) -> Result<bool> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if state.stop.load(Ordering::Acquire) {
            return Ok(false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// `(head length, request length)` of the first request in `buf` once its
/// head is there (the body is `Content-Length` bytes, or none).
fn request_len(buf: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = request.parse(buf)? else {
        return Ok(None);
    };
    let mut body_len = 0usize;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(header.value)?.trim().parse()?;
        }
    }
    Ok(Some((head_len, head_len + body_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_length_is_the_head_and_its_body() {
        assert_eq!(
            request_len(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET").unwrap(),
            Some((28, 28))
        );
        assert_eq!(
            request_len(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab").unwrap(),
            Some((38, 41))
        );
        assert_eq!(request_len(b"GET / HTTP/1.1\r\n").unwrap(), None);
        let arrival = Arrival {
            at: Instant::now(),
            head: b"GET /stale/3 HTTP/1.1\r\n\r\n".to_vec(),
        };
        assert_eq!(arrival.target(), "/stale/3");
    }
}
