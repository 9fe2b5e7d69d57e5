//! Replay to shadows end to end: real clients (ab, a Rust client) talk to
//! v1 in its namespace, the real `mirror-agent` binary captures on v1's
//! interface and replays to shadow hosts (v2, v3) in namespaces of their
//! own behind v1, and every test checks exact counts on three sides: what
//! the shadows received, what the agent counted (its metrics while running,
//! its final counts and kernel counters at exit), and what the client saw.
//!
//! ```text
//!  client ──▶ v1 (Server; mirror-agent on veth-s) ──veth-sh0──▶ v2
//!                                                     └─veth-sh1──▶ v3
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test replay`.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{
    EtcHosts, Metrics, Received, ReceivedRequest, ScratchDir, Server, TargetCounts,
    process::peak_rss_kib,
};
use mirror_tests::{
    MachineShare, ReplayRig, ShadowNet,
    agent::{self, Stopped, expect_counts, stop_clean},
    mirrored::{MARKER, compare_mirrored},
    or_skip, require_kernel,
    rig::{PORT, shadow_url},
    topology::SERVER_IF,
};

/// Peak resident memory allowed to the agent under a slow shadow, with a
/// ring of [`SLOW_RING`]. The ring's pages count in the agent's RSS as soon
/// as it maps them, twice (the data area is mapped twice in a row for
/// wrap-around reads): with the default 16 MiB ring the agent starts at
/// about 40 MiB resident, whatever the traffic.
const RSS_BOUND_KIB: u64 = 64 << 10;
const SLOW_RING: &str = "4M";

/// The slow-shadow test times v1's requests against a bound, on a machine
/// that may have two cores: the other tests of this file (each an agent,
/// servers and a client busy at once) wait while it runs, so that the bound
/// judges the agent and not the neighbours.
static LOAD: MachineShare = MachineShare::new();

/// The slowest v1 request allowed while a shadow is stuck.
const V1_LATENCY_BOUND_MS: u64 = 200;
/// Runs of the slow-shadow test's load before a request over the bound
/// fails it.
const LATENCY_RUNS: usize = 3;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// [`expect`], and the metrics of the settled target say what its final
/// counts say: the same non-zero outcomes with the same numbers.
fn expect_settled(
    stopped: &Stopped,
    metrics: &Metrics,
    target: &str,
    expected: &[(&str, u64)],
) -> Result<()> {
    let counts = stopped.target(target)?;
    expect_counts(target, counts, expected)?;
    same_as_metrics(metrics, target, counts)
}

/// The metrics of a settled target say what its final counts say: the
/// same non-zero outcomes with the same numbers.
fn same_as_metrics(metrics: &Metrics, target: &str, counts: &TargetCounts) -> Result<()> {
    let scraped = TargetCounts::scraped(metrics, target)
        .with_context(|| format!("{target} is not in the metrics"))?
        .outcomes;
    let logged: BTreeMap<String, u64> = counts
        .outcomes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| (name.clone(), *n))
        .collect();
    ensure!(
        scraped == logged,
        "{target}: metrics {scraped:?}, final counts {logged:?}"
    );
    Ok(())
}

/// `/proc/loadavg`'s first three figures, for messages about timing.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `shadow` received exactly the `requests` requests v1 received, bar the
/// marker header line, and nothing else.
fn mirrored_exactly(v1: &Received, shadow: &Received, requests: usize) -> Result<()> {
    ensure!(compare_mirrored(v1.requests(), shadow, MARKER)? == requests);
    Ok(())
}

/// A config file with targets named v2 and v3 (shadows 0 and 1): `head`
/// (top-level keys) first, then each `[[target]]` with its extra lines.
fn v2_v3_config(head: &str, v2_extra: &str, v3_extra: &str) -> String {
    format!(
        "{head}[[target]]\nurl = \"{}\"\nname = \"v2\"\n{v2_extra}\n\
         [[target]]\nurl = \"{}\"\nname = \"v3\"\n{v3_extra}",
        shadow_url(0),
        shadow_url(1)
    )
}

// ---------------------------------------------------------------------------
// ab against v1, two shadows get every request, identical
// ---------------------------------------------------------------------------

#[test]
fn ab_thousand_requests_reach_v2_and_v3_identical() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (mut rig, agent) = ReplayRig::builder(2).mirror_to(&[0, 1]).start()?;
    let (t2, t3) = (rig.url(0), rig.url(1));
    rig.ab_ok(&["-n", "1000", "-c", "10"], 1000)?;
    let metrics = rig.settle(&[&t2, &t3], 1000)?;
    let stopped = stop_clean(agent)?;

    ensure!(
        stopped.finals.len() == 2,
        "final counts: {:?}",
        stopped.finals
    );
    for target in [&t2, &t3] {
        expect_settled(
            &stopped,
            &metrics,
            target,
            &[
                ("captured", 1000),
                ("sent", 1000),
                ("2xx", 1000),
                ("filtered", 0),
                ("dropped", 0),
            ],
        )?;
    }
    ensure!(
        stopped.kernel["records_matched"] > 0,
        "{:?}",
        stopped.kernel
    );
    let served = rig.stop_servers()?;
    let r1 = &served.v1;
    ensure!(r1.request_count() == 1000, "v1 got {}", r1.request_count());
    for (name, shadow) in [("v2", served.shadow(0)), ("v3", served.shadow(1))] {
        let matched = compare_mirrored(r1.requests(), shadow, MARKER)
            .with_context(|| format!("{name} against v1"))?;
        ensure!(matched == 1000);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// a dead shadow costs nothing to v1 or to the other shadow
// ---------------------------------------------------------------------------

#[test]
fn v3_dead_v2_gets_everything_and_v3_drops_are_connect_refused() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    // Nothing listens on v3: its host answers every SYN with a RST.
    let (mut rig, agent) = ReplayRig::builder(2)
        .serve(&[0])
        .mirror_to(&[0, 1])
        .start()?;
    let (t2, t3) = (rig.url(0), rig.url(1));
    rig.ab_ok(&["-n", "1000", "-c", "10"], 1000)?;
    let metrics = rig.settle(&[&t2, &t3], 1000)?;
    let stopped = stop_clean(agent)?;

    expect_settled(
        &stopped,
        &metrics,
        &t2,
        &[("captured", 1000), ("2xx", 1000)],
    )?;
    expect_settled(
        &stopped,
        &metrics,
        &t3,
        &[
            ("captured", 1000),
            ("sent", 0),
            ("filtered", 0),
            ("dropped", 1000),
            ("connect_refused", 1000),
        ],
    )?;

    let served = rig.stop_servers()?;
    let r1 = &served.v1;
    ensure!(r1.request_count() == 1000, "v1 got {}", r1.request_count());
    mirrored_exactly(r1, served.shadow(0), 1000)
}

// ---------------------------------------------------------------------------
// a slow shadow fills its queue; drops are counted, memory and v1 hold
// ---------------------------------------------------------------------------

#[test]
fn slow_v2_fills_its_queue_drops_are_counted_and_v1_stays_fast() -> Result<()> {
    let _load = or_skip!(LOAD.exclusive());
    const QUEUE: u64 = 16;
    const IN_FLIGHT: u64 = 2;
    // Small queue and few workers for v2 only (flags would set them for
    // every target): v3 keeps the defaults.
    let mut rig = ReplayRig::builder(2)
        .serve(&[1])
        .config(v2_v3_config(
            "",
            &format!("queue_size = {QUEUE}\nmax_in_flight = {IN_FLIGHT}\n"),
            "",
        ))
        .args(&["--drain-timeout", "1s", "--ring-size", SLOW_RING])
        .build()?;
    let v2 = Server::builder()
        .delay(Duration::from_secs(2))
        .start(rig.shadow(0), rig.shadow_addr(0))?;
    let (t2, t3) = ("v2", "v3");
    let agent = rig.start_agent()?;

    // 1000 requests while v2's queue is full. A request slower than the
    // bound fails the test only if every one of LATENCY_RUNS runs has one:
    // a stall the agent causes comes back, a busy neighbour on a shared
    // machine does not.
    let started = Instant::now();
    let mut slowest = Vec::new();
    let report = loop {
        let report = rig.ab_ok(&["-n", "1000", "-c", "10"], 1000)?;
        slowest.push(report.longest_ms);
        if report.longest_ms <= V1_LATENCY_BOUND_MS || slowest.len() == LATENCY_RUNS {
            break report;
        }
        eprintln!(
            "slow v2: the slowest v1 request took {} ms (load average {}); running again",
            report.longest_ms,
            load_average()
        );
    };
    ensure!(
        report.longest_ms <= V1_LATENCY_BOUND_MS,
        "the slowest v1 request took {slowest:?} ms in {LATENCY_RUNS} runs (bound \
         {V1_LATENCY_BOUND_MS} ms, load average {}): {}",
        load_average(),
        report.text
    );
    let total = 1000 * slowest.len() as u64;
    // v3 is fast: it gets everything, whatever v2 does.
    let metrics = rig.settle(&[t3], total)?;
    let elapsed = started.elapsed();
    let v2_live = metrics.shadow_outcomes(t2);
    ensure!(
        v2_live.get("queue_full").copied().unwrap_or(0) > 0,
        "no queue_full drops on the slow target while running: {v2_live:?}"
    );
    let peak_kib = peak_rss_kib(agent.pid())?;
    let stopped = stop_clean(agent)?;
    let v2_answered = v2.answered() as u64;
    let v2_received = v2.halt().request_count() as u64;

    expect_settled(
        &stopped,
        &metrics,
        t3,
        &[("captured", total), ("2xx", total)],
    )?;

    let v2_counts = stopped.target(t2)?;
    let (sent, queue_full) = (v2_counts.get("2xx"), v2_counts.get("queue_full"));
    expect_counts(
        t2,
        v2_counts,
        &[("captured", total), ("sent", sent), ("filtered", 0)],
    )?;
    // At most one request per worker every 2 s got through, plus what the
    // queue and the workers held: everything else was dropped as queue_full.
    let through = QUEUE + IN_FLIGHT * (2 + elapsed.as_secs() / 2);
    ensure!(
        queue_full >= total - through && queue_full < total,
        "{t2}: queue_full {queue_full}, expected at least {} ({v2_counts})",
        total - through
    );
    // What was not sent nor dropped as full was given up at shutdown.
    expect_counts(
        t2,
        v2_counts,
        &[
            ("dropped", total - sent),
            ("shutdown", total - sent - queue_full),
        ],
    )?;
    // Every sent request was answered by v2; v2 read at most the in-flight
    // ones more (given up at shutdown).
    ensure!(
        v2_received >= sent && v2_received <= sent + IN_FLIGHT && v2_answered >= sent,
        "v2 read {v2_received} requests and answered {v2_answered}; the agent counted {sent} sent"
    );
    ensure!(
        peak_kib < RSS_BOUND_KIB,
        "the agent's peak RSS is {peak_kib} KiB (bound {RSS_BOUND_KIB} KiB)"
    );

    let served = rig.stop_servers()?;
    let r1 = &served.v1;
    ensure!(
        r1.request_count() as u64 == total,
        "v1 got {}",
        r1.request_count()
    );
    ensure!(compare_mirrored(r1.requests(), served.shadow(1), MARKER)? as u64 == total);
    eprintln!(
        "slow v2: sent {sent}, queue_full {queue_full}, shutdown {}; v1 slowest {slowest:?} \
         ms; agent peak RSS {peak_kib} KiB",
        v2_counts.get("shutdown"),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// a header rule from the config file: v3 gets only the canaries
// ---------------------------------------------------------------------------

/// 300 requests over keep-alive connections: GET and POST, with
/// `X-Canary: 1` (name in either case), other values, or none.
fn canary_mix(host: &str) -> Vec<Vec<u8>> {
    (0..300)
        .map(|i| {
            let body = format!("body of request {i}\n").repeat(i % 7);
            let (method, canary) = match i % 5 {
                0 => ("GET", Some("X-Canary: 1")),
                1 => ("POST", Some("x-canary: 1")),
                2 => ("GET", Some("X-Canary: 0")),
                3 => ("POST", Some("X-Canary: 10")),
                _ => ("GET", None),
            };
            let mut head = format!("{method} /shop/{i}?q={i} HTTP/1.1\r\nHost: {host}\r\n");
            if let Some(line) = canary {
                head.push_str(line);
                head.push_str("\r\n");
            }
            if method == "POST" {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let mut wire = head.into_bytes();
            if method == "POST" {
                wire.extend_from_slice(body.as_bytes());
            }
            wire
        })
        .collect()
}

#[test]
fn header_rule_in_the_config_file_sends_v3_only_canaries() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (mut rig, agent) = ReplayRig::builder(2)
        .config(v2_v3_config(
            "",
            "",
            "[[target.match]]\nheader = \"X-Canary\"\nequals = \"1\"\n",
        ))
        .start()?;
    let requests = canary_mix(&rig.primary_addr().to_string());
    rig.send_all(&requests, 3)?;
    let metrics = rig.settle(&["v2", "v3"], 300)?;
    let stopped = stop_clean(agent)?;

    expect_settled(&stopped, &metrics, "v2", &[("captured", 300), ("2xx", 300)])?;
    expect_settled(
        &stopped,
        &metrics,
        "v3",
        &[
            ("captured", 300),
            ("2xx", 120),
            ("filtered", 180),
            ("header", 180),
            ("dropped", 0),
        ],
    )?;

    let served = rig.stop_servers()?;
    let r1 = &served.v1;
    ensure!(r1.request_count() == 300, "v1 got {}", r1.request_count());
    mirrored_exactly(r1, served.shadow(0), 300)?;
    let canaries = r1
        .requests()
        .filter(|r| r.header("X-Canary") == Some(b"1".as_slice()));
    let matched =
        compare_mirrored(canaries, served.shadow(1), MARKER).context("v3 against v1's canaries")?;
    ensure!(matched == 120, "{matched} canaries");
    Ok(())
}

// ---------------------------------------------------------------------------
// a 10 % share on v2
// ---------------------------------------------------------------------------

#[test]
fn ten_percent_share_on_v2_over_two_thousand_requests() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    // The share is under test, not the drain rate: the whole burst of 2000
    // fits in each queue however fast this (debug) agent sends.
    let (mut rig, agent) = ReplayRig::builder(2)
        .config(v2_v3_config("queue_size = 4096\n\n", "share = 10\n", ""))
        .start()?;
    rig.ab_ok(&["-n", "2000", "-c", "10", "-k"], 2000)?;
    let metrics = rig.settle(&["v2", "v3"], 2000)?;
    let stopped = stop_clean(agent)?;

    let served = rig.stop_servers()?;
    let (r1, r2, r3) = (&served.v1, served.shadow(0), served.shadow(1));
    ensure!(r1.request_count() == 2000, "v1 got {}", r1.request_count());
    let shared = r2.request_count() as u64;
    ensure!(
        (140..=260).contains(&shared),
        "v2 received {shared} of 2000 requests at a 10 % share (200 ± 60 expected)"
    );
    expect_settled(
        &stopped,
        &metrics,
        "v2",
        &[
            ("captured", 2000),
            ("2xx", shared),
            ("filtered", 2000 - shared),
            ("share", 2000 - shared),
            ("dropped", 0),
        ],
    )?;
    expect_counts(
        "v3",
        stopped.target("v3")?,
        &[("captured", 2000), ("2xx", 2000)],
    )?;
    mirrored_exactly(r1, r3, 2000)?;
    // ab sends one request over and over: v2's are copies of it.
    let sample: Vec<&ReceivedRequest> = r1.requests().take(r2.request_count()).collect();
    ensure!(compare_mirrored(sample, r2, MARKER)? == r2.request_count());
    eprintln!("10 % share: v2 received {shared} of 2000");
    Ok(())
}

// ---------------------------------------------------------------------------
// the loop guard
// ---------------------------------------------------------------------------

#[test]
fn requests_carrying_the_marker_header_are_not_replayed() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (mut rig, agent) = ReplayRig::builder(2).mirror_to(&[0, 1]).start()?;
    let (t2, t3) = (rig.url(0), rig.url(1));
    let host = rig.primary_addr().to_string();
    // 20 plain requests, 10 carrying the marker as the agent writes it, 5
    // with its name in lower case and another value: 15 mirrored copies.
    let requests: Vec<Vec<u8>> = (0..35)
        .map(|i| {
            let marker = match i {
                0..20 => "",
                20..30 => "X-Mirrored-By: mirror\r\n",
                _ => "x-mirrored-by: another-agent\r\n",
            };
            format!("GET /loop/{i} HTTP/1.1\r\nHost: {host}\r\n{marker}\r\n").into_bytes()
        })
        .collect();
    rig.send_all(&requests, 1)?;
    let metrics = rig.settle(&[&t2, &t3], 35)?;
    let stopped = stop_clean(agent)?;

    for target in [&t2, &t3] {
        expect_settled(
            &stopped,
            &metrics,
            target,
            &[
                ("captured", 35),
                ("2xx", 20),
                ("filtered", 15),
                ("loop", 15),
                ("dropped", 0),
            ],
        )?;
    }
    let served = rig.stop_servers()?;
    let r1 = &served.v1;
    ensure!(r1.request_count() == 35, "v1 got {}", r1.request_count());
    let plain = || {
        r1.requests()
            .filter(|r| r.header("X-Mirrored-By").is_none())
    };
    ensure!(compare_mirrored(plain(), served.shadow(0), MARKER)? == 20);
    ensure!(compare_mirrored(plain(), served.shadow(1), MARKER)? == 20);
    Ok(())
}

// ---------------------------------------------------------------------------
// a name with two addresses: both replicas get requests
// ---------------------------------------------------------------------------

#[test]
fn a_target_name_with_two_addresses_spreads_over_both_replicas() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    const NAME: &str = "myapp-v2";
    let target = format!("http://{NAME}:{PORT}");
    let mut rig = ReplayRig::builder(1)
        .serve(&[])
        .args(&["--shadow", &target])
        .build()?;
    let second = rig.net.add_shadow_address(0, 3)?;
    let first = rig.shadow_addr(0);
    let replica_a = Server::start(rig.shadow(0), first)?;
    let replica_b = Server::start(rig.shadow(0), (second, PORT).into())?;
    let _hosts = EtcHosts::create(
        rig.primary(),
        &[(first.ip(), NAME), (IpAddr::V4(second), NAME)],
    )?;
    let agent = rig.start_agent()?;
    for addr in [first, (second, PORT).into()] {
        agent
            .wait_for_log(&format!("\"address\":\"{addr}\""), Duration::from_secs(5))
            .with_context(|| format!("{NAME} did not resolve to {addr}"))?;
    }

    rig.ab_ok(&["-n", "400", "-c", "8"], 400)?;
    let metrics = rig.settle(&[&target], 400)?;
    let stopped = stop_clean(agent)?;
    expect_settled(
        &stopped,
        &metrics,
        &target,
        &[("captured", 400), ("2xx", 400)],
    )?;

    let r1 = rig.stop_v1()?;
    let (a, b) = (replica_a.stop()?, replica_b.stop()?);
    let (got_a, got_b) = (a.request_count(), b.request_count());
    ensure!(
        got_a >= 40 && got_b >= 40,
        "replicas received {got_a} and {got_b} of 400: not spread over both"
    );
    let both = Received {
        connections: a.connections.into_iter().chain(b.connections).collect(),
    };
    mirrored_exactly(&r1, &both, 400)?;
    eprintln!("replicas: {got_a} + {got_b}");
    Ok(())
}

// ---------------------------------------------------------------------------
// bad rules and URLs: one clear error, non-zero exit
// ---------------------------------------------------------------------------

/// The agent refused to start with one error line containing every one
/// of `needles`. Clap's errors come with a blank line and a hint.
fn refused(net: &ShadowNet, args: &[&str], needles: &[&str]) -> Result<()> {
    let port = PORT.to_string();
    let mut all = vec!["--iface", SERVER_IF, "--port", &port];
    all.extend_from_slice(args);
    let output = agent::run_to_end(net.primary(), &[], &all)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information, try"))
        .collect();
    ensure!(!output.status.success(), "{args:?} was accepted: {stderr}");
    ensure!(
        lines.len() == 1,
        "{args:?}: {} lines on stderr:\n{stderr}",
        lines.len()
    );
    let line = lines[0];
    ensure!(
        line.starts_with("error: ") || line.contains("\"level\":\"ERROR\""),
        "{args:?}: not an error line: {line}"
    );
    for needle in needles {
        ensure!(line.contains(needle), "{args:?}: `{needle}` not in {line}");
    }
    ensure!(
        output.stdout.is_empty(),
        "{args:?}: stdout {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

#[test]
fn bad_rules_and_urls_fail_with_one_line_naming_the_flag_or_file_line() -> Result<()> {
    require_kernel!();
    // Nothing may attach: the interface exists, so only the error stops it.
    let net = ShadowNet::new(0)?;
    refused(&net, &["--shadow", "ftp://x"], &["--shadow", "ftp"])?;
    refused(
        &net,
        &["--shadow", "http://x:99999"],
        &["--shadow", "99999"],
    )?;
    let ok = "http://10.200.10.2:8080";
    refused(
        &net,
        &["--shadow", ok, "--match-header-regex", "X:("],
        &["--match-header-regex", "X:("],
    )?;
    refused(
        &net,
        &["--shadow", ok, "--share", "150"],
        &["--share", "150"],
    )?;
    refused(
        &net,
        &["--shadow", ok, "--set-header", "no colon"],
        &["--set-header"],
    )?;

    let scratch = ScratchDir::new("badconfig")?;
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "typo.toml",
            "queue_size = 10\n\n[[target]]\nurl = \"http://10.200.10.2:8080\"\nshare = 10\n\
             maxinflight = 3\n",
            &[":6:", "maxinflight"],
        ),
        (
            "regex.toml",
            "[[target]]\nurl = \"http://10.200.10.2:8080\"\n[[target.match]]\n\
             header = \"X-Canary\"\nregex = \"(\"\n",
            &[":5:", "regex"],
        ),
        (
            "url.toml",
            "share = 50\n[[target]]\nurl = \"ftp://10.200.10.2\"\n",
            &[":3:", "ftp"],
        ),
        ("toplevel.toml", "shares = 5\n", &[":1:", "shares"]),
    ];
    for (name, text, needles) in cases {
        let path = scratch.write(name, text)?.display().to_string();
        let mut all = vec![path.as_str()];
        all.extend_from_slice(needles);
        refused(&net, &["--config", &path], &all).with_context(|| format!("{name}:\n{text}"))?;
    }
    let missing = scratch.path().join("missing.toml").display().to_string();
    refused(&net, &["--config", &missing], &[&missing])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// the latency histogram of the metrics endpoint
// ---------------------------------------------------------------------------

#[test]
fn metrics_latency_histogram_counts_each_request_once() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (mut rig, agent) = ReplayRig::builder(1).mirror_to(&[0]).start()?;
    let t2 = rig.url(0);
    rig.ab_ok(&["-n", "100", "-c", "4"], 100)?;
    let metrics = rig.settle(&[&t2], 100)?;
    stop_clean(agent)?;
    rig.stop_servers()?;
    let family = "mirror_shadow_request_duration_seconds";
    let labels = [("target", t2.as_str())];
    let count = metrics.get(&format!("{family}_count"), &labels);
    let inf = metrics.get(
        &format!("{family}_bucket"),
        &[("target", t2.as_str()), ("le", "+Inf")],
    );
    ensure!(
        count == Some(100.0) && inf == Some(100.0),
        "{family}: count {count:?}, +Inf bucket {inf:?}, 100 requests sent"
    );
    let mut previous = 0.0;
    for sample in metrics.matching(&format!("{family}_bucket"), &labels) {
        ensure!(
            sample.value >= previous && sample.value <= 100.0,
            "bucket {:?}: {} after {previous}",
            sample.labels.get("le"),
            sample.value
        );
        previous = sample.value;
    }
    Ok(())
}
