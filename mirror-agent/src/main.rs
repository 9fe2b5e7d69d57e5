//! `mirror-agent`: attach the capture program to an interface and mirror the
//! HTTP requests it sees to shadow targets (the agent itself is
//! [`mirror_agent::app`]).
//!
//! Exit status: 0 after a signal, 2 for a bad or incomplete configuration
//! (as for a bad flag), 1 for anything else.

use std::process::ExitCode;

use clap::Parser as _;
use mirror_agent::{app, config::Cli};

fn main() -> ExitCode {
    match app::main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(failure.exit_status()),
    }
}
