//! `cargo xtask bench`: what mirroring costs the primary and what reaches
//! the shadows, for every way of mirroring, in throw-away network
//! namespaces; report in target/bench/bench.md and bench.json.
//!
//! Hosts (see [`hosts`]): a client, the primary v1 (Debian nginx, a small
//! fixed response, in its own namespace) and two nginx shadows that count
//! what they receive in their access logs. Load: wrk at saturation, and
//! the fixed-rate open-loop generator of [`loadgen`] for latency
//! percentiles. Modes ([`modes`]): baseline, mirror-agent capture-only,
//! mirror-agent replaying to 1 and 2 shadows, nginx `mirror` as an inline
//! proxy, goreplay with `--goreplay PATH`. Each run starts its mode fresh
//! and measures the primary (rate, percentiles), the shadows (requests
//! received), the mirroring process (CPU, peak RSS), the kernel program
//! (bpf_stats) and the agent's own counts (ring losses, drops by reason,
//! capture → send delay).
//!
//! P1 is also measured as interleaved baseline / capture-only pairs
//! (`Scenario::pairs`), the comparison at 20k req/s gets its own row, and
//! [`bodies`] runs P6's uploads to a shadow that checks every byte.
//!
//! `cargo xtask bench capture` is the kernel program's sub-bench
//! ([`capture`]), also run first by the full bench. `cargo xtask bench
//! replay` measures `mirror-agent replay` from a file ([`replay`]), on its
//! own.

mod bodies;
mod bpf;
mod capture;
mod floor;
mod flow;
mod hosts;
mod idle;
mod loadgen;
mod modes;
mod probe;
mod replay;
mod report;

pub mod wrk;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use capture::CaptureFigures;
pub use capture::capture;
pub use flow::run as flow;
use hosts::{Hosts, Logged, Nginx, PRIMARY_ADDR};
use modes::{AgentSettings, Mirror, MirrorStats, Mode};
use probe::CpuTimes;

/// `cargo xtask bench` options: the command line, as is (the doc comments
/// are its `--help`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Options {
    /// `all` (default): the capture sub-bench, then every mode of
    /// mirroring under every scenario (bench.md, bench.json);
    /// `capture`: only the kernel program's cost and the capture rate;
    /// `flow`: reassembly + framing throughput (criterion, no root);
    /// `replay`: `mirror-agent replay --speed max` of a file of small GETs
    /// to a local nginx (requests/s per agent core) and of a 1 GiB file
    /// (peak RSS), in target/bench/replay.md (not part of `all`).
    #[arg(default_value = "all")]
    pub what: String,
    /// A short run (under 90 s) that checks the harness, not the speed
    /// (CI runs it so the harness never rots).
    #[arg(long)]
    pub quick: bool,
    /// A goreplay (gor) binary: adds the goreplay modes.
    #[arg(long, value_name = "PATH")]
    pub goreplay: Option<PathBuf>,
    /// Seconds of load per run (default 8 at saturation, 10 at fixed
    /// rates).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Only the scenarios and P6 rows whose name contains this
    /// (repeatable), e.g. `--only saturation --only 'conns=10 '`; `--only
    /// 'conns=50 '` is P1's interleaved pairs, `--only p6` the uploads.
    #[arg(long, value_name = "TEXT")]
    pub only: Vec<String>,
    /// Only these modes besides the baseline (repeatable): capture-only,
    /// replay-1, replay-2, nginx-mirror, goreplay, goreplay-null, and, only
    /// when asked for, compare-1 (replay-1 with --compare), replay-tls (to
    /// one shadow over https) and floor-1 (fixed rates: no mirror, the
    /// least any mirror built like the agent pays here to send the same
    /// requests to one shadow), e.g. `--mode replay-1 --mode compare-1` for
    /// the comparison's cost, `--mode replay-1 --mode replay-tls` for
    /// https's, `--mode replay-1 --mode floor-1` for what the agent adds.
    #[arg(long = "mode", value_name = "MODE")]
    pub modes: Vec<String>,
    /// The agent's --ring-size (default: the agent's own default).
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<String>,
    /// Runs of each saturation scenario, modes interleaved, median
    /// reported (default 3 for small requests on 10 connections, else 1).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Skip the capture sub-bench in `all`.
    #[arg(long)]
    pub no_capture: bool,
    /// Measure this mirror-agent binary instead of building one (to
    /// compare builds).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Without the 1 ms ticker on each CPU that puts every mode,
    /// baseline included, under the same idle behaviour of the VM.
    #[arg(long)]
    pub no_keep_awake: bool,
    /// `replay` only: one more flag for the agent's `replay` (repeatable),
    /// e.g. `--agent-arg=--max-in-flight=64`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub agent_arg: Vec<String>,
}

