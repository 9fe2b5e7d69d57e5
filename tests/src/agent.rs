//! The real `mirror-agent` binary as a child process inside a namespace.
//!
//! The binary is not built by `cargo test -p mirror-tests` (cargo builds
//! binaries only for their own package's tests): run
//! `cargo build -p mirror-agent` first, as `cargo xtask test` does.
//! `MIRROR_AGENT_BIN` overrides where it is looked for.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;

/// Where the agent binary is: `$MIRROR_AGENT_BIN`, else next to the test
/// executable's directory (`target/<profile>/deps/test-HASH` →
/// `target/<profile>/mirror-agent`), which must not be older than its
/// sources.
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MIRROR_AGENT_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("MIRROR_AGENT_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("mirror-agent"))
        .collect();
    let binary = candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "the mirror-agent binary is missing (looked at {candidates:?}): run \
                 `cargo build -p mirror-agent` before these tests (cargo xtask test does)"
            )
        })?;
    check_fresh(&binary)?;
    Ok(binary)
}

/// A binary older than its sources would make the tests judge code that is
/// gone. Cargo lists every source of the binary (the agent, mirror-common,
/// the eBPF crate) in `<binary>.d`; like cargo, any of them newer than the
/// binary means it must be rebuilt.
fn check_fresh(binary: &Path) -> Result<()> {
    let Ok(dep_info) = std::fs::read_to_string(binary.with_extension("d")) else {
        return Ok(()); // not built by cargo here: nothing to compare with
    };
    let built = std::fs::metadata(binary)?.modified()?;
    let sources = dep_info
        .split_once(": ")
        .map(|(_, sources)| sources)
        .unwrap_or_default()
        .replace("\\ ", "\u{0}");
    for source in sources.split_whitespace() {
        let source = PathBuf::from(source.replace('\u{0}', " "));
        if let Some(changed) = newest_mtime(&source)
            && changed > built
        {
            bail!(
                "{} is older than {}: run `cargo build -p mirror-agent` before these tests",
                binary.display(),
                source.display()
            );
        }
    }
    Ok(())
}

/// The modification time of a file, or of the newest file under a directory.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|entry| newest_mtime(&entry.path()))
        .max()
}

/// stderr of the child, line by line, as it arrives.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

/// A running agent. Dropping it kills it (SIGKILL) if it still runs.
pub struct Agent {
    child: Child,
    stderr: Arc<Lines>,
    stderr_thread: Option<JoinHandle<()>>,
    stdout_thread: Option<JoinHandle<String>>,
}

/// How an agent ended.
#[derive(Debug)]
pub struct AgentExit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The tests load both CPUs with their own clients and servers and check
/// what is mirrored, not who yields the CPU: their agents run at the
/// service's priority unless a test gives `--nice` (the default, 10, has a
/// test of its own).
const TEST_NICE: [&str; 2] = ["--nice", "0"];

impl Agent {
    /// Starts `mirror-agent ARGS...` inside `netns`, at nice 0 unless ARGS
    /// say otherwise (see [`TEST_NICE`]).
    pub fn spawn(netns: &Netns, args: &[&str]) -> Result<Self> {
        let mut full = Vec::with_capacity(args.len() + 2);
        if !args.contains(&"--nice") && args.first().is_some_and(|a| a.starts_with("--")) {
            full.extend(TEST_NICE);
        }
        full.extend_from_slice(args);
        Self::spawn_exact(netns, &full)
    }

    /// Starts `mirror-agent ARGS...` inside `netns`, nothing added.
    pub fn spawn_exact(netns: &Netns, args: &[&str]) -> Result<Self> {
        let binary = agent_binary()?;
        let mut child = netns
            .command(&binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = Arc::new(Lines::default());
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().expect("lock").0.push(line);
                sink.changed.notify_all();
            }
            sink.lines.lock().expect("lock").1 = true;
            sink.changed.notify_all();
        });
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stdout_thread = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        Ok(Self {
            child,
            stderr,
            stderr_thread: Some(stderr_thread),
            stdout_thread: Some(stdout_thread),
        })
    }

    /// Starts the agent and waits until it logged `capture attached`.
    pub fn start_attached(netns: &Netns, args: &[&str]) -> Result<Self> {
        Self::attached(Self::spawn(netns, args)?)
    }

    /// [`Agent::start_attached`] with nothing added to ARGS.
    pub fn start_attached_exact(netns: &Netns, args: &[&str]) -> Result<Self> {
        Self::attached(Self::spawn_exact(netns, args)?)
    }

    fn attached(mut agent: Self) -> Result<Self> {
        if let Err(err) = agent.wait_for_log("capture attached", Duration::from_secs(30)) {
            let _ = agent.child.kill();
            let exit = agent.wait()?;
            bail!(
                "{err:#}; the agent ended with {}: {}",
                exit.status,
                exit.stderr
            );
        }
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.stderr.lines.lock().expect("lock");
        loop {
            if let Some(line) = guard.0.iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            if guard.1 {
                bail!(
                    "the agent closed stderr without logging `{needle}`: {:?}",
                    guard.0
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no `{needle}` from the agent within {timeout:?}: {:?}",
                    guard.0
                );
            }
            guard = self
                .stderr
                .changed
                .wait_timeout(guard, left)
                .expect("lock")
                .0;
        }
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines.lock().expect("lock").0.clone()
    }

    /// Sends `signal` (libc::SIGKILL, SIGINT, ...) to the agent.
    pub fn signal(&self, signal: i32) -> Result<()> {
        // SAFETY: kill(2) on our own child, which is not reaped yet.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// Sends `signal` and waits (at most `timeout`) for the agent to end.
    pub fn stop(mut self, signal: i32, timeout: Duration) -> Result<AgentExit> {
        self.signal(signal)?;
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                bail!("the agent did not exit within {timeout:?} of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.wait()
    }

    /// Waits for the agent to end by itself.
    pub fn wait(&mut self) -> Result<AgentExit> {
        let status = self.child.wait()?;
        let stdout = self
            .stdout_thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        Ok(AgentExit {
            status,
            stdout,
            stderr: self.stderr_lines().join("\n"),
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn a_binary_older_than_a_listed_source_is_stale() {
        let dir = std::env::temp_dir().join(format!("mirror-fresh-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src dir")).unwrap();
        let binary = dir.join("mirror-agent");
        let source = dir.join("src dir/lib.rs");
        std::fs::write(&binary, b"").unwrap();
        std::fs::write(&source, b"").unwrap();
        let escaped = source.display().to_string().replace(' ', "\\ ");
        std::fs::write(
            binary.with_extension("d"),
            format!(
                "{}: {escaped} {}\n",
                binary.display(),
                dir.join("src dir").display()
            ),
        )
        .unwrap();
        let set = |path: &Path, time: SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(time)
                .unwrap()
        };
        let now = SystemTime::now();
        set(&binary, now);
        set(&source, now - Duration::from_secs(10));
        assert!(check_fresh(&binary).is_ok());
        set(&source, now + Duration::from_secs(10));
        let err = check_fresh(&binary).unwrap_err().to_string();
        assert!(err.contains("cargo build -p mirror-agent"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
