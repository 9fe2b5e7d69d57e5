//! The fleet of the second seed's exercise as the kernel tests run it: the
//! test kit's [`mirror_testkit::fleet`] (HAProxy, three v1 replicas with
//! their agents, v2, v3 and Prometheus) with the agent binary under test,
//! and the `mirror-agent verdict` command run where the fleet's Prometheus
//! and every agent are reachable, read back as a script would: its exit
//! code and its line.

use std::{path::PathBuf, process::Output, time::Duration};

use anyhow::{Context as _, Result};

pub use mirror_testkit::fleet::*;

use crate::agent;

/// Short, so that a test waits little for Prometheus to hold the counts.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// The demo service every version runs.
pub fn myapp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/myapp.py")
}

/// The fleet, with unique namespace names and the agent under test at
/// the service's priority (as [`agent::start_attached`] runs it).
pub fn start() -> Result<Fleet> {
    let binary = agent::binary()?;
    let myapp = myapp();
    Fleet::start(&FleetConfig {
        agent: &binary,
        myapp: &myapp,
        names: Names::Unique,
        scrape_interval: SCRAPE_INTERVAL,
        agent_args: &["--nice", "0"],
    })
}

/// What `mirror-agent verdict ...` said: its exit code, its stdout.
#[derive(Debug)]
pub struct Said {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Said {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }
    }

    /// The `--json` body.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("not JSON: {} (stderr: {})", self.stdout, self.stderr))
    }
}

/// `mirror-agent verdict ARGS...` in Prometheus' namespace (it reaches
/// Prometheus and every agent's metrics address).
pub fn verdict(fleet: &Fleet, args: &[&str]) -> Result<Said> {
    let mut all = vec!["verdict"];
    all.extend_from_slice(args);
    Ok(Said::from(agent::run_to_end(
        &fleet.hosts.prometheus,
        &[],
        &all,
    )?))
}

/// The fleet's verdict on `target`: `--prometheus URL --window 10m`, then
/// `args`.
pub fn fleet_verdict(fleet: &Fleet, target: &str, args: &[&str]) -> Result<Said> {
    let url = fleet.prometheus.url();
    let mut all = vec!["--prometheus", &url, "--window", "10m", "--target", target];
    all.extend_from_slice(args);
    verdict(fleet, &all)
}

/// Replica `index`'s agent's own verdict on `target`: `--metrics-addr`,
/// then `args`.
pub fn agent_verdict(fleet: &Fleet, index: usize, target: &str, args: &[&str]) -> Result<Said> {
    let addr = metrics_addr(index).to_string();
    let mut all = vec!["--metrics-addr", &addr, "--target", target];
    all.extend_from_slice(args);
    verdict(fleet, &all)
}
