//! `mirror-agent compare-report`: the report as text for a terminal,
//! often over ssh. Per target its verdict line, then a table of its
//! endpoints (the most differing first) with aligned, bounded columns.
//!
//! Endpoint names and field paths come from the network: control
//! characters are replaced so that nothing in them can drive the
//! terminal. Colour only when asked (a terminal, not a pipe).

use std::fmt::Write as _;

use super::words::{latency_text, percent_text, verdict_line};
use crate::compare::report::{CompareReport, EndpointReport, TargetReport};

/// Widest endpoint column, in characters.
const ENDPOINT_WIDTH: usize = 48;
/// Widest top-field column, in characters.
const FIELD_WIDTH: usize = 40;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The report as text; ANSI colours if `color`.
pub fn render_text(report: &CompareReport, color: bool) -> String {
    let paint = Paint(color);
    let mut text = String::new();
    if report.targets.is_empty() {
        text.push_str("no target to compare\n");
        return text;
    }
    for (i, target) in report.targets.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        target_block(&mut text, target, paint);
    }
    text
}

#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn apply(self, style: &str, text: &str) -> String {
        if self.0 && !style.is_empty() && !text.is_empty() {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}

fn target_block(text: &mut String, target: &TargetReport, paint: Paint) {
    let style = if target.pairs.compared == 0 {
        DIM
    } else if target.pairs.differ == 0 {
        GREEN
    } else {
        RED
    };
    let line = sanitize(&verdict_line(target));
    let _ = writeln!(text, "{}", paint.apply(style, &line));
    if let Some(latency) = latency_text(&target.pairs.latency_ms) {
        let _ = writeln!(text, "  {}", paint.apply(DIM, &latency));
    }
    if target.endpoints.is_empty() {
        return;
    }
    let rows: Vec<Row> = target.endpoints.iter().map(Row::of).collect();
    let header = Row {
        endpoint: "ENDPOINT".to_owned(),
        compared: "COMPARED".to_owned(),
        differ: "DIFFER %".to_owned(),
        status: "STATUS".to_owned(),
        header: "HEADER".to_owned(),
        body: "BODY".to_owned(),
        field: "TOP FIELD".to_owned(),
        differs: false,
    };
    let widths = Widths::of(std::iter::once(&header).chain(&rows));
    let _ = writeln!(text, "  {}", paint.apply(BOLD, &header.format(&widths)));
    for row in &rows {
        let formatted = row.format(&widths);
        let style = if row.differs { RED } else { "" };
        let _ = writeln!(text, "  {}", paint.apply(style, &formatted));
    }
}

/// One endpoint's cells, already cut to their bounds.
struct Row {
    endpoint: String,
    compared: String,
    differ: String,
    status: String,
    header: String,
    body: String,
    field: String,
    differs: bool,
}

impl Row {
    fn of(endpoint: &EndpointReport) -> Self {
        let pairs = &endpoint.pairs;
        let top_field = endpoint
            .fields
            .iter()
            .find(|f| !f.noise)
            .or(endpoint.fields.first())
            .map(|f| {
                let noise = if f.noise { " (noise)" } else { "" };
                format!("{} ×{}{noise}", f.path, f.count)
            })
            .unwrap_or_default();
        Self {
            endpoint: cut(&sanitize(&endpoint.endpoint), ENDPOINT_WIDTH),
            compared: pairs.compared.to_string(),
            differ: if pairs.compared == 0 {
                "-".to_owned()
            } else {
                percent_text(pairs.differ, pairs.compared)
            },
            status: pairs.kinds.status.to_string(),
            header: pairs.kinds.header.to_string(),
            body: pairs.kinds.body.to_string(),
            field: cut(&sanitize(&top_field), FIELD_WIDTH),
            differs: pairs.differ > 0,
        }
    }

    fn format(&self, widths: &Widths) -> String {
        let line = format!(
            "{}  {}  {}  {}  {}  {}  {}",
            pad_right(&self.endpoint, widths.endpoint),
            pad_left(&self.compared, widths.compared),
            pad_left(&self.differ, widths.differ),
            pad_left(&self.status, widths.status),
            pad_left(&self.header, widths.header),
            pad_left(&self.body, widths.body),
            self.field
        );
        line.trim_end().to_owned()
    }
}

struct Widths {
    endpoint: usize,
    compared: usize,
    differ: usize,
    status: usize,
    header: usize,
    body: usize,
}

