//! The promotion gate: one rule that turns a target's compared exchanges
//! into pass, fail or inconclusive. The same code decides for `/verdict`
//! on one agent, for `mirror-agent verdict --metrics-addr` (which asks
//! that endpoint) and for `mirror-agent verdict --prometheus` (the fleet's
//! counts, summed from every agent's `mirror_compare_exchanges_total`);
//! only where the counts come from differs.
//!
//! The rule: a target passes when at least `min-compared` exchanges were
//! compared and the share that differs (noise is no difference, a failure
//! is one) is at most `max-differ`, and, when `max-endpoint-differ` is set,
//! every endpoint with at least `min-endpoint-compared` exchanges differs
//! at most that much (`other`, the endpoints past the agent's bound,
//! counts as one); it fails otherwise; with fewer than `min-compared`
//! exchanges it is inconclusive, whatever they say.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::judge::UNKNOWN_ENDPOINT;
use super::report::{CompareReport, RESULTS};

/// How many endpoints a verdict lists, the worst first.
pub const LISTED_ENDPOINTS: usize = 10;
/// What `/verdict` tells a client to wait before asking again when the
/// verdict is inconclusive (seconds).
pub const RETRY_AFTER_SECONDS: u64 = 30;

/// The rule's parameters. Defaults a team would pick for a first rollout:
/// at most 1 % differing over at least 500 exchanges, and no endpoint
/// with 100 exchanges or more differing on over 5 % of them (a regression
/// on one endpoint of many hides in the total).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Percent.
    #[serde(rename = "max_differ_percent")]
    pub max_differ: f64,
    pub min_compared: u64,
    /// Percent; `None`: endpoints are not judged one by one.
    #[serde(rename = "max_endpoint_differ_percent")]
    pub max_endpoint_differ: Option<f64>,
    pub min_endpoint_compared: u64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            max_differ: 1.0,
            min_compared: 500,
            max_endpoint_differ: Some(5.0),
            min_endpoint_compared: 100,
        }
    }
}

/// The names of the rule's parameters, the same as flags (`--max-differ`)
/// and as `/verdict`'s query parameters (`max-differ=1%`).
pub const PARAMETERS: [&str; 4] = [
    "max-differ",
    "min-compared",
    "max-endpoint-differ",
    "min-endpoint-compared",
];

impl Rule {
    /// Sets the parameter `name` from its text (`1%`, `500`, `off`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let count = |value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{name}: `{value}` is not a count of exchanges such as 500"))
        };
        match name {
            "max-differ" => {
                self.max_differ = parse_percent(value).map_err(|e| format!("{name}: {e}"))?
            }
            "min-compared" => self.min_compared = count(value)?,
            "max-endpoint-differ" => {
                self.max_endpoint_differ =
                    parse_limit(value).map_err(|e| format!("{name}: {e}"))?;
            }
            "min-endpoint-compared" => self.min_endpoint_compared = count(value)?,
            _ => {
                return Err(format!(
                    "unknown parameter `{name}` (known: target, {})",
                    PARAMETERS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `/verdict`'s query: the target and the rule (the defaults for what
    /// it does not name). Values may be percent-encoded or not (`1%` and
    /// `1%25` are the same).
    pub fn from_query(query: &str) -> Result<(String, Rule), String> {
        let mut rule = Rule::default();
        let mut target = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (decode_component(name), decode_component(value));
            if name == "target" {
                target = Some(value);
            } else {
                rule.set(&name, &value)?;
            }
        }
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or("the target is missing: /verdict?target=URL (as the agent names it)")?;
        Ok((target, rule))
    }

    /// The same parameters as a query string, each value encoded.
    pub fn to_query(&self) -> String {
        let endpoint = self
            .max_endpoint_differ
            .map_or("off".to_owned(), |p| format!("{p}%25"));
        format!(
            "max-differ={}%25&min-compared={}&max-endpoint-differ={endpoint}&min-endpoint-compared={}",
            self.max_differ, self.min_compared, self.min_endpoint_compared
        )
    }
}

/// `1%`, `0.5%` or a bare `1` (percent too), from 0 to 100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim()).trim();
    match number.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "`{text}` is not a percentage from 0% to 100% such as 1%"
        )),
    }
}

/// A percentage, or `off` for none.
pub fn parse_limit(text: &str) -> Result<Option<f64>, String> {
    match text.trim() {
        "off" | "none" => Ok(None),
        _ => parse_percent(text).map(Some),
    }
}

/// A limit that may be off: `--max-endpoint-differ 5%` or `off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit(pub Option<f64>);

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_limit(text).map(Limit)
    }
}

