//! Hardening found by a hostile test pass (issue 16), each finding
//! reproduced end to end: real clients talk to v1 in its namespace, the
//! real `mirror-agent` binary captures on v1's interface and replays to a
//! shadow behind it, and every test checks the one promise the finding
//! broke. The first: **a shadow only ever gets requests v1 got**: any
//! request the shadow received that v1 did not fails the test.
//!
//! ```text
//!  client ──▶ v1 (rig server or nginx; mirror-agent on veth-s) ──▶ shadow
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test hardening`.

use std::{
    io::{Read as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{Agent, HttpClient, Nginx, ReceivedRequest, Signal, tcp};
use mirror_tests::{
    ReplayRig,
    agent::{self, Stopped},
    mirrored::{MARKER, compare_mirrored},
    require_kernel,
};

/// SIGTERM; the agent must exit 0 with counts that balance.
fn stop(agent: Agent) -> Result<Stopped> {
    agent::check_exit(agent.stop(Signal::TERM, Duration::from_secs(20))?)
}

/// A request as the rig server keeps it: what the shadow must get.
fn as_received(wire: &[u8]) -> ReceivedRequest {
    ReceivedRequest {
        head: wire.to_vec(),
        body: Vec::new(),
        chunked: false,
        trailers: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// invented requests
// ---------------------------------------------------------------------------

/// One line of the upload: it reads as a whole request.
fn upload_line(i: usize) -> Vec<u8> {
    format!("GET /invented/{i:06} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Lines of the upload per client write: the writes start and end on line
/// boundaries, as if the client sent a request log line by line.
const LINES_PER_WRITE: usize = 400;
const UPLOAD_BYTES: usize = 2 << 20;

/// The agent restarts while a client uploads 2 MB whose body is request
/// lines: the new agent joins the connection in the middle of the body and
/// must not take a line for a request (the finding: 24,041 GETs v1 never
/// got). The client's requests after the upload are its evidence that the
/// connection's framing is back: they must be mirrored.
#[test]
fn an_agent_restart_during_a_two_megabyte_upload_invents_no_request() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let (mut rig, first) = ReplayRig::builder(1).mirror_to(&[0]).start()?;
    let host = rig.primary_addr().to_string();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();

    let line_len = upload_line(0).len();
    let lines = UPLOAD_BYTES / line_len;
    let body: Vec<u8> = (0..lines).flat_map(upload_line).collect();
    let writes: Vec<&[u8]> = body.chunks(LINES_PER_WRITE * line_len).collect();
    let (first_half, second_half) = writes.split_at(writes.len() / 2);

    let mut client = HttpClient::connect(rig.client(), rig.primary_addr())?;
    let before = get("/before");
    ensure!(client.request(&before)?.status == 200);
    let started = Instant::now();
    client.write(
        format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    for write in first_half {
        client.write(write)?;
    }
    rig.settle(&[&rig.url(0)], 1)?;
    let first = stop(first)?;
    ensure!(first.target(&rig.url(0))?.get("sent") == 1);

    // The restarted agent joins in the middle of the upload.
    let second = rig.start_agent()?;
    for write in second_half {
        client.write(write)?;
        std::thread::sleep(Duration::from_micros(200));
    }
    ensure!(client.response(started)?.status == 200, "the upload");
    let after: Vec<Vec<u8>> = (0..5).map(|i| get(&format!("/after/{i}"))).collect();
    for request in &after {
        ensure!(client.request(request)?.status == 200);
    }
    client.close()?;
    let metrics = rig.settle(&[&rig.url(0)], after.len() as u64)?;
    let joins = metrics.get(
        "mirror_requests_skipped_total",
        &[("reason", "midstream_join")],
    );
    ensure!(joins == Some(1.0), "midstream_join drops: {joins:?}");
    stop(second)?;

    let served = rig.stop_servers()?;
    ensure!(served.v1.request_count() == 2 + after.len());
    // Exactly /before and the requests after the upload, nothing else.
    let expected: Vec<ReceivedRequest> = std::iter::once(&before)
        .chain(&after)
        .map(|wire| as_received(wire))
        .collect();
    let matched = compare_mirrored(&expected, served.shadow(0), MARKER)
        .context("the shadow against what v1 received")?;
    ensure!(matched == 1 + after.len());
    Ok(())
}

/// A request v1 refuses (400 and close, as RFC 9112 asks of a server that
/// cannot trust the framing), and a request hidden in it. The agent must
/// not frame past the refused request: the hidden one never reached v1.
const FRAMING_TRICKS: [(&str, &[u8]); 5] = [
    (
        "HTTP/1.0 with Transfer-Encoding",
        b"POST /s3 HTTP/1.0\r\nHost: v1\r\nTransfer-Encoding: chunked\r\n\r\n1f\r\n",
    ),
    (
        "two different Content-Lengths",
        b"POST /cl HTTP/1.1\r\nHost: v1\r\nContent-Length: 3\r\nContent-Length: 31\r\n\r\n",
    ),
    (
        "an obs-folded header line",
        b"POST /fold HTTP/1.1\r\nHost: v1\r\nX-A: 1\r\n Content-Length: 31\r\n\r\n",
    ),
    (
        "a transfer coding after chunked",
        b"POST /te HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    ),
    (
        "a malformed chunk size",
        b"POST /chunk HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ),
];
const HIDDEN: &[u8] = b"GET /s3-invented HTTP/1.1\r\nHost: v1\r\n\r\n";

/// Sends `parts` as writes of their own on a fresh connection, reads what
/// v1 answers until it closes; returns the answer.
fn refused_exchange(rig: &ReplayRig, parts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut stream = tcp::connect(rig.client(), rig.primary_addr())?;
    stream.set_nodelay(true)?;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        // v1 may have closed already: what it did not read, it never got.
        if stream.write_all(part).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    // A reset after the close also ends the exchange.
    let _ = stream.read_to_end(&mut answer);
    Ok(answer)
}

#[test]
fn requests_hidden_behind_framing_v1_refuses_reach_no_shadow() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let mut rig = ReplayRig::builder(1)
        .own_primary()
        .mirror_to(&[0])
        .build()?;
    let v1 = Nginx::start(
        rig.primary(),
        rig.primary_addr(),
        "    location / { return 200 \"ok\"; }",
    )?;
    let agent = rig.start_agent()?;
    for (name, trick) in FRAMING_TRICKS {
        let glued = [trick, HIDDEN].concat();
        for parts in [vec![&glued[..]], vec![trick, HIDDEN]] {
            let answer = refused_exchange(&rig, &parts)?;
            ensure!(
                answer.starts_with(b"HTTP/1.1 4") || answer.starts_with(b"HTTP/1.1 5"),
                "{name}: v1 answered {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    // Plain requests after them, so that a pipeline mirroring nothing
    // fails the test too.
    let host = rig.primary_addr().to_string();
    let controls: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("GET /control/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes())
        .collect();
    rig.send_all(&controls, 1)?;
    rig.settle(&[&rig.url(0)], controls.len() as u64)?;
    stop(agent)?;

    let answered = v1.answered()?;
    ensure!(
        answered.iter().all(|a| !a.request.contains("invented")),
        "v1 served the hidden request: {answered:?}"
    );
    let refused = answered.iter().filter(|a| a.status >= 400).count();
    ensure!(
        refused == 2 * FRAMING_TRICKS.len(),
        "v1 refused {refused} requests: {answered:?}"
    );
    let expected: Vec<ReceivedRequest> = controls.iter().map(|w| as_received(w)).collect();
    let shadow = rig.stop_shadow(0)?;
    let matched = compare_mirrored(&expected, &shadow, MARKER)
        .context("the shadow against what v1 served")?;
    ensure!(matched == controls.len());
    Ok(())
}
