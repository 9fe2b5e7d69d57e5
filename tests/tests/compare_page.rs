//! The important difference first (issue 23): a new version that adds ten
//! headers to every answer (a framework's `X-Powered-By`, CORS, cache
//! headers) and lost one endpoint (`GET /cached`: 200 → 404, the fewest
//! requests). The real agent compares it with v1; its report must put the
//! lost endpoint first and the ten headers in one summary across
//! endpoints, each with the flag that ignores it, and show every field
//! that differs: in `/compare`, on `/compare.html` as headless chromium
//! renders it, and in `compare-report` (through `--metrics-addr` and
//! `--url`), with the headline saying what was compared.
//!
//! ```text
//!  client ──▶ v1 AppServer (mirror-agent on veth-s, ingress + egress)
//!                 └─veth-sh0──▶ shadow 0: AppServer (v3: 10 headers, /cached gone)
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test compare_page`.
//! With `MIRROR_PAGE_SCREENSHOT=/tmp/page.png` the page is also saved as
//! chromium draws it, for a person to look at.

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{Netns, ScratchDir, http_client, metrics::DEFAULT_ADDR};
use mirror_tests::compare_rig::{AppRig, count, endpoint, serial, stop, target};
use mirror_tests::{
    agent,
    app::{Behaviour, Regressions},
    app_client::ClientRequest,
    or_skip,
    rig::shadow_url,
};

/// What v3 adds to every answer, as a framework upgrade would.
const PLANTED_HEADERS: [(&str, &str); 10] = [
    ("X-Powered-By", "Express"),
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Credentials", "true"),
    ("Cache-Control", "no-cache"),
    ("Pragma", "no-cache"),
    ("Vary", "Origin, Accept-Encoding"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Ratelimit-Limit", "1000"),
];

/// The endpoint v3 lost.
const GONE: &str = "GET /cached";

/// The requests: (request, v1's status), by endpoint: 40 items, 20
/// orders, 10 empties, 10 streams, 8 cached (the fewest).
fn traffic() -> Vec<(ClientRequest, u16)> {
    let mut requests = Vec::new();
    for n in 1..=40u64 {
        requests.push((ClientRequest::new("GET", &format!("/items/{n}"), &[]), 200));
    }
    for n in 1..=20u64 {
        let order = format!("{{\"item\":{n},\"quantity\":{}}}", n % 3 + 1);
        requests.push((
            ClientRequest::new("POST", "/orders", &["Content-Type: application/json"])
                .body(order, false),
            201,
        ));
    }
    for n in 0..10u64 {
        requests.push((ClientRequest::new("GET", "/empty", &[]), 204));
        requests.push((
            ClientRequest::new("GET", &format!("/stream/{}", n % 3 + 1), &[]),
            200,
        ));
    }
    for _ in 0..8 {
        requests.push((ClientRequest::new("GET", "/cached", &[]), 200));
    }
    requests
}

/// Every endpoint of the traffic, as the agent templates it.
const ENDPOINTS: [&str; 5] = [
    "GET /items/{id}",
    "POST /orders",
    "GET /empty",
    "GET /stream/{id}",
    GONE,
];

fn v3() -> Behaviour {
    Behaviour {
        regressions: Regressions {
            extra_headers: PLANTED_HEADERS
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            gone: vec!["/cached".to_owned()],
            ..Regressions::default()
        },
        ..Behaviour::v1("v3")
    }
}

/// Fails if the report buries the lost endpoint behind the ones whose
/// headers differ (it is the smallest; by share they all differ on every
/// pair), if the ten headers are not summarised across endpoints with the
/// flag that ignores each, if a differing field is left off the page or
/// the terminal ("see /compare"), or if the headline does not say what
/// the rate is of.
#[test]
fn the_lost_endpoint_comes_first_and_the_headers_everywhere_are_one_summary_with_their_flags()
-> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(Behaviour::v1("v1"), vec![Some(v3())])?;
    let url = shadow_url(0);
    let agent = rig.agent(&["--shadow", &url, "--compare"], 1)?;
    let requests = traffic();
    let total = requests.len() as u64;
    let mut clients = vec![rig.client()?, rig.client()?];
    for (i, (request, status)) in requests.iter().enumerate() {
        let response = clients[i % 2].exchange(request)?;
        ensure!(
            response.status == *status,
            "{}: v1 answered {}, expected {status}",
            request.head.lines().next().unwrap_or(""),
            response.status
        );
    }
    for client in clients {
        client.close()?;
    }
    let report = rig.judged(&[&url], total)?;
    let v3 = target(&report, &url)?;

    // The JSON: every pair differs (the headers), the lost endpoint first.
    ensure!(
        (count(v3, "compared")?, count(v3, "differ")?) == (total, total),
        "v3 should differ on all {total} pairs: {v3:#}"
    );
    let order: Vec<&str> = v3["endpoints"]
        .as_array()
        .context("no endpoints")?
        .iter()
        .filter_map(|e| e["endpoint"].as_str())
        .collect();
    ensure!(
        order.first() == Some(&GONE) && order.len() == ENDPOINTS.len(),
        "the lost endpoint is not first: {order:?}"
    );
    ensure!(count(&endpoint(v3, GONE)?["kinds"], "status")? == 8);
    let summary = v3["summary"].as_array().context("no `summary` array")?;
    for (name, _) in PLANTED_HEADERS {
        let path = format!("header:{}", name.to_ascii_lowercase());
        let field = summary
            .iter()
            .find(|f| f["path"] == path.as_str())
            .with_context(|| format!("{path} not in the summary: {summary:#?}"))?;
        let hint = format!("--compare-ignore-header {name}");
        ensure!(
            (
                count(field, "count")?,
                count(field, "endpoints")?,
                count(field, "compared")?
            ) == (total, 5, total)
                && field["kind"] == "header"
                && field["hint"] == hint.as_str(),
            "{path} in the summary: {field:#}"
        );
    }

    // The page, as chromium renders it.
    let dom = rendered_page(rig.rig.primary())?;
    for (name, _) in PLANTED_HEADERS {
        let lower = name.to_ascii_lowercase();
        ensure!(
            dom.contains(&format!(
                "<code>{lower}</code> <span class=\"kind\">header</span> differs on {total}/{total} exchanges, 5 of 5 endpoints"
            )) && dom.contains(&format!("<code>--compare-ignore-header {name}</code>")),
            "the page's summary lacks {name} and its flag: {dom}"
        );
    }
    ensure!(
        dom.contains(&format!(
            "<span class=\"percent\">0.0</span><span class=\"unit\">% match</span> <span class=\"of\">of {total} compared</span>"
        )),
        "the headline does not say what the rate is of: {dom}"
    );
    let table = dom
        .find("Endpoints, the most severe first")
        .context("no endpoint table")?;
    let position = |name: &str| dom[table..].find(&format!("<code>{name}</code>"));
    let gone = position(GONE).context("the lost endpoint is not on the page")?;
    for other in &ENDPOINTS[..4] {
        let at = position(other).with_context(|| format!("{other} is not on the page"))?;
        ensure!(gone < at, "{other} is shown before {GONE}");
    }
    // Every differing field of every endpoint is on the page, in its row.
    for name in ENDPOINTS {
        let start = table + position(name).context("endpoint")?;
        let row = &dom[start..start + dom[start..].find("</tr>").context("row end")?];
        let fields = endpoint(v3, name)?["fields"]
            .as_array()
            .context("no fields")?;
        ensure!(fields.len() >= 10, "{name}: {fields:?}");
        for field in fields {
            let path = field["path"].as_str().context("path")?;
            ensure!(
                row.contains(&format!("<code>{path}</code>")),
                "{name}: {path} is not on the page: {row}"
            );
        }
    }
    ensure!(
        dom[gone + table..].contains("<td class=\"fields\"><ul><li><code>status</code>"),
        "the lost endpoint's status is not its first field"
    );
    ensure!(!dom.contains("see /compare"), "a field sent to the JSON");
    ensure!(
        dom.contains("Noise not measured: no baseline"),
        "no word that noise was not measured"
    );

    // The terminal, through --metrics-addr and through --url.
    let binary = agent::binary()?;
    let binary = binary.to_str().context("binary path")?;
    let text = rig.rig.primary().exec(
        binary,
        [
            "compare-report",
            "--metrics-addr",
            &DEFAULT_ADDR.to_string(),
        ],
    )?;
    let by_url = rig.rig.primary().exec(
        binary,
        ["compare-report", "--url", &format!("http://{DEFAULT_ADDR}")],
    )?;
    ensure!(
        text == by_url,
        "--url and --metrics-addr differ:\n{text}\n{by_url}"
    );
    ensure!(
        text.starts_with(&format!(
            "{url} (candidate): 0.0 % match of {total} compared, {total} differ"
        )),
        "{text}"
    );
    ensure!(
        text.contains(&format!(
            "\n    x-powered-by header differs on {total}/{total} exchanges, 5 of 5 endpoints \
             — ignore with --compare-ignore-header X-Powered-By\n"
        )),
        "{text}"
    );
    let table = text.find("\n  ENDPOINT").context("no table")?;
    let first_row = text[table + 1..].lines().nth(1).context("no row")?;
    ensure!(first_row.starts_with(&format!("  {GONE} ")), "{text}");
    // The lost endpoint's own fields in full, the ten headers named once
    // more under it, with their counts.
    let gone_lines: Vec<&str> = text[text.find(&format!("\n  {GONE} ")).context("row")? + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .collect();
    ensure!(
        gone_lines.len() == 4
            && gone_lines[0] == "      status ×8: v1 200, target 404"
            && gone_lines[3].starts_with("      also across endpoints: header:"),
        "{text}"
    );
    for (name, _) in PLANTED_HEADERS {
        let named = format!("header:{} ×8", name.to_ascii_lowercase());
        ensure!(
            gone_lines[3].contains(&named),
            "{named} cut or missing: {text}"
        );
    }

    let stopped = stop(agent)?;
    let logs = format!("{}{}", stopped.exit.stdout, stopped.exit.stderr);
    ensure!(
        logs.contains(&format!(
            "final counts: comparison: {url} (candidate): 0.0 % match of {total} compared"
        )) && logs.contains(&format!(
            "worst endpoint: {GONE} 100.0 % of 8 differ (status)"
        )),
        "the verdict line: {logs}"
    );
    Ok(())
}

/// `/compare.html` as headless chromium renders it (its DOM), run in the
/// agent's namespace where the metrics address is; also a screenshot when
/// `MIRROR_PAGE_SCREENSHOT` names a file.
fn rendered_page(primary: &Netns) -> Result<String> {
    let (status, html) = http_client::get(primary, DEFAULT_ADDR, "/compare.html")?;
    ensure!(status == 200, "/compare.html answered {status}");
    ensure!(!html.contains("<script"), "the page carries a script");
    let scratch = ScratchDir::new("chromium")?;
    let profile = format!("--user-data-dir={}", scratch.path().display());
    let page = format!("http://{DEFAULT_ADDR}/compare.html");
    let chromium = |what: &str| {
        primary.exec(
            "timeout",
            [
                "25",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1400,2600",
                &profile,
                what,
                &page,
            ],
        )
    };
    if let Some(file) = std::env::var_os("MIRROR_PAGE_SCREENSHOT") {
        chromium(&format!("--screenshot={}", file.to_string_lossy()))?;
    }
    chromium("--dump-dom")
}
