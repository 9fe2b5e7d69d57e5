//! P6, bodies: many connections each uploading a body to v1 at once, the
//! agent mirroring them to a shadow of the bench's own that checks every
//! byte, and what the agent's memory does meanwhile.
//!
//! The client ([`upload`]) opens every connection first, then writes each
//! request's head and body a slice at a time, connection after
//! connection, so that every body is under way at the same time (what
//! holds memory in a mirror that keeps bodies whole). The bodies are not
//! kept anywhere: each is a pseudo-random stream drawn from a seed
//! ([`Pattern`]) that the request names in `X-Bench-Seed`, so 20 uploads
//! of 1 GB cost the client a few KB, and the shadow ([`Checker`])
//! regenerates the stream from the same seed and compares as it reads:
//! per request, the bytes it got and whether they were the client's,
//! byte for byte (Content-Length or chunked). v1 (the bench's nginx, in
//! `/p6/`) answers at once and discards the body.
//!
//! A slow shadow reads 1 KB/s per connection with a 4 KB receive buffer,
//! so the copies pile up in the agent, not in the kernel: its peak RSS
//! says what a shadow that cannot keep up costs.
//!
//! The rows report what happens (peak RSS, what reached the shadow, what
//! the agent counted as dropped), they do not pass or fail: the goal row
//! P6b in the report judges them.

use std::{
    io::{self, BufRead as _, BufReader, Read, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use mirror_testkit::Netns;

use super::{
    hosts::{CLIENT_CPU, Hosts, PRIMARY_ADDR, PRIMARY_PORT, SHADOW_ADDR, SHADOW_CPU},
    loadgen::{self, parse_response, pin_thread},
    modes::{AgentSettings, Mirror, MirrorStats},
    probe::CpuTimes,
    size_label,
};

/// Where the checking shadow listens, in the first shadow's namespace
/// (beside that host's nginx).
pub const CHECKER_PORT: u16 = 9090;

/// One P6 row: `connections` uploads of `body` bytes each, at once.
#[derive(Clone, Debug)]
pub struct BodyRow {
    pub connections: usize,
    pub body: u64,
    /// The shadow reads 1 KB/s per connection.
    pub slow: bool,
    /// The client gives up after this long (slow rows: the uploads to v1
    /// end long before).
    pub deadline: Duration,
    /// Slow rows: how long the agent is left holding the copies after the
    /// uploads end, before its peak RSS is read.
    pub hold: Duration,
}

impl BodyRow {
    pub fn name(&self) -> String {
        format!(
            "p6{} body={} conns={}",
            if self.slow { " slow-shadow" } else { "" },
            size_label(self.body as usize),
            self.connections
        )
    }
}

/// The rows of a full run (issue 26's P6) and of the quick one (the same
/// code paths, small).
pub fn rows(quick: bool) -> Vec<BodyRow> {
    let row = |connections, body, slow| BodyRow {
        connections,
        body,
        slow,
        deadline: Duration::from_secs(if quick { 30 } else { 600 }),
        hold: Duration::from_secs(if quick { 2 } else { 10 }),
    };
    if quick {
        vec![
            row(200, 100 << 10, false),
            row(2, 32 << 20, false),
            row(20, 100 << 10, true),
        ]
    } else {
        vec![
            row(10_000, 100 << 10, false),
            row(100, 10 << 20, false),
            row(20, 1 << 30, false),
            row(10_000, 100 << 10, true),
        ]
    }
}

/// One row, measured.
#[derive(Clone, Debug)]
pub struct BodyRun {
    pub row: BodyRow,
    pub uploaded: Uploaded,
    /// What the checking shadow got, at the end of the row.
    pub shadow: Tally,
    pub mirror: MirrorStats,
    /// Busy share of each CPU during the uploads, percent.
    pub cpu_busy: Vec<f64>,
}

/// Runs `row`: a checking shadow, a fresh agent mirroring to it, the
/// uploads; then waits for the agent to settle (or `hold` for a slow
/// shadow) and reads its figures.
pub fn run(hosts: &Hosts, agent: &AgentSettings, row: &BodyRow) -> Result<BodyRun> {
    let at: SocketAddr = format!("{}:{CHECKER_PORT}", SHADOW_ADDR[0]).parse()?;
    let checker = Checker::start(&hosts.shadows[0], at, row.slow.then_some(1024))?;
    let mut mirror = Mirror::start_to(hosts, agent, &format!("http://{at}"))?;
    mirror.begin()?;
    let cpu_before = CpuTimes::now();
    let uploaded = upload(
        &hosts.client,
        &Upload {
            addr: format!("{PRIMARY_ADDR}:{PRIMARY_PORT}").parse()?,
            connections: row.connections,
            body: row.body,
            deadline: row.deadline,
        },
    )?;
    let cpu_busy = CpuTimes::now().busy_since(&cpu_before);
    if row.slow {
        std::thread::sleep(row.hold);
    } else {
        mirror.settle(hosts)?;
        checker.settle(Duration::from_secs(30));
    }
    let shadow = checker.tally();
    let stats = mirror.finish(hosts)?;
    checker.stop();
    Ok(BodyRun {
        row: row.clone(),
        uploaded,
        shadow,
        mirror: stats,
        cpu_busy,
    })
}

// ---------------------------------------------------------------------------
// the bodies
// ---------------------------------------------------------------------------

/// A reproducible stream of bytes from a seed (xorshift64*): the client
/// writes it, the shadow regenerates it to compare, neither keeps it.
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    /// Bytes of `word` already handed out.
    used: usize,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Self {
            // Never 0 (xorshift's fixed point); seeds 1, 2, 3 far apart.
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            word: [0; 8],
            used: 8,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
    }

    /// The next `out.len()` bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while self.used < 8 && i < out.len() {
            out[i] = self.word[self.used];
            self.used += 1;
            i += 1;
        }
        let mut words = out[i..].chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_word());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            self.word = self.next_word();
            let n = rest.len();
            rest.copy_from_slice(&self.word[..n]);
            self.used = n;
        }
    }
}

