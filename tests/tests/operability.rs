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
use mirror_testkit::{
    Agent, AgentExit, Metrics, Netns, ScratchDir, Server, Signal, command, metrics, wait_until,
};
use mirror_tests::{
    Prometheus, ReplayRig,
    agent::{self, Stopped},
    ops::{self, TargetAccount, field, message, wait_for_event},
    prometheus, require_kernel,
    rig::{PORT, ReplayRigBuilder, SETTLE},
    topology::SERVER_IF,
};

/// How long a state change may take to show in the log.
const LOG_WAIT: Duration = Duration::from_secs(20);

/// `shadow_hosts` shadow hosts, the agent logging JSON.
fn rig(shadow_hosts: usize) -> ReplayRigBuilder {
    ReplayRig::builder(shadow_hosts).json_logs()
}

/// SIGTERM, then [`check_exit`].
fn stop_agent(agent: Agent, timeout: Duration) -> Result<Stopped> {
    check_exit(agent.stop(Signal::TERM, timeout)?)
}

/// Exit 0, every line of stderr a JSON event, the kernel's records
/// balanced, every target's final counts balanced, and the capture's own.
fn check_exit(exit: AgentExit) -> Result<Stopped> {
    let stopped = agent::check_exit(exit)?;
    let stderr = &stopped.exit.stderr;
    for line in stderr.lines() {
        ops::parse_event(line)?;
    }
    ensure!(
        stderr.contains("final counts: capture"),
        "no final counts of the capture: {stderr}"
    );
    Ok(stopped)
}

fn settle(rig: &ReplayRig) -> Result<Metrics> {
    ops::settle(rig.primary(), metrics::DEFAULT_ADDR, SETTLE)
}

/// [`settle`], once the clients stopped: every one of the `sent` requests
/// was captured.
fn settled_after(rig: &ReplayRig, sent: u64) -> Result<Metrics> {
    let scrape = settle(rig)?;
    ensure!(
        captured(&scrape) == sent,
        "captured {} of {sent}",
        captured(&scrape)
    );
    Ok(scrape)
}

fn captured(metrics: &Metrics) -> u64 {
    metrics.requests_captured()
}

// ---------------------------------------------------------------------------
// Prometheus scrapes the agent; promtool finds nothing wrong; health
// ---------------------------------------------------------------------------

