//! The fleet's verdict (the second seed's topology): three v1 replicas
//! behind a real HAProxy, each with its own agent comparing v1 with v2
//! (the same code) and v3 (a planted regression on `GET /items/{id}`), one
//! real Prometheus scraping the three agents. Each agent sees a third of
//! the traffic; Prometheus holds the sum.

use std::time::Duration;

use anyhow::{Result, ensure};
use mirror_tests::{
    fleet::{self, REPLICAS, planted, v2_url, v3_url},
    require_kernel,
};

/// The first requests: too few for a verdict.
const FIRST: u32 = 21;
/// All requests through HAProxy: GET /items/1..=ITEMS. 640: the planted
/// differences (multiples of 7) do not split evenly over three replicas.
const ITEMS: u32 = 640;
/// How long the agents and Prometheus may take to catch up.
const SETTLE: Duration = Duration::from_secs(20);

#[test]
fn the_fleet_verdict_is_the_sum_of_the_replicas() -> Result<()> {
    require_kernel!();
    let fleet = fleet::start()?;
    let prom = &fleet.hosts.prometheus;

    // A few requests: every agent compares its share.
    let statuses = fleet.get_items(1..=FIRST)?;
    ensure!(
        statuses == [(200, FIRST as u64)].into(),
        "v1 answered {statuses:?}"
    );
    fleet.wait_judged(FIRST as u64, SETTLE)?;
    fleet.wait_scraped(SETTLE)?;

    // The rest: HAProxy spreads them; each agent compares a share.
    let statuses = fleet.get_items(FIRST + 1..=ITEMS)?;
    let rest = (ITEMS - FIRST) as u64;
    ensure!(statuses == [(200, rest)].into(), "v1 answered {statuses:?}");
    let shares = fleet.wait_judged(ITEMS as u64, SETTLE)?;
    ensure!(
        shares.len() == REPLICAS && shares.iter().all(|n| *n >= ITEMS as u64 / 6),
        "HAProxy did not spread the requests: the agents judged {shares:?}"
    );
    fleet.wait_scraped(SETTLE)?;

    // What the issue found by hand: the counters add up per target.
    let planted = planted(1..=ITEMS);
    let differ = fleet.prometheus.query(
        prom,
        r#"sum by (target) (mirror_compare_total{result="differ"})"#,
    )?;
    let of = |target: &str| {
        differ
            .iter()
            .find(|s| s.labels.get("target").map(String::as_str) == Some(target))
            .map(|s| s.value)
    };
    ensure!(
        of(&v2_url()) == Some(0.0) && of(&v3_url()) == Some(planted as f64),
        "differ per target {differ:?}, planted {planted}"
    );
    Ok(())
}
