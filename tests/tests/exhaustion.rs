//! Exhaustion found by a hostile test pass (issue 16), each finding
//! reproduced end to end: real clients talk to v1 in its namespace, the
//! real `mirror-agent` binary captures on v1's interface and replays to a
//! shadow behind it, and each test checks that what someone else does to
//! the agent's resources (its metrics port, its connections to a broken
//! shadow) costs neither the agent's health nor its other work.
//!
//! - **The metrics port cannot be exhausted**: 1,100 idle connections to
//!   it (the agent started with a soft limit of 1,024 open files, as under
//!   systemd) leave `/healthz` answering at once, `/metrics` scraped, and
//!   every request mirrored; a target without a route is counted
//!   `unreachable`. The finding: `/healthz` stopped answering and every new
//!   shadow connection failed (counted as `connect_refused`).
//! - **A broken shadow brings no error storm**: a shadow that answers
//!   garbage, or resets in the middle of a body, at 2,000 requests a second
//!   costs the agent under 30 % of a core, and gets no more connections
//!   than the agent's connect budget allows; the agent's namespace is not
//!   filled with TIME_WAIT sockets. The finding: ~1,400 reconnects a
//!   second, TIME_WAIT past 14,000, a core busy.
//!
//! ```text
//!  client ──▶ v1 :8080 (Server; mirror-agent on veth-s) ──▶ shadow 0 :8080
//!               ▲ 127.0.0.1:9464 metrics, health               └─▶ shadow 1 :8080
//!               └── 1,100 idle connections (from v1's namespace)
//! ```
//!
//! The storm test measures the agent's CPU over a few seconds: it takes the
//! whole machine (the other test of this file waits, see [`LOAD`]), and
//! runs the agent in a session of its own, as a service runs. Its messages
//! say how long the agent waited for a CPU: on a machine busy with other
//! work, a starved agent drops requests from its queue (queue_full,
//! expired), which the test accepts.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test exhaustion`.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_agent::telemetry::endpoint::MAX_CONNECTIONS;
use mirror_testkit::{
    Agent, Metrics, Netns, Server, Signal, metrics::DEFAULT_ADDR, process, server::Reply,
    wait_until,
};
use mirror_tests::{
    Load, MachineShare, ReplayRig,
    agent::{self, ATTACH_TIMEOUT, Stopped},
    or_skip,
    shadow_net::shadow_v4,
};

/// The storm test measures CPU: the other test of this file waits while it
/// runs, so that the bound judges the agent and not the neighbours.
static LOAD: MachineShare = MachineShare::new();

/// SIGTERM; the agent must exit 0 with counts that balance.
fn stop(agent: Agent) -> Result<Stopped> {
    agent::check_exit(agent.stop(Signal::TERM, Duration::from_secs(20))?)
}

/// `WRAPPER... mirror-agent --nice 0 ARGS...` in `netns`, attached;
/// `WRAPPER` (prlimit, setsid) execs the agent, so the pid is the agent's.
fn start_wrapped(netns: &Netns, wrapper: &[&str], args: &[&str]) -> Result<Agent> {
    let (program, wrapper_args) = wrapper.split_first().context("no wrapper")?;
    let binary = agent::binary()?;
    let mut command = netns.command(program);
    command
        .args(wrapper_args)
        .arg(&binary)
        .args(["--nice", "0"])
        .args(args);
    let agent = Agent::spawn(&mut command)?.attached(ATTACH_TIMEOUT)?;
    let exe = std::fs::read_link(format!("/proc/{}/exe", agent.pid()))?;
    ensure!(
        exe == binary.canonicalize()?,
        "{wrapper:?} did not exec the agent: pid {} is {}",
        agent.pid(),
        exe.display()
    );
    Ok(agent)
}

/// `(soft, hard)` limit of open files of `pid` (`/proc/PID/limits`).
fn fd_limits(pid: u32) -> Result<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .with_context(|| format!("no open files limit in {limits}"))?;
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [soft, hard] => Ok((soft, hard)),
        _ => bail!("cannot read {line:?}"),
    }
}

