//! Shadows get only what v1 parsed (issue 24): Debian's nginx is v1, the
//! real agent captures on its interface, and the shadow is a strict
//! recorder that frames by RFC 9112's grammar alone (CRLF only), so that a
//! byte it was sent that a lenient server could read as a request shows.
//!
//! ```text
//!  client ──▶ nginx (v1; mirror-agent on veth-s) ──▶ strict shadow
//! ```
//!
//! * A bare-LF head whose `Content-Length` body hides `GET /admin`, sent
//!   between two other clients' requests: the shadow gets exactly the
//!   other two, the second as its client sent it.
//! * Every case of the issue's list is skipped and counted with its reason
//!   (a test each, one shared helper).
//! * A corpus of the request cases HTTP parser test suites cover, valid and
//!   not, each on a connection of its own: nothing reaches the shadow that
//!   nginx did not serve, what does reaches it as nginx parsed it (method,
//!   target, body length), and what nginx served that the shadow did not
//!   get is counted by the agent.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test framing`.

#[path = "framing/corpus.rs"]
mod corpus;

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{Result, ensure};
use mirror_testkit::server::{Arrival, ReceivedRequest};
use mirror_tests::{
    http_compare::show,
    mirrored::{MARKER, strip_marker},
    nginx_stage::{Ending, Exchange, NginxStage, is_barrier, statuses},
    require_kernel,
};

/// The agent's skip reasons for these cases
/// (`mirror_requests_skipped_total{reason}`).
mod reason {
    pub const BARE_LINE_END: &str = "bare_line_end";
    pub const OBS_FOLD: &str = "obs_fold";
    pub const INVALID_TRANSFER_ENCODING: &str = "invalid_transfer_encoding";
    pub const INVALID_CONTENT_LENGTH: &str = "invalid_content_length";
    pub const INVALID_HOST: &str = "invalid_host";
    pub const UNSUPPORTED_TARGET: &str = "unsupported_target";
    pub const INVALID_AUTHORITY: &str = "invalid_authority";
    pub const UNSUPPORTED_HTTP2: &str = "unsupported_http2";
    pub const AFTER_CLOSE: &str = "after_close";
}

/// The requests the shadow got, each with the agent's marker line taken
/// out; an error for bytes it could not frame.
fn delivered<'a>(arrivals: impl IntoIterator<Item = &'a Arrival>) -> Result<Vec<ReceivedRequest>> {
    arrivals
        .into_iter()
        .map(|arrival| match &arrival.request {
            Ok(request) => Ok(ReceivedRequest {
                head: strip_marker(&request.head, MARKER)?,
                ..request.clone()
            }),
            Err(why) => Err(anyhow::anyhow!(
                "the shadow got bytes that are no request ({why}): {:?}",
                show(&arrival.wire)
            )),
        })
        .collect()
}

/// An exchange for a failure message.
fn describe(exchange: &Exchange) -> String {
    let mut text = format!(
        "nginx answered {:?}; its log: {:?}; skips: {{{}}}{}; the shadow got:",
        statuses(&exchange.answer),
        exchange
            .nginx
            .iter()
            .map(|p| format!("{} {}", p.status, p.request))
            .collect::<Vec<_>>(),
        exchange.skips(),
        if exchange.skipped_at_close.is_empty() {
            String::new()
        } else {
            format!(
                " and once the client closed {:?}",
                exchange.skipped_at_close
            )
        }
    );
    for arrival in &exchange.shadow {
        let _ = match &arrival.request {
            Ok(request) => write!(text, " [{:?}]", show(&request.head)),
            Err(why) => write!(text, " [refused ({why}): {:?}]", show(&arrival.wire)),
        };
    }
    text
}

// ---------------------------------------------------------------------------
// the smuggling shape of the finding
// ---------------------------------------------------------------------------

/// The head of client B: bare LF line ends, and a body nginx reads as 23
/// bytes where a CRLF-only server sees no Content-Length and a request.
const HIDDEN_ADMIN: &[u8] =
    b"GET /b HTTP/1.1\nHost: v1\nContent-Length: 23\n\nGET /admin HTTP/1.1\r\n\r\n";

