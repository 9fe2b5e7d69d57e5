//! The ways of mirroring compared, each started fresh for a run and
//! measured over it: nothing (baseline), mirror-agent capture-only,
//! mirror-agent replaying to 1 or 2 shadows (or to 1 over https), nginx `mirror` as an inline
//! proxy, goreplay (to the shadows, or to `--output-null`), and the floor
//! of what any mirror built like the agent pays here (`floor-1`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{Agent, Metrics, Process, Signal, TargetCounts, metrics::REQUESTS_CAPTURED};

use super::{
    floor::{self, Floor},
    hosts::{
        Hosts, Nginx, PRIMARY_ADDR, PRIMARY_CPU, PRIMARY_IFACE, PRIMARY_PORT, PROXY_PORT,
        SHADOW_ADDR, SHADOW_PORT, pinned, shadow_ca_file, shadow_tls_url, shadow_url, spawn_pinned,
    },
    probe::{self, BpfStats},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The client talks to v1, nothing attached.
    Baseline,
    /// mirror-agent attached, `--dry-run` with one shadow configured: every
    /// request is captured, reassembled, routed and counted as `dry_run`.
    CaptureOnly,
    /// mirror-agent replaying to this many shadows.
    Replay(usize),
    /// mirror-agent replaying to this many shadows with `--compare`: v1's
    /// responses captured at egress, every answer compared with v1's.
    Compare(usize),
    /// mirror-agent replaying to the first shadow over https (the same
    /// nginx, its TLS port, the certificate verified against the bench's
    /// CA): CPU per mirrored request with TLS, against `replay-1`.
    ReplayTls,
    /// The client talks to an nginx proxy beside v1 whose `mirror`
    /// subrequests copy each request to one shadow.
    NginxMirror,
    /// `gor --input-raw :80 --output-http SHADOW` (one shadow).
    Goreplay(PathBuf),
    /// `gor --input-raw :80 --output-null`: capture and parse only.
    GoreplayNull(PathBuf),
    /// No mirror: a thread on the agent's CPU sends the scenario's rate of
    /// the client's request to the first shadow on the agent's 1 ms clock
    /// (`floor.rs`); fixed rates only, and only when asked for.
    Floor,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Baseline => f.write_str("baseline"),
            Mode::CaptureOnly => f.write_str("capture-only"),
            Mode::Replay(n) => write!(f, "replay-{n}"),
            Mode::Compare(n) => write!(f, "compare-{n}"),
            Mode::ReplayTls => f.write_str("replay-tls"),
            Mode::NginxMirror => f.write_str("nginx-mirror"),
            Mode::Goreplay(_) => f.write_str("goreplay"),
            Mode::GoreplayNull(_) => f.write_str("goreplay-null"),
            Mode::Floor => f.write_str("floor-1"),
        }
    }
}

impl Mode {
    /// Shadows that should receive a copy of every request.
    pub fn shadows(&self) -> usize {
        match self {
            Mode::Replay(n) | Mode::Compare(n) => *n,
            Mode::ReplayTls | Mode::NginxMirror | Mode::Goreplay(_) => 1,
            _ => 0,
        }
    }

    pub fn is_agent(&self) -> bool {
        matches!(
            self,
            Mode::CaptureOnly | Mode::Replay(_) | Mode::ReplayTls | Mode::Compare(_)
        )
    }
}

/// Settings of the agent under test.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub binary: PathBuf,
    /// `--ring-size`, when not the agent's default.
    pub ring_size: Option<String>,
}

/// A mirroring mode up and running.
pub struct Mirror {
    pub mode: Mode,
    process: Option<Process>,
    floor: Option<Floor>,
    /// The floor's requests written at the start.
    floor_start: u64,
    _proxy: Option<Nginx>,
    cpu_start: (f64, f64),
    /// CPU seconds of each of the process's threads at the start.
    threads_start: BTreeMap<String, f64>,
    wakeups_start: u64,
    /// Where this run's agent serves its metrics (a new port each run: a
    /// port just released may still be taken).
    metrics_port: u16,
    bpf_start: BpfStats,
    /// The programs attached at the primary's egress, and their stats at
    /// the start.
    egress_ids: Vec<u64>,
    bpf_egress_start: BpfStats,
}

