//! The agent as a process: the command chosen, logging, the runtime,
//! signals, the start-up and shutdown order, and the exit status. The
//! stages themselves are built from the configuration in one place
//! ([`agent`]); live mirroring here, `record` and `replay` take them from
//! there. `main.rs` only parses the command line and turns the outcome
//! into an exit status.
//!
//! Start-up order: configuration (fails before touching the kernel), the
//! capture, the metrics endpoint, the shadow targets. Shutdown order: detach
//! first (production never waits on us), drain the ring, drain the shadow
//! queues up to `--drain-timeout`, log the final counts. SIGHUP reloads the
//! configuration file without detaching ([`reload`]).

mod agent;
mod compare_report;
mod fleet;
mod host;
mod http_get;
mod pipeline;
mod progress;
mod reading;
mod record;
mod reload;
mod replay;
mod signals;
mod verdict;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::SignalKind;
use tracing::{error, info, warn};

pub use agent::Chain;
pub use pipeline::Pipeline;

use crate::capture::{Capture, DRAIN_INTERVAL};
use crate::config::{self, Cli, Command, Config, HumanDuration, InvalidConfig};
use crate::shadow::Shadows;
use crate::telemetry::{
    PipelineStats, ReloadStats, endpoint, endpoint::Readiness, logging, summary,
};
use agent::Mirroring;
use reload::Reloader;
use signals::StopSignals;

/// Why the agent did not run to a clean end; each says its exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A bad or incomplete configuration (status 2, as for a bad flag).
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// `check-config` found problems (status 1).
    #[error(transparent)]
    CheckConfig(InvalidConfig),
    /// Anything else (status 1).
    #[error(transparent)]
    Run(anyhow::Error),
    /// `verdict` did not pass: its exit status (1 fail, 2 inconclusive,
    /// 3 cannot tell), the line already printed.
    #[error("the gate did not pass (exit status {0})")]
    Gate(u8),
}

impl From<anyhow::Error> for Failure {
    /// A configuration found unusable only once running (no interface, a
    /// target that is the service itself) is still a bad configuration.
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<InvalidConfig>() {
            Ok(invalid) => Failure::Config(invalid),
            Err(err) => Failure::Run(err),
        }
    }
}

impl Failure {
    pub fn exit_status(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::CheckConfig(_) | Failure::Run(_) => 1,
            Failure::Gate(status) => *status,
        }
    }
}

/// Runs what the command line asks for; every problem has been reported
/// (logged, or printed for `check-config`) when this returns.
pub fn main(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file),
        Some(Command::CompareReport(args)) => {
            return compare_report::run(&args.base_url(), args.json).map_err(|err| {
                eprintln!("error: {err:#}");
                Failure::Run(err)
            });
        }
        Some(Command::Verdict(args)) => {
            return match verdict::run(args) {
                0 => Ok(()),
                status => Err(Failure::Gate(status)),
            };
        }
        Some(Command::Record(args)) => {
            let config = load_logged(args.load(), &args.agent)?;
            return run_to_end(record::run(args, config));
        }
        Some(Command::Replay(args)) => {
            let config = load_logged(args.load(), &args.mirror.agent)?;
            return run_to_end(replay::run(args, config));
        }
        None => {}
    }
    let config = match cli.load() {
        Ok(config) => config,
        Err(err) => {
            // The configuration says how to log; without one, the flags do.
            let level = cli
                .mirror
                .agent
                .log_level
                .as_ref()
                .map_or("info", |l| l.0.as_str());
            logging::init(cli.mirror.agent.log_format, level, false);
            return Err(report(err.into()));
        }
    };
    let logging = logging::init(
        config.startup.log_format,
        &config.live.log_level,
        config.live.log_requests.basis_points() > 0,
    );
    install_redaction(&config.live.compare.redaction);
    match host::raise_fd_limit() {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => warn!("cannot raise the open file limit: {err}"),
    }
    // Before any thread exists, so that every thread inherits it.
    match host::lower_priority(config.startup.nice) {
        Ok(nice) => tracing::debug!(nice, "agent CPU priority set"),
        Err(err) => warn!(
            "cannot lower the agent's CPU priority to nice {}: {err}",
            config.startup.nice
        ),
    }
    // One thread: the agent shares its host's CPUs with the primary, and a
    // second worker thread was woken whenever the first had more tasks
    // than it was running (docs/design-notes.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|err| report(err.into()))?;
    let result = runtime.block_on(run(cli, config, logging));
    // Everything was drained or given up on: do not wait for stragglers
    // (a name resolution in progress, a reload's background drain).
    runtime.shutdown_timeout(Duration::from_millis(100));
    result.map_err(|err| report(err.into()))
}

