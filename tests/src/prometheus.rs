//! The Debian `prometheus` server and `promtool`, to judge the agent's
//! metrics with the tools that will read them in production.
//!
//! [`Prometheus::start`] runs a server inside a namespace (the agent's, so
//! that it scrapes the agent's loopback endpoint), listening on that
//! namespace's loopback, with its data in a scratch directory; dropping it
//! kills it. [`check_metrics`] runs `promtool check metrics` on a scrape.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::SocketAddr,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use mirror_testkit::{Netns, ScratchDir, http_client::get as http_get};

/// Where the server listens, inside its namespace.
pub const LISTEN: &str = "127.0.0.1:9090";

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    netns: String,
    _dir: ScratchDir,
}

/// One series of an instant query: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Prometheus {
    /// Starts a server in `netns` that scrapes `http://{target}/metrics`
    /// every `interval`; returns once it is ready.
    pub fn start(netns: &Netns, target: SocketAddr, interval: Duration) -> Result<Self> {
        Self::start_with_rules(netns, target, interval, &[])
    }

    /// [`Prometheus::start`], also loading the rule files `rules` (absolute
    /// paths), evaluated every `interval` as production evaluates them.
    pub fn start_with_rules(
        netns: &Netns,
        target: SocketAddr,
        interval: Duration,
        rules: &[&Path],
    ) -> Result<Self> {
        let dir = ScratchDir::new("prometheus")?;
        let seconds = interval.as_secs_f64();
        let rule_files: String = rules
            .iter()
            .map(|path| format!("  - '{}'\n", path.display()))
            .collect();
        let rule_files = if rule_files.is_empty() {
            String::new()
        } else {
            format!("rule_files:\n{rule_files}")
        };
        let config = format!(
            "global:\n  scrape_interval: {seconds}s\n  scrape_timeout: {seconds}s\n  \
             evaluation_interval: {seconds}s\n{rule_files}\
             scrape_configs:\n  - job_name: mirror\n    static_configs:\n      \
             - targets: ['{target}']\n"
        );
        let config_path = dir.write("prometheus.yml", config)?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = netns
            .command("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={LISTEN}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot run prometheus (Debian package prometheus)")?;
        let mut server = Self {
            child,
            addr: LISTEN.parse().expect("a valid address"),
            netns: netns.name().to_owned(),
            _dir: dir,
        };
        server.wait_ready(netns, Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_ready(&mut self, netns: &Netns, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited with {status}: {}", self.log());
            }
            if let Ok((200, _)) = http_get(netns, self.addr, "/-/ready") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("prometheus not ready within {timeout:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query (`/api/v1/query`) of a vector.
    pub fn query(&self, netns: &Netns, promql: &str) -> Result<Vec<Series>> {
        ensure!(
            netns.name() == self.netns,
            "query from {}, the server runs in {}",
            netns.name(),
            self.netns
        );
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = http_get(netns, self.addr, &path)?;
        ensure!(status == 200, "query {promql:?}: status {status}: {body}");
        parse_vector(&body).with_context(|| format!("query {promql:?}: {body}"))
    }

    /// Queries until `done` holds for the result, at most `timeout`;
    /// returns the last result either way with whether it held.
    pub fn wait_for(
        &self,
        netns: &Netns,
        promql: &str,
        timeout: Duration,
        done: impl Fn(&[Series]) -> bool,
    ) -> Result<(bool, Vec<Series>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(netns, promql)?;
            if done(&result) {
                return Ok((true, result));
            }
            if Instant::now() >= deadline {
                return Ok((false, result));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `{"status":"success","data":{"resultType":"vector","result":[{"metric":
/// {...},"value":[ts,"v"]}]}}`.
fn parse_vector(body: &str) -> Result<Vec<Series>> {
    let answer: Value = serde_json::from_str(body)?;
    ensure!(answer["status"] == "success", "status {}", answer["status"]);
    ensure!(
        answer["data"]["resultType"] == "vector",
        "result type {}",
        answer["data"]["resultType"]
    );
    let result = answer["data"]["result"]
        .as_array()
        .context("no result array")?;
    result
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .context("no metric labels")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let value = series["value"][1]
                .as_str()
                .context("no value")?
                .parse()
                .context("the value is not a number")?;
            Ok(Series { labels, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_vectors_parsed() {
        assert_eq!(
            url_encode(r#"sum by (target) (x{outcome=~"2xx"})"#),
            "sum%20by%20%28target%29%20%28x%7Boutcome%3D~%222xx%22%7D%29"
        );
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"target":"http://a:1"},"value":[1700000000.5,"1000"]}]}}"#;
        assert_eq!(
            parse_vector(body).unwrap(),
            [Series {
                labels: [("target".to_owned(), "http://a:1".to_owned())].into(),
                value: 1000.0
            }]
        );
        assert!(parse_vector(r#"{"status":"error","error":"bad"}"#).is_err());
    }

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
