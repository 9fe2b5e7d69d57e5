//! The periodic summary line and the "drops started / stopped" events that
//! an SRE tailing the log relies on. Nothing is logged per request here: one
//! line per interval, and one event each time a kind of loss starts or stops.
//!
//! [`LossTracker`] is the logic (pure: totals in, events out); [`run`] is
//! the loop that reads the totals from the metrics sources and logs.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use super::{Sources, TargetSnapshot};
use crate::http::SkipReason;
use crate::shadow::DropReason;

/// Everything compared from one interval to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests reassembled from the capture.
    pub captured: u64,
    /// Losses by `stage/reason` (kernel, capture skips, per-target drops).
    pub losses: BTreeMap<String, u64>,
    /// Requests answered, by target.
    pub sent: BTreeMap<String, u64>,
}

/// Reads the totals from where the metrics read them.
pub fn totals(sources: &Sources) -> Totals {
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
        if count > 0 && reason != SkipReason::MidstreamJoin {
            totals
                .losses
                .insert(format!("capture/{}", reason.as_str()), count);
        }
    }
    for target in (sources.targets)() {
        add_target(&mut totals, target);
    }
    totals
}

fn add_target(totals: &mut Totals, target: TargetSnapshot) {
    // Filters are choices of the configuration, not losses.
    for reason in DropReason::ALL {
        let count = target.stats.dropped_by(reason);
        if count > 0 {
            totals
                .losses
                .insert(format!("{}/{reason}", target.name), count);
        }
    }
    totals.sent.insert(target.name, target.stats.sent_total());
}

/// A kind of loss began or ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LossEvent {
    /// `what` lost `count` requests in an interval after one without.
    Started { what: String, count: u64 },
    /// `what` lost nothing for a whole interval; `lost` requests in all
    /// since it started.
    Stopped { what: String, lost: u64 },
}

/// One interval, compared with the one before.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interval {
    /// Requests captured in the interval.
    pub captured: u64,
    pub captured_total: u64,
    /// Requests sent per target in the interval.
    pub sent: Vec<(String, u64)>,
    /// Losses in the interval, by kind (only those with some).
    pub dropped: Vec<(String, u64)>,
    pub events: Vec<LossEvent>,
}

/// Follows the totals from interval to interval and says when a kind of
/// loss starts (it lost something in an interval after one without) and
/// stops (an interval without loss after one with). Counters that go back
/// (a target replaced by a reload starts from zero) count as no loss.
#[derive(Debug)]
pub struct LossTracker {
    previous: Totals,
    /// Kinds of loss now losing, with their total when they started.
    losing: BTreeMap<String, u64>,
}

impl LossTracker {
    /// Starts from `first`: what was lost before does not count.
    pub fn new(first: Totals) -> Self {
        Self {
            previous: first,
            losing: BTreeMap::new(),
        }
    }

    pub fn observe(&mut self, now: Totals) -> Interval {
        let previous = std::mem::replace(&mut self.previous, now);
        let now = &self.previous;
        let delta = |total: u64, before: Option<&u64>| total.saturating_sub(*before.unwrap_or(&0));
        let mut interval = Interval {
            captured: delta(now.captured, Some(&previous.captured)),
            captured_total: now.captured,
            ..Interval::default()
        };
        for (target, total) in &now.sent {
            interval
                .sent
                .push((target.clone(), delta(*total, previous.sent.get(target))));
        }
        for (what, total) in &now.losses {
            let lost = delta(*total, previous.losses.get(what));
            if lost > 0 {
                interval.dropped.push((what.clone(), lost));
                if !self.losing.contains_key(what) {
                    let before = total - lost;
                    self.losing.insert(what.clone(), before);
                    interval.events.push(LossEvent::Started {
                        what: what.clone(),
                        count: lost,
                    });
                }
            }
        }
        // Losing before, and nothing in this interval (or gone altogether:
        // a target removed by a reload).
        let stopped: Vec<String> = self
            .losing
            .keys()
            .filter(|what| !interval.dropped.iter().any(|(w, _)| w == *what))
            .cloned()
            .collect();
        for what in stopped {
            let at_start = self.losing.remove(&what).unwrap_or(0);
            let total = now.losses.get(&what).copied().unwrap_or(at_start);
            interval.events.push(LossEvent::Stopped {
                what,
                lost: total.saturating_sub(at_start),
            });
        }
        interval
    }
}

