//! `cargo xtask demo fleet`: the second seed's exercise (a service of
//! several replicas behind HAProxy, a new version checked before it is
//! promoted) with mirror as the check, on this machine.
//!
//! The fleet is the test kit's ([`mirror_testkit::fleet`], the one the
//! fleet kernel test builds): three v1 replicas behind HAProxy, each with
//! its own mirror-agent copying its requests to v2 (the same code) and v3
//! (a planted regression), one Prometheus scraping the three agents. The
//! client's requests go through HAProxy, so each agent sees a third of
//! them and can only give a partial verdict; the fleet's verdict is
//! `mirror-agent verdict --prometheus`, the sum over every agent, and its
//! exit code is what a pipeline acts on (0 promote, 1 stop, 2 wait).
//!
//! Everything (processes, namespaces) is removed on the way out, on error
//! and on Ctrl-C too (the plain demo's handling).

use std::{
    fmt::Write as _,
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use mirror_testkit::fleet::{
    Fleet, FleetConfig, Names, REPLICAS, metrics_addr, planted, v2_url, v3_url,
};

use crate::demo::{INTERRUPTED, check_interrupt};

/// The namespaces are `mirror-fleet-<role>`.
const PREFIX: &str = "mirror-fleet";
/// Short, so that Prometheus holds the final counts soon after the traffic.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// The first requests: too few for a verdict.
const FIRST: u32 = 21;
/// All requests: GET /items/1..=ITEMS.
const ITEMS: u32 = 640;
/// How long the agents and Prometheus may take to catch up.
const SETTLE: Duration = Duration::from_secs(20);
const MYAPP: &str = "deploy/demo/myapp.py";

pub fn run(root: &Path, verbose: bool) -> Result<()> {
    let agent = crate::demo::prepare(root, verbose, "cargo xtask demo fleet")?;
    let started = Instant::now();
    let result = demo(&agent, &root.join(MYAPP));
    // The fleet is dropped by now: processes ended, namespaces removed.
    match result {
        Ok(summary) => {
            print!("{summary}");
            println!(
                "done in {:.1} s; processes stopped, namespaces {PREFIX}-* removed",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            bail!("demo interrupted: everything it created is removed")
        }
        Err(err) => Err(err.context("the demo failed; everything it created is removed")),
    }
}

fn demo(agent: &Path, myapp: &Path) -> Result<String> {
    println!(
        "==> starting the fleet: HAProxy, 3 v1 replicas with an agent each, v2, v3, Prometheus"
    );
    let fleet = Fleet::start(&FleetConfig {
        agent,
        myapp,
        names: Names::Fixed(PREFIX),
        scrape_interval: SCRAPE_INTERVAL,
        agent_args: &[],
    })?;
    check_interrupt()?;
    let prometheus = fleet.prometheus.url();
    let (v2, v3) = (v2_url(), v3_url());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n==> demo fleet: the client talks to HAProxy; each v1 replica's mirror-agent copies\n\
         \x20   its share of the requests to v2 and v3 and compares; Prometheus sums the agents\n\n\
         \x20 client ──▶ HAProxy {} ──round robin──▶ v1-1, v1-2, v1-3 (:80)\n\
         \x20 on each replica: mirror-agent {}\n\
         \x20                   ├─ copy ─▶ v2 {v2}  (the same code as v1)\n\
         \x20                   └─ copy ─▶ v3 {v3}  (planted: GET /items/ID answers 500 when 7 divides ID)\n\
         \x20 Prometheus {prometheus} scrapes {}\n",
        fleet.balancer.addr(),
        Fleet::agent_command(0, &[]).join(" "),
        (0..REPLICAS)
            .map(|i| metrics_addr(i).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );

    // A first few requests: the gate has too few to decide.
    let first = fleet.get_items(1..=FIRST)?;
    ensure!(
        first == [(200, FIRST as u64)].into(),
        "v1 answered {first:?}"
    );
    settle(&fleet, FIRST)?;
    let _ = writeln!(
        out,
        "==> {FIRST} requests (GET /items/1..{FIRST}) through HAProxy, then the gate on v3 \
         (default rule: at least 500 compared, at most 1 % differ):"
    );
    let early = verdict(
        &fleet,
        agent,
        &["--prometheus", &prometheus, "--target", &v3],
    )?;
    let _ = writeln!(out, "  exit {}  {}\n", early.0, early.1);

    // The rest: each agent compares its share.
    let rest = fleet.get_items(FIRST + 1..=ITEMS)?;
    ensure!(
        rest == [(200, (ITEMS - FIRST) as u64)].into(),
        "v1 answered {rest:?}"
    );
    let shares = settle(&fleet, ITEMS)?;
    let _ = writeln!(
        out,
        "==> {ITEMS} requests in all (GET /items/1..{ITEMS}); v3's planted differences among \
         them: {}\n",
        planted(1..=ITEMS)
    );
    let _ = writeln!(
        out,
        "==> each agent's partial verdict on v3 (`mirror-agent verdict --metrics-addr ADDR \
         --target {v3}`):"
    );
    for (i, share) in shares.iter().enumerate() {
        let addr = metrics_addr(i).to_string();
        let (code, line) = verdict(&fleet, agent, &["--metrics-addr", &addr, "--target", &v3])?;
        let _ = writeln!(
            out,
            "  v1-{} ({share} requests)  exit {code}  {line}",
            i + 1
        );
    }
    let _ = writeln!(
        out,
        "\n==> the fleet's verdict (`mirror-agent verdict --prometheus {prometheus} --window \
         10m --target URL`):"
    );
    let mut codes = Vec::new();
    for target in [&v2, &v3] {
        let (code, line) = verdict(
            &fleet,
            agent,
            &[
                "--prometheus",
                &prometheus,
                "--window",
                "10m",
                "--target",
                target,
            ],
        )?;
        let _ = writeln!(out, "  exit {code}  {line}");
        codes.push(code);
    }
    let _ = writeln!(
        out,
        "\n==> the gate: v2 exit {} ({}), v3 exit {} ({})\n",
        codes[0],
        meaning(codes[0]),
        codes[1],
        meaning(codes[1])
    );
    drop(fleet);
    Ok(out)
}

/// Waits until the agents judged `total` exchanges and Prometheus scraped
/// them; returns each agent's share.
fn settle(fleet: &Fleet, total: u32) -> Result<Vec<u64>> {
    let shares = fleet.wait_judged(total as u64, SETTLE)?;
    check_interrupt()?;
    fleet.wait_scraped(SETTLE)?;
    check_interrupt()?;
    Ok(shares)
}

/// `mirror-agent verdict ARGS` in Prometheus' namespace (it reaches
/// Prometheus and every agent): exit code and its line.
fn verdict(fleet: &Fleet, agent: &Path, args: &[&str]) -> Result<(i32, String)> {
    check_interrupt()?;
    let output = fleet
        .hosts
        .prometheus
        .command(agent)
        .arg("verdict")
        .args(args)
        .output()?;
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let line = if line.is_empty() {
        String::from_utf8_lossy(&output.stderr).trim().to_owned()
    } else {
        line
    };
    Ok((output.status.code().unwrap_or(-1), line))
}

/// What a pipeline does on an exit code.
fn meaning(code: i32) -> &'static str {
    match code {
        0 => "pass: promote",
        1 => "fail: stop the rollout",
        2 => "inconclusive: wait for more traffic",
        _ => "cannot tell",
    }
}