/// What the mirroring process did over one run.
#[derive(Clone, Debug, Default)]
pub struct MirrorStats {
    /// CPU seconds (user + system) of the mirroring process: the agent,
    /// the nginx proxy or goreplay.
    pub cpu_seconds: f64,
    /// Of which in the kernel (system time: syscalls, and on a veth the
    /// receiving side's softirq work for what it sends).
    pub cpu_system_seconds: f64,
    /// Times its threads went to sleep and were woken again.
    pub wakeups: u64,
    /// CPU seconds of each thread (by name) over the run: which one is
    /// full.
    pub threads_cpu: BTreeMap<String, f64>,
    /// Peak RSS (VmHWM) of that process since it started.
    pub peak_rss: u64,
    /// The kernel program's bpf_stats over the run (agent modes): every
    /// program, ingress and egress.
    pub bpf: BpfStats,
    /// Of which the egress program's (v1's responses; compare modes).
    pub bpf_egress: BpfStats,
    pub agent: Option<AgentCounts>,
    /// Requests the mirror sent of its own accord (the floor, which the
    /// client does not drive): per-request figures divide by these.
    pub sent_on_its_own: Option<u64>,
}

/// The agent's own counts at the end of a run (it started fresh).
#[derive(Clone, Debug, Default)]
pub struct AgentCounts {
    pub requests_captured: u64,
    /// Requests the framer lost, by reason (non-zero ones).
    pub skipped: BTreeMap<String, u64>,
    pub records_matched: u64,
    pub records_lost: u64,
    pub packets_matched: u64,
    pub targets: Vec<TargetRun>,
    /// `--compare`: pairs by result (`match`, `differ`, or why not
    /// compared), summed over the targets; empty without the comparison.
    pub compare: BTreeMap<String, u64>,
}

impl AgentCounts {
    /// Pairs compared (match or differ), with the comparison on.
    pub fn compared(&self) -> Option<u64> {
        (!self.compare.is_empty()).then(|| {
            self.compare.get("match").copied().unwrap_or(0)
                + self.compare.get("differ").copied().unwrap_or(0)
        })
    }
}

/// One target at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct TargetRun {
    pub name: String,
    /// `captured`, and the non-zero outcomes: status classes of sent
    /// requests, filter and drop reasons.
    pub counts: TargetCounts,
    /// `(le seconds, cumulative count)` of the capture → shadow send delay.
    pub send_delay: Vec<(f64, f64)>,
}

impl TargetRun {
    /// Drops by reason (not filters, not sent).
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        self.counts
            .outcomes
            .iter()
            .filter(|(k, _)| !k.ends_with("xx") && k.as_str() != "dry_run")
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

impl Mirror {
    /// `rate` and `request`: the scenario's, which the floor sends.
    pub fn start(
        mode: &Mode,
        hosts: &Hosts,
        agent: &AgentSettings,
        rate: Option<u32>,
        request: &[u8],
    ) -> Result<Mirror> {
        Self::start_with(mode, hosts, agent, rate, request, None)
    }

    /// The agent replaying to `url` alone (a shadow of the bench's own
    /// making, e.g. the body checker of `bodies.rs`), measured as
    /// `replay-1`.
    pub fn start_to(hosts: &Hosts, agent: &AgentSettings, url: &str) -> Result<Mirror> {
        Self::start_with(
            &Mode::Replay(1),
            hosts,
            agent,
            None,
            &[],
            Some(Targets::Url(url.to_owned())),
        )
    }

