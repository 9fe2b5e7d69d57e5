//! The `mirror-agent` binary these tests judge: where it is, how the tests
//! start it, and what a clean exit must leave.
//!
//! The binary is not built by `cargo test -p mirror-tests` (cargo builds
//! binaries only for their own package's tests): run
//! `cargo build -p mirror-agent` first, as `cargo xtask test` does.
//! `MIRROR_AGENT_BIN` overrides where it is looked for.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{Agent, AgentExit, Netns, Signal, TargetCounts, agent};

/// How long an agent may take to load and attach its programs.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the agent binary is: `$MIRROR_AGENT_BIN`, else next to the test
/// executable's directory (`target/<profile>/deps/test-HASH` →
/// `target/<profile>/mirror-agent`), which must not be older than its
/// sources.
pub fn binary() -> Result<PathBuf> {
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

/// The tests load both CPUs with their own clients and servers and check
/// what is mirrored, not who yields the CPU: their agents run at the
/// service's priority unless a test gives `--nice` (the default, 10, has a
/// test of its own).
const TEST_NICE: [&str; 2] = ["--nice", "0"];

/// Starts `mirror-agent ARGS...` inside `netns`, at nice 0 unless ARGS say
/// otherwise (see [`TEST_NICE`]), and waits until its capture is attached.
pub fn start_attached(netns: &Netns, args: &[&str]) -> Result<Agent> {
    let mut full = Vec::with_capacity(args.len() + 2);
    if !args.contains(&"--nice") && args.first().is_some_and(|a| a.starts_with("--")) {
        full.extend(TEST_NICE);
    }
    full.extend_from_slice(args);
    start_attached_exact(netns, &full)
}

/// [`start_attached`] with nothing added to ARGS.
pub fn start_attached_exact(netns: &Netns, args: &[&str]) -> Result<Agent> {
    Agent::start(netns, &binary()?, args)?.attached(ATTACH_TIMEOUT)
}

/// Runs the agent to completion inside `netns`, through `wrapper` (a
/// program and its arguments that exec the agent, such as setpriv) if not
/// empty.
pub fn run_to_end(netns: &Netns, wrapper: &[&str], args: &[&str]) -> Result<Output> {
    let binary = binary()?;
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = netns.command(program);
            command.args(rest).arg(&binary);
            command
        }
        None => netns.command(&binary),
    };
    Ok(command
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()?)
}

/// The non-empty lines of a finished program's stderr.
fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The agent refused to run: it exited non-zero with one line on stderr
/// (blank lines aside), which this returns.
pub fn refusal(output: &Output) -> Result<String> {
    let lines = stderr_lines(output);
    ensure!(!output.status.success(), "the agent ran: {lines:?}");
    ensure!(lines.len() == 1, "not one line: {lines:?}");
    Ok(lines[0].clone())
}

/// What a clean exit left, read.
#[derive(Debug)]
pub struct Stopped {
    pub exit: AgentExit,
    pub kernel: BTreeMap<String, u64>,
    pub finals: BTreeMap<String, TargetCounts>,
}

impl Stopped {
    /// The final counts of `target` (its name or URL).
    pub fn target(&self, target: &str) -> Result<&TargetCounts> {
        self.finals
            .get(target)
            .with_context(|| format!("no final counts for {target}: {:?}", self.finals))
    }
}

/// A clean exit: status 0, kernel counters whose records balance (matched
/// = emitted + lost) and final counts that balance for every target
/// (captured = sent + filtered + dropped).
pub fn check_exit(exit: AgentExit) -> Result<Stopped> {
    let exit = exit.success()?;
    let kernel = exit.kernel_counters()?;
    agent::check_records_identity(&kernel)?;
    let finals = exit.final_counts()?;
    for (target, counts) in &finals {
        ensure!(
            counts.balances(),
            "{target}: final counts do not balance (captured != sent + filtered + dropped): \
             {counts}"
        );
    }
    Ok(Stopped {
        exit,
        kernel,
        finals,
    })
}

/// SIGINT, then a clean exit ([`check_exit`]) with nothing lost in the
/// ring and no "accounting does not balance" in its log.
pub fn stop_clean(agent: Agent) -> Result<Stopped> {
    let stopped = check_exit(agent.stop(Signal::INT, Duration::from_secs(20))?)?;
    ensure!(
        stopped.kernel["records_lost"] == 0,
        "the ring lost records: {:?}",
        stopped.kernel
    );
    ensure!(
        !stopped.exit.stderr.contains("accounting does not balance"),
        "{}",
        stopped.exit.stderr
    );
    Ok(stopped)
}

/// Each `(name, n)`: a total or outcome of `target`'s final counts is
/// exactly n.
pub fn expect_counts(target: &str, counts: &TargetCounts, expected: &[(&str, u64)]) -> Result<()> {
    for (name, n) in expected {
        ensure!(
            counts.get(name) == *n,
            "{target}: {name} = {}, expected {n} ({counts})",
            counts.get(name)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn a_binary_older_than_a_listed_source_is_stale() {
        let dir = mirror_testkit::ScratchDir::new("fresh").unwrap();
        let dir = dir.path();
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
    }
}
