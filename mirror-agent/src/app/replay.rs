//! `mirror-agent replay`: requests from `.gor` files (or a packet capture)
//! → the same dispatcher, routing, rewrites, targets, queues and metrics
//! as live mirroring, paced by the recorded timing (scaled by `--speed`),
//! a fixed `--rate`, or as fast as the targets take them.
//!
//! Unlike live mirroring, nothing here protects production: the reader
//! waits for room in the targets' queues instead of dropping, so memory is
//! bounded by the queues, not by the file (which is streamed). Progress is
//! a bar on a terminal, else a line logged every few seconds
//! ([`super::progress`]); at the end the queues drain and each target's
//! final counts are printed.
//!
//! A stop signal ends every wait at once ([`Stop`]): the files are read on
//! a thread of their own ([`super::reading`]), so that not even a read that
//! blocks keeps the replay from stopping.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::{info, warn};

use super::agent::{self, Mirroring};
use super::progress::Progress;
use super::reading::{Read, Reader};
use super::signals::StopSignals;
use crate::config::{Config, HumanDuration, InvalidConfig, ReplayArgs, Speed};
use crate::file::{Item, Recorded, SourceStats};
use crate::shadow::{Shadows, Target};
use crate::telemetry::{PipelineStats, ReloadStats, endpoint, endpoint::Readiness};

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The recorded gaps, divided by `percent / 100`.
    Recorded { percent: f64 },
    /// A fixed number of requests a second.
    Rate { per_second: f64 },
    /// As fast as the targets take them.
    Unpaced,
}

impl Pace {
    fn of(args: &ReplayArgs) -> Pace {
        match (args.rate, args.speed) {
            (Some(per_second), _) => Pace::Rate { per_second },
            (None, Some(Speed::Max)) => Pace::Unpaced,
            (None, Some(Speed::Percent(percent))) => Pace::Recorded { percent },
            (None, None) => Pace::Recorded { percent: 100.0 },
        }
    }
}

/// No single wait is longer: a speed such as 0.0001% makes a day's gap
/// centuries long, and no clock should be asked for that.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// When each request is due: each one after the one before by its
/// recorded gap (scaled), or by the rate's interval, at most `--max-wait`.
/// A file starts right after the one before (its first request is not
/// kept waiting for the gap between the files' recordings) unless
/// `--keep-file-gaps`. Dues follow from dues, not from when requests were
/// sent: a replay that fell behind catches up.
#[derive(Debug)]
pub struct Pacer {
    pace: Pace,
    start: Instant,
    max_wait: Option<Duration>,
    keep_file_gaps: bool,
    /// The latest recorded time so far and when the request before was
    /// due (`None`: the next request is the pass's first).
    last: Option<(i64, Instant)>,
    /// The next request is a file's first (after another file).
    file_start: bool,
}

impl Pacer {
    pub fn new(pace: Pace, start: Instant) -> Self {
        Self {
            pace,
            start,
            max_wait: None,
            keep_file_gaps: false,
            last: None,
            file_start: false,
        }
    }

    /// No wait between two requests is longer than `max` (`--max-wait`).
    pub fn max_wait(mut self, max: Option<Duration>) -> Self {
        self.max_wait = max;
        self
    }

    /// The recorded gap between two files is waited too.
    pub fn keep_file_gaps(mut self, keep: bool) -> Self {
        self.keep_file_gaps = keep;
        self
    }

    /// The next request is the first of another file.
    pub fn next_file(&mut self) {
        self.file_start = true;
    }

    /// When the request recorded at `timestamp_ns` is due; `None`: now.
    pub fn due(&mut self, timestamp_ns: i64) -> Option<Instant> {
        let new_file = std::mem::take(&mut self.file_start) && !self.keep_file_gaps;
        let wait = match (self.pace, self.last) {
            (Pace::Unpaced, _) => return None,
            (_, None) => Duration::ZERO,
            (Pace::Rate { per_second }, Some(_)) => seconds(1.0 / per_second),
            (Pace::Recorded { .. }, Some(_)) if new_file => Duration::ZERO,
            (Pace::Recorded { percent }, Some((last_ts, _))) => {
                // Earlier than the latest (out of order): due with it.
                let gap = timestamp_ns.saturating_sub(last_ts).max(0) as f64 / 1e9;
                seconds(gap * 100.0 / percent)
            }
        };
        let wait = self.max_wait.map_or(wait, |max| wait.min(max));
        let (latest, due) = match self.last {
            None => (timestamp_ns, self.start),
            Some((last_ts, last_due)) => (
                if new_file {
                    timestamp_ns
                } else {
                    last_ts.max(timestamp_ns)
                },
                last_due + wait,
            ),
        };
        self.last = Some((latest, due));
        Some(due)
    }
}