/// Logs a summary every `interval` until the task is dropped.
pub async fn run(sources: Sources, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    let mut tracker = LossTracker::new(totals(&sources));
    let seconds = interval.as_secs_f64().max(0.001);
    loop {
        ticker.tick().await;
        let summary = tracker.observe(totals(&sources));
        for event in &summary.events {
            match event {
                LossEvent::Started { what, count } => {
                    warn!(loss = %what, count, "drops started: {what}");
                }
                LossEvent::Stopped { what, lost } => {
                    info!(loss = %what, lost, "drops stopped: {what}");
                }
            }
        }
        let rate = |n: u64| format!("{:.1}", n as f64 / seconds);
        let list = |items: &[(String, u64)], per_second: bool| -> String {
            if items.is_empty() {
                return "none".to_owned();
            }
            items
                .iter()
                .map(|(what, n)| {
                    if per_second {
                        format!("{what}={}/s", rate(*n))
                    } else {
                        format!("{what}={n}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        info!(
            captured_per_s = rate(summary.captured),
            captured_total = summary.captured_total,
            sent = list(&summary.sent, true),
            dropped = list(&summary.dropped, false),
            "summary"
        );
        if let Some(engine) = &sources.compare {
            for line in engine.verdict_lines() {
                info!("comparison: {line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(captured: u64, losses: &[(&str, u64)]) -> Totals {
        Totals {
            captured,
            losses: losses.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            sent: BTreeMap::new(),
        }
    }

    fn started(what: &str, count: u64) -> LossEvent {
        LossEvent::Started {
            what: what.into(),
            count,
        }
    }

    fn stopped(what: &str, lost: u64) -> LossEvent {
        LossEvent::Stopped {
            what: what.into(),
            lost,
        }
    }

    #[test]
    fn a_loss_starts_once_and_stops_after_a_quiet_interval() {
        let mut t = LossTracker::new(totals(0, &[]));
        assert_eq!(t.observe(totals(10, &[])).events, []);
        let i = t.observe(totals(20, &[("v2/queue_full", 3)]));
        assert_eq!(i.events, [started("v2/queue_full", 3)]);
        assert_eq!(i.dropped, [("v2/queue_full".to_owned(), 3)]);
        assert_eq!(i.captured, 10);
        // Still losing: no new event.
        let i = t.observe(totals(30, &[("v2/queue_full", 10)]));
        assert_eq!(i.events, []);
        assert_eq!(i.dropped, [("v2/queue_full".to_owned(), 7)]);
        // A quiet interval ends it, with what it lost in all.
        let i = t.observe(totals(40, &[("v2/queue_full", 10)]));
        assert_eq!(i.events, [stopped("v2/queue_full", 10)]);
        assert!(i.dropped.is_empty());
        assert_eq!(t.observe(totals(50, &[("v2/queue_full", 10)])).events, []);
        // And it can start again.
        let i = t.observe(totals(60, &[("v2/queue_full", 11)]));
        assert_eq!(i.events, [started("v2/queue_full", 1)]);
    }

    #[test]
    fn losses_before_the_start_do_not_count() {
        let mut t = LossTracker::new(totals(5, &[("kernel/ring_full", 100)]));
        assert_eq!(
            t.observe(totals(6, &[("kernel/ring_full", 100)])).events,
            []
        );
    }

    #[test]
    fn kinds_of_loss_are_followed_apart() {
        let mut t = LossTracker::new(totals(0, &[]));
        let i = t.observe(totals(0, &[("v2/connect_refused", 4), ("v3/timeout", 1)]));
        assert_eq!(
            i.events,
            [started("v2/connect_refused", 4), started("v3/timeout", 1)]
        );
        let i = t.observe(totals(0, &[("v2/connect_refused", 9), ("v3/timeout", 1)]));
        assert_eq!(i.events, [stopped("v3/timeout", 1)]);
        let i = t.observe(totals(0, &[("v2/connect_refused", 9), ("v3/timeout", 1)]));
        assert_eq!(i.events, [stopped("v2/connect_refused", 9)]);
    }

    #[test]
    fn a_target_gone_or_restarted_ends_its_losses_without_a_false_start() {
        let mut t = LossTracker::new(totals(0, &[]));
        t.observe(totals(0, &[("v2/timeout", 5)]));
        // Removed by a reload: its counters are gone.
        let i = t.observe(totals(0, &[]));
        assert_eq!(i.events, [stopped("v2/timeout", 0)]);
        // Back with fresh counters, lower than before: a delta of the new
        // total against nothing.
        let i = t.observe(totals(0, &[("v2/timeout", 2)]));
        assert_eq!(i.events, [started("v2/timeout", 2)]);
        let i = t.observe(totals(0, &[("v2/timeout", 2)]));
        assert_eq!(i.events, [stopped("v2/timeout", 2)]);
    }

    #[test]
    fn sent_outcomes_and_filters_are_not_losses() {
        use crate::route::FilterReason;
        use crate::shadow::{StatusClass, TargetStats};
        use std::time::Duration;

        let stats = TargetStats::default();
        for class in [
            StatusClass::Success,
            StatusClass::Success,
            StatusClass::ServerError,
        ] {
            stats.sent_one(class, Duration::from_millis(1));
        }
        stats.filter(FilterReason::Share);
        stats.filter(FilterReason::DryRun);
        stats.drop_one(DropReason::QueueFull);
        stats.drop_one(DropReason::QueueFull);
        let mut totals = Totals::default();
        add_target(
            &mut totals,
            TargetSnapshot {
                name: "v2".into(),
                stats: stats.snapshot(),
            },
        );
        assert_eq!(totals.sent["v2"], 3);
        assert_eq!(
            totals.losses.into_iter().collect::<Vec<_>>(),
            [("v2/queue_full".to_owned(), 2)]
        );
    }
}
