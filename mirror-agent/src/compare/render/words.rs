//! The report in words, the same in every rendering: the one-line
//! verdict per target (the periodic summary, the final counts, the
//! terminal), the verdict's word, percentages and latencies as text.

use std::fmt::Write as _;

use crate::compare::report::{LatencyReport, PairCounts, Percentiles, TargetReport};
use crate::compare::verdict::Role;

/// `matches v1`, `differs`, or `nothing compared`.
pub fn verdict_word(target: &TargetReport) -> &'static str {
    if target.pairs.compared == 0 {
        "nothing compared"
    } else if target.pairs.differ == 0 {
        "matches v1"
    } else {
        "differs"
    }
}

/// `part` of `whole` as a percentage with one decimal, never rounded to
/// 0 or 100 unless it is: 1 differ in 10 000 reads `99.9`, not `100.0`.
pub fn percent_text(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    let tenths = (part as f64 * 1000.0 / whole as f64).round() as u64;
    let tenths = if part > 0 && part < whole {
        tenths.clamp(1, 999)
    } else {
        tenths
    };
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// One line per target, for the periodic summary and the final counts:
/// `v3 (candidate): 812 compared, 74.1 % match, 210 differ (status 120,
/// body 90), 3 not compared (timeout 3); most differing: POST
/// /orders/{id} 40.0 % of 100`.
pub fn verdict_line(target: &TargetReport) -> String {
    let pairs = &target.pairs;
    let mut line = format!("{} ({}): ", target.target, target.role.as_str());
    if pairs.compared == 0 {
        line.push_str("nothing compared yet");
    } else {
        let _ = write!(
            line,
            "{} compared, {} % match, {} differ",
            pairs.compared,
            percent_text(pairs.matched, pairs.compared),
            pairs.differ
        );
        if pairs.differ > 0 && target.role == Role::Baseline {
            // A baseline is v1's own version: what it differs in is noise,
            // kept out of the candidates' verdicts.
            let mut noisy: Vec<&str> = Vec::new();
            for field in target.endpoints.iter().flat_map(|e| &e.fields) {
                if !noisy.contains(&field.path.as_str()) && noisy.len() < 3 {
                    noisy.push(&field.path);
                }
            }
            let _ = write!(
                line,
                " (noise, kept out of the verdicts: {})",
                noisy.join(", ")
            );
        } else if pairs.differ > 0 {
            let _ = write!(line, " ({})", pairs.kinds.describe());
        }
    }
    if let Some(not_compared) = not_compared_text(pairs) {
        let _ = write!(line, ", {not_compared}");
    }
    if let Some(top) = target.endpoints.iter().find(|e| e.pairs.differ > 0) {
        let _ = write!(
            line,
            "; most differing: {} {} % of {}",
            top.endpoint,
            percent_text(top.pairs.differ, top.pairs.compared),
            top.pairs.compared
        );
    }
    line
}

/// `3 not compared (timeout 2, unpaired 1)`: the reasons that occurred,
/// if any pair was not compared.
pub fn not_compared_text(pairs: &PairCounts) -> Option<String> {
    let total = pairs.not_compared_total();
    let reasons: Vec<String> = pairs
        .not_compared
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    (total > 0).then(|| format!("{total} not compared ({})", reasons.join(", ")))
}

/// `latency p50 / p99: v1 1.2 / 8.0 ms · target 1.5 / 9.3 ms`, if any.
pub fn latency_text(latency: &LatencyReport) -> Option<String> {
    let side = |name: &str, p: &Percentiles| {
        Some(format!(
            "{name} {} / {} ms",
            format_ms(p.p50?),
            format_ms(p.p99?)
        ))
    };
    let sides: Vec<String> = [side("v1", &latency.v1), side("target", &latency.target)]
        .into_iter()
        .flatten()
        .collect();
    (!sides.is_empty()).then(|| format!("latency p50 / p99: {}", sides.join(" · ")))
}

/// Milliseconds with the precision they deserve: `0.35`, `12.4`, `340`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::report::Report;
    use crate::compare::report::tests::known_report;
    use crate::compare::verdict::{Difference, Kind, Verdict};

    #[test]
    fn the_verdict_line_says_counts_kinds_reasons_and_the_worst_endpoint() {
        let mut report = known_report();
        let differ = Verdict::Differ(vec![Difference::new(Kind::Status, "status", "200", "500")]);
        report.record(0, "POST /orders/{id}", &differ, None, None);
        let line = verdict_line(&report.snapshot().targets[0]);
        assert_eq!(
            line,
            "v3 (candidate): 7 compared, 42.9 % match, 4 differ (status 2, body 2, header 1), \
             2 not compared (timeout 2); most differing: POST /orders/{id} 100.0 % of 1"
        );
        let empty = Report::new(vec![("v4".to_owned(), Role::Candidate)], 10);
        assert_eq!(
            verdict_line(&empty.snapshot().targets[0]),
            "v4 (candidate): nothing compared yet"
        );
    }

    #[test]
    fn a_percentage_is_never_rounded_to_a_clean_verdict_it_did_not_earn() {
        assert_eq!(percent_text(9_999, 10_000), "99.9");
        assert_eq!(percent_text(1, 10_000), "0.1");
        assert_eq!(percent_text(10_000, 10_000), "100.0");
        assert_eq!(percent_text(0, 10_000), "0.0");
        assert_eq!(percent_text(741, 1000), "74.1");
        assert_eq!(percent_text(0, 0), "-");
    }

    #[test]
    fn milliseconds_are_shown_with_the_precision_they_deserve() {
        assert_eq!(format_ms(0.354), "0.35");
        assert_eq!(format_ms(12.44), "12.4");
        assert_eq!(format_ms(340.2), "340");
    }
}
