//! Scenario tests of the framer on its own: each feeds a byte stream in
//! slices and checks what comes out and what is counted.

use super::testing::Harness;
use super::*;
use crate::flow::WriteEdges;

type Run = Harness;

fn run_with(harness: Harness, slices: &[&[u8]]) -> Run {
    let mut harness = harness;
    harness.feed_all(slices);
    harness
}

fn run(slices: &[&[u8]]) -> Run {
    run_with(Harness::default(), slices)
}

/// One request came out, for `target`, after `skipped` requests lost for
/// `reason` (and nothing else).
fn one_request_after_skips(r: &Run, target: &[u8], reason: SkipReason, skipped: u64) {
    assert_eq!(r.requests.len(), 1, "{:?}", r.stats);
    assert_eq!(r.requests[0].target(), target);
    assert_eq!(r.stats.dropped.get(reason), skipped);
    assert_eq!(r.stats.dropped.total(), skipped, "{:?}", r.stats.dropped);
}

/// Nothing came out: the connection was given up for `reason` (one loss,
/// nothing else) and the rest of it is ignored.
fn given_up(r: &Run, reason: SkipReason) {
    assert!(r.requests.is_empty(), "{:?}", r.stats);
    assert_eq!(r.stats.dropped.get(reason), 1, "{:?}", r.stats.dropped);
    assert_eq!(r.stats.dropped.total(), 1, "{:?}", r.stats.dropped);
    assert!(r.framer.is_stopped());
}

/// Every way of cutting `stream` in two, and one byte at a time.
fn all_splits(stream: &[u8], check: impl Fn(&Run)) {
    for cut in 0..=stream.len() {
        check(&run(&[&stream[..cut], &stream[cut..]]));
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    check(&run(&bytes));
}

#[test]
fn a_get_is_delivered_with_its_exact_head() {
    let head = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-MiXed-Case:  v1 \r\n\r\n";
    all_splits(head, |r| {
        assert_eq!(r.requests.len(), 1);
        let req = &r.requests[0];
        assert_eq!(&req.head[..], head);
        assert_eq!(req.method(), b"GET");
        assert_eq!(req.target(), b"/a?b=c");
        assert_eq!(req.version, Version::Http11);
        let headers: Vec<_> = req.headers().collect();
        assert_eq!(
            headers,
            vec![
                (&b"Host"[..], &b"x"[..]),
                (&b"X-MiXed-Case"[..], &b"v1"[..])
            ]
        );
        assert_eq!(req.header("x-mixed-case"), Some(&b"v1"[..]));
        assert!(req.body.is_empty());
        assert_eq!(req.flow, super::testing::test_flow(1));
        assert_eq!(r.budget.used(), 0);
        assert_eq!(r.framer.buffered(), 0);
    });
}

#[test]
fn pipelined_requests_with_bodies_come_out_in_order() {
    let stream = b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
GET /2 HTTP/1.1\r\nHost: h\r\n\r\n\
PUT /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
DELETE /4 HTTP/1.0\r\n\r\n";
    all_splits(stream, |r| {
        let got: Vec<(&[u8], &[u8], bool)> = r
            .requests
            .iter()
            .map(|q| (q.target(), &q.body[..], q.chunked))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"/1"[..], &b"hello"[..], false),
                (&b"/2"[..], &b""[..], false),
                (&b"/3"[..], &b"abcde"[..], true),
                (&b"/4"[..], &b""[..], false),
            ]
        );
        assert_eq!(&r.requests[2].trailers[..], b"X-T: 1\r\n");
        assert_eq!(r.requests[3].version, Version::Http10);
        assert_eq!(r.stats.requests, 4);
        assert_eq!(r.stats.chunked_requests, 1);
        assert_eq!(r.stats.dropped.total(), 0);
        assert_eq!(r.budget.used(), 0);
    });
}

