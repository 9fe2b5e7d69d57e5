//! The Debian `prometheus` server and `promtool`, to judge the agent's
//! metrics with the tools that will read them in production.
//!
//! [`Prometheus::start`] runs a server inside a namespace (the agent's, so
//! that it scrapes the agent's loopback endpoint), listening on that
//! namespace's loopback, with its data in a scratch directory; dropping it
//! kills it; [`Prometheus::start_scraping`] scrapes several agents (the
//! fleet, [`crate::fleet`]). The server is the test kit's (the fleet demo
//! runs it too). [`check_metrics`] runs `promtool check metrics` on a
//! scrape.

use std::{io::Write as _, process::Stdio};

use anyhow::{Context as _, Result, ensure};

pub use mirror_testkit::prometheus::{LISTEN, Prometheus, Series};

/// `promtool check metrics` on an exposition: it must exit 0 and print
/// nothing (no error, no lint warning).
pub fn check_metrics(exposition: &str) -> Result<()> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (Debian package prometheus)")?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(exposition.as_bytes())?;
    let output = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {} {said}",
        output.status
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtool_judges_an_exposition() {
        if std::process::Command::new("promtool")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no promtool");
            return;
        }
        check_metrics("# HELP x_total A counter.\n# TYPE x_total counter\nx_total 1\n").unwrap();
        let err = check_metrics("# HELP x A counter.\n# TYPE x counter\nx 1\n").unwrap_err();
        assert!(err.to_string().contains("_total"), "{err}");
    }
}
