//! Every query users get from deploy/ runs against a real Prometheus
//! scraping a real agent, and returns data: each `expr` of the Grafana
//! dashboard and its `target` variable, each query of the Argo Rollouts
//! AnalysisTemplate and of the Flagger MetricTemplates (rendered with their
//! own placeholders, as those tools render them), and each rule of
//! mirror-rules.yml (which this Prometheus also loads and evaluates).
//!
//! ```text
//!  client ──▶ v1 AppServer (mirror-agent --compare on veth-s) ◀── Prometheus
//!                 ├─veth-sh0──▶ shadow 0: v2, identical        (scrapes, rules)
//!                 └─veth-sh1──▶ shadow 1: v3, GET /items/{n} answers 500 when 10 | n
//! ```
//!
//! "Returns data" is at least one finite sample; and so that a misspelt
//! metric cannot pass, each query is also run once per metric name in it
//! with that name misspelt, and must then return nothing. The gate's
//! decisions are checked too: the templates pass v2 and fail v3, the rules'
//! differ alert is pending for v3 alone, the Argo web metric and Flagger's
//! webhooks get 200 from `/verdict` for v2 and 412 for v3.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test gate_queries`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use mirror_testkit::{Netns, http_client, metrics::DEFAULT_ADDR};
use mirror_tests::{
    Prometheus,
    app::{Behaviour, Regressions},
    app_client::{AppClient, ClientRequest},
    compare_rig::{AppRig, serial, stop},
    or_skip,
    prometheus::Series,
    rig::shadow_url,
};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// Prometheus scrapes the agent and evaluates the rules this often.
const SCRAPE: Duration = Duration::from_secs(1);
/// How long a scrape or a rule evaluation may take to show.
const SHOWS_WITHIN: Duration = Duration::from_secs(20);
/// The traffic after the warm-up: items 1..=ITEMS (every tenth differs on
/// v3), then EMPTIES `GET /empty`. More than the rule's min-compared
/// (500), so that every template has a verdict.
const ITEMS: u64 = 400;
const EMPTIES: u64 = 300;
/// What the dashboard's time-range and rate variables are given.
const RANGE: &str = "5m";
const RATE_INTERVAL: &str = "1m";

fn deploy_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

// ---------------------------------------------------------------------------
// the queries of deploy/, read from its files
// ---------------------------------------------------------------------------

/// One query, rendered for one target.
#[derive(Clone, Debug)]
struct Query {
    /// The file and where in it, for messages.
    source: String,
    promql: String,
}

/// Every `expr` of the dashboard (panel targets, rows' panels, anything
/// holding one) and the query of each `query` variable, for `target`.
/// Grafana's `label_values(METRIC, LABEL)` is what it asks Prometheus'
/// label API: the same series as `group by (LABEL) (METRIC)`.
fn dashboard_queries(target: &str) -> Result<Vec<Query>> {
    let path = deploy_file("grafana/mirror-dashboard.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let dashboard: Value = serde_json::from_str(&text).context("the dashboard is not JSON")?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard["panels"], "panels", &mut exprs);
    ensure!(!exprs.is_empty(), "no expr in the dashboard's panels");
    let mut queries = Vec::new();
    for (at, expr) in exprs {
        queries.push(Query {
            source: format!("dashboard {at}"),
            promql: render_grafana(&expr, target)?,
        });
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .context("no templating list")?;
    let mut found_target = false;
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().unwrap_or("?");
        found_target |= name == "target";
        let query = match &variable["query"] {
            Value::String(q) => q.as_str(),
            v => v["query"]
                .as_str()
                .context("a query variable without its query")?,
        };
        queries.push(Query {
            source: format!("dashboard variable {name}"),
            promql: label_values(query)?,
        });
    }
    ensure!(found_target, "no `target` query variable in the dashboard");
    Ok(queries)
}

fn collect_exprs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => {
                        let title = map.get("refId").and_then(Value::as_str).unwrap_or("");
                        out.push((format!("{at} {title}"), expr.clone()));
                    }
                    _ => collect_exprs(v, &format!("{at}.{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let name = v["title"].as_str().map(|t| format!("[{t}]"));
                collect_exprs(v, &format!("{at}{}", name.unwrap_or(format!("[{i}]"))), out);
            }
        }
        _ => {}
    }
}