/// File descriptors `pid` holds open.
fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

// ---------------------------------------------------------------------------
// the metrics port cannot be exhausted
// ---------------------------------------------------------------------------

/// Idle connections the test opens to the metrics port: more than the
/// 1,024 open files a service gets by default.
const IDLE_CONNECTIONS: usize = 1_100;
/// The agent's open-file limits: systemd's default soft limit, and a hard
/// limit the agent may raise it to.
const AGENT_SOFT_FDS: u64 = 1_024;
const AGENT_HARD_FDS: u64 = 4_096;
/// How long a liveness probe may wait for `/healthz`.
const HEALTHZ_BOUND: Duration = Duration::from_secs(2);
/// Requests mirrored while the idle connections are open.
const AB_REQUESTS: u64 = 1_000;
/// A second target, on a network the primary has no route to: every
/// connect fails at once with ENETUNREACH, which must be counted as what it
/// is, `unreachable` (the old agent counted the first `io_error` and the
/// rest, the address set aside, `connect_refused`; EMFILE alike).
const UNREACHABLE: &str = "http://10.200.99.2:8080";
/// Descriptors the agent holds besides metrics connections: its maps and
/// ring, epoll, the listener, the shadows' connections, logs (about 25).
const AGENT_OWN_FDS: usize = 64;

/// `n` connections from inside `netns` to `addr` that send nothing.
fn open_idle(netns: &Netns, addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    netns.run(|| {
        (0..n)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .with_context(|| format!("idle connection {i} of {n} to {addr}"))
            })
            .collect()
    })
}

/// `GET /healthz` from inside `netns`, as a liveness probe with a timeout
/// of `bound`: the status, and the time from the connect to the answer.
fn probe_health(netns: &Netns, addr: SocketAddr, bound: Duration) -> Result<(u16, Duration)> {
    netns.run(|| {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&addr, bound)?;
        stream.set_read_timeout(Some(bound))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: agent\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).with_context(|| {
            format!(
                "/healthz did not answer within {bound:?} ({} bytes came)",
                answer.len()
            )
        })?;
        let took = started.elapsed();
        let head = String::from_utf8_lossy(&answer);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        Ok((status, took))
    })
}

