//! Scenario tests of the flow table: events in, requests and counters out.

use std::net::{Ipv4Addr, SocketAddr};

use mirror_common::{Ignore, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

use super::*;
use crate::capture::{Direction, Event, EventKind, EventSink, FlowKey};
use crate::http::testing::{FramedTable, TableStats, framed_table, table_stats};
use crate::http::{Request, SkipReason};

const SEC: u64 = 1_000_000_000;

fn key(port: u16) -> FlowKey {
    FlowKey {
        client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), port)),
        server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
    }
}

fn control(key: FlowKey, seq: u32, payload_len: u32, flags: u8, ts: u64) -> Event<'static> {
    Event {
        flow: key,
        timestamp_ns: ts,
        ifindex: 1,
        direction: Direction::ToServer,
        tcp_flags: flags,
        kind: EventKind::Control {
            seq,
            payload_len,
            flags,
        },
    }
}

fn data(key: FlowKey, seq: u32, payload: &[u8], ts: u64) -> Event<'_> {
    Event {
        flow: key,
        timestamp_ns: ts,
        ifindex: 1,
        direction: Direction::ToServer,
        tcp_flags: TCP_ACK | TCP_PSH,
        kind: EventKind::Data { seq, payload },
    }
}

fn truncated(key: FlowKey, seq: u32, len: u32, ts: u64) -> Event<'static> {
    Event {
        flow: key,
        timestamp_ns: ts,
        ifindex: 1,
        direction: Direction::ToServer,
        tcp_flags: TCP_ACK,
        kind: EventKind::Truncated { seq, len },
    }
}

fn syn(key: FlowKey, isn: u32, ts: u64) -> Event<'static> {
    control(key, isn, 0, TCP_SYN, ts)
}

fn fin(key: FlowKey, seq: u32, ts: u64) -> Event<'static> {
    control(key, seq, 0, TCP_FIN | TCP_ACK, ts)
}

/// The flow table with the real framing as its consumer: what reassembly
/// delivers is checked as the requests it makes.
type Table = FramedTable;

fn table() -> Table {
    with_config(FlowConfig::default())
}

fn with_config(config: FlowConfig) -> Table {
    framed_table(config, Vec::new())
}

/// A table with one connection seen from its SYN (ISN `isn`, at `ts`),
/// from client port `port`.
fn opened(port: u16, isn: u32, ts: u64) -> (Table, FlowKey) {
    let mut t = table();
    let k = key(port);
    t.on_event(&syn(k, isn, ts));
    (t, k)
}

fn requests(table: &Table) -> &[Request] {
    table.consumer().sink()
}

fn stats(table: &Table) -> TableStats {
    table_stats(table)
}

fn targets(table: &Table) -> Vec<String> {
    requests(table)
        .iter()
        .map(|r| String::from_utf8_lossy(r.target()).into_owned())
        .collect()
}

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const POST_B: &[u8] = b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
const GET_C: &[u8] = b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n";

fn stream() -> Vec<u8> {
    [GET_A, POST_B, GET_C].concat()
}

#[test]
fn a_connection_from_syn_to_fin() {
    let (mut t, k) = opened(1000, 100, 1);
    let s = stream();
    t.on_event(&data(k, 101, &s, 2));
    t.on_event(&fin(k, 101 + s.len() as u32, 3));
    assert_eq!(targets(&t), ["/a", "/b", "/c"]);
    assert_eq!(&requests(&t)[1].body[..], b"hello world");
    let st = stats(&t);
    assert_eq!(st.flow.ended(FlowEndReason::Fin), 1);
    assert_eq!(st.flow.flows_active, 0);
    assert_eq!(st.flow.buffered_bytes, 0);
    assert_eq!(st.http.requests, 3);
    assert_eq!(st.http.dropped.total(), 0);
    assert_eq!(requests(&t)[0].flow, t.flow_id(&k).expect("tombstone"));
}

#[test]
fn fin_with_data_waits_for_the_data_that_follows_its_control_record() {
    let (mut t, k) = opened(1001, 5, 1);
    // The kernel emits the FIN segment's control record before its data.
    t.on_event(&control(k, 6, GET_A.len() as u32, TCP_FIN | TCP_ACK, 2));
    assert_eq!(stats(&t).flow.flows_active, 1);
    t.on_event(&data(k, 6, GET_A, 2));
    assert_eq!(targets(&t), ["/a"]);
    assert_eq!(stats(&t).flow.ended(FlowEndReason::Fin), 1);
}

