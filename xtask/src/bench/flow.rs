//! `cargo xtask bench flow`: requests per second per core for in-order small
//! GETs and bytes per second for 1 MB POSTs through reassembly + framing
//! (the criterion benchmark `mirror-agent/benches/flow.rs`; no root needed).

use std::{path::Path, process::Command};

use anyhow::{Result, ensure};

pub fn run(root: &Path, quick: bool) -> Result<()> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(root)
        .args(["bench", "-p", "mirror-agent", "--bench", "flow"]);
    if quick {
        // criterion's own short mode: fewer samples, same figures' shape.
        cargo.args(["--", "--quick"]);
    }
    let status = cargo.status()?;
    ensure!(status.success(), "the flow benchmark failed ({status})");
    println!(
        "criterion's report: {}",
        root.join("target/criterion/report/index.html").display()
    );
    Ok(())
}
