//! Long steps shown as one line each ("==> building mirror-agent ... done
//! in 95 s"), with the nested output only when the step fails or the user
//! asked for it (`-v`): a first build relays dozens of lines of the eBPF
//! crate's own cargo run as `warning:` lines, which read as trouble.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

/// Runs a cargo command as one step: its output is kept and shown only on
/// failure, unless `verbose`.
pub fn quiet_cargo(what: &str, command: &mut Command, verbose: bool) -> Result<()> {
    let started = Instant::now();
    print!("==> {what} ... ");
    let _ = std::io::stdout().flush();
    if verbose {
        println!();
        let status = command
            .status()
            .with_context(|| format!("{what}: cannot run cargo"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        println!(
            "==> {what}: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot run cargo"))?;
    if !output.status.success() {
        println!("failed");
        let _ = std::io::stderr().write_all(&output.stderr);
        let _ = std::io::stdout().write_all(&output.stdout);
        bail!("{what} failed ({})", output.status);
    }
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
