//! The periodic summary line and the "drops started / stopped" events that
//! an SRE tailing the log relies on. Nothing is logged per request here: one
//! line per interval, and one event each time a kind of loss starts or stops.

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::metrics::{Sources, TargetSnapshot};

/// Outcomes of a target that mean "sent": response status classes.
fn is_sent(outcome: &str) -> bool {
    matches!(outcome, "1xx" | "2xx" | "3xx" | "4xx" | "5xx")
}

/// Everything compared from one interval to the next.
#[derive(Default)]
struct Totals {
    captured: u64,
    /// Losses by `stage/reason` (capture skips and per-target drops).
    losses: BTreeMap<String, u64>,
    sent: BTreeMap<String, u64>,
}

fn totals(sources: &Sources) -> Totals {
    let stats = sources.pipeline.get();
    let mut totals = Totals {
        captured: stats.http.requests,
        ..Totals::default()
    };
    if let Some(kernel) = &sources.kernel
        && let Ok(counters) = kernel.read()
    {
        let lost = counters.get(mirror_common::Counter::RecordsLost);
        if lost > 0 {
            totals.losses.insert("kernel/ring_full".to_owned(), lost);
        }
    }
    for (reason, count) in stats.http.dropped.iter() {
        // A join mid-connection is expected right after start, not a loss
        // worth an alarm; it is still in the metrics.
        if count > 0 && reason != crate::http::DropReason::MidstreamJoin {
            totals
                .losses
                .insert(format!("capture/{}", reason.as_str()), count);
        }
    }
    for TargetSnapshot { name, outcomes, .. } in (sources.targets)() {
        let mut sent = 0;
        for (outcome, count) in outcomes {
            if is_sent(outcome) {
                sent += count;
            } else if is_drop(outcome) && count > 0 {
                totals.losses.insert(format!("{name}/{outcome}"), count);
            }
        }
        totals.sent.insert(name, sent);
    }
    totals
}

/// Filter outcomes are choices, not losses; everything else that is not a
/// status class is a drop.
fn is_drop(outcome: &str) -> bool {
    !is_sent(outcome) && !matches!(outcome, "share" | "header" | "method" | "path" | "loop")
}

/// Logs a summary every `interval` until the task is dropped.
pub async fn run(sources: Sources, interval: std::time::Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    let mut previous = totals(&sources);
    let mut losing: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        ticker.tick().await;
        let now = totals(&sources);
        let seconds = interval.as_secs_f64().max(0.001);
        let captured = now.captured.saturating_sub(previous.captured);
        let sent: Vec<String> = now
            .sent
            .iter()
            .map(|(target, total)| {
                let delta = total.saturating_sub(*previous.sent.get(target).unwrap_or(&0));
                format!("{target}={:.1}/s", delta as f64 / seconds)
            })
            .collect();
        let mut dropped = Vec::new();
        for (what, total) in &now.losses {
            let delta = total.saturating_sub(*previous.losses.get(what).unwrap_or(&0));
            let was_losing = losing.get(what).copied().unwrap_or(false);
            if delta > 0 {
                dropped.push(format!("{what}={delta}"));
                if !was_losing {
                    warn!(loss = %what, count = delta, "requests dropped: {what}");
                }
            } else if was_losing {
                info!(loss = %what, "drops stopped: {what}");
            }
            losing.insert(what.clone(), delta > 0);
        }
        info!(
            captured_per_s = format!("{:.1}", captured as f64 / seconds),
            captured_total = now.captured,
            sent = sent.join(" "),
            dropped = if dropped.is_empty() {
                "none".to_owned()
            } else {
                dropped.join(" ")
            },
            "summary"
        );
        previous = now;
    }
}
