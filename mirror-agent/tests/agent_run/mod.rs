//! The agent's `replay` and `record` as processes, for the tests that stop
//! them: `.gor` files written here, local targets that answer or never
//! do, signals, and every wait bounded by a deadline (a test that hangs
//! kills the agent and fails instead).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One hour, in nanoseconds.
pub const HOUR_NS: i64 = 3_600_000_000_000;

/// A recording start time (Unix ns): 2023-11-14.
pub const T0: i64 = 1_700_000_000_000_000_000;

/// A `.gor` file of GET requests, each `(timestamp_ns, path)`.
pub fn gor(requests: &[(i64, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (ts, path)) in requests.iter().enumerate() {
        out.extend_from_slice(format!("1 {i:024x} {ts} -1\n").as_bytes());
        out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: v1\r\n\r\n").as_bytes());
        out.extend_from_slice("\n🐵🙈🙉\n".as_bytes());
    }
    out
}

/// A local target; `seen` counts the request heads it read.
pub struct Target {
    pub url: String,
    pub seen: Arc<AtomicUsize>,
}

/// A target that answers `200 OK` to every request, or with
/// `answers == false` reads them and never answers.
pub fn target(answers: bool) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let seen = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        seen.fetch_add(1, Relaxed);
                        if answers
                            && stream
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    Target {
        url: format!("http://{addr}"),
        seen,
    }
}

/// Waits until `done` holds, at most `limit`; whether it did.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A running agent; its outputs collected as they come.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub started: Instant,
}

/// How a run ended.
pub struct Ended {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From the start of the process.
    pub elapsed: Duration,
}

impl Ended {
    /// Both outputs, for an assertion's message.
    pub fn shown(&self) -> String {
        format!(
            "status {}\nstdout:\n{}stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn collect(
    mut from: impl Read + Send + 'static,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let to = Arc::clone(&text);
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(&mut from);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            to.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    (text, reader)
}

impl Running {
    pub fn start(command: &mut Command) -> Running {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent starts");
        let (stdout, out) = collect(child.stdout.take().unwrap());
        let (stderr, err) = collect(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
            readers: vec![out, err],
            started,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for `text` in the logs (stderr), at most `limit`.
    pub fn wait_log(&self, text: &str, limit: Duration) {
        assert!(
            wait_until(limit, || self.stderr().contains(text)),
            "no `{text}` in the logs within {limit:?}:\n{}",
            self.stderr()
        );
    }

    /// Sends `signal` (libc's number) to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of our own child.
        let sent = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(sent, 0, "kill failed");
    }

    /// Whether the agent still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the agent's end, at most `limit`: past it the agent is
    /// killed and the test fails.
    pub fn end_within(mut self, limit: Duration) -> Ended {
        let ended = wait_until(limit, || self.child.try_wait().unwrap().is_some());
        if !ended {
            let _ = self.child.kill();
        }
        let status = self.child.wait().unwrap();
        let elapsed = self.started.elapsed();
        // What the pipes still hold once the process is gone.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let run = Ended {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
            elapsed,
        };
        assert!(
            ended,
            "still running after {limit:?}, killed:\n{}",
            run.shown()
        );
        run
    }
}
