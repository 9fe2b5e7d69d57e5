//! The addresses of one target: periodic re-resolution of its host name,
//! round-robin over the addresses, setting aside the ones that refuse
//! connections, and a pool of idle keep-alive connections per address.
//!
//! Log events (one per state change, never per request): address added
//! and removed (info), failing (warn) and recovered (info), name resolution
//! failing (warn) and resolving again (info).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{info, warn};

use super::stats::DropReason;
use super::stream::ShadowStream;
use super::tls::TlsClient;
use super::transport::Transport;

/// A boxed future, as [`Resolve`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Turns a target's host name into addresses. The agent uses
/// [`SystemResolver`]; tests plug in their own.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (`getaddrinfo`, through `tokio::net::lookup_host`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// First wait before an address that failed is tried again; it doubles on
/// each failed try, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Failed answers in a row (on connections just made, none answered
/// between) after which an address that answers nothing is set aside: one
/// bad answer is the request's, every answer failing is the address's.
/// Two: until then a shadow that fails every answer gets a connection per
/// request, over the workers' first ones. (A candidate that crashes on
/// one endpoint and fails the first two answers of a burst is set aside
/// only until the first of the others is answered: see `served`.)
const FAILED_ANSWERS_TO_SET_ASIDE: u32 = 2;
/// An address that answered a request this recently is never set aside
/// for its failed answers: the service works, one of its endpoints fails,
/// and each failure is that request's verdict (`failed`), not a reason to
/// stop sending it the rest (invariant 11). Its reconnects stay bounded by
/// the target's connect budget.
const ANSWERED_LATELY: Duration = Duration::from_secs(10);
/// `last_answered_ms` of an address that never answered.
const NEVER: u64 = u64::MAX;

/// An open connection to one address, with its read buffer.
pub(crate) struct Conn {
    pub stream: Transport,
    pub buf: Vec<u8>,
    idle_since: Instant,
}

/// One resolved address of a target.
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
    failing: AtomicBool,
    /// While failing: when (ms since [`Endpoints::epoch`]) it may be tried.
    retry_at_ms: AtomicU64,
    backoff_ms: AtomicU64,
    /// When (ms since [`Endpoints::epoch`]) it was last set aside: a
    /// failure of a request that picked it before then is one the set-aside
    /// already answered.
    aside_at_ms: AtomicU64,
    /// The [`DropReason`] of the last failed connect.
    last_failure: AtomicU8,
    /// Answers that failed on connections just made since one was last
    /// answered (see [`Endpoints::answer_failed`]).
    failed_answers: AtomicU32,
    /// When (ms since [`Endpoints::epoch`]) a request was last answered
    /// here, on any connection; [`NEVER`] before the first.
    last_answered_ms: AtomicU64,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            failing: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(0),
            aside_at_ms: AtomicU64::new(0),
            last_failure: AtomicU8::new(DropReason::ConnectRefused as u8),
            failed_answers: AtomicU32::new(0),
            last_answered_ms: AtomicU64::new(NEVER),
        }
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Relaxed)
    }

    /// An idle connection that is still open, if any.
    pub fn take_idle(&self, idle_timeout: Duration) -> Option<Conn> {
        loop {
            let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if conn.idle_since.elapsed() >= idle_timeout {
                continue;
            }
            // A connection the server closed (or wrote to out of turn) reads
            // something; an open, quiet one would block.
            let mut probe = [0u8; 1];
            match conn.stream.try_read(&mut probe) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Some(conn),
                _ => continue,
            }
        }
    }

    pub fn put_idle(&self, mut conn: Conn) {
        conn.idle_since = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// All addresses of one target.
pub(crate) struct Endpoints {
    target: String,
    list: RwLock<Arc<[Arc<Endpoint>]>>,
    next: AtomicUsize,
    epoch: Instant,
    resolve_failing: AtomicBool,
}

/// The state of one address, for status output and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressState {
    pub addr: SocketAddr,
    /// Set aside after a refused or timed-out connect, a failed TLS
    /// handshake, or answers that all fail.
    pub failing: bool,
}

impl Endpoints {
    pub fn new(target: String) -> Self {
        Self {
            target,
            list: RwLock::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            resolve_failing: AtomicBool::new(false),
        }
    }

