//! Scenario tests of the response framing: byte streams as a server sends
//! them, fed in slices through the flow stage's consumer interface, and the
//! responses (or losses) that come out.

use std::collections::VecDeque;
use std::io::Write;

use bytes::Bytes;

use super::*;
use crate::capture::FlowId;
use crate::flow::{Budget, StreamConsumer, StreamLoss, WriteEdges};
use crate::http::testing::{hash_of, test_flow};
use crate::http::{Answer, BodyCollector, ResponseFraming};

/// What the sink saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Response(CapturedResponse),
    Lost(ResponseLoss),
}

/// A sink that plays the request side: the requests of the connection in
/// order, each popped when its response (or its loss) comes.
#[derive(Debug, Default)]
struct Pairing {
    requests: VecDeque<Answers>,
    events: Vec<Event>,
}

impl ResponseSink for Pairing {
    fn next_request(&mut self, flow: &FlowId) -> Option<Answers> {
        assert_eq!(*flow, test_flow(1));
        self.requests.front().copied()
    }

    fn on_response(&mut self, flow: &FlowId, response: CapturedResponse) {
        assert_eq!(*flow, test_flow(1));
        self.requests.pop_front();
        self.events.push(Event::Response(response));
    }

    fn on_lost(&mut self, flow: &FlowId, reason: ResponseLoss) {
        assert_eq!(*flow, test_flow(1));
        self.requests.pop_front();
        self.events.push(Event::Lost(reason));
    }
}

const GET: Answers = Answers {
    head: false,
    connect: false,
};
const HEAD: Answers = Answers {
    head: true,
    connect: false,
};
const CONNECT: Answers = Answers {
    head: false,
    connect: true,
};

/// One connection through [`ResponseFraming`], fed by hand.
struct Conn {
    framing: ResponseFraming<Pairing>,
    framer: ResponseFramer,
    budget: Budget,
}

impl Conn {
    fn new(requests: &[Answers]) -> Self {
        Self::with(ResponseConfig::default(), requests)
    }

    fn with(config: ResponseConfig, requests: &[Answers]) -> Self {
        let mut framing = ResponseFraming::new(
            config,
            Pairing {
                requests: requests.iter().copied().collect(),
                events: Vec::new(),
            },
        );
        let framer = framing.open(test_flow(1), false);
        Self {
            framing,
            framer,
            budget: Budget::new(usize::MAX),
        }
    }

    fn budget(mut self, cap: usize) -> Self {
        self.budget = Budget::new(cap);
        self
    }

    /// Each slice as one segment; segment `i` seen at `i`.
    fn feed(&mut self, slices: &[&[u8]]) -> &mut Self {
        for (i, slice) in slices.iter().enumerate() {
            if !slice.is_empty() {
                self.data_at(slice, i as u64);
            }
        }
        self
    }

    fn data_at(&mut self, bytes: &[u8], ts_ns: u64) -> &mut Self {
        self.framing.data(
            &mut self.framer,
            bytes,
            WriteEdges::INSIDE,
            ts_ns,
            &mut self.budget,
        );
        self
    }

    fn gap(&mut self, missing: u64) -> &mut Self {
        self.framing
            .gap(&mut self.framer, StreamLoss::Gap, missing, &mut self.budget);
        self
    }

    fn end(&mut self, how: StreamLoss) -> &mut Self {
        self.framing.end(&mut self.framer, how, &mut self.budget);
        self
    }

    fn events(&self) -> &[Event] {
        &self.framing.sink().events
    }

    fn responses(&self) -> Vec<&CapturedResponse> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::Response(r) => Some(r),
                Event::Lost(_) => None,
            })
            .collect()
    }

    fn losses(&self) -> Vec<ResponseLoss> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::Lost(l) => Some(*l),
                Event::Response(_) => None,
            })
            .collect()
    }

    /// (status, body) of each response.
    fn summary(&self) -> Vec<(u16, Vec<u8>)> {
        self.responses()
            .iter()
            .map(|r| (r.answer.status, r.answer.body.bytes.to_vec()))
            .collect()
    }

    fn stats(&self) -> &ResponseStats {
        self.framing.stats()
    }
}

