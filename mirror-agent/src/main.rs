//! `mirror-agent`: attach the capture program to an interface and mirror the
//! HTTP requests it sees to shadow targets.
//!
//! Start-up order: configuration (fails before touching the kernel), the
//! capture, the metrics endpoint, the shadow targets. Shutdown order: detach first
//! (production never waits on us), drain the ring, drain the shadow queues up
//! to `--drain-timeout`, log the final counts, exit 0.

use std::{
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
};

use anyhow::Context as _;
use clap::Parser;
use mirror_agent::{
    capture::{Capture, CaptureOptions, DEFAULT_RING_BYTES, DRAIN_INTERVAL},
    config::Cli,
    flow::{FlowConfig, FlowTable},
    logging,
    metrics::{
        self, BuildInfo, HistogramSnapshot, PipelineStats, Readiness, Sources, TargetSnapshot,
    },
    pipeline::Pipeline,
    route::RouterHandle,
    shadow::{DropReason, FilterReason, StatusClass},
    summary,
};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mirror-shadow")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One clear line for the operator, causes chained on it.
            error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let routing = cli.mirror.route_config()?;
    let readiness = Arc::new(Readiness::default());
    let stats = Arc::new(PipelineStats::default());

    let mut options = CaptureOptions::new(cli.iface.clone(), cli.port.clone());
    options.sample_bp = cli.sample_basis_points();
    options.ring_bytes = cli.ring_size.unwrap_or(DEFAULT_RING_BYTES);
    options.attach = cli.attach;

    // Privileges, interface and kernel are checked first: the commonest
    // mistakes fail fast with one line. Until the pipeline drains it, the
    // ring holds what arrives.
    let mut capture = Capture::start(&options)?;
    readiness.attached.store(true, Ordering::Relaxed);
    let listener = metrics::bind(cli.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", cli.metrics_addr))?;
    let shadows = RouterHandle::start(routing).await;
    readiness.config_loaded.store(true, Ordering::Relaxed);

    let sources = Sources {
        kernel: Some(capture.counter_reader()),
        pipeline: Arc::clone(&stats),
        targets: target_source(shadows.clone()),
        build: BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            kernel: kernel_release(),
            attach_mode: capture.attach_mode().as_str(),
        },
    };
    let metrics_task = tokio::spawn(metrics::serve(
        listener,
        sources.clone(),
        Arc::clone(&readiness),
    ));
    let summary_task = tokio::spawn(summary::run(sources, cli.stats_interval.0));

    let table = FlowTable::new(FlowConfig::default(), shadows.router());
    let mut pipeline = Pipeline::new(table, Arc::clone(&stats), Arc::clone(&readiness));
    capture
        .run(&mut pipeline, shutdown_signal(), DRAIN_INTERVAL)
        .await?;
    readiness.attached.store(false, Ordering::Relaxed);

    // Connections still open: requests in progress are counted, not lost
    // silently.
    pipeline.table_mut().end_all();
    pipeline.publish();
    let kernel = capture.kernel_counters()?;
    drop(capture);

    let targets = shadows.shutdown(cli.drain_timeout.0).await;
    summary_task.abort();
    metrics_task.abort();

    let pipeline_stats = stats.get();
    info!(
        requests_captured = pipeline_stats.http.requests,
        requests_skipped = pipeline_stats.http.dropped.total(),
        flows = pipeline_stats.flow.flows_started,
        kernel = %kernel,
        "final counts: capture"
    );
    for (name, snapshot) in &targets {
        if !snapshot.balances() {
            warn!(target = %name, "accounting does not balance: {snapshot}");
        }
        info!(target = %name, "final counts: {snapshot}");
    }
    println!("kernel counters: {kernel}");
    Ok(())
}

/// Reads the targets' atomics into the shape the metrics module exports.
fn target_source(shadows: RouterHandle) -> metrics::TargetSource {
    Arc::new(move || {
        shadows
            .targets()
            .iter()
            .map(|target| {
                let s = target.stats().snapshot();
                let mut outcomes = Vec::with_capacity(
                    StatusClass::COUNT + FilterReason::COUNT + DropReason::COUNT,
                );
                for class in StatusClass::ALL {
                    outcomes.push((class.as_str(), s.sent_by(*class)));
                }
                for reason in FilterReason::ALL {
                    outcomes.push((reason.as_str(), s.filtered_by(*reason)));
                }
                for reason in DropReason::ALL {
                    outcomes.push((reason.as_str(), s.dropped_by(*reason)));
                }
                TargetSnapshot {
                    name: target.name().to_string(),
                    outcomes,
                    queue_depth: s.queue_depth as i64,
                    latency: HistogramSnapshot {
                        sum_seconds: s.latency.sum_seconds,
                        count: s.latency.count,
                        buckets: s.latency.cumulative().collect(),
                    },
                }
            })
            .collect()
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            error!("cannot listen for SIGTERM: {err}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, detaching"),
        _ = term.recv() => info!("SIGTERM received, detaching"),
    }
}
