//! The flow table on arbitrary event sequences over a few connections.
//!
//! Input: a list of 4-byte op headers, each followed by payload bytes taken
//! from the input: kind (SYN/data/FIN/RST/truncated/batch end), connection,
//! sequence delta, length. Sequence numbers start near 2^32 so they wrap.
//! Checks: no panic, caps hold after every event (flows, shared budget),
//! and ending everything leaves no flow and no buffered byte.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mirror_agent::capture::{Direction, Event, EventKind, EventSink, FlowKey};
use mirror_agent::flow::{FlowConfig, FlowTable};
use mirror_agent::http::testing::table_stats;
use mirror_agent::http::{Framing, HttpConfig, Request};
use mirror_common::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

const FLOWS: usize = 4;

fuzz_target!(|input: &[u8]| {
    let config = FlowConfig {
        max_flows: 3,
        max_ooo_bytes_per_flow: 600,
        max_buffered_bytes: 1500,
        idle_timeout_ns: 50_000,
        hole_timeout_ns: 5_000,
    };
    let http = HttpConfig {
        max_head_bytes: 256,
        max_headers: 8,
        max_body_bytes: 512,
        stream: None,
    };
    let mut table = FlowTable::new(config.clone(), Framing::new(http, Vec::<Request>::new()));
    // Per connection: the next sequence number a well-behaved sender uses.
    let mut next = [u32::MAX - 100; FLOWS];
    let mut ts = 0u64;
    let mut rest = input;
    while let [op, conn, delta, len, tail @ ..] = rest {
        let i = usize::from(*conn) % FLOWS;
        let flow = FlowKey {
            client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), 1000 + i as u16)),
            server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
        };
        // Mostly in order, sometimes behind (retransmit) or ahead (hole).
        let seq = next[i].wrapping_add(i32::from(*delta as i8) as u32);
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        ts += u64::from(conn >> 2) * 100;
        let (flags, kind) = match op % 8 {
            0 => {
                next[i] = seq.wrapping_add(1);
                (
                    TCP_SYN,
                    EventKind::Control {
                        seq,
                        payload_len: 0,
                        flags: TCP_SYN,
                    },
                )
            }
            1 => (
                TCP_FIN | TCP_ACK,
                EventKind::Control {
                    seq,
                    payload_len: len as u32,
                    flags: TCP_FIN | TCP_ACK,
                },
            ),
            2 => (
                TCP_RST,
                EventKind::Control {
                    seq,
                    payload_len: 0,
                    flags: TCP_RST,
                },
            ),
            3 => (
                TCP_ACK,
                EventKind::Truncated {
                    seq,
                    len: len as u32 * 3,
                },
            ),
            4 => {
                table.on_batch_end(ts);
                continue;
            }
            _ => {
                next[i] = next[i].max(seq.wrapping_add(len as u32));
                (TCP_ACK | TCP_PSH, EventKind::Data { seq, payload })
            }
        };
        table.on_event(&Event {
            flow,
            timestamp_ns: ts,
            ifindex: 1,
            direction: Direction::ToServer,
            tcp_flags: flags,
            kind,
        });
        let stats = table_stats(&table);
        assert!(stats.flow.flows_tracked <= config.max_flows as u64);
        assert!(stats.flow.flows_active <= stats.flow.flows_tracked);
        assert!(stats.flow.buffered_bytes <= config.max_buffered_bytes as u64);
        assert_eq!(stats.flow.buffered_bytes, table.recount_buffered() as u64);
    }
    table.end_all();
    let stats = table_stats(&table);
    assert_eq!(stats.flow.flows_tracked, 0);
    assert_eq!(stats.flow.flows_active, 0);
    assert_eq!(stats.flow.buffered_bytes, 0);
    assert_eq!(stats.http.requests, table.consumer().sink().len() as u64);
});