/// Every way of cutting `stream` in two, and one byte at a time, each
/// ended with `end` (if any).
fn all_splits(stream: &[u8], requests: &[Answers], end: Option<StreamLoss>, check: impl Fn(&Conn)) {
    let finish = |conn: &mut Conn| {
        if let Some(how) = end {
            conn.end(how);
        }
    };
    for cut in 0..=stream.len() {
        let mut conn = Conn::new(requests);
        conn.feed(&[&stream[..cut], &stream[cut..]]);
        finish(&mut conn);
        check(&conn);
    }
    let mut conn = Conn::new(requests);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    conn.feed(&bytes);
    finish(&mut conn);
    check(&conn);
}

#[test]
fn pipelined_responses_with_every_body_framing_come_out_in_order() {
    let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Order: 1\r\n\r\nhello\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok\
HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.0 200 OK\r\nServer: old\r\n\r\nuntil the close";
    let requests = [GET, GET, GET, GET, GET, HEAD, GET, GET];
    all_splits(stream, &requests, Some(StreamLoss::Incomplete), |c| {
        assert_eq!(
            c.summary(),
            vec![
                (200, b"hello".to_vec()),
                (201, b"abcde".to_vec()),
                (202, b"ok".to_vec()),
                (204, vec![]),
                (304, vec![]),
                (200, vec![]),
                (200, vec![]),
                (200, b"until the close".to_vec()),
            ]
        );
        assert!(c.losses().is_empty(), "{:?}", c.losses());
        let first = &c.responses()[0].answer;
        assert_eq!(
            first.headers,
            vec![
                ("Content-Length".to_string(), Bytes::from_static(b"5")),
                ("X-Order".to_string(), Bytes::from_static(b"1")),
            ]
        );
        assert_eq!(first.body.hash, hash_of(b"hello"));
        assert_eq!(c.stats().responses, 8);
        assert_eq!(c.stats().interim, 2);
        assert_eq!(c.stats().body_bytes, 5 + 5 + 2 + 15);
        assert_eq!(c.budget.used(), 0, "nothing held once all is delivered");
        assert_eq!(c.framer.buffered(), 0);
        assert!(c.framing.sink().requests.is_empty());
    });
}

#[test]
fn the_chunked_trailers_are_skipped_and_the_body_is_dechunked() {
    let stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n";
    all_splits(stream, &[GET], None, |c| {
        assert_eq!(
            c.summary(),
            vec![(200, b"Wikipedia in\r\n\r\nchunks.".to_vec())]
        );
        let answer = &c.responses()[0].answer;
        assert_eq!(answer.header("expires"), None, "trailers are not headers");
        assert_eq!(answer.body.len, 23);
    });
}

#[test]
fn timestamps_are_those_of_the_final_heads_first_segment_and_of_the_last() {
    let mut c = Conn::new(&[GET]);
    c.data_at(b"HTTP/1.1 100 Continue\r\n\r\n", 10)
        .data_at(b"HTTP/1.1 200 OK\r\nContent-", 20)
        .data_at(b"Length: 4\r\n\r\nab", 30)
        .data_at(b"cd", 40);
    let r = c.responses()[0];
    assert_eq!((r.first_byte_ns, r.complete_ns), (20, 40));

    // A close-delimited body completes with its last segment.
    let mut c = Conn::new(&[GET]);
    c.data_at(b"HTTP/1.1 200 OK\r\n\r\nab", 5)
        .data_at(b"cd", 6)
        .end(StreamLoss::Incomplete);
    let r = c.responses()[0];
    assert_eq!((r.first_byte_ns, r.complete_ns), (5, 6));
    assert_eq!(&r.answer.body.bytes[..], b"abcd");
}

