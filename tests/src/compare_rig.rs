//! The comparison's kernel-test rig and the readers of its report,
//! shared by the compare test files: v1 and the shadows as [`AppServer`]s
//! behind a [`ReplayRig`], the agent with the test's flags, and `/compare`
//! read back with every count checked to add up.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{Agent, Signal, http_client, metrics::DEFAULT_ADDR};
use serde_json::Value;

use crate::{
    ReplayRig,
    agent::{self, Stopped},
    app::{AppServer, Behaviour},
    app_client::AppClient,
    require_kernel,
};

/// How long the agent may take to judge every pair once the client is done.
pub const JUDGED_WITHIN: Duration = Duration::from_secs(20);

/// One test at a time: each runs an agent, four servers and clients on a
/// machine that may have two cores, and the slow-target test times v1.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// The kernel check, then the machine to this test; None where the kernel
/// tests are skipped.
pub fn serial() -> Option<MutexGuard<'static, ()>> {
    require_kernel().then(|| SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

// ---------------------------------------------------------------------------
// the rig: v1 and shadows as app servers, the agent with the test's flags
// ---------------------------------------------------------------------------

/// v1 and the shadows' app servers, and the rig around them; the agent is
/// the test's.
pub struct AppRig {
    pub rig: ReplayRig,
    pub v1: AppServer,
    pub shadows: Vec<Option<AppServer>>,
}

impl AppRig {
    /// `shadows[i]`: the app server on shadow host `i`, or none there (a
    /// test's own server, or a dead target). The agent is not started.
    pub fn new(v1: Behaviour, shadows: Vec<Option<Behaviour>>) -> Result<Self> {
        let rig = ReplayRig::builder(shadows.len())
            .own_primary()
            .serve(&[])
            .build()?;
        let v1 = AppServer::start(rig.primary(), rig.primary_addr(), v1)?;
        let shadows = shadows
            .into_iter()
            .enumerate()
            .map(|(i, behaviour)| {
                behaviour
                    .map(|b| AppServer::start(rig.shadow(i), rig.shadow_addr(i), b))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Self { rig, v1, shadows })
    }

    /// The agent on v1's interface with `args` after `--iface --port`,
    /// attached, its targets started.
    pub fn agent(&self, args: &[&str], targets: usize) -> Result<Agent> {
        let mut all = self.rig.agent_args();
        all.extend_from_slice(args);
        let agent = agent::start_attached(self.rig.primary(), &all)?;
        agent.wait_for_targets(targets, Duration::from_secs(10))?;
        Ok(agent)
    }

    pub fn client(&self) -> Result<AppClient> {
        AppClient::connect(self.rig.client(), self.rig.primary_addr())
    }

    /// `GET /compare` on the agent's metrics address, parsed.
    pub fn report(&self) -> Result<Value> {
        let (status, body) = http_client::get(self.rig.primary(), DEFAULT_ADDR, "/compare")?;
        ensure!(status == 200, "GET /compare answered {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("/compare is not JSON: {body}"))
    }

    /// Waits until each of `targets` has judged `expected` pairs (match,
    /// differ or not compared) and nothing moves any more; returns that
    /// report. More than `expected` fails at once.
    pub fn judged(&self, targets: &[&str], expected: u64) -> Result<Value> {
        let deadline = Instant::now() + JUDGED_WITHIN;
        let mut previous: Option<Vec<u64>> = None;
        loop {
            let report = self.report()?;
            let judged = targets
                .iter()
                .map(|t| Ok(judged(target(&report, t)?)))
                .collect::<Result<Vec<u64>>>()
                .unwrap_or_else(|_| vec![0; targets.len()]);
            ensure!(
                judged.iter().all(|n| *n <= expected),
                "more pairs judged than requests sent ({expected}): {judged:?} for \
                 {targets:?}: {report:#}"
            );
            if judged.iter().all(|n| *n == expected) && previous.as_ref() == Some(&judged) {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                bail!(
                    "after {JUDGED_WITHIN:?}, {targets:?} judged {judged:?} of {expected} pairs: \
                     {report:#}"
                );
            }
            previous = Some(judged);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// SIGINT: a clean exit whose counts balance.
pub fn stop(agent: Agent) -> Result<Stopped> {
    agent::check_exit(agent.stop(Signal::INT, Duration::from_secs(20))?)
}

// ---------------------------------------------------------------------------
// reading the report
// ---------------------------------------------------------------------------

pub fn target<'a>(report: &'a Value, url: &str) -> Result<&'a Value> {
    report["targets"]
        .as_array()
        .context("no `targets` array")?
        .iter()
        .find(|t| t["target"] == url)
        .with_context(|| format!("no target {url} in {report:#}"))
}

pub fn endpoint<'a>(target: &'a Value, name: &str) -> Result<&'a Value> {
    target["endpoints"]
        .as_array()
        .context("no `endpoints` array")?
        .iter()
        .find(|e| e["endpoint"] == name)
        .with_context(|| format!("no endpoint `{name}` in {target:#}"))
}

/// A count; absent reads as 0, anything else that is not a count fails.
pub fn count(value: &Value, key: &str) -> Result<u64> {
    match &value[key] {
        Value::Null => Ok(0),
        v => v
            .as_u64()
            .with_context(|| format!("`{key}` is not a count: {v}")),
    }
}

/// Pairs not compared, all reasons, of a target or an endpoint.
pub fn not_compared(value: &Value) -> BTreeMap<String, u64> {
    value["not_compared"]
        .as_object()
        .map(|reasons| {
            reasons
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(u64::MAX)))
                .collect()
        })
        .unwrap_or_default()
}

/// match + differ + not compared.
pub fn judged(target: &Value) -> u64 {
    count(target, "match").unwrap_or(0)
        + count(target, "differ").unwrap_or(0)
        + not_compared(target).values().sum::<u64>()
}

/// `(compared, match, differ)`, checked to add up.
pub fn verdict(value: &Value) -> Result<(u64, u64, u64)> {
    let (compared, matched, differ) = (
        count(value, "compared")?,
        count(value, "match")?,
        count(value, "differ")?,
    );
    ensure!(
        compared == matched + differ,
        "compared {compared} != match {matched} + differ {differ}: {value:#}"
    );
    Ok((compared, matched, differ))
}

/// `{"status": N, "header": N, "body": N}` of a target or an endpoint.
pub fn kinds(value: &Value) -> Result<[u64; 3]> {
    let kinds = &value["kinds"];
    ensure!(kinds.is_object(), "no `kinds` object in {value:#}");
    Ok([
        count(kinds, "status")?,
        count(kinds, "header")?,
        count(kinds, "body")?,
    ])
}

/// An endpoint's fields: path → (count, noise).
pub fn fields(endpoint: &Value) -> BTreeMap<String, (u64, bool)> {
    endpoint["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap_or("?").to_owned(),
                        (
                            f["count"].as_u64().unwrap_or(u64::MAX),
                            f["noise"].as_bool().unwrap_or(false),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The field `path` of an endpoint, whole.
pub fn field<'a>(endpoint: &'a Value, path: &str) -> Result<&'a Value> {
    endpoint["fields"]
        .as_array()
        .context("no `fields` array")?
        .iter()
        .find(|f| f["path"] == path)
        .with_context(|| format!("no field `{path}` in {endpoint:#}"))
}
