//! The report in words, the same in every rendering: the one-line
//! verdict per target (the periodic summary, the final counts, the
//! terminal), the verdict's word, how much was not compared, what a
//! baseline measured, percentages and latencies as text.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::compare::report::{
    CompareReport, FieldReport, FieldSummary, LatencyReport, OTHER_FIELDS, PairCounts, Percentiles,
    TargetReport, field_kind,
};
use crate::compare::verdict::{Kind, Role};

/// What a candidate's report says when no target measured the noise.
pub const NOISE_NOT_MEASURED: &str = "noise not measured: no baseline (--baseline URL, v1's own version elsewhere, tells noise \
     from differences)";

/// `matches v1`, `differs`, `nothing compared`; a baseline has no verdict
/// (it runs v1's own version: what it differs in is noise): `measures
/// noise`.
pub fn verdict_word(target: &TargetReport) -> &'static str {
    if target.pairs.compared == 0 {
        "nothing compared"
    } else if target.role == Role::Baseline {
        "measures noise"
    } else if target.pairs.differ == 0 {
        "matches v1"
    } else {
        "differs"
    }
}

/// Noise is measured: there is a baseline, and it compared an exchange
/// (the report's `noise_measured`, the same on every target; a report
/// from an older agent has it true and its roles tell).
pub fn noise_measured(report: &CompareReport) -> bool {
    report.targets.iter().any(|t| t.role == Role::Baseline)
        && report.targets.iter().all(|t| t.noise_measured)
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

/// One line per target, for the periodic summary and the final counts.
/// The match rate always with what it is a rate of, and what was not
/// compared with its share, so that a rate over part of the traffic
/// cannot read as the verdict on all of it: `v3 (candidate): 88.0 % match
/// of 600 compared, 72 differ (status 12, header 60); 400 not compared
/// (40.0 % of 1000): target_failed 300, timeout 100; worst endpoint: GET
/// /posts/{id} 100.0 % of 40 differ (status)`. A baseline's line says
/// what noise it measured instead.
pub fn verdict_line(target: &TargetReport) -> String {
    let pairs = &target.pairs;
    let mut line = format!("{} ({}): ", target.target, target.role.as_str());
    if pairs.compared == 0 {
        line.push_str("nothing compared yet");
    } else if target.role == Role::Baseline {
        let _ = write!(line, "{}", noise_text(target));
    } else {
        let _ = write!(
            line,
            "{} % match of {} compared, {} differ",
            percent_text(pairs.matched, pairs.compared),
            pairs.compared,
            pairs.differ
        );
        if pairs.differ > 0 {
            let _ = write!(line, " ({})", pairs.kinds.describe());
        }
    }
    if let Some(not_compared) = not_compared_text(pairs) {
        let _ = write!(line, "; {not_compared}");
    }
    if target.role == Role::Candidate
        && let Some(worst) = target.endpoints.iter().find(|e| e.pairs.differ > 0)
    {
        // The endpoints come the most severe first.
        let kind = Kind::ALL
            .into_iter()
            .find(|k| worst.pairs.kinds.get(*k) > 0)
            .map_or("", |k| k.as_str());
        let _ = write!(
            line,
            "; worst endpoint: {} {} % of {} differ ({kind})",
            worst.endpoint,
            percent_text(worst.pairs.differ, worst.pairs.compared),
            worst.pairs.compared
        );
    }
    line
}

/// Every target's [`verdict_line`]; a candidate's says so when no
/// baseline measured the noise (what it differs in may be noise).
pub fn verdict_lines(report: &CompareReport) -> Vec<String> {
    let measured = noise_measured(report);
    report
        .targets
        .iter()
        .map(|target| {
            let mut line = verdict_line(target);
            if !measured && target.role == Role::Candidate && target.pairs.compared > 0 {
                let _ = write!(line, "; {NOISE_NOT_MEASURED}");
            }
            line
        })
        .collect()
}

/// A baseline's measure: `noise measured on 600 compared: 12 fields
/// differ between v1 and its own version, on 40 exchanges ($.ts,
/// header:x-cache, status, ...)`, or `noise measured on 600 compared:
/// none, v1's own version answers as v1 does`.
pub fn noise_text(target: &TargetReport) -> String {
    let pairs = &target.pairs;
    let mut text = format!("noise measured on {} compared: ", pairs.compared);
    let mut paths: BTreeSet<&str> = BTreeSet::new();
    let mut pooled = false;
    for field in target.endpoints.iter().flat_map(|e| &e.fields) {
        if field.path == OTHER_FIELDS {
            pooled = true;
        } else {
            paths.insert(&field.path);
        }
    }
    if pairs.differ == 0 && paths.is_empty() {
        text.push_str("none, v1's own version answers as v1 does");
        return text;
    }
    // The most frequent first: the summary's order when it has them.
    let mut named: Vec<&str> = target.summary.iter().map(|f| f.path.as_str()).collect();
    named.extend(
        paths
            .iter()
            .filter(|p| !named.contains(p))
            .copied()
            .collect::<Vec<_>>(),
    );
    let shown: Vec<&str> = named.iter().take(3).copied().collect();
    let more = if named.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    let _ = write!(
        text,
        "{}{} field{} between v1 and its own version, on {} exchange{} ({}{more})",
        if pooled { "at least " } else { "" },
        paths.len(),
        if paths.len() == 1 && !pooled {
            " differs"
        } else {
            "s differ"
        },
        pairs.differ,
        if pairs.differ == 1 { "" } else { "s" },
        shown.join(", ")
    );
    text
}

/// `400 not compared (40.0 % of 1000): target_failed 300, timeout 100`:
/// the pairs not compared, their share of all the pairs judged, and the
/// reasons that occurred; none when every pair was compared.
pub fn not_compared_text(pairs: &PairCounts) -> Option<String> {
    let total = pairs.not_compared_total();
    let reasons: Vec<String> = pairs
        .not_compared
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let judged = total + pairs.compared;
    (total > 0).then(|| {
        format!(
            "{total} not compared ({} % of {judged}): {}",
            percent_text(total, judged),
            reasons.join(", ")
        )
    })
}

/// A report field as people name it: (`x-powered-by`, `header`),
/// (`$.title`, `body field`), (`status`, ``), (`failed`, ``).
pub fn field_name(path: &str) -> (&str, &'static str) {
    match field_kind(path) {
        Kind::Header => (path.strip_prefix("header:").unwrap_or(path), "header"),
        Kind::Body if path.starts_with('$') => (path, "body field"),
        _ => (path, ""),
    }
}

/// `differs on 480/480 exchanges, 15 of 15 endpoints`: a summary
/// field's counts, `endpoints` the target's. A baseline's differences
/// are noise, not a verdict: `noisy on ...`.
pub fn summary_counts(field: &FieldSummary, endpoints: usize, baseline: bool) -> String {
    let mut text = format!(
        "{} on {}/{} exchanges, {} of {endpoints} endpoint{}",
        if baseline { "noisy" } else { "differs" },
        field.count,
        field.compared,
        field.endpoints,
        if endpoints == 1 { "" } else { "s" }
    );
    if field.noise && !baseline {
        text.push_str(" (noise, kept out of the verdict)");
    } else if field.noise_count > 0 {
        let _ = write!(text, " ({} of them noise)", field.noise_count);
    }
    text
}

/// `x-powered-by header differs on 480/480 exchanges, 15 of 15 endpoints
/// — ignore with --compare-ignore-header X-Powered-By`.
pub fn summary_text(field: &FieldSummary, endpoints: usize, baseline: bool) -> String {
    let (name, what) = field_name(&field.path);
    let mut text = name.to_owned();
    if !what.is_empty() {
        let _ = write!(text, " {what}");
    }
    let _ = write!(text, " {}", summary_counts(field, endpoints, baseline));
    if let Some(hint) = &field.hint {
        let _ = write!(text, " — ignore with {hint}");
    }
    text
}

/// An endpoint's fields in reading order ([`fields_for_reading`]), split
/// in two: its own, and those the target's summary already names across
/// endpoints (on two or more), which every renderer folds so that what is
/// particular to the endpoint reads first. A failure, a status or an
/// undecodable body stays with the endpoint even so: its values (200 →
/// 404 here, 201 → 500 there) are what the endpoint's row is read for.
pub fn own_and_shared<'a>(
    fields: &'a [FieldReport],
    summary: &[FieldSummary],
) -> (Vec<&'a FieldReport>, Vec<&'a FieldReport>) {
    fields_for_reading(fields).into_iter().partition(|field| {
        matches!(
            field_kind(&field.path),
            Kind::Failed | Kind::Status | Kind::Undecodable
        ) || !summary
            .iter()
            .any(|s| s.endpoints >= 2 && s.path == field.path)
    })
}