/// The finding: the agent forwarded B's head verbatim, the shadow left
/// B's body on its kept-alive connection and read it, glued to the next
/// client's request, as a request of its own. Three clients, a connection
/// each, one after the other: the shadow gets A's request and C's, byte
/// for byte (the marker line aside), C's on the connection A's came on,
/// and nothing of B's; B is counted as `bare_line_end`. One request in
/// flight to the shadow: one shadow connection carries everything, as the
/// kept-alive connection of the finding did.
#[test]
fn a_bare_lf_head_hiding_a_request_between_two_clients_never_reaches_the_shadow() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let mut stage = NginxStage::start(&["--max-in-flight", "1"])?;
    let a: &[u8] = b"GET /a HTTP/1.1\r\nHost: v1\r\nUser-Agent: client-a\r\n\r\n";
    let c: &[u8] = b"GET /c HTTP/1.1\r\nHost: v1\r\nUser-Agent: client-c\r\n\r\n";
    let first = stage.exchange(&[a], Ending::HalfClose)?;
    let hidden = stage.exchange(&[HIDDEN_ADMIN], Ending::HalfClose)?;
    let last = stage.exchange(&[c], Ending::HalfClose)?;

    // nginx read B as one request with a 23-byte body: /admin is no
    // request to it.
    let served = hidden.served();
    ensure!(
        served.len() == 1 && served[0].uri == "/b" && served[0].body_len == 23,
        "nginx's parse of B: {}",
        describe(&hidden)
    );
    for exchange in [&first, &last] {
        ensure!(exchange.served().len() == 1, "{}", describe(exchange));
    }
    ensure!(
        hidden.shadow.is_empty(),
        "B reached the shadow: {}",
        describe(&hidden)
    );
    ensure!(
        hidden.skipped.get(reason::BARE_LINE_END) == Some(&1),
        "B was not counted once as {}: {}",
        reason::BARE_LINE_END,
        describe(&hidden)
    );
    let (stopped, arrivals) = stage.stop()?;
    let requests: Vec<&Arrival> = arrivals.iter().filter(|a| !is_barrier(a)).collect();
    let got = delivered(requests.iter().copied())?;
    ensure!(
        got.len() == 2 && got[0].head == a && got[1].head == c,
        "the shadow's requests are not exactly A's and C's: {:?}",
        got.iter().map(|r| show(&r.head)).collect::<Vec<_>>()
    );
    ensure!(
        got.iter().all(|r| r.body.is_empty() && !r.chunked),
        "A or C came with a body"
    );
    // C came on the connection A's came on: the kept-alive connection
    // carried nothing of B's in between.
    ensure!(
        requests[0].connection == requests[1].connection,
        "A and C came on different shadow connections ({} and {}): the test did not \
         prove the kept-alive connection",
        requests[0].connection,
        requests[1].connection
    );
    let counts = stopped.target(&mirror_tests::rig::shadow_url(0))?;
    ensure!(counts.get("2xx") >= 2, "final counts: {counts}");
    Ok(())
}

// ---------------------------------------------------------------------------
// each case of the issue, skipped with its reason
// ---------------------------------------------------------------------------

/// What v1 does with a case.
#[derive(Clone, Copy, Debug)]
enum V1 {
    /// Refuses it (4xx or 5xx), or closes without an answer.
    Refuses,
    /// Serves this many requests of it and reads nothing else as one
    /// (nginx is lenient with bare LF; a conforming server may read those
    /// bytes otherwise).
    Serves(usize),
}

/// Sends `wire` to nginx on a connection of its own and holds the agent to
/// the case: `reason` rose by exactly one, the shadow got exactly
/// `delivered` (requests v1 served before the case's bytes), and nginx did
/// what `v1` says. `ending` [`Ending::KeepOpen`] counts only what the agent
/// counted before the client's FIN.
fn skipped_as(wire: &[u8], reason: &str, v1: V1, expected: &[&[u8]], ending: Ending) -> Result<()> {
    let mut stage = NginxStage::start(&[])?;
    let exchange = stage.exchange(&[wire], ending)?;
    let served = exchange.served().len();
    let v1_agrees = match v1 {
        V1::Refuses => served == 0 && statuses(&exchange.answer).iter().all(|s| *s >= 400),
        // Nothing else logged: what followed was never read as a request.
        V1::Serves(n) => served == n && exchange.nginx.len() == n,
    };
    ensure!(
        v1_agrees,
        "nginx did not do {v1:?} with {:?}: {}",
        show(wire),
        describe(&exchange)
    );
    ensure!(
        exchange.skipped.get(reason) == Some(&1),
        "{:?} was not counted once as {reason}: {}",
        show(wire),
        describe(&exchange)
    );
    let got = delivered(&exchange.shadow)?;
    ensure!(
        got.len() == expected.len() && got.iter().zip(expected).all(|(r, e)| r.head == *e),
        "the shadow got other than {:?}: {}",
        expected.iter().map(|e| show(e)).collect::<Vec<_>>(),
        describe(&exchange)
    );
    let (_, arrivals) = stage.stop()?;
    let refused: Vec<&Arrival> = arrivals.iter().filter(|a| a.request.is_err()).collect();
    ensure!(refused.is_empty(), "the shadow was left with {refused:?}");
    Ok(())
}