/// `cargo xtask bench [WHAT] [OPTIONS]`.
pub fn main(root: &Path, options: &Options) -> Result<()> {
    match options.what.as_str() {
        "capture" => capture(root, options.quick, options.agent.as_deref()),
        "flow" => flow(root, options.quick),
        "replay" => replay::run(
            root,
            options.quick,
            options.agent.as_deref(),
            &options.agent_arg,
        ),
        "all" => run(root, options),
        other => {
            bail!("unknown bench `{other}`; available: all (default), capture, flow, replay")
        }
    }
}

/// What load a scenario puts on the primary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// wrk, closed loop, as fast as the primary answers.
    Saturation,
    /// The open-loop generator at this many requests per second.
    Rate(u32),
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub load: Load,
    /// Request body bytes (POST); 0 is a GET.
    pub body: usize,
    pub connections: usize,
    pub seconds: f64,
    pub repeat: usize,
    /// P1's measure (issue 26): baseline and capture-only only, in
    /// interleaved pairs, wrk with one thread; reported pair by pair.
    pub pairs: bool,
    /// Modes run under this scenario beyond the default set (compare-1
    /// at 20k req/s), when no `--mode` is given.
    pub extra_modes: Vec<Mode>,
}

impl Scenario {
    pub fn name(&self) -> String {
        let load = match self.load {
            Load::Saturation => "saturation".to_owned(),
            Load::Rate(r) => format!("{}k-rps", r as f64 / 1000.0),
        };
        format!(
            "{load} body={} conns={}",
            size_label(self.body),
            self.connections
        )
    }
}

pub fn size_label(bytes: usize) -> String {
    match bytes {
        0 => "0".into(),
        b if b >= 1 << 30 => format!("{}GB", b >> 30),
        b if b >= 1 << 20 => format!("{}MB", b >> 20),
        b if b >= 1 << 10 => format!("{}KB", b >> 10),
        b => format!("{b}B"),
    }
}

/// One mode under one scenario.
#[derive(Clone, Debug)]
pub struct Run {
    pub scenario: Scenario,
    pub mode: Mode,
    pub repetition: usize,
    /// Requests per second the client got answered.
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Requests answered (warm-up included).
    pub completed: u64,
    /// Client-side errors (no answer, or >= 400).
    pub errors: u64,
    /// Connections the server closed that the generator opened again.
    pub reconnects: u64,
    /// Fixed rate only: the generator's CPU per answered request, µs (the
    /// cost of a minimal client's write + read per request here).
    pub client_cpu_us: Option<f64>,
    /// Requests the primary logged over the run.
    pub served: Logged,
    /// Requests each shadow logged over the run.
    pub received: Vec<Logged>,
    pub mirror: MirrorStats,
    /// Busy share of each CPU during the load, percent.
    pub cpu_busy: Vec<f64>,
    /// Of which softirq, percent.
    pub cpu_softirq: Vec<f64>,
    /// Fixed rate only: the largest backlog of requests waiting for a free
    /// connection (0 when the primary kept up).
    pub max_backlog: usize,
}

