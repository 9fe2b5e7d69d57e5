//! Credentials never leave the agent unless asked (issue 24): a token
//! endpoint that issues new credentials on every call differs on every
//! request, and none of what it issued may appear anywhere the agent
//! shows or writes a value, while every difference is still counted.
//!
//! ```text
//!  client ──▶ v1: token server (mirror-agent on veth-s, --compare)
//!                 └─veth-sh0──▶ v2: the same token server (its own tokens)
//! ```
//!
//! Every credential the servers issue, and every one the client sends,
//! holds `zQz`: letters no marker (`<redacted:` and hex digits) holds, so
//! one search finds any of them anywhere.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test redaction`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{
    ReceivedRequest, ScratchDir, Server, http_client, metrics::DEFAULT_ADDR, server::Reply,
};
use mirror_tests::{
    ReplayRig, agent,
    app_client::{AppClient, ClientRequest},
    compare_rig::{endpoint, field, judged, serial, stop, target, verdict},
    or_skip,
    rig::shadow_url,
};
use serde_json::Value;

/// In every credential of the test, and in nothing else.
const SECRET: &str = "zQz";
/// Token requests compared.
const TOKEN_CALLS: u64 = 1000;
/// Authorisation callbacks with credentials in their query.
const CALLBACKS: u64 = 20;

/// A token server: `POST /oauth/token` issues a new access token, refresh
/// token and (nested) client secret on every call, with a session cookie
/// and a session header; `GET /oauth/callback` answers a new id token.
fn token_server(name: &'static str) -> impl Fn(&ReceivedRequest) -> Reply + Send + Sync {
    let issued = AtomicU64::new(0);
    move |request| {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        let body = if request.target().starts_with("/oauth/token") {
            serde_json::json!({
                "access_token": format!("at-{name}-{n}-{SECRET}"),
                "refresh_token": format!("rt-{name}-{n}-{SECRET}"),
                "token_type": "bearer",
                "expires_in": 3600,
                "data": {"client": {"id": "app-1", "client_secret": format!("cs-{name}-{n}-{SECRET}")}},
            })
        } else {
            serde_json::json!({"id_token": format!("it-{name}-{n}-{SECRET}"), "ok": true})
        }
        .to_string();
        Reply::bytes(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Set-Cookie: session=sc-{name}-{n}-{SECRET}; Path=/\r\n\
             X-Session-Token: st-{name}-{n}-{SECRET}\r\n\r\n{body}",
            body.len()
        ))
    }
}

/// `text` holds no credential of the test.
fn clean(what: &str, text: &str) -> Result<()> {
    if let Some(at) = text.find(SECRET) {
        let start = text[..at]
            .char_indices()
            .rev()
            .nth(80)
            .map_or(0, |(i, _)| i);
        let end = (at + 80).min(text.len());
        bail!(
            "a credential in {what}: …{}…",
            text.get(start..end).unwrap_or(text)
        );
    }
    Ok(())
}

/// A field's example: both markers, and they differ (each side issued
/// its own value).
fn markers_differ(endpoint: &Value, path: &str) -> Result<()> {
    let example = &field(endpoint, path)?["example"];
    let (v1, target) = (
        example["v1"].as_str().unwrap_or_default(),
        example["target"].as_str().unwrap_or_default(),
    );
    ensure!(
        v1.starts_with("<redacted:") && target.starts_with("<redacted:") && v1 != target,
        "{path}: {example}"
    );
    Ok(())
}