#[test]
fn prometheus_counts_every_mirrored_request_and_promtool_finds_no_problem() -> Result<()> {
    require_kernel!();
    let (mut rig, agent) = rig(2).mirror_to(&[0, 1]).start()?;
    let (t2, t3) = (rig.url(0), rig.url(1));
    let server = Prometheus::start(rig.primary(), metrics::DEFAULT_ADDR, Duration::from_secs(1))?;

    // Health: the process answers; ready once attached and draining.
    let get = |path| mirror_testkit::http_client::get(rig.primary(), metrics::DEFAULT_ADDR, path);
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

    rig.ab_ok(&["-n", "1000", "-c", "4", "-k"], 1000)?;
    let scrape = settle(&rig)?;
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
    let (counted, series) = server.wait_for(rig.primary(), sent, SETTLE, |series| {
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
    let up = server.query(rig.primary(), "up")?;
    ensure!(up.len() == 1 && up[0].value == 1.0, "up: {up:?}");
    let lost = server.query(rig.primary(), "mirror_kernel_records_lost_total")?;
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
    let served = rig.stop_servers()?;
    for (name, received) in [
        ("v1", &served.v1),
        ("v2", served.shadow(0)),
        ("v3", served.shadow(1)),
    ] {
        let received = received.request_count();
        ensure!(received == 1000, "{name} received {received}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// JSON logs; a shadow dies and comes back
// ---------------------------------------------------------------------------

#[test]
fn json_logs_tell_a_shadow_going_down_and_coming_back() -> Result<()> {
    require_kernel!();
    let mut rig = rig(1)
        .serve(&[])
        .mirror_to(&[0])
        .args(&["--stats-interval", "1s", "--connect-timeout", "200ms"])
        .build()?;
    let shadow_addr = rig.shadow_addr(0);
    let v2 = Server::start(rig.shadow(0), shadow_addr)?;
    let t2 = rig.url(0);
    let agent = rig.start_agent()?;
    let load = rig.load(1, Duration::from_millis(5))?;
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
    let received_before = v2.halt().request_count();
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
    let v2 = Server::start(rig.shadow(0), shadow_addr)?;
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

    let scrape = settled_after(&rig, sent)?;
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

    let stopped = stop_agent(agent, Duration::from_secs(10))?;
    ensure!(
        stopped.exit.stderr.contains("SIGTERM received, detaching"),
        "{}",
        stopped.exit.stderr
    );
    let received_after = v2.halt().request_count();
    ensure!(received_after > 0, "the shadow got nothing once back");
    ensure!(rig.stop_v1()?.request_count() as u64 == sent);
    Ok(())
}

// ---------------------------------------------------------------------------
// check-config finds every mistake of a file
// ---------------------------------------------------------------------------

#[test]
fn check_config_reports_every_error_with_its_line_and_key() -> Result<()> {
    require_kernel!();
    let binary = agent::binary()?;
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
    // It must exit 0; its stdout is the effective configuration.
    let check = |path: &std::path::Path| {
        command::run(
            std::process::Command::new(&binary)
                .arg("check-config")
                .arg(path),
        )
    };
    let effective = check(&good)?;
    for key in [
        "iface = \"veth-s\"",
        "ports = [8080]",
        "drain_timeout = \"5s\"",
        "name = \"v2\"",
    ] {
        ensure!(effective.contains(key), "no {key} in:\n{effective}");
    }
    let again = scratch.write("effective.toml", effective.as_bytes())?;
    check(&again).context("the effective configuration does not check")?;

    // The agent without an interface, by flag or file: one line, status 2.
    let net = Netns::new("noiface")?;
    let output = agent::run_to_end(
        &net,
        &[],
        &["--port", &PORT.to_string(), "--log-format", "json"],
    )?;
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
// SIGTERM under load
// ---------------------------------------------------------------------------

#[test]
fn sigterm_under_load_detaches_drains_in_time_and_exits_zero() -> Result<()> {
    require_kernel!();
    const DRAIN: Duration = Duration::from_secs(1);
    let mut rig = rig(1)
        .serve(&[])
        .mirror_to(&[0])
        .args(&[
            "--drain-timeout",
            "1s",
            "--max-in-flight",
            "4",
            "--queue-size",
            "32",
        ])
        .build()?;
    // A shadow slower than the traffic: its queue stays full.
    let v2 = Server::builder()
        .delay(Duration::from_millis(100))
        .start(rig.shadow(0), rig.shadow_addr(0))?;
    let t2 = rig.url(0);
    let agent = rig.start_agent()?;
    ensure!(ops::tcx_programs(rig.primary(), SERVER_IF)? == ["mirror_ingress"]);

    // A first burst, then the identities once the queue drained.
    let load = rig.load(2, Duration::from_millis(2))?;
    load.wait_more(150, Duration::from_secs(10))?;
    let first = load.stop()?;
    let scrape = settled_after(&rig, first)?;
    let account = TargetAccount::of(&scrape, &t2)?;
    ensure!(account.sent > 0, "{account:?}");

    // Under load again, with a full queue: SIGTERM.
    let load = rig.load(2, Duration::from_millis(2))?;
    load.wait_more(150, Duration::from_secs(10))?;
    let queued = Metrics::scrape(rig.primary(), metrics::DEFAULT_ADDR)?;
    let busy = TargetAccount::of(&queued, &t2)?;
    ensure!(
        busy.queued + busy.in_flight > 0,
        "nothing to drain: {busy:?}"
    );
    let signalled = Instant::now();
    let exit = agent.stop(Signal::TERM, Duration::from_secs(10))?;
    let took = signalled.elapsed();
    let stopped = check_exit(exit)?;
    ensure!(
        took <= DRAIN + Duration::from_secs(1),
        "exited {took:?} after SIGTERM, drain timeout {DRAIN:?}"
    );
    let attached = ops::tcx_programs(rig.primary(), SERVER_IF)?;
    ensure!(
        attached.is_empty(),
        "still attached after exit: {attached:?}"
    );
    let counts = stopped
        .finals
        .get(&t2)
        .context("no final counts for the shadow")?;
    ensure!(
        counts.get("shutdown") > 0 || counts.get("queue_full") > 0,
        "a full queue at SIGTERM, yet nothing dropped: {counts}"
    );
    for event in [
        "SIGTERM received, detaching",
        "capture detached",
        "draining the shadow queues",
    ] {
        ensure!(
            stopped.exit.stderr.contains(event),
            "no `{event}`: {}",
            stopped.exit.stderr
        );
    }

    // The primary never noticed: the clients go on.
    load.wait_more(50, Duration::from_secs(10))?;
    let second = load.stop()?;
    let served = rig.stop_v1()?.request_count() as u64;
    ensure!(
        served == first + second,
        "v1 served {served} of {}",
        first + second
    );
    v2.halt();
    Ok(())
}

// ---------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------

#[test]
fn sighup_adds_a_target_without_missing_a_request_and_refuses_a_bad_file() -> Result<()> {
    require_kernel!();
    let mut rig = ReplayRig::builder(2).build()?;
    let (t2, t3) = (rig.url(0), rig.url(1));
    // Everything in the file: no capture flag at all.
    let head = format!(
        "iface = \"{SERVER_IF}\"\nports = [{PORT}]\nlog_format = \"json\"\nstats_interval = \"1s\"\n"
    );
    let config = rig.write_config(&format!("{head}[[target]]\nurl = \"{t2}\"\n"))?;
    let agent = agent::start_attached(rig.primary(), &["--config", &config])?;

    let load = rig.load(2, Duration::from_millis(2))?;
    load.wait_more(100, Duration::from_secs(10))?;

    // Add v3, sample request logs, and change what needs a restart.
    let second = format!(
        "{head}ring_size = \"32M\"\nlog_requests = 20\n\
         [[target]]\nurl = \"{t2}\"\n[[target]]\nurl = \"{t3}\"\n"
    );
    rig.write_config(&second)?;
    agent.signal(Signal::HUP)?;
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
        rig.shadow_addr(1)
    );
    rig.write_config(&bad)?;
    agent.signal(Signal::HUP)?;
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
        TargetAccount::of(&Metrics::scrape(rig.primary(), metrics::DEFAULT_ADDR)?, &t3)?;
    load.wait_more(100, Duration::from_secs(10))?;
    let total = load.stop()?;

    // The capture missed nothing: every request v1 served was captured,
    // and the ring lost no record.
    let served = rig.stop_v1()?.request_count() as u64;
    ensure!(
        served == total,
        "v1 served {served}, the clients sent {total}"
    );
    let scrape = settled_after(&rig, served)?;
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
    ensure!(rig.stop_shadow(0)?.request_count() as u64 == served);
    ensure!(rig.stop_shadow(1)?.request_count() as u64 == a3.sent);
    Ok(())
}
