//! Recording to goreplay's file format and replaying it, end to end, with
//! the real `mirror-agent` binary in the forms scripts use
//! (`record --iface IF --port P --output FILE`, `record --input-pcap`,
//! `replay FILE... --shadow URL [--speed P%] [--rate N]`, `replay
//! --input-pcap`): real clients (ab, curl, Rust sockets) talk to v1, the
//! agent records what it captures (or tcpdump writes a capture), and the
//! file is replayed to a recording server. What v1 received is the truth:
//! the file (read by the tests' own parser, [`gor_file`]) and the replayed
//! requests must be exactly those, byte for byte, in each connection's
//! order, and every run's accounting must balance.
//!
//! ```text
//!  client ──▶ v1 :8080 (mirror-agent record / mirror on veth-s) ──▶ shadows
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent --bins && cargo test -p mirror-tests --test record`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{
    Agent, HttpClient, Metrics, Netns, Process, Received, ReceivedRequest, ScratchDir, Server,
    Signal, TargetCounts, ab, metrics, pseudo_random,
};
use mirror_tests::{
    Load, MachineShare, ShadowNet, Topology,
    agent::{self, expect_counts},
    gor_file::{self, GorPayload},
    http_compare::show,
    mirrored::{MARKER, compare_mirrored, strip_marker},
    or_skip, pcapng,
    rig::{PORT, shadow_url},
    tcpdump::{SNAP_ONE_MSS, Tcpdump},
    topology::{Family, SERVER_IF},
};

/// The timing test measures the agent's pace against a bound of a few
/// per cent on a machine that may have two cores: the other tests of this
/// file wait while it runs.
static LOAD: MachineShare = MachineShare::new();

const MB: usize = 1 << 20;
const PORT_TEXT: &str = "8080";

// ---------------------------------------------------------------------------
// running the agent's record and replay commands
// ---------------------------------------------------------------------------

/// `mirror-agent record --iface veth-s --port 8080 --output FILE` in `netns`,
/// attached by `attach` (auto, tcx or netlink; None: no `--attach`), when
/// this returns.
fn start_record(netns: &Netns, output: &Path, attach: Option<&str>) -> Result<Agent> {
    let output = output.display().to_string();
    let mut args = vec![
        "record", "--iface", SERVER_IF, "--port", PORT_TEXT, "--output", &output,
    ];
    if let Some(attach) = attach {
        args.extend(["--attach", attach]);
    }
    args.extend(["--nice", "0", "--log-format", "json"]);
    agent::start_attached_exact(netns, &args)
}

/// A primary with `shadows` shadow hosts, v1 on it, and where a
/// recording goes: `file` in a scratch directory named for the test.
fn recording_hosts(
    shadows: usize,
    test: &str,
    file: &str,
) -> Result<(ShadowNet, ScratchDir, PathBuf, Server)> {
    let net = ShadowNet::new(shadows)?;
    let scratch = ScratchDir::new(test)?;
    let file = scratch.path().join(file);
    let v1 = Server::start(net.primary(), net.primary_addr(PORT))?;
    Ok((net, scratch, file, v1))
}

/// The live agent mirroring port 8080 of veth-s to `shadow`, attached by
/// `attach` (auto, tcx or netlink).
fn start_mirror(netns: &Netns, shadow: &str, attach: &str) -> Result<Agent> {
    agent::start_attached(
        netns,
        &[
            "--iface",
            SERVER_IF,
            "--port",
            PORT_TEXT,
            "--shadow",
            shadow,
            "--attach",
            attach,
            "--log-format",
            "json",
        ],
    )
}

/// Whether this kernel has TCX (Linux 6.6 and later).
fn tcx_available() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 6)
}

/// The `name=value` counts of a final counts text, reasons in parentheses
/// included (their names never collide with the totals').
fn counts_of(text: &str) -> Result<BTreeMap<String, u64>> {
    text.split_whitespace()
        .map(|token| {
            let (name, value) = token
                .trim_matches(|c| c == '(' || c == ')')
                .split_once('=')
                .with_context(|| format!("`{token}` in {text:?}"))?;
            Ok((name.to_owned(), value.parse()?))
        })
        .collect()
}

/// The text after `prefix` on the stdout line that starts with it.
fn line_after<'a>(stdout: &'a str, prefix: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .with_context(|| format!("no `{prefix}` line on stdout: {stdout:?}"))
}

/// What a record run printed at its end.
#[derive(Debug)]
struct Recorded {
    /// `final counts: capture: requests_captured=N requests_skipped=N ...`
    capture: BTreeMap<String, u64>,
    /// `final counts: target=file captured=N written=N filtered=N dropped=N`
    file: BTreeMap<String, u64>,
}

impl Recorded {
    fn get(&self, name: &str) -> u64 {
        self.file.get(name).copied().unwrap_or(0)
    }
}

/// Reads a record run's stdout and checks its accounting:
/// `captured = written + filtered + dropped`, nothing left queued, and the
/// file's captured is the capture's requests.
fn recorded(stdout: &str) -> Result<Recorded> {
    let capture = counts_of(line_after(stdout, "final counts: capture: ")?)?;
    let file = counts_of(line_after(stdout, "final counts: target=file ")?)?;
    let rec = Recorded { capture, file };
    ensure!(
        rec.get("captured") == rec.get("written") + rec.get("filtered") + rec.get("dropped")
            && rec.get("queued") == 0,
        "the recording's counts do not balance: {:?}",
        rec.file
    );
    ensure!(
        rec.capture.get("requests_captured") == Some(&rec.get("captured")),
        "capture {:?}, file {:?}",
        rec.capture,
        rec.file
    );
    Ok(rec)
}

/// Stops a live record with `signal`: exit 0, kernel counters that
/// balance with nothing lost, and the run's accounting (see [`recorded`]).
fn stop_record(agent: Agent, signal: Signal) -> Result<Recorded> {
    let exit = agent.stop(signal, Duration::from_secs(20))?.success()?;
    let kernel = exit.kernel_counters()?;
    mirror_testkit::agent::check_records_identity(&kernel)?;
    ensure!(kernel["records_lost"] == 0, "ring losses: {kernel:?}");
    recorded(&exit.stdout)
}

/// What a replay run printed at its end.
#[derive(Debug)]
struct Replayed {
    /// `final counts: replay: payloads_read=N requests=N ...`
    source: BTreeMap<String, u64>,
    targets: BTreeMap<String, TargetCounts>,
    stderr: String,
}

/// A finished replay: exit 0, its source line, and each target's final
/// counts, which must balance (`captured = sent + filtered + dropped`).
fn replayed(output: &Output) -> Result<Replayed> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.success(),
        "replay ended with {}: {stderr}",
        output.status
    );
    let source = counts_of(
        line_after(&stdout, "final counts: replay: ")?
            .split(" seconds=")
            .next()
            .unwrap_or_default(),
    )?;
    let mut targets = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("final counts: target=") else {
            continue;
        };
        let (name, text) = rest.split_once(' ').context("a target without counts")?;
        let counts = TargetCounts::parse(text)?;
        ensure!(counts.balances(), "{name} does not balance: {text}");
        targets.insert(name.to_owned(), counts);
    }
    ensure!(!stderr.contains("accounting does not balance"), "{stderr}");
    Ok(Replayed {
        source,
        targets,
        stderr,
    })
}

impl Replayed {
    fn source(&self, name: &str) -> u64 {
        self.source.get(name).copied().unwrap_or(0)
    }

    fn target(&self, name: &str) -> Result<&TargetCounts> {
        self.targets
            .get(name)
            .with_context(|| format!("no final counts for {name}: {:?}", self.targets))
    }

    /// Each `(name, n)`: what the replay read (`final counts: replay:`)
    /// counts exactly n.
    fn expect_read(&self, expected: &[(&str, u64)]) -> Result<()> {
        for (name, n) in expected {
            ensure!(
                self.source(name) == *n,
                "replay read {name} = {}, expected {n}: {:?}",
                self.source(name),
                self.source
            );
        }
        Ok(())
    }

    /// [`expect_counts`] of the final counts of the target `url`.
    fn expect_target(&self, url: &str, expected: &[(&str, u64)]) -> Result<()> {
        expect_counts(url, self.target(url)?, expected)
    }
}

/// `replay ARGS... --shadow URL`, as every replay here runs: requests may
/// wait a minute in the queue, nice 0, JSON logs.
fn replay_args<'a>(args: &[&'a str], url: &'a str) -> Vec<&'a str> {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    all.extend(["--shadow", url, "--max-queue-age", "60s"]);
    all.extend(["--nice", "0", "--log-format", "json"]);
    all
}

/// `mirror-agent replay ARGS... --shadow URL` inside `netns`, one request
/// in flight (the target then sees the file's order), run to its end.
fn replay(netns: &Netns, args: &[&str], url: &str) -> Result<Replayed> {
    let mut all = replay_args(args, url);
    all.extend(["--max-in-flight", "1"]);
    replayed(&agent::run_to_end(netns, &[], &all)?)
}

// ---------------------------------------------------------------------------
// reading what came out
// ---------------------------------------------------------------------------

/// The file's payloads, all requests with distinct ids and no latency.
fn request_payloads(path: &Path) -> Result<Vec<GorPayload>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let payloads = gor_file::parse(&bytes)?;
    let ids: BTreeSet<&str> = payloads.iter().map(|p| p.id.as_str()).collect();
    ensure!(
        ids.len() == payloads.len(),
        "{} payloads, {} ids",
        payloads.len(),
        ids.len()
    );
    for (i, p) in payloads.iter().enumerate() {
        ensure!(
            p.kind == 1 && p.latency_ns == -1 && p.id.len() == 24,
            "payload {i}: type {} id {:?} latency {}",
            p.kind,
            p.id,
            p.latency_ns
        );
    }
    Ok(payloads)
}

/// Each payload framed as the test server frames a request.
fn framed(payloads: &[GorPayload]) -> Result<Vec<ReceivedRequest>> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            gor_file::frame_request(&p.data)
                .with_context(|| format!("payload {i}: {}", show(&p.data[..p.data.len().min(200)])))
        })
        .collect()
}

/// What a replay target received, in order (one connection at a time),
/// without the marker line the replay adds.
fn unmarked(received: &Received) -> Result<Vec<ReceivedRequest>> {
    received
        .requests()
        .map(|r| {
            Ok(ReceivedRequest {
                head: strip_marker(&r.head, MARKER)?,
                ..r.clone()
            })
        })
        .collect()
}

fn unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

// ---------------------------------------------------------------------------
// client traffic
// ---------------------------------------------------------------------------

/// `curl ARGS` from `netns`; it must succeed and print `expected`.
fn curl(netns: &Netns, args: &[&str], expected: &str) -> Result<()> {
    let mut all = vec!["-sS", "--fail"];
    all.extend_from_slice(args);
    let out = netns.exec("curl", &all)?;
    ensure!(
        out == expected,
        "curl {args:?} printed {:?}",
        show(out.as_bytes())
    );
    Ok(())
}

/// `[addr]` for IPv6 in URLs.
fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// Requests `tag`-ged so each is unique: GET, a POST whose binary body
/// holds CRLFs, a chunked POST with a trailer, written in one go on one
/// connection (pipelined), the answers read after.
fn pipelined(netns: &Netns, addr: SocketAddr, tag: &str) -> Result<usize> {
    let body = b"binary\r\n\x00\xff\r\n\r\nend";
    let mut wire = Vec::new();
    wire.extend(format!("GET /pipe/{tag}/1 HTTP/1.1\r\nHost: v1\r\n\r\n").as_bytes());
    wire.extend(
        format!(
            "POST /pipe/{tag}/2 HTTP/1.1\r\nHost: v1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    wire.extend(body);
    wire.extend(
        format!(
            "POST /pipe/{tag}/3 HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n3;ext=1\r\n\r\nx\r\n0\r\nX-Trailer: {tag}\r\n\r\n"
        )
        .as_bytes(),
    );
    wire.extend(format!("GET /pipe/{tag}/4?q=1 HTTP/1.1\r\nHost: v1\r\n\r\n").as_bytes());
    let mut client = HttpClient::connect(netns, addr)?;
    let started = Instant::now();
    client.write(&wire)?;
    for i in 0..4 {
        let response = client.response(started)?;
        ensure!(response.status == 200, "pipelined {i}: {}", response.status);
    }
    client.close()?;
    Ok(4)
}

/// ab with keep-alive and without, curl keep-alive (three URLs on one
/// connection), a 10 MB POST, a chunked upload, and pipelined requests,
/// all from `client` to `addr`; returns how many requests were sent.
fn client_mix(client: &Netns, addr: SocketAddr, scratch: &ScratchDir, big: usize) -> Result<u64> {
    let mut sent = 0u64;
    for (args, n) in [
        (&["-n", "300", "-c", "4", "-k"][..], 300),
        (&["-n", "60", "-c", "2"][..], 60),
    ] {
        let report = ab::run(client, args, &url(addr, "/ab"))?;
        ensure!(
            report.complete == n && report.failed == 0 && report.non_2xx == 0,
            "ab: {}",
            report.text
        );
        sent += n;
    }
    let ka: Vec<String> = (1..=3)
        .map(|i| url(addr, &format!("/keepalive/{i}")))
        .collect();
    let ka: Vec<&str> = ka.iter().map(String::as_str).collect();
    curl(client, &ka, "okokok")?;
    sent += 3;

    let upload = scratch.write("upload.bin", pseudo_random(big, 0x13))?;
    let data = format!("@{}", upload.display());
    curl(
        client,
        &["--data-binary", &data, &url(addr, "/upload")],
        "ok",
    )?;
    let chunks = scratch.write("chunked.bin", pseudo_random(300 * 1024 + 7, 0x14))?;
    let data = format!("@{}", chunks.display());
    curl(
        client,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
            &url(addr, "/chunked"),
        ],
        "ok",
    )?;
    sent += 2;
    sent += pipelined(client, addr, &addr.ip().to_string())? as u64;
    Ok(sent)
}

// ---------------------------------------------------------------------------
// 1. live traffic recorded, replayed byte for byte
// ---------------------------------------------------------------------------

/// Recorded while a second agent mirrors the same traffic to v3. Two
/// agents on one interface work today only as a TCX mirror and a netlink
/// recording (see the tests of a recording beside a mirror, at the end):
/// on a kernel without TCX the recording runs alone.
#[test]
fn live_traffic_recorded_while_mirrored_replays_byte_identical_in_connection_order() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (net, scratch, file, v1) = recording_hosts(2, "record", "live.gor")?;
    let v2 = Server::start(net.shadow(0), net.shadow_addr(0, PORT))?;
    let v3 = Server::start(net.shadow(1), net.shadow_addr(1, PORT))?;
    let v3_url = shadow_url(1);
    let mirror = tcx_available()
        .then(|| start_mirror(net.primary(), &v3_url, "tcx"))
        .transpose()?;
    let attach = if mirror.is_some() { "netlink" } else { "auto" };
    let recorder = start_record(net.primary(), &file, Some(attach))?;
    let before = unix_ns();

    let sent = client_mix(net.client(), net.primary_addr(PORT), &scratch, 10 * MB)?;
    let r1 = v1.stop()?;
    let after = unix_ns();
    ensure!(
        r1.request_count() as u64 == sent,
        "v1 got {}",
        r1.request_count()
    );
    if let Some(mirror) = mirror {
        ensure!(
            mirror_testkit::wait_until(Duration::from_secs(20), || v3.request_count() as u64
                == sent),
            "the mirror sent {} of {sent} requests to v3",
            v3.request_count()
        );
        let stopped = agent::check_exit(mirror.stop(Signal::INT, Duration::from_secs(20))?)?;
        expect_counts(
            &v3_url,
            stopped.target(&v3_url)?,
            &[
                ("captured", sent),
                ("2xx", sent),
                ("filtered", 0),
                ("dropped", 0),
            ],
        )?;
        ensure!(compare_mirrored(r1.requests(), &v3.stop()?, MARKER)? as u64 == sent);
    }
    // Every connection has ended (v1 saw each FIN); the ring drains.
    std::thread::sleep(Duration::from_millis(300));
    let rec = stop_record(recorder, Signal::TERM)?;
    ensure!(
        rec.get("captured") == sent
            && rec.get("written") == sent
            && rec.get("filtered") == 0
            && rec.get("dropped") == 0,
        "recorded {:?}, {sent} sent",
        rec.file
    );

    // The file: one payload per request, each exactly what v1 received, in
    // each connection's order; timestamps of this run.
    let payloads = request_payloads(&file)?;
    ensure!(payloads.len() as u64 == sent, "{} payloads", payloads.len());
    for p in &payloads {
        ensure!(
            (before..=after).contains(&p.timestamp_ns),
            "timestamp {} outside the run [{before}, {after}]",
            p.timestamp_ns
        );
    }
    let in_file = framed(&payloads)?;
    gor_file::same_order_per_connection(&r1, &in_file).context("the file against v1")?;

    // Replayed to v2: the same again, and its accounting.
    let target = shadow_url(0);
    let file_arg = file.display().to_string();
    let run = replay(net.primary(), &[&file_arg, "--speed", "max"], &target)?;
    run.expect_read(&[
        ("payloads_read", sent),
        ("requests", sent),
        ("malformed", 0),
    ])?;
    run.expect_target(
        &target,
        &[
            ("captured", sent),
            ("sent", sent),
            ("2xx", sent),
            ("filtered", 0),
            ("dropped", 0),
        ],
    )?;
    let r3 = v2.stop()?;
    let replayed = unmarked(&r3)?;
    gor_file::same_order_per_connection(&r1, &replayed).context("the replay against v1")?;
    let big = r1.requests().map(|r| r.body.len()).max().unwrap_or(0);
    eprintln!(
        "recorded while mirrored: {sent} requests (largest body {big} bytes) in the file, \
         replayed to v2 over {} connections",
        r3.connections.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. --speed and --rate
// ---------------------------------------------------------------------------

/// When a server's request count reached `first` and `last`, polled every
/// 2 ms from a thread until `stop`.
struct Arrivals {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Option<Instant>, Option<Instant>)>,
}

impl Arrivals {
    fn watch(server: Arc<Server>, first: usize, last: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut a, mut b) = (None, None);
            while !flag.load(Ordering::Acquire) && b.is_none() {
                let n = server.request_count();
                if a.is_none() && n >= first {
                    a = Some(Instant::now());
                }
                if n >= last {
                    b = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (a, b)
        });
        Self { stop, thread }
    }

    /// From the first to the last request's arrival.
    fn span(self) -> Result<Duration> {
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok((Some(a), Some(b))) => Ok(b - a),
            Ok(other) => bail!("not every request arrived: {other:?}"),
            Err(_) => bail!("the watcher panicked"),
        }
    }
}

/// `mirror-agent replay ARGS... --shadow URL` in the background.
fn spawn_replay(netns: &Netns, args: &[&str], url: &str) -> Result<Process> {
    Process::spawn(
        "mirror-agent replay",
        netns.command(agent::binary()?).args(replay_args(args, url)),
    )
}

#[test]
fn speed_200_percent_halves_the_recorded_span_and_rate_gives_that_rate() -> Result<()> {
    let _load = or_skip!(LOAD.exclusive());
    const REQUESTS: usize = 61;
    const GAP: Duration = Duration::from_millis(100);
    const RATE: f64 = 40.0;
    let (net, _scratch, file, v1) = recording_hosts(2, "pace", "paced.gor")?;
    let recorder = start_record(net.primary(), &file, None)?;

    // One request every 100 ms for 6 s, on one keep-alive connection.
    let mut client = HttpClient::connect(net.client(), net.primary_addr(PORT))?;
    let start = Instant::now();
    let mut sent_at = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let due = start + GAP * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        sent_at.push(Instant::now());
        let wire = format!("GET /paced/{i} HTTP/1.1\r\nHost: v1\r\n\r\n");
        ensure!(client.request(wire.as_bytes())?.status == 200);
    }
    client.close()?;
    let client_span = sent_at[REQUESTS - 1] - sent_at[0];
    let r1 = v1.stop()?;
    ensure!(r1.request_count() == REQUESTS);
    std::thread::sleep(Duration::from_millis(300));
    let rec = stop_record(recorder, Signal::TERM)?;
    ensure!(rec.get("written") == REQUESTS as u64, "{:?}", rec.file);
    let payloads = request_payloads(&file)?;
    let recorded_span = Duration::from_nanos(
        (payloads[REQUESTS - 1].timestamp_ns - payloads[0].timestamp_ns).max(0) as u64,
    );
    ensure!(
        recorded_span.abs_diff(client_span) < Duration::from_millis(50),
        "the file spans {recorded_span:?}, the client sent over {client_span:?}"
    );

    // --speed 200%: the target sees the recorded span halved, ± 10 %.
    let file_arg = file.display().to_string();
    let v2 = Arc::new(Server::start(net.shadow(0), net.shadow_addr(0, PORT))?);
    let watch = Arrivals::watch(Arc::clone(&v2), 1, REQUESTS);
    let started = Instant::now();
    let mut run = spawn_replay(
        net.primary(),
        &[&file_arg, "--speed", "200%"],
        &shadow_url(0),
    )?;
    let status = run.wait(Duration::from_secs(20))?;
    let wall = started.elapsed();
    ensure!(
        status.success(),
        "replay: {}",
        run.stderr_lines().join("\n")
    );
    let seen = watch.span()?;
    let want = recorded_span / 2;
    ensure!(
        seen.abs_diff(want) <= want / 10,
        "--speed 200%: the target saw the requests over {seen:?}, expected {want:?} ± 10 % \
         (recorded {recorded_span:?})"
    );
    ensure!(
        wall.abs_diff(want) <= want / 10 + Duration::from_millis(500),
        "--speed 200% took {wall:?} in all, expected {want:?}"
    );
    let out = run.stdout_lines().join("\n");
    let counts = TargetCounts::parse(line_after(
        &out,
        &format!("final counts: target={} ", shadow_url(0)),
    )?)?;
    ensure!(
        counts.balances() && counts.get("2xx") == REQUESTS as u64,
        "{counts}"
    );

    // --rate 40: the target sees 40 requests a second, ± 5 %.
    let v3 = Arc::new(Server::start(net.shadow(1), net.shadow_addr(1, PORT))?);
    let watch = Arrivals::watch(Arc::clone(&v3), 1, REQUESTS);
    let mut run = spawn_replay(
        net.primary(),
        &[&file_arg, "--rate", &RATE.to_string()],
        &shadow_url(1),
    )?;
    let status = run.wait(Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "replay: {}",
        run.stderr_lines().join("\n")
    );
    let rate_span = watch.span()?;
    let rate = (REQUESTS - 1) as f64 / rate_span.as_secs_f64();
    ensure!(
        (rate - RATE).abs() <= RATE * 0.05,
        "--rate {RATE}: the target saw {rate:.2} requests a second ({} over {rate_span:?})",
        REQUESTS - 1
    );
    for server in [v2, v3] {
        let server = Arc::into_inner(server).context("the watcher still holds a server")?;
        ensure!(server.stop()?.request_count() == REQUESTS);
    }
    eprintln!(
        "pace: recorded {recorded_span:?}; at 200 % the target saw {seen:?} (process {wall:?}); \
         at --rate {RATE}: {rate:.2}/s"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. tcpdump's capture as input, IPv4 and IPv6, pcap and pcapng
// ---------------------------------------------------------------------------

/// Both servers' connections, as one.
fn merged(a: Received, b: Received) -> Received {
    Received {
        connections: a.connections.into_iter().chain(b.connections).collect(),
    }
}

#[test]
fn a_tcpdump_capture_over_ipv4_and_ipv6_records_and_replays_exactly_the_clients_requests()
-> Result<()> {
    let _load = or_skip!(LOAD.shared());
    // Packets of one MSS (no TSO, no GRO), so tcpdump can use a small snap
    // length: libpcap sizes its ring's blocks by the snap length, and with
    // 256 KiB blocks it ran out of them and dropped packets here.
    let topology = Topology::builder().tso(false).gro(false).build()?;
    let scratch = ScratchDir::new("pcap")?;
    let (v4, v6) = (
        topology.server_addr(Family::V4, PORT),
        topology.server_addr(Family::V6, PORT),
    );
    let server4 = Server::start(&topology.server, v4)?;
    let server6 = Server::start(&topology.server, v6)?;
    let pcap = scratch.path().join("dump.pcap");
    let tcpdump = Tcpdump::start(&topology.server, SERVER_IF, &pcap, SNAP_ONE_MSS)?;

    let mut sent = 0;
    for addr in [v4, v6] {
        let n = client_mix(&topology.client, addr, &scratch, 2 * MB)?;
        ensure!(n > 0);
        sent += n;
    }
    let (r4, r6) = (server4.stop()?, server6.stop()?);
    tcpdump.stop()?;
    let truth = merged(r4, r6);
    ensure!(
        truth.request_count() as u64 == sent,
        "servers got {}",
        truth.request_count()
    );

    let pcapng_path = scratch.write("dump.pcapng", pcapng::from_pcap(&std::fs::read(&pcap)?)?)?;
    let mut files = Vec::new();
    for input in [&pcap, &pcapng_path] {
        // record --input-pcap: no namespace, no root needed.
        let out = scratch.path().join(format!(
            "{}.gor",
            input.extension().and_then(|e| e.to_str()).unwrap_or("x")
        ));
        let output = std::process::Command::new(agent::binary()?)
            .args(["record", "--input-pcap"])
            .arg(input)
            .args(["--port", PORT_TEXT, "--log-format", "json", "--output"])
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "record --input-pcap {}: {}",
            input.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let rec = recorded(&stdout)?;
        ensure!(
            rec.get("written") == sent && rec.capture.get("requests_skipped") == Some(&0),
            "{}: {rec:?}, {sent} sent",
            input.display()
        );
        let payloads = request_payloads(&out)?;
        gor_file::same_order_per_connection(&truth, &framed(&payloads)?)
            .with_context(|| format!("the file recorded from {}", input.display()))?;
        files.push(payloads);
    }
    ensure!(
        files[0]
            .iter()
            .map(|p| (&p.data, p.timestamp_ns))
            .eq(files[1].iter().map(|p| (&p.data, p.timestamp_ns))),
        "pcap and pcapng gave different recordings"
    );

    // replay --input-pcap, each format, to a recording server on :8081/:8082.
    for (input, port) in [(&pcap, 8081u16), (&pcapng_path, 8082)] {
        let addr = SocketAddr::new(v4.ip(), port);
        let target = Server::start(&topology.server, addr)?;
        let input_arg = input.display().to_string();
        let run = replay(
            &topology.server,
            &[
                "--input-pcap",
                &input_arg,
                "--port",
                PORT_TEXT,
                "--speed",
                "max",
            ],
            &url(addr, ""),
        )?;
        run.expect_read(&[("requests", sent), ("malformed", 0)])
            .with_context(|| input.display().to_string())?;
        run.expect_target(
            &url(addr, ""),
            &[("captured", sent), ("2xx", sent), ("dropped", 0)],
        )?;
        let got = unmarked(&target.stop()?)?;
        gor_file::same_order_per_connection(&truth, &got)
            .with_context(|| format!("replay --input-pcap {}", input.display()))?;
    }
    eprintln!("tcpdump: {sent} requests over IPv4 and IPv6, pcap and pcapng");
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. SIGTERM during a live record
// ---------------------------------------------------------------------------

#[test]
fn sigterm_during_a_live_record_leaves_a_complete_readable_file() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (net, _scratch, file, v1) = recording_hosts(0, "sigterm", "cut.gor")?;
    let recorder = start_record(net.primary(), &file, None)?;
    let load = Load::start(net.client(), net.primary_addr(PORT), 4, Duration::ZERO)?;
    // A large upload in progress too: it cannot be whole in the file.
    let mut big = HttpClient::connect(net.client(), net.primary_addr(PORT))?;
    big.write(
        format!(
            "POST /big HTTP/1.1\r\nHost: v1\r\nContent-Length: {}\r\n\r\n",
            4 * MB
        )
        .as_bytes(),
    )?;
    big.write(&pseudo_random(MB, 0x44))?;
    std::thread::sleep(Duration::from_millis(1500));
    let served_before = v1.request_count();

    // Stopped in the middle of the traffic.
    let rec = stop_record(recorder, Signal::TERM)?;
    let answered = load.stop()?;
    // The upload ends after the recording: v1 gets all of it.
    big.write(&pseudo_random(3 * MB, 0x45))?;
    ensure!(big.response(Instant::now())?.status == 200);
    big.close()?;
    let payloads = request_payloads(&file)?;
    ensure!(
        payloads.len() as u64 == rec.get("written"),
        "{} payloads in the file, {} written",
        payloads.len(),
        rec.get("written")
    );
    ensure!(
        payloads.len() >= 100 && served_before >= 100,
        "only {} payloads ({served_before} served by then)",
        payloads.len()
    );
    for (i, request) in framed(&payloads)?.iter().enumerate() {
        ensure!(
            request.head.starts_with(b"GET /load/") && request.body.is_empty(),
            "payload {i}: {}",
            show(&request.head)
        );
    }
    let bytes = std::fs::read(&file)?;
    ensure!(
        bytes.ends_with(gor_file::SEPARATOR),
        "the file does not end with a separator"
    );
    let r1 = v1.stop()?;
    eprintln!(
        "SIGTERM: {} payloads written, {:?}; the clients got {answered} answers, v1 {} requests",
        payloads.len(),
        rec.file,
        r1.request_count()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. a malformed file: reported with its place, the good payloads replayed
// ---------------------------------------------------------------------------

#[test]
fn a_malformed_payload_is_reported_with_its_offset_and_line_and_the_rest_is_replayed() -> Result<()>
{
    let _load = or_skip!(LOAD.shared());
    let net = ShadowNet::new(1)?;
    let scratch = ScratchDir::new("malformed")?;
    let binary_body: Vec<u8> = b"\r\n\x00\x01\xfe\xff\r\n\r\nGET / HTTP/1.1\r\n".to_vec();
    let mut post = format!(
        "POST /good/2 HTTP/1.1\r\nHost: v1\r\nContent-Length: {}\r\n\r\n",
        binary_body.len()
    )
    .into_bytes();
    post.extend(&binary_body);
    let good: Vec<Vec<u8>> = vec![
        b"GET /good/1 HTTP/1.1\r\nHost: v1\r\n\r\n".to_vec(),
        post,
        b"GET /good/3 HTTP/1.1\r\nHost: v1\r\n\r\n".to_vec(),
        b"POST /good/4 HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nab\r\n\r\n0\r\n\r\n"
            .to_vec(),
        b"GET /good/5 HTTP/1.1\r\nHost: v1\r\n\r\n".to_vec(),
    ];
    let ts = 1_700_000_000_000_000_000i64;
    let mut file = Vec::new();
    let mut bad_at = Vec::new();
    let mark = |file: &Vec<u8>, bad_at: &mut Vec<(usize, usize)>| {
        let line = 1 + file.iter().filter(|b| **b == b'\n').count();
        bad_at.push((file.len(), line));
    };
    file.extend(gor_file::encode(1, "a01", ts, -1, &good[0]));
    file.extend(gor_file::encode(1, "a02", ts + 1, -1, &good[1]));
    // A header line whose timestamp is not a number.
    mark(&file, &mut bad_at);
    file.extend(b"1 bad1 yesterday -1\nGET /bad/1 HTTP/1.1\r\n\r\n");
    file.extend(gor_file::SEPARATOR);
    file.extend(gor_file::encode(1, "a03", ts + 2, -1, &good[2]));
    // A request payload that is not HTTP.
    mark(&file, &mut bad_at);
    file.extend(gor_file::encode(
        1,
        "bad2",
        ts + 3,
        -1,
        b"\x16\x03\x01\x00\x05hello",
    ));
    // v1's response: read, not replayed.
    file.extend(gor_file::encode(
        2,
        "a03",
        ts + 4,
        1000,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ));
    file.extend(gor_file::encode(1, "a04", ts + 5, -1, &good[3]));
    file.extend(gor_file::encode(1, "a05", ts + 6, -1, &good[4]));
    // Cut: a payload without its separator at the end.
    mark(&file, &mut bad_at);
    file.extend(b"1 cut 1700000000000000009 -1\nGET /cut HTTP/1.1\r\n");
    let path = scratch.write("bad.gor", &file)?;

    let target = Server::start(net.shadow(0), net.shadow_addr(0, PORT))?;
    let url0 = shadow_url(0);
    let run = replay(
        net.primary(),
        &[&path.display().to_string(), "--speed", "max"],
        &url0,
    )?;
    run.expect_read(&[
        ("payloads_read", 9),
        ("requests", 5),
        ("responses_skipped", 1),
        ("malformed", 3),
    ])?;
    run.expect_target(
        &url0,
        &[("captured", 5), ("sent", 5), ("2xx", 5), ("dropped", 0)],
    )?;
    for (offset, line) in &bad_at {
        let place = format!("byte {offset} (line {line})");
        let said = run
            .stderr
            .lines()
            .find(|l| l.contains(&place))
            .with_context(|| format!("no log line names {place}: {}", run.stderr))?;
        ensure!(
            said.contains("malformed") && said.contains("WARN"),
            "{said}"
        );
    }
    let got = unmarked(&target.stop()?)?;
    let expected: Vec<ReceivedRequest> = good
        .iter()
        .map(|g| gor_file::frame_request(g))
        .collect::<Result<_>>()?;
    ensure!(
        got == expected,
        "the target received {:?}",
        got.iter().map(|r| show(&r.head)).collect::<Vec<_>>()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// a recording beside a live mirror on the same interface
// ---------------------------------------------------------------------------

/// A mirror attached by `mirror_attach`, then `record` by `record_attach`,
/// on v1's interface: each must see every one of 200 requests.
fn mirror_and_record_side_by_side(mirror_attach: &str, record_attach: &str) -> Result<()> {
    const REQUESTS: u64 = 200;
    let (net, _scratch, file, v1) = recording_hosts(1, "pair", "pair.gor")?;
    let v2 = Server::start(net.shadow(0), net.shadow_addr(0, PORT))?;
    let mirror = start_mirror(net.primary(), &shadow_url(0), mirror_attach)?;
    let recorder = start_record(net.primary(), &file, Some(record_attach))?;
    let report = ab::run(
        net.client(),
        &["-n", &REQUESTS.to_string(), "-c", "4", "-k"],
        &url(net.primary_addr(PORT), "/pair"),
    )?;
    ensure!(
        report.complete == REQUESTS && report.failed == 0,
        "ab: {}",
        report.text
    );
    let r1 = v1.stop()?;
    std::thread::sleep(Duration::from_secs(1));
    let mirrored = Metrics::scrape(net.primary(), metrics::DEFAULT_ADDR)?.requests_captured();
    let stopped = agent::check_exit(mirror.stop(Signal::INT, Duration::from_secs(20))?)?;
    let rec = stop_record(recorder, Signal::TERM)?;
    let r2 = v2.stop()?;
    ensure!(
        mirrored == REQUESTS && rec.get("written") == REQUESTS,
        "mirror by {mirror_attach}, record by {record_attach}: of {REQUESTS} requests (v1 got \
         {}), the mirror captured {mirrored} (kernel seen={} matched={}, v2 got {}) and the \
         recording wrote {}",
        r1.request_count(),
        stopped.kernel["seen"],
        stopped.kernel["matched"],
        r2.request_count(),
        rec.get("written")
    );
    Ok(())
}

/// Failed when the kernel program returned `TC_ACT_PIPE` (3): TCX runs
/// the next program only when one returns `TCX_NEXT` (-1): the program
/// first in order (the later agent, attached with `LinkOrder::first()`)
/// ends the chain, so the earlier agent, or any TCX program after ours
/// (a CNI's), never runs.
#[test]
fn a_recording_beside_a_mirror_both_by_tcx_each_see_every_request() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    mirror_and_record_side_by_side("tcx", "tcx")
}

/// Failed when every agent starting removed the netlink filters named
/// like its own on the interface ("leftovers of a crashed run"), also
/// those of an agent that is running.
#[test]
fn a_recording_beside_a_mirror_by_netlink_leaves_the_mirror_capturing() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    mirror_and_record_side_by_side("netlink", "tcx")
}