/// The scenarios of a full run and of the quick one.
fn scenarios(options: &Options) -> Vec<Scenario> {
    let quick = options.quick;
    let seconds = options.seconds.unwrap_or(if quick { 1.5 } else { 8.0 });
    let mut out = Vec::new();
    // P1 as issue 26 measures it: one-worker nginx at saturation, small
    // GETs on 50 keep-alive connections (`wrk -t1 -c50`), three
    // interleaved baseline / capture-only pairs.
    out.push(Scenario {
        load: Load::Saturation,
        body: 0,
        connections: 50,
        seconds,
        repeat: options.repeat.unwrap_or(if quick { 1 } else { 3 }),
        pairs: true,
        extra_modes: Vec::new(),
    });
    let saturation: &[(usize, usize)] = if quick {
        &[(0, 10)]
    } else {
        &[
            (0, 10),
            (1 << 10, 10),
            (100 << 10, 10),
            (10 << 20, 10),
            (0, 10_000),
            (1 << 10, 10_000),
            (100 << 10, 10_000),
        ]
    };
    for &(body, connections) in saturation {
        out.push(Scenario {
            load: Load::Saturation,
            body,
            connections,
            seconds,
            repeat: options
                .repeat
                .unwrap_or(if !quick && body == 0 && connections == 10 {
                    3
                } else {
                    1
                }),
            pairs: false,
            extra_modes: Vec::new(),
        });
    }
    let rated: &[(u32, usize, usize)] = if quick {
        &[(2_000, 1 << 10, 100)]
    } else {
        &[
            (200, 0, 10),
            (2_000, 0, 10),
            (5_000, 0, 10),
            (20_000, 0, 10),
            (5_000, 1 << 10, 10),
            (20_000, 1 << 10, 10),
            (5_000, 0, 10_000),
            (20_000, 0, 10_000),
            (5_000, 1 << 10, 10_000),
            (20_000, 1 << 10, 10_000),
        ]
    };
    for &(rate, body, connections) in rated {
        // The comparison at 20k req/s with one candidate (issue 26): its
        // row says what share of the pairs it compared and which CPU is
        // full; the quick run has it at its one rate so it does not rot.
        let compare = quick || (rate == 20_000 && body == 0 && connections == 10);
        out.push(Scenario {
            load: Load::Rate(rate),
            body,
            connections,
            seconds: seconds.max(if quick { 1.5 } else { 10.0 }),
            repeat: options.repeat.unwrap_or(1),
            pairs: false,
            extra_modes: if compare {
                vec![Mode::Compare(1)]
            } else {
                Vec::new()
            },
        });
    }
    out.retain(|s| {
        // A trailing space in a pattern pins the end of the name:
        // `conns=10 ` is not `conns=10000`.
        let name = format!("{} ", s.name());
        options.only.is_empty() || options.only.iter().any(|o| name.contains(o.as_str()))
    });
    out
}