#[test]
fn a_gzip_body_is_kept_encoded() {
    let json = br#"{"items":[1,2,3],"total":3}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json).unwrap();
    let gzipped = gz.finish().unwrap();
    let mut stream =
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in gzipped.chunks(7) {
        stream.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        stream.extend_from_slice(piece);
        stream.extend_from_slice(b"\r\n");
    }
    stream.extend_from_slice(b"0\r\n\r\n");
    all_splits(&stream, &[GET], None, |c| {
        let answer = &c.responses()[0].answer;
        assert_eq!(answer.header("content-encoding"), Some(&b"gzip"[..]));
        assert_eq!(&answer.body.bytes[..], &gzipped[..]);
        assert_eq!(answer.body.hash, hash_of(&gzipped));
    });
}

#[test]
fn a_body_over_the_cap_keeps_its_start_and_the_hash_of_all_of_it() {
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut stream =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    stream.extend_from_slice(&body);
    let config = ResponseConfig {
        body_cap: 100,
        ..ResponseConfig::default()
    };
    let mut c = Conn::with(config, &[GET]);
    let mut peak = 0;
    for piece in stream.chunks(333) {
        c.data_at(piece, 0);
        peak = peak.max(c.budget.used());
    }
    let answer = &c.responses()[0].answer;
    assert_eq!(&answer.body.bytes[..], &body[..100]);
    assert_eq!(answer.body.len, 10_000);
    assert_eq!(answer.body.hash, hash_of(&body));
    assert!(
        peak <= 100 + 64,
        "held at most the cap and the head: {peak}"
    );
    assert_eq!(c.budget.used(), 0);
}

#[test]
fn a_response_before_its_request_is_known_is_framed_as_a_plain_one() {
    // No request registered: the Content-Length body is read (as for a GET).
    all_splits(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
        &[],
        None,
        |c| {
            assert_eq!(c.summary(), vec![(200, b"abc".to_vec()), (404, vec![])]);
        },
    );
}

#[test]
fn switching_protocols_is_final_and_the_rest_is_ignored() {
    let stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello";
    all_splits(stream, &[GET], Some(StreamLoss::Incomplete), |c| {
        assert!(matches!(c.events()[0], Event::Response(_)));
        assert_eq!(c.losses(), vec![ResponseLoss::Upgraded]);
        assert_eq!(
            c.responses()[0].answer,
            Answer {
                status: 101,
                headers: vec![
                    ("Upgrade".into(), Bytes::from_static(b"websocket")),
                    ("Connection".into(), Bytes::from_static(b"Upgrade")),
                ],
                body: BodyCollector::new(0).finish(),
            }
        );
        assert_eq!(c.stats().ignored_bytes, 7, "the frame after the upgrade");
        assert!(ResponseFraming::<Pairing>::is_done(&c.framer));
        assert_eq!(c.budget.used(), 0);
    });
}

#[test]
fn a_connect_tunnel_is_not_framed_after_its_2xx_but_a_refusal_is_a_response() {
    let mut c = Conn::new(&[CONNECT]);
    c.feed(&[b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01\x00\x05hello"]);
    assert_eq!(c.summary(), vec![(200, vec![])]);
    assert_eq!(c.losses(), vec![ResponseLoss::Upgraded]);
    assert_eq!(c.stats().ignored_bytes, 10);

    let mut c = Conn::new(&[CONNECT, GET]);
    c.feed(&[
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    ]);
    assert_eq!(
        c.summary(),
        vec![(403, b"no".to_vec()), (200, b"x".to_vec())]
    );
    assert!(c.losses().is_empty());
}

#[test]
fn garbage_where_a_response_should_start_loses_the_connection() {
    all_splits(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", &[GET], None, |c| {
        assert_eq!(c.events(), &[Event::Lost(ResponseLoss::Garbage)]);
        assert!(ResponseFraming::<Pairing>::is_done(&c.framer));
    });
    // A server that sent more than its Content-Length.
    all_splits(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA HTTP/1.1 200 OK\r\n\r\n",
        &[GET, GET],
        None,
        |c| {
            assert_eq!(c.summary(), vec![(200, b"ok".to_vec())]);
            assert_eq!(c.losses(), vec![ResponseLoss::Garbage]);
            assert_eq!(c.budget.used(), 0);
        },
    );
}

#[test]
fn heads_and_framings_we_cannot_trust_lose_the_connection() {
    let cases: &[(&[u8], ResponseLoss)] = &[
        (
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            ResponseLoss::InvalidHead,
        ),
        (b"HTTP/1.1 2000 OK\r\n\r\n", ResponseLoss::InvalidHead),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            ResponseLoss::InvalidFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ResponseLoss::InvalidFraming,
        ),
    ];
    for (stream, reason) in cases {
        all_splits(stream, &[GET], None, |c| {
            assert_eq!(
                c.events(),
                &[Event::Lost(*reason)],
                "{:?}",
                String::from_utf8_lossy(stream)
            );
            assert_eq!(c.budget.used(), 0);
        });
    }
}

