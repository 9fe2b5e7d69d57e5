//! The comparison end to end (issue 12), with known truth: v1 is an
//! [`AppServer`] on the primary, the shadows are app servers whose
//! differences from v1 are planted on purpose (or none), real clients (ab,
//! curl, a raw keep-alive and pipelining client) talk to v1, and the real
//! `mirror-agent` captures v1's requests and responses and compares each
//! shadow's answer with v1's. Every test checks exact numbers in the
//! agent's `/compare` report (and its metrics, its page, its diff log).
//!
//! ```text
//!  client ──▶ v1 AppServer (mirror-agent on veth-s, ingress + egress)
//!                 ├─veth-sh0──▶ shadow 0: AppServer (v2 or v3)
//!                 └─veth-sh1──▶ shadow 1: AppServer (a baseline), or none
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test compare`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use aya::programs::{SchedClassifier, TcAttachType};
use mirror_testkit::{
    Agent, Metrics, Netns, ScratchDir, Server, Signal, ab, http_client, metrics::DEFAULT_ADDR,
};
use mirror_tests::compare_rig::{
    AppRig, count, endpoint, field, fields, kinds, not_compared, serial, stop, target, verdict,
};
use mirror_tests::{
    agent,
    app::{AppServer, Behaviour, CACHED_ETAG, Regressions, item},
    app_client::{AppClient, ClientRequest, ClientResponse},
    or_skip, prometheus,
    rig::shadow_url,
    tcpdump::Tcpdump,
    topology::SERVER_IF,
};
use serde_json::Value;

/// Every reason a pair may not be compared (the `result` values of
/// `mirror_compare_total` besides `match` and `differ`).
const NOT_COMPARED: [&str; 7] = [
    "no_v1_response",
    "target_failed",
    "timeout",
    "body_over_cap",
    "undecodable",
    "overflow",
    "unpaired",
];

/// The agent's endpoint template of a path: numeric segments as `{id}`.
fn template(method: &str, path: &str) -> String {
    let path: Vec<&str> = path
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", path.join("/"))
}

/// What the client sent, by endpoint template: the truth the report must
/// show.
#[derive(Debug, Default)]
struct Sent(BTreeMap<String, u64>);

impl Sent {
    fn add(&mut self, method: &str, path: &str, n: u64) {
        *self.0.entry(template(method, path)).or_default() += n;
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Each endpoint in `sent` compared exactly as often as it was sent, and
/// nothing else reported.
fn check_endpoint_counts(target: &Value, sent: &Sent) -> Result<()> {
    let reported: BTreeMap<String, u64> = target["endpoints"]
        .as_array()
        .context("no `endpoints` array")?
        .iter()
        .map(|e| {
            Ok((
                e["endpoint"]
                    .as_str()
                    .context("no endpoint name")?
                    .to_owned(),
                count(e, "compared")? + not_compared(e).values().sum::<u64>(),
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(
        reported == sent.0,
        "endpoints judged {reported:?}, sent {:?}",
        sent.0
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// traffic
// ---------------------------------------------------------------------------

/// Request `i` of the mixed traffic, and the status v1 answers it.
fn mixed(i: u64) -> (ClientRequest, u16) {
    let order = |i: u64| format!("{{\"item\":{},\"quantity\":{}}}", i % 50 + 1, i % 4 + 1);
    match i % 10 {
        0 | 1 => (ClientRequest::new("GET", &format!("/items/{i}"), &[]), 200),
        2 => (ClientRequest::new("HEAD", &format!("/items/{i}"), &[]), 200),
        3 => (
            ClientRequest::new("POST", "/orders", &["Content-Type: application/json"])
                .body(order(i), false),
            201,
        ),
        4 => (
            ClientRequest::new("POST", "/orders", &["Content-Type: application/json"])
                .body(order(i), true),
            201,
        ),
        5 => (
            ClientRequest::new("GET", &format!("/stream/{}", i % 5 + 1), &[]),
            200,
        ),
        6 => (ClientRequest::new("GET", "/empty", &[]), 204),
        7 => (
            ClientRequest::new(
                "GET",
                "/cached",
                &[&format!("If-None-Match: {CACHED_ETAG}")],
            ),
            304,
        ),
        8 => (ClientRequest::new("GET", "/cached", &[]), 200),
        _ => (
            ClientRequest::new("POST", "/orders", &["Content-Type: application/json"])
                .body(order(i), false)
                .expect_continue(),
            201,
        ),
    }
}

fn path_of(request: &ClientRequest) -> &str {
    request.head.split(' ').nth(1).unwrap_or("")
}

/// `requests` over `connections` keep-alive connections in turn, each
/// answered with its expected status; counted in `sent`.
fn send(
    rig: &AppRig,
    requests: &[(ClientRequest, u16)],
    connections: usize,
    sent: &mut Sent,
) -> Result<Vec<ClientResponse>> {
    let mut clients = (0..connections)
        .map(|_| rig.client())
        .collect::<Result<Vec<_>>>()?;
    let mut responses = Vec::with_capacity(requests.len());
    for (i, (request, status)) in requests.iter().enumerate() {
        let response = clients[i % connections].exchange(request)?;
        ensure!(
            response.status == *status,
            "{}: v1 answered {}, expected {status}",
            request.head.lines().next().unwrap_or(""),
            response.status
        );
        sent.add(&request.method, path_of(request), 1);
        responses.push(response);
    }
    for client in clients {
        client.close()?;
    }
    Ok(responses)
}

/// 20 requests written at once on one connection, answered in order.
fn pipelined(rig: &AppRig, first: u64, sent: &mut Sent) -> Result<()> {
    let requests: Vec<(ClientRequest, u16)> = (first..first + 20)
        // No 100-continue in a pipeline: the client does not wait.
        .map(|i| if i % 10 == 9 { mixed(i + 1) } else { mixed(i) })
        .collect();
    let mut client = rig.client()?;
    let wire: Vec<ClientRequest> = requests.iter().map(|(r, _)| r.clone()).collect();
    let responses = client.pipeline(&wire)?;
    for ((request, status), response) in requests.iter().zip(&responses) {
        ensure!(
            response.status == *status,
            "pipelined {}: {}",
            request.head.lines().next().unwrap_or(""),
            response.status
        );
        sent.add(&request.method, path_of(request), 1);
    }
    client.close()
}

/// `curl ARGS URL` from the client; its `-w %{http_code}` must be `status`.
fn curl(rig: &AppRig, args: &[&str], path: &str, status: u16) -> Result<()> {
    let url = rig.rig.primary_url(path);
    let mut all = vec![
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ];
    all.extend_from_slice(args);
    all.push(&url);
    let code = rig.rig.client().exec("curl", &all)?;
    ensure!(code.trim() == status.to_string(), "curl {all:?}: {code}");
    Ok(())
}

/// v1 and v3 (the planted regressions), the agent comparing them, the
/// planted traffic sent and the report once it counted all of it: the
/// hosts, v3's URL, the agent, what was sent and the report.
fn planted_and_judged() -> Result<(AppRig, String, Agent, Sent, Value)> {
    let rig = AppRig::new(Behaviour::v1("v1"), vec![Some(v3())])?;
    let v3_url = shadow_url(0);
    let agent = rig.agent(&["--shadow", &v3_url, "--compare"], 1)?;
    let mut sent = Sent::default();
    planted_traffic(&rig, &mut sent)?;
    let report = rig.judged(&[&v3_url], sent.total())?;
    Ok((rig, v3_url, agent, sent, report))
}

/// The planted regressions' workload: 100 items (every tenth a 500 on
/// v3), 30 orders (v3's total is off), 10 empties (v3's X-Version
/// differs), 20 cached (half 304), 10 streams.
fn planted_traffic(rig: &AppRig, sent: &mut Sent) -> Result<()> {
    let mut requests = Vec::new();
    for n in 1..=100u64 {
        requests.push((ClientRequest::new("GET", &format!("/items/{n}"), &[]), 200));
    }
    for i in 0..30u64 {
        requests.push(mixed(i * 10 + 3));
    }
    for i in 0..10u64 {
        requests.push(mixed(i * 10 + 6));
        requests.push(mixed(i * 10 + 7));
        requests.push(mixed(i * 10 + 8));
        requests.push(mixed(i * 10 + 5));
    }
    send(rig, &requests, 2, sent)?;
    ensure!(sent.total() == 170);
    Ok(())
}

/// v3 as planted in [`planted_traffic`].
fn v3() -> Behaviour {
    Behaviour {
        regressions: Regressions {
            item_500_every: Some(10),
            order_total_plus: 1,
            empty_version: Some("2.0.0".to_owned()),
            ..Regressions::default()
        },
        ..Behaviour::v1("v3")
    }
}

// ---------------------------------------------------------------------------
// a. an identical v2 matches, whatever the client does
// ---------------------------------------------------------------------------

/// Fails if any pair is not judged a match: a framing the agent's response
/// framer gets wrong (chunked, HEAD, 204/304, 100-continue, pipelining,
/// HTTP/1.0 keep-alive, close), a header it does not ignore by default
/// (Date, Server, X-Request-Id, Connection differ between the servers), a
/// pairing error (a response paired with the wrong request), or a pair
/// lost (not compared).
#[test]
fn an_identical_v2_matches_every_one_of_a_thousand_mixed_requests() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(Behaviour::v1("v1"), vec![Some(Behaviour::v1("v2"))])?;
    let v2 = shadow_url(0);
    let agent = rig.agent(&["--shadow", &v2, "--compare"], 1)?;
    let mut sent = Sent::default();

    // ab: HTTP/1.0 keep-alive, then HTTP/1.0 closing each connection.
    let report = ab::run(
        rig.rig.client(),
        &["-k", "-n", "300", "-c", "3"],
        &rig.rig.primary_url("/items/7"),
    )?;
    ensure!(
        report.complete == 300 && report.failed == 0,
        "{}",
        report.text
    );
    sent.add("GET", "/items/7", 300);
    let report = ab::run(
        rig.rig.client(),
        &["-n", "100", "-c", "2"],
        &rig.rig.primary_url("/cached"),
    )?;
    ensure!(
        report.complete == 100 && report.failed == 0,
        "{}",
        report.text
    );
    sent.add("GET", "/cached", 100);

    // Every kind of exchange, over four keep-alive connections.
    let requests: Vec<_> = (0..600).map(mixed).collect();
    send(&rig, &requests, 4, &mut sent)?;
    pipelined(&rig, 1000, &mut sent)?;

    // curl: 100-continue (it waits for it) and chunked uploads.
    for i in 0..5u64 {
        let body = format!("{{\"item\":{i},\"quantity\":2}}");
        curl(
            &rig,
            &[
                "-H",
                "Expect: 100-continue",
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
            ],
            "/orders",
            201,
        )?;
        curl(
            &rig,
            &["-H", "Transfer-Encoding: chunked", "--data-binary", &body],
            "/orders",
            201,
        )?;
        sent.add("POST", "/orders", 2);
    }
    let total = sent.total();
    ensure!(total >= 1000, "only {total} requests");

    let report = rig.judged(&[&v2], total)?;
    let v2_report = target(&report, &v2)?;
    let (compared, matched, differ) = verdict(v2_report)?;
    ensure!(
        (compared, matched, differ) == (total, total, 0),
        "v2: compared {compared}, match {matched}, differ {differ} of {total}: {report:#}"
    );
    ensure!(
        v2_report["match_percent"].as_f64() == Some(100.0),
        "match_percent {}",
        v2_report["match_percent"]
    );
    ensure!(
        not_compared(v2_report).values().all(|n| *n == 0),
        "not compared: {:?}",
        not_compared(v2_report)
    );
    ensure!(
        v2_report["role"] == "candidate",
        "role {}",
        v2_report["role"]
    );
    ensure!(
        kinds(v2_report)? == [0, 0, 0],
        "kinds {}",
        v2_report["kinds"]
    );
    check_endpoint_counts(v2_report, &sent)?;
    stop(agent)?;

    let v1 = rig.v1.answered();
    ensure!(v1.total() == total, "v1 answered {v1:?}, {total} sent");
    // 60 from the raw client, 5 from curl.
    ensure!(v1.continues == 65, "v1 sent {} 100 Continue", v1.continues);
    let v2_answered = rig.shadows[0].as_ref().map(AppServer::answered);
    ensure!(
        v2_answered.as_ref().map(|a| &a.endpoints) == Some(&v1.endpoints),
        "v2 answered {v2_answered:?}, v1 {v1:?}"
    );
    Ok(())
}

/// Uploads over the agent's whole-body window (64 KiB) go to the targets
/// as they arrive, the request sent at its head: each is still paired with
/// v1's answer and judged. v2 identical matches every one; v3 (its order
/// totals one more) differs on every one at `$.total`. Content-Length,
/// chunked and `Expect: 100-continue` uploads, three connections.
#[test]
fn streamed_uploads_are_compared_like_any_request() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(
        Behaviour::v1("v1"),
        vec![Some(Behaviour::v1("v2")), Some(v3())],
    )?;
    let (v2, v3_url) = (shadow_url(0), shadow_url(1));
    let agent = rig.agent(&["--shadow", &v2, "--shadow", &v3_url, "--compare"], 2)?;
    let mut sent = Sent::default();
    let requests: Vec<(ClientRequest, u16)> = (0..24u64)
        .map(|i| {
            let pad = "x".repeat(300_000 + 1_000 * i as usize);
            let body = format!("{{\"item\":{i},\"quantity\":2,\"pad\":\"{pad}\"}}");
            let request =
                ClientRequest::new("POST", "/orders", &["Content-Type: application/json"])
                    .body(body, i % 3 == 1);
            let request = if i % 3 == 2 {
                request.expect_continue()
            } else {
                request
            };
            (request, 201)
        })
        .collect();
    send(&rig, &requests, 3, &mut sent)?;
    let total = sent.total();
    let report = rig.judged(&[&v2, &v3_url], total)?;
    let metrics = Metrics::scrape(rig.rig.primary(), DEFAULT_ADDR)?;
    ensure!(
        metrics.get("mirror_requests_streamed_total", &[]) == Some(total as f64),
        "every upload streamed: {:?}",
        metrics.get("mirror_requests_streamed_total", &[])
    );
    let v2_report = target(&report, &v2)?;
    ensure!(
        verdict(v2_report)? == (total, total, 0),
        "v2: {:?} of {total}: {report:#}",
        verdict(v2_report)?
    );
    let v3_report = target(&report, &v3_url)?;
    ensure!(
        verdict(v3_report)? == (total, 0, total),
        "v3: {:?} of {total}: {report:#}",
        verdict(v3_report)?
    );
    let orders = endpoint(v3_report, "POST /orders")?;
    let total_field = field(orders, "$.total")?;
    ensure!(
        count(total_field, "count")? == total,
        "$.total: {total_field}"
    );
    stop(agent)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// b. planted differences, counted exactly, at their paths
// ---------------------------------------------------------------------------

/// Fails if a planted difference is missed or counted twice (10 statuses,
/// 30 bodies at `$.total`, 10 headers at `header:x-version`), if a kind
/// other than the planted one is reported (the 500s have v1's body and
/// headers: a body or header difference there is a false one), if a
/// field path is reported that was not planted, or if a pair that does
/// not differ is counted as differing.
#[test]
fn planted_differences_are_counted_exactly_by_kind_at_their_paths() -> Result<()> {
    let _machine = or_skip!(serial());
    // The hosts (`_rig`) live until the end.
    let (_rig, v3_url, agent, sent, report) = planted_and_judged()?;
    let v3_report = target(&report, &v3_url)?;
    ensure!(
        verdict(v3_report)? == (170, 120, 50),
        "v3 (compared, match, differ) = {:?}, expected (170, 120, 50): {report:#}",
        verdict(v3_report)?
    );
    ensure!(
        kinds(v3_report)? == [10, 10, 30],
        "v3 kinds [status, header, body] = {:?}, planted [10, 10, 30]",
        kinds(v3_report)?
    );
    let percent = v3_report["match_percent"].as_f64().unwrap_or(-1.0);
    ensure!(
        (percent - 100.0 * 120.0 / 170.0).abs() < 0.1,
        "match_percent {percent}"
    );
    check_endpoint_counts(v3_report, &sent)?;

    // Per endpoint: (compared, differ), kinds, fields (path → count).
    let expected: [PlantedEndpoint; 5] = [
        ("GET /items/{id}", (100, 10), [10, 0, 0], &[("status", 10)]),
        ("POST /orders", (30, 30), [0, 0, 30], &[("$.total", 30)]),
        (
            "GET /empty",
            (10, 10),
            [0, 10, 0],
            &[("header:x-version", 10)],
        ),
        ("GET /cached", (20, 0), [0, 0, 0], &[]),
        ("GET /stream/{id}", (10, 0), [0, 0, 0], &[]),
    ];
    let mut paths = BTreeSet::new();
    for (name, (compared, differ), planted_kinds, planted_fields) in expected {
        let e = endpoint(v3_report, name)?;
        let (got_compared, _, got_differ) = verdict(e)?;
        ensure!(
            (got_compared, got_differ) == (compared, differ),
            "{name}: compared {got_compared}, differ {got_differ}; planted {compared}, {differ}"
        );
        ensure!(
            kinds(e)? == planted_kinds,
            "{name}: kinds {:?}, planted {planted_kinds:?}",
            kinds(e)?
        );
        let got: BTreeMap<String, (u64, bool)> = fields(e);
        let want: BTreeMap<String, (u64, bool)> = planted_fields
            .iter()
            .map(|(p, n)| ((*p).to_owned(), (*n, false)))
            .collect();
        ensure!(
            got == want,
            "{name}: fields {got:?}, planted {want:?}: {e:#}"
        );
        paths.extend(got.into_keys());
    }
    ensure!(
        paths == BTreeSet::from(["status".into(), "$.total".into(), "header:x-version".into()]),
        "paths {paths:?}"
    );
    // One example each, with both values.
    let status = field(endpoint(v3_report, "GET /items/{id}")?, "status")?;
    example_has(status, "200", "500")?;
    let total = field(endpoint(v3_report, "POST /orders")?, "$.total")?;
    let (v1_total, v3_total) = example(total)?;
    let (a, b): (u64, u64) = (
        v1_total.trim().parse().context("v1's total")?,
        v3_total.trim().parse().context("v3's total")?,
    );
    ensure!(b == a + 1, "the $.total example: v1 {a}, v3 {b}");
    example_has(
        field(endpoint(v3_report, "GET /empty")?, "header:x-version")?,
        "1.4.2",
        "2.0.0",
    )?;
    stop(agent)?;
    Ok(())
}

/// `html` without its `<script>` elements.
fn without_scripts(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("</script>")
            .map_or("", |end| &rest[start + end + "</script>".len()..]);
    }
    out.push_str(rest);
    out
}

/// An endpoint as planted: its name, (compared, differ), kinds [status,
/// header, body], fields (path, count).
type PlantedEndpoint = (
    &'static str,
    (u64, u64),
    [u64; 3],
    &'static [(&'static str, u64)],
);

/// `(v1, target)` of a field's example.
fn example(field: &Value) -> Result<(String, String)> {
    let example = &field["example"];
    Ok((
        example["v1"]
            .as_str()
            .with_context(|| format!("no example.v1 in {field}"))?
            .to_owned(),
        example["target"]
            .as_str()
            .with_context(|| format!("no example.target in {field}"))?
            .to_owned(),
    ))
}

fn example_has(field: &Value, v1: &str, target: &str) -> Result<()> {
    let (left, right) = example(field)?;
    ensure!(
        left.contains(v1) && right.contains(target),
        "example {left:?} / {right:?}, expected {v1:?} / {target:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// c. content and transfer codings are undone
// ---------------------------------------------------------------------------

/// Fails if the agent compares bodies as sent rather than as meant: v1
/// answers plain JSON chunked, v2 the same JSON gzip'd with a
/// Content-Length (checked first, straight from both servers), so every
/// pair differs in bytes and framing headers and matches in content.
#[test]
fn gzip_on_one_side_and_identity_chunked_on_the_other_match() -> Result<()> {
    let _machine = or_skip!(serial());
    let v1 = Behaviour {
        chunked: true,
        ..Behaviour::v1("v1")
    };
    let v2 = Behaviour {
        gzip: true,
        ..Behaviour::v1("v2")
    };
    let rig = AppRig::new(v1, vec![Some(v2)])?;
    // The premise: the two really differ on the wire.
    let probe = ClientRequest::new("GET", "/items/4", &["Accept-Encoding: gzip"]);
    let mut direct = AppClient::connect(rig.rig.primary(), rig.rig.shadow_addr(0))?;
    let zipped = direct.exchange(&probe)?;
    direct.close()?;
    ensure!(
        zipped.header("content-encoding") == Some("gzip")
            && zipped.header("content-length").is_some(),
        "v2 does not gzip: {zipped:?}"
    );

    let v2_url = shadow_url(0);
    let agent = rig.agent(&["--shadow", &v2_url, "--compare"], 1)?;
    let gzip = "Accept-Encoding: gzip, deflate";
    let mut requests = Vec::new();
    for n in 1..=60u64 {
        requests.push((
            ClientRequest::new("GET", &format!("/items/{n}"), &[gzip]),
            200,
        ));
    }
    for i in 0..20u64 {
        let body = format!("{{\"item\":{i},\"quantity\":3}}");
        requests.push((
            ClientRequest::new("POST", "/orders", &[gzip]).body(body, i % 2 == 0),
            201,
        ));
    }
    for n in 1..=10u64 {
        requests.push((
            ClientRequest::new("GET", &format!("/stream/{n}"), &[gzip]),
            200,
        ));
        requests.push((ClientRequest::new("GET", "/cached", &[gzip]), 200));
    }
    let mut sent = Sent::default();
    let responses = send(&rig, &requests, 2, &mut sent)?;
    let plain = &responses[3];
    ensure!(
        plain.header("transfer-encoding") == Some("chunked")
            && plain.header("content-encoding").is_none()
            && serde_json::from_slice::<Value>(&plain.body)? == item(4),
        "v1 does not answer plain chunked JSON: {plain:?}"
    );
    let report = rig.judged(&[&v2_url], sent.total())?;
    let v2_report = target(&report, &v2_url)?;
    ensure!(
        verdict(v2_report)? == (100, 100, 0),
        "v2 (compared, match, differ) = {:?}, expected (100, 100, 0): {report:#}",
        verdict(v2_report)?
    );
    ensure!(
        not_compared(v2_report).values().all(|n| *n == 0),
        "not compared: {:?}",
        not_compared(v2_report)
    );
    stop(agent)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// d. a baseline tells noise from differences
// ---------------------------------------------------------------------------

/// Items, orders and empties (70 requests, 60 with a JSON body).
fn noisy_traffic(rig: &AppRig, sent: &mut Sent) -> Result<()> {
    let mut requests = Vec::new();
    for n in 1..=40u64 {
        requests.push((ClientRequest::new("GET", &format!("/items/{n}"), &[]), 200));
    }
    for i in 0..20u64 {
        requests.push(mixed(i * 10 + 3));
    }
    for i in 0..10u64 {
        requests.push(mixed(i * 10 + 6));
    }
    send(rig, &requests, 2, sent)?;
    Ok(())
}

/// Fails if the per-answer `served_at` is not seen as a difference without
/// a baseline (60 JSON answers at `$.served_at`), if with a baseline it is
/// not marked noise, or if the noise still counts against v2 (v2 must then
/// read 100 %). `--baseline` alone must turn the comparison on.
#[test]
fn a_baseline_marks_the_unique_timestamp_as_noise_and_v2_then_matches() -> Result<()> {
    let _machine = or_skip!(serial());
    let noisy = |name: &str| Behaviour {
        served_at: true,
        ..Behaviour::v1(name)
    };
    let rig = AppRig::new(noisy("v1"), vec![Some(noisy("v2")), Some(noisy("v1-b"))])?;
    let (v2, baseline) = (shadow_url(0), shadow_url(1));

    // Without a baseline: every JSON answer differs at $.served_at.
    let agent = rig.agent(&["--shadow", &v2, "--compare"], 1)?;
    let mut sent = Sent::default();
    noisy_traffic(&rig, &mut sent)?;
    let report = rig.judged(&[&v2], 70)?;
    let v2_report = target(&report, &v2)?;
    ensure!(
        verdict(v2_report)? == (70, 10, 60),
        "without a baseline, v2 (compared, match, differ) = {:?}, expected (70, 10, 60): \
         {report:#}",
        verdict(v2_report)?
    );
    for (name, n) in [("GET /items/{id}", 40), ("POST /orders", 20)] {
        let got = fields(endpoint(v2_report, name)?);
        ensure!(
            got == BTreeMap::from([("$.served_at".to_owned(), (n, false))]),
            "without a baseline, {name}: fields {got:?}"
        );
    }
    stop(agent)?;

    // With one: noise, and v2 matches.
    let agent = rig.agent(&["--shadow", &v2, "--baseline", &baseline], 2)?;
    let mut sent = Sent::default();
    noisy_traffic(&rig, &mut sent)?;
    let report = rig.judged(&[&v2, &baseline], 70)?;
    let v2_report = target(&report, &v2)?;
    ensure!(
        verdict(v2_report)? == (70, 70, 0),
        "with a baseline, v2 (compared, match, differ) = {:?}, expected (70, 70, 0): {report:#}",
        verdict(v2_report)?
    );
    ensure!(
        v2_report["match_percent"].as_f64() == Some(100.0),
        "v2 match_percent {}",
        v2_report["match_percent"]
    );
    ensure!(
        v2_report["role"] == "candidate",
        "v2's role {}",
        v2_report["role"]
    );
    let baseline_report = target(&report, &baseline)?;
    ensure!(
        baseline_report["role"] == "baseline",
        "the baseline's role {}",
        baseline_report["role"]
    );
    // The field is reported, as noise, and nowhere as a difference.
    let mut noise_seen = false;
    for t in report["targets"].as_array().context("no targets")? {
        for e in t["endpoints"].as_array().into_iter().flatten() {
            for (path, (_, noise)) in fields(e) {
                ensure!(
                    path != "$.served_at" || noise,
                    "{} {}: $.served_at not marked noise: {e:#}",
                    t["target"],
                    e["endpoint"]
                );
                noise_seen |= path == "$.served_at";
            }
        }
    }
    ensure!(
        noise_seen,
        "$.served_at is nowhere reported as noise: {report:#}"
    );
    stop(agent)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// e. slow and dead targets are not compared, and v1 does not wait
// ---------------------------------------------------------------------------

/// Fails if a pair without the target's answer in time is counted as a
/// match or a difference (the slow target's late "ok" would differ from
/// v1's JSON), if a pair is lost instead of counted as not compared, if
/// the reason is not the one that says why (the slow target: `timeout`,
/// the comparison's deadline passing first, the copy possibly still
/// queued; the dead one: `target_failed`, refused before the request was
/// sent), or if v1's clients wait for the targets (each request under
/// 500 ms). A target that got the request and failed it is a difference
/// of kind `failed` instead: `compare_failed.rs`.
#[test]
fn slow_and_dead_targets_are_counted_as_not_compared_and_v1_does_not_wait() -> Result<()> {
    let _machine = or_skip!(serial());
    // Shadow 0 answers after 3 s, shadow 1 has nothing listening.
    let rig = AppRig::new(Behaviour::v1("v1"), vec![None, None])?;
    let _slow = Server::builder()
        .delay(Duration::from_secs(3))
        .start(rig.rig.shadow(0), rig.rig.shadow_addr(0))?;
    let (slow, dead) = (shadow_url(0), shadow_url(1));
    let agent = rig.agent(
        &[
            "--shadow",
            &slow,
            "--shadow",
            &dead,
            "--compare",
            "--compare-timeout",
            "1s",
        ],
        2,
    )?;
    let mut client = rig.client()?;
    for n in 1..=20u64 {
        let started = Instant::now();
        let response = client.exchange(&ClientRequest::new("GET", &format!("/items/{n}"), &[]))?;
        let took = started.elapsed();
        ensure!(
            response.status == 200 && serde_json::from_slice::<Value>(&response.body)? == item(n),
            "v1's answer to /items/{n}: {response:?}"
        );
        ensure!(
            took < Duration::from_millis(500),
            "v1 took {took:?} for /items/{n}"
        );
    }
    client.close()?;
    let report = rig.judged(&[&slow, &dead], 20)?;
    for (url, reason) in [(&slow, "timeout"), (&dead, "target_failed")] {
        let t = target(&report, url)?;
        ensure!(
            verdict(t)? == (0, 0, 0),
            "{url}: (compared, match, differ) = {:?}, expected none: {report:#}",
            verdict(t)?
        );
        let reasons = not_compared(t);
        ensure!(
            reasons.get(reason) == Some(&20) && reasons.values().sum::<u64>() == 20,
            "{url}: not compared {reasons:?}, expected 20 {reason}"
        );
    }
    ensure!(
        rig.v1.answered().total() == 20,
        "v1 answered {:?}",
        rig.v1.answered()
    );
    stop(agent)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// f. the egress program only when comparing
// ---------------------------------------------------------------------------

/// The programs attached via TCX to `direction` of the primary's veth.
fn attached(netns: &Netns, direction: TcAttachType) -> Result<Vec<String>> {
    netns
        .run(|| {
            SchedClassifier::query_tcx(SERVER_IF, direction).map(|(_, programs)| {
                programs
                    .iter()
                    .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                    .collect::<Vec<_>>()
            })
        })
        .map_err(|e| anyhow::anyhow!("query_tcx {direction:?} on {SERVER_IF}: {e}"))
}

/// Fails if the agent attaches at egress without `--compare` (a cost the
/// user did not ask for), does not with it, or leaves it attached at exit.
#[test]
fn the_egress_program_is_attached_only_with_compare() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(Behaviour::v1("v1"), vec![Some(Behaviour::v1("v2"))])?;
    let v2 = shadow_url(0);
    let primary = rig.rig.primary();

    let agent = rig.agent(&["--shadow", &v2], 1)?;
    let (ingress, egress) = (
        attached(primary, TcAttachType::Ingress)?,
        attached(primary, TcAttachType::Egress)?,
    );
    ensure!(
        ingress == ["mirror_ingress"],
        "ingress without --compare: {ingress:?}"
    );
    ensure!(egress.is_empty(), "egress without --compare: {egress:?}");
    stop(agent)?;

    let agent = rig.agent(&["--shadow", &v2, "--compare"], 1)?;
    let egress = attached(primary, TcAttachType::Egress)?;
    ensure!(
        egress == ["mirror_egress"],
        "egress with --compare: {egress:?}"
    );
    stop(agent)?;
    let (ingress, egress) = (
        attached(primary, TcAttachType::Ingress)?,
        attached(primary, TcAttachType::Egress)?,
    );
    ensure!(
        ingress.is_empty() && egress.is_empty(),
        "left attached after exit: ingress {ingress:?}, egress {egress:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// g. credentials never reach the diff log
// ---------------------------------------------------------------------------

const SECRETS: [&str; 4] = ["SECRET-A", "SECRET-B", "SECRET-C", "SECRET-D"];

/// Fails if a credential of the request (Authorization, Cookie) or of the
/// responses (Set-Cookie, different on each side) is written to the diff
/// log or the agent's log, or if the diff log stays empty although every
/// order differs (then the test proves nothing).
#[test]
fn credentials_never_reach_the_diff_log() -> Result<()> {
    let _machine = or_skip!(serial());
    let v1 = Behaviour {
        session_cookie: Some("SECRET-C".to_owned()),
        ..Behaviour::v1("v1")
    };
    let v2 = Behaviour {
        session_cookie: Some("SECRET-D".to_owned()),
        regressions: Regressions {
            order_total_plus: 5,
            ..Regressions::default()
        },
        ..Behaviour::v1("v2")
    };
    let rig = AppRig::new(v1, vec![Some(v2)])?;
    let scratch = ScratchDir::new("difflog")?;
    let log = scratch.path().join("diff.jsonl");
    let log_arg = log.display().to_string();
    let v2_url = shadow_url(0);
    let agent = rig.agent(
        &["--shadow", &v2_url, "--compare", "--diff-log", &log_arg],
        1,
    )?;
    let credentials = [
        "Authorization: Bearer SECRET-A",
        "Cookie: sid=SECRET-B; theme=dark",
    ];
    let mut requests = Vec::new();
    for i in 0..20u64 {
        let body = format!("{{\"item\":{i},\"quantity\":1}}");
        requests.push((
            ClientRequest::new("POST", "/orders", &credentials).body(body, false),
            201,
        ));
        requests.push((
            ClientRequest::new("GET", &format!("/items/{i}"), &credentials),
            200,
        ));
    }
    let mut sent = Sent::default();
    let responses = send(&rig, &requests, 2, &mut sent)?;
    ensure!(
        responses[0]
            .header("set-cookie")
            .is_some_and(|c| c.contains("SECRET-C")),
        "v1 sets no session cookie: {:?}",
        responses[0]
    );
    let report = rig.judged(&[&v2_url], 40)?;
    let (_, _, differ) = verdict(target(&report, &v2_url)?)?;
    ensure!(
        differ >= 20,
        "v2 differs in {differ} pairs, 20 orders planted: {report:#}"
    );
    let stopped = stop(agent)?;

    let text = std::fs::read_to_string(&log)
        .with_context(|| format!("no diff log at {}", log.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        !lines.is_empty(),
        "the diff log is empty although 20 orders differ"
    );
    let mut total_logged = false;
    for line in &lines {
        let entry: Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        total_logged |= entry.to_string().contains("$.total");
        for secret in SECRETS {
            ensure!(!line.contains(secret), "{secret} in the diff log: {line}");
        }
    }
    ensure!(
        total_logged,
        "no diff log line names the differing field $.total: {lines:?}"
    );
    for secret in SECRETS {
        ensure!(
            !stopped.exit.stderr.contains(secret) && !stopped.exit.stdout.contains(secret),
            "{secret} in the agent's output"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// h. the report as JSON, as a page in a browser, as metrics
// ---------------------------------------------------------------------------

/// Fails if `/compare.html` is not one self-contained page that, rendered
/// by a real browser, names the target, the differing endpoints and
/// fields; if promtool rejects the metrics; or if the metrics' counts are
/// not the planted ones (120 match, 50 differ; 10 status, 10 header, 30
/// body; every other result present and 0).
#[test]
fn the_report_page_metrics_and_json_show_the_planted_differences() -> Result<()> {
    let _machine = or_skip!(serial());
    let (rig, v3_url, agent, _, report) = planted_and_judged()?;
    ensure!(verdict(target(&report, &v3_url)?)?.2 == 50, "{report:#}");
    let primary = rig.rig.primary();

    // The page: self-contained, and what a browser shows.
    let (status, html) = http_client::get(primary, DEFAULT_ADDR, "/compare.html")?;
    ensure!(status == 200, "/compare.html answered {status}");
    ensure!(
        html.to_ascii_lowercase().contains("<html"),
        "not a page: {html}"
    );
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
        "url(http",
    ] {
        ensure!(
            !html.contains(external),
            "the page loads something from elsewhere ({external})"
        );
    }
    let scratch = ScratchDir::new("chromium")?;
    let profile = format!("--user-data-dir={}", scratch.path().display());
    let dom = primary.exec(
        "timeout",
        [
            "25",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &profile,
            "--dump-dom",
            &format!("http://{DEFAULT_ADDR}/compare.html"),
        ],
    )?;
    // What the page shows, not what its scripts carry.
    let dom = without_scripts(&dom);
    for shown in [
        v3_url.as_str(),
        "GET /items/{id}",
        "POST /orders",
        "GET /empty",
        "$.total",
    ] {
        ensure!(
            dom.contains(shown),
            "the rendered page does not show {shown:?}: {dom}"
        );
    }
    ensure!(
        dom.to_ascii_lowercase().contains("x-version"),
        "the rendered page does not show the X-Version header: {dom}"
    );

    // The metrics.
    let (status, exposition) = http_client::get(primary, DEFAULT_ADDR, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    prometheus::check_metrics(&exposition)?;
    let metrics = Metrics::parse(&exposition)?;
    let result = |result: &str| {
        metrics.get(
            "mirror_compare_total",
            &[("target", v3_url.as_str()), ("result", result)],
        )
    };
    ensure!(
        (result("match"), result("differ")) == (Some(120.0), Some(50.0)),
        "mirror_compare_total match {:?}, differ {:?}; expected 120, 50",
        result("match"),
        result("differ")
    );
    for reason in NOT_COMPARED {
        ensure!(
            result(reason) == Some(0.0),
            "result {reason}: {:?}",
            result(reason)
        );
    }
    for (kind, n) in [("status", 10.0), ("header", 10.0), ("body", 30.0)] {
        let got = metrics.get(
            "mirror_compare_differences_total",
            &[("target", v3_url.as_str()), ("kind", kind)],
        );
        ensure!(
            got == Some(n),
            "mirror_compare_differences_total {kind}: {got:?}, planted {n}"
        );
    }
    // The egress program's own accounting: every response segment the
    // capture matched has a ring record, emitted or lost (counted), and
    // the 170 responses came through it.
    let records = |outcome: &str| {
        metrics
            .get(
                "mirror_kernel_response_records_total",
                &[("outcome", outcome)],
            )
            .unwrap_or(-1.0)
    };
    let matched = metrics
        .get(
            "mirror_kernel_response_packets_total",
            &[("outcome", "matched")],
        )
        .unwrap_or(0.0);
    ensure!(
        matched >= 170.0 && records("matched") == records("emitted") + records("lost"),
        "egress accounting: {matched} packets matched; records matched {} = emitted {} + lost {}?",
        records("matched"),
        records("emitted"),
        records("lost")
    );
    stop(agent)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// g. offline: v1's answers recorded, the shadows' compared at replay
// ---------------------------------------------------------------------------

/// `N compared`, `D differ` and the kinds text of a replay's verdict line
/// for `url` (`final counts: comparison: URL (role): P % match of N compared,
/// D differ (status 10, body 30, header 10)...`).
fn offline_verdict(stdout: &str, url: &str) -> Result<(u64, u64, String)> {
    let prefix = format!("final counts: comparison: {url} (candidate): ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .with_context(|| format!("no verdict line for {url}: {stdout}"))?;
    let number_before = |word: &str| -> Result<u64> {
        let at = line
            .find(word)
            .with_context(|| format!("no `{word}` in {line:?}"))?;
        let n = line[..at].split_whitespace().last().unwrap_or_default();
        n.parse()
            .with_context(|| format!("`{n}` before {word} in {line:?}"))
    };
    let kinds = line
        .split_once(" differ (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or(String::new(), |(kinds, _)| kinds.to_owned());
    Ok((
        number_before(" compared")?,
        number_before(" differ")?,
        kinds,
    ))
}

/// Fails if `record --responses` does not write every answer of v1 with
/// its request's id (chunked, HEAD, 204/304, 100-continue and pipelined
/// ones included: a response framed wrong shows as a difference), or if
/// `replay --compare` does not pair the replayed answers with them (from
/// the recording, and from tcpdump's capture of the same traffic): the
/// identical v2 must match every one, and v3's planted regressions must be
/// counted exactly as the live comparison counts them (10 statuses, 10
/// headers, 50 bodies).
#[test]
fn v1s_recorded_answers_give_the_live_verdicts_when_the_file_is_replayed() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(
        Behaviour::v1("v1"),
        vec![Some(Behaviour::v1("v2")), Some(v3())],
    )?;
    let scratch = ScratchDir::new("offline")?;
    let file = scratch.path().join("v1.gor").display().to_string();
    let port = mirror_tests::rig::PORT.to_string();
    let recorder = agent::start_attached_exact(
        rig.rig.primary(),
        &[
            "record",
            "--iface",
            SERVER_IF,
            "--port",
            &port,
            "--responses",
            "--output",
            &file,
            "--nice",
            "0",
        ],
    )?;
    // The same traffic as an SRE's tcpdump of v1's port, for `replay
    // --input-pcap --compare`: whole packets (the rig's veths segment
    // late, up to 64 KiB).
    let pcap = scratch.path().join("v1.pcap");
    let tcpdump = Tcpdump::start(rig.rig.primary(), SERVER_IF, &pcap, 262_144)?;
    let mut sent = Sent::default();
    planted_traffic(&rig, &mut sent)?;
    // HEAD /items/{n} (n never a multiple of 10: no 500 on v3), orders
    // uploaded chunked and after 100-continue (v3's total is off in each:
    // 20 more bodies differ).
    let requests: Vec<_> = (0..10u64)
        .flat_map(|i| [2, 4, 9].map(|k| mixed(i * 10 + k)))
        .collect();
    send(&rig, &requests, 2, &mut sent)?;
    let report = ab::run(
        rig.rig.client(),
        &["-k", "-n", "50", "-c", "2"],
        &rig.rig.primary_url("/items/7"),
    )?;
    ensure!(
        report.complete == 50 && report.failed == 0,
        "{}",
        report.text
    );
    sent.add("GET", "/items/7", 50);
    let total = sent.total();
    tcpdump.stop()?;

    let exit = recorder
        .stop(Signal::INT, Duration::from_secs(20))?
        .success()?;
    let written = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("final counts: target=file "))
        .with_context(|| format!("no file counts: {}", exit.stdout))?;
    ensure!(
        written.contains(&format!("captured={total} written={total} ")),
        "{written}"
    );
    let responses = exit
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("final counts: responses_written="))
        .with_context(|| format!("no responses line: {}", exit.stdout))?;
    ensure!(
        responses.starts_with(&format!("{total} responses_dropped=0")),
        "responses_written={responses}, {total} requests"
    );

    let (v2, v3) = (shadow_url(0), shadow_url(1));
    let stdout = replay_compared(&rig, &[&file], &v2, &v3)?;
    ensure!(
        stdout.contains(&format!(
            "payloads_read={} requests={total} responses={total} malformed=0",
            2 * total
        )),
        "{stdout}"
    );
    planted_verdicts(&stdout, &v2, &v3, total).context("from the recording")?;
    eprintln!("offline: {total} requests recorded with v1's answers, replayed:\n{stdout}");

    // The capture file instead: v1's answers are paired from its packets.
    let pcap = pcap.display().to_string();
    let stdout = replay_compared(&rig, &["--input-pcap", &pcap, "--port", &port], &v2, &v3)?;
    ensure!(
        stdout.contains(&format!(
            "final counts: capture: requests_captured={total} requests_skipped=0 \
             responses_written={total} responses_dropped=0"
        )),
        "{stdout}"
    );
    planted_verdicts(&stdout, &v2, &v3, total).context("from tcpdump's capture")?;
    eprintln!("offline from tcpdump's capture:\n{stdout}");
    Ok(())
}

