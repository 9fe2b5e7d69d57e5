//! The fleet's counts for the gate, from Prometheus' HTTP API: every
//! agent's `mirror_compare_exchanges_total` for one target, increased over
//! a window and summed over the agents.
//!
//! Not PromQL's `increase()`: it extrapolates to the window's edges and
//! loses the first sample of a series born inside the window (an agent
//! started, an endpoint first seen), so its sums are neither integers nor
//! exact. Here the raw samples are read (the window and a lookback before
//! it) and each series' increase is counted from them: from the last
//! sample before the window (0 for a series born in it), every rise
//! added, a fall read as a restart (the counter began again from 0).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::http_get::get;
use crate::compare::gate::Results;

/// The family the gate reads.
pub const FAMILY: &str = "mirror_compare_exchanges_total";
/// How far before the window a series' last sample is looked for: its
/// value there is where the window's increase starts (Prometheus' own
/// staleness horizon).
const LOOKBACK: Duration = Duration::from_secs(300);

/// One target's counts across the fleet.
#[derive(Debug, Default, PartialEq)]
pub struct FleetCounts {
    pub total: Results,
    /// Per endpoint label (the same template names on every agent).
    pub endpoints: Vec<(String, Results)>,
    /// Agents (distinct series apart from endpoint and result) that
    /// reported the target in the window.
    pub agents: u64,
}

/// What Prometheus knows of `target` over `window` (series matched by
/// `selector` too); `Ok(Err(targets))` when it has no series for it, with
/// the targets it has.
pub fn fleet_counts(
    prometheus: &str,
    target: &str,
    selector: &str,
    window: Duration,
) -> anyhow::Result<Result<FleetCounts, Vec<String>>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let now = (now * 1000.0).floor() / 1000.0;
    let extra = matchers(selector);
    let query = format!(
        "{FAMILY}{{target=\"{}\"{extra}}}[{}s]",
        promql_string(target),
        (window + LOOKBACK).as_secs()
    );
    let series = query_api(prometheus, &query, now)?;
    let start = now - window.as_secs_f64();
    let counts = sum_increases(&series, start);
    if counts.agents > 0 {
        return Ok(Ok(counts));
    }
    // Nothing for it: say which targets there are.
    let known = format!(
        "count by (target) (last_over_time({FAMILY}{{{}}}[{}s]))",
        extra.trim_start_matches(','),
        (window + LOOKBACK).as_secs()
    );
    let targets = query_api(prometheus, &known, now)?
        .iter()
        .filter_map(|s| s.labels.get("target").cloned())
        .collect();
    Ok(Err(targets))
}

/// One series of a query's answer: its labels and its samples (time in
/// seconds, value), oldest first.
#[derive(Debug, Default, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

/// Adds up each series' increase after `start`, per endpoint and result.
pub fn sum_increases(series: &[Series], start: f64) -> FleetCounts {
    let mut endpoints: BTreeMap<String, Results> = BTreeMap::new();
    let mut agents = BTreeSet::new();
    for one in series {
        let (Some(endpoint), Some(result)) = (one.labels.get("endpoint"), one.labels.get("result"))
        else {
            continue;
        };
        let mut previous = one
            .samples
            .iter()
            .take_while(|(at, _)| *at <= start)
            .last()
            .map_or(0.0, |(_, value)| *value);
        let mut increase = 0.0;
        let mut seen = false;
        for (_, value) in one.samples.iter().filter(|(at, _)| *at > start) {
            seen = true;
            increase += if *value >= previous {
                value - previous
            } else {
                *value
            };
            previous = *value;
        }
        if !seen {
            continue;
        }
        let agent: Vec<(&String, &String)> = one
            .labels
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "__name__" | "endpoint" | "result"))
            .collect();
        agents.insert(format!("{agent:?}"));
        endpoints
            .entry(endpoint.clone())
            .or_default()
            .add(result, increase.round() as u64);
    }
    let mut total = Results::default();
    for results in endpoints.values() {
        total.merge(results);
    }
    FleetCounts {
        total,
        endpoints: endpoints.into_iter().collect(),
        agents: agents.len() as u64,
    }
}

/// `job="mirror",env="prod"` or `{job="mirror"}` → `,job="mirror"`
/// (appended to the target's matcher); empty for none.
fn matchers(selector: &str) -> String {
    let inner = selector
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim()
        .trim_matches(',');
    if inner.is_empty() {
        String::new()
    } else {
        format!(",{inner}")
    }
}