/// The modes run under `scenario`, out of `selected` ([`modes`]).
fn scenario_modes(scenario: &Scenario, selected: &[Mode], options: &Options) -> Vec<Mode> {
    let mut out: Vec<Mode> = selected
        .iter()
        .filter(|m| !scenario.pairs || matches!(m, Mode::Baseline | Mode::CaptureOnly))
        // The floor sends at a rate: not under saturation.
        .filter(|m| **m != Mode::Floor || matches!(scenario.load, Load::Rate(_)))
        .cloned()
        .collect();
    if options.modes.is_empty() {
        for m in &scenario.extra_modes {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
    }
    // Pairs without capture-only (another `--mode`) are only a baseline.
    if scenario.pairs && !out.contains(&Mode::CaptureOnly) {
        out.clear();
    }
    out
}

/// The P6 rows selected by `--only` (matched like the scenarios).
fn body_rows(options: &Options) -> Vec<bodies::BodyRow> {
    let mut rows = bodies::rows(options.quick);
    rows.retain(|r| {
        let name = format!("{} ", r.name());
        options.only.is_empty() || options.only.iter().any(|o| name.contains(o.as_str()))
    });
    // Bodies are the agent replaying: not with a `--mode` that leaves
    // replay-1 out.
    if !options.modes.is_empty() && !options.modes.iter().any(|m| m == "replay-1") {
        rows.clear();
    }
    rows
}

fn modes(options: &Options) -> Vec<Mode> {
    let mut modes = vec![
        Mode::Baseline,
        Mode::CaptureOnly,
        Mode::Replay(1),
        Mode::Replay(2),
        Mode::Compare(1),
        Mode::ReplayTls,
        Mode::NginxMirror,
        Mode::Floor,
    ];
    if let Some(gor) = &options.goreplay {
        modes.push(Mode::Goreplay(gor.clone()));
        modes.push(Mode::GoreplayNull(gor.clone()));
    }
    if options.modes.is_empty() {
        // Not in the default set: the bench's claims are about plain http
        // mirroring. `compare-1` at saturation on this 2-core VM spends the
        // agent's one thread draining twice the ring records (v1's
        // responses too) and its copies expire, all counted: asked for,
        // it measures the comparison's cost at fixed rates. `floor-1` is a
        // reference, not a way of mirroring; the quick run has it so that
        // it does not rot.
        modes.retain(|m| {
            !matches!(m, Mode::ReplayTls | Mode::Compare(_)) && (options.quick || *m != Mode::Floor)
        });
    } else {
        modes.retain(|m| m == &Mode::Baseline || options.modes.contains(&m.to_string()));
    }
    modes
}

/// `cargo xtask bench --quick`, for CI: every mode runs a few seconds
/// under saturation and at a fixed rate; fails unless every mode produced
/// numbers and the shadows received copies in the replaying modes. The
/// speed is not judged. Needs root, nginx, wrk and bpftool (`cargo xtask
/// setup`); builds the agent in the debug profile (which `cargo xtask
/// test` has built already). Writes target/bench/bench-quick.{md,json}.
pub fn run_quick(root: &Path) -> Result<()> {
    run(
        root,
        &Options {
            quick: true,
            ..Options::default()
        },
    )
}

/// `cargo xtask bench` with `options`.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    ensure!(
        mirror_testkit::is_root(),
        "cargo xtask bench needs root (network namespaces, BPF): run it with sudo, \
         e.g. `sudo -E env \"PATH=$PATH\" cargo xtask bench`"
    );
    hosts::check_tools(options.goreplay.as_deref())?;
    let nofile = hosts::raise_nofile()?;
    if nofile < 25_000 {
        println!(
            "note: open files limited to {nofile} (hard limit): the nginx mirror proxy holds two per connection"
        );
    }
    let started = Instant::now();
    let agent = AgentSettings {
        binary: match &options.agent {
            Some(path) => path.clone(),
            None => modes::build_agent(root, !options.quick)?,
        },
        ring_size: options.ring_size.clone(),
    };
    let capture = if options.quick || options.no_capture {
        None
    } else {
        println!("==> bench capture: the kernel program per packet, capture rate");
        Some(capture::measure(&agent.binary, false)?)
    };

    // Before the 1 ms tickers start: idle means idle.
    let idle = if options.only.is_empty() {
        idle::measure(
            &agent,
            options.goreplay.as_deref(),
            if options.quick { 5.0 } else { 60.0 },
        )?
    } else {
        Vec::new()
    };

    let wakeup_cost_us = probe::wakeup_cost_us(hosts::PRIMARY_CPU, 2000).ok();
    if let Some(cost) = wakeup_cost_us {
        println!(
            "==> one wakeup from idle costs {cost:.1} µs of CPU time on CPU {}",
            hosts::PRIMARY_CPU
        );
    }
    let bpf_stats_before =
        fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    set_bpf_stats(true)?;
    let keep_awake = (!options.no_keep_awake)
        .then(|| probe::KeepAwake::start(&[hosts::CLIENT_CPU, hosts::PRIMARY_CPU]));
    let awake_wakeup_cost_us = if keep_awake.is_some() {
        probe::wakeup_cost_us(hosts::PRIMARY_CPU, 2000).ok()
    } else {
        None
    };
    if let Some(cost) = awake_wakeup_cost_us {
        println!("==> with a 1 ms ticker on each CPU: {cost:.1} µs per wakeup");
    }
    let result = scenarios_run(options, &agent);
    drop(keep_awake);
    let _ = set_bpf_stats(bpf_stats_before.trim() == "1");
    let (runs, bodies) = result?;

    let elapsed = started.elapsed();
    let meta = report::Meta::collect(
        options,
        elapsed,
        &agent,
        [wakeup_cost_us, awake_wakeup_cost_us],
    );
    let md = report::markdown(&meta, &runs, &bodies, capture.as_ref(), &idle);
    let json = report::json(&meta, &runs, &bodies, capture.as_ref(), &idle);
    let out = root.join("target/bench");
    fs::create_dir_all(&out)?;
    let stem = if options.quick {
        "bench-quick"
    } else {
        "bench"
    };
    fs::write(out.join(format!("{stem}.md")), &md)?;
    fs::write(
        out.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    println!("\n{md}");
    println!(
        "written to {} and {stem}.json in {:.0} s",
        out.join(format!("{stem}.md")).display(),
        elapsed.as_secs_f64()
    );
    if options.quick {
        check_harness(&runs, &bodies)?;
        println!("==> bench --quick: every mode produced numbers; the shadows received copies");
    }
    Ok(())
}

