//! A fixed-rate, open-loop HTTP/1.1 load generator (what wrk2 or hey would
//! do, neither of which Debian ships).
//!
//! Request `k` is due at `start + k / rate`, whatever happened to the ones
//! before it: its latency runs from that due time to the last byte of its
//! response, so a stalled server is charged for every request it kept
//! waiting (no coordinated omission). Requests go out on a fixed set of
//! keep-alive connections, taken in turn (FIFO, so that every connection
//! carries traffic); a request due while every connection is busy waits
//! in a backlog and its wait counts.
//!
//! One thread, pinned to one CPU and moved into the client's network
//! namespace (setns), drives every connection with epoll; a timerfd wakes it
//! at the next due time with the timer slack set to 1 ns, so the schedule is
//! kept to a few microseconds rather than the millisecond of a runtime's
//! timer wheel.

use std::{
    collections::VecDeque,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use hdrhistogram::Histogram;
use mirror_testkit::Netns;

/// What to send, how fast, from where.
#[derive(Clone, Debug)]
pub struct Plan {
    pub cpu: usize,
    pub addr: SocketAddr,
    pub rate: u32,
    pub duration: Duration,
    /// Requests of the first `warmup` are sent but not measured.
    pub warmup: Duration,
    pub connections: usize,
    /// The whole request, head and body.
    pub request: Vec<u8>,
}

/// What came back.
pub struct Outcome {
    /// Requests answered (2xx to 5xx), warm-up included.
    pub completed: u64,
    /// Requests without a response, or answered with a status >= 400.
    pub errors: u64,
    /// Answered requests per second over the measured window.
    pub rate: f64,
    /// Latencies (ns) of the measured requests, from their due time.
    pub latency: Histogram<u64>,
    /// Largest backlog of requests due while every connection was busy.
    pub max_backlog: usize,
    pub reconnects: u64,
    /// CPU time of the generator's thread over the schedule, seconds: what
    /// a minimal client doing the same exchange costs on this machine.
    pub cpu_seconds: f64,
}

/// Runs `plan` on a thread of its own inside `client` (the client's
/// network namespace) and returns its outcome.
pub fn run(client: &Netns, plan: &Plan) -> Result<Outcome> {
    let plan = plan.clone();
    client
        .spawn(move || {
            pin_thread(plan.cpu, "the load generator")?;
            Generator::new(&plan)?.run(&plan)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
}

/// The calling thread only (`who` names it in the error): onto `cpu`, with
/// precise timers (no slack, as the agent's timerfd has none).
pub(super) fn pin_thread(cpu: usize, who: &str) -> Result<()> {
    // SAFETY: plain syscalls on a local cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            bail!(
                "cannot pin {who} to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    Ok(())
}

/// User + system CPU time of the calling thread.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: a local rusage filled by the kernel.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(usage.ru_utime) + t(usage.ru_stime)
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(super) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Where a connection is with its request.
struct Conn {
    stream: TcpStream,
    /// Due time of the request in flight, if any.
    due: Option<u64>,
    /// Bytes of the request written so far.
    written: usize,
    /// Response bytes read and not yet consumed.
    buf: Vec<u8>,
    /// Interested in writability (a write was cut short).
    want_out: bool,
}

struct Generator {
    epoll: OwnedFd,
    timer: OwnedFd,
    conns: Vec<Conn>,
    idle: VecDeque<usize>,
    backlog: VecDeque<u64>,
    in_flight: usize,
    completed: u64,
    errors: u64,
    reconnects: u64,
    max_backlog: usize,
    latency: Histogram<u64>,
    measure_from: u64,
    measured_done: u64,
}

const TIMER_TOKEN: u64 = u64::MAX;

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        bail!("{what}: {}", io::Error::last_os_error());
    }
    Ok(ret)
}

/// A connection to `addr`, no delay, non-blocking (the floor's too).
pub(super) fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl Generator {
    fn new(plan: &Plan) -> Result<Self> {
        ensure!(
            plan.rate > 0 && plan.connections > 0,
            "rate and connections > 0"
        );
        // SAFETY: plain syscalls; the fds are owned right away.
        let (epoll, timer) = unsafe {
            let epoll = check(libc::epoll_create1(libc::EPOLL_CLOEXEC), "epoll_create1")?;
            let epoll = OwnedFd::from_raw_fd(epoll);
            let timer = check(
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                ),
                "timerfd_create",
            )?;
            (epoll, OwnedFd::from_raw_fd(timer))
        };
        let mut generator = Self {
            epoll,
            timer,
            conns: Vec::with_capacity(plan.connections),
            idle: VecDeque::with_capacity(plan.connections),
            backlog: VecDeque::new(),
            in_flight: 0,
            completed: 0,
            errors: 0,
            reconnects: 0,
            max_backlog: 0,
            latency: Histogram::new_with_bounds(1_000, 120_000_000_000, 3)?,
            measure_from: 0,
            measured_done: 0,
        };
        generator.register(generator.timer.as_raw_fd(), TIMER_TOKEN, libc::EPOLLIN)?;
        for i in 0..plan.connections {
            let stream = connect(plan.addr)?;
            generator.register(stream.as_raw_fd(), i as u64, libc::EPOLLIN)?;
            generator.conns.push(Conn {
                stream,
                due: None,
                written: 0,
                buf: Vec::with_capacity(1024),
                want_out: false,
            });
            generator.idle.push_back(i);
        }
        Ok(generator)
    }

    fn register(&self, fd: i32, token: u64, events: i32) -> Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    fn ctl(&self, op: i32, fd: i32, token: u64, events: i32) -> Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: valid fds and event.
        check(
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) },
            "epoll_ctl",
        )?;
        Ok(())
    }

    fn arm(&self, at_ns: u64) -> Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and itimerspec.
        check(
            unsafe {
                libc::timerfd_settime(
                    self.timer.as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            },
            "timerfd_settime",
        )?;
        Ok(())
    }

    fn run(mut self, plan: &Plan) -> Result<Outcome> {
        let interval = 1e9 / plan.rate as f64;
        let total = (plan.duration.as_secs_f64() * plan.rate as f64).round() as u64;
        let warmup = (plan.warmup.as_secs_f64() * plan.rate as f64).round() as u64;
        let start = now_ns() + 10_000_000;
        let due = |k: u64| start + (k as f64 * interval) as u64;
        self.measure_from = due(warmup);
        let end = due(total);
        // Requests still unanswered this long after the last one was due
        // are given up (counted as errors).
        let give_up = end + 10_000_000_000;
        let mut next = 0u64;
        let mut armed = 0u64;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let cpu_before = thread_cpu_seconds();
        loop {
            let now = now_ns();
            while next < total && due(next) <= now {
                let at = due(next);
                next += 1;
                match self.idle.pop_front() {
                    Some(c) => self.send(c, at, plan)?,
                    None => {
                        self.backlog.push_back(at);
                        self.max_backlog = self.max_backlog.max(self.backlog.len());
                    }
                }
            }
            if next == total && self.in_flight == 0 && self.backlog.is_empty() {
                break;
            }
            if now >= give_up {
                self.errors += (self.in_flight + self.backlog.len()) as u64;
                break;
            }
            let wake = if next < total { due(next) } else { give_up };
            if wake != armed {
                self.arm(wake)?;
                armed = wake;
            }
            let Some(n) = epoll_wait(&self.epoll, &mut events)? else {
                continue;
            };
            for event in &events[..n] {
                let token = event.u64;
                if token == TIMER_TOKEN {
                    let mut expirations = 0u64;
                    // SAFETY: reads 8 bytes into a u64 from our timerfd.
                    unsafe {
                        libc::read(
                            self.timer.as_raw_fd(),
                            (&mut expirations as *mut u64).cast(),
                            8,
                        )
                    };
                    // The timer re-arms on the next turn; force it.
                    armed = 0;
                    continue;
                }
                self.on_ready(token as usize, event.events, plan)?;
            }
        }
        let window = (end - self.measure_from) as f64 / 1e9;
        Ok(Outcome {
            completed: self.completed,
            errors: self.errors,
            rate: self.measured_done as f64 / window,
            latency: self.latency,
            max_backlog: self.max_backlog,
            reconnects: self.reconnects,
            cpu_seconds: thread_cpu_seconds() - cpu_before,
        })
    }

    /// Starts the request due at `due` on connection `c`.
    fn send(&mut self, c: usize, due: u64, plan: &Plan) -> Result<()> {
        let conn = &mut self.conns[c];
        conn.due = Some(due);
        conn.written = 0;
        self.in_flight += 1;
        self.write(c, plan)
    }

    fn write(&mut self, c: usize, plan: &Plan) -> Result<()> {
        let conn = &mut self.conns[c];
        while conn.written < plan.request.len() {
            match conn.stream.write(&plan.request[conn.written..]) {
                Ok(0) => return self.broken(c, plan),
                Ok(n) => conn.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if !conn.want_out {
                        conn.want_out = true;
                        let fd = conn.stream.as_raw_fd();
                        self.ctl(
                            libc::EPOLL_CTL_MOD,
                            fd,
                            c as u64,
                            libc::EPOLLIN | libc::EPOLLOUT,
                        )?;
                    }
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.broken(c, plan),
            }
        }
        if conn.want_out {
            conn.want_out = false;
            let fd = conn.stream.as_raw_fd();
            self.ctl(libc::EPOLL_CTL_MOD, fd, c as u64, libc::EPOLLIN)?;
            // A response may have come in full while the body went out.
            self.on_ready(c, libc::EPOLLIN as u32, plan)?;
        }
        Ok(())
    }

    fn on_ready(&mut self, c: usize, events: u32, plan: &Plan) -> Result<()> {
        if events & libc::EPOLLOUT as u32 != 0 && self.conns[c].due.is_some() {
            self.write(c, plan)?;
        }
        if events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
            return Ok(());
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let conn = &mut self.conns[c];
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.broken(c, plan),
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.broken(c, plan),
            }
        }
        // A response that comes while the request is still being written
        // waits for the write to end (the next request must not start in
        // the middle of this one's body).
        while self.conns[c].written == plan.request.len()
            && let Some((status, len)) = parse_response(&self.conns[c].buf)
        {
            self.conns[c].buf.drain(..len);
            let Some(due) = self.conns[c].due.take() else {
                // A response nobody asked for: the connection is confused.
                return self.broken(c, plan);
            };
            self.done(due, status < 400);
            self.next_on(c, plan)?;
        }
        Ok(())
    }

    fn done(&mut self, due: u64, ok: bool) {
        self.in_flight -= 1;
        if ok {
            self.completed += 1;
        } else {
            self.errors += 1;
        }
        if due >= self.measure_from {
            self.measured_done += ok as u64;
            let latency = now_ns().saturating_sub(due).max(1_000);
            let _ = self.latency.record(latency.min(self.latency.high()));
        }
    }

    /// Connection `c` is free: the oldest waiting request, or idle.
    fn next_on(&mut self, c: usize, plan: &Plan) -> Result<()> {
        match self.backlog.pop_front() {
            Some(due) => self.send(c, due, plan),
            None => {
                self.idle.push_back(c);
                Ok(())
            }
        }
    }

    /// The server closed or broke connection `c`: its request (if any) is
    /// an error, and a new connection takes its place.
    fn broken(&mut self, c: usize, plan: &Plan) -> Result<()> {
        if self.conns[c].due.take().is_some() {
            self.in_flight -= 1;
            self.errors += 1;
        }
        let stream = connect(plan.addr)?;
        let fd = self.conns[c].stream.as_raw_fd();
        self.ctl(libc::EPOLL_CTL_DEL, fd, c as u64, 0)?;
        self.register(stream.as_raw_fd(), c as u64, libc::EPOLLIN)?;
        let conn = &mut self.conns[c];
        conn.stream = stream;
        conn.buf.clear();
        conn.want_out = false;
        self.reconnects += 1;
        // Every entry of `idle` is a connection without a request; this
        // one is free again only if it is not already listed.
        if !self.idle.contains(&c) {
            self.next_on(c, plan)?;
        }
        Ok(())
    }
}

