//! A program running in the background (in a namespace, usually through
//! [`crate::Netns::command`]) with its stdout and stderr kept line by line
//! as they arrive: wait for a line, send a signal, wait for the end. And
//! what the kernel says of a process (`/proc/PID/status`).

use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rustix::process::{Pid, Signal};

/// Lines a child wrote on one stream, and whether it closed it.
#[derive(Default)]
struct Lines {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    /// Reads `stream` on a thread of its own until it closes.
    fn collect(stream: impl Read + Send + 'static) -> Arc<Self> {
        let lines = Arc::new(Self::default());
        let into = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                into.state.lock().expect("lock").0.push(line);
                into.changed.notify_all();
            }
            into.state.lock().expect("lock").1 = true;
            into.changed.notify_all();
        });
        lines
    }

    fn snapshot(&self) -> Vec<String> {
        self.state.lock().expect("lock").0.clone()
    }
}

/// A running program. Dropping it kills it (SIGKILL) if it still runs.
pub struct Process {
    label: String,
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Process {
    /// Spawns `command` with stdin from /dev/null and both outputs piped;
    /// `label` names the program in errors.
    pub fn spawn(label: &str, command: &mut Command) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {label} ({command:?})"))?;
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let stderr = Lines::collect(child.stderr.take().expect("piped"));
        Ok(Self {
            label: label.to_owned(),
            child,
            stdout,
            stderr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line containing `needle`; returns it. Fails if
    /// the program closes stdout or `timeout` passes first.
    pub fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for(&self.stdout, needle, timeout)
    }

    /// Waits for a stderr line containing `needle`; returns it. Fails if
    /// the program closes stderr or `timeout` passes first.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for(&self.stderr, needle, timeout)
    }

    fn wait_for(&self, lines: &Lines, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut state = lines.state.lock().expect("lock");
        loop {
            if let Some(line) = state.0.iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.1 || left.is_zero() {
                let how = if state.1 {
                    "ended".to_owned()
                } else {
                    format!("ran {timeout:?}")
                };
                drop(state);
                bail!(
                    "{} {how} without printing `{needle}`; stderr: {}",
                    self.label,
                    self.stderr_lines().join("\n")
                );
            }
            state = lines.changed.wait_timeout(state, left).expect("lock").0;
        }
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Sends `signal` to the program (not reaped yet: the pid is still its).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(self.child.id() as i32).context("pid 0")?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("cannot signal {} ({signal:?})", self.label))
    }

    /// Sends `signal` if the program still runs, then [`Process::wait`]s.
    pub fn stop(&mut self, signal: Signal, timeout: Duration) -> Result<ExitStatus> {
        if self.child.try_wait()?.is_none() {
            self.signal(signal)?;
        }
        self.wait(timeout)
    }

    /// Waits up to `timeout` for the program to end on its own (killed
    /// after that, and an error), and for its output to be read.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not end within {timeout:?}", self.label);
            }
            thread::sleep(Duration::from_millis(10));
        };
        for lines in [&self.stdout, &self.stderr] {
            let mut state = lines.state.lock().expect("lock");
            while !state.1 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break; // a grandchild may hold the pipe; what came is kept
                }
                state = lines.changed.wait_timeout(state, left).expect("lock").0;
            }
        }
        Ok(status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One field of `/proc/PID/status` (`VmHWM`, `CapEff`, `Uid`, ...), its
/// value trimmed.
pub fn status_field(pid: u32, field: &str) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `VmHWM` of a process (its peak resident set), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM")
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let value = status_field(pid, field)?;
    let kib = value
        .strip_suffix("kB")
        .with_context(|| format!("{field}: {value}"))?;
    Ok(kib.trim().parse()?)
}

/// Raises this process's limit of open files to at least `wanted` (the
/// processes it starts inherit it): the soft limit, and the hard one with
/// it where that is allowed; without CAP_SYS_RESOURCE (a container) the
/// soft limit goes up to the hard one only. Returns the soft limit now,
/// which the caller checks against what it needs.
pub fn raise_open_files(wanted: u64) -> Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // None is "unlimited".
    let (soft, hard) = (
        limit.current.unwrap_or(u64::MAX),
        limit.maximum.unwrap_or(u64::MAX),
    );
    if soft >= wanted {
        return Ok(soft);
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: Some(hard.max(wanted)),
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        return Ok(wanted);
    }
    let to_hard = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, to_hard)
        .with_context(|| format!("setrlimit(RLIMIT_NOFILE, {hard})"))?;
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_per_stream_and_the_exit_is_seen() {
        let mut process = Process::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo out; echo err >&2; echo done"]),
        )
        .unwrap();
        assert_eq!(
            process
                .wait_for_stdout("done", Duration::from_secs(10))
                .unwrap(),
            "done"
        );
        assert!(process.wait(Duration::from_secs(10)).unwrap().success());
        assert_eq!(process.stdout_lines(), ["out", "done"]);
        assert_eq!(process.stderr_lines(), ["err"]);
        let err = process
            .wait_for_stderr("never", Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("ended"), "{err}");
    }

    #[test]
    fn a_signal_stops_a_program_and_a_timeout_kills_it() {
        let mut sleeper = Process::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        let status = sleeper.stop(Signal::TERM, Duration::from_secs(10)).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(Signal::TERM.as_raw())
        );
        let mut stuck = Process::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        assert!(stuck.wait(Duration::from_millis(100)).is_err());
        // Killed and reaped: its end is known at once.
        assert!(stuck.wait(Duration::ZERO).is_ok());
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        // The current RSS first: the peak read after it can only be higher
        // (the other way round, a test thread growing the heap in between
        // made it fail).
        let rss = rss_kib(std::process::id()).unwrap();
        let peak = peak_rss_kib(std::process::id()).unwrap();
        assert!(peak > 0 && peak >= rss);
        assert!(status_field(std::process::id(), "Uid").is_ok());
    }
}