#[test]
fn sequence_numbers_wrap_around() {
    let isn = u32::MAX - 20;
    let (mut t, k) = opened(1002, isn, 1);
    let s = stream();
    let mut seq = isn.wrapping_add(1);
    for chunk in s.chunks(9) {
        t.on_event(&data(k, seq, chunk, 2));
        seq = seq.wrapping_add(chunk.len() as u32);
    }
    t.on_event(&fin(k, seq, 3));
    assert_eq!(targets(&t), ["/a", "/b", "/c"]);
    assert_eq!(stats(&t).flow.ended(FlowEndReason::Fin), 1);
}

#[test]
fn reordered_and_duplicated_segments_are_reassembled() {
    let isn = u32::MAX - 30;
    let (mut t, k) = opened(1003, isn, 1);
    let s = stream();
    let base = isn.wrapping_add(1);
    let chunks: Vec<(u32, &[u8])> = s
        .chunks(7)
        .enumerate()
        .map(|(i, c)| (base.wrapping_add((i * 7) as u32), c))
        .collect();
    // Reverse order, every segment twice, plus an overlapping resend.
    for &(seq, c) in chunks.iter().rev() {
        t.on_event(&data(k, seq, c, 2));
        t.on_event(&data(k, seq, c, 2));
    }
    t.on_event(&data(k, base, &s[..20], 2));
    t.on_event(&fin(k, base.wrapping_add(s.len() as u32), 3));
    assert_eq!(targets(&t), ["/a", "/b", "/c"]);
    let st = stats(&t);
    assert!(st.flow.out_of_order_segments > 0);
    assert!(st.flow.duplicate_bytes >= s.len() as u64);
    assert_eq!(st.flow.buffered_bytes, 0);
    assert_eq!(st.http.dropped.total(), 0);
}

#[test]
fn a_new_syn_on_the_same_tuple_starts_a_new_generation() {
    let (mut t, k) = opened(1004, 1000, 1);
    t.on_event(&data(k, 1001, GET_A, 2));
    // Retransmitted SYN: same flow.
    t.on_event(&syn(k, 1000, 2));
    t.on_event(&data(k, 1001 + GET_A.len() as u32, &POST_B[..10], 3));
    let first = t.flow_id(&k).expect("flow");
    // The client reuses the port without a FIN we saw.
    t.on_event(&syn(k, 777_777, 4));
    t.on_event(&data(k, 777_778, GET_C, 5));
    let second = t.flow_id(&k).expect("flow");
    assert_ne!(first.generation, second.generation);
    assert_eq!(targets(&t), ["/a", "/c"]);
    assert_eq!(requests(&t)[0].flow, first);
    assert_eq!(requests(&t)[1].flow, second);
    let st = stats(&t);
    assert_eq!(st.flow.ended(FlowEndReason::Superseded), 1);
    assert_eq!(st.http.dropped.get(SkipReason::Superseded), 1);
    // Reuse after a clean FIN replaces the tombstone.
    t.on_event(&fin(k, 777_778 + GET_C.len() as u32, 6));
    t.on_event(&syn(k, 5, 7));
    t.on_event(&data(k, 6, GET_A, 8));
    assert_eq!(targets(&t), ["/a", "/c", "/a"]);
    assert_ne!(t.flow_id(&k).expect("flow").generation, second.generation);
}

#[test]
fn joining_midstream_waits_for_a_request_that_is_a_write_of_its_own() {
    let mut t = table();
    let k = key(1005);
    let s = stream();
    // The agent starts in the middle of /a's head; /b and /c follow in the
    // same write, so nothing proves where they start.
    t.on_event(&data(k, 50_000, &s[5..], 1));
    assert_eq!(targets(&t), Vec::<String>::new());
    // The client's next write is one request: it proves itself.
    t.on_event(&data(k, 50_000 + s.len() as u32 - 5, GET_A, 2));
    assert_eq!(targets(&t), ["/a"]);
    let st = stats(&t);
    assert_eq!(st.flow.midstream_joins, 1);
    assert_eq!(st.http.dropped.get(SkipReason::MidstreamJoin), 1);
    assert_eq!(st.http.resyncs, 1);
}

