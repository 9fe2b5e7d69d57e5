//! What the agent reports about itself, read as text: the `kernel
//! counters:` line it prints on stdout at exit, the `final counts` it logs
//! per target, and a target's counts in a scrape of its metrics.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail, ensure};

use crate::metrics::{Metrics, SHADOW_CAPTURED};

/// `seen=N not_ip=N ... records_lost=N ...`: what follows `kernel
/// counters: ` on the agent's stdout at exit.
pub fn kernel_counters_line(stdout: &str) -> Result<&str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("kernel counters: "))
        .with_context(|| format!("mirror-agent printed no `kernel counters:` line: {stdout:?}"))
}

/// The `kernel counters:` line of stdout, by counter name.
pub fn kernel_counters(stdout: &str) -> Result<BTreeMap<String, u64>> {
    let line = kernel_counters_line(stdout)?;
    line.split_whitespace()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("`{pair}` in {line:?}"))?;
            Ok((name.to_owned(), value.parse()?))
        })
        .collect()
}

/// The kernel's record identity: `records_matched = records_emitted +
/// records_lost`.
pub fn check_records_identity(kernel: &BTreeMap<String, u64>) -> Result<()> {
    let get = |name: &str| {
        kernel
            .get(name)
            .copied()
            .with_context(|| format!("no {name} in {kernel:?}"))
    };
    let (matched, emitted, lost) = (
        get("records_matched")?,
        get("records_emitted")?,
        get("records_lost")?,
    );
    ensure!(
        matched == emitted + lost,
        "records_matched {matched} != records_emitted {emitted} + records_lost {lost}"
    );
    Ok(())
}

/// One target's accounting: from its `final counts: captured=N sent=N
/// (2xx=N) filtered=N (share=N) dropped=N (queue_full=N)` line, or from a
/// scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetCounts {
    /// The totals outside parentheses: `captured`, `sent`, `filtered`,
    /// `dropped` (and `queued`, `in_flight` while not zero). From a scrape,
    /// `captured` only.
    pub totals: BTreeMap<String, u64>,
    /// The non-zero outcomes: status classes of what was sent, filter and
    /// drop reasons (the names never collide).
    pub outcomes: BTreeMap<String, u64>,
}

impl TargetCounts {
    /// Reads a final counts line (the text after `final counts: `).
    pub fn parse(text: &str) -> Result<Self> {
        let mut counts = Self::default();
        let mut depth = 0i32;
        for token in text.split_whitespace() {
            let opens = token.starts_with('(');
            let closes = token.ends_with(')');
            depth += i32::from(opens);
            let (name, value) = token
                .trim_matches(|c| c == '(' || c == ')')
                .split_once('=')
                .with_context(|| format!("`{token}` in {text:?}"))?;
            let into = if depth > 0 {
                &mut counts.outcomes
            } else {
                &mut counts.totals
            };
            into.insert(name.to_owned(), value.parse()?);
            depth -= i32::from(closes);
        }
        for total in ["captured", "sent", "filtered", "dropped"] {
            ensure!(counts.totals.contains_key(total), "no {total} in {text:?}");
        }
        Ok(counts)
    }

    /// `target`'s counts in a scrape: `captured`
    /// (`mirror_shadow_captured_total`) and the non-zero outcomes of
    /// `mirror_shadow_requests_total`; None if the target is not there.
    pub fn scraped(metrics: &Metrics, target: &str) -> Option<Self> {
        let captured = metrics.get(SHADOW_CAPTURED, &[("target", target)])?;
        Some(Self {
            totals: [("captured".to_owned(), captured as u64)].into(),
            outcomes: metrics
                .shadow_outcomes(target)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
        })
    }

    /// A total (`captured`, `sent`, ...) or an outcome (`2xx`, `share`,
    /// `queue_full`, ...); 0 when absent (zero outcomes are left out).
    pub fn get(&self, name: &str) -> u64 {
        self.totals
            .get(name)
            .or_else(|| self.outcomes.get(name))
            .copied()
            .unwrap_or(0)
    }

    /// `captured = sent + filtered + dropped`, nothing left queued.
    pub fn balances(&self) -> bool {
        self.get("captured") == self.get("sent") + self.get("filtered") + self.get("dropped")
            && self.get("queued") == 0
            && self.get("in_flight") == 0
    }
}

impl std::fmt::Display for TargetCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .totals
            .iter()
            .chain(&self.outcomes)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(" "))
    }
}

const FINAL_COUNTS: &str = "\"message\":\"final counts: ";

/// The `final counts` of every target from the agent's JSON log lines, by
/// target label (name or URL).
///
/// The line carries the label as a `target` field next to tracing's own
/// `target` (the module): two keys of one name, so it is read by position
/// (the first `"target":` after the message) rather than by a JSON parser,
/// which would keep only the last.
pub fn final_counts(stderr: &[String]) -> Result<BTreeMap<String, TargetCounts>> {
    final_counts_texts(stderr)?
        .into_iter()
        .map(|(target, text)| {
            let counts = TargetCounts::parse(text)
                .with_context(|| format!("the final counts of {target}"))?;
            Ok((target, counts))
        })
        .collect()
}

