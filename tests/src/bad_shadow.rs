//! A shadow that fails every request it gets, in one of the ways a broken
//! service does ([`Failure`]), and counts the connections it accepted and
//! the request heads it read: a thread per connection, so that a client
//! reconnecting per request is served as fast as it reconnects.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};

use mirror_testkit::Netns;

/// How the shadow answers each request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Bytes that are not HTTP ([`GARBAGE`]); the connection stays open
    /// until the client closes it, so the client is the side that keeps
    /// the TIME_WAIT.
    Garbage,
    /// A 200 head promising a body, part of the body, then a reset
    /// (`SO_LINGER` 0).
    ResetMidBody,
}

/// The answer of [`Failure::Garbage`].
pub const GARBAGE: &[u8] = b"garbage, not HTTP\r\n\r\n";
/// What [`Failure::ResetMidBody`] sends before its reset.
const PARTIAL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial";

/// How often the acceptor looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long a connection may stay quiet before the shadow gives up on it.
const QUIET: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// The server; stops accepting on [`BadShadow::stop`] or drop.
pub struct BadShadow {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl BadShadow {
    /// Listens on `addr` in `netns` (listening when this returns) and fails
    /// every request as `failure` says.
    pub fn start(netns: &Netns, addr: SocketAddr, failure: Failure) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (thread_stop, thread_counts) = (Arc::clone(&stop), Arc::clone(&counts));
        let thread = std::thread::Builder::new()
            .name(format!("bad {addr}"))
            .spawn(move || {
                while !thread_stop.load(Ordering::Acquire) {
                    if !readable(&listener, POLL) {
                        continue;
                    }
                    let Ok((stream, _)) = listener.accept() else {
                        continue;
                    };
                    thread_counts.connections.fetch_add(1, Ordering::Relaxed);
                    let counts = Arc::clone(&thread_counts);
                    std::thread::spawn(move || {
                        let _ = serve(stream, failure, &counts);
                    });
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

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::Relaxed)
    }

    /// Request heads read so far (each was failed).
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Stops accepting; returns `(connections, requests)`.
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (self.connections(), self.requests())
    }
}

impl Drop for BadShadow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Whether `listener` has a connection to accept within `timeout`.
fn readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and its count.
    let ready = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
    ready > 0
}

/// Answers every request head on `stream` as `failure` says, until the
/// client closes, the connection breaks or stays quiet for [`QUIET`].
fn serve(mut stream: TcpStream, failure: Failure, counts: &Counts) -> std::io::Result<()> {
    stream.set_read_timeout(Some(QUIET))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            counts.requests.fetch_add(1, Ordering::Relaxed);
            match failure {
                Failure::Garbage => stream.write_all(GARBAGE)?,
                Failure::ResetMidBody => {
                    stream.write_all(PARTIAL)?;
                    reset(&stream)?;
                    return Ok(());
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Makes the close of `stream` (when it is dropped) a reset.
fn reset(stream: &TcpStream) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket, option value and length.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
