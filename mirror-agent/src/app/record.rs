//! `mirror-agent record`: the capture (or a packet capture file) → flow →
//! http → the recording sink ([`crate::file::Recorder`]) instead of the
//! shadows. Ends on SIGTERM/SIGINT (live) or at the end of the pcap; the
//! file is completed before the final counts are printed.

use std::path::Path;

use anyhow::Context as _;
use tracing::{info, warn};

use super::agent::{self, Destination, Recording};
use super::signals::StopSignals;
use crate::capture::{Capture, DRAIN_INTERVAL, EventSink as _, NoFilter};
use crate::config::{Config, InvalidConfig, RecordArgs};
use crate::file::{self, PacketReader, RecordSnapshot, Segments};
use crate::http::HttpStats;

pub(super) async fn run(args: &RecordArgs, config: Config) -> anyhow::Result<()> {
    if args.rules.compare == Some(true) || config.live.compare.enabled() {
        return Err(InvalidConfig(
            "record does not compare: --responses records v1's responses, and \
             `replay --compare` compares the replayed answers with them"
                .into(),
        )
        .into());
    }
    let (http, counts) = match &args.input_pcap {
        Some(pcap) => from_pcap(pcap, &config, Destination::of(args, &config))?,
        None => live(args, &config).await?,
    };
    print_counts(&http, &counts, args.responses);
    Ok(())
}

/// Unix time minus the monotonic clock: turns the capture's timestamps
/// into the file's.
fn wall_offset_ns() -> i64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    unix - crate::clock::monotonic_ns() as i64
}

impl Destination {
    fn of(args: &RecordArgs, config: &Config) -> Self {
        Self {
            output: args.output_plan(),
            route: config.live.shadows.route.clone(),
            responses: args.max_response_bytes(),
        }
    }
}

/// Ends every connection, completes the file and returns the counts.
fn finish(
    mut pipeline: Recording,
    recording: file::Recording,
    output: &Path,
) -> anyhow::Result<(HttpStats, RecordSnapshot)> {
    // Requests in progress on open connections are counted, not lost
    // silently; so are responses still awaited.
    pipeline.end_all();
    if let Some(responses) = pipeline.traffic_mut().response_sink_mut() {
        responses.end_all();
    }
    let http = pipeline.stats().http;
    // The recorder goes with the pipeline: the writer then sees the end.
    drop(pipeline);
    let counts = recording
        .finish()
        .with_context(|| format!("cannot complete {}", output.display()))?;
    Ok((http, counts))
}

async fn live(args: &RecordArgs, config: &Config) -> anyhow::Result<(HttpStats, RecordSnapshot)> {
    let options = agent::capture_options(config, args.responses)?;
    let mut signals = StopSignals::new()?;
    let mut capture = Capture::start(&options)?;
    let filter = agent::filter_of(capture.take_filter());
    let (mut pipeline, recording) = agent::recording(
        Destination::of(args, config),
        config,
        wall_offset_ns(),
        filter,
        false,
    )?;
    info!(iface = %options.iface, ports = ?options.ports, output = %args.output.display(), responses = args.responses, "recording");
    let stop = async {
        let name = signals.next().await;
        info!("{name} received, detaching; the file is being completed");
    };
    capture.run(&mut pipeline, stop, DRAIN_INTERVAL).await?;
    let kernel = capture.kernel_counters()?;
    drop(capture);
    let counts = finish(pipeline, recording, &args.output)?;
    println!("kernel counters: {kernel}");
    Ok(counts)
}

/// A packet capture → a recording (`record --input-pcap`).
fn from_pcap(
    pcap: &Path,
    config: &Config,
    destination: Destination,
) -> anyhow::Result<(HttpStats, RecordSnapshot)> {
    let ports = config.startup.capture.ports.clone();
    if ports.is_empty() {
        return Err(InvalidConfig("--input-pcap needs --port (the service port)".into()).into());
    }
    let mut reader =
        PacketReader::open(pcap).with_context(|| format!("cannot read {}", pcap.display()))?;
    // The capture file's timestamps are Unix time already.
    let output = destination.output.pattern.clone();
    let responses = destination.responses.is_some();
    let (mut pipeline, recording) =
        agent::recording(destination, config, 0, Box::new(NoFilter), true)?;
    let mut segments = Segments::new(ports, responses);
    while let Some(packet) = reader
        .next_packet()
        .with_context(|| format!("cannot read {}", pcap.display()))?
    {
        segments.emit(&packet, &mut pipeline);
        pipeline.on_batch_end(packet.timestamp_ns);
    }
    let packets = segments.stats;
    info!(
        packets = packets.packets,
        matched = packets.matched,
        other = packets.other,
        cut_bytes = packets.cut_bytes,
        "packet capture read"
    );
    for note in segments.notes(&reader) {
        warn!("{}: {note}", pcap.display());
    }
    finish(pipeline, recording, &output)
}

/// The framing's counts: requests found, and those skipped by reason.
pub(super) fn capture_line(http: &HttpStats) -> String {
    let skipped: Vec<String> = http
        .dropped
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    format!(
        "requests_captured={} requests_skipped={}{}",
        http.requests,
        http.dropped.total(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(" "))
        }
    )
}

fn print_counts(http: &HttpStats, counts: &RecordSnapshot, responses: bool) {
    let capture = capture_line(http);
    info!("final counts: capture: {capture}");
    info!(
        target = file::recorder::RECORDING_TARGET,
        "final counts: {counts}"
    );
    println!("final counts: capture: {capture}");
    println!(
        "final counts: target={} {counts}",
        file::recorder::RECORDING_TARGET
    );
    if responses {
        let line = counts.responses_line();
        info!("final counts: {line}");
        println!("final counts: {line}");
    }
}
