//! Operating the agent from the outside, as an SRE would: its accounting
//! identities read from a scrape, its JSON log events and what it leaves
//! attached to the interface.
//!
//! The identities (every test that moves traffic checks them):
//! * per shadow target, `captured = sent + filtered + dropped` once nothing
//!   is queued or in flight (`+ queued + in flight` while traffic flows);
//! * in the kernel, `records matched = emitted + lost`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{SchedClassifier, TcAttachType};
use mirror_agent::route::FilterReason;
use mirror_agent::shadow::{DropReason, StatusClass};
use serde_json::Value;

use mirror_testkit::{Agent, Metrics, Netns, metrics::SHADOW_CAPTURED};

/// One target's accounting in a scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetAccount {
    pub captured: u64,
    /// Answered, any status class.
    pub sent: u64,
    pub filtered: u64,
    pub dropped: u64,
    pub queued: u64,
    pub in_flight: u64,
}

impl TargetAccount {
    /// Reads `target` (its label) from a scrape; fails if it is absent.
    pub fn of(metrics: &Metrics, target: &str) -> Result<Self> {
        let labels = [("target", target)];
        let captured = metrics
            .get(SHADOW_CAPTURED, &labels)
            .with_context(|| format!("no {SHADOW_CAPTURED} for {target}"))?;
        let mut account = Self {
            captured: captured as u64,
            queued: metrics
                .get("mirror_shadow_queue_depth", &labels)
                .unwrap_or(0.0) as u64,
            in_flight: metrics
                .get("mirror_shadow_in_flight", &labels)
                .unwrap_or(0.0) as u64,
            ..Self::default()
        };
        for (outcome, count) in metrics.shadow_outcomes(target) {
            let slot = if StatusClass::ALL.iter().any(|c| c.as_str() == outcome) {
                &mut account.sent
            } else if FilterReason::ALL.iter().any(|r| r.as_str() == outcome) {
                &mut account.filtered
            } else if DropReason::ALL.iter().any(|r| r.as_str() == outcome) {
                &mut account.dropped
            } else {
                bail!("{target}: unknown outcome `{outcome}`");
            };
            *slot += count;
        }
        Ok(account)
    }

    /// `captured = sent + filtered + dropped + queued + in flight`.
    pub fn balances(&self) -> bool {
        self.captured == self.sent + self.filtered + self.dropped + self.queued + self.in_flight
    }

    /// Nothing on its way, and `captured = sent + filtered + dropped`.
    pub fn settled(&self) -> bool {
        self.queued == 0 && self.in_flight == 0 && self.balances()
    }
}

/// The kernel's ring records in a scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelAccount {
    pub matched: u64,
    pub emitted: u64,
    pub lost: u64,
}

impl KernelAccount {
    pub fn of(metrics: &Metrics) -> Result<Self> {
        let get = |outcome: &str| {
            metrics
                .get("mirror_kernel_records_total", &[("outcome", outcome)])
                .map(|v| v as u64)
                .with_context(|| format!("no mirror_kernel_records_total{{outcome={outcome:?}}}"))
        };
        let account = Self {
            matched: get("matched")?,
            emitted: get("emitted")?,
            lost: get("lost")?,
        };
        let lost_total = metrics
            .get("mirror_kernel_records_lost_total", &[])
            .context("no mirror_kernel_records_lost_total")? as u64;
        ensure!(
            lost_total == account.lost,
            "mirror_kernel_records_lost_total {lost_total} != records lost {}",
            account.lost
        );
        Ok(account)
    }

    pub fn balances(&self) -> bool {
        self.matched == self.emitted + self.lost
    }
}

/// Every target label of a scrape (from `mirror_shadow_captured_total`).
pub fn targets(metrics: &Metrics) -> Vec<String> {
    metrics.targets(SHADOW_CAPTURED)
}

/// Checks both identities, exactly, on a scrape taken once traffic
/// stopped: every target settled, the kernel balanced.
pub fn check_identities(metrics: &Metrics) -> Result<()> {
    let kernel = KernelAccount::of(metrics)?;
    ensure!(
        kernel.balances(),
        "kernel: records matched {} != emitted {} + lost {}",
        kernel.matched,
        kernel.emitted,
        kernel.lost
    );
    for target in targets(metrics) {
        let account = TargetAccount::of(metrics, &target)?;
        ensure!(
            account.settled(),
            "{target}: captured != sent + filtered + dropped (nothing queued or in flight): \
             {account:?}"
        );
    }
    Ok(())
}

