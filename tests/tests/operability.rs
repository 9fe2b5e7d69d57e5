//! Operating the real `mirror-agent` binary the way an SRE does: a real
//! Prometheus scrapes it, promtool judges its exposition, its JSON logs
//! tell a shadow's outage, `check-config` finds every mistake of a file,
//! SIGTERM under load detaches and drains in time, SIGHUP adds a target
//! without the capture missing a request.
//!
//! Every test that moves traffic checks the accounting identities on the
//! agent's own scrape ([`ops::settle`]): per target `captured = sent +
//! filtered + dropped`, and in the kernel `matched = emitted + lost`.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test operability`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use mirror_tests::{
    Agent, AgentExit, HttpServer, Load, Prometheus, ScratchDir, ShadowNet, SlowServer, ab,
    agent_output,
    metrics::{self, Metrics},
    ops::{self, TargetAccount, field, message, wait_for_event},
    prometheus, require_kernel,
    topology::SERVER_IF,
    wait_until,
};

const PORT: u16 = 8080;
/// How long the agent may take to account for every captured request.
const SETTLE: Duration = Duration::from_secs(20);
/// How long a state change may take to show in the log.
const LOG_WAIT: Duration = Duration::from_secs(20);

fn port() -> String {
    PORT.to_string()
}

/// `--iface veth-s --port 8080 --shadow URL... EXTRA...`, JSON logs.
fn agent_args<'a>(shadows: &[&'a str], extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--iface",
        SERVER_IF,
        "--port",
        &port(),
        "--log-format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    for shadow in shadows {
        args.extend(["--shadow".to_owned(), (*shadow).to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn start_agent(net: &ShadowNet, args: &[String]) -> Result<Agent> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start_attached(net.primary(), &args)
}

/// SIGTERM, exit 0, every line of stderr a JSON event, the kernel's
/// records balanced, every target's final counts balanced.
fn stop_agent(agent: Agent, timeout: Duration) -> Result<AgentExit> {
    let exit = agent.stop(libc::SIGTERM, timeout)?;
    check_exit(&exit)?;
    Ok(exit)
}

fn check_exit(exit: &AgentExit) -> Result<()> {
    ensure!(
        exit.status.success(),
        "the agent ended with {}: {}",
        exit.status,
        exit.stderr
    );
    for line in exit.stderr.lines() {
        ops::parse_event(line)?;
    }
    let kernel = agent_output::kernel_counters(&exit.stdout)?;
    agent_output::check_records_identity(&kernel)?;
    let lines: Vec<String> = exit.stderr.lines().map(str::to_owned).collect();
    for (target, counts) in agent_output::final_counts(&lines)? {
        ensure!(
            counts.balances(),
            "{target}: final counts do not balance: {counts}"
        );
    }
    ensure!(
        exit.stderr.contains("final counts: capture"),
        "no final counts of the capture: {}",
        exit.stderr
    );
    Ok(())
}

fn settle(net: &ShadowNet) -> Result<Metrics> {
    ops::settle(net.primary(), metrics::DEFAULT_ADDR, SETTLE)
}

fn captured(metrics: &Metrics) -> u64 {
    metrics
        .get("mirror_requests_captured_total", &[])
        .unwrap_or(0.0) as u64
}

// ---------------------------------------------------------------------------
// a: Prometheus scrapes the agent; promtool finds nothing wrong; health
// ---------------------------------------------------------------------------

#[test]
fn a_prometheus_counts_every_mirrored_request_and_promtool_finds_no_problem() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let net = ShadowNet::new(2)?;
    let v1 = HttpServer::start(net.primary(), net.primary_addr(PORT))?;
    let v2 = HttpServer::start(net.shadow(0), net.shadow_addr(0, PORT))?;
    let v3 = HttpServer::start(net.shadow(1), net.shadow_addr(1, PORT))?;
    let (t2, t3) = (net.shadow_url(0, PORT), net.shadow_url(1, PORT));
    let agent = start_agent(&net, &agent_args(&[&t2, &t3], &[]))?;
    let server = Prometheus::start(net.primary(), metrics::DEFAULT_ADDR, Duration::from_secs(1))?;

    // Health: the process answers; ready once attached and draining.
    let get = |path| ops::http_get(net.primary(), metrics::DEFAULT_ADDR, path);
    ensure!(get("/healthz")? == (200, "ok\n".to_owned()));
    let mut ready = get("/readyz")?;
    if ready.0 != 200 {
        wait_until(Duration::from_secs(5), || {
            get("/readyz").is_ok_and(|r| r.0 == 200)
        });
        ready = get("/readyz")?;
    }
    ensure!(ready == (200, "ready\n".to_owned()), "/readyz: {ready:?}");
    ensure!(get("/nothing")?.0 == 404);

    let url = format!("http://{}/", net.primary_addr(PORT));
    let report = ab::run(net.client(), &["-n", "1000", "-c", "4", "-k"], &url)?;
    ensure!(
        report.complete == 1000 && report.failed == 0 && report.non_2xx == 0,
        "ab: {}",
        report.text
    );
    let scrape = settle(&net)?;
    ensure!(captured(&scrape) == 1000, "captured {}", captured(&scrape));
    for target in [&t2, &t3] {
        let account = TargetAccount::of(&scrape, target)?;
        ensure!(
            account.captured == 1000 && account.sent == 1000,
            "{target}: {account:?}"
        );
    }

    // What Prometheus stored, through its query API.
    let sent = r#"sum by (target) (mirror_shadow_requests_total{outcome=~"[1-5]xx"})"#;
    let (counted, series) = server.wait_for(net.primary(), sent, SETTLE, |series| {
        series.len() == 2 && series.iter().all(|s| s.value == 1000.0)
    })?;
    ensure!(counted, "Prometheus: {series:?}; its log: {}", server.log());
    let targets: Vec<&str> = series
        .iter()
        .filter_map(|s| s.labels.get("target").map(String::as_str))
        .collect();
    ensure!(
        targets.contains(&t2.as_str()) && targets.contains(&t3.as_str()),
        "{targets:?}"
    );
    let up = server.query(net.primary(), "up")?;
    ensure!(up.len() == 1 && up[0].value == 1.0, "up: {up:?}");
    let lost = server.query(net.primary(), "mirror_kernel_records_lost_total")?;
    ensure!(lost.len() == 1 && lost[0].value == 0.0, "lost: {lost:?}");

    // promtool on the agent's own exposition: no error, no lint.
    let (status, exposition) = get("/metrics")?;
    ensure!(status == 200);
    prometheus::check_metrics(&exposition)?;
    for family in [
        "mirror_kernel_packets_total{outcome=",
        "mirror_kernel_bytes_total ",
        "mirror_kernel_records_lost_total ",
        "mirror_flows_active ",
        "mirror_flows_total{end=",
        "mirror_requests_captured_total ",
        "mirror_requests_skipped_total{reason=",
        "mirror_shadow_requests_total{target=",
        "mirror_shadow_request_duration_seconds_bucket{",
        "mirror_shadow_queue_depth{target=",
        "mirror_build_info{version=",
    ] {
        ensure!(exposition.contains(family), "no {family} in:\n{exposition}");
    }
    drop(server);

    stop_agent(agent, Duration::from_secs(10))?;
    for (name, server) in [("v1", v1), ("v2", v2), ("v3", v3)] {
        let received = server.stop()?.request_count();
        ensure!(received == 1000, "{name} received {received}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// b: JSON logs; a shadow dies and comes back
// ---------------------------------------------------------------------------

#[test]
fn b_json_logs_tell_a_shadow_going_down_and_coming_back() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let net = ShadowNet::new(1)?;
    let v1 = HttpServer::start(net.primary(), net.primary_addr(PORT))?;
    let shadow_addr = net.shadow_addr(0, PORT);
    let v2 = SlowServer::start(net.shadow(0), shadow_addr, Duration::ZERO)?;
    let t2 = net.shadow_url(0, PORT);
    let agent = start_agent(
        &net,
        &agent_args(
            &[&t2],
            &["--stats-interval", "1s", "--connect-timeout", "200ms"],
        ),
    )?;
    let load = Load::start(
        net.client(),
        net.primary_addr(PORT),
        1,
        Duration::from_millis(5),
    )?;
    load.wait_more(50, Duration::from_secs(10))?;
    let is = |wanted: &'static str| {
        let t2 = t2.clone();
        move |e: &serde_json::Value| {
            message(e) == wanted && field(e, "target_name") == Some(t2.as_str())
        }
    };
    ensure!(
        ops::json_events(&agent)?
            .iter()
            .any(is("shadow target started")),
        "no `shadow target started`"
    );

    // The shadow dies: its connections close, new ones are refused.
    let (received_before, _) = v2.stop();
    ensure!(received_before > 0, "the shadow got nothing before it died");
    wait_for_event(
        &agent,
        LOG_WAIT,
        "the address failing",
        is("shadow address failing, set aside"),
    )?;
    // It comes back on the same address at once, before the agent probes
    // the address again (1 s after it failed; the wait doubles with every
    // probe that fails).
    let v2 = SlowServer::start(net.shadow(0), shadow_addr, Duration::ZERO)?;
    wait_for_event(
        &agent,
        LOG_WAIT,
        "the address recovering",
        is("shadow address recovered"),
    )?;
    // The summary saw the drops start while it was down, and stop after.
    let loss = format!("{t2}/");
    let started = wait_for_event(&agent, LOG_WAIT, "drops started", |e| {
        message(e).starts_with("drops started")
            && field(e, "loss").is_some_and(|l| l.starts_with(&loss))
    })?;
    ensure!(field(&started, "level") == Some("WARN"), "{started}");
    let stopped = wait_for_event(&agent, LOG_WAIT, "drops stopped", |e| {
        message(e).starts_with("drops stopped")
            && field(e, "loss").is_some_and(|l| l.starts_with(&loss))
    })?;
    ensure!(field(&stopped, "level") == Some("INFO"), "{stopped}");
    load.wait_more(50, Duration::from_secs(10))?;
    let sent = load.stop()?;

    let scrape = settle(&net)?;
    ensure!(
        captured(&scrape) == sent,
        "captured {} of {sent}",
        captured(&scrape)
    );
    let account = TargetAccount::of(&scrape, &t2)?;
    ensure!(
        account.dropped > 0 && account.sent > 0,
        "an outage in the middle: {account:?}"
    );
    // Nothing per request at info level: a handful of events, not one per
    // request.
    let events = ops::json_events(&agent)?;
    let per_request = events
        .iter()
        .filter(|e| field(e, "level") == Some("INFO") && message(e) == "request")
        .count();
    ensure!(per_request == 0, "{per_request} request events at info");

    let exit = stop_agent(agent, Duration::from_secs(10))?;
    ensure!(
        exit.stderr.contains("SIGTERM received, detaching"),
        "{}",
        exit.stderr
    );
    let (received_after, _) = v2.stop();
    ensure!(received_after > 0, "the shadow got nothing once back");
    ensure!(v1.stop()?.request_count() as u64 == sent);
    Ok(())
}

// ---------------------------------------------------------------------------
// c: check-config finds every mistake of a file
// ---------------------------------------------------------------------------

#[test]
fn c_check_config_reports_every_error_with_its_line_and_key() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let binary = mirror_tests::agent_binary()?;
    let scratch = ScratchDir::new("check-config")?;
    let bad = scratch.write(
        "bad.toml",
        b"iface = \"veth-s\"\n\
          ports = [8080]\n\
          stats_intervall = \"1s\"\n\
          path_regexes = ['^/api', '^/v[0-9+/']\n\
          \n\
          [[target]]\n\
          url = \"htp://v2:9000\"\n",
    )?;
    let output = std::process::Command::new(&binary)
        .arg("check-config")
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(1),
        "{}: {stderr}",
        output.status
    );
    ensure!(output.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    let file = bad.display().to_string();
    let expected = [
        (3, "stats_intervall", "did you mean `stats_interval`?"),
        (4, "path_regexes", "bad regex `^/v[0-9+/`"),
        (7, "target.url", "the scheme must be http"),
    ];
    ensure!(lines.len() == expected.len(), "not three errors:\n{stderr}");
    for (line, (number, key, what)) in lines.iter().zip(expected) {
        let place = format!("error: {file}:{number}:");
        ensure!(
            line.starts_with(&place)
                && line.contains(&format!("key `{key}`"))
                && line.contains(what),
            "wanted {place} key `{key}` {what}, got: {line}"
        );
    }

    // A good file: its effective configuration, which checks again.
    let good = scratch.write(
        "good.toml",
        b"iface = \"veth-s\"\nports = [8080]\nlog_requests = 1\n\
          [[target]]\nurl = \"http://10.200.10.2:8080\"\nname = \"v2\"\n",
    )?;
    let output = std::process::Command::new(&binary)
        .arg("check-config")
        .arg(&good)
        .output()?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective = String::from_utf8(output.stdout)?;
    for key in [
        "iface = \"veth-s\"",
        "ports = [8080]",
        "drain_timeout = \"5s\"",
        "name = \"v2\"",
    ] {
        ensure!(effective.contains(key), "no {key} in:\n{effective}");
    }
    let again = scratch.write("effective.toml", effective.as_bytes())?;
    let output = std::process::Command::new(&binary)
        .arg("check-config")
        .arg(&again)
        .output()?;
    ensure!(
        output.status.success(),
        "the effective configuration does not check: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The agent without an interface, by flag or file: one line, status 2.
    let net = mirror_tests::Netns::new("noiface")?;
    let output = net
        .command(&binary)
        .args(["--port", &port(), "--log-format", "json"])
        .stdin(std::process::Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(2),
        "{}: {stderr}",
        output.status
    );
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(lines.len() == 1, "{stderr}");
    let event = ops::parse_event(lines[0])?;
    ensure!(
        message(&event) == "no interface: give --iface or `iface` in the config file"
            && field(&event, "level") == Some("ERROR"),
        "{event}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// d: SIGTERM under load
// ---------------------------------------------------------------------------

#[test]
fn d_sigterm_under_load_detaches_drains_in_time_and_exits_zero() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    const DRAIN: Duration = Duration::from_secs(1);
    let net = ShadowNet::new(1)?;
    let v1 = HttpServer::start(net.primary(), net.primary_addr(PORT))?;
    // A shadow slower than the traffic: its queue stays full.
    let v2 = SlowServer::start(
        net.shadow(0),
        net.shadow_addr(0, PORT),
        Duration::from_millis(100),
    )?;
    let t2 = net.shadow_url(0, PORT);
    let agent = start_agent(
        &net,
        &agent_args(
            &[&t2],
            &[
                "--drain-timeout",
                "1s",
                "--max-in-flight",
                "4",
                "--queue-size",
                "32",
            ],
        ),
    )?;
    ensure!(ops::tcx_programs(net.primary(), SERVER_IF)? == ["mirror_ingress"]);

    // A first burst, then the identities once the queue drained.
    let load = Load::start(
        net.client(),
        net.primary_addr(PORT),
        2,
        Duration::from_millis(2),
    )?;
    load.wait_more(150, Duration::from_secs(10))?;
    let first = load.stop()?;
    let scrape = settle(&net)?;
    ensure!(
        captured(&scrape) == first,
        "captured {} of {first}",
        captured(&scrape)
    );
    let account = TargetAccount::of(&scrape, &t2)?;
    ensure!(account.sent > 0, "{account:?}");

    // Under load again, with a full queue: SIGTERM.
    let load = Load::start(
        net.client(),
        net.primary_addr(PORT),
        2,
        Duration::from_millis(2),
    )?;
    load.wait_more(150, Duration::from_secs(10))?;
    let queued = Metrics::scrape(net.primary(), metrics::DEFAULT_ADDR)?;
    let busy = TargetAccount::of(&queued, &t2)?;
    ensure!(
        busy.queued + busy.in_flight > 0,
        "nothing to drain: {busy:?}"
    );
    let signalled = Instant::now();
    let exit = agent.stop(libc::SIGTERM, Duration::from_secs(10))?;
    let took = signalled.elapsed();
    check_exit(&exit)?;
    ensure!(
        took <= DRAIN + Duration::from_secs(1),
        "exited {took:?} after SIGTERM, drain timeout {DRAIN:?}"
    );
    let attached = ops::tcx_programs(net.primary(), SERVER_IF)?;
    ensure!(
        attached.is_empty(),
        "still attached after exit: {attached:?}"
    );
    let lines: Vec<String> = exit.stderr.lines().map(str::to_owned).collect();
    let finals = agent_output::final_counts(&lines)?;
    let counts = finals.get(&t2).context("no final counts for the shadow")?;
    ensure!(
        counts.get("shutdown") > 0 || counts.get("queue_full") > 0,
        "a full queue at SIGTERM, yet nothing dropped: {counts}"
    );
    for event in [
        "SIGTERM received, detaching",
        "capture detached",
        "draining the shadow queues",
    ] {
        ensure!(exit.stderr.contains(event), "no `{event}`: {}", exit.stderr);
    }

    // The primary never noticed: the clients go on.
    load.wait_more(50, Duration::from_secs(10))?;
    let second = load.stop()?;
    let served = v1.stop()?.request_count() as u64;
    ensure!(
        served == first + second,
        "v1 served {served} of {}",
        first + second
    );
    v2.stop();
    Ok(())
}

// ---------------------------------------------------------------------------
// e: SIGHUP
// ---------------------------------------------------------------------------

#[test]
fn e_sighup_adds_a_target_without_missing_a_request_and_refuses_a_bad_file() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let net = ShadowNet::new(2)?;
    let v1 = HttpServer::start(net.primary(), net.primary_addr(PORT))?;
    let v2 = HttpServer::start(net.shadow(0), net.shadow_addr(0, PORT))?;
    let v3 = HttpServer::start(net.shadow(1), net.shadow_addr(1, PORT))?;
    let (t2, t3) = (net.shadow_url(0, PORT), net.shadow_url(1, PORT));
    let scratch = ScratchDir::new("sighup")?;
    // Everything in the file: no capture flag at all.
    let head = format!(
        "iface = \"{SERVER_IF}\"\nports = [{PORT}]\nlog_format = \"json\"\nstats_interval = \"1s\"\n"
    );
    let first = format!("{head}[[target]]\nurl = \"{t2}\"\n");
    let config = scratch.write("mirror.toml", first.as_bytes())?;
    let config_arg = config.display().to_string();
    let agent = Agent::start_attached(net.primary(), &["--config", &config_arg])?;

    let load = Load::start(
        net.client(),
        net.primary_addr(PORT),
        2,
        Duration::from_millis(2),
    )?;
    load.wait_more(100, Duration::from_secs(10))?;

    // Add v3, sample request logs, and change what needs a restart.
    let second = format!(
        "{head}ring_size = \"32M\"\nlog_requests = 20\n\
         [[target]]\nurl = \"{t2}\"\n[[target]]\nurl = \"{t3}\"\n"
    );
    scratch.write("mirror.toml", second.as_bytes())?;
    agent.signal(libc::SIGHUP)?;
    wait_for_event(&agent, LOG_WAIT, "the reload", |e| {
        message(e) == "configuration reloaded"
    })?;
    let restart = wait_for_event(&agent, LOG_WAIT, "the restart warning", |e| {
        message(e).contains("need a restart")
    })?;
    ensure!(field(&restart, "keys") == Some("ring_size"), "{restart}");
    wait_for_event(&agent, LOG_WAIT, "v3 starting", |e| {
        message(e) == "shadow target started" && field(e, "target_name") == Some(t3.as_str())
    })?;
    load.wait_more(200, Duration::from_secs(10))?;
    let logged = wait_for_event(&agent, LOG_WAIT, "a sampled request", |e| {
        message(e) == "request" && field(e, "targets").is_some_and(|t| t.contains(&t3))
    })?;
    ensure!(
        field(&logged, "level") == Some("DEBUG")
            && field(&logged, "method") == Some("GET")
            && field(&logged, "path").is_some_and(|p| p.starts_with("/load/")),
        "{logged}"
    );

    // A bad file is refused; both targets go on.
    let bad = format!(
        "{head}[[target]]\nurl = \"{t2}\"\n[[target]]\nurl = \"ftp://{}\"\n",
        net.shadow_addr(1, PORT)
    );
    scratch.write("mirror.toml", bad.as_bytes())?;
    agent.signal(libc::SIGHUP)?;
    wait_for_event(&agent, LOG_WAIT, "the rejection", |e| {
        message(e) == "configuration rejected; the running configuration stays"
    })?;
    let events = ops::json_events(&agent)?;
    ensure!(
        events
            .iter()
            .any(|e| message(e).contains(":8:7: key `target.url`")),
        "the error does not name the line: {:?}",
        events.iter().map(message).collect::<Vec<_>>()
    );
    let v3_before =
        TargetAccount::of(&Metrics::scrape(net.primary(), metrics::DEFAULT_ADDR)?, &t3)?;
    load.wait_more(100, Duration::from_secs(10))?;
    let total = load.stop()?;

    // The capture missed nothing: every request v1 served was captured,
    // and the ring lost no record.
    let served = v1.stop()?.request_count() as u64;
    ensure!(
        served == total,
        "v1 served {served}, the clients sent {total}"
    );
    let scrape = settle(&net)?;
    ensure!(
        captured(&scrape) == served,
        "captured {} of {served}",
        captured(&scrape)
    );
    let kernel = ops::KernelAccount::of(&scrape)?;
    ensure!(kernel.lost == 0, "records lost: {kernel:?}");
    let a2 = TargetAccount::of(&scrape, &t2)?;
    ensure!(
        a2.captured == served && a2.sent == served,
        "{t2}: {a2:?} of {served}"
    );
    let a3 = TargetAccount::of(&scrape, &t3)?;
    ensure!(
        a3.sent == a3.captured && a3.captured > v3_before.captured,
        "{t3} after the reload: {a3:?} (before the bad file: {v3_before:?})"
    );
    let reloads = |outcome| scrape.get("mirror_config_reloads_total", &[("outcome", outcome)]);
    ensure!(
        reloads("applied") == Some(1.0) && reloads("rejected") == Some(1.0),
        "reloads: applied {:?} rejected {:?}",
        reloads("applied"),
        reloads("rejected")
    );

    stop_agent(agent, Duration::from_secs(10))?;
    ensure!(v2.stop()?.request_count() as u64 == served);
    ensure!(v3.stop()?.request_count() as u64 == a3.sent);
    Ok(())
}
