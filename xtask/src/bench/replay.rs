//! `cargo xtask bench replay`: how fast `mirror-agent replay --speed max`
//! sends a recording to a local nginx, per core of the agent, and how much
//! memory a 1 GiB recording takes (issue 13's acceptance: at least 50,000
//! small requests a second per core; a 1 GB file in under 100 MB of RSS).
//!
//! Two throw-away namespaces joined by a veth, named apart from the full
//! bench's hosts so that neither deletes the other's: the agent's, the
//! agent pinned to [`AGENT_CPU`], and the shadow's, one nginx process
//! pinned to the other CPU that answers 200 to anything and logs one
//! status per request. Two recordings in goreplay's format, written under
//! target/bench/ and deleted after their run:
//!
//! - many small GETs: requests per second of wall time, and per second of
//!   the agent's CPU time (user + system, from `wait4`'s rusage), which is
//!   the requests per second one core of the agent sustains;
//! - 1 GiB of POSTs with 64 KiB bodies: the agent's peak RSS (rusage
//!   `ru_maxrss`, and VmHWM sampled while it runs), which the queues
//!   bound (queue size × request size), not the file.
//!
//! Every run checks that nginx logged each request with a 2xx and that the
//! agent's final counts balance with every request sent; the goals are
//! reported, not enforced. Writes target/bench/replay.md
//! (replay-quick.md with `--quick`, small files that check the harness).

