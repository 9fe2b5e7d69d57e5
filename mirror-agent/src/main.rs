//! `mirror-agent`: attach the capture program to an interface and mirror the
//! HTTP requests it sees to shadow targets.
//!
//! Start-up order: configuration (fails before touching the kernel), the
//! capture, the metrics endpoint, the shadow targets. Shutdown order: detach first
//! (production never waits on us), drain the ring, drain the shadow queues up
//! to `--drain-timeout`, log the final counts, exit 0. SIGHUP reloads the
//! configuration file without detaching.
//!
//! Exit status: 0 after a signal, 2 for a bad or incomplete configuration
//! (as for a bad flag), 1 for anything else.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use mirror_agent::{
    capture::{Capture, DRAIN_INTERVAL},
    config::{self, Cli, Command, Config, HumanDuration, InvalidConfig},
    flow::FlowTable,
    logging::{self, Logging},
    metrics::{self, BuildInfo, PipelineStats, Readiness, ReloadStats, Sources},
    pipeline::{LoggedRouter, Pipeline},
    route::RouterHandle,
    summary,
};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    task::JoinHandle,
};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    let config = match cli.load() {
        Ok(config) => config,
        Err(err) => {
            // The configuration says how to log; without one, the flags do.
            let level = cli.log_level.as_ref().map_or("info", |l| l.0.as_str());
            logging::init(cli.log_format, level, false);
            return fail(&err.into());
        }
    };
    let logging = logging::init(
        config.log_format,
        &config.log_level,
        config.log_requests.basis_points() > 0,
    );
    // Before any thread exists, so that every thread inherits it.
    match lower_priority(config.nice) {
        Ok(nice) => tracing::debug!(nice, "agent CPU priority set"),
        Err(err) => warn!(
            "cannot lower the agent's CPU priority to nice {}: {err}",
            config.nice
        ),
    }
    // One thread: the agent shares its host's CPUs with the primary, and a
    // second worker thread was woken (~25-40 us of CPU each time on a VM)
    // whenever the first had more tasks than it was running. One thread
    // captures ~800k small requests/s (capture-only) — beyond a sidecar's
    // needs.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, config, logging));
    // Everything was drained or given up on: do not wait for stragglers
    // (a name resolution in progress, a reload's background drain).
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// One error line per problem for the operator, causes chained on it.
fn fail(err: &anyhow::Error) -> ExitCode {
    if let Some(invalid) = err.downcast_ref::<InvalidConfig>() {
        for line in invalid.0.lines() {
            error!("{line}");
        }
        return ExitCode::from(2);
    }
    error!("{err:#}");
    ExitCode::FAILURE
}