#[test]
fn a_truncated_record_drops_only_the_request_it_hits() {
    let (mut t, k) = opened(1006, 0, 1);
    let s = stream();
    let body_at = GET_A.len() + POST_B.len() - 11;
    t.on_event(&data(k, 1, &s[..body_at + 2], 2));
    t.on_event(&truncated(k, 1 + body_at as u32 + 2, 4, 2));
    t.on_event(&data(k, 1 + body_at as u32 + 6, &s[body_at + 6..], 2));
    assert_eq!(targets(&t), ["/a", "/c"]);
    let st = stats(&t);
    assert_eq!(st.http.dropped.get(SkipReason::Gap), 1);
    assert_eq!(st.flow.gaps, 1);
}

#[test]
fn a_lost_segment_before_fin_becomes_a_gap_after_the_hole_timeout() {
    let (mut t, k) = opened(1007, 0, SEC);
    let s = stream();
    let (a, rest) = s.split_at(GET_A.len() + 5);
    let (_lost, c) = rest.split_at(POST_B.len() - 5);
    t.on_event(&data(k, 1, a, SEC));
    // The segment with the rest of /b never arrives.
    let c_seq = 1 + (GET_A.len() + POST_B.len()) as u32;
    t.on_event(&data(k, c_seq, c, SEC));
    t.on_event(&fin(k, c_seq + c.len() as u32, SEC));
    assert_eq!(targets(&t), ["/a"]);
    assert!(stats(&t).flow.buffered_bytes > 0);
    t.on_batch_end(2 * SEC);
    assert_eq!(targets(&t), ["/a"], "still inside the hole timeout");
    t.on_batch_end(SEC + FlowConfig::default().hole_timeout_ns);
    // The lost segment may have ended a write or not: /c, after it, does
    // not prove where it starts.
    assert_eq!(targets(&t), ["/a"]);
    let st = stats(&t);
    assert_eq!(st.http.dropped.get(SkipReason::Gap), 1);
    assert_eq!(st.flow.gap_bytes, (POST_B.len() - 5) as u64);
    assert_eq!(st.http.desyncs, 1);
    assert_eq!(st.flow.ended(FlowEndReason::Fin), 1);
    assert_eq!(st.flow.buffered_bytes, 0);
}

#[test]
fn a_lost_last_segment_is_a_gap_when_the_fin_times_out() {
    let (mut t, k) = opened(1008, 0, SEC);
    t.on_event(&data(k, 1, &POST_B[..20], SEC));
    t.on_event(&fin(k, 1 + POST_B.len() as u32, SEC));
    t.on_batch_end(10 * SEC);
    let st = stats(&t);
    assert_eq!(st.http.dropped.get(SkipReason::Gap), 1);
    assert_eq!(st.flow.ended(FlowEndReason::Fin), 1);
    assert!(requests(&t).is_empty());
}

#[test]
fn exceeding_the_out_of_order_cap_gives_up_the_hole() {
    let config = FlowConfig {
        max_ooo_bytes_per_flow: 200,
        ..FlowConfig::default()
    };
    let mut t = with_config(config);
    let k = key(1009);
    t.on_event(&syn(k, 0, 1));
    // Each request is a write (a segment with PSH); the first 10 bytes of
    // the first one are lost.
    let mut seq = 1;
    for i in 0..20 {
        let request = format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n");
        let skip = if i == 0 { 10 } else { 0 };
        t.on_event(&data(k, seq + skip as u32, &request.as_bytes()[skip..], 2));
        seq += request.len() as u32;
        assert!(stats(&t).flow.buffered_bytes <= 200);
    }
    let got = targets(&t);
    assert_eq!(got.len(), 19, "{got:?}");
    assert_eq!(got[0], "/1");
    let st = stats(&t);
    assert_eq!(st.http.dropped.get(SkipReason::Gap), 1);
    assert_eq!(st.flow.holes_abandoned, 1);
}

