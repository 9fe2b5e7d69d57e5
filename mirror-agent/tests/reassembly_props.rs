//! Property tests of reassembly + framing: whatever the segmentation,
//! reordering (within the out-of-order cap) and duplication, the requests
//! that come out are exactly the requests that went in; with a gap, or when
//! the capture joins in the middle, the requests lost are only those the
//! stream cannot prove, and nothing is ever invented, even from bodies full
//! of request lines.
//!
//! Each request is one client write: its last segment carries PSH.

use std::net::{Ipv4Addr, SocketAddr};

use mirror_agent::capture::{Direction, Event, EventKind, EventSink, FlowKey};
use mirror_agent::flow::FlowConfig;
use mirror_agent::http::testing::{framed_table, table_stats};
use mirror_agent::http::{Request, SkipReason};
use mirror_common::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

/// One request as the client writes it, and what the framer must return.
#[derive(Clone, Debug)]
struct Spec {
    wire: Vec<u8>,
    head: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    trailers: Vec<u8>,
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];
/// Besides the one `Host` every HTTP/1.1 request carries.
const HEADER_NAMES: &[&str] = &[
    "User-Agent",
    "accept",
    "X-Request-ID",
    "x-mIxEd-CaSe",
    "Cookie",
    "Authorization",
];

/// What a body holds that the framer must never take for a request.
const INVENTED: &[u8] = b"GET /invented HTTP/1.1\r\nHost: x\r\n\r\n";

/// Body bytes: any bytes, or request lines (an upload of a request log).
fn body_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (1..max / INVENTED.len()).prop_map(|n| INVENTED.repeat(n)),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    "[a-z0-9 ;=/.-]{0,24}".prop_map(|s| s.trim().to_string())
}

#[derive(Clone, Debug)]
enum BodySpec {
    None,
    Length(Vec<u8>),
    Chunked {
        body: Vec<u8>,
        cuts: Vec<usize>,
        ext: bool,
        trailers: bool,
    },
}

fn body_spec() -> impl Strategy<Value = BodySpec> {
    prop_oneof![
        2 => Just(BodySpec::None),
        2 => body_bytes(300).prop_map(BodySpec::Length),
        1 => (
            body_bytes(300),
            prop::collection::vec(1usize..64, 0..6),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(body, cuts, ext, trailers)| BodySpec::Chunked {
                body,
                cuts,
                ext,
                trailers
            }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::sample::select(METHODS),
        "/[a-z0-9/._-]{0,30}(\\?[a-z0-9=&]{0,20})?",
        prop::collection::vec((prop::sample::select(HEADER_NAMES), header_value()), 0..6),
        body_spec(),
    )
        .prop_map(|(method, target, headers, body)| {
            let mut head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n").into_bytes();
            for (name, value) in &headers {
                head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            match &body {
                BodySpec::None => {}
                BodySpec::Length(b) => {
                    head.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes())
                }
                BodySpec::Chunked { .. } => {
                    head.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
                }
            }
            head.extend_from_slice(b"\r\n");
            let mut wire = head.clone();
            let (body, chunked, trailers) = match body {
                BodySpec::None => (Vec::new(), false, Vec::new()),
                BodySpec::Length(b) => {
                    wire.extend_from_slice(&b);
                    (b, false, Vec::new())
                }
                BodySpec::Chunked {
                    body,
                    cuts,
                    ext,
                    trailers,
                } => {
                    let mut rest = &body[..];
                    let mut cuts = cuts.into_iter();
                    while !rest.is_empty() {
                        let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                        let (chunk, tail) = rest.split_at(n);
                        let ext = if ext { ";name=value" } else { "" };
                        wire.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
                        wire.extend_from_slice(chunk);
                        wire.extend_from_slice(b"\r\n");
                        rest = tail;
                    }
                    wire.extend_from_slice(b"0\r\n");
                    let t = if trailers {
                        b"X-Checksum: abc\r\nX-Other: 1\r\n".to_vec()
                    } else {
                        Vec::new()
                    };
                    wire.extend_from_slice(&t);
                    wire.extend_from_slice(b"\r\n");
                    (body, true, t)
                }
            };
            Spec {
                wire,
                head,
                body,
                chunked,
                trailers,
            }
        })
}

fn key(n: u16) -> FlowKey {
    FlowKey {
        client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), 40_000 + n)),
        server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 8080)),
    }
}

