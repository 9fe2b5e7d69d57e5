//! HTTP load at a fixed rate, for tests that judge what a given rate costs:
//! client threads, each on one keep-alive connection, send requests on a
//! schedule (request n of a connection leaves at `start + n × interval`)
//! and wait for each answer. A connection that falls behind by more than
//! an interval gives up the requests it missed rather than catch up in a
//! burst: the rate is at most the one asked for, and
//! [`PacedLoad::answered`] says what came of it. Every answer must be a 200
//! (see [`crate::Load`], which paces by pauses instead).

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

/// Clients sending until [`PacedLoad::stop`]; dropped without it (a failed
/// test), they stop after their current request.
pub struct PacedLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Result<u64>>>,
}

impl PacedLoad {
    /// `rate` requests a second in all, from `netns` to `addr` over
    /// `connections` connections (connected when this returns).
    pub fn start(netns: &Netns, addr: SocketAddr, connections: usize, rate: u32) -> Result<Self> {
        ensure!(
            connections > 0 && rate > 0,
            "no load: {connections} × {rate}"
        );
        let interval = Duration::from_secs_f64(connections as f64 / f64::from(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let clients = (0..connections)
            .map(|_| HttpClient::connect(netns, addr))
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        let threads = clients
            .into_iter()
            .enumerate()
            .map(|(connection, mut client)| {
                let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
                // The connections take turns within an interval.
                let first = start + interval.mul_f64(connection as f64 / connections as f64);
                std::thread::Builder::new()
                    .name(format!("paced {connection}"))
                    .spawn(move || -> Result<u64> {
                        let mut sent = 0u64;
                        let mut due = first;
                        while !stop.load(Ordering::Acquire) {
                            let now = Instant::now();
                            match due.checked_duration_since(now) {
                                Some(wait) => std::thread::sleep(wait),
                                None if now - due > interval => due = now,
                                None => {}
                            }
                            due += interval;
                            let request = format!(
                                "GET /paced/{connection}/{sent} HTTP/1.1\r\nHost: primary\r\n\
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
                        }
                        client.close()?;
                        Ok(sent)
                    })
                    .expect("spawning a thread")
            })
            .collect();
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

    /// Fails if a client stopped (its request failed) before
    /// [`PacedLoad::stop`].
    pub fn check_running(&self) -> Result<()> {
        if self.threads.iter().any(JoinHandle::is_finished) {
            bail!("a paced client stopped early, after {}", self.answered());
        }
        Ok(())
    }

    /// Stops the clients and closes their connections (the server has
    /// seen every request and FIN when this returns); returns how many
    /// requests were answered. Fails if any was not answered 200.
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

impl Drop for PacedLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