#[test]
fn idle_flows_expire_and_count_their_request_in_progress() {
    let (mut t, k) = opened(1010, 0, SEC);
    t.on_event(&data(k, 1, b"GET /slow HTTP/1.1\r\nHost: h\r\nHo", SEC));
    t.on_batch_end(30 * SEC);
    assert_eq!(stats(&t).flow.flows_active, 1);
    t.on_batch_end(61 * SEC);
    let st = stats(&t);
    assert_eq!(st.flow.flows_active, 0);
    assert_eq!(st.flow.flows_tracked, 0);
    assert_eq!(st.flow.ended(FlowEndReason::Idle), 1);
    assert_eq!(st.http.dropped.get(SkipReason::IdleExpired), 1);
    assert_eq!(st.flow.buffered_bytes, 0);
}

#[test]
fn rst_ends_the_flow_at_once() {
    let (mut t, k) = opened(1011, 0, 1);
    t.on_event(&data(
        k,
        1,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nab",
        2,
    ));
    t.on_event(&control(k, 50, 0, TCP_RST, 3));
    let st = stats(&t);
    assert_eq!(st.flow.ended(FlowEndReason::Rst), 1);
    assert_eq!(st.http.dropped.get(SkipReason::Reset), 1);
    assert_eq!(st.flow.buffered_bytes, 0);
}

#[test]
fn a_retransmission_after_fin_is_not_delivered_twice() {
    let (mut t, k) = opened(1012, 0, 1);
    t.on_event(&control(k, 1, GET_A.len() as u32, TCP_FIN | TCP_ACK, 2));
    t.on_event(&data(k, 1, GET_A, 2));
    // The same FIN segment again (its ACK was lost).
    t.on_event(&control(k, 1, GET_A.len() as u32, TCP_FIN | TCP_ACK, 3));
    t.on_event(&data(k, 1, GET_A, 3));
    assert_eq!(targets(&t), ["/a"]);
    assert_eq!(stats(&t).flow.midstream_joins, 0);
}