/// A subcommand's configuration, and the logging it asks for.
fn load_logged(
    loaded: Result<Config, InvalidConfig>,
    flags: &config::AgentSection,
) -> Result<Config, Failure> {
    match loaded {
        Ok(config) => {
            logging::init(config.startup.log_format, &config.live.log_level, false);
            install_redaction(&config.live.compare.redaction);
            Ok(config)
        }
        Err(err) => {
            let level = flags.log_level.as_ref().map_or("info", |l| l.0.as_str());
            logging::init(flags.log_format, level, false);
            Err(report(err.into()))
        }
    }
}

/// Makes the configuration's redaction policy the process's (at start
/// and on reload), with a warning when the built-in names are dropped.
fn install_redaction(policy: &crate::redact::Policy) {
    if !policy.has_defaults() {
        warn!(
            "--no-default-redaction: only the --redact-* names are hidden; tokens, passwords, \
             API keys and cookies may be written to the diff log, the report and recordings"
        );
    }
    crate::redact::install(policy.clone());
}

/// Runs a subcommand that ends on its own (record, replay) on the agent's
/// one-thread runtime.
fn run_to_end(task: impl std::future::Future<Output = anyhow::Result<()>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(|err| report(err.into()))?;
    let result = runtime.block_on(task);
    runtime.shutdown_timeout(Duration::from_millis(100));
    result.map_err(|err| report(err.into()))
}

/// Logs a failure: one error line per problem, causes chained on it.
fn report(failure: Failure) -> Failure {
    match &failure {
        Failure::Config(invalid) => {
            for line in invalid.0.lines() {
                error!("{line}");
            }
        }
        Failure::Run(err) => error!("{err:#}"),
        Failure::CheckConfig(_) | Failure::Gate(_) => {}
    }
    failure
}

/// `mirror-agent check-config FILE`: the effective configuration on
/// stdout, or every error on stderr.
fn check_config(file: &std::path::Path) -> Result<(), Failure> {
    match config::check_config(file) {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(err) => {
            for line in err.0.lines() {
                eprintln!("error: {line}");
            }
            Err(Failure::CheckConfig(err))
        }
    }
}