fn set_bpf_stats(on: bool) -> Result<()> {
    mirror_testkit::command::run(std::process::Command::new("sysctl").args([
        "-q",
        "-w",
        if on {
            "kernel.bpf_stats_enabled=1"
        } else {
            "kernel.bpf_stats_enabled=0"
        },
    ]))
    .map(drop)
}

fn scenarios_run(
    options: &Options,
    agent: &AgentSettings,
) -> Result<(Vec<Run>, Vec<bodies::BodyRun>)> {
    let modes = modes(options);
    let scenarios: Vec<(Scenario, Vec<Mode>)> = scenarios(options)
        .into_iter()
        .map(|s| {
            let m = scenario_modes(&s, &modes, options);
            (s, m)
        })
        .filter(|(_, m)| !m.is_empty())
        .collect();
    let rows = body_rows(options);
    ensure!(
        !scenarios.is_empty() || !rows.is_empty(),
        "no scenario matches --only"
    );
    let hosts = Hosts::build()?;
    let mut primary = Nginx::primary(&hosts)?;
    let mut shadows = [Nginx::shadow(&hosts, 0)?, Nginx::shadow(&hosts, 1)?];
    let total: usize = scenarios.iter().map(|(s, m)| s.repeat * m.len()).sum();
    let mut runs = Vec::new();
    for (scenario, modes) in &scenarios {
        println!("==> {}", scenario.name());
        for repetition in 0..scenario.repeat {
            for mode in modes {
                let run = run_one(
                    &hosts,
                    &mut primary,
                    &mut shadows,
                    agent,
                    scenario,
                    mode,
                    repetition,
                )
                .with_context(|| format!("{} under {}", mode, scenario.name()))?;
                println!(
                    "  [{}/{total}] {}",
                    runs.len() + 1,
                    report::one_line(&run, &runs)
                );
                runs.push(run);
            }
        }
    }
    let mut body_runs = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        println!("==> {}", row.name());
        let run = bodies::run(&hosts, agent, row).with_context(|| row.name())?;
        println!("  [{}/{}] {}", i + 1, rows.len(), report::body_line(&run));
        body_runs.push(run);
    }
    Ok((runs, body_runs))
}

/// Requests logged by nginx are flushed every 200 ms.
const LOG_FLUSH: Duration = Duration::from_millis(450);

