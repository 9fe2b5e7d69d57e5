//! Throw-away hosts for xtask tasks: named network namespaces joined by
//! veth pairs, programs running inside them, everything removed on drop
//! (also when the task fails half-way). Shells out to `ip` (iproute2), so
//! xtask needs no libc binding.

use std::{
    io::{BufRead as _, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

/// The effective uid of this process, read from /proc.
pub fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Runs a command to completion; a non-zero exit is an error with its
/// stderr. Returns stdout.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` with its loopback up; a namespace of that name left
    /// by an interrupted run is deleted first.
    pub fn new(name: &str) -> Result<Self> {
        if PathBuf::from("/run/netns").join(name).exists() {
            run(Command::new("ip").args(["netns", "del", name]))?;
        }
        run(Command::new("ip").args(["netns", "add", name]))?;
        let netns = Self {
            name: name.to_owned(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip netns exec NAME PROGRAM`, to add arguments to and run or spawn.
    /// `ip` execs the program: the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Adds `cidr` to `iface` and brings it up.
    pub fn address(&self, iface: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", iface])?;
        self.ip(&["link", "set", iface, "up"])?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "warning: cannot delete network namespace {}: {err:#}",
                self.name
            );
        }
    }
}

/// A veth pair with one end in each namespace (down, no address).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    run(Command::new("ip").args([
        "link", "add", "name", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if,
        "netns", &b.name,
    ]))
    .map(drop)
}

/// Lines a child wrote on one stream, and whether it closed it.
#[derive(Default)]
struct Lines {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Lines>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.state.lock().expect("lock").0.push(line);
            into.changed.notify_all();
        }
        into.state.lock().expect("lock").1 = true;
        into.changed.notify_all();
    });
}

/// A program running in a namespace, its stdout and stderr kept line by
/// line. Dropping it kills it (SIGKILL) if it still runs.
pub struct Process {
    label: String,
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Process {
    /// Starts `PROGRAM ARGS...` inside `netns`.
    pub fn spawn(netns: &Netns, label: &str, program: &str, args: &[&str]) -> Result<Self> {
        let mut child = netns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {label} ({program})"))?;
        let (stdout, stderr) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
        collect(child.stdout.take().expect("piped"), Arc::clone(&stdout));
        collect(child.stderr.take().expect("piped"), Arc::clone(&stderr));
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

    /// Waits for a line containing `needle` on stdout (`on_stderr` false)
    /// or stderr; fails if the program ends or `timeout` passes first.
    pub fn wait_for(&self, needle: &str, on_stderr: bool, timeout: Duration) -> Result<String> {
        let lines = if on_stderr {
            &self.stderr
        } else {
            &self.stdout
        };
        let deadline = Instant::now() + timeout;
        let mut state = lines.state.lock().expect("lock");
        loop {
            if let Some(line) = state.0.iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.1 || left.is_zero() {
                drop(state);
                bail!(
                    "{} {} without printing `{needle}`; stderr: {}",
                    self.label,
                    if left.is_zero() {
                        format!("ran {timeout:?}")
                    } else {
                        "ended".to_owned()
                    },
                    self.stderr_lines().join("\n")
                );
            }
            state = lines.changed.wait_timeout(state, left).expect("lock").0;
        }
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.state.lock().expect("lock").0.clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.state.lock().expect("lock").0.clone()
    }

    /// Sends `signal` (a name for kill(1): INT, TERM, KILL) and waits up to
    /// `timeout` for the program to end, and for its output to be read.
    pub fn stop(&mut self, signal: &str, timeout: Duration) -> Result<std::process::ExitStatus> {
        if self.child.try_wait()?.is_none() {
            run(Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]))?;
        }
        self.wait(timeout)
    }

    /// Waits up to `timeout` for the program to end on its own (killed
    /// after that), and for its output to be read.
    pub fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
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

/// A file or directory removed on drop.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let result = if self.0.is_dir() {
            std::fs::remove_dir_all(&self.0)
        } else {
            std::fs::remove_file(&self.0)
        };
        if let Err(err) = result
            && err.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {err}", self.0.display());
        }
    }
}