    fn start_with(
        mode: &Mode,
        hosts: &Hosts,
        agent: &AgentSettings,
        rate: Option<u32>,
        request: &[u8],
        targets: Option<Targets>,
    ) -> Result<Mirror> {
        static RUNS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let ports = super::hosts::METRICS_PORTS;
        let metrics_port = ports.start
            + RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (ports.end - ports.start);
        let floor = match (mode, rate) {
            (Mode::Floor, Some(rate)) => Some(Floor::start(
                &hosts.primary,
                floor::Plan {
                    cpu: PRIMARY_CPU,
                    shadow: format!("{}:{SHADOW_PORT}", SHADOW_ADDR[0]).parse()?,
                    rate,
                    // The agent's default in-flight cap per target: the
                    // connections it may open to one shadow.
                    connections: 32,
                    request: request.to_vec(),
                },
            )?),
            (Mode::Floor, None) => anyhow::bail!("the floor runs at fixed rates only"),
            _ => None,
        };
        // The agent, mirroring to `targets` with the `extra` flags.
        let start = |targets, extra: &[&str]| {
            start_agent(hosts, agent, targets, extra, metrics_port).map(|p| (Some(p), None))
        };
        let (process, proxy) = match mode {
            Mode::Baseline | Mode::Floor => (None, None),
            Mode::CaptureOnly => start(Targets::Http(1), &["--dry-run"])?,
            Mode::Replay(n) => start(targets.unwrap_or(Targets::Http(*n)), &[])?,
            Mode::ReplayTls => start(Targets::Https, &[])?,
            Mode::Compare(n) => start(Targets::Http(*n), &["--compare"])?,
            Mode::NginxMirror => (None, Some(Nginx::mirror_proxy(hosts, 1)?)),
            Mode::Goreplay(gor) | Mode::GoreplayNull(gor) => {
                let input = format!(":{PRIMARY_PORT}");
                let output = shadow_url(0);
                let mut args = vec!["--input-raw", input.as_str()];
                if matches!(mode, Mode::GoreplayNull(_)) {
                    args.push("--output-null");
                } else {
                    args.extend(["--output-http", output.as_str()]);
                }
                let gor = gor.display().to_string();
                let process = spawn_pinned(&hosts.primary, PRIMARY_CPU, "goreplay", &gor, &args)?;
                // gor says nothing when its capture is ready.
                std::thread::sleep(Duration::from_secs(2));
                (Some(process), None)
            }
        };
        let egress_ids = match (&process, mode.is_agent()) {
            (Some(process), true) => probe::egress_programs(process.pid()),
            _ => Vec::new(),
        };
        let mut mirror = Mirror {
            mode: mode.clone(),
            process,
            floor,
            floor_start: 0,
            _proxy: proxy,
            cpu_start: (0.0, 0.0),
            threads_start: BTreeMap::new(),
            wakeups_start: 0,
            metrics_port,
            bpf_start: BpfStats::default(),
            egress_ids,
            bpf_egress_start: BpfStats::default(),
        };
        mirror.begin()?;
        Ok(mirror)
    }

    /// The pid of the process doing the mirroring, if any.
    pub fn pid(&self) -> Option<u32> {
        self.process
            .as_ref()
            .map(Process::pid)
            .or_else(|| self._proxy.as_ref().map(|n| n.process.pid()))
    }

    /// Where the client sends its requests.
    pub fn url(&self) -> String {
        let port = if self.mode == Mode::NginxMirror {
            PROXY_PORT
        } else {
            PRIMARY_PORT
        };
        format!("http://{PRIMARY_ADDR}:{port}")
    }

    pub fn port(&self) -> u16 {
        if self.mode == Mode::NginxMirror {
            PROXY_PORT
        } else {
            PRIMARY_PORT
        }
    }

    /// Marks the start of the measured run.
    pub fn begin(&mut self) -> Result<()> {
        if let Some(floor) = &self.floor {
            self.cpu_start = probe::thread_cpu_split(floor.tid())?;
            self.wakeups_start = probe::thread_wakeups(floor.tid());
            self.floor_start = floor.sent();
        }
        if let Some(pid) = self.pid() {
            self.cpu_start = probe::cpu_split(pid)?;
            self.threads_start = probe::threads_cpu(pid);
            self.wakeups_start = probe::wakeups(pid);
            self.bpf_start = probe::bpf_stats(pid)?;
            self.bpf_egress_start = probe::bpf_stats_of(pid, Some(&self.egress_ids))?;
        }
        Ok(())
    }

