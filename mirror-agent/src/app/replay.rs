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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

use super::progress::Progress;
use super::record::Destination;
use super::signals::StopSignals;
use crate::compare::{Comparing, Engine, RecordedAnswers};
use crate::config::{Config, DEFAULT_MAX_RESPONSE, InvalidConfig, ReplayArgs, Speed};
use crate::file::{Item, OutputPlan, Recorded, Source, SourceStats};
use crate::route::RouteConfig;
use crate::shadow::{Shadows, Target};
use crate::telemetry::{
    self, BuildInfo, PipelineStats, ReloadStats, Sources, endpoint, endpoint::Readiness,
};

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
    // Before the pairing: a signal during it ends the replay right after,
    // with the temporary recording removed, instead of killing the process.
    let mut signals = StopSignals::new()?;
    // v1's answers in a packet capture are paired with their requests
    // first, into a temporary recording that is then replayed as any other.
    let paired = match (&args.input_pcap, compare) {
        (Some(pcap), true) => Some(pair_answers(pcap, &config)?),
        _ => None,
    };
    let engine = match compare {
        true => Some(
            Engine::start(config.live.compare.clone()).context("cannot start the comparison")?,
        ),
        false => None,
    };
    let stops = Arc::new(AtomicU32::new(0));
    let listener = endpoint::bind(config.startup.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", config.startup.metrics_addr))?;
    let shadows = Shadows::start(config.live.shadows.clone()).await;
    let readiness = Arc::new(Readiness::default());
    readiness.config_loaded.store(true, Relaxed);
    let sources = Sources {
        kernel: None,
        pipeline: Arc::new(PipelineStats::default()),
        targets: telemetry::target_source(shadows.clone()),
        reloads: Arc::new(ReloadStats::default()),
        build: BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            kernel: crate::capture::kernel_release(),
            attach_mode: "replay",
        },
        compare: engine.clone(),
    };
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

    let (mut dispatcher, mut recorded) = match &engine {
        Some(engine) => (
            Comparing::new(shadows.dispatcher(), engine.clone()),
            Some(RecordedAnswers::new(
                engine.clone(),
                super::response_config(&config),
            )),
        ),
        None => (Comparing::off(shadows.dispatcher()), None),
    };
    let pace = Pace::of(args);
    let started = Instant::now();
    let mut totals = SourceStats::default();
    let mut replayed: u64 = 0;
    let inputs: Vec<&Path> = match (&paired, &args.input_pcap) {
        (Some(paired), _) => vec![paired.file.as_path()],
        (None, Some(pcap)) => vec![pcap.as_path()],
        (None, None) => args.files.iter().map(|f| f.as_path()).collect(),
    };
    let mut progress = Progress::new(&inputs, args.repeat);
    'passes: for pass in 1.. {
        let mut pacer = Pacer::new(pace, Instant::now());
        for (index, &path) in inputs.iter().enumerate() {
            let mut source = match &args.input_pcap {
                Some(_) if paired.is_none() => Source::pcap(
                    path,
                    config.startup.capture.ports.clone(),
                    config.startup.flow.clone(),
                    config.startup.http.clone(),
                )?,
                _ if compare => Source::gor(path, config.startup.http.clone())?.with_responses(),
                _ => Source::gor(path, config.startup.http.clone())?,
            };
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
        match (recorded.responses, &paired) {
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
    if let Some(engine) = &engine {
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
    info!("final counts: replay: {source_line}");
    println!("final counts: replay: {source_line}");
    for (name, snapshot) in &snapshots {
        if !snapshot.balances() {
            warn!(target = %name, "accounting does not balance: {snapshot}");
        }
        info!(target = %name, "final counts: {snapshot}");
        println!("final counts: target={name} {snapshot}");
    }
    if let Some(engine) = &engine {
        for line in engine.verdict_lines() {
            info!("final counts: comparison: {line}");
            println!("final counts: comparison: {line}");
        }
    }
    Ok(())
}

/// A packet capture's requests with v1's answers, as a recording in a
/// directory of its own (under `$TMPDIR`) that goes when this does.
struct Paired {
    file: PathBuf,
    _dir: tempfile::TempDir,
}

/// Pairs each of v1's answers in `pcap` with its request, the way `record
/// --input-pcap --responses` does, into a temporary `.gor`; prints what the
/// capture held. The replay applies the rules and rewrites, not this.
fn pair_answers(pcap: &Path, config: &Config) -> anyhow::Result<Paired> {
    let dir = tempfile::Builder::new()
        .prefix("mirror-replay-")
        .tempdir()
        .context("cannot create a temporary directory for v1's answers (TMPDIR sets where)")?;
    let file = dir.path().join("paired.gor");
    info!(pcap = %pcap.display(), file = %file.display(), "pairing v1's answers in the capture with their requests");
    let (http, counts) = super::record::from_pcap(
        pcap,
        config,
        Destination {
            output: OutputPlan::single(&file),
            route: RouteConfig::default(),
            responses: Some(DEFAULT_MAX_RESPONSE),
        },
    )?;
    let line = format!(
        "{} {}",
        super::record::capture_line(&http),
        counts.responses_line()
    );
    info!("final counts: capture: {line}");
    println!("final counts: capture: {line}");
    Ok(Paired { file, _dir: dir })
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