/// A byte range of the stream (offsets from the first data byte); `push`
/// when it ends a write (a request).
#[derive(Clone, Copy, Debug)]
struct Seg {
    start: usize,
    end: usize,
    push: bool,
}

/// Where each request starts and ends in the stream.
fn bounds(specs: &[Spec]) -> Vec<(usize, usize)> {
    let mut at = 0;
    specs
        .iter()
        .map(|s| {
            at += s.wire.len();
            (at - s.wire.len(), at)
        })
        .collect()
}

/// Cuts the stream of `specs` into segments at the request boundaries and
/// at `cuts`.
fn segments(specs: &[Spec], cuts: &[usize]) -> Vec<Seg> {
    let ends: Vec<usize> = bounds(specs).iter().map(|b| b.1).collect();
    let len = ends.last().copied().unwrap_or(0);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % len.max(1)).collect();
    points.push(0);
    points.extend(&ends);
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Seg {
            start: w[0],
            end: w[1],
            push: ends.contains(&w[1]),
        })
        .collect()
}

/// Reorders segments by at most `window` places: sort by index + jitter.
fn reorder(segs: &mut [Seg], jitter: &[usize], window: usize) {
    let mut keyed: Vec<(usize, usize, Seg)> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                i + jitter.get(i).copied().unwrap_or(0) % (window + 1),
                i,
                *s,
            )
        })
        .collect();
    keyed.sort_by_key(|(k, i, _)| (*k, *i));
    for (slot, (_, _, s)) in segs.iter_mut().zip(keyed) {
        *slot = s;
    }
}

enum Ev {
    Syn,
    Data(Seg),
    Truncated(Seg),
    Fin,
}

fn event<'a>(flow: FlowKey, isn: u32, stream: &'a [u8], ev: &Ev, ts: u64) -> Event<'a> {
    let base = isn.wrapping_add(1);
    let (tcp_flags, kind) = match *ev {
        Ev::Syn => (
            TCP_SYN,
            EventKind::Control {
                seq: isn,
                payload_len: 0,
                flags: TCP_SYN,
            },
        ),
        Ev::Data(s) => (
            TCP_ACK | if s.push { TCP_PSH } else { 0 },
            EventKind::Data {
                seq: base.wrapping_add(s.start as u32),
                payload: &stream[s.start..s.end],
            },
        ),
        Ev::Truncated(s) => (
            TCP_ACK | if s.push { TCP_PSH } else { 0 },
            EventKind::Truncated {
                seq: base.wrapping_add(s.start as u32),
                len: (s.end - s.start) as u32,
            },
        ),
        Ev::Fin => (
            TCP_FIN | TCP_ACK,
            EventKind::Control {
                seq: base.wrapping_add(stream.len() as u32),
                payload_len: 0,
                flags: TCP_FIN | TCP_ACK,
            },
        ),
    };
    Event {
        flow,
        timestamp_ns: ts,
        ifindex: 2,
        direction: Direction::ToServer,
        tcp_flags,
        kind,
    }
}

fn assert_same(got: &Request, want: &Spec) {
    assert_eq!(&got.head[..], &want.head[..], "head");
    assert_eq!(&got.body[..], &want.body[..], "body");
    assert_eq!(got.chunked, want.chunked, "chunked");
    assert_eq!(&got.trailers[..], &want.trailers[..], "trailers");
    let line_end = want.head.iter().position(|b| *b == b' ').unwrap_or(0);
    assert_eq!(got.method(), &want.head[..line_end], "method");
}

/// One connection's test input.
#[derive(Debug, Clone)]
struct Conn {
    specs: Vec<Spec>,
    isn: u32,
    cuts: Vec<usize>,
    jitter: Vec<usize>,
    dups: Vec<usize>,
}