    /// Milliseconds since the epoch of these addresses: a request notes it
    /// before [`Endpoints::pick`], for [`Endpoints::set_aside`].
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn snapshot(&self) -> Arc<[Arc<Endpoint>]> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn states(&self) -> Vec<AddressState> {
        self.snapshot()
            .iter()
            .map(|e| AddressState {
                addr: e.addr,
                failing: e.is_failing(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// The next address to use, round robin. An address set aside is
    /// skipped until its retry time, then one request tries it.
    pub fn pick(&self) -> Result<Arc<Endpoint>, DropReason> {
        let list = self.snapshot();
        if list.is_empty() {
            return Err(DropReason::NoAddress);
        }
        let n = list.len();
        let start = self.next.fetch_add(1, Relaxed);
        let now = self.now_ms();
        for i in 0..n {
            let e = &list[(start + i) % n];
            if !e.is_failing() {
                return Ok(e.clone());
            }
            let at = e.retry_at_ms.load(Relaxed);
            let backoff = e.backoff_ms.load(Relaxed);
            // Only one request gets to probe it.
            if at <= now
                && e.retry_at_ms
                    .compare_exchange(at, now + backoff, Relaxed, Relaxed)
                    .is_ok()
            {
                return Ok(e.clone());
            }
        }
        // Every address is set aside: the request is lost for why the one
        // it would have used failed.
        let reason = list[start % n].last_failure.load(Relaxed);
        Err(DropReason::ALL
            .get(usize::from(reason))
            .copied()
            .unwrap_or(DropReason::ConnectRefused))
    }

    /// A request was answered by `e` (on any connection): the address
    /// works (a connect alone proves nothing: a shadow that accepts and
    /// then answers garbage must stay set aside). Called per answer: it
    /// only writes what changed, besides the time.
    pub fn served(&self, e: &Endpoint) {
        e.last_answered_ms.store(self.now_ms(), Relaxed);
        if e.failed_answers.load(Relaxed) != 0 {
            e.failed_answers.store(0, Relaxed);
        }
        if e.failing.load(Relaxed) && e.failing.swap(false, Relaxed) {
            e.backoff_ms.store(0, Relaxed);
            info!(target_name = %self.target, address = %e.addr, "shadow address recovered");
        }
    }

    /// A connect to `e` failed (or every answer did, see
    /// [`Self::answer_failed`]), for a request that picked it at `picked_ms`: set it aside (one
    /// request probes it after the backoff). Requests that picked it before
    /// it was set aside fail the same way: they change nothing; a failed
    /// probe doubles the backoff.
    pub fn set_aside(&self, e: &Endpoint, reason: DropReason, error: &io::Error, picked_ms: u64) {
        e.last_failure.store(reason as u8, Relaxed);
        let now = self.now_ms();
        let was_failing = e.failing.swap(true, Relaxed);
        if was_failing && picked_ms < e.aside_at_ms.load(Relaxed) {
            return;
        }
        let backoff = if was_failing {
            (e.backoff_ms.load(Relaxed) * 2).min(MAX_BACKOFF.as_millis() as u64)
        } else {
            FIRST_BACKOFF.as_millis() as u64
        };
        e.backoff_ms.store(backoff, Relaxed);
        e.aside_at_ms.store(now, Relaxed);
        e.retry_at_ms.store(now + backoff, Relaxed);
        if !was_failing {
            warn!(
                target_name = %self.target,
                address = %e.addr,
                reason = reason.as_str(),
                %error,
                "shadow address failing, set aside"
            );
        }
    }

    /// A request sent on a connection just made to `e` got no proper
    /// answer (malformed, cut, reset mid-response). That costs the one
    /// request, not the address: a candidate that fails on one endpoint
    /// must not blind the shadow to the rest. Only when every answer
    /// fails ([`FAILED_ANSWERS_TO_SET_ASIDE`] in a row, none answered
    /// between nor within [`ANSWERED_LATELY`]) is the address set aside,
    /// as after a refused connect, or a shadow answering garbage would be
    /// reconnected to per request (an error storm).
    pub fn answer_failed(&self, e: &Endpoint, error: &io::Error, picked_ms: u64) {
        if e.failed_answers.fetch_add(1, Relaxed) + 1 < FAILED_ANSWERS_TO_SET_ASIDE {
            return;
        }
        let answered = e.last_answered_ms.load(Relaxed);
        let lately = ANSWERED_LATELY.as_millis() as u64;
        if answered != NEVER && self.now_ms().saturating_sub(answered) < lately {
            return;
        }
        self.set_aside(e, DropReason::IoError, error, picked_ms);
    }

    /// Replaces the address list; addresses still present keep their
    /// connections and state.
    pub fn update(&self, mut addrs: Vec<SocketAddr>) {
        addrs.sort();
        addrs.dedup();
        let old = self.snapshot();
        let mut list = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            match old.iter().find(|e| e.addr == *addr) {
                Some(e) => list.push(e.clone()),
                None => {
                    info!(target_name = %self.target, address = %addr, "shadow address added");
                    list.push(Arc::new(Endpoint::new(*addr)));
                }
            }
        }
        for e in old.iter() {
            if !addrs.contains(&e.addr) {
                info!(target_name = %self.target, address = %e.addr, "shadow address removed");
            }
        }
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(list);
    }

    /// Resolves `host` once and applies the result. A failed or empty
    /// resolution keeps the addresses known so far.
    pub async fn refresh(&self, resolver: &dyn Resolve, host: &str, port: u16) {
        let result = match resolver.resolve(host, port).await {
            Ok(addrs) if addrs.is_empty() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the name has no address",
            )),
            other => other,
        };
        match result {
            Ok(addrs) => {
                if self.resolve_failing.swap(false, Relaxed) {
                    info!(target_name = %self.target, host, "shadow host name resolves again");
                }
                self.update(addrs);
            }
            Err(error) => {
                if !self.resolve_failing.swap(true, Relaxed) {
                    warn!(
                        target_name = %self.target,
                        host,
                        %error,
                        kept = self.len(),
                        "shadow host name does not resolve, keeping the known addresses"
                    );
                }
            }
        }
    }
}

/// The host as an IP address, when it is one (then it is never resolved).
pub(crate) fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// What a failed connect counts as.
fn connect_error(err: &io::Error) -> DropReason {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => DropReason::ConnectRefused,
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => DropReason::Unreachable,
        Some(libc::EMFILE | libc::ENFILE) => DropReason::FdLimit,
        _ => DropReason::IoError,
    }
}