/// A complete response at the start of `buf`: its status and length.
/// Content-Length bodies only (what nginx sends for `return`).
pub(super) fn parse_response(buf: &[u8]) -> Option<(u16, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..head_end];
    let status = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    let mut length = 0usize;
    for line in head.split(|b| *b == b'\n') {
        if let Some(colon) = line.iter().position(|b| *b == b':')
            && line[..colon].eq_ignore_ascii_case(b"content-length")
        {
            length = std::str::from_utf8(&line[colon + 1..])
                .ok()?
                .trim()
                .parse()
                .ok()?;
        }
    }
    (buf.len() >= head_end + length).then_some((status, head_end + length))
}

/// `METHOD /PATH HTTP/1.1` with Host, and a body of `body` bytes for POST.
pub fn request(host: &str, path: &str, body: usize) -> Vec<u8> {
    let mut out = if body == 0 {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mirror-bench\r\n\r\n")
            .into_bytes()
    } else {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mirror-bench\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {body}\r\n\r\n"
        )
        .into_bytes()
    };
    out.extend(std::iter::repeat_n(b'x', body));
    out
}

/// Waits up to a second for events on `epoll`: how many, or `None` when a
/// signal interrupted the wait (the caller looks at its clock again).
pub(super) fn epoll_wait(
    epoll: &impl AsRawFd,
    events: &mut [libc::epoll_event],
) -> Result<Option<usize>> {
    // SAFETY: a valid epoll fd, and `events` as its buffer.
    let n = unsafe {
        libc::epoll_wait(
            epoll.as_raw_fd(),
            events.as_mut_ptr(),
            events.len() as i32,
            1000,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(None);
        }
        bail!("epoll_wait: {err}");
    }
    Ok(Some(n as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nv1\n";
        assert_eq!(parse_response(one), Some((200, one.len())));
        assert_eq!(parse_response(&one[..one.len() - 1]), None);
        let two = [&one[..], b"HTTP/1.1 503 x\r\ncontent-length:0\r\n\r\n"].concat();
        assert_eq!(parse_response(&two), Some((200, one.len())));
        assert_eq!(
            parse_response(&two[one.len()..]),
            Some((503, two.len() - one.len()))
        );
    }

    #[test]
    fn requests_carry_their_body() {
        let get = request("v1", "/", 0);
        assert!(get.starts_with(b"GET / HTTP/1.1\r\n") && get.ends_with(b"\r\n\r\n"));
        let post = request("v1", "/up", 1024);
        assert!(post.starts_with(b"POST /up HTTP/1.1\r\n"));
        assert!(post.ends_with(&[b'x'; 1024]));
    }
}