/// Scrapes until the identities hold and nothing moves any more (two
/// scrapes in a row with the same captured counts and kernel records), at
/// most `timeout`; returns the last scrape. The error says which identity
/// did not hold.
pub fn settle(netns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<Metrics> {
    let deadline = Instant::now() + timeout;
    let mut previous: Option<(u64, u64)> = None;
    loop {
        let metrics = Metrics::scrape(netns, addr)?;
        let checked = check_identities(&metrics);
        let now = (
            metrics.requests_captured(),
            KernelAccount::of(&metrics).map_or(0, |k| k.matched),
        );
        if checked.is_ok() && previous == Some(now) {
            return Ok(metrics);
        }
        if Instant::now() >= deadline {
            return checked
                .and_then(|()| bail!("still moving after {timeout:?}: {now:?} then {previous:?}"))
                .with_context(|| format!("the agent's accounting did not settle in {timeout:?}"));
        }
        previous = Some(now);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's stderr, every line parsed as a JSON object with a
/// timestamp, a level and a message; fails naming the first line that is
/// not.
pub fn json_events(agent: &Agent) -> Result<Vec<Value>> {
    agent
        .stderr_lines()
        .iter()
        .map(|line| parse_event(line))
        .collect()
}

/// One log line as a JSON event.
pub fn parse_event(line: &str) -> Result<Value> {
    let event: Value =
        serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
    for key in ["timestamp", "level", "message"] {
        ensure!(
            event.get(key).is_some_and(Value::is_string),
            "no string `{key}` in {line}"
        );
    }
    Ok(event)
}

/// The `message` of an event.
pub fn message(event: &Value) -> &str {
    event.get("message").and_then(Value::as_str).unwrap_or("")
}

/// A string field of an event.
pub fn field<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event.get(name).and_then(Value::as_str)
}

/// Waits until the agent logged an event for which `wanted` holds (the
/// events so far included); returns it.
pub fn wait_for_event(
    agent: &Agent,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = json_events(agent)?;
        if let Some(event) = events.iter().find(|e| wanted(e)) {
            return Ok(event.clone());
        }
        if Instant::now() >= deadline {
            let messages: Vec<&str> = events.iter().map(message).collect();
            bail!("no {what} logged within {timeout:?}; messages: {messages:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Names of the programs attached via TCX to the ingress of `iface` in
/// `netns` (aya's `query_tcx`).
pub fn tcx_programs(netns: &Netns, iface: &str) -> Result<Vec<String>> {
    netns
        .run(|| {
            SchedClassifier::query_tcx(iface, TcAttachType::Ingress)
                .map(|(_, programs)| {
                    programs
                        .iter()
                        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        })
        .map_err(|e| anyhow::anyhow!("query_tcx on {iface}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
mirror_kernel_records_total{outcome=\"matched\"} 10
mirror_kernel_records_total{outcome=\"emitted\"} 9
mirror_kernel_records_total{outcome=\"lost\"} 1
mirror_kernel_records_lost_total 1
mirror_shadow_captured_total{target=\"v2\"} 12
mirror_shadow_requests_total{target=\"v2\",outcome=\"2xx\"} 8
mirror_shadow_requests_total{target=\"v2\",outcome=\"5xx\"} 1
mirror_shadow_requests_total{target=\"v2\",outcome=\"share\"} 1
mirror_shadow_requests_total{target=\"v2\",outcome=\"queue_full\"} 1
mirror_shadow_queue_depth{target=\"v2\"} 1
mirror_shadow_in_flight{target=\"v2\"} 0
";

    #[test]
    fn accounts_read_sent_filtered_dropped_and_what_is_on_its_way() {
        let metrics = Metrics::parse(SCRAPE).unwrap();
        let v2 = TargetAccount::of(&metrics, "v2").unwrap();
        assert_eq!(
            v2,
            TargetAccount {
                captured: 12,
                sent: 9,
                filtered: 1,
                dropped: 1,
                queued: 1,
                in_flight: 0
            }
        );
        assert!(v2.balances() && !v2.settled());
        assert!(KernelAccount::of(&metrics).unwrap().balances());
        assert_eq!(targets(&metrics), ["v2"]);
        let err = check_identities(&metrics).unwrap_err().to_string();
        assert!(err.contains("v2: captured != sent"), "{err}");
        let settled = SCRAPE.replace(
            "queue_depth{target=\"v2\"} 1",
            "queue_depth{target=\"v2\"} 0",
        );
        let settled = settled.replace(
            "captured_total{target=\"v2\"} 12",
            "captured_total{target=\"v2\"} 11",
        );
        check_identities(&Metrics::parse(&settled).unwrap()).unwrap();
    }

    #[test]
    fn log_lines_must_be_json_events() {
        let event = parse_event(
            r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","message":"capture attached","iface":"veth-s"}"#,
        )
        .unwrap();
        assert_eq!(message(&event), "capture attached");
        assert_eq!(field(&event, "iface"), Some("veth-s"));
        assert!(parse_event("INFO capture attached").is_err());
        assert!(parse_event(r#"{"level":"INFO"}"#).is_err());
    }
}