/// Opens a connection, bounded by `timeout`; with `tls`, then its
/// handshake, bounded by `timeout` again.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Result<Conn, (DropReason, io::Error)> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err((
                DropReason::ConnectTimeout,
                io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            ));
        }
        Ok(Err(err)) => return Err((connect_error(&err), err)),
        Ok(Ok(stream)) => stream,
    };
    // Requests go out in one vectored write; never wait for an ack.
    let _ = stream.set_nodelay(true);
    let stream = match tls {
        None => {
            Transport::Plain(ShadowStream::new(stream).map_err(|err| (DropReason::IoError, err))?)
        }
        Some(tls) => {
            let handshake = tls.handshake(ShadowStream::prompt(stream));
            match tokio::time::timeout(timeout, handshake).await {
                Err(_) => {
                    return Err((
                        DropReason::TlsHandshake,
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"),
                    ));
                }
                Ok(Err(failed)) => return Err(failed),
                Ok(Ok(stream)) => Transport::Tls(Box::new(stream)),
            }
        }
    };
    Ok(Conn {
        stream,
        buf: Vec::new(),
        idle_since: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn picks_go_round_robin_and_skip_a_failing_address_until_its_retry_time() {
        let eps = Endpoints::new("t".into());
        assert_eq!(eps.pick().err(), Some(DropReason::NoAddress));
        eps.update(vec![
            addr("127.0.0.2:1"),
            addr("127.0.0.1:1"),
            addr("127.0.0.1:1"),
        ]);
        assert_eq!(eps.len(), 2, "deduplicated");
        let picks: Vec<_> = (0..4).map(|_| eps.pick().unwrap().addr).collect();
        assert_eq!(picks[0], picks[2]);
        assert_ne!(picks[0], picks[1]);

        let a = eps.pick().unwrap();
        let err = io::Error::from(io::ErrorKind::ConnectionRefused);
        eps.set_aside(&a, DropReason::ConnectRefused, &err, eps.now_ms());
        for _ in 0..6 {
            assert_ne!(eps.pick().unwrap().addr, a.addr, "set aside");
        }
        // Time passes: exactly one request probes it.
        a.retry_at_ms.store(0, Relaxed);
        let probes = (0..6)
            .filter(|_| eps.pick().unwrap().addr == a.addr)
            .count();
        assert_eq!(probes, 1);
        eps.served(&a);
        assert!(!a.is_failing());

        // Both set aside: the request is dropped with the failure reason.
        for e in eps.snapshot().iter() {
            eps.set_aside(e, DropReason::ConnectTimeout, &err, eps.now_ms());
        }
        assert_eq!(eps.pick().err(), Some(DropReason::ConnectTimeout));
    }

    #[test]
    fn an_update_keeps_the_state_of_addresses_still_present() {
        let eps = Endpoints::new("t".into());
        eps.update(vec![addr("127.0.0.1:1"), addr("127.0.0.2:1")]);
        let first = eps.snapshot()[0].clone();
        let err = io::Error::from(io::ErrorKind::ConnectionRefused);
        eps.set_aside(&first, DropReason::ConnectRefused, &err, eps.now_ms());
        eps.update(vec![addr("127.0.0.1:1"), addr("127.0.0.3:1")]);
        let states = eps.states();
        assert_eq!(
            states,
            vec![
                AddressState {
                    addr: addr("127.0.0.1:1"),
                    failing: true
                },
                AddressState {
                    addr: addr("127.0.0.3:1"),
                    failing: false
                },
            ]
        );
    }

    #[test]
    fn ip_literals_are_recognised() {
        assert!(literal_ip("10.0.0.7").is_some());
        assert!(literal_ip("[::1]").is_some());
        assert!(literal_ip("myapp-v2").is_none());
    }
}