/// The `final counts` of every target as the agent wrote them
/// (`captured=N sent=N (2xx=N) ...`), by target label; see
/// [`final_counts`].
pub fn final_counts_texts(stderr: &[String]) -> Result<BTreeMap<String, &str>> {
    let mut all = BTreeMap::new();
    for line in stderr {
        let Some(at) = line.find(FINAL_COUNTS) else {
            continue;
        };
        let rest = &line[at + FINAL_COUNTS.len()..];
        let (text, after) = rest.split_once('"').context("unterminated message")?;
        if !text.starts_with("captured=") {
            continue; // "final counts: capture", the pipeline's own line
        }
        let target = json_string_after(after, "\"target\":\"")
            .with_context(|| format!("no target in {line:?}"))?;
        if all.insert(target.clone(), text).is_some() {
            bail!("two final counts for {target}");
        }
    }
    Ok(all)
}

/// The JSON string value that follows `key` (which ends with its opening
/// quote), unescaped.
fn json_string_after(text: &str, key: &str) -> Option<String> {
    let start = text.find(key)? + key.len();
    let mut value = String::new();
    let mut chars = text[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                c => value.push(c),
            },
            c => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_counts_are_read_per_target() {
        let lines = [
            r#"{"level":"INFO","message":"final counts: capture","requests_captured":3,"target":"mirror_agent"}"#,
            r#"{"level":"INFO","message":"final counts: captured=100 sent=87 (2xx=85 5xx=2) filtered=3 (share=3) dropped=10 (connect_timeout=4 queue_full=6)","target":"http://10.200.2.2:8080","target":"mirror_agent"}"#,
            r#"{"level":"INFO","message":"final counts: captured=5 sent=0 filtered=5 (loop=5) dropped=0","target":"v3","target":"mirror_agent"}"#,
            r#"{"level":"INFO","fields":{"message":"final counts: captured=1 sent=1 (2xx=1) filtered=0 dropped=0","target":"nested"}}"#,
            "unrelated",
        ]
        .map(String::from);
        let all = final_counts(&lines).unwrap();
        assert_eq!(all.len(), 3);
        let v2 = &all["http://10.200.2.2:8080"];
        assert_eq!(v2.get("captured"), 100);
        assert_eq!(v2.get("2xx"), 85);
        assert_eq!(v2.get("queue_full"), 6);
        assert_eq!(v2.get("io_error"), 0);
        assert!(v2.balances());
        assert_eq!(
            v2.outcomes.keys().collect::<Vec<_>>(),
            ["2xx", "5xx", "connect_timeout", "queue_full", "share"]
        );
        assert_eq!(all["v3"].get("loop"), 5);
        assert_eq!(all["nested"].get("sent"), 1);
        assert_eq!(
            final_counts_texts(&lines).unwrap()["v3"],
            "captured=5 sent=0 filtered=5 (loop=5) dropped=0"
        );
        let unbalanced = TargetCounts::parse("captured=3 sent=1 filtered=0 dropped=0").unwrap();
        assert!(!unbalanced.balances());
        let busy = TargetCounts::parse(
            "captured=3 sent=1 (2xx=1) filtered=0 dropped=0 queued=1 in_flight=1",
        )
        .unwrap();
        assert_eq!(busy.totals["queued"], 1);
        assert!(!busy.balances());
        assert!(TargetCounts::parse("captured=3 sent=1").is_err());
    }

    #[test]
    fn kernel_counters_and_their_identity() {
        let out = "something\nkernel counters: seen=10 records_matched=7 records_emitted=6 records_lost=1\n";
        let kernel = kernel_counters(out).unwrap();
        assert_eq!(kernel["seen"], 10);
        assert!(kernel_counters_line(out).unwrap().starts_with("seen=10 "));
        check_records_identity(&kernel).unwrap();
        let mut bad = kernel.clone();
        bad.insert("records_lost".into(), 0);
        assert!(check_records_identity(&bad).is_err());
        assert!(kernel_counters("nothing").is_err());
    }

    #[test]
    fn a_scrape_gives_captured_and_the_outcomes() {
        let metrics = Metrics::parse(
            "mirror_shadow_captured_total{target=\"v2\"} 12\n\
             mirror_shadow_requests_total{target=\"v2\",outcome=\"2xx\"} 10\n\
             mirror_shadow_requests_total{target=\"v2\",outcome=\"5xx\"} 0\n\
             mirror_shadow_requests_total{target=\"v2\",outcome=\"queue_full\"} 2\n",
        )
        .unwrap();
        let v2 = TargetCounts::scraped(&metrics, "v2").unwrap();
        assert_eq!(v2.get("captured"), 12);
        assert_eq!(
            v2.outcomes,
            [("2xx".to_owned(), 10), ("queue_full".to_owned(), 2)].into()
        );
        assert!(TargetCounts::scraped(&metrics, "v3").is_none());
    }
}