/// A query component: `%XX` decoded where XX is hex, a `%` without two
/// hex digits kept as it is (`max-differ=1%` as a person types it), `+`
/// a space.
fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compared exchanges by result, each exchange once: the names of
/// `mirror_compare_exchanges_total`'s `result` label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    #[serde(rename = "match")]
    pub matched: u64,
    pub noise: u64,
    pub failed: u64,
    pub status: u64,
    pub undecodable: u64,
    pub body: u64,
    pub header: u64,
}

impl Results {
    /// Adds `count` under `result` (a `result` label value); false for a
    /// name that is none.
    pub fn add(&mut self, result: &str, count: u64) -> bool {
        let slot = match result {
            "match" => &mut self.matched,
            "noise" => &mut self.noise,
            "failed" => &mut self.failed,
            "status" => &mut self.status,
            "undecodable" => &mut self.undecodable,
            "body" => &mut self.body,
            "header" => &mut self.header,
            _ => return false,
        };
        *slot += count;
        true
    }

    /// From `(result, count)` pairs such as
    /// [`PairCounts::results`](super::report::PairCounts::results).
    pub fn of(pairs: &[(&str, u64)]) -> Results {
        let mut results = Results::default();
        for (result, count) in pairs {
            results.add(result, *count);
        }
        results
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Results) {
        self.matched += other.matched;
        self.noise += other.noise;
        self.failed += other.failed;
        self.status += other.status;
        self.undecodable += other.undecodable;
        self.body += other.body;
        self.header += other.header;
    }

    pub fn differ(&self) -> u64 {
        self.failed + self.status + self.undecodable + self.body + self.header
    }

    pub fn compared(&self) -> u64 {
        self.matched + self.noise + self.differ()
    }
}

// Every result label has a slot.
const _: () = assert!(RESULTS.len() == 7);

/// What the rule says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Pass,
    Fail,
    Inconclusive,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pass => "pass",
            Decision::Fail => "fail",
            Decision::Inconclusive => "inconclusive",
        }
    }

    /// `mirror-agent verdict`'s exit status (3 is "cannot tell", outside
    /// any verdict).
    pub fn exit_code(self) -> u8 {
        match self {
            Decision::Pass => 0,
            Decision::Fail => 1,
            Decision::Inconclusive => 2,
        }
    }

    /// `/verdict`'s HTTP status: 2xx passes for every webhook-style gate.
    pub fn http_status(self) -> u16 {
        match self {
            Decision::Pass => 200,
            Decision::Fail => 412,
            Decision::Inconclusive => 503,
        }
    }
}

/// One endpoint as the verdict lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointVerdict {
    pub endpoint: String,
    pub compared: u64,
    pub differ: u64,
    pub differ_percent: Option<f64>,
    /// It had enough exchanges to be judged on its own.
    pub judged: bool,
    /// Judged, and differing over `max-endpoint-differ`.
    pub over_limit: bool,
}

/// The gate's answer: `/verdict`'s JSON body and `verdict --json`'s
/// output. Its keys are a contract with pipelines: add, never rename.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    pub target: String,
    pub verdict: Decision,
    /// One line a person reads in a pipeline's log.
    pub why: String,
    /// `agent` (one agent's counts) or `prometheus` (the fleet's).
    pub source: String,
    pub compared: u64,
    #[serde(rename = "match")]
    pub matched: u64,
    pub noise: u64,
    pub differ: u64,
    pub differ_percent: Option<f64>,
    pub results: Results,
    pub rule: Rule,
    /// The worst first (share differing, then volume), at most
    /// [`LISTED_ENDPOINTS`].
    pub endpoints: Vec<EndpointVerdict>,
    /// Pairs not compared, by reason (one agent's: Prometheus' fleet
    /// verdict has none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_compared: BTreeMap<String, u64>,
    /// The fleet's: the window the counts were summed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The fleet's: how many agents reported the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<u64>,
}

impl GateVerdict {
    /// `fail: http://v3:9000: 70 of 1500 compared differ (4.67 %, max 1 %); ...`
    pub fn line(&self) -> String {
        format!("{}: {}: {}", self.verdict.as_str(), self.target, self.why)
    }
}

