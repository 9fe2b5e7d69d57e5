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

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

use super::agent::{self, Mirroring};
use super::progress::Progress;
use super::signals::StopSignals;
use crate::config::{Config, InvalidConfig, ReplayArgs, Speed};
use crate::file::{Item, Recorded, SourceStats};
use crate::shadow::Target;
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

/// When each request is due, from the start of a pass.
#[derive(Debug)]
pub struct Pacer {
    pace: Pace,
    start: Instant,
    first_ts: Option<i64>,
    sent: u64,
}

impl Pacer {
    pub fn new(pace: Pace, start: Instant) -> Self {
        Self {
            pace,
            start,
            first_ts: None,
            sent: 0,
        }
    }

    /// When the request recorded at `timestamp_ns` is due; `None`: now.
    pub fn due(&mut self, timestamp_ns: i64) -> Option<Instant> {
        let n = self.sent;
        self.sent += 1;
        match self.pace {
            Pace::Unpaced => None,
            Pace::Rate { per_second } => {
                Some(self.start + Duration::from_secs_f64(n as f64 / per_second))
            }
            Pace::Recorded { percent } => {
                let first = *self.first_ts.get_or_insert(timestamp_ns);
                let gap = timestamp_ns.saturating_sub(first).max(0) as f64;
                Some(self.start + Duration::from_nanos((gap * 100.0 / percent) as u64))
            }
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
    let mut signals = StopSignals::new()?;
    let stops = Arc::new(AtomicU32::new(0));
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
    let signal_task = {
        let stops = Arc::clone(&stops);
        tokio::spawn(async move {
            loop {
                let name = signals.next().await;
                if stops.fetch_add(1, Relaxed) == 0 {
                    info!("{name} received: no more requests are read; the queues drain");
                } else {
                    warn!("{name} received again: not waiting for the queues");
                }
            }
        })
    };

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
    let mut progress = Progress::new(&inputs, args.repeat);
    'passes: for pass in 1.. {
        let mut pacer = Pacer::new(pace, Instant::now());
        for (index, &path) in inputs.iter().enumerate() {
            let mut source = agent::replay_source(&config, path, args.input_pcap.is_some())?;
            loop {
                if stops.load(Relaxed) > 0 {
                    add(&mut totals, source.stats());
                    break 'passes;
                }
                let (mut request, timestamp_ns, id) = match source.next_item()? {
                    Some(Item::Request(Recorded {
                        request,
                        timestamp_ns,
                        id,
                    })) => (request, timestamp_ns, id),
                    Some(Item::Response(response)) => {
                        if let Some(recorded) = &mut recorded {
                            recorded.answer(&response.id, response.latency_ns, &response.data);
                        }
                        continue;
                    }
                    Some(Item::Answer(paired)) => {
                        if let Some(recorded) = &mut recorded {
                            recorded.framed(&paired.id, paired.latency_ns, paired.answer);
                        }
                        continue;
                    }
                    None => break,
                };
                if let Some(due) = pacer.due(timestamp_ns) {
                    tokio::time::sleep_until(due.into()).await;
                } else if replayed.is_multiple_of(64) {
                    // Unpaced: let the workers run now and then.
                    tokio::task::yield_now().await;
                }
                room(dispatcher.targets(), &request).await;
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
                progress.update(pass, index, source.bytes_read(), replayed);
            }
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
    info!(
        replayed,
        seconds = started.elapsed().as_secs_f64(),
        "all requests handed to the targets; draining the queues"
    );

    // Until the queues are empty, or a second signal.
    let targets = dispatcher.targets().to_vec();
    while stops.load(Relaxed) < 2
        && targets
            .iter()
            .any(|t| t.stats().queue_depth.load(Relaxed) + t.stats().in_flight.load(Relaxed) > 0)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if stops.load(Relaxed) >= 2 {
        shadows.stop_now();
    }
    let drain = config.live.drain_timeout;
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
    Ok(())
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
        // Out of order (an earlier file): due at once.
        assert_eq!(pacer.due(1_000_000_000), Some(start));
        let mut half = Pacer::new(Pace::Recorded { percent: 50.0 }, start);
        half.due(0);
        assert_eq!(
            half.due(1_000_000_000),
            Some(start + Duration::from_secs(2))
        );
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
