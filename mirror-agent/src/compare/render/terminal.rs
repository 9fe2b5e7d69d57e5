//! `mirror-agent compare-report`: the report as text for a terminal,
//! often over ssh. Per target its verdict line (the match rate with what
//! it is a rate of and what was not compared; a baseline's noise), the
//! fields that differ across endpoints with the flag that leaves each
//! out, then a table of its endpoints (the most severe first) with
//! aligned columns, each differing endpoint followed by every field that
//! differs there, its full name, count and one example.
//!
//! Endpoint names and field paths come from the network: control
//! characters are replaced so that nothing in them can drive the
//! terminal. Colour only when asked (a terminal, not a pipe).

use std::fmt::Write as _;

use super::words::{latency_text, own_and_shared, percent_text, summary_text, verdict_lines};
use crate::compare::report::{CompareReport, EndpointReport, FieldReport, TargetReport};
use crate::compare::verdict::{Kind, Role};
use crate::compare::visible::visible;

/// Widest endpoint column, in characters (the full name follows the row
/// when it is longer).
const ENDPOINT_WIDTH: usize = 48;

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
    let lines = verdict_lines(report);
    for (i, (target, line)) in report.targets.iter().zip(&lines).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        target_block(&mut text, target, line, paint);
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

fn target_block(text: &mut String, target: &TargetReport, line: &str, paint: Paint) {
    let baseline = target.role == Role::Baseline;
    let style = if target.pairs.compared == 0 {
        DIM
    } else if baseline {
        // It measures noise: no verdict, no colour of one.
        ""
    } else if target.pairs.differ == 0 {
        GREEN
    } else {
        RED
    };
    let _ = writeln!(text, "{}", paint.apply(style, &sanitize(line)));
    if let Some(latency) = latency_text(&target.pairs.latency_ms) {
        let _ = writeln!(text, "  {}", paint.apply(DIM, &latency));
    }
    if target.endpoints.is_empty() {
        return;
    }
    if !target.summary.is_empty() {
        let _ = writeln!(text, "  {}", paint.apply(BOLD, "ACROSS ENDPOINTS"));
        for field in &target.summary {
            let line = sanitize(&summary_text(field, target.endpoints.len(), baseline));
            let style = if field.noise { DIM } else { "" };
            let _ = writeln!(text, "    {}", paint.apply(style, &line));
        }
    }
    let rows: Vec<Row> = target.endpoints.iter().map(Row::of).collect();
    let mut header = Row {
        endpoint: "ENDPOINT".to_owned(),
        full_endpoint: None,
        cells: [
            "COMPARED".to_owned(),
            if baseline { "NOISE %" } else { "DIFFER %" }.to_owned(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
        differs: false,
    };
    for (cell, kind) in header.cells[2..].iter_mut().zip(Kind::ALL) {
        *cell = kind.as_str().to_ascii_uppercase();
    }
    let widths = Widths::of(std::iter::once(&header).chain(&rows));
    let _ = writeln!(text, "  {}", paint.apply(BOLD, &header.format(&widths)));
    for (row, endpoint) in rows.iter().zip(&target.endpoints) {
        let formatted = row.format(&widths);
        let style = if row.differs && !baseline { RED } else { "" };
        let _ = writeln!(text, "  {}", paint.apply(style, &formatted));
        if let Some(full) = &row.full_endpoint {
            let _ = writeln!(text, "      {}", paint.apply(DIM, full));
        }
        let (own, shared) = own_and_shared(&endpoint.fields, &target.summary);
        for field in own {
            let style = if field.noise { DIM } else { "" };
            let _ = writeln!(text, "      {}", paint.apply(style, &field_line(field)));
        }
        // Named above across endpoints: here their names and counts only.
        if !shared.is_empty() {
            let names: Vec<String> = shared
                .iter()
                .map(|f| format!("{} ×{}", f.path, f.count))
                .collect();
            let line = sanitize(&format!("also across endpoints: {}", names.join(", ")));
            let _ = writeln!(text, "      {}", paint.apply(DIM, &line));
        }
    }
}

/// `status ×40: v1 200, target 404`, the name in full.
fn field_line(field: &FieldReport) -> String {
    let mut line = format!("{} ×{}", field.path, field.count);
    if field.noise {
        line.push_str(" (noise)");
    } else if field.noise_count > 0 {
        let _ = write!(line, " ({} noise)", field.noise_count);
    }
    let _ = write!(
        line,
        ": v1 {}, target {}",
        field.example.v1, field.example.target
    );
    // A body path whose array index was grouped: the concrete one.
    if field.example.path.starts_with('$') && field.example.path != field.path {
        let _ = write!(line, " at {}", field.example.path);
    }
    sanitize(&line)
}

/// One endpoint's cells: the name cut to its bound, then compared,
/// differ %, and the pairs differing per kind (most severe first).
struct Row {
    endpoint: String,
    /// The whole name, when the cell had to cut it.
    full_endpoint: Option<String>,
    cells: [String; 2 + Kind::COUNT],
    differs: bool,
}

impl Row {
    fn of(endpoint: &EndpointReport) -> Self {
        let pairs = &endpoint.pairs;
        let name = sanitize(&endpoint.endpoint);
        let cut_name = cut(&name, ENDPOINT_WIDTH);
        let mut cells: [String; 2 + Kind::COUNT] = Default::default();
        cells[0] = pairs.compared.to_string();
        cells[1] = if pairs.compared == 0 {
            "-".to_owned()
        } else {
            percent_text(pairs.differ, pairs.compared)
        };
        for (cell, kind) in cells[2..].iter_mut().zip(Kind::ALL) {
            *cell = pairs.kinds.get(kind).to_string();
        }
        Self {
            full_endpoint: (cut_name != name).then_some(name),
            endpoint: cut_name,
            cells,
            differs: pairs.differ > 0,
        }
    }

    fn format(&self, widths: &Widths) -> String {
        let mut line = pad_right(&self.endpoint, widths.endpoint);
        for (cell, width) in self.cells.iter().zip(&widths.cells) {
            line.push_str("  ");
            line.push_str(&pad_left(cell, *width));
        }
        line.trim_end().to_owned()
    }
}

struct Widths {
    endpoint: usize,
    cells: [usize; 2 + Kind::COUNT],
}

impl Widths {
    fn of<'a>(rows: impl Iterator<Item = &'a Row>) -> Self {
        let mut widths = Self {
            endpoint: 0,
            cells: [0; 2 + Kind::COUNT],
        };
        let chars = |s: &str| s.chars().count();
        for row in rows {
            widths.endpoint = widths.endpoint.max(chars(&row.endpoint));
            for (width, cell) in widths.cells.iter_mut().zip(&row.cells) {
                *width = (*width).max(chars(cell));
            }
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

/// Control characters (ESC and the rest) shown as `?`, invisible and
/// bidirectional ones as their escapes (`\u{202e}`): nothing from the
/// network moves the cursor, the colours or the columns.
fn sanitize(text: &str) -> String {
    visible(text)
        .chars()
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

    /// Ten headers differ on every endpoint; `GET /gone` answers 404 on
    /// few pairs; a field name longer than any column.
    fn planted() -> CompareReport {
        let mut report = Report::new(vec![("v3".to_owned(), Role::Candidate)], 50);
        let headers: Vec<Difference> = (0..10)
            .map(|i| Difference::new(Kind::Header, format!("x-planted-{i}"), "<absent>", "v3"))
            .collect();
        for (endpoint, n) in [
            ("GET /items/{id}", 40),
            ("POST /orders", 20),
            ("GET /gone", 4),
        ] {
            for _ in 0..n {
                let mut differences = headers.clone();
                if endpoint == "GET /gone" {
                    differences.push(Difference::new(Kind::Status, "status", "200", "404"));
                }
                if endpoint == "POST /orders" {
                    let long = format!("$.{}", "very_long_field_name_".repeat(4));
                    differences.push(Difference::new(Kind::Body, long, "1", "2"));
                }
                report.record(0, endpoint, &Verdict::Differ(differences), None, None);
            }
        }
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
            lines[0]
                .starts_with("v3 (candidate): 93.3 % match of 15 compared, 1 differ (status 1)")
        );
        assert!(lines[1].trim_start().starts_with("ENDPOINT"));
        assert!(
            lines[1].ends_with("COMPARED  DIFFER %  FAILED  STATUS  UNDECODABLE  BODY  HEADER")
        );
        // The COMPARED column ends at the same place on every row.
        let end = lines[1].find("COMPARED").unwrap() + "COMPARED".len();
        let rows: Vec<&str> = lines[2..]
            .iter()
            .copied()
            .filter(|l| !l.starts_with("      "))
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        for line in &rows {
            let before: String = line.chars().take(end).collect();
            assert!(
                before.ends_with(|c: char| c.is_ascii_digit()),
                "misaligned: {line:?}"
            );
            assert!(
                line.chars().count() <= 2 + ENDPOINT_WIDTH + 70,
                "too wide: {line:?}"
            );
        }
        assert!(lines[2].contains("POST /orders/{id}") && lines[2].contains("50.0"));
        assert_eq!(lines[3], "      status ×1: v1 200, target 500");
        assert!(text.contains("GET /segment/segment/"));
        assert!(text.contains('…'));
        // The cut name in full below its row.
        assert!(text.contains(&format!("      GET /{}", "segment/".repeat(20))));
    }

    #[test]
    fn the_summary_comes_first_then_the_most_severe_endpoint_with_every_field_in_full() {
        let text = render_text(&planted(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("v3 (candidate): 0.0 % match of 64 compared, 64 differ"),
            "{text}"
        );
        assert!(lines[0].ends_with("no baseline (--baseline URL, v1's own version elsewhere, tells noise from differences)"), "{text}");
        assert_eq!(lines[1], "  ACROSS ENDPOINTS");
        // On one endpoint but a third of the pairs: in the summary, and a
        // body before the headers.
        let long = format!("$.{}", "very_long_field_name_".repeat(4));
        assert!(lines[2].starts_with(&format!("    {long} body field differs on 20/20")));
        assert_eq!(
            lines[3],
            "    x-planted-0 header differs on 64/64 exchanges, 3 of 3 endpoints — ignore with \
             --compare-ignore-header X-Planted-0"
        );
        for i in 0..10 {
            assert!(text.contains(&format!("--compare-ignore-header X-Planted-{i}\n")));
        }
        let table = text.find("  ENDPOINT").unwrap();
        let rows: Vec<&str> = text[table..]
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("      "))
            .collect();
        assert!(rows[0].starts_with("  GET /gone"), "{text}");
        assert!(rows[1].starts_with("  POST /orders") && rows[2].starts_with("  GET /items"));
        // Under the 404 endpoint, the status first, then every header.
        let gone: Vec<&str> = text[text.find("  GET /gone").unwrap()..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("      "))
            .collect();
        assert_eq!(gone.len(), 2, "{text}");
        assert_eq!(gone[0], "      status ×4: v1 200, target 404");
        let shared: Vec<String> = (0..10)
            .map(|i| format!("header:x-planted-{i} ×4"))
            .collect();
        assert_eq!(
            gone[1],
            format!("      also across endpoints: {}", shared.join(", "))
        );
        assert!(
            text.contains(&format!("      {long} ×20: v1 1, target 2")),
            "cut: {text}"
        );
        assert!(!text.contains("see /compare"));
    }

    #[test]
    fn a_right_to_left_override_is_shown_as_its_escape() {
        let mut report = sample();
        report.targets[0].endpoints[0].endpoint = "GET /admin\u{202e}txt.exe".to_owned();
        let text = render_text(&report, false);
        assert!(text.contains("GET /admin\\u{202e}txt.exe"), "{text}");
        assert!(!text.contains('\u{202e}'));
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
        assert!(text.contains("\x1b[31mPOST"));
        assert!(text.contains("\x1b[1mENDPOINT"));
        // A row that does not differ is left plain, no stray reset.
        let plain = text.lines().find(|l| l.contains("GET /segment")).unwrap();
        assert!(!plain.contains('\x1b'), "{plain:?}");
    }

    #[test]
    fn a_baseline_is_drawn_without_a_verdict_colour() {
        let mut report = Report::new(vec![("v1b".to_owned(), Role::Baseline)], 5);
        let noise = Verdict::Differ(vec![Difference::new(Kind::Body, "$.ts", "1", "2")]);
        report.record(0, "GET /a", &noise, None, None);
        let text = render_text(&report.snapshot(), true);
        assert!(
            text.starts_with("v1b (baseline): noise measured on 1 compared"),
            "{text:?}"
        );
        assert!(!text.contains(RED) && !text.contains(GREEN), "{text:?}");
        assert!(text.contains("NOISE %"));
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
