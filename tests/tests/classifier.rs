//! The classifier on crafted packets (`BPF_PROG_TEST_RUN`): whatever it is
//! given, it lets the packet pass and counts why it did or did not copy it.
//!
//! Run as root: `cargo test -p mirror-tests`.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use mirror_agent::capture::{AttachMode, Capture, CaptureOptions, Event, EventKind, EventSink};
use mirror_common::{Counter, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use mirror_testkit::{Netns, packet};
use mirror_tests::{
    capture::counter_delta,
    require_kernel,
    topology::{CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6},
};

const PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;

// ---------------------------------------------------------------------------
// crafted packets through BPF_PROG_TEST_RUN
// ---------------------------------------------------------------------------

/// One crafted frame and what the program must make of it.
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// The one per-packet outcome counter it must bump.
    outcome: Counter,
    /// Records it must produce, in order.
    records: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Record {
    Data {
        seq: u32,
        payload: Vec<u8>,
    },
    Control {
        seq: u32,
        payload_len: u32,
        flags: u8,
    },
}

#[derive(Default)]
struct Records(Vec<Record>);

impl EventSink for Records {
    fn on_event(&mut self, event: &Event<'_>) {
        self.0.push(match event.kind {
            EventKind::Data { seq, payload } => Record::Data {
                seq,
                payload: payload.to_vec(),
            },
            EventKind::Control {
                seq,
                payload_len,
                flags,
            } => Record::Control {
                seq,
                payload_len,
                flags,
            },
            EventKind::Truncated { seq, len } => panic!("unexpected truncation {seq}+{len}"),
        });
    }
}

/// An IPv4 frame from the client to the server carrying `l4`.
fn v4(protocol: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    packet::ethernet(
        packet::ETH_P_IP,
        &packet::ipv4(CLIENT_V4, SERVER_V4, protocol, options, l4),
    )
}

/// An IPv6 frame from the client to the server carrying `l4`.
fn v6(next_header: u8, l4: &[u8]) -> Vec<u8> {
    packet::ethernet(
        packet::ETH_P_IPV6,
        &packet::ipv6(CLIENT_V6, SERVER_V6, next_header, l4),
    )
}

fn v4_tcp(dst_port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    v4(
        packet::IPPROTO_TCP,
        &[],
        &packet::tcp(40000, dst_port, seq, flags, payload),
    )
}

fn cases() -> Vec<Case> {
    use packet::*;
    let hello = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let data = |seq: u32, payload: &[u8]| Record::Data {
        seq,
        payload: payload.to_vec(),
    };
    let full_v4 = v4_tcp(PORT, 1000, TCP_ACK | TCP_PSH, &hello);
    vec![
        Case {
            name: "IPv4 TCP to the service port with payload",
            frame: full_v4.clone(),
            outcome: Counter::Matched,
            records: vec![data(1000, &hello)],
        },
        Case {
            name: "IPv4 with options (IHL 7)",
            frame: v4(
                IPPROTO_TCP,
                &[1, 1, 1, 1, 1, 1, 1, 0], // NOPs, end of options
                &tcp(40000, PORT, 2000, TCP_ACK, &hello),
            ),
            outcome: Counter::Matched,
            records: vec![data(2000, &hello)],
        },
        Case {
            name: "TCP with options (data offset 8)",
            frame: v4(
                IPPROTO_TCP,
                &[],
                &tcp_with_offset(40000, PORT, 2500, TCP_ACK, 8, &hello),
            ),
            outcome: Counter::Matched,
            records: vec![data(2500, &hello)],
        },
        Case {
            name: "IPv6 TCP to the service port with payload",
            frame: v6(
                IPPROTO_TCP,
                &tcp(40000, PORT, 3000, TCP_ACK | TCP_PSH, &hello),
            ),
            outcome: Counter::Matched,
            records: vec![data(3000, &hello)],
        },
        Case {
            name: "SYN with data (TCP Fast Open): control, then data at seq + 1",
            frame: v4_tcp(PORT, 4000, TCP_SYN, &hello),
            outcome: Counter::Matched,
            records: vec![
                Record::Control {
                    seq: 4000,
                    payload_len: hello.len() as u32,
                    flags: TCP_SYN,
                },
                data(4001, &hello),
            ],
        },
        Case {
            name: "FIN without payload: one control record",
            frame: v4_tcp(PORT, 5000, TCP_FIN | TCP_ACK, &[]),
            outcome: Counter::Matched,
            records: vec![Record::Control {
                seq: 5000,
                payload_len: 0,
                flags: TCP_FIN | TCP_ACK,
            }],
        },
        Case {
            name: "zero-length payload (pure ACK)",
            frame: v4_tcp(PORT, 6000, TCP_ACK, &[]),
            outcome: Counter::Matched,
            records: vec![],
        },
        Case {
            name: "TCP to an unmatched port",
            frame: v4_tcp(OTHER_PORT, 7000, TCP_ACK, &hello),
            outcome: Counter::PortNotMatched,
            records: vec![],
        },
        Case {
            name: "IPv4 UDP",
            frame: v4(IPPROTO_UDP, &[], &udp(40000, PORT, &hello)),
            outcome: Counter::NotTcp,
            records: vec![],
        },
        Case {
            name: "IPv6 with a hop-by-hop extension header before TCP",
            frame: v6(
                IPPROTO_HOPOPTS,
                &hop_by_hop(IPPROTO_TCP, &tcp(40000, PORT, 8000, TCP_ACK, &hello)),
            ),
            outcome: Counter::NotTcp,
            records: vec![],
        },
        Case {
            name: "IPv4 fragment (more fragments set)",
            frame: {
                let mut frame = full_v4.clone();
                frame[14 + 6] = 0x20; // MF, offset 0
                frame
            },
            outcome: Counter::NotTcp,
            records: vec![],
        },
        Case {
            name: "ARP",
            frame: arp_request(CLIENT_V4, SERVER_V4),
            outcome: Counter::NotIp,
            records: vec![],
        },
        Case {
            name: "VLAN-tagged frame",
            frame: ethernet(ETH_P_8021Q, &[0, 1, 0x08, 0x00, 0x45, 0, 0, 20]),
            outcome: Counter::NotIp,
            records: vec![],
        },
        // BPF_PROG_TEST_RUN refuses (EINVAL) an IPv4/IPv6 frame shorter
        // than the fixed IP header, so truncation starts after it.
        Case {
            name: "IPv4 header only, TCP header missing",
            frame: v4(IPPROTO_TCP, &[], &[]),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "IPv4 IHL beyond the packet",
            frame: {
                let mut frame = v4(IPPROTO_TCP, &[], &[]);
                frame[14] = 0x4f; // 60 bytes of IP header claimed, 20 there
                frame
            },
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "TCP header cut short",
            frame: full_v4[..14 + 20 + 10].to_vec(),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "IPv4 IHL below 5",
            frame: {
                let mut frame = full_v4.clone();
                frame[14] = 0x44;
                frame
            },
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "TCP data offset below 5",
            frame: v4(
                IPPROTO_TCP,
                &[],
                &tcp_with_offset(40000, PORT, 9000, TCP_ACK, 4, &hello),
            ),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "TCP data offset beyond the packet",
            frame: v4(IPPROTO_TCP, &[], &{
                let mut segment = tcp(40000, PORT, 9500, TCP_ACK, &[]);
                segment[12] = 15 << 4; // 60 bytes of header, 20 there
                segment
            }),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "IPv6 header only, TCP header missing",
            frame: v6(IPPROTO_TCP, &[]),
            outcome: Counter::Malformed,
            records: vec![],
        },
    ]
}

#[test]
fn crafted_packets_always_pass_and_are_counted_by_reason() -> Result<()> {
    require_kernel!();
    // A namespace of its own, nothing but lo: no other traffic reaches the
    // program while the crafted frames run through it.
    let netns = Netns::new("tr")?;
    let failures: Vec<String> = netns.run(|| -> Result<Vec<String>> {
        let mut options = CaptureOptions::new("lo", vec![PORT]);
        options.attach = AttachMode::Tcx;
        let mut capture = Capture::start(&options)?;
        let mut failures = Vec::new();
        for case in cases() {
            let before = capture.kernel_counters()?;
            let verdict = match packet::prog_test_run(capture.classifier_fd(), &case.frame, 1) {
                Ok(run) => run.retval,
                Err(err) => {
                    failures.push(format!("{}: BPF_PROG_TEST_RUN failed: {err}", case.name));
                    continue;
                }
            };
            let after = capture.kernel_counters()?;
            let mut records = Records::default();
            capture.drain(&mut records);

            let delta = counter_delta(&before, &after);
            let record_count = case.records.len() as u64;
            let payload: u64 = case
                .records
                .iter()
                .map(|r| match r {
                    Record::Data { payload, .. } => payload.len() as u64,
                    Record::Control { .. } => 0,
                })
                .sum();
            let mut expected: BTreeMap<&str, u64> =
                [(Counter::Seen.as_str(), 1), (case.outcome.as_str(), 1)].into();
            for (counter, n) in [
                (Counter::RecordsMatched, record_count),
                (Counter::RecordsEmitted, record_count),
                (Counter::PayloadBytes, payload),
            ] {
                if n > 0 {
                    expected.insert(counter.as_str(), n);
                }
            }
            if verdict != packet::TC_ACT_UNSPEC {
                failures.push(format!(
                    "{}: verdict {verdict}, not TC_ACT_UNSPEC (continue, TCX_NEXT)",
                    case.name
                ));
            }
            if delta != expected {
                failures.push(format!(
                    "{}: counters {delta:?}, expected {expected:?}",
                    case.name
                ));
            }
            if records.0 != case.records {
                failures.push(format!(
                    "{}: records {:?}, expected {:?}",
                    case.name, records.0, case.records
                ));
            }
        }
        Ok(failures)
    })?;
    ensure!(failures.is_empty(), "\n{}", failures.join("\n"));
    Ok(())
}