fn run_one(
    hosts: &Hosts,
    primary: &mut Nginx,
    shadows: &mut [Nginx; 2],
    agent: &AgentSettings,
    scenario: &Scenario,
    mode: &Mode,
    repetition: usize,
) -> Result<Run> {
    let rate = match scenario.load {
        Load::Rate(rate) => Some(rate),
        Load::Saturation => None,
    };
    let request = loadgen::request(PRIMARY_ADDR, "/bench", scenario.body);
    let mut mirror = Mirror::start(mode, hosts, agent, rate, &request)?;
    std::thread::sleep(LOG_FLUSH);
    primary.log.mark()?;
    for shadow in shadows.iter_mut() {
        shadow.log.mark()?;
    }
    mirror.begin()?;
    let cpu_before = CpuTimes::now();
    let duration = Duration::from_secs_f64(scenario.seconds);
    let mut client_cpu_us = None;
    let (rate, p50_us, p99_us, p999_us, errors, max_backlog, completed, reconnects) =
        match scenario.load {
            Load::Saturation => {
                let o = wrk::run(
                    hosts,
                    &mirror.url(),
                    scenario.connections,
                    scenario.pairs.then_some(1),
                    scenario.body,
                    duration,
                )?;
                (
                    o.rate(),
                    o.p50_us,
                    o.p99_us,
                    o.p999_us,
                    o.errors,
                    0,
                    o.requests,
                    0,
                )
            }
            Load::Rate(rate) => {
                let plan = loadgen::Plan {
                    cpu: hosts::CLIENT_CPU,
                    addr: format!("{PRIMARY_ADDR}:{}", mirror.port()).parse()?,
                    rate,
                    duration: duration + warmup(scenario),
                    warmup: warmup(scenario),
                    connections: scenario.connections,
                    request: request.clone(),
                };
                let o = loadgen::run(&hosts.client, &plan)?;
                client_cpu_us = Some(o.cpu_seconds * 1e6 / o.completed.max(1) as f64);
                let q = |p: f64| o.latency.value_at_quantile(p) as f64 / 1000.0;
                (
                    o.rate,
                    q(0.5),
                    q(0.99),
                    q(0.999),
                    o.errors,
                    o.max_backlog,
                    o.completed,
                    o.reconnects,
                )
            }
        };
    let cpu_after = CpuTimes::now();
    let cpu_busy = cpu_after.busy_since(&cpu_before);
    let cpu_softirq = cpu_after.softirq_since(&cpu_before);
    mirror.settle(hosts)?;
    std::thread::sleep(LOG_FLUSH);
    let served = primary.log.take()?;
    let received = shadows
        .iter_mut()
        .map(|s| s.log.take())
        .collect::<Result<Vec<_>>>()?;
    let mirror = mirror.finish(hosts)?;
    Ok(Run {
        scenario: scenario.clone(),
        mode: mode.clone(),
        repetition,
        rate,
        p50_us,
        p99_us,
        p999_us,
        completed,
        errors,
        reconnects,
        client_cpu_us,
        served,
        received,
        mirror,
        cpu_busy,
        cpu_softirq,
        max_backlog,
    })
}

fn warmup(scenario: &Scenario) -> Duration {
    Duration::from_secs_f64((scenario.seconds / 10.0).min(1.0))
}