#[test]
fn an_upgraded_connection_is_ignored_until_it_ends() {
    let mut t = table();
    let k = key(1013);
    let up = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    t.on_event(&syn(k, 0, 1));
    t.on_event(&data(k, 1, up, 2));
    let frames = [0x81u8, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    // Even out of order, frames are not held.
    t.on_event(&data(k, 1 + up.len() as u32 + 100, &frames, 3));
    t.on_event(&data(k, 1 + up.len() as u32, &frames, 3));
    assert_eq!(stats(&t).flow.buffered_bytes, 0);
    t.on_event(&fin(k, 5000, 4));
    let st = stats(&t);
    assert_eq!(targets(&t), ["/ws"]);
    assert_eq!(st.http.dropped.get(SkipReason::Upgraded), 1);
    assert_eq!(st.flow.ended(FlowEndReason::Fin), 1);
}

#[test]
fn a_hundred_thousand_half_open_connections_stay_within_the_caps() {
    let mut t = with_config(FlowConfig {
        max_flows: 10_000,
        max_buffered_bytes: 100_000,
        ..FlowConfig::default()
    });
    for i in 0..100_000u32 {
        let k = FlowKey {
            client: SocketAddr::from((Ipv4Addr::from(0x0ac8_0000 + i), 40000)),
            server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
        };
        let ts = u64::from(i) * 1000;
        t.on_event(&syn(k, i, ts));
        // A partial head and a segment after a hole on every connection.
        t.on_event(&data(k, i + 1, b"GET / HTTP/1.1\r\nHost: a", ts));
        t.on_event(&data(k, i + 100, b"0123456789", ts));
        let st = stats(&t);
        assert!(st.flow.flows_tracked <= 10_000);
        assert!(st.flow.buffered_bytes <= 100_000);
    }
    let st = stats(&t);
    assert_eq!(st.flow.flows_started, 100_000);
    assert_eq!(
        st.flow.ended(FlowEndReason::Evicted) + st.flow.ended(FlowEndReason::Idle),
        90_000
    );
    // Each evicted connection lost its partial request: to the hole before
    // its held segment (flushed on eviction), the budget, or the eviction.
    let lost = st.http.dropped.get(SkipReason::FlowCap)
        + st.http.dropped.get(SkipReason::Gap)
        + st.http.dropped.get(SkipReason::BufferCap);
    assert!(lost >= 90_000, "{:?}", st.http.dropped);
    assert!(st.http.dropped.get(SkipReason::BufferCap) > 0);
    t.end_all();
    let st = stats(&t);
    assert_eq!(st.flow.flows_tracked, 0);
    assert_eq!(st.flow.flows_active, 0);
    assert_eq!(st.flow.buffered_bytes, 0);
}

#[test]
fn the_shared_budget_bounds_held_segments() {
    let config = FlowConfig {
        max_buffered_bytes: 1000,
        ..FlowConfig::default()
    };
    let mut t = with_config(config);
    let payload = [b'x'; 100];
    for i in 0..50u16 {
        let k = key(2000 + i);
        t.on_event(&syn(k, 0, 1));
        t.on_event(&data(k, 1000, &payload, 1));
        assert!(stats(&t).flow.buffered_bytes <= 1000);
    }
    assert!(stats(&t).flow.holes_abandoned > 0);
}

#[test]
fn events_for_unknown_flows_do_not_create_state() {
    let mut t = table();
    let k = key(1014);
    t.on_event(&fin(k, 10, 1));
    t.on_event(&control(k, 10, 0, TCP_RST, 1));
    t.on_event(&truncated(k, 10, 100, 1));
    assert_eq!(stats(&t).flow.flows_tracked, 0);
}

/// One thing the table told the kernel program: an ignore entry, or
/// `None` for "forget".
type Told = (FlowKey, Option<Ignore>);

/// What the table told the kernel program, in order.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Told>>>);

impl crate::capture::PayloadFilter for Recorder {
    fn ignore(&mut self, flow: &FlowKey, what: Ignore) {
        self.0.lock().unwrap().push((*flow, Some(what)));
    }
    fn forget(&mut self, flow: &FlowKey) {
        self.0.lock().unwrap().push((*flow, None));
    }
}

#[test]
fn the_rest_of_a_body_over_the_limit_is_left_out_and_the_kernel_told() {
    let recorder = Recorder::default();
    let http = crate::http::HttpConfig {
        max_body_bytes: 64 << 20,
        ..Default::default()
    };
    let framing = crate::http::Framing::new(http, Vec::new());
    let mut t =
        FlowTable::new(FlowConfig::default(), framing).with_filter(Box::new(recorder.clone()));
    let k = key(1011);
    t.on_event(&syn(k, 99, SEC));
    let body: u64 = 100 << 20;
    let head = format!("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: {body}\r\n\r\n");
    t.on_event(&data(k, 100, &head.as_bytes()[..10], SEC));
    t.on_event(&data(k, 110, &head.as_bytes()[10..], SEC));
    let after_body = 100 + (head.len() as u64 + body) as u32;
    assert_eq!(
        recorder.0.lock().unwrap().clone(),
        [(k, Some(Ignore::bytes(100 + head.len() as u32, body)))],
        "told once: the body after its head"
    );
    // Body bytes already in the ring come as duplicates; the next request
    // is framed at once, with no hole to wait for.
    t.on_event(&data(k, 110 + head.len() as u32, b"body bytes", SEC));
    t.on_event(&data(k, after_body, GET_C, SEC));
    assert_eq!(targets(&t), ["/c"]);
    let st = stats(&t);
    assert_eq!(st.flow.left_out_bytes, body);
    assert_eq!(st.http.dropped.get(SkipReason::BodyTooLarge), 1);
    assert_eq!(st.flow.holes_abandoned, 0);
    t.on_event(&fin(k, after_body + GET_C.len() as u32, SEC));
    assert_eq!(
        recorder.0.lock().unwrap().last(),
        Some(&(k, None)),
        "forgotten at the end"
    );
}

#[test]
fn a_connection_the_framer_gave_up_is_left_out_entirely() {
    let recorder = Recorder::default();
    let mut t = table().with_filter(Box::new(recorder.clone()));
    let k = key(1012);
    t.on_event(&syn(k, 0, SEC));
    t.on_event(&data(
        k,
        1,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        SEC,
    ));
    t.on_event(&data(k, 12, b"more tls", SEC));
    assert_eq!(
        recorder.0.lock().unwrap().clone(),
        [(k, Some(Ignore::FOREVER))]
    );
    assert_eq!(stats(&t).http.dropped.get(SkipReason::UnsupportedTls), 1);
}