/// `replay SOURCE --shadow v2 --shadow v3 --compare --speed max` on v1's
/// host, which must succeed: its standard output.
fn replay_compared(rig: &AppRig, source: &[&str], v2: &str, v3: &str) -> Result<String> {
    let mut args = vec!["replay"];
    args.extend_from_slice(source);
    args.extend([
        "--shadow",
        v2,
        "--shadow",
        v3,
        "--compare",
        "--speed",
        "max",
        "--nice",
        "0",
    ]);
    let output = agent::run_to_end(rig.rig.primary(), &[], &args)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "replay {source:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// The offline verdicts of the planted traffic: the identical v2 matches
/// every one of `total`, v3 differs in exactly the 70 planted (10
/// statuses, 10 headers, 50 bodies), and every request was compared.
fn planted_verdicts(stdout: &str, v2: &str, v3: &str, total: u64) -> Result<()> {
    let (compared, differ, kinds) = offline_verdict(stdout, v2)?;
    ensure!(
        (compared, differ) == (total, 0),
        "v2: {compared} compared, {differ} differ of {total}: {stdout}"
    );
    ensure!(!stdout.contains("not compared"), "{stdout}");
    let (compared, differ, kinds3) = offline_verdict(stdout, v3)?;
    ensure!(
        (compared, differ, kinds3.as_str()) == (total, 70, "status 10, body 50, header 10"),
        "v3: {compared} compared, {differ} differ ({kinds3}) of {total}; planted 70 \
         (status 10, body 50, header 10): {stdout} {kinds}"
    );
    Ok(())
}