/// A PromQL double-quoted string's content.
fn promql_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /api/v1/query` at `time`: its vector or matrix as series.
fn query_api(prometheus: &str, query: &str, time: f64) -> anyhow::Result<Vec<Series>> {
    let path = format!("/api/v1/query?query={}&time={time:.3}", url_encode(query));
    let got = get(prometheus, &path, "Prometheus")?;
    let answer: Value = serde_json::from_str(&got.body).with_context(|| {
        format!(
            "Prometheus at {prometheus} answered {} without its API's JSON: {}",
            got.status,
            got.body.chars().take(200).collect::<String>()
        )
    })?;
    if answer["status"] != "success" {
        bail!(
            "Prometheus refused the query `{query}`: {} ({})",
            answer["error"].as_str().unwrap_or("no reason given"),
            answer["errorType"].as_str().unwrap_or("error")
        );
    }
    parse_series(&answer["data"]).with_context(|| format!("the answer to `{query}`"))
}

/// `data` of a query's answer: a matrix (`values`) or a vector (`value`).
fn parse_series(data: &Value) -> anyhow::Result<Vec<Series>> {
    let sample = |pair: &Value| -> anyhow::Result<(f64, f64)> {
        let at = pair[0].as_f64().context("a sample without its time")?;
        let value = pair[1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .context("a sample without a number")?;
        Ok((at, value))
    };
    let Some(result) = data["result"].as_array() else {
        bail!("no result in {data}");
    };
    result
        .iter()
        .map(|one| {
            let labels = one["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let samples = match (one["values"].as_array(), one.get("value")) {
                (Some(values), _) => values.iter().map(sample).collect::<anyhow::Result<_>>()?,
                (None, Some(value)) => vec![sample(value)?],
                (None, None) => Vec::new(),
            };
            Ok(Series { labels, samples })
        })
        .collect()
}

/// Percent-encodes all but the unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `--window`: `90s`, `10m`, `2h`, `1d`.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a window such as 90s, 10m, 2h or 1d");
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => return Err(bad()),
    };
    if seconds == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(instance: &str, endpoint: &str, result: &str, samples: &[(f64, f64)]) -> Series {
        let labels = [
            ("__name__", FAMILY),
            ("instance", instance),
            ("target", "http://v3:9000"),
            ("endpoint", endpoint),
            ("result", result),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        Series {
            labels,
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn increases_are_exact_across_births_and_restarts() {
        let all = [
            // Before the window at 10, then 10 more.
            series(
                "a",
                "GET /x",
                "match",
                &[(90.0, 10.0), (110.0, 15.0), (120.0, 20.0)],
            ),
            // Born in the window: every one of its 7 counts.
            series("b", "GET /x", "body", &[(105.0, 3.0), (115.0, 7.0)]),
            // A restart in the window: 4 before it, then 5 after.
            series(
                "c",
                "GET /x",
                "match",
                &[(95.0, 30.0), (105.0, 34.0), (115.0, 5.0)],
            ),
            // Nothing in the window: no agent, nothing counted.
            series("d", "GET /y", "match", &[(50.0, 99.0)]),
        ];
        let counts = sum_increases(&all, 100.0);
        assert_eq!(counts.agents, 3);
        assert_eq!(counts.total.matched, 10 + 9);
        assert_eq!(counts.total.body, 7);
        assert_eq!(counts.endpoints.len(), 1);
        assert_eq!(counts.endpoints[0].0, "GET /x");
    }

    #[test]
    fn the_selector_and_the_target_are_written_as_promql() {
        assert_eq!(matchers(""), "");
        assert_eq!(matchers("{job=\"mirror\"}"), ",job=\"mirror\"");
        assert_eq!(matchers("job=\"m\",env=\"p\""), ",job=\"m\",env=\"p\"");
        assert_eq!(promql_string("a\"b\\"), "a\\\"b\\\\");
        assert_eq!(
            url_encode("a{b=\"c d\"}[5s]"),
            "a%7Bb%3D%22c%20d%22%7D%5B5s%5D"
        );
    }

    #[test]
    fn windows_have_a_unit() {
        assert_eq!(parse_window("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_window("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_window("10").is_err());
        assert!(parse_window("0m").is_err());
        assert!(parse_window("ten").is_err());
    }

    #[test]
    fn a_matrix_and_a_vector_read_as_series() {
        let data: Value = serde_json::from_str(
            r#"{"resultType":"matrix","result":[{"metric":{"target":"t"},"values":[[1.5,"2"],[3,"4"]]}]}"#,
        )
        .unwrap();
        let read = parse_series(&data).unwrap();
        assert_eq!(read[0].samples, [(1.5, 2.0), (3.0, 4.0)]);
        let data: Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{"target":"t"},"value":[1,"7"]}]}"#,
        )
        .unwrap();
        assert_eq!(parse_series(&data).unwrap()[0].samples, [(1.0, 7.0)]);
    }
}