/// Start, run until a stop signal (or a capture failure), shut down.
async fn run(cli: Cli, config: Config, logging: logging::Logging) -> anyhow::Result<()> {
    let options = agent::capture_options(&config, Mirroring::wants_responses(&config))?;
    let mut signals = StopSignals::new()?;
    let hup = signals::listen(SignalKind::hangup())?;
    let readiness = Arc::new(Readiness::default());
    let stats = Arc::new(PipelineStats::default());
    let reloads = Arc::new(ReloadStats::default());

    // Privileges, interface and kernel are checked first: the commonest
    // mistakes fail fast with one line. Until the pipeline drains it, the
    // ring holds what arrives.
    let mut capture = Capture::start(&options)?;
    readiness.attached.store(true, Ordering::Relaxed);
    let metrics_addr = config.startup.metrics_addr;
    let listener = endpoint::bind(metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {metrics_addr}"))?;
    let mirroring = Mirroring::start(&config).await?;
    let shadows = mirroring.shadows.clone();
    check_self_mirroring(&shadows, &config)?;
    readiness.config_loaded.store(true, Ordering::Relaxed);

    let compare = mirroring.engine.clone();
    let sources = mirroring.sources(
        Some(capture.counter_reader()),
        Arc::clone(&stats),
        Arc::clone(&reloads),
        capture.attach_mode().as_str(),
    );
    let endpoint_task = tokio::spawn(endpoint::serve(
        listener,
        sources.clone(),
        Arc::clone(&readiness),
    ));
    let summary_task = tokio::spawn(summary::run(sources.clone(), config.live.stats_interval));

    let log_share = Arc::new(AtomicU32::new(config.live.log_requests.basis_points()));
    let traffic = mirroring.traffic(&config, agent::filter_of(capture.take_filter()), &log_share);
    let mut pipeline = Pipeline::new(traffic, Arc::clone(&stats), Arc::clone(&readiness));

    let reloader = Arc::new(Reloader {
        cli,
        running: Mutex::new(config),
        shadows: shadows.clone(),
        logging,
        log_share,
        reloads,
        sources,
        summary: Mutex::new(summary_task),
    });
    let reload_task = tokio::spawn(Arc::clone(&reloader).listen(hup));

    // The capture loop is a task of its own: it ends on a stop signal, or
    // on its own if the capture fails.
    let (detach, detach_requested) = tokio::sync::oneshot::channel::<()>();
    let mut capture_task = tokio::spawn(async move {
        let stop = async {
            let _ = detach_requested.await;
        };
        let result = capture.run(&mut pipeline, stop, DRAIN_INTERVAL).await;
        (capture, pipeline, result)
    });
    let ended = tokio::select! {
        name = signals.next() => {
            info!("{name} received, detaching");
            let _ = detach.send(());
            capture_task.await
        }
        // The capture failed on its own (it only ends early on an error).
        ended = &mut capture_task => ended,
    };
    let (capture, mut pipeline, result) = ended.context("the capture task panicked")?;
    result?;
    readiness.attached.store(false, Ordering::Relaxed);
    reload_task.abort();

    // Connections still open: requests in progress are counted, not lost
    // silently.
    pipeline.end_all();
    pipeline.publish();
    let kernel = capture.kernel_counters()?;
    drop(capture);

    let drain = reloader.running().live.drain_timeout;
    info!(
        drain_timeout = %HumanDuration(drain),
        "draining the shadow queues (a second signal stops now)"
    );
    let shutdown = shadows.shutdown(drain);
    tokio::pin!(shutdown);
    let targets = tokio::select! {
        targets = &mut shutdown => targets,
        name = signals.next() => {
            warn!("{name} received again: not waiting for the shadow queues");
            // What is queued or in flight is counted as dropped, so the
            // final counts balance.
            shadows.stop_now();
            shutdown.await
        }
    };
    reloader.summary_task().abort();
    endpoint_task.abort();
    if let Some(engine) = &compare {
        // What still waits is judged with what it has.
        engine.finish();
    }

    let pipeline_stats = pipeline.stats();
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
    if let Some(engine) = &compare {
        for line in engine.verdict_lines() {
            info!("final counts: comparison: {line}");
        }
    }
    println!("kernel counters: {kernel}");
    Ok(())
}

/// A target that is the captured service itself would receive its own
/// mirrored requests back through the capture. The marker header stops
/// that loop; without it the agent refuses to start.
fn check_self_mirroring(shadows: &Shadows, config: &Config) -> Result<(), InvalidConfig> {
    let capture = &config.startup.capture;
    let Some(iface) = &capture.iface else {
        return Ok(());
    };
    let services: Vec<SocketAddr> = host::interface_addresses(iface)
        .into_iter()
        .flat_map(|ip| {
            capture
                .ports
                .iter()
                .map(move |port| SocketAddr::new(ip, *port))
        })
        .collect();
    let looping = shadows.targets_pointing_at(&services);
    if looping.is_empty() {
        return Ok(());
    }
    if config.live.shadows.route.marker.is_none() {
        return Err(InvalidConfig(format!(
            "shadow target {} is the captured service itself ({iface}, port {:?}): without a \
             marker header its mirrored requests would be mirrored again forever",
            looping.join(", "),
            capture.ports
        )));
    }
    warn!(
        targets = %looping.join(", "),
        "a shadow target is the captured service itself: the marker header keeps its \
         mirrored requests from being mirrored again"
    );
    Ok(())
}