    /// Waits until the mirror has sent what it will send: the agent's
    /// queues empty and its counts still; others a fixed second.
    pub fn settle(&self, hosts: &Hosts) -> Result<()> {
        if !self.mode.is_agent() {
            std::thread::sleep(Duration::from_secs(1));
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let metrics = scrape(hosts, self.metrics_port)?;
            let busy = metrics.sum("mirror_shadow_queue_depth", &[])
                + metrics.sum("mirror_shadow_in_flight", &[]);
            let captured = metrics.get(REQUESTS_CAPTURED, &[]);
            if busy == 0.0 && captured == last {
                return Ok(());
            }
            if Instant::now() > deadline {
                eprintln!("warning: the agent's queues did not drain within 30 s");
                return Ok(());
            }
            last = captured;
        }
    }

    /// The mirroring process's figures since [`begin`](Self::begin), then
    /// stops it.
    pub fn finish(mut self, hosts: &Hosts) -> Result<MirrorStats> {
        if let Some(floor) = self.floor.take() {
            let (user, system) = probe::thread_cpu_split(floor.tid())?;
            let stats = MirrorStats {
                cpu_seconds: user + system - self.cpu_start.0 - self.cpu_start.1,
                cpu_system_seconds: system - self.cpu_start.1,
                wakeups: probe::thread_wakeups(floor.tid()).saturating_sub(self.wakeups_start),
                sent_on_its_own: Some(floor.sent() - self.floor_start),
                ..MirrorStats::default()
            };
            floor.stop()?;
            return Ok(stats);
        }
        let Some(pid) = self.pid() else {
            return Ok(MirrorStats::default());
        };
        let (user, system) = probe::cpu_split(pid)?;
        let mut stats = MirrorStats {
            cpu_seconds: user + system - self.cpu_start.0 - self.cpu_start.1,
            cpu_system_seconds: system - self.cpu_start.1,
            wakeups: probe::wakeups(pid).saturating_sub(self.wakeups_start),
            threads_cpu: probe::threads_cpu(pid)
                .into_iter()
                .map(|(name, s)| {
                    let before = self.threads_start.get(&name).copied().unwrap_or(0.0);
                    (name, s - before)
                })
                .collect(),
            peak_rss: probe::peak_rss(pid)?,
            bpf: probe::bpf_stats(pid)?.since(self.bpf_start),
            bpf_egress: probe::bpf_stats_of(pid, Some(&self.egress_ids))?
                .since(self.bpf_egress_start),
            agent: None,
            sent_on_its_own: None,
        };
        if self.mode.is_agent() {
            stats.agent = Some(agent_counts(&scrape(hosts, self.metrics_port)?));
        }
        if let Some(mut process) = self.process.take() {
            let status = process.stop(Signal::INT, Duration::from_secs(15))?;
            if let Ok(path) = std::env::var("MIRROR_BENCH_AGENT_LOG") {
                let _ = std::fs::write(path, process.stderr_lines().join("\n"));
            }
            if self.mode.is_agent() {
                ensure!(
                    status.success(),
                    "mirror-agent ended with {status}: {}",
                    process.stderr_lines().join("\n")
                );
            }
        }
        Ok(stats)
    }
}

/// Where the agent under test mirrors to.
#[derive(Clone, Debug)]
enum Targets {
    /// The first n shadows, plain http.
    Http(usize),
    /// The first shadow over https, verified with the bench's CA.
    Https,
    /// One shadow at this URL.
    Url(String),
}

fn start_agent(
    hosts: &Hosts,
    agent: &AgentSettings,
    targets: Targets,
    extra: &[&str],
    metrics_port: u16,
) -> Result<Process> {
    let port = PRIMARY_PORT.to_string();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (urls, ca): (Vec<String>, Option<String>) = match targets {
        Targets::Http(n) => ((0..n).map(shadow_url).collect(), None),
        Targets::Https => (
            vec![shadow_tls_url(0)],
            Some(shadow_ca_file(hosts).display().to_string()),
        ),
        Targets::Url(url) => (vec![url], None),
    };
    let shadows = urls.len();
    let mut args = vec!["--iface", PRIMARY_IFACE, "--port", &port];
    for url in &urls {
        args.extend(["--shadow", url]);
    }
    if let Some(ca) = &ca {
        args.extend(["--ca-file", ca]);
    }
    args.extend(extra);
    // For a look inside a run: MIRROR_BENCH_AGENT_LEVEL=debug raises the
    // agent's log level, MIRROR_BENCH_AGENT_LOG=FILE keeps what it logged.
    let level = std::env::var("MIRROR_BENCH_AGENT_LEVEL").unwrap_or_default();
    if !level.is_empty() {
        args.extend(["--log-level", &level]);
    }
    if let Some(ring) = &agent.ring_size {
        args.extend(["--ring-size", ring]);
    }
    args.extend([
        "--metrics-addr",
        &metrics,
        "--log-format",
        "json",
        "--stats-interval",
        "60m",
        "--drain-timeout",
        "2s",
    ]);
    let binary = agent.binary.display().to_string();
    let agent = Agent::spawn(&mut pinned(&hosts.primary, PRIMARY_CPU, &binary, &args))?
        .attached(Duration::from_secs(30))?;
    agent.wait_for_targets(shadows, Duration::from_secs(10))?;
    Ok(agent.into_process())
}

/// The agent's metrics, from inside the primary's namespace.
pub fn scrape(hosts: &Hosts, port: u16) -> Result<Metrics> {
    let addr = format!("127.0.0.1:{port}").parse()?;
    Metrics::scrape(&hosts.primary, addr).context("scraping the agent's metrics")
}

fn agent_counts(metrics: &Metrics) -> AgentCounts {
    let sum = |name: &str, labels: &[(&str, &str)]| metrics.sum(name, labels) as u64;
    let skipped = metrics
        .matching("mirror_requests_skipped_total", &[])
        .filter(|s| s.value > 0.0)
        .filter_map(|s| Some((s.label("reason")?.to_owned(), s.value as u64)))
        .collect();
    let names: BTreeSet<&str> = metrics
        .samples
        .iter()
        .filter_map(|s| s.label("target"))
        .collect();
    let targets = names
        .into_iter()
        .map(|name| TargetRun {
            name: name.to_owned(),
            counts: TargetCounts::scraped(metrics, name).unwrap_or_default(),
            send_delay: metrics.buckets("mirror_shadow_send_delay_seconds", &[("target", name)]),
        })
        .collect();
    AgentCounts {
        requests_captured: sum(REQUESTS_CAPTURED, &[]),
        skipped,
        records_matched: sum("mirror_kernel_records_total", &[("outcome", "matched")]),
        records_lost: sum("mirror_kernel_records_total", &[("outcome", "lost")]),
        packets_matched: sum("mirror_kernel_packets_total", &[("outcome", "matched")]),
        targets,
        compare: {
            let mut by_result = BTreeMap::new();
            for s in metrics.matching("mirror_compare_total", &[]) {
                if let Some(result) = s.label("result") {
                    *by_result.entry(result.to_owned()).or_default() += s.value as u64;
                }
            }
            by_result
        },
    }
}

/// The agent binary: release for measurements, the debug build (which CI
/// has built already) for the quick run.
pub fn build_agent(root: &Path, release: bool) -> Result<PathBuf> {
    let mut args = vec!["build", "-p", "mirror-agent", "--bin", "mirror-agent"];
    if release {
        args.push("--release");
    }
    let status = std::process::Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building mirror-agent failed");
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("mirror-agent"))
}
