//! `mirror-agent`: attach the capture program to an interface and mirror the
//! HTTP requests it sees to shadow targets (the agent itself is
//! [`mirror_agent::app`]).
//!
//! Exit status: 0 after a signal, 2 for a bad or incomplete configuration
//! (as for a bad flag), 1 for anything else. `verdict` has its own: 0
//! pass, 1 fail, 2 inconclusive, 3 cannot tell (a bad flag among them).

use std::process::ExitCode;

use clap::Parser as _;
use mirror_agent::{app, config::Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // A pipeline reads `verdict`'s 2 as "inconclusive, retry": a
            // bad flag there is "cannot tell".
            let status = if err.use_stderr() && is_verdict() {
                3
            } else {
                err.exit_code()
            };
            return ExitCode::from(u8::try_from(status).unwrap_or(2));
        }
    };
    match app::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(failure.exit_status()),
    }
}

/// The command line names the `verdict` subcommand.
fn is_verdict() -> bool {
    std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .is_some_and(|command| command == "verdict")
}
