//! Per-target accounting: plain atomics, written by the router (capture
//! task) and the target's workers, read by whoever wants a picture (the
//! metrics endpoint at scrape time, tests, the shutdown report).
//!
//! For every target, once nothing is queued or in flight:
//! `captured = sent + filtered + dropped`, each filter and drop with one
//! reason. While requests are on their way, `queue_depth + in_flight` make
//! up the difference.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::route::FilterReason;

mirror_common::labelled! {
    /// Why a request routed to a target never got a response from it.
    pub enum DropReason {
        /// The target's queue was full when the request was captured.
        QueueFull => "queue_full",
        /// Every address of the target refused connections (or is set aside
        /// after refusing).
        ConnectRefused => "connect_refused",
        /// No connection within the connect timeout.
        ConnectTimeout => "connect_timeout",
        /// No complete response within the request timeout.
        Timeout => "timeout",
        /// The connection failed while sending or reading, or the response
        /// was not HTTP/1.x.
        IoError => "io_error",
        /// The target's name resolved to no address (yet).
        NoAddress => "no_address",
        /// Still queued, in flight or arriving when the agent shut down.
        Shutdown => "shutdown",
        /// Waited in the queue past `max_queue_age` (after an outage).
        Expired => "expired",
        /// No route to the address (ENETUNREACH, EHOSTUNREACH).
        Unreachable => "unreachable",
        /// The agent had no file descriptor left for a connection (EMFILE,
        /// ENFILE): a local limit, not the shadow's fault.
        FdLimit => "fd_limit",
        /// Over the connects a target may open a second.
        ConnectLimit => "connect_limit",
        /// Over the target's `--rate-limit` (requests a second).
        RateLimited => "rate_limited",
        /// An https target's TLS handshake failed (no common protocol or
        /// cipher, an alert, not TLS, closed or timed out mid-handshake).
        TlsHandshake => "tls_handshake",
        /// An https target's certificate was refused: unknown issuer (see
        /// `ca_file`), not valid for the URL's host, expired.
        TlsCertificate => "tls_certificate",
        /// A streamed body: the target read it more slowly than the client
        /// sent it, or the copy waited for its turn while the body went on
        /// (over 1 MiB behind, or the streams' budget ran out). Its
        /// connection is closed mid-body.
        BodyTooSlow => "body_too_slow",
        /// A streamed body whose rest the capture lost (a gap, the client
        /// reset or went idle) after its head had gone: its connection is
        /// closed mid-body, never reused.
        BodyCut => "body_cut",
    }
}

mirror_common::labelled! {
    /// Response status classes of sent requests.
    pub enum StatusClass {
        Informational => "1xx",
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
    }
}

impl StatusClass {
    /// The class of a status code, `None` outside 100..=599.
    pub fn of(status: u16) -> Option<StatusClass> {
        Some(match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => return None,
        })
    }
}

/// Upper bounds (seconds) of the latency histogram buckets; a last,
/// unbounded bucket follows.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the send delay histogram buckets (capture to
/// the shadow socket): finer below 2 ms, where a healthy agent sits.
pub const SEND_DELAY_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most bounds a [`LatencyHistogram`] takes.
const MAX_BOUNDS: usize = 24;

/// Durations in fixed buckets (per bucket, not cumulative): the response
/// latency of sent requests (first byte written to last byte read,
/// [`LATENCY_BUCKETS`]) and their send delay ([`SEND_DELAY_BUCKETS`]).
#[derive(Debug)]
pub struct LatencyHistogram {
    bounds: &'static [f64],
    bounds_ns: [u64; MAX_BOUNDS],
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }
}

/// A copy of a [`LatencyHistogram`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Upper bounds of the buckets, seconds (+Inf implied after them).
    pub bounds: &'static [f64],
    /// Count per bucket, one more than `bounds`: the last one for
    /// everything above the last bound.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencySnapshot {
    /// `(upper bound in seconds, cumulative count)` as Prometheus wants
    /// them, ending with `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.buckets.iter().scan(0u64, |acc, n| {
            *acc += n;
            Some(*acc)
        }))
    }

    /// `(upper bound in seconds, count of that bucket alone)`, +Inf last.
    pub fn per_bucket(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.buckets.iter().copied())
    }
}

