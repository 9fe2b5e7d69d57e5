//! Project tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).

mod bench;
mod demo;
mod deploy;
mod fuzz;
mod setup;
mod steps;
mod test;
mod toolchain;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project tasks for mirror"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing to build and test mirror: Debian packages, the
    /// eBPF nightly with rust-src, bpf-linker built against LLVM 22.
    Setup,
    /// Setup, then cargo fmt --check, clippy (host and eBPF), cargo test
    /// (the kernel tests need root). With CI=true, also fuzzing.
    Test {
        /// Skip setup (for machines prepared by hand).
        #[arg(long)]
        no_setup: bool,
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Fuzz each target for a while.
    Fuzz {
        /// Seconds per fuzz target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Setup, then a client talking to v1 while v2 and v3 get a copy.
    Demo {
        /// Show the build's own output (otherwise one line per step).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Setup, then the kernel matrix: boots Debian's 6.1 and 6.12 kernels
    /// in QEMU (fetched once, cached under target/vm-test) and, in each,
    /// loads and attaches the program in every attach mode the kernel has
    /// and mirrors real HTTP through a veth pair. No root needed.
    VmTest {
        /// 6.1, 6.12 or all (default all); repeatable.
        #[arg(long, value_name = "VERSION")]
        kernel: Vec<String>,
        /// Test the test: build the program without the copy length's
        /// bounds check; the 6.1 verifier must reject it (vm-test fails).
        #[arg(long)]
        broken_bounds_check: bool,
        /// tcg (default: software emulation, works everywhere) or kvm.
        #[arg(long, default_value = "tcg")]
        accel: String,
        /// Show the build output and every line of the guests' consoles.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Inside a vm-test guest (run by its /init).
    #[command(hide = true)]
    VmGuest {
        #[command(subcommand)]
        what: VmGuest,
    },
    /// What CI checks of the deployment (root; installs into this machine):
    /// provisioning script's non-VM phases, systemd-analyze verify, demo
    /// services, ruby -c Vagrantfile, YAML lint and Kubernetes schemas.
    DeployCheck,
    /// Benchmarks (root); reports under target/bench/.
    Bench {
        /// `all` (default): the capture sub-bench, then every mode of
        /// mirroring under every scenario (bench.md, bench.json);
        /// `capture`: only the kernel program's cost and the capture rate;
        /// `flow`: reassembly + framing throughput (criterion, no root).
        #[arg(default_value = "all")]
        what: String,
        /// A short run (under 90 s) that checks the harness, not the speed
        /// (CI runs it so the harness never rots).
        #[arg(long)]
        quick: bool,
        /// A goreplay (gor) binary: adds the goreplay modes.
        #[arg(long, value_name = "PATH")]
        goreplay: Option<std::path::PathBuf>,
        /// Seconds of load per run (default 8 at saturation, 10 at fixed
        /// rates).
        #[arg(long)]
        seconds: Option<f64>,
        /// Only the scenarios whose name contains this (repeatable), e.g.
        /// `--only saturation --only 'conns=10 '`.
        #[arg(long, value_name = "TEXT")]
        only: Vec<String>,
        /// Only these modes besides the baseline (repeatable): capture-only,
        /// replay-1, replay-2, nginx-mirror, goreplay, goreplay-null.
        #[arg(long = "mode", value_name = "MODE")]
        modes: Vec<String>,
        /// The agent's --ring-size (default: the agent's own default).
        #[arg(long, value_name = "BYTES")]
        ring_size: Option<String>,
        /// Runs of each saturation scenario, modes interleaved, median
        /// reported (default 3 for small requests on 10 connections, else 1).
        #[arg(long)]
        repeat: Option<usize>,
        /// Skip the capture sub-bench in `all`.
        #[arg(long)]
        no_capture: bool,
        /// Measure this mirror-agent binary instead of building one (to
        /// compare builds).
        #[arg(long, value_name = "PATH")]
        agent: Option<std::path::PathBuf>,
        /// Without the 1 ms ticker on each CPU that puts every mode,
        /// baseline included, under the same idle behaviour of the VM.
        #[arg(long)]
        no_keep_awake: bool,
    },
}

#[derive(Subcommand)]
enum VmGuest {
    /// The whole guest test against this agent binary.
    Test { agent: PathBuf },
}

fn main() -> ExitCode {
    match run(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    let root = repo_root();
    match task {
        Task::Setup => setup::run().map(drop),
        Task::Test {
            no_setup,
            cargo_test_args,
        } => test::run(
            &root,
            &test::Options {
                no_setup,
                cargo_test_args,
            },
        ),
        Task::Fuzz { seconds } => fuzz::run(seconds),
        Task::Demo { verbose } => {
            setup::run()?;
            demo::run(&root, verbose)
        }
        Task::VmTest {
            kernel,
            broken_bounds_check,
            accel,
            verbose,
        } => {
            setup::run()?;
            vm::run(
                &root,
                &vm::Options {
                    kernels: kernel,
                    broken_bounds_check,
                    accel,
                    verbose,
                },
            )
        }
        Task::VmGuest {
            what: VmGuest::Test { agent },
        } => vm::guest::run(&agent),
        Task::DeployCheck => deploy::check(&root),
        Task::Bench {
            what,
            quick,
            goreplay,
            seconds,
            only,
            modes,
            ring_size,
            repeat,
            no_capture,
            agent,
            no_keep_awake,
        } => match what.as_str() {
            "capture" => bench::capture(&root, quick, agent.as_deref()),
            "flow" => bench::flow(&root, quick),
            "all" => bench::run(
                &root,
                &bench::Options {
                    quick,
                    goreplay,
                    seconds,
                    only,
                    modes,
                    ring_size,
                    no_capture,
                    repeat,
                    agent,
                    no_keep_awake,
                },
            ),
            other => bail!("unknown bench `{other}`; available: all (default), capture, flow"),
        },
    }
}

/// The workspace root: xtask lives one level below it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}
