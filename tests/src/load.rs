//! Steady HTTP load on a server from client threads: each keeps one
//! keep-alive connection and sends a request, waits for its answer, pauses,
//! and so on until stopped. Every answer must be a 200: the primary never
//! notices what happens to the agent or the shadows.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use mirror_testkit::{HttpClient, Netns};

/// Clients sending until [`Load::stop`]. Dropped without it (a failed
/// test), the threads stop after their current request.
pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Result<u64>>>,
}

impl Load {
    /// `connections` clients from `netns` to `addr`, each pausing `pause`
    /// between an answer and its next request. Connected when this returns.
    pub fn start(
        netns: &Netns,
        addr: SocketAddr,
        connections: usize,
        pause: Duration,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(connections);
        for connection in 0..connections {
            let mut client = HttpClient::connect(netns, addr)?;
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("load {connection}"))
                    .spawn(move || -> Result<u64> {
                        let mut sent = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            let request = format!(
                                "GET /load/{connection}/{sent} HTTP/1.1\r\nHost: primary\r\n\
                                 User-Agent: mirror-tests\r\n\r\n"
                            );
                            let response =
                                client.request(request.as_bytes()).with_context(|| {
                                    format!("request {sent} of client {connection}")
                                })?;
                            ensure!(
                                response.status == 200,
                                "request {sent} of client {connection}: status {}",
                                response.status
                            );
                            sent += 1;
                            answered.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(pause);
                        }
                        client.close()?;
                        Ok(sent)
                    })
                    .expect("spawning a thread"),
            );
        }
        Ok(Self {
            stop,
            answered,
            threads,
        })
    }

    /// Requests answered so far, all clients together.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests beyond those answered now are answered.
    pub fn wait_more(&self, more: u64, timeout: Duration) -> Result<()> {
        let target = self.answered() + more;
        let deadline = Instant::now() + timeout;
        while self.answered() < target {
            if self.threads.iter().any(JoinHandle::is_finished) {
                bail!("a load client stopped early, after {}", self.answered());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} of {target} requests answered within {timeout:?}",
                    self.answered()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Stops the clients, closes their connections (the server has seen
    /// every request and FIN when this returns) and returns how many
    /// requests were answered. Fails if any request was not answered 200.
    pub fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Release);
        let mut total = 0;
        for thread in self.threads.drain(..) {
            total += match thread.join() {
                Ok(result) => result?,
                Err(panic) => std::panic::resume_unwind(panic),
            };
        }
        Ok(total)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
