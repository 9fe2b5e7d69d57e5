//! Running a program to completion: its stdout, or an error that carries
//! its stderr.

use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

/// Runs `command` (stdin from /dev/null) to completion; a non-zero exit is
/// an error with its stderr. Returns stdout.
pub fn run(command: &mut Command) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!(
            "{command:?} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
