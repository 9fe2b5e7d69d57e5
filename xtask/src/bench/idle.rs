//! The idle mode: what a mirroring process costs while its service is
//! quiet (most sidecars, most of the time). The agent (two shadow targets,
//! as in replay-2) or goreplay is attached to the primary's interface, no
//! request arrives, and its CPU time and wakeups are read from /proc.
//! Measured before the benches' 1 ms tickers start: idle means idle.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::hosts::Hosts;
use super::modes::{AgentSettings, Mirror, Mode};

/// One mode, idle.
#[derive(Clone, Debug)]
pub struct IdleRun {
    pub mode: Mode,
    pub seconds: f64,
    /// CPU time (user + system) over the run, percent of one core.
    pub cpu_percent: f64,
    /// Times its threads were woken, per second.
    pub wakeups_per_second: f64,
}

/// Each mode attached for `seconds` with no traffic.
pub fn measure(
    agent: &AgentSettings,
    goreplay: Option<&std::path::Path>,
    seconds: f64,
) -> Result<Vec<IdleRun>> {
    let hosts = Hosts::build()?;
    let mut modes = vec![Mode::Replay(2)];
    if let Some(gor) = goreplay {
        modes.push(Mode::Goreplay(gor.to_path_buf()));
    }
    let mut runs = Vec::new();
    for mode in modes {
        println!("==> bench idle: {mode} attached, no traffic, {seconds:.0} s");
        let mut mirror = Mirror::start(&mode, &hosts, agent, None, &[])?;
        // Start-up (resolution, the first ticks) is not idleness.
        std::thread::sleep(Duration::from_secs(2));
        mirror.begin()?;
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let elapsed = started.elapsed().as_secs_f64();
        let stats = mirror.finish(&hosts)?;
        runs.push(IdleRun {
            mode,
            seconds: elapsed,
            cpu_percent: stats.cpu_seconds / elapsed * 100.0,
            wakeups_per_second: stats.wakeups as f64 / elapsed,
        });
    }
    Ok(runs)
}

/// The goal of the idle mode (issue: sidecar economics).
pub const GOAL_CPU_PERCENT: f64 = 0.2;
pub const GOAL_WAKEUPS_PER_SECOND: f64 = 20.0;

/// Whether the agent's idle run meets the goals.
pub fn meets_goals(run: &IdleRun) -> bool {
    run.cpu_percent <= GOAL_CPU_PERCENT && run.wakeups_per_second <= GOAL_WAKEUPS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_goals_are_both_cpu_and_wakeups() {
        let run = |cpu: f64, wakeups: f64| IdleRun {
            mode: Mode::Replay(2),
            seconds: 60.0,
            cpu_percent: cpu,
            wakeups_per_second: wakeups,
        };
        assert!(meets_goals(&run(0.0, 0.0)));
        assert!(!meets_goals(&run(0.3, 0.0)));
        assert!(!meets_goals(&run(0.1, 1000.0)));
    }
}