/// `$target` / `${target}` (the variable, one target chosen),
/// `$__range`, `$__rate_interval`; any other `$` is a placeholder this
/// test does not know, and fails it.
fn render_grafana(expr: &str, target: &str) -> Result<String> {
    let rendered = expr
        .replace("${target}", target)
        .replace("$target", target)
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE);
    ensure!(
        !rendered.contains('$'),
        "a placeholder left in {rendered:?}"
    );
    Ok(rendered)
}

fn label_values(query: &str) -> Result<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .with_context(|| format!("not label_values(METRIC, LABEL): {query:?}"))?;
    let (metric, label) = inner
        .rsplit_once(',')
        .with_context(|| format!("label_values without a label: {query:?}"))?;
    Ok(format!("group by ({}) ({})", label.trim(), metric.trim()))
}

/// A rule of mirror-rules.yml.
#[derive(Clone, Debug)]
struct Rule {
    /// The recorded series' name, or the alert's.
    name: String,
    alert: bool,
    expr: String,
}

fn rules_path() -> PathBuf {
    deploy_file("prometheus/mirror-rules.yml")
}

fn rules() -> Result<Vec<Rule>> {
    let docs = yaml(&rules_path())?;
    let mut rules = Vec::new();
    for group in docs[0]["groups"].as_vec().context("no groups")? {
        for rule in group["rules"].as_vec().context("a group without rules")? {
            let (name, alert) = match (rule["record"].as_str(), rule["alert"].as_str()) {
                (Some(name), None) => (name, false),
                (None, Some(name)) => (name, true),
                _ => bail!("a rule neither record nor alert: {rule:?}"),
            };
            let expr = rule["expr"]
                .as_str()
                .with_context(|| format!("{name}: no expr"))?;
            rules.push(Rule {
                name: name.to_owned(),
                alert,
                expr: expr.to_owned(),
            });
        }
    }
    // Every `expr` of the file is a rule's.
    let mut all = Vec::new();
    strings_under(&docs[0], "expr", "", &mut all);
    ensure!(
        all.len() == rules.len(),
        "{} exprs, {} rules",
        all.len(),
        rules.len()
    );
    Ok(rules)
}

/// The AnalysisTemplate's metrics: each Prometheus query and web URL
/// rendered with its args (`target` given, the others their defaults).
struct Argo {
    prometheus: Vec<(String, String)>,
    web: Vec<(String, String)>,
    args: BTreeMap<String, String>,
}

fn argo(target: &str) -> Result<Argo> {
    let docs = yaml(&deploy_file("argo/analysis-template.yaml"))?;
    let spec = &docs[0]["spec"];
    ensure!(docs[0]["kind"].as_str() == Some("AnalysisTemplate"));
    let mut args = BTreeMap::new();
    for arg in spec["args"].as_vec().context("no args")? {
        let name = arg["name"].as_str().context("an arg without a name")?;
        if let Some(value) = arg["value"].as_str() {
            args.insert(name.to_owned(), value.to_owned());
        }
    }
    args.insert("target".to_owned(), target.to_owned());
    let render = |text: &str| {
        render_braces(text, |name| {
            name.strip_prefix("args.")
                .and_then(|arg| args.get(arg))
                .cloned()
        })
    };
    let (mut prometheus, mut web) = (Vec::new(), Vec::new());
    for metric in spec["metrics"].as_vec().context("no metrics")? {
        let name = metric["name"].as_str().context("a metric without a name")?;
        let provider = &metric["provider"];
        if let Some(query) = provider["prometheus"]["query"].as_str() {
            prometheus.push((name.to_owned(), render(query)?));
        } else if let Some(url) = provider["web"]["url"].as_str() {
            web.push((name.to_owned(), render(url)?));
        } else {
            bail!("metric {name}: a provider this test does not run: {provider:?}");
        }
    }
    Ok(Argo {
        prometheus,
        web,
        args,
    })
}

