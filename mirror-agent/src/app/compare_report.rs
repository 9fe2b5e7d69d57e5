//! `mirror-agent compare-report --metrics-addr ADDR`: a running agent's
//! comparison report (`GET /compare` on its metrics address; `--url URL`
//! the same as a URL) printed in the terminal, for an operator on the host
//! over ssh.

use std::io::IsTerminal;

use anyhow::{Context as _, bail};

use super::http_get::get;
use crate::compare::{CompareReport, render_text};

pub fn run(url: &str, json: bool) -> anyhow::Result<()> {
    let got = get(url, "/compare", "the agent (is it running with --compare?)")?;
    if got.status != 200 {
        bail!("{url}/compare answered {}: {}", got.status, got.body.trim());
    }
    if json {
        println!("{}", got.body);
        return Ok(());
    }
    let report: CompareReport = serde_json::from_str(&got.body)
        .with_context(|| format!("{url}/compare did not answer a comparison report"))?;
    let color = std::io::stdout().is_terminal();
    print!("{}", render_text(&report, color));
    Ok(())
}
