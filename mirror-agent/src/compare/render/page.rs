//! `/compare.html`: the report as one page to read at a glance. Per
//! target its headline: the match rate in large with what it is a rate
//! of, and how much was not compared (so that 88 % of 60 % of the traffic
//! never reads as 88 %); a baseline instead says what noise it measured
//! (it runs v1's own version: it has no verdict). Then the fields that
//! differ across endpoints, each with the flag that leaves it out, then
//! the endpoints, the most severe first, each with a bar of match against
//! differ, the kinds of difference and every field that differs (the
//! first few shown, the rest one click away, one example each).
//!
//! One self-contained document: inline CSS, no script, no external asset,
//! nothing fetched (the page may be opened where nothing else is
//! reachable); `<details>` opens without script. Every value comes from
//! the network, so every value is escaped.

use std::fmt::Write as _;

use super::words::{
    NOISE_NOT_MEASURED, field_name, latency_text, noise_measured, noise_text, not_compared_text,
    own_and_shared, percent_text, summary_counts, verdict_word,
};
use crate::compare::report::{
    CompareReport, EndpointReport, FieldReport, FieldSummary, OTHER_FIELDS, TargetReport,
};
use crate::compare::verdict::Role;
use crate::compare::visible::visible;

/// Fields shown per endpoint before the rest are folded (every one is on
/// the page; the report keeps at most
/// [`FIELDS_PER_ENDPOINT`](crate::compare::report::FIELDS_PER_ENDPOINT)).
const FIELDS_SHOWN: usize = 5;

/// Seconds between reloads of the live page.
pub const REFRESH_SECONDS: u32 = 5;

/// The page, reloading itself every [`REFRESH_SECONDS`].
pub fn render_html(report: &CompareReport) -> String {
    render_html_refreshing(report, Some(REFRESH_SECONDS))
}

