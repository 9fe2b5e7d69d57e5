//! The one HTTP/1.x server of the tests, the demo's checks and the vm-test
//! guest: v1, its replicas and the shadows, well or broken.
//!
//! It frames every request with framing code of its own ([`framing`]:
//! strict, CRLF only, independent of the agent's framer), logs it as it
//! came, then answers it. What it logged is what the agent must have
//! extracted from the captured packets, or sent to a shadow, byte for byte.
//!
//! Behaviours, chosen on the [`Builder`]:
//! * an answer function from the framed request to a [`Reply`] (by default
//!   [`Reply::ok`]); a reply may also fail the request: close, reset,
//!   garbage, silence;
//! * a delay before each answer (a shadow that cannot keep up);
//! * a gate: [`Server::hold_answers`] keeps answers back (requests are
//!   still read and logged), [`Server::release_answers`] sends them;
//! * [`Builder::refuse_unframeable`]: frames by RFC 9112's grammar alone
//!   and keeps what it cannot frame in its log, answered 400 (a shadow
//!   that shows every byte a lenient server could misread).
//!
//! Keep-alive and pipelining (HTTP/1.1, or HTTP/1.0 with
//! `Connection: keep-alive`), `Connection: close` and plain HTTP/1.0, and
//! `Expect: 100-continue` (answered with `100 Continue` before the body is
//! read, as curl waits for it). A thread per connection, so that a client
//! reconnecting per request is served as fast as it reconnects.
//!
//! Two ways to end it: [`Server::stop`] waits until every client closed
//! (its FIN has then passed the capture) and fails on any request the
//! server could not frame; [`Server::halt`] ends every connection at once
//! and returns what came, whatever broke (the agent may give up on a
//! shadow's connection at any time). Dropped, it halts.
//!
//! ```no_run
//! # fn f(ns: &mirror_testkit::Netns) -> anyhow::Result<()> {
//! use mirror_testkit::{Server, server::Reply};
//! let v2 = Server::builder()
//!     .answer(|request| if request.target() == "/boom" { Reply::reset_mid_body() } else { Reply::ok(request) })
//!     .start(ns, "10.200.1.2:8080".parse()?)?;
//! let received = v2.stop()?; // every request, framed, by connection
//! # Ok(()) }
//! ```

mod framing;
mod reply;

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

pub use framing::{Received, ReceivedRequest, ServerConnection};
pub use reply::{
    BAD_REQUEST, CONTINUE, GARBAGE, RESPONSE, RESPONSE_CLOSE, RESPONSE_KEEP_ALIVE, Reply, Then,
};

use crate::{netns::Netns, tcp::wait_readable};
use framing::{Conn, Framing, Grammar, READ_SLICE, Socket, head_info};

/// How often the acceptor looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// The answer function.
type Answer = dyn Fn(&ReceivedRequest) -> Reply + Send + Sync;

/// One request in the server's log, as it arrived; in the log's order,
/// the order the server framed them in across connections.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When its last byte was read.
    pub at: Instant,
    /// Its connection, by accept order (an index into
    /// [`Received::connections`]).
    pub connection: usize,
    /// Every byte of it, as received (head, body framing and all).
    pub wire: Vec<u8>,
    /// The request as framed; or, under [`Builder::refuse_unframeable`],
    /// why `wire` is none: bytes the grammar refuses (from where framing
    /// failed on), bytes after a request that closed the connection, or
    /// bytes a connection ended with.
    pub request: Result<ReceivedRequest, String>,
}

impl Arrival {
    /// The request target of the request line.
    pub fn target(&self) -> &str {
        let line = self.wire.split(|b| *b == b'\r').next().unwrap_or_default();
        std::str::from_utf8(line)
            .ok()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or("")
    }
}

/// How a server behaves; see the [module](self).
pub struct Builder {
    answer: Box<Answer>,
    delay: Duration,
    grammar: Grammar,
}

impl Builder {
    /// Every framed request is answered with what `answer` returns.
    pub fn answer(
        mut self,
        answer: impl Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.answer = Box::new(answer);
        self
    }

    /// Every request is answered `delay` after it was read.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Frames by RFC 9112's grammar alone (see [`Grammar::Rfc9112`]), and
    /// what it cannot frame ends the connection without failing
    /// [`Server::stop`]: the bytes are kept in the log as a refused
    /// [`Arrival`], answered [`BAD_REQUEST`], and the connection closed.
    /// Bytes after a request that closed the connection, and those a
    /// connection ended with, are kept so too (not answered).
    pub fn refuse_unframeable(mut self) -> Self {
        self.grammar = Grammar::Rfc9112;
        self
    }

