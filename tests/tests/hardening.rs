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
    collections::BTreeMap,
    io::{Read as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{
    Agent, HttpClient, Metrics, Nginx, ReceivedRequest, Server, Signal, metrics, tcp, wait_until,
};
use mirror_tests::{
    ReplayRig,
    agent::{self, Stopped},
    http_compare::show,
    mirrored::{MARKER, compare_mirrored},
    ops::TargetAccount,
    require_kernel,
    rig::{Served, shadow_url},
};

/// SIGTERM; the agent must exit 0 with counts that balance.
fn stop(agent: Agent) -> Result<Stopped> {
    agent::check_exit(agent.stop(Signal::TERM, Duration::from_secs(20))?)
}

/// `requests` over one connection, then the agent stopped: it must have
/// captured each and had each answered 2xx by the shadow. What v1 and the
/// shadow received.
fn all_answered(rig: &mut ReplayRig, agent: Agent, requests: &[Vec<u8>]) -> Result<Served> {
    let n = requests.len() as u64;
    rig.send_all(requests, 1)?;
    rig.settle(&[&rig.url(0)], n)?;
    let stopped = stop(agent)?;
    let counts = stopped.target(&rig.url(0))?;
    ensure!(
        counts.get("captured") == n && counts.get("2xx") == n,
        "final counts: {counts}"
    );
    rig.stop_servers()
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
    require_kernel!();
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
    // The upload streams: its copy went at its head and is under way.
    let streaming = wait_until(Duration::from_secs(20), || {
        Metrics::scrape(rig.primary(), metrics::DEFAULT_ADDR).is_ok_and(|m| {
            m.get("mirror_requests_streamed_total", &[]) == Some(1.0)
                && m.shadow_outcomes(&rig.url(0)).get("2xx") == Some(&1)
        })
    });
    ensure!(streaming, "/before sent and the upload streaming");
    let first = stop(first)?;
    let counts = first.target(&rig.url(0))?;
    // Stopped mid-body, the copy is given up (its connection closed
    // mid-body), never completed with something else.
    ensure!(
        counts.get("captured") == 2 && counts.get("sent") == 1 && counts.get("dropped") == 1,
        "first agent: {counts}"
    );

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

    let v1 = rig.stop_v1()?;
    // The first agent closed the upload's copy mid-body: that connection
    // ended broken, the others whole.
    let shadow = rig.halt_shadow(0);
    ensure!(v1.request_count() == 2 + after.len());
    // Exactly /before and the requests after the upload, nothing else.
    let expected: Vec<ReceivedRequest> = std::iter::once(&before)
        .chain(&after)
        .map(|wire| as_received(wire))
        .collect();
    let matched = compare_mirrored(&expected, &shadow, MARKER)
        .context("the shadow against what v1 received")?;
    ensure!(matched == 1 + after.len());
    Ok(())
}

/// A request v1 refuses (400 and close, as RFC 9112 asks of a server that
/// cannot trust the framing), and a request hidden in it. The agent must
/// not frame past the refused request: the hidden one never reached v1.
const FRAMING_TRICKS: [(&str, &[u8]); 11] = [
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
    // nginx answers 501: a shadow that took it as chunked would read the
    // hidden request as one.
    (
        "a transfer coding before chunked",
        b"POST /deflate HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: deflate, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "two Transfer-Encoding fields",
        b"POST /te2 HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "HTTP/1.1 without Host",
        b"GET /nohost HTTP/1.1\r\nX-A: 1\r\n\r\n",
    ),
    (
        "a CONNECT",
        b"CONNECT v1:443 HTTP/1.1\r\nHost: v1:443\r\n\r\n",
    ),
    (
        "an asterisk-form target other than OPTIONS",
        b"M-SEARCH * HTTP/1.1\r\nHost: v1\r\n\r\n",
    ),
    (
        "userinfo in an absolute-form target",
        b"GET http://a:b@c@v1/toto HTTP/1.1\r\nHost: v1\r\n\r\n",
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
    require_kernel!();
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

// ---------------------------------------------------------------------------
// RFC 9112 framing for an intermediary
// ---------------------------------------------------------------------------

/// `text` (a head, or trailer lines) without its `name` fields (the name
/// in any case).
fn without_field(text: &[u8], name: &str) -> Vec<u8> {
    text.split_inclusive(|b| *b == b'\n')
        .filter(|line| !is_field(line, name))
        .flatten()
        .copied()
        .collect()
}

/// Whether `line` is a `name: value` field (the name in any case).
fn is_field(line: &[u8], name: &str) -> bool {
    line.iter().position(|b| *b == b':').is_some_and(|colon| {
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
    })
}

/// Whether any line of `text` is a `name` field.
fn has_field(text: &[u8], name: &str) -> bool {
    text.split_inclusive(|b| *b == b'\n')
        .any(|line| is_field(line, name))
}

/// A chunked body: each of `chunks` as a chunk, the last chunk, then
/// `trailers` (lines with their CRLF) and the empty line.
fn chunked_body(chunks: &[&[u8]], trailers: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in chunks {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n");
    body.extend_from_slice(trailers);
    body.extend_from_slice(b"\r\n");
    body
}

/// `POST path` to `host` with these header lines (each with its CRLF),
/// then `body` as it goes on the wire.
fn post(host: &str, path: &str, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut wire = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n").into_bytes();
    wire.extend_from_slice(body);
    wire
}

/// A request with both `Transfer-Encoding: chunked` and `Content-Length`
/// is the smuggling shape: RFC 9112 §6.1 lets a server refuse it (nginx
/// answers 400) or frame it by the chunks and close, so not every server
/// frames it alike, and no shadow gets it: it is skipped as
/// `invalid_transfer_encoding`, whatever the order of the two fields, while
/// a chunked request and a Content-Length request (each on a connection of
/// its own) reach the shadow byte for byte as v1 got them.
#[test]
fn a_request_with_both_te_and_cl_never_reaches_the_shadow() -> Result<()> {
    require_kernel!();
    let (mut rig, agent) = ReplayRig::builder(1).mirror_to(&[0]).start()?;
    let host = rig.primary_addr().to_string();
    let both = [
        // Content-Length first, and shorter than the body.
        post(
            &host,
            "/te-cl/1",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            &chunked_body(&[b"hello", b" world"], b""),
        ),
        // Content-Length after, in lower case, longer than the body, with
        // a field after it and a trailer.
        post(
            &host,
            "/te-cl/2",
            "Transfer-Encoding: chunked\r\ncontent-length: 40\r\nX-After: 1\r\n",
            &chunked_body(&[b"0123456789"], b"X-Sum: 10\r\n"),
        ),
    ];
    let plain = [
        post(
            &host,
            "/chunked",
            "Transfer-Encoding: chunked\r\n",
            &chunked_body(&[b"abc"], b"X-Sum: 3\r\n"),
        ),
        post(&host, "/length", "Content-Length: 5\r\n", b"hello"),
    ];
    // The agent ignores the rest of a connection after a refused request
    // (v1 may close it): one connection per request.
    for request in both.iter().chain(&plain) {
        rig.send_all(std::slice::from_ref(request), 1)?;
    }
    let metrics = rig.settle(&[&rig.url(0)], plain.len() as u64)?;
    let refused = metrics.get(
        "mirror_requests_skipped_total",
        &[("reason", "invalid_transfer_encoding")],
    );
    ensure!(
        refused == Some(2.0),
        "invalid_transfer_encoding skips: {refused:?}"
    );
    stop(agent)?;
    let served = rig.stop_servers()?;
    let v1: Vec<&ReceivedRequest> = served.v1.requests().collect();
    ensure!(v1.len() == 4, "v1 got {} requests", v1.len());
    let expected: Vec<ReceivedRequest> = v1[2..].iter().map(|r| (*r).clone()).collect();
    let matched = compare_mirrored(&expected, served.shadow(0), MARKER)
        .context("the shadow against v1's chunked and Content-Length requests")?;
    ensure!(matched == 2);
    Ok(())
}

/// `--strip-header Authorization` keeps the credential from the shadow
/// wherever the client put it: in the head, and in the trailer section
/// of a chunked body. The other trailer fields reach the shadow intact,
/// in their order.
#[test]
fn a_stripped_header_is_left_out_of_chunked_trailers_too() -> Result<()> {
    require_kernel!();
    let (mut rig, agent) = ReplayRig::builder(1)
        .mirror_to(&[0])
        .args(&["--strip-header", "Authorization"])
        .start()?;
    let host = rig.primary_addr().to_string();
    let requests = [
        post(
            &host,
            "/trailer/1",
            "Authorization: Bearer head-secret\r\nTransfer-Encoding: chunked\r\n",
            &chunked_body(
                &[b"part one,", b"part two"],
                b"Authorization: Bearer trailer-secret\r\nX-Checksum: abc\r\n",
            ),
        ),
        post(
            &host,
            "/trailer/2",
            "Transfer-Encoding: chunked\r\nTrailer: X-A, authorization, X-B\r\n",
            &chunked_body(
                &[b"0123456789"],
                b"X-A: 1\r\nauthorization: Basic dHJhaWxlci1zZWNyZXQ=\r\nX-B: 2\r\n",
            ),
        ),
        post(
            &host,
            "/trailer/3",
            "Transfer-Encoding: chunked\r\n",
            &chunked_body(&[b"abc"], b"X-Sum: 3\r\nX-Auth-Note: not a credential\r\n"),
        ),
    ];
    let served = all_answered(&mut rig, agent, &requests)?;
    let v1: Vec<&ReceivedRequest> = served.v1.requests().collect();
    ensure!(
        v1.len() == 3
            && v1[..2]
                .iter()
                .all(|r| r.chunked && has_field(&r.trailers, "authorization")),
        "v1 did not get the trailers: {v1:?}"
    );
    let shadow = served.shadow(0);
    for request in shadow.requests() {
        ensure!(
            !has_field(&request.head, "authorization")
                && !has_field(&request.trailers, "authorization"),
            "the shadow got the stripped header: head {:?}, trailers {:?}",
            show(&request.head),
            show(&request.trailers)
        );
    }
    let expected: Vec<ReceivedRequest> = v1
        .iter()
        .map(|r| ReceivedRequest {
            head: without_field(&r.head, "authorization"),
            trailers: without_field(&r.trailers, "authorization"),
            ..(*r).clone()
        })
        .collect();
    ensure!(expected[1].trailers == b"X-A: 1\r\nX-B: 2\r\n");
    ensure!(expected[2].trailers == v1[2].trailers);
    let matched = compare_mirrored(&expected, shadow, MARKER)
        .context("the shadow against v1's requests, Authorization left out")?;
    ensure!(matched == 3);
    Ok(())
}

// ---------------------------------------------------------------------------
// deny rules and unnormalised paths
// ---------------------------------------------------------------------------

/// What nginx (v1) answers under `/admin/`, and elsewhere.
const ADMIN_AREA: &str = "admin-area";
const ELSEWHERE: &str = "ok";

/// Spellings of `/admin/x` a server serves from `/admin/`: a deny rule on
/// `/admin` must hold for each.
const ADMIN_SPELLINGS: [&str; 7] = [
    "/admin/x",
    "//admin/x",
    "/%61dmin/x",
    "/%61%64%6D%69%6E/x",
    "/./admin/x",
    "/a/../admin/x",
    "/public/..//admin/./x?next=/public",
];

/// Paths outside `/admin` after normalisation, some of them spelled in a
/// way the normaliser rewrites: mirrored, as the client spelled them.
const OUTSIDE_ADMIN: [&str; 7] = [
    "/public/x",
    "/public/./x",
    "/public/%61dmin",
    "/x/admin",
    "/admin/../public/x",
    "/public?next=/admin",
    "//public//x",
];

/// `--deny-path-prefix /admin` judged the path as the client spelled it:
/// `//admin/x`, `/%61dmin/x`, `/./admin/x` or `/a/../admin/x` went through
/// to the shadow, while a server (nginx here, as v1) serves them from
/// `/admin/`. Every spelling is filtered (`path`) now, and the paths
/// outside `/admin` reach the shadow byte for byte as the client sent them
/// (the normalised path is only for the rules).
#[test]
fn deny_path_rules_hold_for_every_spelling_of_the_path_a_server_normalises() -> Result<()> {
    require_kernel!();
    let mut rig = ReplayRig::builder(1)
        .own_primary()
        .mirror_to(&[0])
        .args(&["--deny-path-prefix", "/admin"])
        .build()?;
    let _v1 = Nginx::start(
        rig.primary(),
        rig.primary_addr(),
        &format!(
            "    location /admin/ {{ return 200 \"{ADMIN_AREA}\"; }}\n\
             \x20   location / {{ return 200 \"{ELSEWHERE}\"; }}"
        ),
    )?;
    let agent = rig.start_agent()?;
    let target = rig.url(0);
    let host = rig.primary_addr().to_string();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();

    // One connection, the spellings and the others in turn; each answer
    // says where v1 served the request from.
    let mut client = HttpClient::connect(rig.client(), rig.primary_addr())?;
    for (denied, outside) in ADMIN_SPELLINGS.iter().zip(OUTSIDE_ADMIN) {
        for (path, body) in [(*denied, ADMIN_AREA), (outside, ELSEWHERE)] {
            let response = client.request(&get(path))?;
            ensure!(
                response.status == 200 && response.body_len == body.len(),
                "v1 (nginx) did not serve {path} from where it should ({body}): {response:?}"
            );
        }
    }
    client.close()?;
    let total = (ADMIN_SPELLINGS.len() + OUTSIDE_ADMIN.len()) as u64;
    let metrics = rig.settle(&[&target], total)?;
    let outcomes = metrics.shadow_outcomes(&target);
    let stopped = stop(agent)?;
    let counts = stopped.target(&target)?;
    let shadow = rig.stop_shadow(0)?;

    let reached: Vec<String> = shadow
        .requests()
        .filter_map(|r| show(&r.head).split(' ').nth(1).map(str::to_owned))
        .filter(|path| ADMIN_SPELLINGS.contains(&path.as_str()))
        .collect();
    ensure!(
        reached.is_empty(),
        "--deny-path-prefix /admin let these through to the shadow: {reached:?} ({counts})"
    );
    let denied = ADMIN_SPELLINGS.len() as u64;
    ensure!(
        outcomes.get("path") == Some(&denied),
        "the metrics count {:?} requests filtered by path, {denied} expected: {outcomes:?}",
        outcomes.get("path")
    );
    for (name, n) in [
        ("captured", total),
        ("filtered", denied),
        ("path", denied),
        ("2xx", total - denied),
        ("dropped", 0),
    ] {
        ensure!(counts.get(name) == n, "{name}: {n} expected ({counts})");
    }
    let expected: Vec<ReceivedRequest> =
        OUTSIDE_ADMIN.iter().map(|p| as_received(&get(p))).collect();
    let matched = compare_mirrored(&expected, &shadow, MARKER)
        .context("the shadow against the client's requests outside /admin")?;
    ensure!(matched == OUTSIDE_ADMIN.len());
    Ok(())
}

// ---------------------------------------------------------------------------
// stale copies after a shadow outage
// ---------------------------------------------------------------------------

/// The agent's default `--max-queue-age` (the test sets no flag).
const MAX_QUEUE_AGE: Duration = Duration::from_secs(3);
/// What a copy may take from the worker that found it young enough to the
/// shadow's read of its last byte, on a loaded machine.
const DELIVERY_SLACK: Duration = Duration::from_secs(1);
/// How long the shadow stops answering: well past the max age and the
/// slack.
const STALL: Duration = Duration::from_secs(6);
/// Between two of the client's requests.
const PACE: Duration = Duration::from_millis(40);

/// A shadow stops answering for 6 s (longer than the 3 s max queue age)
/// and recovers. Copies queued meanwhile were all sent once it answered
/// again, up to 6 s late, a replay of the past; now a copy older than the
/// max age when its turn comes is dropped as `expired`: none reaches the
/// shadow later than the max age after the client sent it, the expired
/// ones are counted, and the identity balances. Requests sent after the
/// recovery all reach it.
#[test]
fn copies_older_than_the_max_queue_age_are_dropped_as_expired_not_sent_late() -> Result<()> {
    require_kernel!();
    // Two workers, so that nearly everything sent during the stall waits in
    // the queue; a request timeout longer than the stall, so that the ones
    // in flight wait for the answer rather than time out.
    let rig = ReplayRig::builder(1)
        .serve(&[])
        .mirror_to(&[0])
        .args(&["--max-in-flight", "2", "--request-timeout", "30s"])
        .build()?;
    let shadow = Server::start(rig.shadow(0), rig.shadow_addr(0))?;
    let agent = rig.start_agent()?;
    let target = rig.url(0);
    let host = rig.primary_addr().to_string();

    let mut client = HttpClient::connect(rig.client(), rig.primary_addr())?;
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut send = |client: &mut HttpClient, phase: &str| -> Result<()> {
        let i = sent_at.len();
        let wire = format!("GET /{phase}/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        sent_at.push(Instant::now());
        let response = client.request(wire.as_bytes())?;
        ensure!(response.status == 200, "v1 answered {}", response.status);
        Ok(())
    };
    for _ in 0..3 {
        send(&mut client, "before")?;
    }
    rig.settle(&[&target], 3)?;

    shadow.hold_answers();
    let closed_at = Instant::now();
    while closed_at.elapsed() < STALL {
        send(&mut client, "stall")?;
        std::thread::sleep(PACE);
    }
    let held = shadow.request_count();
    shadow.release_answers();
    let opened_at = Instant::now();
    for _ in 0..10 {
        send(&mut client, "after")?;
        std::thread::sleep(PACE);
    }
    client.close()?;
    let total = sent_at.len() as u64;
    let metrics = rig.settle(&[&target], total)?;
    let stopped = stop(agent)?;
    let arrivals = shadow.log();
    shadow.halt();

    // No copy reached the shadow later than the max age after the client
    // sent it.
    let index = |target: &str| -> Result<usize> {
        target
            .rsplit('/')
            .next()
            .and_then(|i| i.parse().ok())
            .filter(|i| *i < sent_at.len())
            .with_context(|| format!("the shadow got {target}, which the client never sent"))
    };
    let bound = MAX_QUEUE_AGE + DELIVERY_SLACK;
    let mut seen = vec![false; sent_at.len()];
    let mut oldest = Duration::ZERO;
    for arrival in &arrivals {
        let i = index(arrival.target())?;
        ensure!(!seen[i], "{} reached the shadow twice", arrival.target());
        seen[i] = true;
        let age = arrival.at.saturating_duration_since(sent_at[i]);
        oldest = oldest.max(age);
        ensure!(
            age <= bound,
            "{} reached the shadow {:.2} s after the client sent it ({:.2} s after the \
             shadow recovered; max queue age {MAX_QUEUE_AGE:?})",
            arrival.target(),
            age.as_secs_f64(),
            arrival
                .at
                .saturating_duration_since(opened_at)
                .as_secs_f64()
        );
    }
    // What the shadow held during the stall was read in time; what the
    // queue held past the max age cannot have been sent after it.
    let stale = (0..sent_at.len())
        .filter(|i| !seen[*i] && opened_at.saturating_duration_since(sent_at[*i]) > bound)
        .count() as u64;
    ensure!(
        held <= 3 + 2,
        "the shadow read {held} requests before it recovered: 3 before the stall and the \
         2 in flight expected"
    );
    ensure!(
        stale > 0,
        "the stall left no copy older than {bound:?} in the queue"
    );
    let after = arrivals
        .iter()
        .filter(|a| a.target().starts_with("/after/"))
        .count();
    ensure!(
        after == 10,
        "{after} of the 10 requests sent after the recovery reached the shadow"
    );

    let counts = stopped.target(&target)?;
    let expired = counts.get("expired");
    ensure!(
        expired >= stale,
        "{stale} copies were older than {bound:?} when the shadow recovered, {expired} \
         counted expired ({counts})"
    );
    for (name, n) in [
        ("captured", total),
        ("sent", arrivals.len() as u64),
        ("2xx", arrivals.len() as u64),
        ("dropped", expired),
        ("filtered", 0),
    ] {
        ensure!(counts.get(name) == n, "{name}: {n} expected ({counts})");
    }
    let scraped = metrics.shadow_outcomes(&target).get("expired").copied();
    ensure!(
        scraped == Some(expired),
        "the metrics count {scraped:?} expired, the final counts {expired}"
    );
    eprintln!(
        "stale copies: {total} requests, {} reached the shadow (the oldest {oldest:?} after it \
         was sent), {expired} expired ({stale} older than {bound:?} at the recovery)",
        arrivals.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// accounting on every exit path
// ---------------------------------------------------------------------------

/// A shadow that takes requests and answers none (within the test): the
/// agent's workers wait on it and its queue fills.
const NEVER: Duration = Duration::from_secs(600);

/// SIGTERM while a shadow answers nothing: the agent detaches and drains
/// (a long `--drain-timeout`); a second SIGTERM ends the drain at once.
/// The agent then exits 0 and its final counts balance: every copy that
/// was queued or in flight is counted dropped (`shutdown`). Before, the
/// second signal took the counters as they were, copies left queued and
/// in flight, counted nowhere.
#[test]
fn a_second_sigterm_during_the_drain_counts_what_was_queued_or_in_flight_as_dropped() -> Result<()>
{
    require_kernel!();
    const REQUESTS: u64 = 100;
    let rig = ReplayRig::builder(1)
        .serve(&[])
        .mirror_to(&[0])
        .args(&[
            "--max-in-flight",
            "8",
            "--request-timeout",
            "10m",
            "--drain-timeout",
            "10m",
        ])
        .build()?;
    let shadow = Server::builder()
        .delay(NEVER)
        .start(rig.shadow(0), rig.shadow_addr(0))?;
    let agent = rig.start_agent()?;
    let target = rig.url(0);
    let host = rig.primary_addr().to_string();
    let requests: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|i| format!("GET /drain/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes())
        .collect();
    rig.send_all(&requests, 2)?;

    // Every copy queued or in flight, the shadow holding the ones in flight.
    let mut account = TargetAccount::default();
    let waiting = wait_until(rig_settle_time(), || {
        let scraped = Metrics::scrape(rig.primary(), metrics::DEFAULT_ADDR)
            .and_then(|m| TargetAccount::of(&m, &target));
        if let Ok(scraped) = scraped {
            account = scraped;
        }
        account.captured == REQUESTS
            && account.queued + account.in_flight == REQUESTS
            && shadow.request_count() as u64 == account.in_flight
    });
    ensure!(
        waiting && account.queued > 0 && account.in_flight > 0,
        "not every copy queued or in flight: {account:?}, the shadow read {}",
        shadow.request_count()
    );

    agent.signal(Signal::TERM)?;
    agent.wait_for_log("draining the shadow queues", rig_settle_time())?;
    let second = Instant::now();
    let exit = agent
        .stop(Signal::TERM, Duration::from_secs(10))
        .context("the agent did not end within 10 s of the second SIGTERM")?;
    let took = second.elapsed();
    ensure!(
        exit.stderr.contains("received again"),
        "the agent did not see the second signal: {}",
        exit.stderr
    );
    let stopped = agent::check_exit(exit)?;
    let counts = stopped.target(&target)?;
    for (name, n) in [
        ("captured", REQUESTS),
        ("sent", 0),
        ("filtered", 0),
        ("dropped", REQUESTS),
        ("shutdown", REQUESTS),
    ] {
        ensure!(counts.get(name) == n, "{name}: {n} expected ({counts})");
    }
    let answered = shadow.answered();
    let received = shadow.halt().request_count() as u64;
    ensure!(
        received == account.in_flight && answered == 0,
        "the shadow read {received} requests and answered {answered}"
    );
    eprintln!(
        "second SIGTERM: {} queued and {} in flight counted shutdown; exit {took:?} after it",
        account.queued, account.in_flight
    );
    Ok(())
}

/// How long the agent may take to account for what a test sent.
fn rig_settle_time() -> Duration {
    mirror_tests::rig::SETTLE
}

/// A config file with two targets, v2 (shadow 0) and, if `with_v3`, v3
/// (shadow 1).
fn v2_and_maybe_v3(with_v3: bool) -> String {
    let mut text = format!("[[target]]\nurl = \"{}\"\nname = \"v2\"\n", shadow_url(0));
    if with_v3 {
        text.push_str(&format!(
            "\n[[target]]\nurl = \"{}\"\nname = \"v3\"\n",
            shadow_url(1)
        ));
    }
    text
}

/// Waits until the agent logged a line containing `needle` `count` times.
fn wait_for_logged(agent: &Agent, needle: &str, count: usize) -> Result<()> {
    let logged = || {
        agent
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    ensure!(
        wait_until(rig_settle_time(), || logged() >= count),
        "`{needle}` logged {} times, {count} expected: {}",
        logged(),
        agent.stderr_lines().join("\n")
    );
    Ok(())
}

/// The counter series of `target` in a scrape (gauges left out), by name
/// and labels.
fn counter_series(metrics: &Metrics, target: &str) -> BTreeMap<String, f64> {
    metrics
        .samples
        .iter()
        .filter(|s| s.label("target") == Some(target))
        .filter(|s| {
            ["_total", "_count", "_sum", "_bucket"]
                .iter()
                .any(|suffix| s.name.ends_with(suffix))
        })
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            (format!("{}{{{}}}", s.name, labels.join(",")), s.value)
        })
        .collect()
}

/// A reload removes target v3 and a second one adds it back: v3's
/// counters go on from where they were (Prometheus series only go up; a
/// reset reads as a restart and breaks every rate). Before, v3 came back
/// at zero.
#[test]
fn a_target_removed_by_a_reload_and_added_back_counts_on_from_its_counters() -> Result<()> {
    require_kernel!();
    let mut rig = ReplayRig::builder(2)
        .config(v2_and_maybe_v3(true))
        .build()?;
    let agent = rig.start_agent()?;
    let host = rig.primary_addr().to_string();
    let batch = |phase: &str, n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("GET /{phase}/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes())
            .collect()
    };
    let scrape = || Metrics::scrape(rig.primary(), metrics::DEFAULT_ADDR);

    rig.send_all(&batch("first", 20), 2)?;
    let before = rig.settle(&["v2", "v3"], 20)?;
    let v3_before = counter_series(&before, "v3");
    ensure!(
        TargetAccount::of(&before, "v3")?.sent == 20,
        "v3 before the reloads: {v3_before:?}"
    );

    rig.write_config(&v2_and_maybe_v3(false))?;
    agent.signal(Signal::HUP)?;
    wait_for_logged(&agent, "configuration reloaded", 1)?;
    rig.send_all(&batch("without-v3", 10), 2)?;
    rig.settle(&["v2"], 30)?;

    rig.write_config(&v2_and_maybe_v3(true))?;
    agent.signal(Signal::HUP)?;
    wait_for_logged(&agent, "configuration reloaded", 2)?;
    rig.send_all(&batch("again", 10), 2)?;
    rig.settle(&["v2"], 40)?;
    // v3 saw the last batch when v2 did; wait until it has sent it.
    let mut after = scrape()?;
    let settled = wait_until(rig_settle_time(), || {
        if let Ok(scraped) = scrape() {
            after = scraped;
        }
        TargetAccount::of(&after, "v3").is_ok_and(|a| a.settled() && a.sent >= 10)
    });
    ensure!(
        settled,
        "v3 did not settle: {:?}",
        TargetAccount::of(&after, "v3")
    );
    let v3_after = counter_series(&after, "v3");
    for (series, was) in &v3_before {
        let now = v3_after.get(series).copied();
        ensure!(
            now.is_some_and(|now| now >= *was),
            "{series} went from {was} to {now:?} across the reloads"
        );
    }
    let account = TargetAccount::of(&after, "v3")?;
    ensure!(
        account.captured == 30 && account.sent == 30,
        "v3 after the reloads: {account:?}, 30 captured and sent expected (20 before, 10 \
         after)"
    );
    let stopped = stop(agent)?;
    let counts = stopped.target("v3")?;
    ensure!(
        counts.get("captured") == 30 && counts.get("2xx") == 30,
        "v3's final counts: {counts}"
    );
    let served = rig.stop_servers()?;
    ensure!(served.v1.request_count() == 40);
    ensure!(compare_mirrored(served.v1.requests(), served.shadow(0), MARKER)? == 40);
    let v3_part = served
        .v1
        .requests()
        .filter(|r| !show(&r.head).starts_with("GET /without-v3/"));
    ensure!(compare_mirrored(v3_part, served.shadow(1), MARKER)? == 30);
    Ok(())
}

/// The finding: one malformed shadow response set the address aside for
/// about a second, and 18 of the next 40 valid requests were dropped as
/// `io_error`. Now a bad answer costs that one request: 40 requests at
/// 20 a second over one client connection, the shadow answers the fifth
/// with bytes that are not HTTP: 39 are answered 2xx, the bad one alone is
/// `io_error`, and the shadow got all 40, in order.
#[test]
fn one_malformed_answer_among_forty_costs_that_request_alone() -> Result<()> {
    require_kernel!();
    let rig = ReplayRig::builder(1).serve(&[]).mirror_to(&[0]).build()?;
    let shadow = Server::builder()
        .answer(|request| {
            if request.target() == "/bad" {
                mirror_testkit::server::Reply::garbage()
            } else {
                mirror_testkit::server::Reply::ok(request)
            }
        })
        .start(rig.shadow(0), rig.shadow_addr(0))?;
    let agent = rig.start_agent()?;
    let target = rig.url(0);
    let host = rig.primary_addr().to_string();
    let paths: Vec<String> = (0..40)
        .map(|i| {
            if i == 4 {
                "/bad".to_owned()
            } else {
                format!("/ok/{i}")
            }
        })
        .collect();
    let mut client = HttpClient::connect(rig.client(), rig.primary_addr())?;
    for path in &paths {
        let wire = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let response = client.request(wire.as_bytes())?;
        ensure!(response.status == 200, "v1 answered {}", response.status);
        std::thread::sleep(Duration::from_millis(50));
    }
    client.close()?;
    rig.settle(&[&target], 40)?;
    let stopped = stop(agent)?;
    let counts = stopped.target(&target)?;
    let received: Vec<String> = shadow
        .halt()
        .requests()
        .map(|r| r.target().to_owned())
        .collect();
    ensure!(
        counts.get("captured") == 40 && counts.get("2xx") == 39 && counts.get("io_error") == 1,
        "final counts: {counts}"
    );
    ensure!(received == paths, "the shadow got {received:?}");
    Ok(())
}