/// The page, reloading itself every `refresh_seconds` if given (a saved
/// copy reads better without).
pub fn render_html_refreshing(report: &CompareReport, refresh_seconds: Option<u32>) -> String {
    let mut page = String::with_capacity(16 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    if let Some(seconds) = refresh_seconds {
        let _ = writeln!(page, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    page.push_str("<title>mirror: comparison with v1</title>\n<style>");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n<h1>mirror: each target compared with v1</h1>\n");
    let nothing_yet = report
        .targets
        .iter()
        .all(|t| t.pairs.compared == 0 && t.pairs.not_compared_total() == 0);
    if nothing_yet {
        page.push_str(
            "<p class=\"empty\">Nothing compared yet: no answer from v1 and a target \
             has been paired so far. This page reloads by itself.</p>\n",
        );
        if !report.targets.is_empty() {
            page.push_str("<p class=\"waiting\">Waiting for: ");
            let names: Vec<String> = report
                .targets
                .iter()
                .map(|t| format!("{} ({})", escape(&t.target), t.role.as_str()))
                .collect();
            page.push_str(&names.join(", "));
            page.push_str("</p>\n");
        }
    } else {
        let measured = noise_measured(report);
        for target in &report.targets {
            target_section(&mut page, target, measured);
        }
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn target_section(page: &mut String, target: &TargetReport, noise_measured: bool) {
    let pairs = &target.pairs;
    let baseline = target.role == Role::Baseline;
    let word = verdict_word(target);
    let class = match word {
        "matches v1" => "good",
        "differs" => "bad",
        "measures noise" => "neutral",
        _ => "idle",
    };
    let _ = writeln!(page, "<section class=\"target {class}\">\n<header>");
    let _ = writeln!(
        page,
        "<div class=\"who\"><h2>{}</h2><span class=\"role\">{}</span></div>",
        escape(&target.target),
        target.role.as_str()
    );
    page.push_str("<div class=\"rate\">");
    if baseline && pairs.compared > 0 {
        let _ = write!(
            page,
            "<div class=\"measure\">{}</div>",
            escape(&noise_text(target))
        );
    } else {
        // The rate never without what it is a rate of.
        let _ = write!(
            page,
            "<span class=\"percent\">{}</span><span class=\"unit\">% match</span> \
             <span class=\"of\">of {} compared</span>",
            or_dash((pairs.compared > 0).then(|| percent_text(pairs.matched, pairs.compared))),
            pairs.compared
        );
    }
    if let Some(not_compared) = not_compared_text(pairs) {
        let _ = write!(
            page,
            "<div class=\"uncompared\">{}</div>",
            escape(&not_compared)
        );
    }
    page.push_str("</div>\n");
    let _ = writeln!(page, "<div class=\"verdict\">{word}</div>\n</header>");

    let counts = if baseline {
        format!(
            "{} compared · {} as v1 · {} with noise",
            pairs.compared, pairs.matched, pairs.differ
        )
    } else {
        let mut counts = format!(
            "{} compared · {} match · {} differ",
            pairs.compared, pairs.matched, pairs.differ
        );
        if pairs.differ > 0 {
            let _ = write!(counts, " ({})", pairs.kinds.describe());
        }
        counts
    };
    let _ = writeln!(page, "<p class=\"counts\">{counts}</p>");
    if !baseline && !noise_measured && pairs.compared > 0 {
        let _ = writeln!(
            page,
            "<p class=\"note\">{}</p>",
            escape(&upper_first(NOISE_NOT_MEASURED))
        );
    }
    if let Some(latency) = latency_text(&pairs.latency_ms) {
        let _ = writeln!(page, "<p class=\"latency\">{latency}</p>");
    }

    if target.endpoints.is_empty() {
        page.push_str("<p class=\"empty\">No endpoint seen yet.</p>\n</section>\n");
        return;
    }
    if !target.summary.is_empty() {
        summary_list(page, target);
    }
    let _ = write!(
        page,
        "<h3>Endpoints, the most severe first</h3>\n<table>\n<thead><tr><th>endpoint</th>\
         <th>match / {}</th><th>kinds</th><th>differing fields</th></tr></thead>\n<tbody>\n",
        if baseline { "noise" } else { "differ" }
    );
    for endpoint in &target.endpoints {
        endpoint_row(page, endpoint, &target.summary, baseline);
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

/// The fields that differ across endpoints, with their flags.
fn summary_list(page: &mut String, target: &TargetReport) {
    page.push_str("<h3>Across endpoints</h3>\n<ul class=\"summary\">\n");
    for field in &target.summary {
        summary_item(
            page,
            field,
            target.endpoints.len(),
            target.role == Role::Baseline,
        );
    }
    page.push_str("</ul>\n");
}

fn summary_item(page: &mut String, field: &FieldSummary, endpoints: usize, baseline: bool) {
    let (name, what) = field_name(&field.path);
    let _ = write!(
        page,
        "<li{}><code>{}</code> <span class=\"kind\">{what}</span> {}",
        if field.noise { " class=\"noise\"" } else { "" },
        escape(name),
        escape(&summary_counts(field, endpoints, baseline))
    );
    if let Some(hint) = &field.hint {
        let _ = write!(
            page,
            " <span class=\"hint\">— ignore with <code>{}</code></span>",
            escape(hint)
        );
    }
    page.push_str("</li>\n");
}

fn endpoint_row(
    page: &mut String,
    endpoint: &EndpointReport,
    summary: &[FieldSummary],
    baseline: bool,
) {
    let pairs = &endpoint.pairs;
    let _ = write!(
        page,
        "<tr><td class=\"endpoint\"><code>{}</code></td><td class=\"share\">",
        escape(&endpoint.endpoint)
    );
    if pairs.compared == 0 {
        page.push_str("<div class=\"bar\"></div>");
    } else {
        let match_width = pairs.matched as f64 * 100.0 / pairs.compared as f64;
        let _ = write!(
            page,
            "<div class=\"bar\"><span class=\"m\" style=\"width:{match_width:.1}%\"></span>\
             <span class=\"d\" style=\"width:{:.1}%\"></span></div>\
             {} % {} of {}",
            100.0 - match_width,
            percent_text(pairs.differ, pairs.compared),
            if baseline { "with noise" } else { "differ" },
            pairs.compared
        );
    }
    if let Some(not_compared) = not_compared_text(pairs) {
        let _ = write!(page, "<div class=\"idle\">{}</div>", escape(&not_compared));
    }
    let _ = write!(
        page,
        "</td><td class=\"kinds\">{}</td><td class=\"fields\">",
        or_dash((pairs.differ > 0).then(|| pairs.kinds.describe()))
    );
    // Every field on the page: the endpoint's own first, the rest one
    // click away, those of the summary folded apart.
    let (own, shared) = own_and_shared(&endpoint.fields, summary);
    if !own.is_empty() {
        page.push_str("<ul>");
        for field in own.iter().take(FIELDS_SHOWN) {
            field_item(page, field);
        }
        page.push_str("</ul>");
    }
    let folded = &own[FIELDS_SHOWN.min(own.len())..];
    if !folded.is_empty() {
        let _ = write!(
            page,
            "<details><summary>{} more field{}</summary><ul>",
            folded.len(),
            if folded.len() == 1 { "" } else { "s" }
        );
        for field in folded {
            field_item(page, field);
        }
        page.push_str("</ul></details>");
    }
    if !shared.is_empty() {
        let _ = write!(
            page,
            "<details><summary>{} field{} also on other endpoints (across endpoints, above)\
             </summary><ul>",
            shared.len(),
            if shared.len() == 1 { "" } else { "s" }
        );
        for field in &shared {
            field_item(page, field);
        }
        page.push_str("</ul></details>");
    }
    page.push_str("</td></tr>\n");
}

fn field_item(page: &mut String, field: &FieldReport) {
    let _ = write!(
        page,
        "<li{}><code>{}</code> <span class=\"count\">×{}</span>",
        if field.noise { " class=\"noise\"" } else { "" },
        escape(&field.path),
        field.count
    );
    if field.noise {
        page.push_str(" <span class=\"tag\">noise</span>");
    } else if field.noise_count > 0 {
        let _ = write!(
            page,
            " <span class=\"tag\">{} noise</span>",
            field.noise_count
        );
    }
    if field.path == OTHER_FIELDS {
        page.push_str(
            " <span class=\"idle\">(past the fields kept per endpoint, counted together)</span>",
        );
    }
    let _ = write!(
        page,
        "<div class=\"example\"><span class=\"side\">v1</span> <code>{}</code> \
         <span class=\"side\">target</span> <code>{}</code>",
        escape(&field.example.v1),
        escape(&field.example.target)
    );
    // A body path whose array index was grouped, or a pooled field: the
    // concrete one.
    if (field.example.path.starts_with('$') || field.path == OTHER_FIELDS)
        && field.example.path != field.path
    {
        let _ = write!(
            page,
            " <span class=\"side\">at</span> <code>{}</code>",
            escape(&field.example.path)
        );
    }
    page.push_str("</div></li>");
}

/// `Noise not measured...`
fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// `–` where there is nothing to show.
fn or_dash(text: Option<String>) -> String {
    text.unwrap_or_else(|| "–".to_owned())
}

/// Text made safe inside elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in visible(text).chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            // Control characters are not text (HTML forbids most of them).
            c if c.is_control() && c != '\n' && c != '\t' => escaped.push('\u{fffd}'),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#1d2329;background:#f6f7f9}
h1{font-size:1.3em;font-weight:600;color:#4a5560}
section.target{background:#fff;border-radius:8px;border-left:8px solid #b8c0c8;padding:1em 1.4em;margin:1.2em 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
section.good{border-left-color:#2e9e5b}section.bad{border-left-color:#d64541}section.neutral{border-left-color:#5b7fa6}
section header{display:flex;align-items:center;gap:2em;flex-wrap:wrap}
.who h2{margin:0;font-size:1.4em;word-break:break-all}
.role{display:inline-block;font-size:.8em;text-transform:uppercase;letter-spacing:.05em;color:#5b6670;border:1px solid #c4ccd3;border-radius:4px;padding:0 .4em}
.rate .percent{font-size:2.8em;font-weight:700}.rate .unit{margin-left:.3em;color:#5b6670}
.rate .of{font-size:1.2em;color:#3b454e}
.uncompared{font-size:1.05em;font-weight:600;color:#a0620a}
.measure{font-size:1.1em;color:#3b454e;max-width:40em}
.note{margin:.4em 0;color:#a0620a}
h3{font-size:1em;font-weight:600;color:#4a5560;margin:1em 0 .3em}
ul.summary{margin:0;padding-left:1.2em}ul.summary li{margin-bottom:.25em;overflow-wrap:anywhere}
.kind{color:#5b6670}.hint{color:#4a5560}.hint code{background:#eef3f8;padding:0 .25em;border-radius:3px;white-space:nowrap}
details summary{cursor:pointer;color:#5b6670;font-size:.9em}
.neutral .verdict{color:#5b7fa6}.neutral .bar .d{background:#8fa7c2}
.good .percent,.good .verdict{color:#2e9e5b}.bad .percent,.bad .verdict{color:#d64541}
.verdict{font-size:1.5em;font-weight:600;color:#7a858f}
.counts,.latency{margin:.4em 0;color:#3b454e}.latency{font-size:.9em;color:#5b6670}
table{border-collapse:collapse;width:100%;margin-top:.8em;table-layout:fixed}
th:nth-child(1){width:26%}th:nth-child(2){width:14em}th:nth-child(3){width:11em}
th{text-align:left;font-weight:600;font-size:.85em;color:#5b6670;border-bottom:2px solid #dde2e7;padding:.3em .5em}
td{vertical-align:top;border-bottom:1px solid #eceff2;padding:.45em .5em}
td.endpoint code{font-weight:600;word-break:break-all}
td.share{white-space:nowrap}td.share .idle{white-space:normal;font-size:.9em}
.bar{display:flex;height:.8em;width:12em;background:#e3e7eb;border-radius:3px;overflow:hidden;margin-bottom:.2em}
.bar .m{background:#2e9e5b}.bar .d{background:#d64541}
td.fields ul{margin:0;padding-left:1em}
td.fields li{margin-bottom:.3em;word-break:break-all}
.count{color:#5b6670}
.tag{font-size:.75em;border:1px solid #aab3bb;border-radius:3px;padding:0 .3em;color:#6d7780}
li.noise{color:#9aa3ab}li.noise code{color:#9aa3ab}
.example{font-size:.85em;color:#4a5560}.example code{background:#f0f2f4;padding:0 .25em;border-radius:3px}
.side{color:#7a858f;font-size:.9em}
.idle{color:#8a949d}
.empty{font-size:1.2em;color:#5b6670;margin:2em 0}
";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::compare::report::Report;
    use crate::compare::verdict::{Difference, Kind, NotCompared, Role, Verdict};

    fn body(path: &str, left: &str, right: &str, noise: bool) -> Difference {
        Difference {
            noise,
            ..Difference::new(Kind::Body, path, left, right)
        }
    }

    /// v3 differs on one endpoint in three; a value carries a script.
    fn sample() -> CompareReport {
        let mut report = Report::new(
            vec![
                ("v3".to_owned(), Role::Candidate),
                ("http://10.200.0.5:8080".to_owned(), Role::Baseline),
            ],
            50,
        );
        let latency = Some(Duration::from_millis(4));
        for _ in 0..3 {
            let verdict = Verdict::Differ(vec![
                body(
                    "$.items[2].name",
                    "\"<script>alert(1)</script>\"",
                    "\"b\"",
                    false,
                ),
                body("$.ts", "1", "2", true),
            ]);
            report.record(0, "POST /orders/{id}", &verdict, latency, latency);
        }
        report.record(
            0,
            "POST /orders/{id}",
            &Verdict::Match(vec![]),
            latency,
            latency,
        );
        report.record(0, "GET /<img src=x>", &Verdict::Match(vec![]), None, None);
        report.record(
            0,
            "GET /slow",
            &Verdict::NotCompared(NotCompared::Timeout),
            None,
            None,
        );
        report.record(1, "POST /orders/{id}", &Verdict::Match(vec![]), None, None);
        report.snapshot()
    }

    #[test]
    fn values_from_the_network_are_escaped() {
        let page = render_html(&sample());
        assert!(!page.contains("<script"), "a script got through");
        assert!(!page.contains("<img"), "a tag got through");
        assert!(page.contains("&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"));
        assert!(page.contains("GET /&lt;img src=x&gt;"));
        assert_eq!(escape("a&b'\"<>"), "a&amp;b&#39;&quot;&lt;&gt;");
        assert_eq!(escape("GET /\x1b[2J"), "GET /\u{fffd}[2J");
        // A right-to-left override would turn the rest of the line around.
        assert_eq!(escape("/a\u{202e}gpj.exe"), "/a\\u{202e}gpj.exe");
    }

    #[test]
    fn the_page_fetches_nothing() {
        let page = render_html(&sample());
        for external in ["src=\"", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!page.contains(external), "{external} in the page");
        }
        // The only URL is a target's name, shown as text.
        assert_eq!(page.matches("http://").count(), 1);
        assert!(page.contains("<h2>http://10.200.0.5:8080</h2>"));
    }

    #[test]
    fn each_target_shows_its_verdict_and_its_endpoints_most_differing_first() {
        let page = render_html(&sample());
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(page.contains("<span class=\"percent\">40.0</span>"));
        assert!(page.contains("<span class=\"of\">of 5 compared</span>"));
        assert!(page.contains("<div class=\"verdict\">differs</div>"));
        assert!(page.contains("<div class=\"verdict\">measures noise</div>"));
        let orders = page.find("POST /orders/{id}").unwrap();
        let img = page.find("GET /&lt;img").unwrap();
        let slow = page.find("GET /slow").unwrap();
        assert!(
            orders < img && img < slow,
            "sorted by differ rate, then volume"
        );
        assert!(
            page.contains("style=\"width:25.0%\"></span><span class=\"d\" style=\"width:75.0%\"")
        );
        assert!(page.contains("75.0 % differ of 4"));
        assert!(page.contains("<code>$.items[*].name</code> <span class=\"count\">×3</span>"));
        assert!(page.contains("<li class=\"noise\"><code>$.ts</code> <span class=\"count\">×3</span> <span class=\"tag\">noise</span>"));
        assert!(page.contains("<span class=\"side\">at</span> <code>$.items[2].name</code>"));
        assert!(
            page.contains(
                "<div class=\"uncompared\">1 not compared (16.7 % of 6): timeout 1</div>"
            )
        );
        assert!(
            page.contains("<div class=\"idle\">1 not compared (100.0 % of 1): timeout 1</div>")
        );
        assert!(page.contains("latency p50 / p99: v1 4.0 / 4.0 ms · target 4.0 / 4.0 ms"));
    }

    /// Ten headers differ on every endpoint of v3, `GET /gone` answers
    /// 404 on few pairs, a body field named with a tag differs on two
    /// endpoints; v1b, a baseline, differs in one timestamp.
    fn planted() -> CompareReport {
        let mut report = Report::new(
            vec![
                ("v3".to_owned(), Role::Candidate),
                ("v1b".to_owned(), Role::Baseline),
            ],
            50,
        );
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
                } else {
                    differences.push(body("$['<b>x']", "1", "2", false));
                }
                report.record(0, endpoint, &Verdict::Differ(differences), None, None);
                let noise = Verdict::Differ(vec![body("$.ts", "1", "2", false)]);
                report.record(1, endpoint, &noise, None, None);
            }
        }
        report.snapshot()
    }

    #[test]
    fn the_most_severe_endpoint_comes_first_after_the_summary_with_its_flags() {
        let page = render_html(&planted());
        let v3 = &page[..page.find("<h2>v1b</h2>").unwrap()];
        let summary = v3.find("<h3>Across endpoints</h3>").unwrap();
        let table = v3
            .find("<h3>Endpoints, the most severe first</h3>")
            .unwrap();
        assert!(summary < table);
        assert!(v3.contains(
            "<li><code>x-planted-3</code> <span class=\"kind\">header</span> differs on 64/64 \
             exchanges, 3 of 3 endpoints <span class=\"hint\">— ignore with \
             <code>--compare-ignore-header X-Planted-3</code></span></li>"
        ));
        // A body field on two endpoints, before the headers, escaped.
        let field = v3
            .find("<li><code>$[&#39;&lt;b&gt;x&#39;]</code> <span class=\"kind\">body field</span> differs on 60/60 exchanges, 2 of 3 endpoints")
            .expect("the body field in the summary");
        assert!(field < v3.find("<code>x-planted-0</code>").unwrap());
        assert!(v3.contains("<code>--compare-ignore-field &#39;$[&#39;\\&#39;&#39;&lt;b&gt;x&#39;\\&#39;&#39;]&#39;</code>"));
        assert!(!v3.contains("<b>x"));
        // The 404 endpoint first, though its share is the same and its
        // volume the smallest; its status first among its fields.
        let gone = v3.find("<code>GET /gone</code>").unwrap();
        assert!(table < gone && gone < v3.find("<code>POST /orders</code>").unwrap());
        assert!(gone < v3.find("<code>GET /items/{id}</code>").unwrap());
        let row = &v3[gone..v3[gone..].find("</tr>").unwrap() + gone];
        assert!(row.contains(
            "<td class=\"fields\"><ul><li><code>status</code> <span class=\"count\">×4</span>"
        ));
        // Every field of the endpoint on the page: its own shown, those of
        // the summary folded.
        assert!(row.contains(
            "</ul><details><summary>10 fields also on other endpoints (across endpoints, \
             above)</summary><ul><li><code>header:x-planted-0</code>"
        ));
        let orders = v3.find("<code>POST /orders</code>").unwrap();
        let orders_row = &v3[orders..v3[orders..].find("</tr>").unwrap() + orders];
        assert!(orders_row.contains("<td class=\"fields\"><details><summary>11 fields also"));
        for i in 0..10 {
            assert!(
                row.contains(&format!("<code>header:x-planted-{i}</code>")),
                "{i}"
            );
        }
        assert!(!page.contains("see /compare"));
        // No baseline note: v1b measures the noise.
        assert!(!page.contains("noise not measured") && !page.contains("Noise not measured"));
    }

    #[test]
    fn the_baseline_card_is_neutral_and_says_what_noise_it_measured() {
        let page = render_html(&planted());
        let v1b = &page[page.find("<section class=\"target neutral\">").unwrap()..];
        assert!(v1b.starts_with(
            "<section class=\"target neutral\">\n<header>\n<div class=\"who\"><h2>v1b</h2>"
        ));
        assert!(v1b.contains(
            "<div class=\"measure\">noise measured on 64 compared: 1 field differs between v1 \
             and its own version, on 64 exchanges ($.ts)</div>"
        ));
        assert!(v1b.contains("<div class=\"verdict\">measures noise</div>"));
        assert!(v1b.contains("64 compared · 0 as v1 · 64 with noise"));
        assert!(v1b.contains("100.0 % with noise of 40"));
        assert!(v1b.contains("<li><code>$.ts</code> <span class=\"kind\">body field</span> noisy on 64/64 exchanges, 3 of 3 endpoints"));
        for verdict in [
            ">differs<",
            "differs on",
            "()",
            "% match",
            "class=\"percent\"",
        ] {
            assert!(!v1b.contains(verdict), "{verdict} on the baseline's card");
        }
        // Without it, the candidate says that noise was not measured.
        let mut alone = planted();
        alone.targets.pop();
        let page = render_html(&alone);
        assert!(page.contains(
            "<p class=\"note\">Noise not measured: no baseline (--baseline URL, v1&#39;s own \
             version elsewhere, tells noise from differences)</p>"
        ));
    }

    #[test]
    fn an_empty_report_says_nothing_was_compared_yet() {
        let report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10).snapshot();
        let page = render_html(&report);
        assert!(page.contains("Nothing compared yet"));
        assert!(page.contains("Waiting for: v2 (candidate)"));
        assert!(!page.contains("<table"));
        let none = render_html_refreshing(&CompareReport::default(), None);
        assert!(none.contains("Nothing compared yet") && !none.contains("refresh"));
        assert!(none.ends_with("</html>\n"));
    }
}