/// The finding: 1,100 idle connections to the metrics port took every
/// file descriptor the agent had (soft limit 1,024): `/healthz` stopped
/// answering (a liveness probe would restart the agent) and every new
/// connection to a shadow failed. Now the endpoint serves at most
/// [`MAX_CONNECTIONS`] (a new one closes the oldest) and the agent raises
/// its soft limit to the hard one.
#[test]
fn eleven_hundred_idle_metrics_connections_starve_neither_healthz_nor_the_shadows() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let needed = IDLE_CONNECTIONS as u64 + 1_024;
    let limit = process::raise_open_files(needed)?;
    ensure!(limit >= needed, "RLIMIT_NOFILE is {limit}, {needed} needed");
    let mut rig = ReplayRig::builder(1)
        .mirror_to(&[0])
        .args(&["--shadow", UNREACHABLE])
        .build()?;
    let nofile = format!("--nofile={AGENT_SOFT_FDS}:{AGENT_HARD_FDS}");
    let agent = start_wrapped(
        rig.primary(),
        &["prlimit", &nofile, "--"],
        &rig.agent_args(),
    )?;
    // The agent logs that it is attached before it binds the port.
    agent.wait_for_log("metrics endpoint listening", Duration::from_secs(10))?;
    let started = Instant::now();
    let idle = open_idle(rig.primary(), DEFAULT_ADDR, IDLE_CONNECTIONS)?;
    let opened_in = started.elapsed();

    let (status, took) =
        probe_health(rig.primary(), DEFAULT_ADDR, HEALTHZ_BOUND).with_context(|| {
            format!("after {IDLE_CONNECTIONS} idle connections to the metrics port")
        })?;
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections opened in {opened_in:?}; /healthz answered {status} \
         in {took:?}"
    );
    ensure!(status == 200, "/healthz answered {status}");
    ensure!(took < HEALTHZ_BOUND, "/healthz took {took:?}");
    let scraped = Metrics::scrape(rig.primary(), DEFAULT_ADDR)?;
    ensure!(
        scraped.get("mirror_requests_captured_total", &[]) == Some(0.0),
        "a scrape without mirror_requests_captured_total 0"
    );

    // The endpoint holds its newest connections only; the oldest were
    // closed (the idle clients see their FIN).
    let mut fds = open_fds(agent.pid())?;
    wait_until(Duration::from_secs(2), || {
        open_fds(agent.pid()).is_ok_and(|n| {
            fds = n;
            n <= MAX_CONNECTIONS + AGENT_OWN_FDS
        })
    });
    let limits = fd_limits(agent.pid())?;
    eprintln!("the agent holds {fds} file descriptors; its open-file limits {limits:?}");
    ensure!(
        fds <= MAX_CONNECTIONS + AGENT_OWN_FDS,
        "the agent holds {fds} file descriptors with {IDLE_CONNECTIONS} idle metrics clients"
    );
    ensure!(
        limits == (AGENT_HARD_FDS, AGENT_HARD_FDS),
        "started with {AGENT_SOFT_FDS}:{AGENT_HARD_FDS}, the agent's open-file limits are \
         {limits:?}: the soft one was not raised"
    );

    // Shadows: a connection per request (ab sends HTTP/1.0, the shadow
    // closes each), while the idle clients are still connected.
    rig.ab_ok(&["-n", &AB_REQUESTS.to_string(), "-c", "10"], AB_REQUESTS)?;
    let settled = rig.settle(&[&rig.url(0), UNREACHABLE], AB_REQUESTS)?;
    let outcomes = settled.shadow_outcomes(&rig.url(0));
    ensure!(
        outcomes.get("2xx") == Some(&AB_REQUESTS),
        "with {IDLE_CONNECTIONS} idle metrics clients, the shadow's outcomes: {outcomes:?}"
    );
    let unreachable: Vec<(String, u64)> = settled
        .shadow_outcomes(UNREACHABLE)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    ensure!(
        unreachable == [("unreachable".to_owned(), AB_REQUESTS)],
        "{UNREACHABLE} (no route): {unreachable:?}"
    );
    let (status, took) = probe_health(rig.primary(), DEFAULT_ADDR, HEALTHZ_BOUND)?;
    ensure!(
        status == 200,
        "/healthz after the load: {status} in {took:?}"
    );
    let stopped = stop(agent)?;
    ensure!(stopped.target(&rig.url(0))?.get("2xx") == AB_REQUESTS);
    ensure!(stopped.target(UNREACHABLE)?.get("unreachable") == AB_REQUESTS);
    drop(idle);

    let served = rig.stop_servers()?;
    ensure!(served.v1.request_count() as u64 == AB_REQUESTS);
    ensure!(
        served.shadow(0).request_count() as u64 == AB_REQUESTS,
        "the shadow received {} of {AB_REQUESTS} requests",
        served.shadow(0).request_count()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// a broken shadow brings no error storm
// ---------------------------------------------------------------------------

/// The load on v1, and for how long the agent's cost is measured.
const RATE: u32 = 2_000;
const LOAD_CONNECTIONS: usize = 32;
const MEASURED: Duration = Duration::from_secs(5);
/// Below this the load did not happen as meant and the bound judges
/// nothing. Between it and [`RATE`] (a machine too busy to keep the pace)
/// the CPU bound applies to the cost scaled up to [`RATE`].
const MIN_RATE: f64 = 1_000.0;
/// The acceptance of the finding: a garbage-answering shadow costs less
/// than this share of a core at 2k req/s, for the agent as it ships (a
/// release build: 3.4 to 5 % measured here, the old agent 15 to 19 %
/// within 5 s, its storm showing in connections and TIME_WAIT before CPU).
const CPU_BOUND_PERCENT: f64 = 30.0;
/// The same bound for a debug build of the agent (what `cargo test` runs),
/// which costs five to seven times as much per request here: 22 % on a
/// quiet machine, 30 % in a CI run on a day the release agent's cost per
/// request was twice that of an earlier day. A storm still shows: the old
/// agent burned a core.
const DEBUG_CPU_BOUND_PERCENT: f64 = 60.0;

/// The CPU bound for the agent binary the tests run.
fn cpu_bound_percent() -> Result<f64> {
    let release = agent::binary()?
        .components()
        .any(|c| c.as_os_str() == "release");
    Ok(if release {
        CPU_BOUND_PERCENT
    } else {
        DEBUG_CPU_BOUND_PERCENT
    })
}
/// What a failing shadow may cost in connections: until the first failure
/// comes back every worker may connect at once (`--max-in-flight`, 32 by
/// default); from then on the address is set aside, and one request probes
/// it after a backoff that starts at 1 s and doubles with each failed
/// probe. So at most the workers' connections plus one a second.
const MAX_IN_FLIGHT: f64 = 32.0;

/// utime + stime of every thread of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..]
        .split_whitespace()
        .collect();
    let ticks = fields[14 - 3].parse::<u64>()? + fields[15 - 3].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// Seconds the threads of `pid` waited, runnable, for a CPU
/// (`/proc/PID/task/*/schedstat`, second field): what a busy machine
/// withheld from the agent, for messages.
fn run_queue_seconds(pid: u32) -> Result<f64> {
    let mut waited_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        waited_ns += schedstat
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(waited_ns as f64 / 1e9)
}

/// Sockets in TIME_WAIT in `netns` toward `ip`.
fn time_wait_toward(netns: &Netns, ip: &str) -> Result<usize> {
    Ok(netns
        .exec("ss", ["-Htan", "state", "time-wait", "dst", ip])?
        .lines()
        .count())
}

/// What [`RATE`] requests a second cost while a shadow fails every one.
#[derive(Debug)]
struct Storm {
    seconds: f64,
    /// Answered by v1 during the measured time.
    requests: u64,
    /// Answered by v1 in all (the agent must account for each).
    total: u64,
    cpu_percent: f64,
    /// The share of the time the agent waited for a CPU.
    run_queue_percent: f64,
    /// Accepted by the shadow since the load began.
    connections: u64,
    time_wait: usize,
}

impl Storm {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The agent's CPU share scaled to [`RATE`] where the load fell short
    /// of it.
    fn cpu_percent_at_rate(&self) -> f64 {
        self.cpu_percent * f64::from(RATE) / self.rate().min(f64::from(RATE))
    }
}

impl std::fmt::Display for Storm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} req/s for {:.1} s: agent CPU {:.1} % of a core, {} connections accepted by \
             the shadow for {} requests, {} TIME_WAIT sockets toward it (the agent waited \
             for a CPU {:.0} % of the time; load average {})",
            self.rate(),
            self.seconds,
            self.cpu_percent,
            self.connections,
            self.requests,
            self.time_wait,
            self.run_queue_percent,
            load_average()
        )
    }
}

