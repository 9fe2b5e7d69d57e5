//! `mirror-agent record`: the capture (or a packet capture file) → flow →
//! http → the recording sink ([`crate::file::Recorder`]) instead of the
//! shadows. Ends on SIGTERM/SIGINT (live) or at the end of the pcap; the
//! file is completed before the final counts are printed.

use std::sync::Arc;

use anyhow::Context as _;
use tracing::info;

use super::Pipeline;
use super::signals::StopSignals;
use crate::capture::{Capture, DRAIN_INTERVAL, EventSink as _, NoFilter};
use crate::config::{Config, InvalidConfig, RecordArgs};
use crate::file::{self, PacketReader, RecordSnapshot, Segments};
use crate::flow::FlowTable;
use crate::http::{Framing, HttpStats};
use crate::telemetry::{PipelineStats, endpoint::Readiness};

pub(super) async fn run(args: &RecordArgs, config: Config) -> anyhow::Result<()> {
    let (http, counts) = match &args.input_pcap {
        Some(pcap) => from_pcap(args, &config, pcap)?,
        None => live(args, &config).await?,
    };
    print_counts(&http, &counts);
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

async fn live(args: &RecordArgs, config: &Config) -> anyhow::Result<(HttpStats, RecordSnapshot)> {
    let options = config.startup.capture.options()?;
    let mut signals = StopSignals::new()?;
    let mut capture = Capture::start(&options)?;
    let (recorder, recording) = file::record(
        args.output_plan(),
        config.live.shadows.route.clone(),
        wall_offset_ns(),
    )
    .with_context(|| format!("cannot write {}", args.output.display()))?;
    info!(iface = %options.iface, ports = ?options.ports, output = %args.output.display(), "recording");
    let mut pipeline = Pipeline::new(
        config.startup.flow.clone(),
        config.startup.http.clone(),
        recorder,
        match capture.take_filter() {
            Some(filter) => Box::new(filter),
            None => Box::new(NoFilter),
        },
        Arc::new(PipelineStats::default()),
        Arc::new(Readiness::default()),
    );
    let stop = async {
        let name = signals.next().await;
        info!("{name} received, detaching; the file is being completed");
    };
    capture.run(&mut pipeline, stop, DRAIN_INTERVAL).await?;
    // Requests in progress on open connections are counted, not lost
    // silently.
    pipeline.end_all();
    let kernel = capture.kernel_counters()?;
    drop(capture);
    let http = pipeline.stats().http;
    // The recorder goes with the pipeline: the writer then sees the end.
    drop(pipeline);
    let counts = recording
        .finish()
        .with_context(|| format!("cannot complete {}", args.output.display()))?;
    println!("kernel counters: {kernel}");
    Ok((http, counts))
}

fn from_pcap(
    args: &RecordArgs,
    config: &Config,
    pcap: &std::path::Path,
) -> anyhow::Result<(HttpStats, RecordSnapshot)> {
    let ports = config.startup.capture.ports.clone();
    if ports.is_empty() {
        return Err(InvalidConfig("--input-pcap needs --port (the service port)".into()).into());
    }
    let mut reader =
        PacketReader::open(pcap).with_context(|| format!("cannot read {}", pcap.display()))?;
    // The capture file's timestamps are Unix time already.
    let (recorder, recording) =
        file::record(args.output_plan(), config.live.shadows.route.clone(), 0)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    let mut table = FlowTable::new(
        config.startup.flow.clone(),
        Framing::new(config.startup.http.clone(), recorder),
    );
    let mut segments = Segments::new(ports, false);
    while let Some(packet) = reader
        .next_packet()
        .with_context(|| format!("cannot read {}", pcap.display()))?
    {
        segments.emit(&packet, &mut table);
        table.on_batch_end(packet.timestamp_ns);
    }
    table.end_all();
    let http = *table.consumer().stats();
    let packets = segments.stats;
    info!(
        packets = packets.packets,
        matched = packets.matched,
        other = packets.other,
        cut_bytes = packets.cut_bytes,
        "packet capture read"
    );
    drop(table);
    let counts = recording
        .finish()
        .with_context(|| format!("cannot complete {}", args.output.display()))?;
    Ok((http, counts))
}

fn print_counts(http: &HttpStats, counts: &RecordSnapshot) {
    let skipped: Vec<String> = http
        .dropped
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    let capture = format!(
        "requests_captured={} requests_skipped={}{}",
        http.requests,
        http.dropped.total(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.join(" "))
        }
    );
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
}
