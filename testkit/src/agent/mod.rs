//! The real `mirror-agent` binary as a child process, usually inside a
//! namespace: started, waited for until its capture is attached, signalled
//! and read at exit ([`report`]: its `kernel counters:` line and the
//! `final counts` of each target), as an outside script would read it.

pub mod report;

use std::{
    path::Path,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use rustix::process::Signal;

pub use report::{
    TargetCounts, check_records_identity, final_counts, final_counts_texts, kernel_counters,
    kernel_counters_line,
};

use crate::{netns::Netns, process::Process};

/// The log message that says the program is attached: every packet that
/// reaches the interface from then on is seen.
pub const ATTACHED: &str = "capture attached";
/// The log message of a shadow target ready to send.
pub const TARGET_STARTED: &str = "shadow target started";

/// A running agent. Dropping it kills it (SIGKILL) if it still runs.
pub struct Agent {
    process: Process,
}

/// How an agent ended, with everything it wrote.
#[derive(Debug)]
pub struct AgentExit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Agent {
    /// Starts `BINARY ARGS...` inside `netns`.
    pub fn start(netns: &Netns, binary: &Path, args: &[&str]) -> Result<Self> {
        Self::spawn(netns.command(binary).args(args))
    }

    /// Spawns `command`, which runs the agent (through `ip netns exec`,
    /// `taskset`, `setpriv`, ... that exec it, so that its pid is the
    /// agent's).
    pub fn spawn(command: &mut Command) -> Result<Self> {
        Ok(Self {
            process: Process::spawn("mirror-agent", command)?,
        })
    }

    /// Waits until the agent logged [`ATTACHED`]. If it does not within
    /// `timeout`, it is killed and the error says how it ended and what it
    /// logged.
    pub fn attached(mut self, timeout: Duration) -> Result<Self> {
        if let Err(err) = self.wait_for_log(ATTACHED, timeout) {
            let status = self.process.stop(Signal::KILL, Duration::from_secs(10))?;
            bail!(
                "{err:#}; the agent ended with {status}: {}",
                self.process.stderr_lines().join("\n")
            );
        }
        Ok(self)
    }

    /// Waits until the agent logged [`TARGET_STARTED`] `count` times.
    pub fn wait_for_targets(&self, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.stderr_lines();
            if lines.iter().filter(|l| l.contains(TARGET_STARTED)).count() >= count {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "mirror-agent did not start its {count} shadow targets within {timeout:?}: {}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits for a stderr (log) line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.process.wait_for_stderr(needle, timeout)
    }

    /// Every stderr (log) line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.process.stderr_lines()
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.process.stdout_lines()
    }

    /// Sends `signal` (SIGHUP to reload, ...).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.process.signal(signal)
    }

    /// Sends `signal` and waits (at most `timeout`) for the agent to end.
    pub fn stop(mut self, signal: Signal, timeout: Duration) -> Result<AgentExit> {
        let status = self.process.stop(signal, timeout)?;
        Ok(self.exit(status))
    }

    /// Waits (at most `timeout`) for the agent to end by itself.
    pub fn wait(mut self, timeout: Duration) -> Result<AgentExit> {
        let status = self.process.wait(timeout)?;
        Ok(self.exit(status))
    }

    fn exit(&self, status: ExitStatus) -> AgentExit {
        AgentExit {
            status,
            stdout: self.stdout_lines().join("\n"),
            stderr: self.stderr_lines().join("\n"),
        }
    }

    /// The process alone, for a caller that holds the agent among other
    /// programs (the bench's mirroring modes).
    pub fn into_process(self) -> Process {
        self.process
    }
}

impl AgentExit {
    /// Itself if the agent exited 0, else an error with its stderr.
    pub fn success(self) -> Result<Self> {
        ensure!(
            self.status.success(),
            "mirror-agent ended with {}: {}",
            self.status,
            self.stderr
        );
        Ok(self)
    }

    /// stderr, line by line.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines().map(str::to_owned).collect()
    }

    /// The `kernel counters:` line of stdout, by counter name.
    pub fn kernel_counters(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        kernel_counters(&self.stdout)
    }

    /// The `final counts` of every target, by target label.
    pub fn final_counts(&self) -> Result<std::collections::BTreeMap<String, TargetCounts>> {
        final_counts(&self.stderr_lines())
    }
}