/// Runs [`RATE`] requests a second at v1 for [`MEASURED`] while the agent
/// mirrors them to `shadow` (host `index`), and measures.
fn storm(rig: &ReplayRig, agent: &Agent, shadow: &Server, index: usize) -> Result<Storm> {
    let load = Load::paced(rig.client(), rig.primary_addr(), LOAD_CONNECTIONS, RATE)?;
    let started = Instant::now();
    let cpu_before = cpu_seconds(agent.pid())?;
    let waited_before = run_queue_seconds(agent.pid())?;
    let answered_before = load.answered();
    std::thread::sleep(MEASURED);
    let cpu_after = cpu_seconds(agent.pid())?;
    let waited_after = run_queue_seconds(agent.pid())?;
    let seconds = started.elapsed().as_secs_f64();
    let requests = load.answered() - answered_before;
    let connections = shadow.connections() as u64;
    let time_wait = time_wait_toward(rig.primary(), &shadow_v4(index, 2).to_string())?;
    load.check_running()?;
    let total = load.stop()?;
    Ok(Storm {
        seconds,
        requests,
        total,
        cpu_percent: (cpu_after - cpu_before) / seconds * 100.0,
        run_queue_percent: (waited_after - waited_before) / seconds * 100.0,
        connections,
        time_wait,
    })
}