use std::{
    fs::{self, File},
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{Link, Netns, Process, ScratchDir, TargetCounts, veth};

use super::{hosts, modes, probe};

/// The agent's CPU; nginx gets [`SHADOW_CPU`].
pub const AGENT_CPU: usize = 1;
pub const SHADOW_CPU: usize = 0;

const AGENT_ADDR: &str = "10.200.30.1";
const SHADOW_ADDR: &str = "10.200.30.2";
const SHADOW_PORT: u16 = 8080;

/// The goals of issue 13.
const GOAL_PER_CORE: f64 = 50_000.0;
const GOAL_RSS_BYTES: u64 = 100 * 1000 * 1000;

/// goreplay's payload separator.
const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();

/// One recording the bench writes and replays.
#[derive(Clone, Debug)]
struct Recording {
    /// Its row in the report.
    label: &'static str,
    /// The file's name under target/bench/.
    file: &'static str,
    requests: u64,
    /// Request body bytes (POST); 0: a GET.
    body: usize,
    /// The goal this recording checks.
    goal: Goal,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Goal {
    RequestsPerCore,
    PeakRss,
}

fn recordings(quick: bool) -> [Recording; 2] {
    [
        Recording {
            label: "small GETs",
            file: "replay-small.gor",
            requests: if quick { 5_000 } else { 500_000 },
            body: 0,
            goal: Goal::RequestsPerCore,
        },
        Recording {
            label: "64 KiB POSTs",
            file: "replay-large.gor",
            // 16,384 × 64 KiB: a 1 GiB file (and its heads).
            requests: if quick { 64 } else { 16_384 },
            body: 64 << 10,
            goal: Goal::PeakRss,
        },
    ]
}

/// What one replay of one recording measured.
#[derive(Clone, Debug)]
struct Figures {
    recording: Recording,
    file_bytes: u64,
    /// From the agent's start to its exit.
    wall: Duration,
    /// The agent's own time from its first read to the drained queues
    /// (its `final counts: replay: ... seconds=`).
    replay_seconds: f64,
    user_seconds: f64,
    system_seconds: f64,
    /// Of the shadow nginx over the same time.
    nginx_cpu_seconds: f64,
    peak_rss: u64,
    /// Requests nginx logged, and of those 2xx.
    logged: u64,
    logged_ok: u64,
    counts: TargetCounts,
}

impl Figures {
    fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.system_seconds
    }

    fn rate(&self) -> f64 {
        self.recording.requests as f64 / self.replay_seconds.max(1e-9)
    }

    fn per_core(&self) -> f64 {
        self.recording.requests as f64 / self.cpu_seconds().max(1e-9)
    }

    fn goal_met(&self) -> bool {
        match self.recording.goal {
            Goal::RequestsPerCore => self.per_core() >= GOAL_PER_CORE,
            Goal::PeakRss => self.peak_rss < GOAL_RSS_BYTES,
        }
    }

    fn goal_text(&self) -> String {
        let verdict = if self.goal_met() { "met" } else { "NOT met" };
        match self.recording.goal {
            Goal::RequestsPerCore => format!(
                "{}: {:.0} requests/s per agent core (goal ≥ {:.0}): {verdict}",
                self.recording.label,
                self.per_core(),
                GOAL_PER_CORE
            ),
            Goal::PeakRss => format!(
                "{} ({} file): peak RSS {} (goal < {}): {verdict}",
                self.recording.label,
                mb(self.file_bytes),
                mb(self.peak_rss),
                mb(GOAL_RSS_BYTES)
            ),
        }
    }
}

/// `cargo xtask bench replay [--quick] [--agent PATH] [--agent-arg ARG]...`.
pub fn run(root: &Path, quick: bool, agent: Option<&Path>, agent_args: &[String]) -> Result<()> {
    ensure!(
        mirror_testkit::is_root(),
        "cargo xtask bench replay needs root (network namespaces): run it with sudo"
    );
    hosts::check_tools(None)?;
    let binary = match agent {
        Some(path) => path.to_owned(),
        None => build_agent(root, !quick)?,
    };
    let out = root.join("target/bench");
    fs::create_dir_all(&out)?;
    let started = Instant::now();
    let load_before = first_line_of("/proc/loadavg");
    let net = Net::build()?;
    let mut figures = Vec::new();
    for recording in recordings(quick) {
        let file = Scratch(out.join(recording.file));
        println!(
            "==> bench replay: writing {} {} to {}",
            recording.requests,
            recording.label,
            file.0.display()
        );
        let file_bytes = write_recording(&file.0, &recording)?;
        let one = replay(&net, &binary, &file.0, agent_args, &recording, file_bytes)
            .with_context(|| format!("replaying the {}", recording.label))?;
        drop(file);
        println!("  {}", one_line(&one));
        figures.push(one);
    }
    let md = markdown(
        &figures,
        &Meta {
            quick,
            agent_args,
            binary: &binary,
            elapsed: started.elapsed(),
            load_before,
        },
    );
    let path = out.join(if quick {
        "replay-quick.md"
    } else {
        "replay.md"
    });
    fs::write(&path, &md)?;
    println!("\n{md}\nwritten to {}", path.display());
    Ok(())
}

/// The release (or debug) mirror-agent, built where cargo puts it
/// (`CARGO_TARGET_DIR` when set).
fn build_agent(root: &Path, release: bool) -> Result<PathBuf> {
    let built = modes::build_agent(root, release)?;
    let Some(target) = std::env::var_os("CARGO_TARGET_DIR") else {
        return Ok(built);
    };
    let profile = if release { "release" } else { "debug" };
    Ok(root.join(target).join(profile).join("mirror-agent"))
}

/// A file removed when dropped: the recordings are large.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Writes `recording` in goreplay's format; returns the file's size.
fn write_recording(path: &Path, recording: &Recording) -> Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let body: Vec<u8> = (0..recording.body).map(|i| b'a' + (i % 26) as u8).collect();
    let start_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    for i in 0..recording.requests {
        // Recorded 10 µs apart: any pace but `max` would take its time.
        writeln!(out, "1 {i:024x} {} -1", start_ns + i as i64 * 10_000)?;
        out.write_all(&request(i, recording.body))?;
        out.write_all(&body)?;
        out.write_all(SEPARATOR)?;
    }
    out.flush()?;
    drop(out);
    Ok(fs::metadata(path)?.len())
}

/// Request `i`'s head: a GET, or a POST of `body` bytes.
fn request(i: u64, body: usize) -> Vec<u8> {
    let host = format!("{SHADOW_ADDR}:{SHADOW_PORT}");
    if body == 0 {
        format!(
            "GET /replay/{i} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mirror-bench\r\n\
             Accept: */*\r\n\r\n"
        )
    } else {
        format!(
            "POST /replay/{i} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mirror-bench\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {body}\r\n\r\n"
        )
    }
    .into_bytes()
}

/// The agent's namespace and the shadow's, with the shadow's nginx.
struct Net {
    agent: Netns,
    nginx: Process,
    log: PathBuf,
    /// Fields drop in order: nginx before its files.
    _scratch: ScratchDir,
    _shadow: Netns,
}

