//! Steady HTTP load on a server from client threads, each on one
//! keep-alive connection, sending a request and waiting for its answer
//! until stopped. Every answer must be a 200: the primary never notices
//! what happens to the agent or the shadows.
//!
//! Two paces: [`Load::start`] pauses a given time after each answer;
//! [`Load::paced`] keeps a fixed rate, for tests that judge what a rate
//! costs: request n of a connection leaves at `start + n × interval`, and
//! a connection that falls behind by more than an interval gives up the
//! requests it missed rather than catch up in a burst (the rate is at most
//! the one asked for, and [`Load::answered`] says what came of it).

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

/// When a client sends its next request.
#[derive(Clone, Copy)]
enum Pace {
    /// This long after the last answer.
    Pause(Duration),
    /// On a schedule: the first at `first`, then one every `interval`.
    Every { first: Instant, interval: Duration },
}

impl Load {
    /// `connections` clients from `netns` to `addr`, each pausing `pause`
    /// between an answer and its next request (`GET /load/{client}/{n}`).
    /// Connected when this returns.
    pub fn start(
        netns: &Netns,
        addr: SocketAddr,
        connections: usize,
        pause: Duration,
    ) -> Result<Self> {
        Self::run(netns, addr, connections, "load", |_| Pace::Pause(pause))
    }

    /// `rate` requests a second in all, from `netns` to `addr` over
    /// `connections` connections (`GET /paced/{client}/{n}`; connected
    /// when this returns).
    pub fn paced(netns: &Netns, addr: SocketAddr, connections: usize, rate: u32) -> Result<Self> {
        ensure!(
            connections > 0 && rate > 0,
            "no load: {connections} × {rate}"
        );
        let interval = Duration::from_secs_f64(connections as f64 / f64::from(rate));
        let start = Instant::now();
        // The connections take turns within an interval.
        Self::run(netns, addr, connections, "paced", |connection| {
            Pace::Every {
                first: start + interval.mul_f64(connection as f64 / connections as f64),
                interval,
            }
        })
    }

    fn run(
        netns: &Netns,
        addr: SocketAddr,
        connections: usize,
        name: &'static str,
        pace: impl Fn(usize) -> Pace,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let clients = (0..connections)
            .map(|_| HttpClient::connect(netns, addr))
            .collect::<Result<Vec<_>>>()?;
        let threads = clients
            .into_iter()
            .enumerate()
            .map(|(connection, client)| {
                let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
                let pace = pace(connection);
                std::thread::Builder::new()
                    .name(format!("{name} {connection}"))
                    .spawn(move || send(client, name, connection, pace, &stop, &answered))
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
    /// [`Load::stop`].
    pub fn check_running(&self) -> Result<()> {
        if self.threads.iter().any(JoinHandle::is_finished) {
            bail!("a load client stopped early, after {}", self.answered());
        }
        Ok(())
    }

    /// Waits until `more` requests beyond those answered now are answered.
    pub fn wait_more(&self, more: u64, timeout: Duration) -> Result<()> {
        let target = self.answered() + more;
        let deadline = Instant::now() + timeout;
        while self.answered() < target {
            self.check_running()?;
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

/// One client: requests at its pace until stopped; returns how many were
/// answered.
fn send(
    mut client: HttpClient,
    name: &str,
    connection: usize,
    pace: Pace,
    stop: &AtomicBool,
    answered: &AtomicU64,
) -> Result<u64> {
    let mut sent = 0u64;
    let mut due = match pace {
        Pace::Every { first, .. } => first,
        Pace::Pause(_) => Instant::now(),
    };
    while !stop.load(Ordering::Acquire) {
        if let Pace::Every { interval, .. } = pace {
            let now = Instant::now();
            match due.checked_duration_since(now) {
                Some(wait) => std::thread::sleep(wait),
                None if now - due > interval => due = now,
                None => {}
            }
            due += interval;
        }
        let request = format!(
            "GET /{name}/{connection}/{sent} HTTP/1.1\r\nHost: primary\r\n\
             User-Agent: mirror-tests\r\n\r\n"
        );
        let response = client
            .request(request.as_bytes())
            .with_context(|| format!("request {sent} of client {connection}"))?;
        ensure!(
            response.status == 200,
            "request {sent} of client {connection}: status {}",
            response.status
        );
        sent += 1;
        answered.fetch_add(1, Ordering::Relaxed);
        if let Pace::Pause(pause) = pace {
            std::thread::sleep(pause);
        }
    }
    client.close()?;
    Ok(sent)
}