/// A kernel test of one case: `name: WIRE => REASON, V1, delivers
/// [REQUESTS], ENDING` runs [`skipped_as`].
macro_rules! skip_test {
    ($(#[$doc:meta])* $name:ident: $wire:expr => $reason:expr, $v1:expr,
     delivers [$($expected:expr),*], $ending:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() -> Result<()> {
            if !require_kernel() {
                return Ok(());
            }
            skipped_as(&$wire, $reason, $v1, &[$(&$expected[..]),*], $ending)
        }
    };
}

skip_test!(a_head_with_bare_lf_line_ends_is_skipped_as_bare_line_end:
    *b"GET /bare-lf HTTP/1.1\nHost: v1\nX-A: 1\n\n"
    => reason::BARE_LINE_END, V1::Serves(1), delivers [], Ending::HalfClose);

skip_test!(a_head_with_a_bare_cr_is_skipped_as_bare_line_end:
    *b"GET /bare-cr HTTP/1.1\r\nHost: v1\rX-A: 1\r\n\r\n"
    => reason::BARE_LINE_END, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(an_obs_folded_field_is_skipped_as_obs_fold:
    *b"GET /fold HTTP/1.1\r\nHost: v1\r\nX-A: 1\r\n 2\r\n\r\n"
    => reason::OBS_FOLD, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(a_transfer_coding_before_chunked_is_skipped_as_invalid_transfer_encoding:
    *b"POST /te HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: deflate, chunked\r\n\r\n\
       5\r\nhello\r\n0\r\n\r\n"
    => reason::INVALID_TRANSFER_ENCODING, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(two_transfer_encoding_fields_are_skipped_as_invalid_transfer_encoding:
    *b"POST /te2 HTTP/1.1\r\nHost: v1\r\nTransfer-Encoding: chunked\r\n\
       Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    => reason::INVALID_TRANSFER_ENCODING, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(two_different_content_lengths_are_skipped_as_invalid_content_length:
    *b"POST /cl2 HTTP/1.1\r\nHost: v1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    => reason::INVALID_CONTENT_LENGTH, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(
    /// 10^21 does not fit 64 bits: refused at the head, while the client
    /// still holds its connection open, not waited for (the finding: it
    /// waited as `incomplete` until the client closed).
    an_overflowing_content_length_is_skipped_at_the_head_as_invalid_content_length:
    *b"POST /cl-huge HTTP/1.1\r\nHost: v1\r\nContent-Length: 1000000000000000000000\r\n\r\nab"
    => reason::INVALID_CONTENT_LENGTH, V1::Refuses, delivers [], Ending::KeepOpen);

skip_test!(an_http11_request_without_host_is_skipped_as_invalid_host:
    *b"GET /no-host HTTP/1.1\r\nX-A: 1\r\n\r\n"
    => reason::INVALID_HOST, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(connect_is_skipped_as_unsupported_target:
    *b"CONNECT v1:443 HTTP/1.1\r\nHost: v1:443\r\n\r\n"
    => reason::UNSUPPORTED_TARGET, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(an_asterisk_target_other_than_options_is_skipped_as_unsupported_target:
    *b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
       ST: ssdp:all\r\nMX: 1\r\n\r\n"
    => reason::UNSUPPORTED_TARGET, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(
    /// The finding: forwarded rewritten to `GET /toto`.
    an_absolute_form_target_with_an_invalid_userinfo_is_skipped_as_invalid_authority:
    *b"GET http://a:b@@hypnotoad.org:1234/toto HTTP/1.1\r\nHost: hypnotoad.org\r\n\r\n"
    => reason::INVALID_AUTHORITY, V1::Refuses, delivers [], Ending::HalfClose);

skip_test!(the_http2_preface_is_skipped_as_unsupported_http2:
    *b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    => reason::UNSUPPORTED_HTTP2, V1::Refuses, delivers [], Ending::HalfClose);

/// An HTTP/1.0 request without keep-alive: nginx answers it and closes.
const HTTP10_CLOSING: &[u8] = b"GET /first HTTP/1.0\r\nX-A: 1\r\n\r\n";
/// A request with `Connection: close`: nginx answers it and closes.
const CONNECTION_CLOSE: &[u8] = b"GET /first HTTP/1.1\r\nHost: v1\r\nConnection: close\r\n\r\n";
/// Pipelined after either: v1 never reads it.
const SECOND: &[u8] = b"GET /second HTTP/1.1\r\nHost: v1\r\n\r\n";

skip_test!(a_request_after_an_http10_request_without_keep_alive_is_skipped_as_after_close:
    [HTTP10_CLOSING, SECOND].concat()
    => reason::AFTER_CLOSE, V1::Serves(1), delivers [HTTP10_CLOSING], Ending::HalfClose);

skip_test!(a_request_after_connection_close_is_skipped_as_after_close:
    [CONNECTION_CLOSE, SECOND].concat()
    => reason::AFTER_CLOSE, V1::Serves(1), delivers [CONNECTION_CLOSE], Ending::HalfClose);

// ---------------------------------------------------------------------------
// the corpus
// ---------------------------------------------------------------------------

/// What the shadow got for one case, as nginx's log would have it: method,
/// target and body length.
type Parse = (String, String, u64);

/// Where mirror and nginx disagree on a case; empty when they agree.
fn disagreements(exchange: &Exchange) -> Vec<String> {
    let mut found = Vec::new();
    let mut delivered: Vec<Parse> = Vec::new();
    for arrival in &exchange.shadow {
        match &arrival.request {
            Ok(request) => {
                // From the bytes: a target need not be UTF-8.
                let line = request
                    .head
                    .split(|b| *b == b'\r')
                    .next()
                    .unwrap_or_default();
                let mut parts = line.split(|b| *b == b' ').map(String::from_utf8_lossy);
                let (method, target) = (parts.next(), parts.next());
                delivered.push((
                    method.unwrap_or_default().into_owned(),
                    target.unwrap_or_default().into_owned(),
                    request.body.len() as u64,
                ));
            }
            Err(why) => {
                found.push(format!("the shadow got bytes that are no request ({why})"));
            }
        }
    }
    let mut served: Vec<Parse> = exchange
        .served()
        .iter()
        .map(|p| (p.method.clone(), p.uri.clone(), p.body_len))
        .collect();
    // The shadow gets a connection's requests over pooled connections, in
    // no particular order: compare as multisets.
    let mut unmatched_served = 0;
    served.sort();
    delivered.sort();
    let mut extra = Vec::new();
    let mut d = delivered.iter().peekable();
    for s in &served {
        while d.peek().is_some_and(|x| *x < s) {
            extra.push(d.next().expect("peeked"));
        }
        if d.peek() == Some(&s) {
            d.next();
        } else {
            unmatched_served += 1;
        }
    }
    extra.extend(d);
    for (method, target, len) in extra {
        found.push(format!(
            "delivered {method} {target} ({len}-byte body) that nginx did not serve so"
        ));
    }
    if unmatched_served > 0 && exchange.skipped_total() == 0 {
        found.push(format!(
            "{unmatched_served} request(s) nginx served did not reach the shadow as nginx \
             parsed them, and no skip was counted"
        ));
    }
    found
}

/// Each case of the corpus on a connection of its own to nginx (which
/// serves every request it accepts with a 200), the agent attached, the
/// strict shadow behind: nothing delivered that nginx did not serve,
/// everything delivered as nginx parsed it, and everything nginx served
/// that was not delivered counted by the agent. The failure message is the
/// table of every case, disagreements marked.
#[test]
fn a_corpus_of_parser_test_cases_reaches_the_shadow_only_as_nginx_parsed_it() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let cases = corpus::cases();
    let mut stage = NginxStage::start(&[])?;
    let (mut table, mut differences) = (String::new(), String::new());
    let mut failed = 0;
    let mut tolerated = 0;
    for case in &cases {
        let parts: Vec<&[u8]> = case.parts.iter().map(Vec::as_slice).collect();
        let exchange = stage.exchange(&parts, Ending::HalfClose)?;
        let problems = disagreements(&exchange);
        let verdict = match (&problems[..], case.tolerate) {
            ([], _) => "ok",
            (_, Some(_)) => {
                tolerated += 1;
                "tolerated"
            }
            (_, None) => {
                failed += 1;
                "DISAGREES"
            }
        };
        let nginx: Vec<String> = exchange
            .nginx
            .iter()
            .map(|p| p.status.to_string())
            .collect();
        let row = format!(
            "{verdict:>9} | {:<44} | nginx {:<11} | shadow {:>2} | skips {{{}}}{}{}\n",
            case.name,
            if nginx.is_empty() {
                "closed".to_owned()
            } else {
                nginx.join(",")
            },
            exchange.shadow.len(),
            exchange.skips(),
            if problems.is_empty() {
                String::new()
            } else {
                format!(" | {}", problems.join("; "))
            },
            case.tolerate
                .filter(|_| !problems.is_empty())
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        );
        if !problems.is_empty() {
            differences.push_str(&row);
        }
        table.push_str(&row);
    }
    stage.stop()?;
    println!("{} cases:\n{table}", cases.len());
    ensure!(
        failed == 0,
        "{failed} of {} cases disagree ({tolerated} tolerated; the whole table is on stdout):\n\
         {differences}",
        cases.len()
    );
    Ok(())
}

/// The table's labels are the case names: they must say which case a line
/// is about.
#[test]
fn corpus_case_names_are_unique() {
    let cases = corpus::cases();
    let mut seen = BTreeMap::new();
    for case in &cases {
        *seen.entry(case.name).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{twice:?}");
    assert!(cases.len() >= 60, "{} cases", cases.len());
}