/// The quick run's verdict: the harness works, whatever the speed.
fn check_harness(runs: &[Run], bodies: &[bodies::BodyRun]) -> Result<()> {
    let mut problems = Vec::new();
    if !runs.iter().any(|r| r.scenario.pairs) {
        problems.push("no P1 pair ran".to_owned());
    }
    if !runs.iter().any(|r| matches!(r.mode, Mode::Compare(_))) {
        problems.push("no compare-1 run".to_owned());
    }
    for r in runs.iter().filter(|r| matches!(r.mode, Mode::Compare(_))) {
        if r.mirror
            .agent
            .as_ref()
            .and_then(|a| a.compared())
            .unwrap_or(0)
            == 0
        {
            problems.push(format!(
                "compare-1 under {}: no pair compared",
                r.scenario.name()
            ));
        }
    }
    if bodies.is_empty() {
        problems.push("no P6 row ran".to_owned());
    }
    // Whether the agent keeps up with a burst of large bodies is what the
    // rows measure (a debug build loses ring records): the harness only
    // needs one row whose copies the checker confirmed.
    if !bodies.is_empty() && bodies.iter().all(|b| b.shadow.exact == 0) {
        problems.push("P6: the checking shadow confirmed no body".to_owned());
    }
    for b in bodies {
        let what = b.row.name();
        if b.uploaded.completed == 0 {
            problems.push(format!("{what}: no upload answered"));
        }
        if b.mirror.peak_rss == 0 {
            problems.push(format!("{what}: no peak RSS for the agent"));
        }
    }
    for run in runs {
        let what = format!("{} under {}", run.mode, run.scenario.name());
        if !(run.rate > 0.0 && run.served.requests > 0 && run.p99_us > 0.0) {
            problems.push(format!("{what}: no requests answered"));
        }
        for (i, got) in run.received.iter().enumerate().take(run.mode.shadows()) {
            if got.requests == 0 {
                problems.push(format!("{what}: shadow {} received nothing", i + 1));
            }
        }
        if run.mode == Mode::Floor && run.mirror_cpu_us().is_none() {
            problems.push(format!("{what}: the floor sent nothing"));
        }
        if run.mode.is_agent() {
            match &run.mirror.agent {
                Some(a) if a.requests_captured > 0 => {}
                _ => problems.push(format!("{what}: the agent captured nothing")),
            }
            if run.mirror.bpf.run_cnt == 0 {
                problems.push(format!("{what}: no bpf_stats for the kernel program"));
            }
            if run.mirror.cpu_seconds <= 0.0 && run.mirror.peak_rss == 0 {
                problems.push(format!("{what}: no CPU or RSS figures for the agent"));
            }
        }
    }
    if !problems.is_empty() {
        bail!("the bench harness is broken:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &Scenario, mode: Mode, repetition: usize, rate: f64) -> Run {
        Run {
            scenario: scenario.clone(),
            mode,
            repetition,
            rate,
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            completed: 0,
            errors: 0,
            reconnects: 0,
            client_cpu_us: None,
            served: Logged::default(),
            received: Vec::new(),
            mirror: MirrorStats::default(),
            cpu_busy: Vec::new(),
            cpu_softirq: Vec::new(),
            max_backlog: 0,
        }
    }

    /// P1's pairs: each capture-only run against the baseline of its own
    /// repetition (not the median baseline), and the median of the ratios.
    #[test]
    fn pairs_are_ratioed_within_each_repetition() {
        let options = Options::default();
        let all = scenarios(&options);
        let pairs = all.iter().find(|s| s.pairs).unwrap();
        assert_eq!((pairs.connections, pairs.repeat), (50, 3));
        let runs = vec![
            run(pairs, Mode::Baseline, 0, 100.0),
            run(pairs, Mode::CaptureOnly, 0, 80.0),
            run(pairs, Mode::Baseline, 1, 200.0),
            run(pairs, Mode::CaptureOnly, 1, 190.0),
            run(pairs, Mode::Baseline, 2, 100.0),
            run(pairs, Mode::CaptureOnly, 2, 90.0),
        ];
        let (ratios, median) = report::pair_ratios(&runs);
        assert_eq!(ratios, vec![0.8, 0.95, 0.9]);
        assert_eq!(median, Some(0.9));
    }

    /// The pairs run only baseline and capture-only; compare-1 joins the
    /// 20k scenario by default, not when modes are chosen.
    #[test]
    fn new_rows_take_their_own_modes() {
        let options = Options::default();
        let selected = modes(&options);
        let all = scenarios(&options);
        let pairs = all.iter().find(|s| s.pairs).unwrap();
        assert_eq!(
            scenario_modes(pairs, &selected, &options),
            vec![Mode::Baseline, Mode::CaptureOnly]
        );
        let at_20k = all
            .iter()
            .find(|s| s.name() == "20k-rps body=0 conns=10")
            .unwrap();
        assert!(scenario_modes(at_20k, &selected, &options).contains(&Mode::Compare(1)));
        let chosen = Options {
            modes: vec!["replay-1".into()],
            ..Options::default()
        };
        let selected = modes(&chosen);
        assert!(scenario_modes(pairs, &selected, &chosen).is_empty());
        assert!(!scenario_modes(at_20k, &selected, &chosen).contains(&Mode::Compare(1)));
        assert!(body_rows(&chosen).len() == 4);
        let only = Options {
            only: vec!["p6 slow".into()],
            ..Options::default()
        };
        assert_eq!(body_rows(&only).len(), 1);
    }
}