/// An endpoint's fields in the order to read them: real differences
/// before noise, the most severe kind first (a status before the ten
/// headers that differ everywhere), then the report's order (the most
/// frequent first); the pooled rest last.
pub fn fields_for_reading(fields: &[FieldReport]) -> Vec<&FieldReport> {
    let mut ordered: Vec<&FieldReport> = fields.iter().collect();
    // Stable: equal fields keep the report's order.
    ordered.sort_by_key(|f| (f.path == OTHER_FIELDS, f.noise, field_kind(&f.path)));
    ordered
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
    use crate::compare::verdict::{Difference, Kind, NotCompared, Verdict};

    #[test]
    fn the_verdict_line_says_the_rate_of_what_kinds_what_was_not_compared_and_the_worst_endpoint() {
        let mut report = known_report();
        let differ = Verdict::Differ(vec![Difference::new(Kind::Status, "status", "200", "500")]);
        report.record(0, "POST /orders/{id}", &differ, None, None);
        let line = verdict_line(&report.snapshot().targets[0]);
        assert_eq!(
            line,
            "v3 (candidate): 42.9 % match of 7 compared, 4 differ (status 2, body 2, header 1); \
             2 not compared (22.2 % of 9): timeout 2; \
             worst endpoint: POST /orders/{id} 100.0 % of 1 differ (status)"
        );
        let empty = Report::new(vec![("v4".to_owned(), Role::Candidate)], 10);
        assert_eq!(
            verdict_line(&empty.snapshot().targets[0]),
            "v4 (candidate): nothing compared yet"
        );
    }

    #[test]
    fn a_rate_over_part_of_the_traffic_says_how_much_was_left_out() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        for i in 0..1000 {
            let verdict = match i {
                0..300 => Verdict::NotCompared(NotCompared::TargetFailed),
                300..400 => Verdict::NotCompared(NotCompared::Timeout),
                400..928 => Verdict::Match(vec![]),
                _ => Verdict::Differ(vec![Difference::new(Kind::Header, "x-a", "1", "2")]),
            };
            report.record(0, "GET /a", &verdict, None, None);
        }
        let line = verdict_line(&report.snapshot().targets[0]);
        assert!(
            line.starts_with(
                "v2 (candidate): 88.0 % match of 600 compared, 72 differ (header 72); \
                 400 not compared (40.0 % of 1000): target_failed 300, timeout 100;"
            ),
            "{line}"
        );
        // Nothing compared still says how much was not.
        let mut down = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        let failed = Verdict::NotCompared(NotCompared::TargetFailed);
        down.record(0, "GET /a", &failed, None, None);
        assert_eq!(
            verdict_line(&down.snapshot().targets[0]),
            "v2 (candidate): nothing compared yet; 1 not compared (100.0 % of 1): target_failed 1"
        );
    }

    #[test]
    fn a_baseline_measures_noise_and_a_candidate_without_one_says_noise_was_not_measured() {
        let mut report = Report::new(
            vec![
                ("v2".to_owned(), Role::Candidate),
                ("v1b".to_owned(), Role::Baseline),
            ],
            10,
        );
        let noisy = Verdict::Differ(vec![
            Difference::new(Kind::Body, "$.ts", "1", "2"),
            Difference::new(Kind::Header, "x-cache", "a", "b"),
        ]);
        for endpoint in ["GET /a", "GET /b"] {
            report.record(1, endpoint, &noisy, None, None);
            report.record(1, endpoint, &Verdict::Match(vec![]), None, None);
            report.record(0, endpoint, &Verdict::Match(vec![]), None, None);
        }
        let snapshot = report.snapshot();
        let baseline = verdict_line(&snapshot.targets[1]);
        assert_eq!(
            baseline,
            "v1b (baseline): noise measured on 4 compared: 2 fields differ between v1 and its \
             own version, on 2 exchanges ($.ts, header:x-cache)"
        );
        assert!(!baseline.contains("()") && !baseline.contains("differs"));
        assert_eq!(verdict_word(&snapshot.targets[1]), "measures noise");
        let lines = verdict_lines(&snapshot);
        assert_eq!(
            lines[0],
            "v2 (candidate): 100.0 % match of 2 compared, 0 differ"
        );

        let alone = CompareReport {
            targets: vec![snapshot.targets[0].clone()],
        };
        assert_eq!(
            verdict_lines(&alone)[0],
            format!("v2 (candidate): 100.0 % match of 2 compared, 0 differ; {NOISE_NOT_MEASURED}")
        );
        let mut quiet = Report::new(vec![("v1b".to_owned(), Role::Baseline)], 10);
        quiet.record(0, "GET /a", &Verdict::Match(vec![]), None, None);
        assert_eq!(
            verdict_line(&quiet.snapshot().targets[0]),
            "v1b (baseline): noise measured on 1 compared: none, v1's own version answers as v1 \
             does"
        );
    }

    #[test]
    fn fields_read_real_before_noise_and_the_most_severe_first() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        let mut differences: Vec<Difference> = (0..10)
            .map(|i| Difference::new(Kind::Header, format!("x-{i}"), "<absent>", "1"))
            .collect();
        differences.push(Difference {
            noise: true,
            ..Difference::new(Kind::Body, "$.ts", "1", "2")
        });
        differences.push(Difference::new(Kind::Status, "status", "200", "404"));
        differences.push(Difference::new(Kind::Body, "$.error", "<absent>", "\"x\""));
        report.record(0, "GET /a", &Verdict::Differ(differences), None, None);
        let snapshot = report.snapshot();
        let fields = &snapshot.targets[0].endpoints[0].fields;
        let order: Vec<&str> = fields_for_reading(fields)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(order[..3], ["status", "$.error", "header:x-0"]);
        assert_eq!(order.last(), Some(&"$.ts"));
        assert_eq!(order.len(), 13);
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