/// `secs` as a wait, at most [`FOREVER`].
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).map_or(FOREVER, |d| d.min(FOREVER))
}

/// A replay's stop signals. The first ends whatever the replay waits for
/// (a read, a recorded gap, room in the queues, the queues emptying), and
/// the targets then drain their queues for at most the drain timeout; the
/// second stops the targets at once. Either way the final counts follow.
struct Stop {
    /// Signals received so far.
    count: watch::Receiver<u32>,
}

impl Stop {
    /// Answers SIGINT and SIGTERM from now on, on a task of its own.
    fn listen(
        mut signals: StopSignals,
        shadows: Shadows,
        drain: Duration,
    ) -> (tokio::task::JoinHandle<()>, Stop) {
        let (send, count) = watch::channel(0u32);
        let task = tokio::spawn(async move {
            loop {
                let name = signals.next().await;
                send.send_modify(|n| *n += 1);
                if *send.borrow() == 1 {
                    info!(
                        drain_timeout = %HumanDuration(drain),
                        "{name} received: no more requests are read; the queues drain \
                         (a second signal stops now)"
                    );
                } else {
                    warn!("{name} received again: not waiting for the queues");
                    // What is queued or in flight is counted as dropped
                    // (`shutdown`): the final counts still balance.
                    shadows.stop_now();
                }
            }
        });
        (task, Stop { count })
    }

    fn stopped(&self) -> bool {
        *self.count.borrow() > 0
    }

    /// `work`'s outcome, or `None` when a stop signal came first (or had
    /// come already).
    async fn unless<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.count.wait_for(|n| *n > 0) => None,
            out = work => Some(out),
        }
    }
}

/// Room for a target's rewrites of a request's head (the largest head the
/// framer takes by default).
const REWRITE_SLACK: usize = 64 * 1024;

