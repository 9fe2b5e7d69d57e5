//! The fleet's verdict (the second seed's topology): three v1 replicas
//! behind a real HAProxy, each with its own agent comparing v1 with v2
//! (the same code) and v3 (a planted regression on `GET /items/{id}`), one
//! real Prometheus scraping the three agents. Each agent sees a share of
//! the traffic and its own verdict counts only that share;
//! `mirror-agent verdict --prometheus` sums every agent's counters and
//! decides for the fleet, exactly.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use mirror_tests::{
    fleet::{self, Fleet, REPLICAS, Said, planted, v2_url, v3_url},
    require_kernel,
};
use serde_json::Value;

/// The first requests: too few for a verdict.
const FIRST: u32 = 21;
/// All requests through HAProxy: GET /items/1..=ITEMS. 640: the planted
/// differences (multiples of 7) do not split evenly over three replicas.
const ITEMS: u32 = 640;
/// The rule's sample floor: above FIRST, below ITEMS, above each
/// replica's share (about ITEMS / 3).
const MIN_COMPARED: &str = "500";
/// How long the agents and Prometheus may take to catch up.
const SETTLE: Duration = Duration::from_secs(20);

#[test]
fn the_fleet_verdict_is_the_sum_of_the_replicas() -> Result<()> {
    require_kernel!();
    let fleet = fleet::start()?;
    let (v2, v3) = (v2_url(), v3_url());

    // A few requests: counted by Prometheus, too few for a verdict.
    let statuses = fleet.get_items(1..=FIRST)?;
    ensure!(
        statuses == [(200, FIRST as u64)].into(),
        "v1 answered {statuses:?}"
    );
    fleet.wait_judged(FIRST as u64, SETTLE)?;
    fleet.wait_scraped(SETTLE)?;
    let early = gate(&fleet, &v3)?;
    ensure!(
        early.code == Some(2),
        "inconclusive (exit 2) expected: {early:?}"
    );
    let body = gate_json(&fleet, &v3, Some(2))?;
    ensure!(
        body["verdict"] == "inconclusive" && count(&body, "compared")? == FIRST as u64,
        "{body:#}"
    );

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

    // The fleet: v2 passes, v3 fails with every planted difference.
    let planted = planted(1..=ITEMS);
    let pass = gate(&fleet, &v2)?;
    ensure!(pass.code == Some(0), "v2: pass (exit 0) expected: {pass:?}");
    ensure!(pass.stdout.starts_with("pass: "), "{pass:?}");
    let body = gate_json(&fleet, &v2, Some(0))?;
    ensure!(
        body["verdict"] == "pass"
            && count(&body, "compared")? == ITEMS as u64
            && count(&body, "differ")? == 0,
        "{body:#}"
    );
    let fail = gate(&fleet, &v3)?;
    ensure!(fail.code == Some(1), "v3: fail (exit 1) expected: {fail:?}");
    ensure!(fail.stdout.starts_with("fail: "), "{fail:?}");
    let body = gate_json(&fleet, &v3, Some(1))?;
    ensure!(
        body["verdict"] == "fail"
            && body["source"] == "prometheus"
            && body["agents"] == REPLICAS as u64
            && count(&body, "compared")? == ITEMS as u64,
        "{body:#}"
    );
    let fleet_differ = count(&body, "differ")?;
    ensure!(
        fleet_differ == planted,
        "the fleet counts {fleet_differ} differences of v3, {planted} were planted: {body:#}"
    );
    ensure!(
        count(&body["results"], "status")? == planted,
        "v3's planted differences are all in the status: {body:#}"
    );

    // Each agent alone: its share only, too few for the rule; the shares
    // add up to the fleet's.
    let mut partials = Vec::with_capacity(REPLICAS);
    for (index, share) in shares.iter().enumerate() {
        let said = fleet::agent_verdict(
            &fleet,
            index,
            &v3,
            &["--min-compared", MIN_COMPARED, "--json"],
        )?;
        ensure!(
            said.code == Some(2),
            "agent {index} alone: inconclusive expected: {said:?}"
        );
        let body = said.json()?;
        ensure!(
            body["source"] == "agent" && count(&body, "compared")? == *share,
            "agent {index} compared its {share} requests: {body:#}"
        );
        let differ = count(&body, "differ")?;
        ensure!(
            differ > 0 && differ < planted,
            "agent {index}: {differ} of the {planted} planted differences: {body:#}"
        );
        partials.push(differ);
    }
    ensure!(
        partials.iter().sum::<u64>() == fleet_differ,
        "the agents' partial counts {partials:?} do not add up to the fleet's {fleet_differ}"
    );
    Ok(())
}

/// The fleet's gate on `target`: `mirror-agent verdict --prometheus URL
/// --window 10m --min-compared 500`.
fn gate(fleet: &Fleet, target: &str) -> Result<Said> {
    fleet::fleet_verdict(fleet, target, &["--min-compared", MIN_COMPARED])
}

/// [`gate`] with `--json`: the body, the exit code checked to be `code`.
fn gate_json(fleet: &Fleet, target: &str, code: Option<i32>) -> Result<Value> {
    let said = fleet::fleet_verdict(fleet, target, &["--min-compared", MIN_COMPARED, "--json"])?;
    ensure!(
        said.code == code,
        "--json exit {:?}, not {code:?}: {said:?}",
        said.code
    );
    said.json()
}

/// A count of the verdict's body.
fn count(body: &Value, key: &str) -> Result<u64> {
    body[key]
        .as_u64()
        .with_context(|| format!("`{key}` is not a count: {body:#}"))
}