/// `mirror-agent check-config FILE`: the effective configuration on
/// stdout, or every error on stderr (status 1).
fn check_config(file: &Path) -> ExitCode {
    match config::check_config(file) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            for line in err.0.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT. Registered (with SIGHUP) before anything is
/// attached: from then on no signal ends the process without a detach.
struct Signals {
    term: Signal,
    int: Signal,
}

fn listen(kind: SignalKind) -> anyhow::Result<Signal> {
    signal(kind).context("cannot listen for signals")
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    /// Resolves on SIGTERM or SIGINT; returns its name.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice`, never raising it
/// (a higher niceness set by whoever started the agent is kept); the
/// resulting nice value.
fn lower_priority(nice: i32) -> std::io::Result<i32> {
    // SAFETY: plain syscalls about the calling thread; errno is cleared
    // first because -1 is also a valid nice value.
    unsafe {
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        if current == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if current >= nice {
            return Ok(current);
        }
        if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(nice)
}

async fn run(cli: Cli, config: Config, logging: Logging) -> anyhow::Result<()> {
    let options = config.capture_options()?;
    let mut signals = Signals::new()?;
    let hup = listen(SignalKind::hangup())?;
    let readiness = Arc::new(Readiness::default());
    let stats = Arc::new(PipelineStats::default());
    let reloads = Arc::new(ReloadStats::default());

    // Privileges, interface and kernel are checked first: the commonest
    // mistakes fail fast with one line. Until the pipeline drains it, the
    // ring holds what arrives.
    let mut capture = Capture::start(&options)?;
    readiness.attached.store(true, Ordering::Relaxed);
    let listener = metrics::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", config.metrics_addr))?;
    let shadows = RouterHandle::start(config.route.clone()).await;
    check_self_mirroring(&shadows, &config)?;
    readiness.config_loaded.store(true, Ordering::Relaxed);

    let sources = Sources {
        kernel: Some(capture.counter_reader()),
        pipeline: Arc::clone(&stats),
        targets: metrics::target_source(shadows.clone()),
        reloads: Arc::clone(&reloads),
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
    let summary_task = tokio::spawn(summary::run(sources.clone(), config.stats_interval));

    let log_share = Arc::new(AtomicU32::new(config.log_requests.basis_points()));
    let router = LoggedRouter::new(shadows.clone(), Arc::clone(&log_share));
    let table = FlowTable::new(config.flow.clone(), router);
    let mut pipeline = Pipeline::new(table, Arc::clone(&stats), Arc::clone(&readiness));

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
        name = signals.stop() => {
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
    pipeline.table_mut().end_all();
    pipeline.publish();
    let kernel = capture.kernel_counters()?;
    drop(capture);

    let drain = reloader.running().drain_timeout;
    info!(
        drain_timeout = %HumanDuration(drain),
        "draining the shadow queues (a second signal stops now)"
    );
    let targets = tokio::select! {
        targets = shadows.shutdown(drain) => targets,
        name = signals.stop() => {
            warn!("{name} received again: not waiting for the shadow queues");
            shadows.stats()
        }
    };
    reloader.summary_task().abort();
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

/// Applies a new configuration on SIGHUP.
struct Reloader {
    cli: Cli,
    /// What runs now (settings that need a restart keep their start value).
    running: Mutex<Config>,
    shadows: RouterHandle,
    logging: Logging,
    log_share: Arc<AtomicU32>,
    reloads: Arc<ReloadStats>,
    sources: Sources,
    summary: Mutex<JoinHandle<()>>,
}

impl Reloader {
    fn running(&self) -> Config {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn summary_task(&self) -> std::sync::MutexGuard<'_, JoinHandle<()>> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn listen(self: Arc<Self>, mut hup: Signal) {
        while hup.recv().await.is_some() {
            self.reload().await;
        }
    }

    async fn reload(&self) {
        let Some(file) = &self.cli.config else {
            warn!("SIGHUP received, but there is no --config file to read again");
            return;
        };
        info!(file = %file.display(), "SIGHUP received, reading the configuration again");
        let new = match self.cli.load().and_then(|c| c.capture_options().map(|_| c)) {
            Ok(new) => new,
            Err(err) => {
                for line in err.0.lines() {
                    error!("{line}");
                }
                self.reloads.rejected.fetch_add(1, Ordering::Relaxed);
                error!(
                    file = %file.display(),
                    "configuration rejected; the running configuration stays"
                );
                return;
            }
        };
        let old = self.running();
        let restart = old.restart_needed(&new);
        if !restart.is_empty() {
            warn!(
                keys = %restart.join(", "),
                "these settings changed but need a restart (the capture stays attached \
                 as it is): {}",
                restart.join(", ")
            );
        }
        if new.route != old.route {
            self.shadows.reload(new.route.clone()).await;
        }
        let requests = new.log_requests.basis_points();
        let level_changed = new.log_level != old.log_level
            || (requests > 0) != (old.log_requests.basis_points() > 0);
        if level_changed && let Err(err) = self.logging.set_level(&new.log_level, requests > 0) {
            warn!("the log level cannot change: {err}");
        }
        self.log_share.store(requests, Ordering::Relaxed);
        if new.stats_interval != old.stats_interval {
            let mut task = self.summary_task();
            task.abort();
            *task = tokio::spawn(summary::run(self.sources.clone(), new.stats_interval));
        }
        let mut running = new;
        // What needs a restart keeps running as it started.
        running.iface = old.iface;
        running.ports = old.ports;
        running.sample = old.sample;
        running.ring_bytes = old.ring_bytes;
        running.attach = old.attach;
        running.log_format = old.log_format;
        running.metrics_addr = old.metrics_addr;
        running.flow = old.flow;
        let targets = running.route.targets.len();
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = running;
        self.reloads.applied.fetch_add(1, Ordering::Relaxed);
        info!(
            file = %file.display(),
            targets,
            "configuration reloaded"
        );
    }
}

/// A target that is the captured service itself would receive its own
/// mirrored requests back through the capture. The marker header stops
/// that loop; without it the agent refuses to start.
fn check_self_mirroring(shadows: &RouterHandle, config: &Config) -> anyhow::Result<()> {
    let Some(iface) = &config.iface else {
        return Ok(());
    };
    let services: Vec<SocketAddr> = interface_addresses(iface)
        .into_iter()
        .flat_map(|ip| {
            config
                .ports
                .iter()
                .map(move |port| SocketAddr::new(ip, *port))
        })
        .collect();
    let looping = shadows.targets_pointing_at(&services);
    if looping.is_empty() {
        return Ok(());
    }
    if config.route.marker.is_none() {
        return Err(InvalidConfig(format!(
            "shadow target {} is the captured service itself ({iface}, port {:?}): without a \
             marker header its mirrored requests would be mirrored again forever",
            looping.join(", "),
            config.ports
        ))
        .into());
    }
    warn!(
        targets = %looping.join(", "),
        "a shadow target is the captured service itself: the marker header keeps its \
         mirrored requests from being mirrored again"
    );
    Ok(())
}

/// The IP addresses of an interface (getifaddrs).
fn interface_addresses(iface: &str) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs; every
    // pointer read is checked for null and belongs to that list.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return addresses;
        }
        let mut entry = list;
        while !entry.is_null() {
            let ifa = &*entry;
            entry = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            if std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() != iface.as_bytes() {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    addresses.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    addresses.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(list);
    }
    addresses
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