    /// Listens on `addr` inside `netns` (listening when this returns).
    pub fn start(self, netns: &Netns, addr: SocketAddr) -> Result<Server> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        self.serve(listener)
    }

    /// Listens on `addr` in this process's namespace (port 0: any free
    /// port, [`Server::addr`] says which).
    pub fn listen(self, addr: SocketAddr) -> Result<Server> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        self.serve(listener)
    }

    fn serve(self, listener: TcpListener) -> Result<Server> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(self.into_shared());
        let accepting = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("http {addr}"))
            .spawn(move || accept_loop(listener, &accepting))
            .expect("spawning a thread");
        Ok(Server {
            addr,
            shared,
            thread: Some(thread),
        })
    }
}

impl Builder {
    fn into_shared(self) -> Shared {
        Shared {
            answer: self.answer,
            delay: self.delay,
            grammar: self.grammar,
            stop: AtomicBool::new(false),
            halt: AtomicBool::new(false),
            held: AtomicBool::new(false),
            log: Mutex::default(),
            framed: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            continues: AtomicUsize::new(0),
        }
    }
}

/// What all the server's threads share.
struct Shared {
    answer: Box<Answer>,
    delay: Duration,
    grammar: Grammar,
    /// Stop accepting.
    stop: AtomicBool,
    /// End every connection now.
    halt: AtomicBool,
    /// Answers are held back.
    held: AtomicBool,
    log: Mutex<Log>,
    framed: AtomicUsize,
    answered: AtomicUsize,
    continues: AtomicUsize,
}

#[derive(Default)]
struct Log {
    received: Received,
    arrivals: Vec<Arrival>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn halted(&self) -> bool {
        self.halt.load(Ordering::Acquire)
    }

    /// Waits out the delay and the gate; false if the server halted.
    fn wait_to_answer(&self, read_at: Instant) -> bool {
        let until = read_at + self.delay;
        loop {
            if self.halted() {
                return false;
            }
            let now = Instant::now();
            if now >= until && !self.held.load(Ordering::Acquire) {
                return true;
            }
            std::thread::sleep(
                until
                    .saturating_duration_since(now)
                    .clamp(Duration::from_millis(1), Duration::from_millis(5)),
            );
        }
    }
}

/// See the [module](self).
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Server {
    /// A server to configure: answers [`Reply::ok`] at once unless told
    /// otherwise.
    pub fn builder() -> Builder {
        Builder {
            answer: Box::new(Reply::ok),
            delay: Duration::ZERO,
            grammar: Grammar::Framing,
        }
    }

    /// A server answering `200 ok` to everything, on `addr` in `netns`.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        Self::builder().start(netns, addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests the server has framed so far.
    pub fn request_count(&self) -> usize {
        self.shared.framed.load(Ordering::Acquire)
    }

    /// How many replies with bytes it has written so far.
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::Acquire)
    }

    /// How many `100 Continue` it has sent so far.
    pub fn continues(&self) -> usize {
        self.shared.continues.load(Ordering::Acquire)
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.log().received.connections.len()
    }

    /// Every request so far, in arrival order, as it came.
    pub fn log(&self) -> Vec<Arrival> {
        self.shared.log().arrivals.clone()
    }

    /// The log from its `from`th arrival on.
    pub fn log_since(&self, from: usize) -> Vec<Arrival> {
        let log = self.shared.log();
        log.arrivals.get(from..).unwrap_or_default().to_vec()
    }

    /// What came so far, by connection.
    pub fn received(&self) -> Received {
        self.shared.log().received.clone()
    }

    /// From now on requests are read and logged but not answered.
    pub fn hold_answers(&self) {
        self.shared.held.store(true, Ordering::Release);
    }

    /// Answers what is held, and every request from now on.
    pub fn release_answers(&self) {
        self.shared.held.store(false, Ordering::Release);
    }

    /// Stops accepting (connections already queued are still served) and
    /// waits until every connection has ended, that is until each client
    /// closed its side; fails if a request could not be framed or a
    /// connection broke. Call it once the clients are done.
    pub fn stop(mut self) -> Result<Received> {
        self.shared.stop.store(true, Ordering::Release);
        self.join()?;
        Ok(self.received())
    }

    /// [`Server::stop`], returning the whole log instead (refused arrivals
    /// included, those the connections ended with too).
    pub fn stop_log(mut self) -> Result<Vec<Arrival>> {
        self.shared.stop.store(true, Ordering::Release);
        self.join()?;
        Ok(self.log())
    }

    /// Stops accepting and answering, ends every connection now; returns
    /// what came, whatever broke.
    pub fn halt(mut self) -> Received {
        self.shared.halt.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.join();
        self.received()
    }

    fn join(&mut self) -> Result<()> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.halt.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
    }
}

type ConnectionThread = JoinHandle<Result<()>>;

fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) -> Result<()> {
    let mut threads: Vec<ConnectionThread> = Vec::new();
    loop {
        // Read the flag before emptying the queue: a connection the client
        // completed before stop() is in the queue by then.
        let stopping = shared.stop.load(Ordering::Acquire);
        loop {
            match listener.accept() {
                Ok((stream, client)) => threads.push(spawn_connection(stream, client, shared)?),
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
    let mut first_error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn spawn_connection(
    stream: TcpStream,
    client: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<ConnectionThread> {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit.
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_SLICE))?;
    stream.set_write_timeout(Some(crate::tcp::IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let index = {
        let mut log = shared.log();
        log.received.connections.push(ServerConnection {
            client,
            requests: Vec::new(),
        });
        log.received.connections.len() - 1
    };
    let shared = Arc::clone(shared);
    Ok(std::thread::Builder::new()
        .name(format!("http {client}"))
        .spawn(move || {
            let mut conn = Conn::new(stream, &shared.halt);
            let result = serve_or_refuse(&mut conn, &shared, index);
            if let Ok(Then::Reset) = result {
                rustix::net::sockopt::set_socket_linger(&conn.stream, Some(Duration::ZERO))?;
            }
            result.map(drop).with_context(|| {
                let requests = shared.log().received.connections[index].requests.len();
                format!("connection from {client}, after {requests} requests")
            })
        })
        .expect("spawning a thread"))
}

/// [`serve`]; under [`Grammar::Rfc9112`] a connection that fails ends
/// with what it could not frame refused.
fn serve_or_refuse<T: Socket>(
    conn: &mut Conn<'_, T>,
    shared: &Shared,
    index: usize,
) -> Result<Then> {
    match serve(conn, shared, index) {
        Err(why) if shared.grammar == Grammar::Rfc9112 => {
            refuse(conn, shared, index, &why);
            Ok(Then::Close)
        }
        result => result,
    }
}

/// Keeps what `conn` could not frame as a refused arrival and answers
/// it 400 (the client may be gone: then nobody reads it).
fn refuse<T: Socket>(conn: &mut Conn<'_, T>, shared: &Shared, index: usize, why: &anyhow::Error) {
    let wire = conn.unframed();
    if wire.is_empty() {
        return;
    }
    shared.log().arrivals.push(Arrival {
        at: Instant::now(),
        connection: index,
        wire,
        request: Err(format!("{why:#}")),
    });
    let _ = conn.stream.write_all(BAD_REQUEST);
}

/// Serves one connection until the client closes it, a request or a
/// reply ends it, or the server halts; returns how it ended.
fn serve<T: Socket>(conn: &mut Conn<'_, T>, shared: &Shared, index: usize) -> Result<Then> {
    loop {
        conn.begin();
        let Some(head_len) = conn.head_len()? else {
            return Ok(Then::Follow); // the client closed between requests
        };
        let head = conn.take(head_len);
        let info = head_info(&head, shared.grammar)?;
        if info.expect_continue && !info.http10 && info.framing != Framing::None {
            conn.stream.write_all(CONTINUE)?;
            shared.continues.fetch_add(1, Ordering::AcqRel);
        }
        let mut request = ReceivedRequest {
            head,
            body: Vec::new(),
            chunked: info.framing == Framing::Chunked,
            trailers: Vec::new(),
        };
        match info.framing {
            Framing::None => {}
            Framing::Length(len) => request.body = conn.take_exact(usize::try_from(len)?)?,
            Framing::Chunked => conn.chunked_body(&mut request, shared.grammar)?,
        }
        let at = Instant::now();
        let reply = (shared.answer)(&request);
        let keep_alive = request.keep_alive();
        {
            let mut log = shared.log();
            let wire = conn.wire();
            log.arrivals.push(Arrival {
                at,
                connection: index,
                wire,
                request: Ok(request.clone()),
            });
            log.received.connections[index].requests.push(request);
        }
        shared.framed.fetch_add(1, Ordering::AcqRel);
        if !shared.wait_to_answer(at) {
            return Ok(Then::Silence);
        }
        if !reply.bytes.is_empty() {
            conn.stream.write_all(&reply.bytes)?;
            shared.answered.fetch_add(1, Ordering::AcqRel);
        }
        match reply.then {
            Then::Follow if keep_alive => {}
            Then::KeepOpen => {}
            Then::Follow | Then::Close => {
                // Close our side, then wait for the client's FIN so that
                // stop() returns only once it went past the capture.
                conn.stream.shutdown_write()?;
                let extra = conn.rest(shared.grammar == Grammar::Rfc9112)?;
                ensure!(
                    extra == 0,
                    "{extra} bytes arrived after a request that closed the connection"
                );
                return Ok(Then::Close);
            }
            Then::Reset => return Ok(Then::Reset),
            Then::Silence => {
                conn.rest(false)?;
                return Ok(Then::Silence);
            }
        }
    }
}

#[cfg(test)]
mod tests;