impl LatencyHistogram {
    /// A histogram with these upper bounds (ascending, at most 24).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BOUNDS, "too many histogram bounds");
        let mut bounds_ns = [u64::MAX; MAX_BOUNDS];
        for (ns, bound) in bounds_ns.iter_mut().zip(bounds) {
            *ns = (bound * 1e9) as u64;
        }
        Self {
            bounds,
            bounds_ns,
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, latency: Duration) {
        self.record_ns(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_ns(&self, ns: u64) {
        let bucket = self.bounds_ns[..self.bounds.len()].partition_point(|bound| *bound < ns);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            bounds: self.bounds,
            buckets: self.buckets[..=self.bounds.len()]
                .iter()
                .map(|b| b.load(Relaxed))
                .collect(),
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            count: self.count.load(Relaxed),
        }
    }
}

/// Counters of one target. Everything is monotonic except `in_flight` and
/// `queue_depth`, which are gauges.
#[derive(Debug)]
pub struct TargetStats {
    /// Requests the router looked at for this target.
    pub captured: AtomicU64,
    /// Requests answered, by status class of the final response.
    pub sent: [AtomicU64; StatusClass::COUNT],
    pub filtered: [AtomicU64; FilterReason::COUNT],
    pub dropped: [AtomicU64; DropReason::COUNT],
    /// Requests being sent or waiting for their response.
    pub in_flight: AtomicU64,
    /// Requests in the queue.
    pub queue_depth: AtomicU64,
    pub latency: LatencyHistogram,
    /// From the capture of the segment that completed a request (its ring
    /// record's timestamp) to the request written to the shadow socket.
    pub send_delay: LatencyHistogram,
}

impl Default for TargetStats {
    fn default() -> Self {
        Self {
            captured: AtomicU64::new(0),
            sent: Default::default(),
            filtered: Default::default(),
            dropped: Default::default(),
            in_flight: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            latency: LatencyHistogram::new(&LATENCY_BUCKETS),
            send_delay: LatencyHistogram::new(&SEND_DELAY_BUCKETS),
        }
    }
}

impl TargetStats {
    pub fn filter(&self, reason: FilterReason) {
        self.filtered[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn drop_one(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn sent_one(&self, class: StatusClass, latency: Duration) {
        self.sent[class as usize].fetch_add(1, Relaxed);
        self.latency.record(latency);
    }

    pub fn sent_by(&self, class: StatusClass) -> u64 {
        self.sent[class as usize].load(Relaxed)
    }

    pub fn filtered_by(&self, reason: FilterReason) -> u64 {
        self.filtered[reason as usize].load(Relaxed)
    }

    pub fn dropped_by(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            captured: self.captured.load(Relaxed),
            sent: std::array::from_fn(|i| self.sent[i].load(Relaxed)),
            filtered: std::array::from_fn(|i| self.filtered[i].load(Relaxed)),
            dropped: std::array::from_fn(|i| self.dropped[i].load(Relaxed)),
            in_flight: self.in_flight.load(Relaxed),
            queue_depth: self.queue_depth.load(Relaxed),
            latency: self.latency.snapshot(),
            send_delay: self.send_delay.snapshot(),
        }
    }
}

/// A plain copy of [`TargetStats`] (not atomic as a whole: counters read
/// one after the other).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub captured: u64,
    pub sent: [u64; StatusClass::COUNT],
    pub filtered: [u64; FilterReason::COUNT],
    pub dropped: [u64; DropReason::COUNT],
    pub in_flight: u64,
    pub queue_depth: u64,
    pub latency: LatencySnapshot,
    pub send_delay: LatencySnapshot,
}

impl StatsSnapshot {
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn filtered_total(&self) -> u64 {
        self.filtered.iter().sum()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn sent_by(&self, class: StatusClass) -> u64 {
        self.sent[class as usize]
    }

    pub fn filtered_by(&self, reason: FilterReason) -> u64 {
        self.filtered[reason as usize]
    }

    pub fn dropped_by(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// `captured = sent + filtered + dropped + queued + in flight`.
    pub fn balances(&self) -> bool {
        self.captured
            == self.sent_total()
                + self.filtered_total()
                + self.dropped_total()
                + self.queue_depth
                + self.in_flight
    }
}

impl std::fmt::Display for StatsSnapshot {
    /// One line: `captured=N sent=N (2xx=N ...) filtered=N (share=N ...) dropped=N (...)`,
    /// zero reasons left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn parts<T: Copy + std::fmt::Display>(
            f: &mut std::fmt::Formatter<'_>,
            labels: &[T],
            counts: &[u64],
        ) -> std::fmt::Result {
            let mut first = true;
            for (label, n) in labels.iter().zip(counts) {
                if *n > 0 {
                    f.write_str(if first { " (" } else { " " })?;
                    write!(f, "{label}={n}")?;
                    first = false;
                }
            }
            if !first {
                f.write_str(")")?;
            }
            Ok(())
        }
        write!(f, "captured={} sent={}", self.captured, self.sent_total())?;
        parts(f, &StatusClass::ALL, &self.sent)?;
        write!(f, " filtered={}", self.filtered_total())?;
        parts(f, &FilterReason::ALL, &self.filtered)?;
        write!(f, " dropped={}", self.dropped_total())?;
        parts(f, &DropReason::ALL, &self.dropped)?;
        if self.queue_depth + self.in_flight > 0 {
            write!(
                f,
                " queued={} in_flight={}",
                self.queue_depth, self.in_flight
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(500));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], 2, "<= 0.5 ms");
        assert_eq!(s.buckets[3], 1, "<= 5 ms");
        assert_eq!(s.buckets[LATENCY_BUCKETS.len()], 1, "+Inf");
        let cumulative: Vec<_> = s.cumulative().collect();
        assert_eq!(cumulative.last(), Some(&(f64::INFINITY, 4)));
        assert_eq!(cumulative[3], (0.005, 3));
        assert!((s.sum_seconds - 60.0036).abs() < 1e-9);
    }

