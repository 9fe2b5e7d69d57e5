//! ApacheBench (`ab`) as a client inside a namespace, with the figures of
//! its report that the tests and the demo judge.

use anyhow::{Context as _, Result, ensure};

use crate::netns::Netns;

/// What ab reported.
#[derive(Clone, Debug)]
pub struct AbReport {
    pub complete: u64,
    pub failed: u64,
    /// Responses other than 2xx (ab prints the line only when non-zero).
    pub non_2xx: u64,
    /// The slowest request, connect to last byte, in milliseconds (ab's
    /// `100%` percentile).
    pub longest_ms: u64,
    /// The whole report, for messages.
    pub text: String,
}

/// Runs `ab ARGS URL` in `netns`; ab must exit 0.
pub fn run(netns: &Netns, args: &[&str], url: &str) -> Result<AbReport> {
    let output = netns
        .command("ab")
        .args(args)
        .arg(url)
        .output()
        .context("cannot run ab (Debian package apache2-utils)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "ab {args:?} {url} failed ({}): {text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text)
}

/// Reads the figures out of an ab report.
pub fn parse(text: &str) -> Result<AbReport> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let complete = field("Complete requests:").context("no `Complete requests:`")?;
    let failed = field("Failed requests:").context("no `Failed requests:`")?;
    let longest_ms = field("100%").context("no `100%` percentile")?;
    Ok(AbReport {
        complete,
        failed,
        non_2xx: field("Non-2xx responses:").unwrap_or(0),
        longest_ms,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_gives_its_counts_and_the_longest_request() {
        let text = "Concurrency Level:      10\nTime taken for tests:   0.501 seconds\n\
                    Complete requests:      1000\nFailed requests:        0\n\
                    Non-2xx responses:      3\n\
                    Percentage of the requests served within a certain time (ms)\n  \
                    50%      4\n  99%     14\n 100%     17 (longest request)\n";
        let report = parse(text).unwrap();
        assert_eq!(report.complete, 1000);
        assert_eq!(report.failed, 0);
        assert_eq!(report.non_2xx, 3);
        assert_eq!(report.longest_ms, 17);
        assert!(parse("Complete requests: 3\n").is_err());
    }
}