/// Applies `rule` to a target's counts: in all (`total`), and per
/// endpoint (`endpoints`, whose results add up to `total`).
pub fn decide(
    target: &str,
    source: &str,
    total: Results,
    endpoints: &[(String, Results)],
    rule: &Rule,
) -> GateVerdict {
    let compared = total.compared();
    let differ = total.differ();
    let mut listed: Vec<EndpointVerdict> = endpoints
        .iter()
        .map(|(name, results)| {
            let (compared, differ) = (results.compared(), results.differ());
            let judged = rule.max_endpoint_differ.is_some()
                && compared >= rule.min_endpoint_compared
                && compared > 0;
            let over_limit = judged
                && rule
                    .max_endpoint_differ
                    .is_some_and(|max| over(differ, compared, max));
            EndpointVerdict {
                endpoint: name.clone(),
                compared,
                differ,
                differ_percent: percent(differ, compared),
                judged,
                over_limit,
            }
        })
        .filter(|e| e.compared > 0)
        .collect();
    // The worst first: over the limit, then the larger share (exactly,
    // without floats), then the more exchanges.
    listed.sort_by(|a, b| {
        b.over_limit
            .cmp(&a.over_limit)
            .then_with(|| {
                let a_share = u128::from(a.differ) * u128::from(b.compared);
                let b_share = u128::from(b.differ) * u128::from(a.compared);
                b_share.cmp(&a_share)
            })
            .then_with(|| b.compared.cmp(&a.compared))
            .then_with(|| a.endpoint.cmp(&b.endpoint))
    });
    listed.truncate(LISTED_ENDPOINTS);
    let worst_over = listed.iter().find(|e| e.over_limit).cloned();
    let in_all = format!(
        "{differ} of {compared} compared differ ({})",
        share(differ, compared)
    );
    let (verdict, why) = if compared < rule.min_compared {
        (
            Decision::Inconclusive,
            format!(
                "{compared} compared, the rule needs {} ({differ} differ so far)",
                rule.min_compared
            ),
        )
    } else if over(differ, compared, rule.max_differ) {
        let mut why = format!("{in_all}, over {}", percent_text(rule.max_differ));
        if let Some(worst) = listed.first().filter(|e| e.differ > 0) {
            why.push_str(&format!("; worst endpoint {}", endpoint_text(worst)));
        }
        (Decision::Fail, why)
    } else if let Some(worst) = worst_over {
        let max = rule.max_endpoint_differ.unwrap_or_default();
        (
            Decision::Fail,
            format!(
                "endpoint {}, over {} per endpoint; {in_all}",
                endpoint_text(&worst),
                percent_text(max)
            ),
        )
    } else {
        (
            Decision::Pass,
            format!("{in_all}, at most {}", percent_text(rule.max_differ)),
        )
    };
    GateVerdict {
        target: target.to_owned(),
        verdict,
        why,
        source: source.to_owned(),
        compared,
        matched: total.matched + total.noise,
        noise: total.noise,
        differ,
        differ_percent: percent(differ, compared),
        results: total,
        rule: *rule,
        endpoints: listed,
        not_compared: BTreeMap::new(),
        window: None,
        agents: None,
    }
}

/// The verdict of one agent's report on `target` (its name as the agent
/// gives it, a trailing `/` aside); `Err` with the names it knows when it
/// has no such target.
pub fn of_report(
    report: &CompareReport,
    target: &str,
    rule: &Rule,
) -> Result<GateVerdict, Vec<String>> {
    let wanted = target.trim_end_matches('/');
    let Some(found) = report
        .targets
        .iter()
        .find(|t| t.target.trim_end_matches('/') == wanted)
    else {
        return Err(report.targets.iter().map(|t| t.target.clone()).collect());
    };
    let endpoints: Vec<(String, Results)> = found
        .endpoints
        .iter()
        .filter(|e| e.endpoint != UNKNOWN_ENDPOINT)
        .map(|e| (e.endpoint.clone(), Results::of(&e.pairs.results())))
        .collect();
    let total = Results::of(&found.pairs.results());
    let mut verdict = decide(&found.target, "agent", total, &endpoints, rule);
    verdict.not_compared = found.pairs.not_compared.clone();
    Ok(verdict)
}

/// `differ` of `compared` is over `max` percent.
fn over(differ: u64, compared: u64, max: f64) -> bool {
    differ as f64 * 100.0 > max * compared as f64
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// `4.67 %`, `0.2 %`, `1 %`.
fn percent_text(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} %")
}

fn share(part: u64, whole: u64) -> String {
    percent(part, whole).map_or("no share".to_owned(), percent_text)
}

/// `GET /items/{id}: 70 of 300 (23.33 %)`.
fn endpoint_text(endpoint: &EndpointVerdict) -> String {
    format!(
        "{}: {} of {} ({})",
        endpoint.endpoint,
        endpoint.differ,
        endpoint.compared,
        share(endpoint.differ, endpoint.compared)
    )
}

#[cfg(test)]
mod tests;