/// A Flagger metric as the Canary uses it: its template's query rendered
/// with the Canary's `templateVariables` (`shadow` set to the test's
/// target) and `interval`, and its threshold range.
struct FlaggerMetric {
    name: String,
    promql: String,
    min: Option<f64>,
    max: Option<f64>,
}

struct Flagger {
    metrics: Vec<FlaggerMetric>,
    /// (name, URL) of each webhook.
    webhooks: Vec<(String, String)>,
}

fn flagger(target: &str) -> Result<Flagger> {
    let docs = yaml(&deploy_file("flagger/metric-template.yaml"))?;
    let kind = |doc: &Yaml, kind: &str| doc["kind"].as_str() == Some(kind);
    let templates: BTreeMap<&str, &str> = docs
        .iter()
        .filter(|doc| kind(doc, "MetricTemplate"))
        .map(|doc| {
            Ok((
                doc["metadata"]["name"]
                    .as_str()
                    .context("a template without a name")?,
                doc["spec"]["query"]
                    .as_str()
                    .context("a template without a query")?,
            ))
        })
        .collect::<Result<_>>()?;
    let canary = docs
        .iter()
        .find(|doc| kind(doc, "Canary"))
        .context("no Canary")?;
    let analysis = &canary["spec"]["analysis"];
    let mut metrics = Vec::new();
    let mut used = Vec::new();
    for metric in analysis["metrics"].as_vec().context("no metrics")? {
        let name = metric["name"].as_str().context("a metric without a name")?;
        let template = metric["templateRef"]["name"]
            .as_str()
            .with_context(|| format!("{name}: no templateRef"))?;
        let query = templates
            .get(template)
            .with_context(|| format!("{name}: no MetricTemplate {template}"))?;
        used.push(template);
        let interval = metric["interval"]
            .as_str()
            .with_context(|| format!("{name}: no interval"))?;
        let mut variables = BTreeMap::new();
        if let Some(given) = metric["templateVariables"].as_hash() {
            for (k, v) in given {
                let (k, v) = (k.as_str().unwrap_or("?"), v.as_str().unwrap_or("?"));
                variables.insert(k.to_owned(), v.to_owned());
            }
        }
        ensure!(
            variables.contains_key("shadow"),
            "{name}: no `shadow` variable"
        );
        variables.insert("shadow".to_owned(), target.to_owned());
        let promql = render_braces(query, |placeholder| match placeholder {
            "interval" => Some(interval.to_owned()),
            p => p
                .strip_prefix("variables.")
                .and_then(|v| variables.get(v))
                .cloned(),
        })?;
        let bound = |key: &str| number(&metric["thresholdRange"][key]);
        metrics.push(FlaggerMetric {
            name: name.to_owned(),
            promql,
            min: bound("min"),
            max: bound("max"),
        });
    }
    ensure!(
        templates.keys().all(|t| used.contains(t)),
        "a MetricTemplate the Canary does not use: {:?}",
        templates.keys()
    );
    let webhooks = analysis["webhooks"]
        .as_vec()
        .context("no webhooks")?
        .iter()
        .map(|hook| {
            Ok((
                hook["name"]
                    .as_str()
                    .context("a webhook without a name")?
                    .to_owned(),
                hook["url"]
                    .as_str()
                    .context("a webhook without a url")?
                    .to_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    Ok(Flagger { metrics, webhooks })
}

fn number(value: &Yaml) -> Option<f64> {
    match value {
        Yaml::Integer(n) => Some(*n as f64),
        Yaml::Real(r) => r.parse().ok(),
        _ => None,
    }
}

/// `{{ NAME }}` (spaces optional) replaced by `lookup(NAME)`; a name it
/// does not know fails.
fn render_braces(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .with_context(|| format!("an unclosed {{{{ in {text:?}"))?;
        let name = rest[start + 2..start + end].trim();
        out.push_str(&lookup(name).with_context(|| format!("no value for {{{{ {name} }}}}"))?);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn yaml(path: &Path) -> Result<Vec<Yaml>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    ensure!(!docs.is_empty(), "{}: empty", path.display());
    Ok(docs)
}

/// Every string under a key named `key`, anywhere.
fn strings_under(yaml: &Yaml, key: &str, at: &str, out: &mut Vec<(String, String)>) {
    match yaml {
        Yaml::Hash(hash) => {
            for (k, v) in hash {
                let k = k.as_str().unwrap_or("?");
                match v {
                    Yaml::String(s) if k == key => out.push((format!("{at}.{k}"), s.clone())),
                    v => strings_under(v, key, &format!("{at}.{k}"), out),
                }
            }
        }
        Yaml::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings_under(v, key, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// judging a query's answer
// ---------------------------------------------------------------------------

/// The metric names in a PromQL expression: identifiers naming mirror's
/// series (raw `mirror_...` or recorded `level:mirror_...:ops`), outside
/// string literals.
fn metric_names(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = promql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            // Skip the string, escapes included.
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    end = j + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &promql[i..end];
            if (word.starts_with("mirror_") || word.contains(":mirror_"))
                && !names.iter().any(|n| n == word)
            {
                names.push(word.to_owned());
            }
        }
    }
    names
}

fn has_data(series: &[Series]) -> bool {
    series.iter().any(|s| s.value.is_finite())
}

/// The one value of a query answering one series.
fn single(series: &[Series], what: &str) -> Result<f64> {
    match series {
        [one] => Ok(one.value),
        _ => bail!("{what}: one series expected, got {series:?}"),
    }
}

/// Runs `query`: it must return data; then once per metric name in it,
/// that name misspelt: it must then return none (a query that answers
/// whatever its metrics are would pass a typo).
fn check_query(server: &Prometheus, netns: &Netns, query: &Query) -> Result<Vec<Series>> {
    let answer = server
        .query(netns, &query.promql)
        .with_context(|| query.source.clone())?;
    ensure!(
        has_data(&answer),
        "{}: no data from {}: {answer:?}",
        query.source,
        query.promql
    );
    let names = metric_names(&query.promql);
    ensure!(
        !names.is_empty(),
        "{}: no metric of mirror in {}",
        query.source,
        query.promql
    );
    for name in names {
        let typo = query.promql.replace(&name, &format!("{name}_typo"));
        let broken = server.query(netns, &typo)?;
        ensure!(
            !has_data(&broken),
            "{}: with {name} misspelt it still answers {broken:?}: {typo}",
            query.source
        );
    }
    Ok(answer)
}

// ---------------------------------------------------------------------------
// the test
// ---------------------------------------------------------------------------

/// v3: `GET /items/{n}` answers 500 for every tenth `n`.
fn v3() -> Behaviour {
    Behaviour {
        regressions: Regressions {
            item_500_every: Some(10),
            ..Regressions::default()
        },
        ..Behaviour::v1("v3")
    }
}

/// `requests` over two keep-alive connections; v1 must answer each with
/// its status.
fn send(rig: &AppRig, requests: &[(ClientRequest, u16)]) -> Result<()> {
    let mut clients = [rig.client()?, rig.client()?];
    for (i, (request, status)) in requests.iter().enumerate() {
        let response = clients[i % 2].exchange(request)?;
        ensure!(
            response.status == *status,
            "{}: v1 answered {}",
            request.head.lines().next().unwrap_or(""),
            response.status
        );
    }
    for client in clients {
        client.close()?;
    }
    Ok(())
}

fn traffic(items: std::ops::RangeInclusive<u64>, empties: u64) -> Vec<(ClientRequest, u16)> {
    let mut requests: Vec<_> = items
        .map(|n| (ClientRequest::new("GET", &format!("/items/{n}"), &[]), 200))
        .collect();
    requests.extend((0..empties).map(|_| (ClientRequest::new("GET", "/empty", &[]), 204)));
    requests
}

/// `(status, body)` of `METHOD url` sent to the agent's metrics address,
/// whatever host the URL names (the templates name the cluster's).
fn ask_agent(netns: &Netns, method: &str, url: &str) -> Result<(u16, Value)> {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .with_context(|| format!("no path in {url}"))?;
    let (status, body) = if method == "GET" {
        http_client::get(netns, DEFAULT_ADDR, path)?
    } else {
        // Flagger POSTs its webhooks, with a JSON payload.
        let payload =
            r#"{"name":"myapp","namespace":"default","phase":"Progressing","metadata":{}}"#;
        let request = ClientRequest::new(
            method,
            path,
            &["Host: 127.0.0.1", "Content-Type: application/json"],
        )
        .body(payload, false);
        let mut client = AppClient::connect(netns, DEFAULT_ADDR)?;
        let response = client.exchange(&request)?;
        (
            response.status,
            String::from_utf8_lossy(&response.body).into_owned(),
        )
    };
    let body = serde_json::from_str(&body)
        .with_context(|| format!("{method} {path}: {status}, not JSON: {body}"))?;
    Ok((status, body))
}

#[test]
fn every_query_of_the_dashboard_the_rules_and_the_templates_returns_data() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(
        Behaviour::v1("v1"),
        vec![Some(Behaviour::v1("v2")), Some(v3())],
    )?;
    let (v2, v3_url) = (shadow_url(0), shadow_url(1));
    let agent = rig.agent(&["--shadow", &v2, "--shadow", &v3_url, "--compare"], 2)?;
    let netns = rig.rig.primary();
    let server = Prometheus::start_with_rules(netns, DEFAULT_ADDR, SCRAPE, &[&rules_path()])?;

    // Prometheus applies its scrape targets a few seconds after it starts:
    // the first scrape, then a warm-up, so that the endpoints' series
    // exist (at low values) and are scraped before the traffic whose rates
    // the queries see.
    let (scraped, up) = server.wait_for(netns, "up == 1", SHOWS_WITHIN, has_data)?;
    ensure!(scraped, "no scrape: {up:?}; its log: {}", server.log());
    let warm_up = traffic(1..=1, 1);
    send(&rig, &warm_up)?;
    rig.judged(&[&v2, &v3_url], warm_up.len() as u64)?;
    std::thread::sleep(SCRAPE * 3);
    send(&rig, &traffic(1..=ITEMS, EMPTIES))?;
    let total = warm_up.len() as u64 + ITEMS + EMPTIES;
    rig.judged(&[&v2, &v3_url], total)?;

    // Prometheus has every comparison, for both targets.
    let compared = "sum by (target) (mirror_compare_exchanges_total)";
    let (seen, series) = server.wait_for(netns, compared, SHOWS_WITHIN, |series| {
        series.len() == 2 && series.iter().all(|s| s.value == total as f64)
    })?;
    ensure!(
        seen,
        "Prometheus: {series:?} (expected {total} each); its log: {}",
        server.log()
    );

    // The rules: each expression returns data (alerts: each series they
    // read does).
    let rules = rules()?;
    // Recorded series read recorded series: each evaluated first.
    for rule in rules.iter().filter(|r| !r.alert) {
        let (recorded, series) = server.wait_for(netns, &rule.name, SHOWS_WITHIN, has_data)?;
        ensure!(recorded, "{}: not recorded: {series:?}", rule.name);
    }
    for rule in &rules {
        let source = format!("mirror-rules.yml {}", rule.name);
        if rule.alert {
            for name in metric_names(&rule.expr) {
                let query = Query {
                    source: format!("{source} ({name})"),
                    promql: name,
                };
                check_query(&server, netns, &query)?;
            }
        } else {
            let query = Query {
                source: source.clone(),
                promql: rule.expr.clone(),
            };
            check_query(&server, netns, &query)?;
        }
    }
    // The fleet's differ share: v3 over 1 %, v2 none; the alert's
    // expression holds for v3 alone, and Prometheus has it pending.
    let share = |target: &str| -> Result<f64> {
        let query =
            format!("target:mirror_compare_exchanges_differ:ratio_rate5m{{target=\"{target}\"}}");
        single(&server.query(netns, &query)?, &query)
    };
    let (v2_share, v3_share) = (share(&v2)?, share(&v3_url)?);
    ensure!(
        v2_share == 0.0 && v3_share > 0.01,
        "differ shares: v2 {v2_share}, v3 {v3_share}"
    );
    let differs = rules
        .iter()
        .find(|r| r.name == "MirrorTargetDiffers")
        .context("no MirrorTargetDiffers alert")?;
    let firing = server.query(netns, &differs.expr)?;
    ensure!(
        firing.len() == 1 && firing[0].labels.get("target") == Some(&v3_url),
        "MirrorTargetDiffers: {firing:?}"
    );
    let alerts = r#"ALERTS{alertname="MirrorTargetDiffers"}"#;
    let (pending, series) = server.wait_for(netns, alerts, SHOWS_WITHIN, |s| !s.is_empty())?;
    ensure!(
        pending
            && series.len() == 1
            && series[0].labels.get("target") == Some(&v3_url)
            && series[0].labels.get("alertstate").map(String::as_str) == Some("pending"),
        "ALERTS: {series:?}"
    );

    for target in [&v2, &v3_url] {
        // The dashboard, with `target` chosen.
        let queries = dashboard_queries(target)?;
        for query in &queries {
            let answer = check_query(&server, netns, query)?;
            if query.source.contains("variable target") {
                let targets: Vec<_> = answer
                    .iter()
                    .filter_map(|s| s.labels.get("target"))
                    .collect();
                ensure!(
                    targets.contains(&&v2) && targets.contains(&&v3_url),
                    "the target variable lists {targets:?}"
                );
            }
        }

        // Argo Rollouts: data, and the decision its conditions take.
        let argo = argo(target)?;
        let arg = |name: &str| -> Result<f64> {
            argo.args
                .get(name)
                .with_context(|| format!("no default for arg {name}"))?
                .parse()
                .with_context(|| format!("arg {name} is not a number"))
        };
        ensure!(argo.prometheus.len() == 2 && argo.web.len() == 1);
        for (name, promql) in &argo.prometheus {
            let query = Query {
                source: format!("argo {name} ({target})"),
                promql: promql.clone(),
            };
            let value = single(&check_query(&server, netns, &query)?, &query.source)?;
            match name.as_str() {
                "mirror-compared" => {
                    ensure!(value >= arg("min-compared")?, "{}: {value}", query.source)
                }
                "mirror-differ-percent" => {
                    let passes = value <= arg("max-differ-percent")?;
                    ensure!(
                        passes == (target == &v2),
                        "{}: {value} % (passes: {passes})",
                        query.source
                    );
                }
                other => bail!("an Argo metric this test does not judge: {other}"),
            }
        }
        // Its web metric: /verdict answers 200 "pass" for v2, 412 "fail"
        // for v3 (which Argo's web provider takes as an error).
        for (name, url) in &argo.web {
            let (status, body) = ask_agent(netns, "GET", url)?;
            let expected = if target == &v2 {
                (200, "pass")
            } else {
                (412, "fail")
            };
            ensure!(
                (status, body["verdict"].as_str().unwrap_or("?")) == expected,
                "argo {name} ({target}): {status} {body}"
            );
        }

        // Flagger: data, and the threshold ranges' decision.
        let flagger = flagger(target)?;
        ensure!(flagger.metrics.len() == 2);
        for metric in &flagger.metrics {
            let query = Query {
                source: format!("flagger {} ({target})", metric.name),
                promql: metric.promql.clone(),
            };
            let value = single(&check_query(&server, netns, &query)?, &query.source)?;
            let passes = metric.min.is_none_or(|min| value >= min)
                && metric.max.is_none_or(|max| value <= max);
            let expected = target == &v2 || metric.name == "mirror-compared";
            ensure!(
                passes == expected,
                "{}: {value} in {:?}..{:?}: passes {passes}",
                query.source,
                metric.min,
                metric.max
            );
        }
        // Its webhooks, POSTed as Flagger does, to this target: 2xx passes.
        for (name, url) in &flagger.webhooks {
            let (base, query) = url.split_once('?').context("a webhook without a query")?;
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("target", _)) => format!("target={target}"),
                    _ => pair.to_owned(),
                })
                .collect();
            let url = format!("{base}?{}", query.join("&"));
            let (status, body) = ask_agent(netns, "POST", &url)?;
            ensure!(
                (200..300).contains(&status) == (target == &v2),
                "flagger {name} ({target}): {status} {body}"
            );
        }
    }

    stop(agent)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// the readers themselves (no kernel)
// ---------------------------------------------------------------------------

#[test]
fn metric_names_are_found_outside_strings() {
    assert_eq!(
        metric_names(
            r#"sum by (target) (rate(mirror_compare_total{result!~"mirror_not_a_name|x"}[5m]))
               / (target:mirror_compare_exchanges:rate5m > 0) and on (target) up"#
        ),
        [
            "mirror_compare_total",
            "target:mirror_compare_exchanges:rate5m"
        ]
    );
}

#[test]
fn placeholders_are_rendered_or_refused() {
    let args = |name: &str| (name == "args.target").then(|| "http://v2:9000".to_owned());
    assert_eq!(
        render_braces(r#"x{target="{{args.target}}"}[{{ args.target }}]"#, args).unwrap(),
        r#"x{target="http://v2:9000"}[http://v2:9000]"#
    );
    assert!(render_braces("{{args.window}}", args).is_err());
    assert!(render_grafana("x[$__interval]", "t").is_err());
    assert_eq!(
        label_values("label_values(mirror_compare_exchanges_total, target)").unwrap(),
        "group by (target) (mirror_compare_exchanges_total)"
    );
}

/// Each file yields the queries this test runs: none silently skipped.
#[test]
fn every_file_of_deploy_yields_its_queries() {
    let dashboard = dashboard_queries("http://v2:9000").unwrap();
    assert!(dashboard.len() >= 10, "{dashboard:?}");
    let rules = rules().unwrap();
    assert!(rules.iter().filter(|r| r.alert).count() >= 5, "{rules:?}");
    assert!(rules.iter().filter(|r| !r.alert).count() >= 10, "{rules:?}");
    let argo = argo("http://v2:9000").unwrap();
    assert_eq!((argo.prometheus.len(), argo.web.len()), (2, 1));
    for (_, text) in argo.prometheus.iter().chain(&argo.web) {
        assert!(
            text.contains("http://v2:9000") && !text.contains("{{"),
            "{text}"
        );
    }
    let flagger = flagger("http://v2:9000").unwrap();
    assert_eq!((flagger.metrics.len(), flagger.webhooks.len()), (2, 2));
    for metric in &flagger.metrics {
        assert!(
            metric.promql.contains(r#"target="http://v2:9000""#),
            "{}",
            metric.promql
        );
        assert!(metric.promql.contains("[10m]"), "{}", metric.promql);
    }
}
