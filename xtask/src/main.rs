//! Project tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).

mod bench;
mod demo;
mod demo_fleet;
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

use anyhow::Result;
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
    /// `demo fleet`: three v1 replicas behind HAProxy, an agent each, and
    /// the fleet's verdict from Prometheus.
    Demo {
        /// `fleet` for the fleet demo; nothing for the plain one.
        #[arg(value_enum)]
        which: Option<DemoKind>,
        /// Show the build's own output (otherwise one line per step).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Setup, then the kernel matrix: boots Debian's 5.10, 6.1, 6.12 and
    /// newest (7.x) kernels in QEMU (fetched once, cached under
    /// target/vm-test) and, in each, loads and attaches the program in
    /// every attach mode the kernel has and mirrors real HTTP through a
    /// veth pair. No root needed.
    VmTest {
        /// 5.10, 6.1, 6.12, 7.x or all (default all); repeatable.
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
        /// Guests booted at once (default: one per CPU; each emulated
        /// guest keeps one CPU busy).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
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
    Bench(bench::Options),
}

/// The demos besides the plain one.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DemoKind {
    /// The second seed's exercise: replicas behind HAProxy, one verdict.
    Fleet,
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
        Task::Demo { which, verbose } => {
            setup::run()?;
            match which {
                None => demo::run(&root, verbose),
                Some(DemoKind::Fleet) => demo_fleet::run(&root, verbose),
            }
        }
        Task::VmTest {
            kernel,
            broken_bounds_check,
            accel,
            verbose,
            jobs,
        } => {
            setup::run()?;
            vm::run(
                &root,
                &vm::Options {
                    kernels: kernel,
                    broken_bounds_check,
                    accel,
                    verbose,
                    jobs,
                },
            )
        }
        Task::VmGuest {
            what: VmGuest::Test { agent },
        } => vm::guest::run(&agent),
        Task::DeployCheck => deploy::check(&root),
        Task::Bench(options) => bench::main(&root, &options),
    }
}

/// The workspace root: xtask lives one level below it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}