impl Widths {
    fn of<'a>(rows: impl Iterator<Item = &'a Row>) -> Self {
        let mut widths = Self {
            endpoint: 0,
            compared: 0,
            differ: 0,
            status: 0,
            header: 0,
            body: 0,
        };
        for row in rows {
            let chars = |s: &str| s.chars().count();
            widths.endpoint = widths.endpoint.max(chars(&row.endpoint));
            widths.compared = widths.compared.max(chars(&row.compared));
            widths.differ = widths.differ.max(chars(&row.differ));
            widths.status = widths.status.max(chars(&row.status));
            widths.header = widths.header.max(chars(&row.header));
            widths.body = widths.body.max(chars(&row.body));
        }
        widths
    }
}

fn pad_right(text: &str, width: usize) -> String {
    let missing = width.saturating_sub(text.chars().count());
    format!("{text}{}", " ".repeat(missing))
}

fn pad_left(text: &str, width: usize) -> String {
    let missing = width.saturating_sub(text.chars().count());
    format!("{}{text}", " ".repeat(missing))
}

/// At most `width` characters, the cut marked with `…`.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// Control characters (ESC and the rest) shown as `?`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::report::Report;
    use crate::compare::verdict::{Difference, Kind, Role, Verdict};

    fn sample() -> CompareReport {
        let mut report = Report::new(vec![("v3".to_owned(), Role::Candidate)], 50);
        let status = Verdict::Differ(vec![Difference::new(Kind::Status, "status", "200", "500")]);
        report.record(0, "POST /orders/{id}", &status, None, None);
        report.record(0, "POST /orders/{id}", &Verdict::Match(vec![]), None, None);
        let long = format!("GET /{}", "segment/".repeat(20));
        for _ in 0..12 {
            report.record(0, &long, &Verdict::Match(vec![]), None, None);
        }
        report.record(0, "GET /\x1b[2Jclear", &Verdict::Match(vec![]), None, None);
        report.snapshot()
    }

    #[test]
    fn the_table_is_aligned_and_bounded_without_colour() {
        let text = render_text(&sample(), false);
        assert!(
            !text.contains('\x1b'),
            "no escape sequence without colour: {text:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("v3 (candidate): 15 compared, 93.3 % match, 1 differ (status 1)")
        );
        assert!(lines[1].trim_start().starts_with("ENDPOINT"));
        // The COMPARED column ends at the same place on every line.
        let end = lines[1].find("COMPARED").unwrap() + "COMPARED".len();
        for line in &lines[2..] {
            let before: String = line.chars().take(end).collect();
            assert!(
                before.ends_with(|c: char| c.is_ascii_digit()),
                "misaligned: {line:?}"
            );
        }
        assert!(lines[2].contains("POST /orders/{id}") && lines[2].contains("50.0"));
        assert!(lines[2].ends_with("status ×1"));
        for line in &lines {
            assert!(
                line.chars().count() <= 2 + ENDPOINT_WIDTH + 60,
                "too wide: {line:?}"
            );
        }
        assert!(text.contains("GET /segment/segment/"));
        assert!(text.contains('…'));
    }

    #[test]
    fn escape_sequences_from_the_network_cannot_reach_the_terminal() {
        for color in [false, true] {
            let text = render_text(&sample(), color);
            assert!(text.contains("GET /?[2Jclear"));
            assert!(!text.contains("\x1b[2J"));
        }
    }

    #[test]
    fn colour_marks_the_verdict_and_the_differing_rows_when_asked() {
        let text = render_text(&sample(), true);
        assert!(text.starts_with("\x1b[31mv3 (candidate)"));
        assert!(text.contains("\x1b[31m  POST") || text.contains("\x1b[31mPOST"));
        assert!(text.contains("\x1b[1m  ENDPOINT") || text.contains("\x1b[1mENDPOINT"));
        // A row that does not differ is left plain, no stray reset.
        let plain = text.lines().find(|l| l.contains("GET /segment")).unwrap();
        assert!(!plain.contains('\x1b'), "{plain:?}");
    }

    #[test]
    fn nothing_to_show_says_so() {
        assert_eq!(
            render_text(&CompareReport::default(), true),
            "no target to compare\n"
        );
        let waiting = Report::new(vec![("v2".to_owned(), Role::Candidate)], 5).snapshot();
        assert_eq!(
            render_text(&waiting, false),
            "v2 (candidate): nothing compared yet\n"
        );
    }
}
