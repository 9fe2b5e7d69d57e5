//! A slow HTTP server: it reads each request, then waits a fixed time
//! before it answers (a shadow that cannot keep up). It only counts what it
//! gets; a connection that breaks ends quietly, as the agent may give up on
//! it at any time.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use mirror_testkit::{Netns, server::RESPONSE};

const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Counts {
    received: AtomicU64,
    answered: AtomicU64,
}

/// The server; stops accepting on [`SlowServer::stop`] or drop. Connection
/// threads end with their connections, or at once once stopped.
pub struct SlowServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl SlowServer {
    /// Listens on `addr` in `netns` (listening when this returns); every
    /// request is answered `delay` after it was read.
    pub fn start(netns: &Netns, addr: SocketAddr, delay: Duration) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (thread_stop, thread_counts) = (Arc::clone(&stop), Arc::clone(&counts));
        let thread = std::thread::Builder::new()
            .name(format!("slow {addr}"))
            .spawn(move || {
                while !thread_stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (stop, counts) =
                                (Arc::clone(&thread_stop), Arc::clone(&thread_counts));
                            std::thread::spawn(move || {
                                let _ = serve(stream, delay, &stop, &counts);
                            });
                        }
                        Err(err) if err.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })
            .expect("spawning a thread");
        Ok(Self {
            addr,
            stop,
            counts,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests read so far (whole heads and bodies).
    pub fn received(&self) -> u64 {
        self.counts.received.load(Ordering::Relaxed)
    }

    /// Responses written so far.
    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Ordering::Relaxed)
    }

    /// Stops accepting and answering; returns `(received, answered)`.
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (self.received(), self.answered())
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn serve(mut stream: TcpStream, delay: Duration, stop: &AtomicBool, counts: &Counts) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL * 5))?;
    let mut buf = Vec::new();
    loop {
        let len = loop {
            if let Some(len) = request_len(&buf)? {
                break len;
            }
            if !read_more(&mut stream, &mut buf, stop)? {
                return Ok(());
            }
        };
        while buf.len() < len {
            if !read_more(&mut stream, &mut buf, stop)? {
                return Ok(());
            }
        }
        buf.drain(..len);
        counts.received.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        stream.write_all(RESPONSE)?;
        counts.answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads what comes; false at EOF or once stopped.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) -> Result<bool> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if stop.load(Ordering::Acquire) {
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

/// The length of the first request in `buf` (head plus Content-Length
/// body) once all of it is there or at least its head is.
fn request_len(buf: &[u8]) -> Result<Option<usize>> {
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
    Ok(Some(head_len + body_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_length_counts_the_body() {
        assert_eq!(
            request_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            Some(27)
        );
        assert_eq!(
            request_len(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab").unwrap(),
            Some(41)
        );
        assert_eq!(request_len(b"GET / HTTP/1.1\r\n").unwrap(), None);
    }
}