    #[test]
    fn send_delays_use_their_own_finer_buckets() {
        let h = LatencyHistogram::new(&SEND_DELAY_BUCKETS);
        h.record_ns(80_000);
        h.record_ns(1_200_000);
        h.record_ns(2_000_000);
        h.record_ns(20_000_000_000);
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), SEND_DELAY_BUCKETS.len() + 1);
        assert_eq!(s.buckets[0], 1, "<= 0.1 ms");
        assert_eq!(s.buckets[5], 1, "<= 1.5 ms");
        assert_eq!(s.buckets[6], 1, "<= 2 ms, bound included");
        assert_eq!(s.buckets[SEND_DELAY_BUCKETS.len()], 1, "+Inf");
        let cumulative: Vec<_> = s.cumulative().collect();
        assert_eq!(cumulative[6], (0.002, 3));
        assert_eq!(cumulative.last(), Some(&(f64::INFINITY, 4)));
    }

    #[test]
    fn labels_are_stable_snake_case() {
        let labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "queue_full",
                "connect_refused",
                "connect_timeout",
                "timeout",
                "io_error",
                "no_address",
                "shutdown",
                "expired",
                "unreachable",
                "fd_limit",
                "connect_limit",
                "rate_limited",
                "tls_handshake",
                "tls_certificate",
                "body_too_slow",
                "body_cut"
            ]
        );
        let labels: Vec<_> = FilterReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "share",
                "header",
                "method",
                "path",
                "loop",
                "dry_run",
                "no_share_key"
            ]
        );
        assert_eq!(StatusClass::of(204), Some(StatusClass::Success));
        assert_eq!(StatusClass::of(101).map(|c| c.as_str()), Some("1xx"));
        assert_eq!(StatusClass::of(600), None);
    }

    #[test]
    fn a_snapshot_balances_and_prints_nonzero_reasons() {
        let s = TargetStats::default();
        for _ in 0..5 {
            s.captured.fetch_add(1, Relaxed);
        }
        s.sent_one(StatusClass::Success, Duration::from_millis(1));
        s.filter(FilterReason::Share);
        s.filter(FilterReason::Share);
        s.drop_one(DropReason::QueueFull);
        s.queue_depth.fetch_add(1, Relaxed);
        let snap = s.snapshot();
        assert!(snap.balances());
        assert_eq!(
            snap.to_string(),
            "captured=5 sent=1 (2xx=1) filtered=2 (share=2) dropped=1 (queue_full=1) queued=1 in_flight=0"
        );
    }
}