fn conn() -> impl Strategy<Value = Conn> {
    (
        prop::collection::vec(spec(), 1..8),
        // ISNs near the top make sequence numbers wrap inside the stream.
        prop_oneof![any::<u32>(), (u32::MAX - 2000)..=u32::MAX],
        prop::collection::vec(any::<usize>(), 0..40),
        prop::collection::vec(any::<usize>(), 0..60),
        prop::collection::vec(any::<usize>(), 0..6),
    )
        .prop_map(|(specs, isn, cuts, jitter, dups)| Conn {
            specs,
            isn,
            cuts,
            jitter,
            dups,
        })
}

const WINDOW: usize = 4;

fn config() -> FlowConfig {
    FlowConfig {
        // Room for any reordering the generator makes (WINDOW segments
        // of at most the whole stream).
        max_ooo_bytes_per_flow: 1 << 20,
        ..FlowConfig::default()
    }
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=N runs more.
    /// Several connections, interleaved, each cut, reordered and duplicated.
    #[test]
    fn requests_come_out_exactly_as_they_went_in(
        conns in prop::collection::vec(conn(), 1..4),
        interleave in prop::collection::vec(any::<usize>(), 0..200),
        overlap in any::<bool>(),
    ) {
        let mut table = framed_table(config(), Vec::new());
        let streams: Vec<Vec<u8>> = conns
            .iter()
            .map(|c| c.specs.iter().flat_map(|s| s.wire.iter().copied()).collect())
            .collect();
        // Per connection: SYN, reordered + duplicated data, FIN.
        let mut queues: Vec<Vec<Ev>> = Vec::new();
        for (c, stream) in conns.iter().zip(&streams) {
            let mut segs = segments(&c.specs, &c.cuts);
            reorder(&mut segs, &c.jitter, WINDOW);
            let mut evs: Vec<Ev> = segs.iter().map(|s| Ev::Data(*s)).collect();
            for (n, d) in c.dups.iter().enumerate() {
                let Some(&src) = segs.get(d % segs.len()) else { continue };
                // A retransmission, sometimes merged with what follows.
                let seg = if overlap && n % 2 == 0 {
                    Seg { start: src.start, end: (src.end + 13).min(stream.len()), push: false }
                } else {
                    src
                };
                let at = (d / 7) % (evs.len() + 1);
                evs.insert(at, Ev::Data(seg));
            }
            evs.insert(0, Ev::Syn);
            evs.push(Ev::Fin);
            queues.push(evs);
        }
        let mut cursors = vec![0usize; queues.len()];
        let mut ts = SEC;
        let mut pick = interleave.into_iter().cycle();
        while cursors.iter().zip(&queues).any(|(c, q)| *c < q.len()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| cursors[i] < queues[i].len()).collect();
            let i = live[pick.next().unwrap_or(0) % live.len()];
            let ev = event(key(i as u16), conns[i].isn, &streams[i], &queues[i][cursors[i]], ts);
            table.on_event(&ev);
            cursors[i] += 1;
            ts += 1_000;
        }
        table.on_batch_end(ts);

        let stats = table_stats(&table);
        prop_assert_eq!(stats.http.dropped.total(), 0, "{:?}", stats);
        prop_assert_eq!(stats.flow.buffered_bytes, 0);
        prop_assert_eq!(stats.flow.flows_active, 0, "every connection ended by FIN");
        for (i, c) in conns.iter().enumerate() {
            let got: Vec<&Request> = table
                .consumer()
                .sink()
                .iter()
                .filter(|r| r.flow.key == key(i as u16))
                .collect();
            prop_assert_eq!(got.len(), c.specs.len());
            for (g, want) in got.iter().zip(&c.specs) {
                assert_same(g, want);
            }
        }
    }

    /// One segment is lost (never arrives, or reported as truncated) before
    /// the FIN: the request it touches is dropped as `gap`. The framing
    /// survives a gap inside a Content-Length body; elsewhere the next
    /// request that starts a write proves itself, so only when the lost
    /// segment ended a write and nothing says so (it never arrived) is the
    /// request after it lost too. Nothing is invented.
    #[test]
    fn a_gap_loses_only_the_requests_the_stream_cannot_prove(
        c in conn(),
        lost in any::<usize>(),
        as_truncated in any::<bool>(),
    ) {
        let stream: Vec<u8> = c.specs.iter().flat_map(|s| s.wire.iter().copied()).collect();
        let mut segs = segments(&c.specs, &c.cuts);
        let lost = segs[lost % segs.len()];
        reorder(&mut segs, &c.jitter, WINDOW);
        let mut evs: Vec<Ev> = Vec::new();
        evs.push(Ev::Syn);
        for s in &segs {
            if s.start == lost.start {
                if as_truncated {
                    evs.push(Ev::Truncated(*s));
                }
            } else {
                evs.push(Ev::Data(*s));
            }
        }
        // Exact duplicates of segments other than the lost one.
        for d in &c.dups {
            let s = segs[d % segs.len()];
            if s.start != lost.start {
                evs.push(Ev::Data(s));
            }
        }
        evs.push(Ev::Fin);

        let mut table = framed_table(config(), Vec::new());
        let mut ts = SEC;
        for ev in &evs {
            table.on_event(&event(key(0), c.isn, &stream, ev, ts));
            ts += 1_000;
        }
        // Past the hole timeout: the flow stops waiting for the lost bytes.
        table.on_batch_end(ts + 10 * SEC);

        let bounds = bounds(&c.specs);
        let touched = bounds
            .iter()
            .position(|&(start, end)| start <= lost.start && lost.end <= end)
            .expect("segments never span two requests");
        let (start, end) = bounds[touched];
        let spec = &c.specs[touched];
        let in_length_body = !spec.chunked
            && !spec.body.is_empty()
            && lost.start >= start + spec.head.len();
        let next_unproven = lost.end == end && !as_truncated && !in_length_body;
        let expected: Vec<&Spec> = c
            .specs
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != touched && !(next_unproven && i == touched + 1))
            .map(|(_, s)| s)
            .collect();
        let stats = table_stats(&table);
        let got = table.consumer().sink();
        prop_assert_eq!(got.len(), expected.len(), "{:?}", stats);
        for (g, want) in got.iter().zip(&expected) {
            assert_same(g, want);
        }
        prop_assert!(stats.http.dropped.get(SkipReason::Gap) >= 1);
        prop_assert_eq!(
            stats.http.dropped.total(),
            stats.http.dropped.get(SkipReason::Gap),
            "only gaps: {:?}", stats.http.dropped
        );
        prop_assert_eq!(stats.flow.gap_bytes, (lost.end - lost.start) as u64);
        prop_assert_eq!(stats.flow.buffered_bytes, 0);
        prop_assert_eq!(stats.flow.flows_active, 0);
    }

    /// The capture starts in the middle of a connection (an agent
    /// restart): the first segment it sees proves nothing (it may be any
    /// segment of an upload); every request after it comes out, nothing
    /// else, whatever the bodies hold.
    #[test]
    fn a_join_in_the_middle_delivers_what_starts_after_it_and_invents_nothing(
        c in conn(),
        first in any::<usize>(),
    ) {
        let stream: Vec<u8> = c.specs.iter().flat_map(|s| s.wire.iter().copied()).collect();
        let segs = segments(&c.specs, &c.cuts);
        let first = first % segs.len();
        let mut table = framed_table(config(), Vec::new());
        let mut ts = SEC;
        for s in &segs[first..] {
            table.on_event(&event(key(0), c.isn, &stream, &Ev::Data(*s), ts));
            ts += 1_000;
        }
        table.on_event(&event(key(0), c.isn, &stream, &Ev::Fin, ts));
        let joined_at = segs[first].start;
        let expected: Vec<&Spec> = c
            .specs
            .iter()
            .zip(bounds(&c.specs))
            .filter(|(_, (start, _))| *start > joined_at)
            .map(|(s, _)| s)
            .collect();
        let stats = table_stats(&table);
        let got = table.consumer().sink();
        prop_assert_eq!(got.len(), expected.len(), "{:?}", stats);
        for (g, want) in got.iter().zip(&expected) {
            assert_same(g, want);
        }
        // The first segment is always skipped: one request lost, counted.
        prop_assert_eq!(stats.http.dropped.get(SkipReason::MidstreamJoin), 1);
        prop_assert_eq!(stats.http.dropped.total(), 1);
        prop_assert_eq!(stats.flow.buffered_bytes, 0);
    }
}
