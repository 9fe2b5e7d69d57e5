//! Scenario tests of the framer on its own: each feeds a byte stream in
//! slices and checks what comes out and what is counted.

use super::testing::Harness;
use super::*;

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
    let stream = b"POST /1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
GET /2 HTTP/1.1\r\n\r\n\
PUT /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
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
    let r = run(&[b"\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n"]);
    assert_eq!(r.requests.len(), 2);
    assert_eq!(&r.requests[1].head[..], b"GET /b HTTP/1.1\r\n\r\n");
    assert_eq!(r.stats.dropped.total(), 0);
}

#[test]
fn timestamps_are_those_of_the_first_and_last_segment() {
    let r = run(&[
        b"POST / HTTP/1.1\r\n",
        b"Content-Length: 2\r\n\r\n",
        b"a",
        b"b",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.requests[0].first_byte_ns, 0);
    assert_eq!(r.requests[0].complete_ns, 3);
}

#[test]
fn conflicting_content_lengths_are_rejected_and_the_next_request_found() {
    let stream = b"POST /bad HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcGET /good HTTP/1.1\r\n\r\n";
    all_splits(stream, |r| {
        assert_eq!(r.requests.len(), 1, "{:?}", r.stats);
        assert_eq!(r.requests[0].target(), b"/good");
        assert_eq!(r.stats.dropped.get(SkipReason::InvalidFraming), 1);
        assert_eq!(r.stats.resyncs, 1);
    });
}

#[test]
fn chunked_wins_over_content_length_and_is_counted() {
    let r = run(&[
        b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(&r.requests[0].body[..], b"x");
    assert_eq!(r.stats.te_overrides_cl, 1);
}

#[test]
fn a_malformed_chunk_drops_the_request() {
    let stream =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /next HTTP/1.1\r\n\r\n";
    all_splits(stream, |r| {
        one_request_after_skips(r, b"/next", SkipReason::InvalidFraming, 1);
    });
}

#[test]
fn oversized_heads_and_header_counts_are_skipped() {
    let config = HttpConfig {
        max_head_bytes: 64,
        max_headers: 2,
        ..HttpConfig::default()
    };
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
    let many = "GET /many HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let ok = "GET /ok HTTP/1.1\r\nA: 1\r\n\r\n";
    let stream = format!("{long}{many}{ok}");
    for cut in 0..stream.len() {
        let r = run_with(
            Harness::new(config.clone()),
            &[&stream.as_bytes()[..cut], &stream.as_bytes()[cut..]],
        );
        assert_eq!(r.requests.len(), 1, "cut {cut}: {:?}", r.stats);
        assert_eq!(r.requests[0].target(), b"/ok");
        assert_eq!(r.stats.dropped.get(SkipReason::TooManyHeaders), 1);
        assert_eq!(r.stats.dropped.get(SkipReason::HeadTooLarge), 1);
    }
}

#[test]
fn an_unterminated_head_never_grows_past_the_limit() {
    let config = HttpConfig {
        max_head_bytes: 1024,
        ..HttpConfig::default()
    };
    let mut slices: Vec<Vec<u8>> = vec![b"GET / HTTP/1.1\r\n".to_vec()];
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
    let mut stream = b"POST /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n".to_vec();
    stream.extend_from_slice(&body);
    stream.extend_from_slice(b"POST /chunky HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    stream.extend_from_slice(b"GET /after HTTP/1.1\r\n\r\n");
    let slices: Vec<&[u8]> = stream.chunks(7).collect();
    let r = run_with(Harness::new(config.clone()), &slices);
    one_request_after_skips(&r, b"/after", SkipReason::BodyTooLarge, 2);
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn a_body_is_skipped_when_the_shared_budget_is_exhausted() {
    let mut r = Harness::default().with_budget(8);
    r.feed(
        b"POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\n0123456789",
        0,
    )
    .feed(b"0123456789GET /x HTTP/1.1\r\n\r\n", 1);
    one_request_after_skips(&r, b"/x", SkipReason::BufferCap, 1);
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn http2_preface_marks_the_connection_unsupported() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00GET / HTTP/1.1\r\n\r\n";
    all_splits(preface, |r| {
        assert!(r.requests.is_empty());
        assert_eq!(r.stats.dropped.get(SkipReason::UnsupportedHttp2), 1);
        assert!(r.framer.is_stopped());
    });
}

#[test]
fn tls_client_hello_marks_the_connection_unsupported() {
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03GET / HTTP/1.1\r\n\r\n";
    all_splits(hello, |r| {
        assert!(r.requests.is_empty());
        assert_eq!(r.stats.dropped.get(SkipReason::UnsupportedTls), 1);
    });
}

#[test]
fn garbage_is_skipped_up_to_the_next_request_line() {
    let stream = b"\x00\xffhello world\r\nfoo bar baz\r\nGET /real HTTP/1.1\r\n\r\n";
    all_splits(stream, |r| {
        one_request_after_skips(r, b"/real", SkipReason::Garbage, 1);
    });
}

#[test]
fn invalid_heads_are_counted() {
    let stream = b"GET / HTTP/1.1\r\nBad Header\r\n\r\nGET /ok HTTP/1.1\r\n\r\n";
    all_splits(stream, |r| {
        assert_eq!(r.requests.len(), 1);
        assert_eq!(r.stats.dropped.get(SkipReason::InvalidHead), 1);
    });
}

#[test]
fn websocket_upgrade_is_delivered_then_the_connection_ignored() {
    let stream = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85\x37\xfa\x21\x3dGET /x HTTP/1.1\r\n\r\n";
    all_splits(stream, |r| {
        assert_eq!(r.requests.len(), 1);
        assert!(r.requests[0].upgrade);
        assert_eq!(r.stats.dropped.get(SkipReason::Upgraded), 1);
        assert!(r.framer.is_stopped());
    });
}

#[test]
fn h2c_upgrade_and_connect_stop_parsing() {
    let r = run(&[
        b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.stats.dropped.get(SkipReason::Upgraded), 1);
    assert_eq!(r.stats.dropped.get(SkipReason::UnsupportedHttp2), 0);
    let r =
        run(&[b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"]);
    assert_eq!(r.requests.len(), 1);
    assert!(r.requests[0].upgrade);
    assert!(r.framer.is_stopped());
}

#[test]
fn expect_100_continue_body_follows() {
    let r = run(&[
        b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        b"abc",
    ]);
    assert_eq!(r.requests.len(), 1);
    assert!(r.requests[0].expect_continue);
    assert_eq!(&r.requests[0].body[..], b"abc");
    assert_eq!(r.stats.expect_continue, 1);
}

#[test]
fn a_gap_drops_the_request_in_progress_and_resyncs() {
    let mut r = Harness::default();
    r.feed(b"POST /lost HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 0)
        .gap(SkipReason::Gap)
        .feed(b"ijGET /next HTTP/1.1\r\n\r\n", 1);
    one_request_after_skips(&r, b"/next", SkipReason::Gap, 1);
    assert_eq!(r.budget.used(), 0);
}

#[test]
fn midstream_join_finds_the_next_request() {
    let stream = b"der: 1\r\n\r\nbody-bytesGET /first HTTP/1.1\r\n\r\n";
    for cut in 0..stream.len() {
        let r = run_with(
            Harness::midstream(HttpConfig::default()),
            &[&stream[..cut], &stream[cut..]],
        );
        assert_eq!(r.requests.len(), 1, "cut {cut}");
        assert_eq!(r.requests[0].target(), b"/first");
        assert_eq!(r.stats.dropped.get(SkipReason::MidstreamJoin), 1);
    }
    // Joined exactly at a request boundary: nothing lost, nothing counted.
    let r = run_with(
        Harness::midstream(HttpConfig::default()),
        &[b"GET / HTTP/1.1\r\n\r\n"],
    );
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.stats.dropped.total(), 0);
}

#[test]
fn finishing_mid_request_counts_the_reason() {
    let mut r = Harness::default();
    r.feed(b"GET / HTTP/1.1\r\nHo", 0);
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
    };
    let samples: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"\r\n\r\n\r\n\n\n\n",
        b"GET",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\x80\x81: x\r\n\r\n",
        b"\x16\x03",
        b"PRI * HTTP/2",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\nC: d\r\n",
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