/// Waits until every target's queue would take `request`: its count
/// (`queue_size`) and its bytes (64 MiB; 1024 requests of 64 KiB are
/// more), so the dispatch never drops it as `queue_full`.
async fn room(targets: &[Arc<Target>], request: &crate::http::Request) {
    let len = request.head.len() + request.body.len() + request.trailers.len() + REWRITE_SLACK;
    loop {
        let full = targets.iter().any(|t| !t.has_room_for(len));
        if !full {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub(super) async fn run(args: &ReplayArgs, config: Config) -> anyhow::Result<()> {
    if config.live.shadows.route.targets.is_empty() {
        return Err(InvalidConfig(
            "no target to replay to: give --shadow URL (or [[target]] in the config file)".into(),
        )
        .into());
    }
    if args.input_pcap.is_some() && config.startup.capture.ports.is_empty() {
        return Err(InvalidConfig("--input-pcap needs --port (the service port)".into()).into());
    }
    let compare = config.live.compare.enabled();
    let signals = StopSignals::new()?;
    let listener = endpoint::bind(config.startup.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", config.startup.metrics_addr))?;
    let mirroring = Mirroring::start(&config).await?;
    let shadows = mirroring.shadows.clone();
    let readiness = Arc::new(Readiness::default());
    readiness.config_loaded.store(true, Relaxed);
    let sources = mirroring.sources(
        None,
        Arc::new(PipelineStats::default()),
        Arc::new(ReloadStats::default()),
        "replay",
    );
    let endpoint_task = tokio::spawn(endpoint::serve(listener, sources, readiness));
    let drain = config.live.drain_timeout;
    let (signal_task, mut stop) = Stop::listen(signals, shadows.clone(), drain);

    let mut dispatcher = mirroring.requests();
    let mut recorded = mirroring.recorded_answers(&config);
    // What became of v1's answers in a packet capture (with --compare).
    let mut answers: Option<String> = None;
    let pace = Pace::of(args);
    let started = Instant::now();
    let mut totals = SourceStats::default();
    let mut replayed: u64 = 0;
    let inputs: Vec<&Path> = match &args.input_pcap {
        Some(pcap) => vec![pcap.as_path()],
        None => args.files.iter().map(|f| f.as_path()).collect(),
    };
    let pcap = args.input_pcap.is_some();
    // A file that could not be read on: reading ends there.
    let mut failure: Option<anyhow::Error> = None;
    info!(files = inputs.len(), "replaying (SIGINT or SIGTERM stop)");
    let mut progress = Progress::new(&inputs, args.repeat);
    'passes: for pass in 1.. {
        let mut pacer = Pacer::new(pace, Instant::now())
            .max_wait(args.max_wait.map(|d| d.0))
            .keep_file_gaps(args.keep_file_gaps);
        for (index, &path) in inputs.iter().enumerate() {
            if index > 0 {
                pacer.next_file();
            }
            // Opened and read on a thread: a read that blocks (a FIFO
            // without a writer) must not block the stop.
            let mut reader = Reader::spawn({
                let (config, path) = (config.clone(), path.to_owned());
                move || agent::replay_source(&config, &path, pcap)
            })?;
            let mut source = loop {
                let Some(next) = stop.unless(reader.next()).await else {
                    add(&mut totals, reader.stats());
                    break 'passes;
                };
                let next = match next {
                    Ok(next) => next,
                    Err(err) => {
                        // What was read before is still sent and counted;
                        // the error is the exit status.
                        failure = Some(err);
                        add(&mut totals, reader.stats());
                        break 'passes;
                    }
                };
                let (mut request, timestamp_ns, id) = match next {
                    Read::Item(Item::Request(Recorded {
                        request,
                        timestamp_ns,
                        id,
                    })) => (request, timestamp_ns, id),
                    Read::Item(Item::Response(response)) => {
                        if let Some(recorded) = &mut recorded {
                            recorded.answer(&response.id, response.latency_ns, &response.data);
                        }
                        continue;
                    }
                    Read::Item(Item::Answer(paired)) => {
                        if let Some(recorded) = &mut recorded {
                            recorded.framed(&paired.id, paired.latency_ns, paired.answer);
                        }
                        continue;
                    }
                    Read::End(source) => break source,
                };
                let wait = async {
                    if let Some(due) = pacer.due(timestamp_ns) {
                        tokio::time::sleep_until(due.into()).await;
                    } else if replayed.is_multiple_of(64) {
                        // Unpaced: let the workers run now and then.
                        tokio::task::yield_now().await;
                    }
                    room(dispatcher.targets(), &request).await;
                };
                if stop.unless(wait).await.is_none() {
                    // The request waiting for its time is not handed on.
                    let mut taken = reader.stats();
                    taken.requests = taken.requests.saturating_sub(1);
                    add(&mut totals, taken);
                    break 'passes;
                }
                // The send delay runs from now, not from the recording.
                let now = crate::clock::monotonic_ns();
                request.first_byte_ns = now;
                request.complete_ns = now;
                let tag = dispatcher.send(&request);
                if let Some(recorded) = &mut recorded {
                    match (tag, id) {
                        (Some(tag), Some(id)) => recorded.sent(&id, tag, &request),
                        // No id to find v1's answer by.
                        (Some(tag), None) => recorded.unpaired(tag),
                        (None, _) => {}
                    }
                }
                replayed += 1;
                progress.update(pass, index, reader.bytes_read(), replayed);
            };
            progress.update(pass, index, source.bytes_read(), replayed);
            if let Some(recorded) = &mut recorded {
                recorded.end();
            }
            if let Some(http) = source.http_stats() {
                let skipped = http.dropped.total();
                if skipped > 0 {
                    warn!(file = %path.display(), skipped, "requests of the capture lost in reassembly or framing");
                }
                if let Some(line) = source.answers(|a| a.counts_line()) {
                    answers = Some(format!("{} {line}", super::record::capture_line(&http)));
                }
            }
            add(&mut totals, source.stats());
        }
        if !args.repeat {
            break;
        }
    }
    progress.finish(replayed);
    if !stop.stopped() && failure.is_none() {
        info!(
            replayed,
            seconds = started.elapsed().as_secs_f64(),
            "all requests handed to the targets; draining the queues (SIGINT or SIGTERM: \
             for at most the drain timeout)"
        );
    }
    // Until the queues are empty, or a stop signal; then the targets stop,
    // their queues drained for at most the drain timeout (a second signal:
    // not at all).
    let targets = dispatcher.targets().to_vec();
    let empty = async {
        while targets
            .iter()
            .any(|t| t.stats().queue_depth.load(Relaxed) + t.stats().in_flight.load(Relaxed) > 0)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let _ = stop.unless(empty).await;
    let snapshots = shadows.shutdown(drain).await;
    signal_task.abort();
    endpoint_task.abort();
    if let Some(recorded) = &mut recorded {
        // A stop in the middle of a file: what waits has no answer.
        recorded.end();
        if recorded.malformed > 0 {
            warn!(
                malformed = recorded.malformed,
                "--compare: recorded responses that are not one complete HTTP response: \
                 their requests count as no_v1_response"
            );
        }
        match (recorded.responses, &args.input_pcap) {
            (0, Some(_)) => warn!(
                "--compare: the capture holds none of v1's answers (capture both \
                 directions of the port, whole packets: tcpdump -s 0): nothing was compared"
            ),
            (0, None) => warn!(
                "--compare: the files hold no recorded responses (type 2 payloads; \
                 `record --responses` writes them): nothing was compared"
            ),
            _ => {}
        }
    }
    if let Some(engine) = &mirroring.engine {
        // What still waits is judged with what it has.
        engine.finish();
    }

    let source_line = format!(
        "payloads_read={} requests={} {}={} malformed={} seconds={:.3}",
        totals.read,
        totals.requests,
        // Compared with, or not used.
        if compare {
            "responses"
        } else {
            "responses_skipped"
        },
        totals.responses,
        totals.malformed,
        started.elapsed().as_secs_f64()
    );
    if let Some(line) = answers {
        // v1's answers in the capture, paired with their requests.
        info!("final counts: capture: {line}");
        println!("final counts: capture: {line}");
    }
    info!("final counts: replay: {source_line}");
    println!("final counts: replay: {source_line}");
    for (name, snapshot) in &snapshots {
        if !snapshot.balances() {
            warn!(target = %name, "accounting does not balance: {snapshot}");
        }
        info!(target = %name, "final counts: {snapshot}");
        println!("final counts: target={name} {snapshot}");
    }
    if let Some(engine) = &mirroring.engine {
        for line in engine.verdict_lines() {
            info!("final counts: comparison: {line}");
            println!("final counts: comparison: {line}");
        }
    }
    // Logged last, after the counts of what was read before it.
    failure.map_or(Ok(()), Err)
}

fn add(totals: &mut SourceStats, one: SourceStats) {
    totals.read += one.read;
    totals.requests += one.requests;
    totals.responses += one.responses;
    totals.malformed += one.malformed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_gaps_are_scaled_by_the_speed() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Pace::Recorded { percent: 200.0 }, start);
        assert_eq!(pacer.due(5_000_000_000), Some(start));
        assert_eq!(
            pacer.due(7_000_000_000),
            Some(start + Duration::from_secs(1))
        );
        assert_eq!(
            pacer.due(15_000_000_000),
            Some(start + Duration::from_secs(5))
        );
        // Out of order (recorded earlier than the one before): due with
        // it, and the next gap runs from the latest.
        assert_eq!(
            pacer.due(1_000_000_000),
            Some(start + Duration::from_secs(5))
        );
        assert_eq!(
            pacer.due(17_000_000_000),
            Some(start + Duration::from_secs(6))
        );
        let mut half = Pacer::new(Pace::Recorded { percent: 50.0 }, start);
        half.due(0);
        assert_eq!(
            half.due(1_000_000_000),
            Some(start + Duration::from_secs(2))
        );
    }

    #[test]
    fn max_wait_caps_each_gap_and_a_tiny_speed_stays_a_finite_wait() {
        let start = Instant::now();
        let hour = 3_600_000_000_000;
        let mut pacer = Pacer::new(Pace::Recorded { percent: 100.0 }, start)
            .max_wait(Some(Duration::from_secs(1)));
        assert_eq!(pacer.due(0), Some(start));
        assert_eq!(pacer.due(hour), Some(start + Duration::from_secs(1)));
        // A short gap is kept as recorded.
        assert_eq!(
            pacer.due(hour + 300_000_000),
            Some(start + Duration::from_millis(1300))
        );
        let mut rate = Pacer::new(Pace::Rate { per_second: 0.001 }, start)
            .max_wait(Some(Duration::from_secs(2)));
        rate.due(0);
        assert_eq!(rate.due(0), Some(start + Duration::from_secs(2)));
        // 0.000001 %: a day's gap would be 274,000 years.
        let mut slow = Pacer::new(Pace::Recorded { percent: 1e-6 }, start);
        slow.due(0);
        assert_eq!(slow.due(hour * 24), Some(start + FOREVER));
    }

    #[test]
    fn the_next_file_starts_right_after_the_last_unless_its_gap_is_kept() {
        let start = Instant::now();
        let (day, second) = (86_400_000_000_000i64, 1_000_000_000i64);
        let files = |keep: bool| {
            let mut pacer = Pacer::new(Pace::Recorded { percent: 100.0 }, start)
                .keep_file_gaps(keep)
                .max_wait(Some(Duration::from_secs(7200)));
            let mut due = vec![pacer.due(0), pacer.due(second)];
            pacer.next_file();
            // The next day's file: its own gaps are kept.
            due.extend([pacer.due(day), pacer.due(day + 3 * second)]);
            due.into_iter()
                .map(|d| d.unwrap() - start)
                .map(|d| d.as_secs())
                .collect::<Vec<_>>()
        };
        assert_eq!(files(false), [0, 1, 1, 4]);
        // Kept: the day between them, capped by --max-wait.
        assert_eq!(files(true), [0, 1, 7201, 7204]);
    }

    #[test]
    fn a_fixed_rate_spaces_requests_evenly_and_unpaced_never_waits() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Pace::Rate { per_second: 4.0 }, start);
        let due: Vec<_> = (0..5).map(|_| pacer.due(0).unwrap() - start).collect();
        assert_eq!(due, [0, 250, 500, 750, 1000].map(Duration::from_millis));
        assert_eq!(Pacer::new(Pace::Unpaced, start).due(1), None);
    }
}