impl Net {
    fn build() -> Result<Self> {
        let scratch = ScratchDir::new("bench-replay")?;
        let agent = Netns::new("ra")?;
        let shadow = Netns::new("rs")?;
        veth(&agent, "eth0", &shadow, "eth0")?;
        Link::new(&agent, "eth0").up_with_address(&format!("{AGENT_ADDR}/24"))?;
        Link::new(&shadow, "eth0").up_with_address(&format!("{SHADOW_ADDR}/24"))?;
        let dir = scratch.path();
        let log = dir.join("access.log");
        fs::write(&log, "")?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/nginx.err warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20 log_format status_only \"$status\";\n\
             \x20 access_log {d}/access.log status_only buffer=64k flush=200ms;\n\
             \x20 keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
             \x20 client_max_body_size 64m;\n\
             \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen {SHADOW_ADDR}:{SHADOW_PORT} backlog=4096;\n    \
             location / {{ return 200 \"shadow\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = scratch.write("nginx.conf", conf)?;
        let (prefix, conf_arg) = (d.to_string(), conf_path.display().to_string());
        let nginx = hosts::spawn_pinned(
            &shadow,
            SHADOW_CPU,
            "nginx",
            "nginx",
            &["-p", &prefix, "-c", &conf_arg, "-e", "stderr"],
        )?;
        let net = Self {
            agent,
            nginx,
            log,
            _scratch: scratch,
            _shadow: shadow,
        };
        net.wait_listening()?;
        Ok(net)
    }

    fn wait_listening(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = format!("{SHADOW_ADDR}:{SHADOW_PORT}").parse()?;
        while self
            .agent
            .run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)))
            .is_err()
        {
            ensure!(
                Instant::now() < deadline,
                "nginx does not listen on {addr} after 10 s: {}",
                self.nginx.stderr_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Requests logged so far, and of those 2xx.
    fn logged(&self) -> Result<(u64, u64)> {
        let text = fs::read(&self.log)?;
        let lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        Ok(lines.fold((0, 0), |(all, ok), l| {
            (all + 1, ok + u64::from(l.starts_with(b"2")))
        }))
    }
}

/// How long one replay may take before the bench gives up on it.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(600);

/// Replays `file` to the shadow at `--speed max` and measures the agent.
fn replay(
    net: &Net,
    binary: &Path,
    file: &Path,
    agent_args: &[String],
    recording: &Recording,
    file_bytes: u64,
) -> Result<Figures> {
    let logged_before = net.logged()?;
    let url = format!("http://{SHADOW_ADDR}:{SHADOW_PORT}");
    let file_arg = file.display().to_string();
    let mut args = vec![
        "replay",
        &file_arg,
        "--shadow",
        &url,
        "--speed",
        "max",
        "--log-format",
        "json",
    ];
    args.extend(agent_args.iter().map(String::as_str));
    let stdout_path = file.with_extension("stdout");
    let stderr_path = file.with_extension("stderr");
    let _outputs = (Scratch(stdout_path.clone()), Scratch(stderr_path.clone()));
    let nginx_before = probe::cpu_split(net.nginx.pid())?;
    let started = Instant::now();
    let child = hosts::pinned(&net.agent, AGENT_CPU, &binary.display().to_string(), &args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?)
        .spawn()
        .context("cannot start mirror-agent replay")?;
    let ended = wait_measured(&child, REPLAY_TIMEOUT)?;
    let wall = started.elapsed();
    let nginx_after = probe::cpu_split(net.nginx.pid())?;
    let stdout = fs::read_to_string(&stdout_path)?;
    let stderr = fs::read_to_string(&stderr_path)?;
    ensure!(
        ended.status == 0,
        "mirror-agent replay ended with wait status {:#x}: {}",
        ended.status,
        tail(&stderr, 20)
    );
    let replay_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("final counts: replay: "))
        .with_context(|| format!("no `final counts: replay:` on stdout: {stdout}"))?;
    let field = |name: &str| -> Result<f64> {
        replay_line
            .split_whitespace()
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {replay_line:?}"))?
            .parse()
            .with_context(|| format!("{name} in {replay_line:?}"))
    };
    let replay_seconds = field("seconds")?;
    let requests_read = field("requests")? as u64;
    let counts_text = stdout
        .lines()
        .find_map(|l| l.strip_prefix("final counts: target="))
        .and_then(|rest| rest.split_once(' '))
        .map(|(_, text)| text)
        .with_context(|| format!("no `final counts: target=` on stdout: {stdout}"))?;
    let counts = TargetCounts::parse(counts_text)?;

    // nginx writes its log every 200 ms.
    let want = recording.requests;
    let deadline = Instant::now() + Duration::from_secs(3);
    let (logged, logged_ok) = loop {
        let (all, ok) = net.logged()?;
        let (all, ok) = (
            all.saturating_sub(logged_before.0),
            ok.saturating_sub(logged_before.1),
        );
        if all >= want || Instant::now() > deadline {
            break (all, ok);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let figures = Figures {
        recording: recording.clone(),
        file_bytes,
        wall,
        replay_seconds,
        user_seconds: ended.user_seconds,
        system_seconds: ended.system_seconds,
        nginx_cpu_seconds: (nginx_after.0 + nginx_after.1) - (nginx_before.0 + nginx_before.1),
        peak_rss: ended.peak_rss,
        logged,
        logged_ok,
        counts,
    };
    let mut problems = Vec::new();
    if requests_read != want {
        problems.push(format!("the agent read {requests_read} requests of {want}"));
    }
    if !figures.counts.balances() || figures.counts.get("2xx") != want {
        problems.push(format!(
            "the agent's counts are not {want} sent with 2xx: {}",
            figures.counts
        ));
    }
    if logged != want || logged_ok != want {
        problems.push(format!(
            "nginx logged {logged} requests ({logged_ok} 2xx), not {want}"
        ));
    }
    if !problems.is_empty() {
        bail!("{}\nstderr: {}", problems.join("; "), tail(&stderr, 10));
    }
    Ok(figures)
}

/// How a measured process ended.
struct Ended {
    /// As `wait4` gives it (0: exit 0).
    status: i32,
    user_seconds: f64,
    system_seconds: f64,
    /// The larger of rusage's `ru_maxrss` and the largest VmHWM sampled.
    peak_rss: u64,
}

/// Waits for `child` to end, sampling its VmHWM meanwhile; its CPU time and
/// peak RSS from `wait4`'s rusage. Kills it after `timeout`.
///
/// The child is reaped here, not through [`Child::wait`]: std's wait gives
/// no rusage.
fn wait_measured(child: &Child, timeout: Duration) -> Result<Ended> {
    let pid = i32::try_from(child.id())?;
    let deadline = Instant::now() + timeout;
    let mut sampled_kib = 0;
    let mut killed = false;
    loop {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid value; plain syscalls on our
        // own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if killed { 0 } else { libc::WNOHANG };
        let reaped = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if reaped == pid {
            ensure!(!killed, "mirror-agent replay ran longer than {timeout:?}");
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let maxrss_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
            return Ok(Ended {
                status,
                user_seconds: seconds(usage.ru_utime),
                system_seconds: seconds(usage.ru_stime),
                peak_rss: maxrss_kib.max(sampled_kib) * 1024,
            });
        }
        ensure!(reaped == 0, "wait4: {}", std::io::Error::last_os_error());
        if let Ok(kib) = mirror_testkit::process::peak_rss_kib(child.id()) {
            sampled_kib = sampled_kib.max(kib);
        }
        if Instant::now() > deadline {
            // SAFETY: our own child, not reaped yet: the pid is still its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn first_line_of(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn one_line(f: &Figures) -> String {
    let (label, requests) = (&f.recording.label, f.recording.requests);
    let (rate, cpu, per_core, rss) = (f.rate(), f.cpu_seconds(), f.per_core(), mb(f.peak_rss));
    let (seconds, user, sys) = (f.replay_seconds, f.user_seconds, f.system_seconds);
    let (logged, ok) = (f.logged, f.logged_ok);
    format!(
        "{label}: {requests} requests in {seconds:.2} s: {rate:.0}/s; \
         agent CPU {cpu:.2} s (user {user:.2}, sys {sys:.2}): {per_core:.0} requests/s per core; \
         peak RSS {rss}; nginx logged {logged} (2xx {ok})"
    )
}

struct Meta<'a> {
    quick: bool,
    agent_args: &'a [String],
    binary: &'a Path,
    elapsed: Duration,
    load_before: String,
}

fn markdown(figures: &[Figures], meta: &Meta) -> String {
    let mut command = "cargo xtask bench replay".to_owned();
    if meta.quick {
        command += " --quick";
    }
    for arg in meta.agent_args {
        command += &format!(" --agent-arg={arg}");
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    md += "# mirror-agent replay: requests per core, memory\n\n";
    md += &format!("Command: `{command}` ({:.0} s)", meta.elapsed.as_secs_f64());
    if meta.quick {
        md += " — a quick run: the sizes check the harness, not the goals";
    }
    md += "\n\n";
    md += &format!(
        "Host: Linux {}, {cpus} CPUs; load average before the run: {}.\n\
         Agent: `{}` (`mirror-agent replay FILE --shadow URL --speed max{}`), \
         pinned to CPU {AGENT_CPU}; the shadow: one nginx process pinned to CPU {SHADOW_CPU}, \
         over a veth between two network namespaces.\n\n",
        first_line_of("/proc/sys/kernel/osrelease"),
        meta.load_before,
        meta.binary.display(),
        meta.agent_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>(),
    );
    md += "| recording | file | requests | replay s | requests/s | agent CPU s (user + sys) \
           | requests/s per agent core | agent peak RSS | agent CPU | nginx CPU | nginx logged 2xx |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for f in figures {
        md += &format!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} ({:.2} + {:.2}) | {:.0} | {} | {:.0} % | {:.0} % | {} |\n",
            f.recording.label,
            mb(f.file_bytes),
            f.recording.requests,
            f.replay_seconds,
            f.rate(),
            f.cpu_seconds(),
            f.user_seconds,
            f.system_seconds,
            f.per_core(),
            mb(f.peak_rss),
            100.0 * f.cpu_seconds() / f.wall.as_secs_f64().max(1e-9),
            100.0 * f.nginx_cpu_seconds / f.wall.as_secs_f64().max(1e-9),
            f.logged_ok,
        );
    }
    md += "\n";
    for f in figures {
        md += &format!("- {}\n", f.goal_text());
    }
    md += "\n\
        Method: each recording is written in goreplay's format (request payloads, \
        recorded 10 µs apart), then replayed once by a fresh agent. *replay s* is the \
        agent's own time from its first read to its drained queues; *requests/s per \
        agent core* divides the requests by the agent's CPU time (user + system, \
        rusage at exit), so it does not depend on how busy the machine's other CPU was; \
        *agent peak RSS* is rusage's maximum resident set (VmHWM). The system time \
        includes the kernel's work for what the agent sends over the veth. *agent CPU* \
        and *nginx CPU* are each one's share of its CPU over the agent's run: nginx \
        near 100 %, the shadow sets the rate; the agent well under 100 % with nginx \
        idle too, other work on the agent's CPU (this machine's CPUs are shared) \
        slowed the wall-clock rate, not the per-core one. Every run checks that nginx logged every request with a \
        2xx and that the agent's final counts balance.\n";
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_in_goreplays_format() {
        let dir = ScratchDir::new("replay-format").unwrap();
        let path = dir.path().join("r.gor");
        let recording = Recording {
            label: "t",
            file: "r.gor",
            requests: 2,
            body: 3,
            goal: Goal::PeakRss,
        };
        let size = write_recording(&path, &recording).unwrap();
        let text = fs::read(&path).unwrap();
        assert_eq!(size, text.len() as u64);
        let text = String::from_utf8(text).unwrap();
        let parts: Vec<&str> = text.split("\n🐵🙈🙉\n").collect();
        assert_eq!(parts.len(), 3, "two payloads and nothing after the last");
        assert_eq!(parts[2], "");
        for (i, part) in parts[..2].iter().enumerate() {
            let (header, payload) = part.split_once('\n').unwrap();
            let fields: Vec<&str> = header.split(' ').collect();
            assert_eq!(fields[0], "1");
            assert_eq!(fields[1], format!("{i:024x}"));
            assert!(fields[2].parse::<i64>().unwrap() > 0);
            assert_eq!(fields[3], "-1");
            assert!(payload.starts_with(&format!("POST /replay/{i} HTTP/1.1\r\n")));
            assert!(payload.ends_with("Content-Length: 3\r\n\r\nabc"));
        }
    }
}
