//! What the agent reports about itself: the `kernel counters:` line it
//! prints on stdout at exit, the `final counts` it logs per target, and
//! its memory as the kernel sees it.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail, ensure};

/// `kernel counters: seen=N not_ip=N ... records_lost=N ...` from stdout,
/// by counter name.
pub fn kernel_counters(stdout: &str) -> Result<BTreeMap<String, u64>> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kernel counters: "))
        .with_context(|| format!("no `kernel counters:` line in {stdout:?}"))?;
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

/// One target's `final counts: captured=N sent=N (2xx=N) filtered=N
/// (share=N) dropped=N (queue_full=N)`, flattened: totals and reasons by
/// name (the names never collide).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetCounts {
    pub counts: BTreeMap<String, u64>,
}

impl TargetCounts {
    pub fn parse(text: &str) -> Result<Self> {
        let mut counts = BTreeMap::new();
        for token in text.split_whitespace() {
            let token = token.trim_matches(|c| c == '(' || c == ')');
            let (name, value) = token
                .split_once('=')
                .with_context(|| format!("`{token}` in {text:?}"))?;
            counts.insert(name.to_owned(), value.parse()?);
        }
        for total in ["captured", "sent", "filtered", "dropped"] {
            ensure!(counts.contains_key(total), "no {total} in {text:?}");
        }
        Ok(Self { counts })
    }

    /// A total (`captured`, `sent`, ...) or a reason (`2xx`, `share`,
    /// `queue_full`, ...); 0 when absent (zero reasons are left out).
    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
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
            .counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// The `final counts` of every target from the agent's JSON log lines, by
/// target label (name or URL).
///
/// The line carries the label as a `target` field next to tracing's own
/// `target` (the module): two keys of one name, so it is read by position
/// (the first `"target":` after the message) rather than by a JSON parser,
/// which would keep only the last.
pub fn final_counts(stderr: &[String]) -> Result<BTreeMap<String, TargetCounts>> {
    const MESSAGE: &str = "\"message\":\"final counts: ";
    let mut all = BTreeMap::new();
    for line in stderr {
        let Some(at) = line.find(MESSAGE) else {
            continue;
        };
        let rest = &line[at + MESSAGE.len()..];
        let (text, after) = rest.split_once('"').context("unterminated message")?;
        if !text.starts_with("captured=") {
            continue; // "final counts: capture", the pipeline's own line
        }
        let target = json_string_after(after, "\"target\":\"")
            .with_context(|| format!("no target in {line:?}"))?;
        let counts = TargetCounts::parse(text).with_context(|| format!("in {line:?}"))?;
        if all.insert(target.clone(), counts).is_some() {
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

/// `VmHWM` of a process (its peak resident set), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = value
        .trim()
        .strip_suffix("kB")
        .with_context(|| format!("{field}{value}"))?;
    Ok(kib.trim().parse()?)
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
            "unrelated",
        ]
        .map(String::from);
        let all = final_counts(&lines).unwrap();
        assert_eq!(all.len(), 2);
        let v2 = &all["http://10.200.2.2:8080"];
        assert_eq!(v2.get("captured"), 100);
        assert_eq!(v2.get("2xx"), 85);
        assert_eq!(v2.get("queue_full"), 6);
        assert_eq!(v2.get("io_error"), 0);
        assert!(v2.balances());
        assert_eq!(all["v3"].get("loop"), 5);
        let unbalanced = TargetCounts::parse("captured=3 sent=1 filtered=0 dropped=0").unwrap();
        assert!(!unbalanced.balances());
    }

    #[test]
    fn kernel_counters_and_their_identity() {
        let out = "something\nkernel counters: seen=10 records_matched=7 records_emitted=6 records_lost=1\n";
        let kernel = kernel_counters(out).unwrap();
        assert_eq!(kernel["seen"], 10);
        check_records_identity(&kernel).unwrap();
        let mut bad = kernel.clone();
        bad.insert("records_lost".into(), 0);
        assert!(check_records_identity(&bad).is_err());
        assert!(kernel_counters("nothing").is_err());
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        // The current RSS first: the peak read after it can only be higher
        // (the other way round, a test thread growing the heap in between
        // made it fail).
        let rss = rss_kib(std::process::id()).unwrap();
        let peak = peak_rss_kib(std::process::id()).unwrap();
        assert!(peak > 0 && peak >= rss);
    }
}
