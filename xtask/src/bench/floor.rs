//! The floor (`floor-1`): the least a mirror built like the agent pays per
//! request on this machine.
//!
//! A thread pinned where the agent runs (v1's CPU, in v1's namespace) does
//! only what no such mirror can skip: on a 1 ms tick (the agent's clock) it
//! reads the responses that came since the last tick, then writes each
//! request due at the scenario's rate to the first shadow, one request per
//! keep-alive connection at a time, as the agent sends them. No capture, no
//! parsing beyond finding a response's end, no runtime. Its CPU time per
//! request, beside `replay-1`'s, splits the agent's cost into what this
//! machine charges for the exchange itself (the TCP send through the veth,
//! the receive work, the wakeups) and what the agent adds to it.
//!
//! Measured on the 2-core VM (2026-12-01, `cargo xtask bench --mode
//! replay-1 --mode floor-1 --only '2k-rps body=0 conns=10 '`): at 2k req/s
//! the floor costs 39–57 µs per request and the agent 47–56; sending each
//! tick's requests pipelined on one connection (one write, one read) cost
//! the floor about the same (40–43 µs): the tick's wakeup and the kernel's
//! work around each packet on this VM are the cost, not the syscalls.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use super::loadgen::{self, now_ns, pin_thread};
use anyhow::{Context as _, Result, bail};
use mirror_testkit::Netns;

/// The agent's tick (`capture::DRAIN_INTERVAL`).
const TICK: Duration = Duration::from_millis(1);

/// What the floor sends, how fast, from where.
pub struct Plan {
    pub cpu: usize,
    pub shadow: SocketAddr,
    pub rate: u32,
    pub connections: usize,
    pub request: Vec<u8>,
}

/// The floor's thread, running until dropped.
pub struct Floor {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    tid: u32,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Floor {
    /// Starts sending once every connection is up.
    pub fn start(primary: &Netns, plan: Plan) -> Result<Floor> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = primary.spawn({
            let stop = stop.clone();
            let sent = sent.clone();
            move || -> Result<()> {
                let setup = Sender::new(&plan);
                // SAFETY: gettid has no arguments and cannot fail.
                let tid = unsafe { libc::gettid() } as u32;
                let mut sender = match setup {
                    Ok(sender) => {
                        let _ = ready_tx.send(Ok(tid));
                        sender
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(format!("{err:#}")));
                        return Err(err);
                    }
                };
                sender.run(&plan, &stop, &sent)
            }
        });
        let tid = match ready_rx.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(err)) => bail!("the floor could not start: {err}"),
            Err(_) => bail!("the floor's thread ended before starting"),
        };
        Ok(Floor {
            stop,
            sent,
            tid,
            thread: Some(thread),
        })
    }

    /// The thread's id, for its CPU time and wakeups in /proc.
    pub fn tid(&self) -> u32 {
        self.tid
    }

    /// Requests written so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the thread; its error, if it failed.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the floor's thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// A request is out and its response not read whole.
    awaiting: bool,
    buf: Vec<u8>,
}

struct Sender {
    timer: OwnedFd,
    conns: Vec<Conn>,
}

impl Sender {
    fn new(plan: &Plan) -> Result<Self> {
        pin_thread(plan.cpu, "the floor")?;
        let conns = (0..plan.connections)
            .map(|_| {
                Ok(Conn {
                    stream: connect(plan.shadow)?,
                    awaiting: false,
                    buf: Vec::with_capacity(4096),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: a plain syscall; the fd is owned right away.
        let timer = unsafe {
            let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
            if fd < 0 {
                bail!("timerfd_create: {}", io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let period = libc::timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        // SAFETY: our own timerfd and a valid itimerspec.
        if unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0
        {
            bail!("timerfd_settime: {}", io::Error::last_os_error());
        }
        Ok(Self { timer, conns })
    }

    fn run(&mut self, plan: &Plan, stop: &AtomicBool, sent: &AtomicU64) -> Result<()> {
        let start = now_ns();
        let mut written = 0u64;
        while !stop.load(Ordering::Relaxed) {
            self.wait_for_tick();
            for conn in &mut self.conns {
                if conn.awaiting {
                    conn.read(plan.shadow)?;
                }
            }
            let due = (now_ns() - start) as u128 * u128::from(plan.rate) / 1_000_000_000;
            let mut free = self.conns.iter_mut().filter(|c| !c.awaiting);
            // Requests due while every connection waits go out on the next
            // ticks, as the agent's queue would send them.
            while u128::from(written) < due {
                let Some(conn) = free.next() else { break };
                conn.stream
                    .write_all(&plan.request)
                    .context("writing to the shadow")?;
                conn.awaiting = true;
                written += 1;
            }
            sent.store(written, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Blocks in read(2) on the timerfd: one syscall per tick.
    fn wait_for_tick(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a u64 from our own timerfd.
        unsafe {
            libc::read(
                self.timer.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl Conn {
    /// Reads what came; the connection is free again once the whole
    /// response is in (a closed one is replaced).
    fn read(&mut self, shadow: SocketAddr) -> Result<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.stream = connect(shadow)?;
                self.buf.clear();
                self.awaiting = false;
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                if let Some(len) = response_len(&self.buf)
                    && self.buf.len() >= len
                {
                    self.buf.drain(..len);
                    self.awaiting = false;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err).context("reading from the shadow"),
        }
        Ok(())
    }
}

/// The length of the response at the start of `buf` (head and a
/// Content-Length body), once its head is in.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let body = std::str::from_utf8(&buf[..head])
        .ok()?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    Some(head + body)
}

/// The load generator's connection (no delay, non-blocking), named as the
/// floor's when it fails.
fn connect(addr: SocketAddr) -> Result<TcpStream> {
    loadgen::connect(addr).context("the floor")
}

#[cfg(test)]
mod tests {
    use super::response_len;

    #[test]
    fn a_response_ends_after_its_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP";
        assert_eq!(response_len(r), Some(r.len() - 4));
        assert_eq!(response_len(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(27));
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
    }
}