/// Fails if any credential the servers issued (tokens, client secrets,
/// cookies, session headers) or the client sent (a query's `code`, `sig`,
/// `session`, its Authorization header) appears in the diff log,
/// `/compare`, `/compare.html`, `compare-report`'s output or the agent's
/// logs (at debug, every request logged), or if the differences they made
/// are not all counted: 1,000 differing token calls, the three token
/// fields shown as differing markers.
#[test]
fn a_token_endpoint_compared_a_thousand_times_leaks_no_credential_and_counts_every_difference()
-> Result<()> {
    let _machine = or_skip!(serial());
    let rig = ReplayRig::builder(1).own_primary().serve(&[]).build()?;
    let _v1 = Server::builder()
        .answer(token_server("v1"))
        .start(rig.primary(), rig.primary_addr())?;
    let _v2 = Server::builder()
        .answer(token_server("v2"))
        .start(rig.shadow(0), rig.shadow_addr(0))?;
    let scratch = ScratchDir::new("redaction")?;
    let log = scratch.path().join("diff.jsonl");
    let log_arg = log.display().to_string();
    let v2_url = shadow_url(0);
    let mut args = rig.agent_args();
    args.extend([
        "--shadow",
        &v2_url,
        "--compare",
        "--diff-log",
        &log_arg,
        "--diff-log-rate",
        "1000000",
        "--log-requests",
        "100",
        "--log-level",
        "debug",
    ]);
    let agent = agent::start_attached(rig.primary(), &args)?;
    agent.wait_for_targets(1, Duration::from_secs(10))?;

    let authorization = format!("Authorization: Bearer client-{SECRET}");
    let token = ClientRequest::new(
        "POST",
        "/oauth/token",
        &[
            &authorization,
            "Content-Type: application/x-www-form-urlencoded",
        ],
    )
    .body(
        format!("grant_type=refresh_token&refresh_token=old-{SECRET}"),
        false,
    );
    let callback_path =
        format!("/oauth/callback?code=code-{SECRET}&sig=sig-{SECRET}&session=se-{SECRET}&state=s1");
    let callback = ClientRequest::new("GET", &callback_path, &[]);
    let mut clients = (0..4)
        .map(|_| AppClient::connect(rig.client(), rig.primary_addr()))
        .collect::<Result<Vec<_>>>()?;
    for i in 0..TOKEN_CALLS + CALLBACKS {
        let request = if i % 51 == 50 { &callback } else { &token };
        let response = clients[i as usize % 4].exchange(request)?;
        ensure!(response.status == 200, "v1 answered {}", response.status);
    }
    for client in clients {
        client.close()?;
    }

    // Every pair judged, every one differing.
    let total = TOKEN_CALLS + CALLBACKS;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let (status, body) = http_client::get(rig.primary(), DEFAULT_ADDR, "/compare")?;
        ensure!(status == 200, "GET /compare answered {status}");
        let report: Value = serde_json::from_str(&body).context("/compare is not JSON")?;
        let done = target(&report, &v2_url).map(judged).unwrap_or(0);
        if done >= total {
            clean("/compare", &body)?;
            break report;
        }
        ensure!(
            Instant::now() < deadline,
            "{done} of {total} pairs judged: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let v2 = target(&report, &v2_url)?;
    ensure!(verdict(v2)? == (total, 0, total), "{v2:#}");
    let tokens = endpoint(v2, "POST /oauth/token")?;
    ensure!(
        verdict(tokens)? == (TOKEN_CALLS, 0, TOKEN_CALLS),
        "{tokens:#}"
    );
    for path in [
        "$.access_token",
        "$.refresh_token",
        "$.data.client.client_secret",
    ] {
        markers_differ(tokens, path)?;
        ensure!(
            field(tokens, path)?["count"] == TOKEN_CALLS,
            "{path} not counted in every call: {tokens:#}"
        );
    }
    let (status, html) = http_client::get(rig.primary(), DEFAULT_ADDR, "/compare.html")?;
    ensure!(status == 200, "/compare.html answered {status}");
    ensure!(
        html.contains("$.access_token"),
        "the page shows no token field"
    );
    clean("/compare.html", &html)?;
    let url = format!("http://{DEFAULT_ADDR}");
    let output = agent::run_to_end(rig.primary(), &[], &["compare-report", "--url", &url])?;
    let printed = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && printed.contains("/oauth/token"),
        "compare-report: {output:?}"
    );
    clean("compare-report", &printed)?;
    clean(
        "compare-report's stderr",
        &String::from_utf8_lossy(&output.stderr),
    )?;

    let stopped = stop(agent)?;
    let text = std::fs::read_to_string(&log)
        .with_context(|| format!("no diff log at {}", log.display()))?;
    clean("the diff log", &text)?;
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect::<Result<_>>()?;
    ensure!(
        lines.len() as u64 == total,
        "{} diff log lines for {total} differing exchanges",
        lines.len()
    );
    let callbacks = lines
        .iter()
        .filter(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/oauth/callback?code=<redacted:"))
        })
        .count() as u64;
    ensure!(
        callbacks == CALLBACKS,
        "{callbacks} callback lines with their query redacted"
    );
    clean("the agent's stderr", &stopped.exit.stderr)?;
    clean("the agent's stdout", &stopped.exit.stdout)?;
    ensure!(
        stopped.exit.stderr.contains("/oauth/callback"),
        "no request logged at debug: the logs were not put to the test"
    );
    Ok(())
}