#[test]
fn the_head_limits_apply() {
    let config = ResponseConfig {
        max_head_bytes: 64,
        max_headers: 2,
        ..ResponseConfig::default()
    };
    let long = format!("HTTP/1.1 200 OK\r\nX-Long: {}\r\n\r\n", "a".repeat(100));
    for pieces in [vec![long.as_bytes()], long.as_bytes().chunks(10).collect()] {
        let mut c = Conn::with(config.clone(), &[GET]);
        c.feed(&pieces);
        assert_eq!(c.losses(), vec![ResponseLoss::HeadTooLarge]);
        assert_eq!(c.budget.used(), 0);
    }
    let mut c = Conn::with(config.clone(), &[GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"]);
    assert_eq!(c.losses(), vec![ResponseLoss::TooManyHeaders]);

    let mut trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    trailers.extend_from_slice(format!("X-T: {}\r\n\r\n", "t".repeat(100)).as_bytes());
    let mut c = Conn::with(config, &[GET]);
    c.feed(&[&trailers]);
    assert_eq!(c.losses(), vec![ResponseLoss::TrailersTooLarge]);
}

#[test]
fn a_gap_inside_a_content_length_body_loses_that_response_only() {
    let mut c = Conn::new(&[GET, GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
    assert_eq!(c.budget.used(), 42, "the head and the body so far");
    c.gap(4);
    assert_eq!(c.budget.used(), 0, "the lost response is released");
    assert_eq!(ResponseFraming::<Pairing>::skippable(&c.framer), 3);
    c.feed(&[
        b"hij",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx",
    ]);
    assert_eq!(
        c.losses(),
        vec![ResponseLoss::BodyGap],
        "reported instead of the response"
    );
    assert!(!ResponseLoss::BodyGap.ends_stream());
    assert_eq!(c.summary(), vec![(404, b"x".to_vec())]);
    assert!(
        c.framing.sink().requests.is_empty(),
        "both requests answered"
    );

    // The flow stage may leave the rest of the lost body out.
    let mut c = Conn::new(&[GET, GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"]);
    c.gap(2);
    c.framing.skipped(&mut c.framer, 8, &mut c.budget);
    c.feed(&[b"HTTP/1.1 204 No Content\r\n\r\n"]);
    assert_eq!(c.summary(), vec![(204, vec![])]);

    // A gap that covers the end of the body and more: the framing is gone.
    let mut c = Conn::new(&[GET, GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
    c.gap(8);
    c.feed(&[b"HTTP/1.1 204 No Content\r\n\r\n"]);
    assert_eq!(c.losses(), vec![ResponseLoss::Gap]);
    assert!(c.responses().is_empty());
}

#[test]
fn a_gap_anywhere_else_loses_the_connection() {
    for before in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nCont",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    ] {
        let mut c = Conn::new(&[GET, GET]);
        c.feed(&[before]);
        let delivered = c.responses().len();
        c.gap(5);
        c.feed(&[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
        c.end(StreamLoss::Incomplete);
        assert_eq!(c.responses().len(), delivered, "nothing after the gap");
        assert_eq!(c.losses(), vec![ResponseLoss::Gap]);
        assert_eq!(c.budget.used(), 0);
    }
}

#[test]
fn the_end_of_the_connection_in_a_response_loses_it() {
    let mut c = Conn::new(&[GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])
        .end(StreamLoss::Incomplete);
    assert_eq!(c.events(), &[Event::Lost(ResponseLoss::Incomplete)]);
    assert_eq!(c.budget.used(), 0);

    let mut c = Conn::new(&[GET]);
    c.feed(&[b"HTTP/1.1 20"]).end(StreamLoss::IdleExpired);
    assert_eq!(c.events(), &[Event::Lost(ResponseLoss::IdleExpired)]);

    // A reset may have cut a close-delimited body.
    let mut c = Conn::new(&[GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\n\r\npartial"])
        .end(StreamLoss::Reset);
    assert_eq!(c.events(), &[Event::Lost(ResponseLoss::Reset)]);

    // Between responses, the end loses nothing.
    let mut c = Conn::new(&[GET]);
    c.feed(&[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
        .end(StreamLoss::Reset);
    assert_eq!(c.summary(), vec![(200, vec![])]);
    assert!(c.losses().is_empty());
}

#[test]
fn a_transfer_coding_other_than_chunked_runs_until_the_close() {
    all_splits(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nnot two bytes",
        &[GET],
        Some(StreamLoss::Incomplete),
        |c| assert_eq!(c.summary(), vec![(200, b"not two bytes".to_vec())]),
    );
}

#[test]
fn a_connection_joined_in_the_middle_is_lost_at_once() {
    let mut framing = ResponseFraming::new(ResponseConfig::default(), Pairing::default());
    let mut framer = framing.open(test_flow(1), true);
    let mut budget = Budget::new(usize::MAX);
    assert!(ResponseFraming::<Pairing>::is_done(&framer));
    framing.data(
        &mut framer,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        WriteEdges::WHOLE,
        0,
        &mut budget,
    );
    framing.end(&mut framer, StreamLoss::Incomplete, &mut budget);
    assert_eq!(
        framing.sink().events,
        vec![Event::Lost(ResponseLoss::MidstreamJoin)]
    );
    assert_eq!(framing.stats().lost.total(), 1);
}

#[test]
fn a_full_budget_loses_the_connection_instead_of_growing() {
    let mut c = Conn::new(&[GET]).budget(50);
    c.feed(&[
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        &[b'x'; 30],
    ]);
    assert_eq!(c.losses(), vec![ResponseLoss::BufferCap]);
    assert_eq!(c.budget.used(), 0);
}

#[test]
fn with_a_raw_cap_each_response_keeps_its_bytes_as_they_came_in_any_split() {
    let first = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
    let second = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n";
    let third = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\x00\r\n\xff";
    let huge = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..],
        &[b'x'; 100],
    ]
    .concat();
    let fifth = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
    let stream = [&first[..], b"\r\n", second, third, &huge, fifth].concat();
    let config = ResponseConfig {
        raw_cap: 100,
        ..ResponseConfig::default()
    };
    let check = |c: &Conn| {
        let raw: Vec<Option<&[u8]>> = c.responses().iter().map(|r| r.raw.as_deref()).collect();
        assert_eq!(
            raw,
            [
                Some(&first[..]),
                Some(&second[..]),
                Some(&third[..]),
                None,
                Some(&fifth[..])
            ],
            "the stray CRLF belongs to no response; the fourth is over the cap"
        );
        assert_eq!(c.budget.used(), 0);
    };
    let requests = [GET; 5];
    for cut in 0..=stream.len() {
        let mut c = Conn::with(config.clone(), &requests);
        c.feed(&[&stream[..cut], &stream[cut..]]);
        c.end(StreamLoss::Incomplete);
        check(&c);
    }
    let mut c = Conn::with(config.clone(), &requests);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    c.feed(&bytes);
    c.end(StreamLoss::Incomplete);
    check(&c);
    // Without a raw cap nothing is kept.
    let mut c = Conn::new(&requests);
    c.feed(&[&stream]).end(StreamLoss::Incomplete);
    assert!(c.responses().iter().all(|r| r.raw.is_none()));
    assert_eq!(c.responses().len(), 5);
}
