//! The promotion gate on one agent (issue 25): `/verdict` answers 200
//! pass, 412 fail and 503 inconclusive (with `Retry-After`) with the
//! verdict as JSON, an unknown target 404 and a bad parameter 400;
//! `mirror-agent verdict --metrics-addr` exits 0, 1, 2 and 3 the same;
//! and the per-endpoint counters stay bounded (10,000 distinct paths give
//! at most N + 1 endpoint labels) while counting every exchange once and
//! staying promtool-clean.
//!
//! ```text
//!  client ──▶ v1 AppServer (mirror-agent on veth-s, ingress + egress)
//!                 ├─veth-sh0──▶ shadow 0: v2 (identical)
//!                 └─veth-sh1──▶ shadow 1: v3 (GET /items/{n} 500 for n % 5 == 0)
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test gate`.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{http_client, metrics::DEFAULT_ADDR};
use mirror_tests::compare_rig::{AppRig, count, serial, stop, target};
use mirror_tests::{
    agent,
    app::{Behaviour, Regressions},
    app_client::ClientRequest,
    or_skip,
    prometheus::{self, Prometheus, check_metrics},
    rig::shadow_url,
};
use serde_json::Value;

/// `GET /items/{n}` for n in 0..ITEMS; v3 answers 500 to every fifth.
const ITEMS: u64 = 200;
/// v3's planted differences.
const PLANTED: u64 = ITEMS / 5;
/// The rule's `min-compared` in these tests: above nothing, below ITEMS.
const MIN_COMPARED: u64 = 100;

fn v3() -> Behaviour {
    Behaviour {
        regressions: Regressions {
            item_500_every: Some(5),
            ..Regressions::default()
        },
        ..Behaviour::v1("v3")
    }
}

/// `GET <path>` on the agent's metrics address with curl: the status, the
/// head and the body.
fn curl(rig: &AppRig, path: &str) -> Result<(u16, String, String)> {
    let url = format!("http://{DEFAULT_ADDR}{path}");
    let text = rig
        .rig
        .primary()
        .exec("curl", ["-s", "-i", "--max-time", "10", url.as_str()])?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP answer: {text}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status: {head}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_owned()))
}

fn verdict_path(url: &str, rule: &str) -> String {
    format!("/verdict?target={url}{rule}")
}

/// `mirror-agent verdict --metrics-addr <agent> ARGS` in v1's namespace.
fn verdict_command(rig: &AppRig, args: &[&str]) -> Result<Output> {
    let binary = agent::binary()?;
    let addr = DEFAULT_ADDR.to_string();
    let output = rig
        .rig
        .primary()
        .command(binary)
        .args(["verdict", "--metrics-addr", addr.as_str()])
        .args(args)
        .output()
        .context("cannot run mirror-agent verdict")?;
    Ok(output)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn verdict_answers_pass_fail_and_inconclusive_on_one_agent() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(
        Behaviour::v1("v1"),
        vec![Some(Behaviour::v1("v2")), Some(v3())],
    )?;
    let (v2, v3) = (shadow_url(0), shadow_url(1));
    let agent = rig.agent(&["--shadow", &v2, "--shadow", &v3, "--compare"], 2)?;
    let min = format!("&min-compared={MIN_COMPARED}");

    // Nothing compared yet: inconclusive, asked again later.
    let (status, head, body) = curl(&rig, &verdict_path(&v3, &min))?;
    ensure!(status == 503, "before traffic: {status} {body}");
    ensure!(
        head.contains("\r\nretry-after: 30"),
        "no Retry-After: {head}"
    );
    let early: Value = serde_json::from_str(&body)?;
    ensure!(
        early["verdict"] == "inconclusive" && early["compared"] == 0,
        "{early:#}"
    );
    let output = verdict_command(&rig, &["--target", &v3, "--min-compared", "100"])?;
    ensure!(output.status.code() == Some(2), "{output:?}");
    ensure!(
        stdout(&output).starts_with(&format!(
            "inconclusive: {v3}: 0 compared, the rule needs 100"
        )),
        "{}",
        stdout(&output)
    );

    let mut client = rig.client()?;
    for n in 0..ITEMS {
        client.exchange(&ClientRequest::new("GET", &format!("/items/{n}"), &[]))?;
    }
    client.close()?;
    rig.judged(&[&v2, &v3], ITEMS)?;

    // v2 answers like v1: 200.
    let (status, _, body) = curl(&rig, &verdict_path(&v2, &min))?;
    let pass: Value = serde_json::from_str(&body)?;
    ensure!(status == 200, "v2: {status} {pass:#}");
    ensure!(
        pass["verdict"] == "pass" && pass["compared"] == ITEMS && pass["differ"] == 0,
        "{pass:#}"
    );
    ensure!(pass["rule"]["min_compared"] == MIN_COMPARED, "{pass:#}");
    ensure!(pass["source"] == "agent", "{pass:#}");

    // v3's planted 500s: 412, counted exactly, on their endpoint.
    let (status, _, body) = curl(&rig, &verdict_path(&v3, &format!("{min}&max-differ=1%")))?;
    let fail: Value = serde_json::from_str(&body)?;
    ensure!(status == 412, "v3: {status} {fail:#}");
    ensure!(fail["verdict"] == "fail", "{fail:#}");
    ensure!(count(&fail, "differ")? == PLANTED, "{fail:#}");
    ensure!(fail["results"]["status"] == PLANTED, "{fail:#}");
    let worst = &fail["endpoints"][0];
    ensure!(
        worst["endpoint"] == "GET /items/{id}" && worst["differ"] == PLANTED,
        "{fail:#}"
    );
    // A looser rule lets the same counts pass (the rule is the caller's).
    let (status, _, body) = curl(
        &rig,
        &verdict_path(
            &v3,
            &format!("{min}&max-differ=25%25&max-endpoint-differ=off"),
        ),
    )?;
    ensure!(status == 200, "a loose rule: {status} {body}");

    // The command: the same verdicts as exit statuses, one line each.
    let output = verdict_command(&rig, &["--target", &v2, "--min-compared", "100"])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    ensure!(
        stdout(&output) == format!("pass: {v2}: 0 of {ITEMS} compared differ (0 %), at most 1 %\n"),
        "{}",
        stdout(&output)
    );
    let output = verdict_command(&rig, &["--target", &v3, "--min-compared", "100"])?;
    ensure!(output.status.code() == Some(1), "{output:?}");
    ensure!(
        stdout(&output).starts_with(&format!(
            "fail: {v3}: {PLANTED} of {ITEMS} compared differ (20 %), over 1 %; \
             worst endpoint GET /items/{{id}}: {PLANTED} of {ITEMS} (20 %)"
        )),
        "{}",
        stdout(&output)
    );
    let output = verdict_command(&rig, &["--target", &v3, "--json"])?;
    ensure!(
        output.status.code() == Some(2),
        "default min-compared 500: {output:?}"
    );
    let json: Value = serde_json::from_str(&stdout(&output))?;
    ensure!(
        json["verdict"] == "inconclusive" && json["differ"] == PLANTED,
        "{json:#}"
    );

    // A wrong target: 404 naming the targets; exit 3.
    let (status, _, body) = curl(&rig, "/verdict?target=http://nowhere:1")?;
    ensure!(status == 404, "unknown target: {status} {body}");
    let error: Value = serde_json::from_str(&body)?;
    let message = error["error"].as_str().unwrap_or_default();
    ensure!(
        message.contains("http://nowhere:1") && message.contains(&v2) && message.contains(&v3),
        "{error:#}"
    );
    let output = verdict_command(&rig, &["--target", "http://nowhere:1"])?;
    ensure!(output.status.code() == Some(3), "{output:?}");
    ensure!(
        stdout(&output).starts_with("cannot tell: http://nowhere:1: ")
            && stdout(&output).contains("404"),
        "{}",
        stdout(&output)
    );
    // A bad parameter, no target, a bad flag: said, never a verdict.
    let (status, _, body) = curl(&rig, &verdict_path(&v2, "&max-differ=lots"))?;
    ensure!(
        status == 400 && body.contains("max-differ"),
        "{status} {body}"
    );
    let (status, _, body) = curl(&rig, "/verdict")?;
    ensure!(
        status == 400 && body.contains("target is missing"),
        "{status} {body}"
    );
    let output = verdict_command(&rig, &["--target", &v2, "--max-differ", "lots"])?;
    ensure!(output.status.code() == Some(3), "a bad flag: {output:?}");
    // Nobody listening there: exit 3.
    let binary = agent::binary()?;
    let output = rig
        .rig
        .primary()
        .command(binary)
        .args(["verdict", "--metrics-addr", "127.0.0.1:1", "--target", &v2])
        .output()?;
    ensure!(output.status.code() == Some(3), "unreachable: {output:?}");
    ensure!(
        stdout(&output).contains("cannot connect"),
        "{}",
        stdout(&output)
    );

    // The fleet's way on a fleet of one: Prometheus scraping this agent
    // gives the same counts and the same verdicts, by the same rule.
    let prometheus = Prometheus::start(rig.rig.primary(), DEFAULT_ADDR, Duration::from_secs(1))?;
    let query = format!("sum(mirror_compare_exchanges_total{{target=\"{v3}\"}})");
    let (scraped, last) =
        prometheus.wait_for(rig.rig.primary(), &query, Duration::from_secs(20), |s| {
            s.first().is_some_and(|s| s.value == ITEMS as f64)
        })?;
    ensure!(
        scraped,
        "Prometheus never saw the {ITEMS} exchanges: {last:?}"
    );
    let from_prometheus = |target: &str, min: &str, extra: &[&str]| -> Result<Output> {
        let output = rig
            .rig
            .primary()
            .command(agent::binary()?)
            .args([
                "verdict",
                "--prometheus",
                &format!("http://{}", prometheus::LISTEN),
            ])
            .args([
                "--window",
                "10m",
                "--target",
                target,
                "--min-compared",
                min,
            ])
            .args(extra)
            .output()?;
        Ok(output)
    };
    let output = from_prometheus(&v3, "100", &["--json"])?;
    ensure!(output.status.code() == Some(1), "{output:?}");
    let fleet: Value = serde_json::from_str(&stdout(&output))?;
    ensure!(
        fleet["source"] == "prometheus" && fleet["agents"] == 1,
        "{fleet:#}"
    );
    for key in ["compared", "differ", "match", "results", "endpoints"] {
        ensure!(
            fleet[key] == fail[key],
            "{key}: {fleet:#} against the agent's {fail:#}"
        );
    }
    let output = from_prometheus(&v2, "100", &[])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let output = from_prometheus(&v2, "1000", &[])?;
    ensure!(output.status.code() == Some(2), "{output:?}");
    let output = from_prometheus("http://nowhere:1", "100", &[])?;
    ensure!(output.status.code() == Some(3), "{output:?}");
    ensure!(
        stdout(&output).contains(&v2),
        "the known targets: {}",
        stdout(&output)
    );
    drop(prometheus);

    stop(agent)?;
    Ok(())
}

/// A path of letters only (no id the templates would fold): 10,000 of
/// them are 10,000 endpoints.
fn word(mut n: u64) -> String {
    let mut word = String::new();
    for _ in 0..4 {
        word.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    word
}

#[test]
fn ten_thousand_paths_give_at_most_n_plus_one_endpoint_labels() -> Result<()> {
    const PATHS: u64 = 10_000;
    const MAX: usize = 20;
    const CONNECTIONS: u64 = 20;
    let _machine = or_skip!(serial());
    let rig = AppRig::new(Behaviour::v1("v1"), vec![Some(Behaviour::v1("v2"))])?;
    let v2 = shadow_url(0);
    let agent = rig.agent(
        &[
            "--shadow",
            &v2,
            "--compare",
            "--compare-max-endpoints",
            &MAX.to_string(),
            // Every copy waits its turn, however loaded the machine: the
            // test counts labels, not speed.
            "--queue-size",
            "20000",
            "--max-queue-age",
            "60s",
            "--compare-timeout",
            "60s",
        ],
        1,
    )?;
    // From 20 connections at once: copies of one connection reach the
    // shadow one after the other, so one fast client would outrun it.
    let sent: BTreeSet<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let rig = &rig;
                scope.spawn(move || -> Result<Vec<String>> {
                    let mut client = rig.client()?;
                    let mut paths = Vec::new();
                    for n in (c..PATHS).step_by(CONNECTIONS as usize) {
                        let path = format!("/pages/{}", word(n));
                        client.exchange(&ClientRequest::new("GET", &path, &[]))?;
                        paths.push(path);
                    }
                    client.close()?;
                    Ok(paths)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("a client thread panicked"))
            .collect::<Result<Vec<_>>>()
            .map(|all| all.into_iter().flatten().collect())
    })?;
    ensure!(sent.len() as u64 == PATHS, "the paths repeat");
    let report = rig.judged(&[&v2], PATHS)?;
    ensure!(
        count(target(&report, &v2)?, "compared")? == PATHS,
        "{report:#}"
    );

    let (status, metrics) = http_client::get(rig.rig.primary(), DEFAULT_ADDR, "/metrics")?;
    ensure!(status == 200, "/metrics: {status}");
    check_metrics(&metrics)?;
    let prefix = "mirror_compare_exchanges_total{";
    let mut endpoints = BTreeSet::new();
    let mut total = 0;
    for line in metrics.lines().filter(|l| l.starts_with(prefix)) {
        ensure!(line.contains(&format!("target=\"{v2}\"")), "{line}");
        let endpoint = line
            .split("endpoint=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .with_context(|| format!("no endpoint label: {line}"))?;
        endpoints.insert(endpoint.to_owned());
        let value: u64 = line.rsplit(' ').next().unwrap_or_default().parse()?;
        total += value;
    }
    ensure!(
        endpoints.len() <= MAX + 1 && endpoints.contains("other"),
        "{} endpoint labels: {endpoints:?}",
        endpoints.len()
    );
    ensure!(endpoints.len() == MAX + 1, "{endpoints:?}");
    // Every exchange once, whatever its label.
    ensure!(
        total == PATHS,
        "the family counts {total} exchanges of {PATHS}"
    );
    ensure!(
        metrics.contains(&format!(
            "mirror_compare_exchanges_total{{target=\"{v2}\",endpoint=\"other\",result=\"match\"}} {}",
            PATHS - MAX as u64
        )),
        "other does not hold the rest"
    );
    for side in ["v1", "shadow"] {
        ensure!(
            metrics.contains(&format!(
                "mirror_compare_duration_seconds_count{{target=\"{v2}\",side=\"{side}\"}} {PATHS}"
            )),
            "no {side} latency histogram of {PATHS}"
        );
    }
    stop(agent)?;
    Ok(())
}