#[test]
fn empty_lines_between_requests_are_ignored() {
    let r =
        run(&[b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"]);
    assert_eq!(r.requests.len(), 2);
    assert_eq!(
        &r.requests[1].head[..],
        b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    assert_eq!(r.stats.dropped.total(), 0);
}

#[test]
fn timestamps_are_those_of_the_first_and_last_segment() {
    let r = run(&[
        b"POST / HTTP/1.1\r\nHost: h\r\n",
        b"Content-Length: 2\r\n\r\n",
        b"a",
        b"b",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.requests[0].first_byte_ns, 0);
    assert_eq!(r.requests[0].complete_ns, 3);
}

/// Each trick a client can play with the framing: v1 refuses it (400) and
/// closes, so nothing after it may reach a shadow, however it is cut and
/// even when the request hidden in it comes as a write of its own.
/// Each trick, with the reason it is counted under.
const FRAMING_TRICKS: [(&[u8], SkipReason); 20] = [
    (
        b"POST /s3 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\n",
        SkipReason::InvalidTransferEncoding,
    ),
    (
        b"POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 29\r\n\r\n",
        SkipReason::InvalidContentLength,
    ),
    (
        b"POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n",
        SkipReason::InvalidContentLength,
    ),
    (
        b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000000000\r\n\r\n",
        SkipReason::InvalidContentLength,
    ),
    (
        b"POST /fold HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n Content-Length: 29\r\n\r\n",
        SkipReason::ObsFold,
    ),
    (
        b"POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        SkipReason::InvalidTransferEncoding,
    ),
    (
        b"POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: deflate, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        SkipReason::InvalidTransferEncoding,
    ),
    (
        b"POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        SkipReason::InvalidTransferEncoding,
    ),
    (
        b"POST /bad HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        SkipReason::InvalidFraming,
    ),
    (
        b"POST /lf HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        SkipReason::InvalidFraming,
    ),
    // nginx reads `Content-Length: 23` and a body; a CRLF-only server
    // reads no body and the next request inside it.
    (
        b"GET / HTTP/1.1\nHost: h\nContent-Length: 31\n\n",
        SkipReason::BareLineEnd,
    ),
    (
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 31\n\r\n",
        SkipReason::BareLineEnd,
    ),
    (
        b"GET / HTTP/1.1\r\nHost: h\rContent-Length: 31\r\n\r\n",
        SkipReason::BareLineEnd,
    ),
    (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", SkipReason::InvalidHost),
    (
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        SkipReason::InvalidHost,
    ),
    (
        b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        SkipReason::UnsupportedTarget,
    ),
    (
        b"M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n",
        SkipReason::UnsupportedTarget,
    ),
    (
        b"PRI * HTTP/1.1\r\nHost: h\r\n\r\n",
        SkipReason::UnsupportedHttp2,
    ),
    (
        b"GET http://a:b@c@h/toto HTTP/1.1\r\nHost: h\r\n\r\n",
        SkipReason::InvalidAuthority,
    ),
    (
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n",
        SkipReason::InvalidHead,
    ),
];

const HIDDEN: &[u8] = b"GET /invented HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn framing_tricks_end_the_connection_and_invent_nothing() {
    for (trick, reason) in FRAMING_TRICKS {
        let mut stream = trick.to_vec();
        stream.extend_from_slice(HIDDEN);
        all_splits(&stream, |r| {
            assert!(
                r.requests.is_empty(),
                "{:?}",
                String::from_utf8_lossy(trick)
            );
            assert_eq!(
                r.stats.dropped.total(),
                1,
                "{:?}: {:?}",
                String::from_utf8_lossy(trick),
                r.stats
            );
            assert!(r.framer.is_stopped());
        });
        let mut r = Harness::default();
        r.feed(trick, 0)
            .feed(HIDDEN, 1)
            .feed(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n", 2);
        assert!(
            r.requests.is_empty(),
            "{:?}",
            String::from_utf8_lossy(trick)
        );
        assert_eq!(
            r.stats.dropped.get(reason),
            1,
            "{:?}: {:?}",
            String::from_utf8_lossy(trick),
            r.stats
        );
        assert_eq!(r.budget.used(), 0);
    }
}

#[test]
fn chunked_beside_a_content_length_is_refused_and_counted() {
    let r = run(&[
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    ]);
    assert!(r.requests.is_empty());
    assert_eq!(r.stats.dropped.get(SkipReason::InvalidTransferEncoding), 1);
}

#[test]
fn lower_case_methods_odd_hosts_and_folded_trailers_are_refused() {
    for (stream, reason) in [
        (&b"get / HTTP/1.1\r\nHost: h\r\n\r\n"[..], SkipReason::InvalidHead),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", SkipReason::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: v 1\r\n\r\n", SkipReason::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: v1/x\r\n\r\n", SkipReason::InvalidHost),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: b\r\n c\r\n\r\n",
            SkipReason::InvalidFraming,
        ),
    ] {
        let r = run(&[stream]);
        assert!(r.requests.is_empty(), "{}", String::from_utf8_lossy(stream));
        assert_eq!(r.stats.dropped.get(reason), 1, "{}", String::from_utf8_lossy(stream));
    }
    let ok = run(&[b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"]);
    assert_eq!(
        ok.requests.len(),
        1,
        "an IPv6 literal with a port is a host"
    );
}

#[test]
fn heads_over_our_limits_desync_until_the_next_write() {
    let config = HttpConfig {
        max_head_bytes: 64,
        max_headers: 2,
        ..HttpConfig::default()
    };
    let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(100));
    let many = "GET /many HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    // Each request a write of its own, cut in two segments anywhere.
    let writes = [
        long.as_str(),
        "GET /ok1 HTTP/1.1\r\nHost: h\r\n\r\n",
        many,
        "GET /ok2 HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for cut in 0..long.len() {
        let mut r = Harness::new(config.clone());
        for (i, write) in writes.iter().enumerate() {
            let (a, b) = write.as_bytes().split_at(cut.min(write.len()));
            r.feed_all_at(&[a, b], i as u64);
        }
        let targets: Vec<&[u8]> = r.requests.iter().map(|q| q.target()).collect();
        assert_eq!(targets, [&b"/ok1"[..], b"/ok2"], "cut {cut}: {:?}", r.stats);
        assert_eq!(r.stats.dropped.get(SkipReason::TooManyHeaders), 1);
        assert_eq!(r.stats.dropped.get(SkipReason::HeadTooLarge), 1);
        assert_eq!(r.stats.dropped.total(), 2);
        assert_eq!((r.stats.desyncs, r.stats.resyncs), (2, 2));
    }
}

#[test]
fn an_unterminated_head_never_grows_past_the_limit() {
    let config = HttpConfig {
        max_head_bytes: 1024,
        ..HttpConfig::default()
    };
    let mut slices: Vec<Vec<u8>> = vec![b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec()];
    for _ in 0..1000 {
        slices.push(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec());
    }
    let refs: Vec<&[u8]> = slices.iter().map(Vec::as_slice).collect();
    let r = run_with(Harness::new(config.clone()), &refs);
    assert!(r.requests.is_empty());
    assert_eq!(r.stats.dropped.get(SkipReason::HeadTooLarge), 1);
    assert!(r.framer.buffered() <= 1024);
}

#[test]
fn a_body_over_the_limit_is_skipped_unbuffered() {
    let config = HttpConfig {
        max_body_bytes: 10,
        ..HttpConfig::default()
    };
    let body = vec![b'z'; 100];
    let mut stream = b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n".to_vec();
    stream.extend_from_slice(&body);
    stream.extend_from_slice(b"POST /chunky HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    stream.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
    let slices: Vec<&[u8]> = stream.chunks(7).collect();
    let r = run_with(Harness::new(config.clone()), &slices);
    one_request_after_skips(&r, b"/after", SkipReason::BodyTooLarge, 2);
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn a_body_is_skipped_when_the_shared_budget_is_exhausted() {
    let mut r = Harness::default().with_budget(8);
    r.feed(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n0123456789",
        0,
    )
    .feed(b"0123456789GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 1);
    one_request_after_skips(&r, b"/x", SkipReason::BufferCap, 1);
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn http2_preface_marks_the_connection_unsupported() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    all_splits(preface, |r| given_up(r, SkipReason::UnsupportedHttp2));
}

#[test]
fn tls_client_hello_marks_the_connection_unsupported() {
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    all_splits(hello, |r| given_up(r, SkipReason::UnsupportedTls));
}

#[test]
fn garbage_and_invalid_heads_end_the_connection() {
    for stream in [
        &b"\x00\xffhello world\r\nfoo bar baz\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n",
    ] {
        let mut r = Harness::default();
        r.feed(stream, 0)
            .feed(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n", 1);
        assert!(r.requests.is_empty());
        assert_eq!(r.stats.dropped.total(), 1);
        assert!(r.framer.is_stopped());
    }
}

#[test]
fn websocket_upgrade_is_delivered_then_the_connection_ignored() {
    let stream = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85\x37\xfa\x21\x3dGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    all_splits(stream, |r| {
        assert_eq!(r.requests.len(), 1);
        assert!(r.requests[0].upgrade);
        assert_eq!(r.stats.dropped.get(SkipReason::Upgraded), 1);
        assert!(r.framer.is_stopped());
    });
}

#[test]
fn an_h2c_upgrade_stops_parsing_and_a_connect_is_refused() {
    let r = run(&[
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.stats.dropped.get(SkipReason::Upgraded), 1);
    assert_eq!(r.stats.dropped.get(SkipReason::UnsupportedHttp2), 0);
    // A tunnel is nothing a shadow can replay (and nginx refuses it):
    // refused at the head, the tunnel's bytes ignored.
    let r =
        run(&[b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"]);
    given_up(&r, SkipReason::UnsupportedTarget);
}

#[test]
fn expect_100_continue_body_follows() {
    let r = run(&[
        b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        b"abc",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert!(r.requests[0].expect_continue);
    assert_eq!(&r.requests[0].body[..], b"abc");
    assert_eq!(r.stats.expect_continue, 1);
}

#[test]
fn a_gap_inside_a_known_body_keeps_the_framing() {
    let mut r = Harness::default();
    r.feed_edges(
        b"POST /lost HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
        WriteEdges::INSIDE,
        0,
    )
    .gap(SkipReason::Gap, 5)
    .feed_edges(
        b"ijGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        WriteEdges::INSIDE,
        1,
    );
    one_request_after_skips(&r, b"/next", SkipReason::Gap, 1);
    assert_eq!(r.stats.desyncs, 0);
    assert_eq!(r.budget.used(), 0);
    // A gap that ends exactly where the body does.
    let mut r = Harness::default();
    r.feed(
        b"POST /lost HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
        0,
    )
    .gap(SkipReason::Gap, 7)
    .feed_edges(
        b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        WriteEdges::INSIDE,
        1,
    );
    one_request_after_skips(&r, b"/next", SkipReason::Gap, 1);
}

#[test]
fn a_gap_past_the_body_desyncs_until_a_request_proves_itself() {
    let mut r = Harness::default();
    r.feed(
        b"POST /lost HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
        0,
    )
    .gap(SkipReason::Gap, 20)
    // Starts a write, but is no request: skipped.
    .feed(b"ij\r\nGET /no HTTP/1.1\r\nHost: h\r\n\r\n", 1)
    .feed(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n", 2);
    one_request_after_skips(&r, b"/next", SkipReason::Gap, 1);
    assert_eq!((r.stats.desyncs, r.stats.resyncs), (1, 1));
    // Between requests too.
    let mut r = Harness::default();
    r.gap(SkipReason::Gap, 3)
        .feed_edges(b"T /no HTTP/1.1\r\nHost: h\r\n\r\n", WriteEdges::INSIDE, 1)
        .feed(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n", 2);
    one_request_after_skips(&r, b"/next", SkipReason::Gap, 1);
}

#[test]
fn a_joined_connection_waits_for_a_request_that_starts_and_ends_a_write() {
    let tail = b"der: 1\r\n\r\nbody-bytesGET /inside HTTP/1.1\r\nHost: h\r\n\r\n";
    let next = b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n";
    for cut in 0..tail.len() {
        let mut r = Harness::midstream(HttpConfig::default());
        r.feed_all(&[&tail[..cut], &tail[cut..]]).feed(next, 2);
        assert_eq!(r.requests.len(), 1, "cut {cut}");
        assert_eq!(r.requests[0].target(), b"/first");
        assert_eq!(r.stats.dropped.get(SkipReason::MidstreamJoin), 1);
        assert_eq!(r.stats.dropped.total(), 1);
        assert_eq!(r.stats.resyncs, 1);
    }
    // The first write the flow stage saw start is a request: nothing lost,
    // nothing counted.
    let mut r = Harness::midstream(HttpConfig::default());
    r.feed_all(&[b"GET / HTTP/1.1\r\n", b"Host: a\r\n\r\n"]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.stats.dropped.total(), 0);
    // Then in sync: pipelined requests in one write are all framed.
    r.feed(
        b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
        2,
    );
    assert_eq!(r.requests.len(), 3);
}

#[test]
fn an_upload_full_of_request_lines_invents_nothing() {
    // Joined in the middle of an upload whose body is request lines, and
    // whose writes start (and PSH-delimited segments end) on line starts:
    // no write holds exactly one request, so no candidate proves itself.
    let line = b"GET /invented HTTP/1.1\r\nHost: x\r\n\r\n";
    let write: Vec<u8> = line.repeat(8);
    let mut r = Harness::midstream(HttpConfig::default());
    for i in 0..50 {
        let (a, b) = write.split_at(line.len() * 3);
        r.feed_all_at(&[a, b], i);
    }
    assert!(r.requests.is_empty());
    assert_eq!(r.stats.resyncs, 0);
    assert_eq!(r.stats.dropped.get(SkipReason::MidstreamJoin), 1);
    assert_eq!(r.budget.used(), 0);
    // The same body in a connection followed from its start is a body.
    let mut r = Harness::default();
    let total = write.len() * 50;
    r.feed(
        format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
        0,
    );
    for i in 0..50 {
        r.feed(&write, i + 1);
    }
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.requests[0].body.len(), total);
}

#[test]
fn a_candidate_head_must_come_in_one_write() {
    // The tail of an upload's write ("abcd") glued to the next request
    // would read as a request with method "abcdGET".
    let mut r = Harness::midstream(HttpConfig::default());
    r.feed(b"abcd", 0)
        .feed(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n", 1);
    one_request_after_skips(&r, b"/next", SkipReason::MidstreamJoin, 1);
    assert_eq!(r.requests[0].method(), b"GET");
}

#[test]
fn a_candidate_that_fails_on_probation_counts_nothing() {
    let config = HttpConfig {
        max_headers: 2,
        ..HttpConfig::default()
    };
    let mut r = Harness::midstream(config);
    r.feed(b"xx\r\n", 0)
        .feed(
            b"GET /many HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            1,
        )
        .feed(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 2)
        .feed(b"\x16\x03\x01\x00\x05hello", 3)
        .feed(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
            4,
        )
        .gap(SkipReason::Gap, 3)
        .feed(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n", 5);
    one_request_after_skips(&r, b"/ok", SkipReason::MidstreamJoin, 1);
    assert!(!r.framer.is_stopped());
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn finishing_mid_request_counts_the_reason() {
    let mut r = Harness::default();
    r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nHo", 0);
    assert!(r.budget.used() > 0);
    r.finish(SkipReason::Incomplete);
    assert_eq!(r.stats.dropped.get(SkipReason::Incomplete), 1);
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn hostile_inputs_never_panic() {
    let config = HttpConfig {
        max_head_bytes: 256,
        max_headers: 4,
        max_body_bytes: 64,
        stream: None,
    };
    let samples: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        b"\r\n\r\n\r\n\n\n\n",
        b"GET",
        b"G\x00T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\x80\x81: x\r\n\r\n",
        b"\x16\x03",
        b"PRI * HTTP/2",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\nC: d\r\n",
    ];
    for a in samples {
        for b in samples {
            let mut joined = a.to_vec();
            joined.extend_from_slice(b);
            for cut in 0..joined.len() {
                let r = run_with(
                    Harness::new(config.clone()),
                    &[&joined[..cut], &joined[cut..]],
                );
                assert!(r.framer.buffered() <= 2 * 256 + 64);
            }
        }
    }
}

#[test]
fn bytes_after_a_request_v1_closes_on_are_counted_once_and_never_delivered() {
    for first in [
        &b"GET /1 HTTP/1.0\r\n\r\n"[..],
        b"POST /1 HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ] {
        let stream = [
            first,
            b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.0\r\n\r\n",
        ]
        .concat();
        all_splits(&stream, |r| {
            one_request_after_skips(r, b"/1", SkipReason::AfterClose, 1);
            assert!(r.framer.is_stopped());
            assert_eq!(r.budget.used(), 0);
        });
    }
}

#[test]
fn a_closing_request_alone_or_with_stray_line_ends_counts_nothing() {
    let r = run(&[
        b"POST /1 HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc\r\n",
        b"\r\n",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.stats.dropped.total(), 0);
    assert!(!r.framer.is_stopped(), "still watching for bytes after it");
}

#[test]
fn http_1_0_keep_alive_requests_are_all_framed() {
    let r = run(&[
        b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    ]);
    assert_eq!(r.requests.len(), 2);
    assert_eq!(r.stats.dropped.total(), 0);
}

#[test]
fn a_bare_lf_head_hiding_a_request_in_its_body_is_refused_whole() {
    // nginx reads Content-Length: 23 and a body holding `GET /admin`; a
    // CRLF-only shadow would read no body and serve `GET /admin`.
    let smuggler = b"GET / HTTP/1.1\nHost: h\nContent-Length: 23\n\nGET /admin HTTP/1.1\r\n\r\n";
    all_splits(smuggler, |r| given_up(r, SkipReason::BareLineEnd));
}

#[test]
fn the_http2_preface_with_bare_lf_is_still_http2() {
    let r = run(&[b"PRI * HTTP/2.0\n\nSM\n\n"]);
    given_up(&r, SkipReason::UnsupportedHttp2);
}

#[test]
fn options_asterisk_and_absolute_form_are_delivered() {
    let r = run(&[
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\nGET http://h:8080/x?y HTTP/1.1\r\nHost: h:8080\r\n\r\n",
    ]);
    let targets: Vec<&[u8]> = r.requests.iter().map(|q| q.target()).collect();
    assert_eq!(targets, vec![&b"*"[..], b"http://h:8080/x?y"]);
    assert_eq!(r.stats.dropped.total(), 0);
}

mod streaming {
    //! Bodies over the window go on as they arrive.

    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;

    use super::*;
    use crate::flow::Budget;
    use crate::http::h1::framer::FramerCtx;

    /// A sink that reads every streamed body (a target would).
    #[derive(Default)]
    struct Reading(Vec<(Request, Option<BodyReader>)>);

    impl RequestSink for Reading {
        fn on_request(&mut self, request: Request) {
            let reader = request.stream.as_ref().map(BodyStream::reader);
            self.0.push((request, reader));
        }
    }

    struct Conn {
        config: HttpConfig,
        stats: HttpStats,
        budget: Budget,
        sink: Reading,
        framer: RequestFramer,
    }

    impl Conn {
        fn new(after: u64, lag: usize) -> Self {
            Self {
                config: HttpConfig {
                    stream: Some(StreamLimits {
                        after,
                        lag,
                        budget: StreamBudget::new(64 << 20),
                    }),
                    ..HttpConfig::default()
                },
                stats: HttpStats::default(),
                budget: Budget::new(usize::MAX),
                sink: Reading::default(),
                framer: RequestFramer::new(testing::test_flow(1)),
            }
        }

        fn cx(&mut self) -> (&mut RequestFramer, FramerCtx<'_, Reading>) {
            (
                &mut self.framer,
                FramerCtx {
                    config: &self.config,
                    stats: &mut self.stats,
                    budget: &mut self.budget,
                    sink: &mut self.sink,
                },
            )
        }

        /// `bytes` in slices of `size`, each its own write.
        fn feed(&mut self, bytes: &[u8], size: usize) {
            for slice in bytes.chunks(size) {
                let (framer, mut cx) = self.cx();
                framer.feed(slice, WriteEdges::WHOLE, 7, &mut cx);
            }
        }

        fn held(&self) -> usize {
            self.framer.buffered()
        }
    }

    /// What a reader can take now: the bytes, and the end (`Ok(Some)`
    /// with the trailers), an error, or `Ok(None)` (more to come).
    fn drain(reader: &mut BodyReader) -> (Vec<u8>, Result<Option<Bytes>, StreamError>) {
        let mut got = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let polled = std::pin::pin!(reader.read()).poll(&mut cx);
            match polled {
                Poll::Ready(Ok(BodyRead::Data(pieces))) => {
                    let bytes = pieces.concat();
                    reader.advance(bytes.len());
                    got.extend(bytes);
                }
                Poll::Ready(Ok(BodyRead::End(trailers))) => return (got, Ok(Some(trailers))),
                Poll::Ready(Err(e)) => return (got, Err(e)),
                Poll::Pending => return (got, Ok(None)),
            }
        }
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_large_body_is_delivered_at_its_head_and_streams_without_being_held() {
        let payload = body(200_000);
        let mut stream = format!(
            "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        )
        .into_bytes();
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut c = Conn::new(64 << 10, 1 << 20);
        let mut got = Vec::new();
        for slice in stream.chunks(1448) {
            c.feed(slice, 1448);
            assert!(c.held() < 1448, "a streamed body is not held: {}", c.held());
            if let Some(reader) = c.sink.0.first_mut().and_then(|(_, r)| r.as_mut()) {
                got.extend(drain(reader).0);
            }
        }
        let (first, reader) = &mut c.sink.0[0];
        assert_eq!(first.target(), b"/up");
        assert!(first.body.is_empty() && first.stream.is_some());
        let (rest, end) = drain(reader.as_mut().unwrap());
        got.extend(rest);
        assert_eq!(end, Ok(Some(Bytes::new())));
        assert_eq!(got, payload, "every byte, in order");
        assert_eq!(c.sink.0[1].0.target(), b"/next", "framing goes on");
        assert_eq!(c.stats.requests, 2);
        assert_eq!(c.stats.streamed_requests, 1);
        assert_eq!(c.stats.body_bytes, payload.len() as u64);
        assert_eq!(c.stats.dropped.total(), 0);
    }

    #[test]
    fn a_body_within_the_window_comes_whole() {
        let mut c = Conn::new(64 << 10, 1 << 20);
        let payload = body(60_000);
        let mut stream = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 60000\r\n\r\n".to_vec();
        stream.extend_from_slice(&payload);
        c.feed(&stream, 1000);
        assert_eq!(c.sink.0.len(), 1);
        assert!(c.sink.0[0].0.stream.is_none());
        assert_eq!(c.sink.0[0].0.body, payload);
        assert_eq!(c.stats.streamed_requests, 0);
    }

    #[test]
    fn a_chunked_body_streams_once_over_the_window_with_its_trailers_at_the_end() {
        let payload = body(100_000);
        let mut stream =
            b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in payload.chunks(10_000) {
            stream.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
            stream.extend_from_slice(chunk);
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b"0\r\nX-Sum: 9\r\n\r\n");
        for size in [1, 1448, 70_000] {
            let mut c = Conn::new(64 << 10, 1 << 20);
            c.feed(&stream, size);
            assert_eq!(c.sink.0.len(), 1, "slices of {size}");
            let (request, reader) = &mut c.sink.0[0];
            assert!(request.chunked && request.stream.is_some());
            let (got, end) = drain(reader.as_mut().unwrap());
            assert_eq!(end, Ok(Some(Bytes::from_static(b"X-Sum: 9\r\n"))));
            assert_eq!(got, payload, "slices of {size}");
            assert_eq!(c.held(), 0);
        }
    }

    #[test]
    fn a_body_lost_midway_ends_its_readers_and_the_framing_survives_a_length_gap() {
        let mut c = Conn::new(1000, 1 << 20);
        c.feed(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n",
            4096,
        );
        c.feed(&body(2000), 4096);
        let (got, end) = drain(c.sink.0[0].1.as_mut().unwrap());
        assert_eq!((got.len(), end), (2000, Ok(None)));
        let (framer, mut cx) = c.cx();
        framer.gap(SkipReason::Gap, 1000, &mut cx);
        let (got, end) = drain(c.sink.0[0].1.as_mut().unwrap());
        assert_eq!((got.len(), end), (0, Err(StreamError::Lost)));
        c.feed(&body(2000), 4096);
        c.feed(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n", 4096);
        assert_eq!(c.sink.0.len(), 2);
        assert_eq!(c.sink.0[1].0.target(), b"/after");
        assert_eq!(c.stats.dropped.get(SkipReason::Gap), 1);

        // The client resets in the middle of a body.
        let mut c = Conn::new(1000, 1 << 20);
        c.feed(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n",
            4096,
        );
        c.feed(&body(2000), 4096);
        let (framer, mut cx) = c.cx();
        framer.finish(SkipReason::Reset, &mut cx);
        assert_eq!(
            drain(c.sink.0[0].1.as_mut().unwrap()).1,
            Err(StreamError::Lost)
        );
        assert_eq!(c.stats.dropped.get(SkipReason::Reset), 1);
    }

    #[test]
    fn a_chunked_body_over_the_size_limit_is_skipped_even_in_one_chunk_that_crosses_the_window() {
        let mut c = Conn::new(1000, 1 << 20);
        c.config.max_body_bytes = 3000;
        let mut stream =
            b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        stream.extend_from_slice(b"1388\r\n");
        stream.extend_from_slice(&body(5000));
        stream.extend_from_slice(b"\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n");
        c.feed(&stream, 1 << 16);
        assert_eq!(c.stats.dropped.get(SkipReason::BodyTooLarge), 1);
        assert_eq!(c.stats.streamed_requests, 0, "never sent on");
        assert_eq!(c.sink.0.len(), 1);
        assert_eq!(c.sink.0[0].0.target(), b"/after");
    }

    #[test]
    fn a_body_nobody_reads_is_skipped_without_a_loss() {
        let mut c = Conn::new(1000, 100);
        c.feed(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n",
            4096,
        );
        // The reader never reads: past the lag it is cut, and the framer
        // skips the rest (the kernel may too).
        c.feed(&body(1000), 4096);
        assert_eq!(c.framer.skippable(), 4000);
        c.feed(&body(4000), 4096);
        c.feed(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n", 4096);
        assert_eq!(
            drain(c.sink.0[0].1.as_mut().unwrap()).1,
            Err(StreamError::Behind)
        );
        assert_eq!(c.sink.0[1].0.target(), b"/after");
        assert_eq!(c.stats.dropped.total(), 0);
        assert_eq!(c.stats.skipped_bytes, 5000);
    }
}