// ---------------------------------------------------------------------------
// the client
// ---------------------------------------------------------------------------

/// What to upload.
#[derive(Clone, Debug)]
pub struct Upload {
    pub addr: SocketAddr,
    pub connections: usize,
    pub body: u64,
    pub deadline: Duration,
}

/// What the uploads did.
#[derive(Clone, Debug, Default)]
pub struct Uploaded {
    /// Requests whose body went out in full and that v1 answered < 400.
    pub completed: u64,
    /// The others: refused, reset, answered >= 400, or past the deadline.
    pub errors: u64,
    /// Body bytes written.
    pub bytes: u64,
    /// From the first byte to the last answer.
    pub seconds: f64,
}

/// A write of at most this much per connection per turn: every upload
/// advances together.
const SLICE: usize = 32 << 10;

struct Conn {
    stream: Option<TcpStream>,
    head: Vec<u8>,
    pattern: Pattern,
    body_left: u64,
    /// Generated bytes a short write left behind (written first next).
    pending: Vec<u8>,
    response: Vec<u8>,
    answered: Option<u16>,
}

/// Runs the uploads on a thread of their own in `client`, pinned to the
/// client's CPU.
pub fn upload(client: &Netns, plan: &Upload) -> Result<Uploaded> {
    let plan = plan.clone();
    client
        .spawn(move || {
            pin_thread(CLIENT_CPU, "the uploads")?;
            upload_here(&plan)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the uploads panicked"))?
}

fn upload_here(plan: &Upload) -> Result<Uploaded> {
    // SAFETY: epoll_create1 has no preconditions; the fd is owned at once.
    let epoll = unsafe {
        let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if fd < 0 {
            bail!("epoll_create1: {}", io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let ctl = |op, fd, token: usize, events: i32| -> Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token as u64,
        };
        // SAFETY: valid fds and event.
        if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) } < 0 {
            bail!("epoll_ctl: {}", io::Error::last_os_error());
        }
        Ok(())
    };
    let mut conns = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let stream = loadgen::connect(plan.addr)?;
        ctl(
            libc::EPOLL_CTL_ADD,
            stream.as_raw_fd(),
            i,
            libc::EPOLLIN | libc::EPOLLOUT,
        )?;
        let seed = i as u64 + 1;
        conns.push(Conn {
            stream: Some(stream),
            head: format!(
                "POST /p6/{i} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mirror-bench\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
                 X-Bench-Seed: {seed}\r\nX-Bench-Length: {}\r\n\r\n",
                plan.addr.ip(),
                plan.body,
                plan.body
            )
            .into_bytes(),
            pattern: Pattern::new(seed),
            body_left: plan.body,
            pending: Vec::new(),
            response: Vec::new(),
            answered: None,
        });
    }
    let mut out = Uploaded::default();
    let mut open = plan.connections;
    let mut scratch = vec![0u8; SLICE];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let started = Instant::now();
    while open > 0 {
        if started.elapsed() > plan.deadline {
            out.errors += open as u64;
            break;
        }
        let Some(n) = super::loadgen::epoll_wait(&epoll, &mut events)? else {
            continue;
        };
        for event in &events[..n] {
            let c = &mut conns[event.u64 as usize];
            let Some(stream) = c.stream.as_mut() else {
                continue;
            };
            let mut failed = false;
            let writing = !c.head.is_empty() || c.body_left > 0 || !c.pending.is_empty();
            if writing && event.events & libc::EPOLLOUT as u32 != 0 {
                // One slice: the head, what a short write left, or the
                // next bytes of the body.
                let (buf, generated): (&[u8], bool) = if !c.head.is_empty() {
                    (&c.head, false)
                } else if !c.pending.is_empty() {
                    (&c.pending, false)
                } else {
                    let k = (c.body_left as usize).min(SLICE);
                    c.pattern.fill(&mut scratch[..k]);
                    c.body_left -= k as u64;
                    (&scratch[..k], true)
                };
                match stream.write(buf) {
                    Ok(w) => {
                        let rest = buf[w..].to_vec();
                        if !c.head.is_empty() {
                            c.head = rest;
                        } else {
                            out.bytes += w as u64;
                            if generated || !rest.is_empty() {
                                c.pending = rest;
                            } else {
                                c.pending.clear();
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if generated {
                            c.pending = buf.to_vec();
                        }
                    }
                    Err(_) => failed = true,
                }
                if !failed && c.head.is_empty() && c.body_left == 0 && c.pending.is_empty() {
                    ctl(
                        libc::EPOLL_CTL_MOD,
                        stream.as_raw_fd(),
                        event.u64 as usize,
                        libc::EPOLLIN,
                    )?;
                }
            }
            if !failed
                && event.events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0
            {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) => failed = true,
                    Ok(k) => {
                        c.response.extend_from_slice(&chunk[..k]);
                        if let Some((status, _)) = parse_response(&c.response) {
                            c.answered = Some(status);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => failed = true,
                }
            }
            let sent = c.head.is_empty() && c.body_left == 0 && c.pending.is_empty();
            let done = failed || (sent && c.answered.is_some());
            if done {
                if !failed && c.answered.is_some_and(|s| s < 400) {
                    out.completed += 1;
                } else {
                    out.errors += 1;
                }
                // Closing the socket takes it out of the epoll set.
                c.stream = None;
                c.response = Vec::new();
                open -= 1;
            }
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

// ---------------------------------------------------------------------------
// the checking shadow
// ---------------------------------------------------------------------------

/// What the checking shadow got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests whose body it read to the end (and answered 200).
    pub requests: u64,
    /// Of those, bodies that were the client's, byte for byte and whole.
    pub exact: u64,
    /// Of those, bodies that differ from the client's (bytes or length).
    pub wrong: u64,
    /// Requests whose connection ended before their body did.
    pub cut: u64,
    /// Body bytes read.
    pub bytes: u64,
}

/// An HTTP/1.1 server that reads each request's body against its seed's
/// [`Pattern`] and answers `200` with no body.
pub struct Checker {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    /// Listens on `at` in `ns`; `read_rate`: bytes per second each
    /// connection reads (a slow shadow), None for as fast as it comes.
    pub fn start(ns: &Netns, at: SocketAddr, read_rate: Option<usize>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (ready, listening) = std::sync::mpsc::channel();
        let thread = {
            let (stop, tally) = (stop.clone(), tally.clone());
            ns.spawn(move || {
                let _ = pin_thread(SHADOW_CPU, "the checking shadow");
                let listener = match listen(at, read_rate.is_some()) {
                    Ok(l) => {
                        let _ = ready.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                accept_loop(&listener, &stop, &tally, read_rate);
            })
        };
        listening
            .recv_timeout(Duration::from_secs(10))
            .context("the checking shadow did not start")??;
        Ok(Self {
            stop,
            tally,
            thread: Some(thread),
        })
    }

    pub fn tally(&self) -> Tally {
        *self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the requests it has read stop changing for a second
    /// (at most `limit`).
    pub fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.tally();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.tally();
            if now == last {
                return;
            }
            last = now;
        }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.halt();
    }
}

fn listen(at: SocketAddr, small_buffer: bool) -> Result<TcpListener> {
    let listener = TcpListener::bind(at).with_context(|| format!("binding {at}"))?;
    if small_buffer {
        // Accepted connections inherit it (and no autotuning): what the
        // slow shadow does not read stays with the sender.
        let size: libc::c_int = 4096;
        // SAFETY: a valid socket and a c_int option value.
        unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    // Thousands of connections arrive at once: a backlog for them (std
    // listens with 128; the kernel caps this at somaxconn).
    // SAFETY: listen() again on a listening socket only sets its backlog.
    unsafe {
        libc::listen(listener.as_raw_fd(), 65_535);
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn accept_loop(
    listener: &TcpListener,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Mutex<Tally>>,
    read_rate: Option<usize>,
) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (stop, tally) = (stop.clone(), tally.clone());
                connections.push(std::thread::spawn(move || {
                    let _ = pin_thread(SHADOW_CPU, "the checking shadow");
                    let _ = serve(stream, &stop, &tally, read_rate);
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for c in connections {
        let _ = c.join();
    }
}

/// A reader that hands out at most `rate` bytes per second.
struct Paced<R> {
    inner: R,
    rate: Option<usize>,
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(rate) = self.rate else {
            return self.inner.read(buf);
        };
        let n = buf.len().min(rate);
        let got = self.inner.read(&mut buf[..n])?;
        if got > 0 {
            std::thread::sleep(Duration::from_secs_f64(got as f64 / rate as f64));
        }
        Ok(got)
    }
}

type Input = BufReader<Paced<TcpStream>>;

/// The next bytes available, waiting for some; empty at the end of the
/// stream or when stopped.
fn more<'a>(input: &'a mut Input, stop: &AtomicBool) -> io::Result<&'a [u8]> {
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(&[]);
        }
        match input.fill_buf() {
            // Re-borrowed: the loop's borrow ends with the match.
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // The agent closing a connection it gave up on: its end.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(&[]),
            Err(e) => return Err(e),
        }
    }
    input.fill_buf()
}

/// One line (up to and with its `\n`); None at the end of the stream.
fn line(input: &mut Input, stop: &AtomicBool) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let avail = more(input, stop)?;
        if avail.is_empty() {
            return Ok(None);
        }
        let (k, end) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        out.extend_from_slice(&avail[..k]);
        input.consume(k);
        if end {
            return Ok(Some(out));
        }
        if out.len() > 64 << 10 {
            return Err(io::Error::other("a line over 64 KB"));
        }
    }
}

/// Reads `n` bytes of body, comparing them with `pattern`; returns the
/// bytes read and whether they all matched.
fn body_part(
    input: &mut Input,
    stop: &AtomicBool,
    mut n: u64,
    pattern: &mut Option<Pattern>,
    scratch: &mut [u8],
) -> io::Result<(u64, bool)> {
    let (mut read, mut same) = (0u64, true);
    while n > 0 {
        let avail = more(input, stop)?;
        if avail.is_empty() {
            break;
        }
        let k = avail.len().min(scratch.len()).min(n as usize);
        match pattern {
            Some(p) => {
                p.fill(&mut scratch[..k]);
                same &= scratch[..k] == avail[..k];
            }
            None => same = false,
        }
        input.consume(k);
        n -= k as u64;
        read += k as u64;
    }
    Ok((read, same && n == 0))
}

fn header<'a>(head: &'a [Vec<u8>], name: &str) -> Option<&'a str> {
    head.iter().find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Serves one connection until it ends or the checker stops.
fn serve(
    stream: TcpStream,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
    read_rate: Option<usize>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut output = stream.try_clone()?;
    let mut input = BufReader::with_capacity(
        64 << 10,
        Paced {
            inner: stream,
            rate: read_rate,
        },
    );
    let mut scratch = vec![0u8; 64 << 10];
    loop {
        let mut head = Vec::new();
        loop {
            let Some(l) = line(&mut input, stop)? else {
                return Ok(());
            };
            if l == b"\r\n" || l == b"\n" {
                break;
            }
            head.push(l);
        }
        let mut pattern = header(&head, "x-bench-seed")
            .and_then(|s| s.parse().ok())
            .map(Pattern::new);
        let length: Option<u64> = header(&head, "content-length").and_then(|v| v.parse().ok());
        let chunked = header(&head, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let (mut read, mut same, mut whole) = (0u64, true, true);
        if chunked {
            loop {
                let Some(size) = line(&mut input, stop)? else {
                    whole = false;
                    break;
                };
                let size = std::str::from_utf8(&size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                    .ok_or_else(|| io::Error::other("a bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while let Some(l) = line(&mut input, stop)? {
                        if l == b"\r\n" || l == b"\n" {
                            break;
                        }
                    }
                    break;
                }
                let (r, s) = body_part(&mut input, stop, size, &mut pattern, &mut scratch)?;
                read += r;
                same &= s;
                if r < size || line(&mut input, stop)?.is_none() {
                    whole = false;
                    break;
                }
            }
        } else if let Some(n) = length {
            let (r, s) = body_part(&mut input, stop, n, &mut pattern, &mut scratch)?;
            read = r;
            same = s;
            whole = r == n;
        }
        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
        t.bytes += read;
        if !whole {
            t.cut += 1;
            return Ok(());
        }
        t.requests += 1;
        // The client's length: Content-Length as it sent it (a chunked
        // copy must add up to it).
        let sent_length: Option<u64> = header(&head, "x-bench-length")
            .and_then(|v| v.parse().ok())
            .or(length);
        if same && pattern.is_some() && sent_length.is_none_or(|l| l == read) {
            t.exact += 1;
        } else {
            t.wrong += 1;
        }
        drop(t);
        output.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_the_same_stream_whatever_the_pieces() {
        let mut whole = vec![0u8; 1000];
        Pattern::new(7).fill(&mut whole);
        let mut pieces = Vec::new();
        let mut p = Pattern::new(7);
        for size in [1, 7, 8, 3, 100, 0, 13, 868] {
            let mut part = vec![0u8; size];
            p.fill(&mut part);
            pieces.extend(part);
        }
        assert_eq!(pieces, whole);
        let mut other = vec![0u8; 1000];
        Pattern::new(8).fill(&mut other);
        assert_ne!(other, whole);
    }

    /// The checker over a real socket: a body sent in Content-Length and
    /// one chunked are exact; one byte changed is wrong; a connection
    /// that ends mid-body is cut.
    #[test]
    fn the_checker_tells_exact_from_wrong_and_cut() {
        let stop = AtomicBool::new(false);
        let tally = Mutex::new(Tally::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = |seed| {
            let mut b = vec![0u8; 100_000];
            Pattern::new(seed).fill(&mut b);
            b
        };
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let head = |seed, extra: &str| {
                format!("POST / HTTP/1.1\r\nX-Bench-Seed: {seed}\r\n{extra}\r\n").into_bytes()
            };
            s.write_all(&head(1, "Content-Length: 100000\r\n")).unwrap();
            s.write_all(&body(1)).unwrap();
            let chunked = body(2);
            s.write_all(&head(
                2,
                "Transfer-Encoding: chunked\r\nX-Bench-Length: 100000\r\n",
            ))
            .unwrap();
            for part in chunked.chunks(30_000) {
                s.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .unwrap();
                s.write_all(part).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
            let mut bad = body(3);
            bad[50_000] ^= 1;
            s.write_all(&head(3, "Content-Length: 100000\r\n")).unwrap();
            s.write_all(&bad).unwrap();
            s.write_all(&head(4, "Content-Length: 100000\r\n")).unwrap();
            s.write_all(&body(4)[..10]).unwrap();
            // Read the answers before closing (unread, they would turn
            // the close into a reset that loses what the checker has not
            // read yet).
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answers = String::new();
            s.read_to_string(&mut answers).unwrap();
            assert_eq!(answers.matches("200 OK").count(), 3);
        });
        let (stream, _) = listener.accept().unwrap();
        serve(stream, &stop, &tally, None).unwrap();
        client.join().unwrap();
        let t = *tally.lock().unwrap();
        assert_eq!((t.requests, t.exact, t.wrong, t.cut), (3, 2, 1, 1));
        assert_eq!(t.bytes, 300_010);
    }
}
