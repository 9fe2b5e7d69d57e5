//! `cargo xtask test`: setup, then every check CI runs, in order, failing fast.

use std::{
    env,
    ffi::OsString,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{setup, toolchain};

/// Seconds each fuzz target runs for when `CI=true`.
const CI_FUZZ_SECONDS: u64 = 60;

pub struct Options {
    /// Skip `cargo xtask setup` (for machines set up by hand).
    pub no_setup: bool,
    /// Appended to `cargo test`.
    pub cargo_test_args: Vec<String>,
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    let result = run_steps(root, options);
    let elapsed = format_duration(started.elapsed());
    match &result {
        Ok(()) => println!("==> cargo xtask test passed in {elapsed}"),
        Err(_) => println!("==> cargo xtask test failed after {elapsed}"),
    }
    result
}

fn run_steps(root: &Path, options: &Options) -> Result<()> {
    let toolchain = if options.no_setup {
        toolchain::ebpf_toolchain()
    } else {
        setup::run()?
    };
    println!("==> eBPF toolchain: {toolchain}");

    let mut cargo_test = cargo(["test", "--workspace", "--exclude", "mirror-ebpf"]);
    cargo_test.args(&options.cargo_test_args);
    let mut steps = [
        cargo(["fmt", "--all", "--", "--check"]),
        cargo([
            "clippy",
            "--workspace",
            "--exclude",
            "mirror-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        ebpf_clippy(&toolchain),
        // The kernel tests run the agent binary itself (kill -9, missing
        // privileges); cargo test does not build another package's binary.
        cargo(["build", "-p", "mirror-agent", "--bins"]),
        cargo_test,
    ];

    let count = steps.len();
    for (index, step) in steps.iter_mut().enumerate() {
        let shown = setup::show(step);
        println!("==> [{}/{count}] {shown}", index + 1);
        if index + 1 == count && !mirror_testkit::is_root() {
            println!(
                "warning: not root: the kernel tests (package mirror-tests) need root \
                 or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
            );
        }
        // The agent's build script builds the eBPF crate with this toolchain.
        let status = step
            .current_dir(root)
            .env(toolchain::TOOLCHAIN_ENV, &toolchain)
            .status()
            .with_context(|| format!("cannot run `{shown}`"))?;
        if !status.success() {
            bail!("step {}/{count} failed ({status}): {shown}", index + 1);
        }
    }

    // CI's machine is thrown away afterwards: there the program is loaded
    // on the kernel matrix (Debian's 5.10, 6.1, 6.12 and 7.x in QEMU), the deployment
    // is installed for real (a developer runs `cargo xtask deploy-check` by
    // choice), the bench harness runs once so that it never rots (it
    // asserts the harness worked, not the speed), and fuzzing gets its time.
    if env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") {
        println!("==> cargo xtask vm-test --kernel all (CI)");
        crate::vm::run(
            root,
            &crate::vm::Options {
                kernels: vec!["all".to_owned()],
                broken_bounds_check: false,
                accel: "tcg".to_owned(),
                verbose: false,
                jobs: None,
            },
        )
        .context("the kernel matrix failed")?;
        println!("==> cargo xtask deploy-check (CI)");
        crate::deploy::check(root).context("the deployment check failed")?;
        println!("==> cargo xtask bench --quick (CI)");
        crate::bench::run_quick(root).context("the quick bench failed")?;
        println!("==> cargo xtask fuzz: {CI_FUZZ_SECONDS} s per target (CI)");
        crate::fuzz::run(CI_FUZZ_SECONDS).context("fuzzing failed")?;
    }
    Ok(())
}

fn cargo<const N: usize>(args: [&str; N]) -> Command {
    let mut command = Command::new("cargo");
    command.args(args);
    command
}

/// Clippy of the eBPF crate for the BPF target, with the flags aya-build
/// builds it with, in its own target directory so host builds keep theirs.
fn ebpf_clippy(toolchain: &str) -> Command {
    let mut command = Command::new("cargo");
    command
        .arg(format!("+{toolchain}"))
        .args([
            "clippy",
            "-p",
            "mirror-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
            "target/ebpf-clippy",
            "--",
            "-D",
            "warnings",
        ])
        .env("CARGO_ENCODED_RUSTFLAGS", ebpf_rustflags())
        // As aya-build does: these would point at the host toolchain.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    command
}

/// aya-build's flags, separated by 0x1f as CARGO_ENCODED_RUSTFLAGS wants.
fn ebpf_rustflags() -> OsString {
    let arch = match env::consts::ARCH {
        arch if arch.starts_with("riscv64") => "riscv64",
        arch => arch,
    };
    [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_string(),
        "-Clink-arg=--btf".to_string(),
    ]
    .join("\x1f")
    .into()
}

fn format_duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{:.1}s", elapsed.as_secs_f64())
    }
}
