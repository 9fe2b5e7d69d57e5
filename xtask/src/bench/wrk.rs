//! Saturation load: wrk, as many requests as the primary answers, with a
//! Lua script that sets the body and prints the summary (percentiles up to
//! p99.9) as one JSON line.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context as _, Result};

use mirror_testkit::command;

use super::hosts::{CLIENT_CPU, Hosts};

/// What wrk measured.
#[derive(Clone, Debug, Default)]
pub struct WrkOutcome {
    pub requests: u64,
    pub seconds: f64,
    /// connect, read, write, timeout errors and non-2xx/3xx statuses.
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl WrkOutcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
}

const SCRIPT: &str = r#"
local body = tonumber(os.getenv("BENCH_BODY") or "0")
if body > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", body)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
wrk.headers["User-Agent"] = "mirror-bench"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,\"p50\":%d,\"p99\":%d,\"p999\":%d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// Runs wrk against `url` for `duration` on `connections` connections,
/// with `threads` threads (None: the bench's default for that many
/// connections).
pub fn run(
    hosts: &Hosts,
    url: &str,
    connections: usize,
    threads: Option<usize>,
    body: usize,
    duration: Duration,
) -> Result<WrkOutcome> {
    let script = hosts.scratch.path().join("bench.lua");
    if !script.exists() {
        fs::write(&script, SCRIPT)?;
    }
    // One thread per 5000 connections at least; two keep it near the
    // other threads it shares the client CPU with.
    let threads =
        threads.unwrap_or_else(|| connections.clamp(1, 2).max(connections.div_ceil(5000)));
    let seconds = duration.as_secs_f64().ceil().max(1.0) as u64;
    let out = command::run(
        hosts
            .client
            .command("taskset")
            .args(["-c", &CLIENT_CPU.to_string(), "wrk"])
            .args(["-t", &threads.to_string()])
            .args(["-c", &connections.to_string()])
            .args(["-d", &format!("{seconds}s"), "--timeout", "10s"])
            .args(["-s", &script_path(&script)])
            .arg(url)
            .env("BENCH_BODY", body.to_string()),
    )?;
    parse(&out).with_context(|| format!("wrk printed no summary:\n{out}"))
}

fn script_path(path: &Path) -> String {
    path.display().to_string()
}

fn parse(out: &str) -> Option<WrkOutcome> {
    let line = out.lines().find_map(|l| l.strip_prefix("BENCH "))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let n = |k: &str| v.get(k).and_then(|x| x.as_f64());
    Some(WrkOutcome {
        requests: n("requests")? as u64,
        seconds: n("duration_us")? / 1e6,
        errors: n("errors")? as u64,
        p50_us: n("p50")?,
        p99_us: n("p99")?,
        p999_us: n("p999")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read() {
        let out = "Running 1s test\nBENCH {\"requests\":100,\"duration_us\":2000000,\
                   \"errors\":1,\"p50\":40,\"p99\":900,\"p999\":1500}\n";
        let o = parse(out).unwrap();
        assert_eq!(o.requests, 100);
        assert_eq!(o.rate(), 50.0);
        assert_eq!((o.p50_us, o.p99_us, o.p999_us), (40.0, 900.0, 1500.0));
    }
}
