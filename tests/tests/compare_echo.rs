//! mirror's own additions to the copies are never differences (issue 23,
//! item 4): a target that echoes the request back (an echo service shows
//! the headers, method and path it got in its JSON body) sees the marker
//! header, the forwarded-for address, a set header and a rewritten path
//! that v1's requests did not carry. v1 and the candidate are the same
//! echo service and there is no baseline: every pair must match.
//!
//! ```text
//!  client ──▶ v1 AppServer, echo (mirror-agent on veth-s, ingress + egress)
//!                 └─veth-sh0──▶ shadow 0: the same AppServer, echo
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test compare_echo`.

use anyhow::{Context as _, Result, ensure};
use mirror_tests::compare_rig::{
    AppRig, fields, kinds, not_compared, serial, stop, target, verdict,
};
use mirror_tests::{app::Behaviour, app_client::ClientRequest, or_skip, rig::shadow_url};
use serde_json::Value;

/// An echo server called `name`.
fn echo(name: &str) -> Behaviour {
    Behaviour {
        echo: true,
        ..Behaviour::v1(name)
    }
}

/// Request `i` and the status v1 answers: items (some with the client's
/// own X-Forwarded-For, which the copy's address is appended to), HEADs,
/// orders, the cached endpoint, and a path the agent rewrites for the
/// target (both answer it 404, each echoing the path it got).
fn request(i: u64) -> (ClientRequest, u16) {
    match i % 6 {
        0 => (ClientRequest::new("GET", &format!("/items/{i}"), &[]), 200),
        1 => (
            ClientRequest::new(
                "GET",
                &format!("/items/{i}"),
                &["X-Forwarded-For: 192.0.2.7", "Accept: application/json"],
            ),
            200,
        ),
        2 => (ClientRequest::new("HEAD", &format!("/items/{i}"), &[]), 200),
        3 => (
            ClientRequest::new("POST", "/orders", &["Content-Type: application/json"]).body(
                format!("{{\"item\":{},\"quantity\":{}}}", i % 40 + 1, i % 3 + 1),
                false,
            ),
            201,
        ),
        4 => (ClientRequest::new("GET", "/cached", &["X-Env: prod"]), 200),
        _ => (ClientRequest::new("GET", &format!("/old/{i}"), &[]), 404),
    }
}

/// Fails if an addition of the agent's own, echoed back by the candidate,
/// is counted as a difference: `$.request.headers['x-mirrored-by']` (the
/// marker), `$.request.headers['x-forwarded-for']` (added, or appended to
/// the client's), `$.request.headers['x-env']` (set over the client's),
/// `$.request.path` (rewritten `/old/` → `/new/`); or if a pair is lost.
#[test]
fn an_echo_service_behind_v1_and_an_identical_candidate_differ_in_nothing() -> Result<()> {
    let _machine = or_skip!(serial());
    let rig = AppRig::new(echo("v1"), vec![Some(echo("v2"))])?;
    let v2 = shadow_url(0);
    let agent = rig.agent(
        &[
            "--shadow",
            &v2,
            "--compare",
            "--forwarded-for",
            "--set-header",
            "X-Env: shadow",
            "--rewrite-path",
            "^/old/(.*)=>/new/$1",
        ],
        1,
    )?;

    let total = 300u64;
    let connections = 3;
    let mut clients = (0..connections)
        .map(|_| rig.client())
        .collect::<Result<Vec<_>>>()?;
    for i in 0..total {
        let (request, status) = request(i);
        let response = clients[i as usize % connections].exchange(&request)?;
        ensure!(
            response.status == status,
            "{}: v1 answered {}, expected {status}",
            request.head.lines().next().unwrap_or(""),
            response.status
        );
    }
    for client in clients {
        client.close()?;
    }

    let report = rig.judged(&[&v2], total)?;
    let v2_report = target(&report, &v2)?;
    let differing: Vec<(String, Value)> = v2_report["endpoints"]
        .as_array()
        .context("no `endpoints` array")?
        .iter()
        .map(|e| {
            (
                e["endpoint"].to_string(),
                Value::from(format!("{:?}", fields(e))),
            )
        })
        .collect();
    let (compared, matched, differ) = verdict(v2_report)?;
    ensure!(
        (compared, matched, differ) == (total, total, 0),
        "v2: compared {compared}, match {matched}, differ {differ} of {total}; fields by \
         endpoint: {differing:?}"
    );
    ensure!(
        kinds(v2_report)? == [0, 0, 0],
        "kinds {}",
        v2_report["kinds"]
    );
    ensure!(
        not_compared(v2_report).values().all(|n| *n == 0),
        "not compared: {:?}",
        not_compared(v2_report)
    );
    stop(agent)?;

    // The candidate did get the additions (else the test proves nothing).
    let v2_answered = rig.shadows[0].as_ref().context("no v2")?.answered();
    ensure!(
        v2_answered
            .endpoints
            .keys()
            .any(|e| e.starts_with("GET /new/")),
        "the path rewrite never reached v2: {v2_answered:?}"
    );
    ensure!(
        !rig.v1
            .answered()
            .endpoints
            .keys()
            .any(|e| e.starts_with("GET /new/")),
        "v1 got a rewritten path"
    );
    Ok(())
}
