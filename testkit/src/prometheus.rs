//! The Debian `prometheus` server in a namespace, scraping agents as it
//! would in production, and instant queries of its HTTP API.
//!
//! [`Prometheus::start`] scrapes one agent on the namespace's loopback (the
//! metrics tests); [`Prometheus::start_scraping`] listens where the caller
//! says and scrapes several agents, one job, one `instance` each (the fleet
//! of replicas). Its data lives in a scratch directory; dropping it kills
//! it and removes them.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{http_client::get as http_get, netns::Netns, scratch::ScratchDir};

/// Where [`Prometheus::start`]'s server listens, inside its namespace.
pub const LISTEN: &str = "127.0.0.1:9090";

/// The scrape job of every agent (the selector `job="mirror"`).
pub const JOB: &str = "mirror";

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    netns: String,
    dir: ScratchDir,
}

/// One series of an instant query: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Prometheus {
    /// Starts a server in `netns`, on its loopback ([`LISTEN`]), that
    /// scrapes `http://{target}/metrics` every `interval`; returns once it
    /// is ready.
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
        let listen = LISTEN.parse().expect("a valid address");
        Self::start_configured(netns, listen, config(&[target], interval, rules))
    }

    /// Starts a server in `netns` listening on `listen` that scrapes
    /// `http://{target}/metrics` of every target every `interval`, all in
    /// the job [`JOB`]; returns once it is ready.
    pub fn start_scraping(
        netns: &Netns,
        listen: SocketAddr,
        targets: &[SocketAddr],
        interval: Duration,
    ) -> Result<Self> {
        ensure!(!targets.is_empty(), "nothing to scrape");
        Self::start_configured(netns, listen, config(targets, interval, &[]))
    }

    fn start_configured(netns: &Netns, listen: SocketAddr, config: String) -> Result<Self> {
        let dir = ScratchDir::new("prometheus")?;
        let config_path = dir.write("prometheus.yml", config)?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = netns
            .command("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot run prometheus (Debian package prometheus)")?;
        let mut server = Self {
            child,
            addr: listen,
            netns: netns.name().to_owned(),
            dir,
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

    /// Where the server listens (inside its namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, what a client of its API is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query (`/api/v1/query`) of a vector, from `netns` (the
    /// server's: [`LISTEN`] is its loopback).
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

/// The configuration: one job, every target static. The timeout is the
/// interval: a scrape never overlaps the next. In milliseconds: Prometheus
/// reads no fractions (`0.5s` is refused).
fn config(targets: &[SocketAddr], interval: Duration, rules: &[&Path]) -> String {
    let millis = interval.as_millis().max(1);
    let rule_files: String = rules
        .iter()
        .map(|path| format!("  - '{}'\n", path.display()))
        .collect();
    let rule_files = if rule_files.is_empty() {
        String::new()
    } else {
        format!("rule_files:\n{rule_files}")
    };
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: {millis}ms\n  scrape_timeout: {millis}ms\n  \
         evaluation_interval: {millis}ms\n{rule_files}\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      \
         - targets: [{targets}]\n"
    )
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_encode(text: &str) -> String {
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
pub fn parse_vector(body: &str) -> Result<Vec<Series>> {
    let answer: serde_json::Value = serde_json::from_str(body)?;
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
    fn every_target_is_scraped_in_one_job() {
        let text = config(
            &[
                "10.200.125.11:9464".parse().unwrap(),
                "10.200.125.12:9464".parse().unwrap(),
            ],
            Duration::from_millis(500),
            &[Path::new("/tmp/rules.yml")],
        );
        assert!(text.contains("scrape_interval: 500ms"), "{text}");
        assert!(
            text.contains("rule_files:\n  - '/tmp/rules.yml'\n"),
            "{text}"
        );
        assert!(text.contains("job_name: mirror"), "{text}");
        assert!(
            text.contains("targets: ['10.200.125.11:9464', '10.200.125.12:9464']"),
            "{text}"
        );
    }
}
