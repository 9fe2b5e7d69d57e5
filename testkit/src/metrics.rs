//! The agent's Prometheus endpoint, scraped from inside its namespace and
//! parsed (text format 0.0.4: `name{label="value",...} number`).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{http_client, netns::Netns};

/// Where the agent serves metrics unless told otherwise (per namespace).
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9464));

/// The per-target family: outcome = status class, filter or drop reason.
pub const SHADOW_REQUESTS: &str = "mirror_shadow_requests_total";
/// Requests captured for each target (whatever became of them).
pub const SHADOW_CAPTURED: &str = "mirror_shadow_captured_total";
/// Requests the agent reassembled, all targets together.
pub const REQUESTS_CAPTURED: &str = "mirror_requests_captured_total";

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of one scrape.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// `GET /metrics` from inside `netns`.
    pub fn scrape(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        let (status, body) = http_client::get(netns, addr, "/metrics")?;
        ensure!(
            status == 200,
            "http://{addr}/metrics in {} answered {status}: {body}",
            netns.name()
        );
        Self::parse(&body)
    }

    /// Parses an exposition; comments and blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let samples = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).with_context(|| format!("metrics line {line:?}")))
            .collect::<Result<_>>()?;
        Ok(Self { samples })
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        })
    }

    /// The one sample of `name` with these labels, if there is exactly one.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, labels);
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }

    /// The sum over the samples of `name` with these labels (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// `mirror_requests_captured_total` (0 if absent).
    pub fn requests_captured(&self) -> u64 {
        self.get(REQUESTS_CAPTURED, &[]).unwrap_or(0.0) as u64
    }

    /// `mirror_shadow_requests_total` of one target, by outcome (zeros
    /// included).
    pub fn shadow_outcomes(&self, target: &str) -> BTreeMap<String, u64> {
        self.matching(SHADOW_REQUESTS, &[("target", target)])
            .filter_map(|s| Some((s.labels.get("outcome")?.clone(), s.value as u64)))
            .collect()
    }

    /// The target labels present in `family`, sorted, once each.
    pub fn targets(&self, family: &str) -> Vec<String> {
        let mut targets: Vec<String> = self
            .matching(family, &[])
            .filter_map(|s| s.labels.get("target").cloned())
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    /// `(le, cumulative count)` of the buckets of histogram `name`
    /// (`NAME_bucket`) with these labels, by `le` (`+Inf` last).
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .matching(&bucket, labels)
            .filter_map(|s| Some((parse_value(s.label("le")?).ok()?, s.value)))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

fn parse_value(text: &str) -> Result<f64> {
    Ok(match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().context("the value is not a number")?,
    })
}

fn parse_sample(line: &str) -> Result<Sample> {
    let (series, value) = line.rsplit_once(' ').context("no value after the series")?;
    let value = parse_value(value)?;
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').context("labels without their `}`")?;
            (name, parse_labels(inner)?)
        }
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` (escapes: `\\`, `\"`, `\n`).
fn parse_labels(mut text: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"").context("a label without =\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("an escape at the end"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => bail!("an unterminated label value"),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels_are_parsed() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    mirror_requests_captured_total 12\n\
                    mirror_shadow_requests_total{target=\"http://a:1/p,q\",outcome=\"2xx\"} 10\n\
                    mirror_shadow_requests_total{target=\"http://a:1/p,q\",outcome=\"share\"} 2\n\
                    h_bucket{le=\"+Inf\",target=\"q\\\"x\"} 3\n\
                    h_bucket{le=\"0.5\",target=\"q\\\"x\"} 1\n";
        let m = Metrics::parse(text).unwrap();
        assert_eq!(m.samples.len(), 5);
        assert_eq!(m.get("mirror_requests_captured_total", &[]), Some(12.0));
        assert_eq!(m.requests_captured(), 12);
        let outcomes = m.shadow_outcomes("http://a:1/p,q");
        assert_eq!(outcomes["2xx"], 10);
        assert_eq!(outcomes["share"], 2);
        assert_eq!(m.sum(SHADOW_REQUESTS, &[]), 12.0);
        assert_eq!(
            m.get("h_bucket", &[("target", "q\"x"), ("le", "+Inf")]),
            Some(3.0)
        );
        assert_eq!(m.targets(SHADOW_REQUESTS), ["http://a:1/p,q"]);
        assert_eq!(m.get(SHADOW_REQUESTS, &[]), None, "two samples match");
        assert_eq!(
            m.buckets("h", &[("target", "q\"x")]),
            [(0.5, 1.0), (f64::INFINITY, 3.0)]
        );
        assert_eq!(m.samples[1].label("outcome"), Some("2xx"));
        assert!(Metrics::parse("no_value\n").is_err());
    }
}
