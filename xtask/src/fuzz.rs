//! `cargo xtask fuzz`: runs every cargo-fuzz target of `fuzz/` for a fixed
//! time, fails on the first crash, and prints how many inputs each ran.
//!
//! cargo-fuzz needs a nightly compiler (sanitizers, `-Z` flags); the one
//! [`toolchain::ebpf_toolchain`] picks for the eBPF crate serves. Each
//! target keeps its corpus in `fuzz/corpus/<target>` (not committed) and
//! starts from the hand-written seeds in `fuzz/seeds/<target>`. A crash
//! leaves its input in `fuzz/artifacts/<target>/`; reproduce it with
//! `cargo +nightly fuzz run <target> <that file>`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::toolchain;

/// The `[[bin]]` targets of `fuzz/Cargo.toml`.
const TARGETS: &[&str] = &["framer", "framer_split", "reassembly"];

pub fn run(seconds_per_target: u64) -> anyhow::Result<()> {
    let root = repo_root();
    let fuzz_dir = root.join("fuzz");
    ensure_cargo_fuzz()?;
    let nightly = toolchain::ebpf_toolchain();
    let mut summary = Vec::new();
    for target in TARGETS {
        let execs = run_target(&root, &fuzz_dir, &nightly, target, seconds_per_target)?;
        summary.push((*target, execs));
    }
    eprintln!("fuzz: every target ran {seconds_per_target} s without a crash");
    for (target, execs) in summary {
        match execs {
            Some(n) => eprintln!("fuzz: {target}: {n} executions"),
            None => eprintln!("fuzz: {target}: execution count not reported"),
        }
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Installs cargo-fuzz unless `cargo fuzz` already answers.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked failed ({status})");
    }
    Ok(())
}

/// Runs one target; returns the number of inputs libFuzzer executed.
fn run_target(
    root: &Path,
    fuzz_dir: &Path,
    nightly: &str,
    target: &str,
    seconds: u64,
) -> anyhow::Result<Option<u64>> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .arg(format!("+{nightly}"))
        .args(["fuzz", "run", "--fuzz-dir"])
        .arg(fuzz_dir)
        .arg(target)
        .arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    eprintln!("fuzz: {target} for {seconds} s");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting cargo +{nightly} fuzz run {target}"))?;
    let mut execs = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading cargo fuzz output")?;
            if let Some(n) = executions(&line) {
                execs = Some(n);
            }
            // libFuzzer reports every new coverage point; keep the log to
            // the build, the start, the end and anything that goes wrong.
            if !is_progress(&line) {
                eprintln!("{line}");
            }
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    if !status.success() {
        bail!(
            "fuzz target `{target}` failed ({status}); a crashing input is saved in {}",
            fuzz_dir.join("artifacts").join(target).display()
        );
    }
    Ok(execs)
}

/// `stat::number_of_executed_units: N` or `Done N runs in S second(s)`.
fn executions(line: &str) -> Option<u64> {
    if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
        return rest.trim().parse().ok();
    }
    let rest = line.strip_prefix("Done ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A libFuzzer status line such as `#1024 NEW cov: ...` (tab-separated).
fn is_progress(line: &str) -> bool {
    line.starts_with('#')
        && ["NEW", "REDUCE", "pulse", "RELOAD"]
            .iter()
            .any(|word| line.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_counts_are_read_from_libfuzzer_output() {
        assert_eq!(
            executions("Done 960734 runs in 61 second(s)"),
            Some(960_734)
        );
        assert_eq!(
            executions("stat::number_of_executed_units: 702152"),
            Some(702_152)
        );
        assert_eq!(executions("#2\tINITED cov: 10 ft: 10"), None);
        assert!(is_progress("#1024\tNEW    cov: 300 ft: 500 corp: 20/1Kb"));
        assert!(!is_progress("#2\tINITED cov: 10"));
    }
}
