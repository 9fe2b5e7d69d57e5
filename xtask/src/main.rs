//! Project tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).

mod bench;
mod demo;
mod deploy;
mod fuzz;
mod netns;
mod setup;
mod test;
mod toolchain;

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
    Demo,
    /// What CI checks of the deployment (root; installs into this machine):
    /// provisioning script's non-VM phases, systemd-analyze verify, demo
    /// services, ruby -c Vagrantfile, YAML lint and Kubernetes schemas.
    DeployCheck,
    /// Benchmarks; results under target/bench/.
    Bench {
        /// What to measure: `capture` (kernel program cost and capture rate).
        #[arg(default_value = "capture")]
        what: String,
        /// A short run (CI uses it so the harness never rots).
        #[arg(long)]
        quick: bool,
    },
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
        Task::Demo => {
            setup::run()?;
            demo::run(&root)
        }
        Task::DeployCheck => deploy::check(&root),
        Task::Bench { what, quick } => match what.as_str() {
            "capture" => bench::capture(&root, quick),
            other => bail!("unknown bench `{other}`; available: capture"),
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