/// The finding: a shadow that answers garbage (or resets in the middle of
/// a body) made the agent reconnect for every request: ~1,400 connects a
/// second, TIME_WAIT past 14,000 in its namespace, a core busy. Now
/// failures on fresh connections (before the request is out, or two
/// answers in a row that fail) set the address aside until a probe is
/// answered (see [`MAX_IN_FLIGHT`]), and a target's connects are bounded
/// besides (400 a second, counted `connect_limit`).
///
/// Garbage: the shadow answers each request with bytes that are not HTTP
/// and leaves the close to the agent, whose TIME_WAIT it then is (the
/// finding's). Reset: a 200 head, part of its body, then a reset.
#[test]
fn a_shadow_answering_garbage_or_resetting_at_2k_requests_a_second_brings_no_connect_storm()
-> Result<()> {
    let _load = or_skip!(LOAD.exclusive());
    let mut rig = ReplayRig::builder(2).serve(&[]).build()?;
    let mut requests = 0;
    let failures = [
        ("garbage", Reply::garbage()),
        ("reset mid-body", Reply::reset_mid_body()),
    ];
    for (index, (failure, reply)) in failures.into_iter().enumerate() {
        let shadow = Server::builder()
            .answer(move |_| reply.clone())
            .start(rig.shadow(index), rig.shadow_addr(index))?;
        let url = rig.url(index);
        let mut args = rig.agent_args();
        args.extend(["--shadow", &url]);
        // A session of its own, as a service has: with autogroup scheduling
        // the agent then competes for the CPU as a group of its own, not
        // as one thread among the load's and the servers' seventy.
        let agent = start_wrapped(rig.primary(), &["setsid"], &args)?;
        let storm = storm(&rig, &agent, &shadow, index)?;
        eprintln!("{failure}: {storm}");

        let budget = (MAX_IN_FLIGHT + storm.seconds + 1.0) as u64;
        ensure!(
            storm.rate() >= MIN_RATE,
            "{failure}: the load reached {:.0} of {RATE} req/s ({storm})",
            storm.rate()
        );
        ensure!(
            storm.connections <= budget,
            "{failure}: a connect storm, over the budget of {budget}: {storm}"
        );
        ensure!(
            storm.time_wait as u64 <= budget,
            "{failure}: TIME_WAIT piles up: {storm}"
        );
        let bound = cpu_bound_percent()?;
        ensure!(
            storm.cpu_percent_at_rate() < bound,
            "{failure}: {:.1} % of a core at {RATE} req/s, over {bound} %: {storm}",
            storm.cpu_percent_at_rate()
        );

        // Every request is accounted for, none as sent: each was dropped,
        // as a failure of the shadow (io_error), of the budget
        // (connect_limit), or, where the machine starved the agent for a
        // while, of the queue (queue_full, expired).
        requests += storm.total;
        rig.settle(&[&url], storm.total)?;
        let counts = stop(agent)?.target(&url)?.clone();
        eprintln!("{failure}: final counts {counts}");
        ensure!(
            counts.get("captured") == storm.total
                && counts.get("sent") == 0
                && counts.get("io_error") > 0,
            "{failure}: {} requests, final counts {counts}",
            storm.total
        );
        let failed = shadow.halt();
        let (connections, requests) = (failed.connections.len(), failed.request_count());
        ensure!(
            requests <= connections,
            "{failure}: {requests} requests on {connections} connections: the agent reused \
             a connection the shadow had failed on"
        );
    }
    let v1 = rig.stop_v1()?;
    ensure!(v1.request_count() as u64 == requests);
    Ok(())
}

/// `/proc/loadavg`'s first three figures, for messages about timing.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
