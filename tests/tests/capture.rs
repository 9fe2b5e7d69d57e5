//! The capture stage on the real kernel: what the TC program copies, what it
//! counts, and how the agent binary attaches and leaves.
//!
//! Each test builds its own namespaces and runs in parallel with the others.
//! Run as root: `cargo build -p mirror-agent && cargo test -p mirror-tests`.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    net::SocketAddr,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use aya::programs::{SchedClassifier, TcAttachType};
use mirror_agent::capture::{AttachMode, Capture, CaptureOptions, Event, EventKind, EventSink};
use mirror_common::{Counter, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use mirror_tests::{
    Agent, CaptureRunner, Captured, Drain, Family, Netns, Topology,
    capture::{counter_delta, predicted_sampled},
    first_difference, packet, random_bytes, require_kernel,
    tcp::{self, TcpSink},
    topology::{CLIENT_V4, CLIENT_V6, SERVER_IF, SERVER_V4, SERVER_V6},
    wait_until,
};

const PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// a, c: one connection, 1 MiB, byte for byte
// ---------------------------------------------------------------------------

/// What one 1 MiB transfer looked like from both ends.
struct Transfer {
    captured: Captured,
    /// Segments the client sent (SYN, data, ACKs, FIN).
    client_segments: u32,
}

/// How the client's segments reach the program.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Packets {
    /// One packet per segment: the program sees exactly the client's count.
    OnePerSegment,
    /// Merged by GRO, or sent merged (TSO).
    Merged,
}

/// Sends 1 MiB of random bytes over one connection through a capture on
/// the server's veth, and checks that the server got them and that the
/// captured chunks of the flow, in sequence order, are exactly those bytes.
fn send_one_mebibyte(topology: &Topology, family: Family, packets: Packets) -> Result<Transfer> {
    let capture =
        CaptureRunner::start(&topology.server, CaptureOptions::new(SERVER_IF, vec![PORT]))?;
    let server = TcpSink::start(&topology.server, topology.server_addr(family, PORT), 1)?;
    let sent = random_bytes(MIB, 0xa);

    let mut stream = tcp::connect(&topology.client, server.addr())?;
    let client = tcp::finish(&mut stream, &sent)?;
    let received = server.join()?;
    ensure!(
        received[&client] == sent,
        "the server did not get the bytes sent"
    );
    // The client's last ACK may still be on its way through the veth.
    let client_segments = tcp::segments_sent(&stream)?;
    if packets == Packets::OnePerSegment {
        wait_until(Duration::from_secs(2), || {
            capture
                .counters()
                .is_ok_and(|c| c.get(Counter::Matched) >= client_segments as u64)
        });
    }
    let captured = capture.stop()?;

    captured.check_accounting()?;
    ensure!(
        captured.flows.len() == 1,
        "flows seen: {:?}",
        captured.flows.keys()
    );
    let flow = captured
        .flow_from(client)
        .context("the connection was not captured")?;
    ensure!(
        flow.truncations.is_empty(),
        "truncated: {:?}",
        flow.truncations
    );
    let stream = flow.stream()?;
    ensure!(
        stream.bytes == sent,
        "captured stream differs from the bytes sent at offset {:?} ({} captured, {} sent)",
        first_difference(&stream.bytes, &sent),
        stream.bytes.len(),
        sent.len()
    );
    ensure!(flow.fin().is_some(), "no FIN captured");
    let c = &captured.counters;
    ensure!(c.get(Counter::PayloadBytes) == (MIB as u64 + stream.retransmitted));
    ensure!(c.get(Counter::RecordsLost) == 0, "records lost: {c}");
    Ok(Transfer {
        captured,
        client_segments,
    })
}

/// Payload bytes per full segment at MTU 1500 (TCP timestamps on).
fn mss(family: Family) -> usize {
    match family {
        Family::V4 => 1500 - 20 - 20 - 12,
        Family::V6 => 1500 - 40 - 20 - 12,
    }
}

/// The client sends one MSS per packet (no TSO/GSO) and the server's veth
/// does no GRO: the program runs once per segment the client sent.
fn one_mebibyte_segment_by_segment(family: Family) -> Result<()> {
    let topology = Topology::builder().tso(false).gro(false).build()?;
    ensure!(!topology.server_gro()?, "GRO still on");
    let transfer = send_one_mebibyte(&topology, family, Packets::OnePerSegment)?;
    let matched = transfer.captured.counters.get(Counter::Matched);
    eprintln!(
        "{family:?} GRO off: {matched} matched packets for {} client segments, {} MSS-sized",
        transfer.client_segments,
        MIB.div_ceil(mss(family))
    );
    ensure!(
        matched == transfer.client_segments as u64,
        "matched {matched} packets, the client sent {} segments",
        transfer.client_segments
    );
    Ok(())
}

/// Same segments, but GRO (NAPI) on the server's veth merges them before
/// TC ingress: fewer, larger packets, each copied in several chunks.
fn one_mebibyte_through_gro(family: Family) -> Result<()> {
    let topology = Topology::builder().tso(false).gro(true).build()?;
    ensure!(topology.server_gro()?, "ethtool did not turn GRO on");
    let transfer = send_one_mebibyte(&topology, family, Packets::Merged)?;
    let matched = transfer.captured.counters.get(Counter::Matched);
    let data_chunks: usize = transfer.captured.flows.values().map(|f| f.data.len()).sum();
    eprintln!(
        "{family:?} GRO on: {matched} matched packets for {} client segments; {data_chunks} data records",
        transfer.client_segments
    );
    ensure!(
        matched < (MIB / mss(family)) as u64,
        "GRO merged nothing: {matched} matched packets for {} MSS-sized segments",
        MIB.div_ceil(mss(family))
    );
    Ok(())
}

/// TSO on at the client (the default): the veth hands 64 KiB super-packets
/// to the server untouched, so each copy spans many chunks.
fn one_mebibyte_in_tso_super_packets(family: Family) -> Result<()> {
    let topology = Topology::builder().tso(true).build()?;
    let transfer = send_one_mebibyte(&topology, family, Packets::Merged)?;
    let matched = transfer.captured.counters.get(Counter::Matched);
    eprintln!("{family:?} TSO: {matched} matched packets");
    ensure!(
        matched < (MIB / mss(family)) as u64,
        "no super-packets: {matched} packets"
    );
    Ok(())
}

#[test]
fn a_one_mebibyte_ipv4_gro_off_is_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    one_mebibyte_segment_by_segment(Family::V4)
}

#[test]
fn a_one_mebibyte_ipv4_gro_on_is_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    one_mebibyte_through_gro(Family::V4)
}

#[test]
fn a_one_mebibyte_ipv4_tso_super_packets_is_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    one_mebibyte_in_tso_super_packets(Family::V4)
}

#[test]
fn c_one_mebibyte_ipv6_gro_off_is_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    one_mebibyte_segment_by_segment(Family::V6)
}

#[test]
fn c_one_mebibyte_ipv6_gro_on_is_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    one_mebibyte_through_gro(Family::V6)
}

#[test]
fn c_one_mebibyte_ipv6_tso_super_packets_is_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    one_mebibyte_in_tso_super_packets(Family::V6)
}

// ---------------------------------------------------------------------------
// b: many connections at once
// ---------------------------------------------------------------------------

#[test]
fn b_hundred_concurrent_connections_are_each_captured_exactly() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    const CONNECTIONS: usize = 100;
    const BYTES: usize = 64 << 10;
    let topology = Topology::new()?;
    let capture =
        CaptureRunner::start(&topology.server, CaptureOptions::new(SERVER_IF, vec![PORT]))?;
    let server = TcpSink::start(
        &topology.server,
        topology.server_addr(Family::V4, PORT),
        CONNECTIONS,
    )?;

    let payloads: Vec<Vec<u8>> = (0..CONNECTIONS)
        .map(|i| random_bytes(BYTES, 0xb00 + i as u64))
        .collect();
    // Every connection is open before any of them sends.
    let mut streams: Vec<_> = (0..CONNECTIONS)
        .map(|_| tcp::connect(&topology.client, server.addr()))
        .collect::<Result<_>>()?;
    let clients: Vec<SocketAddr> = std::thread::scope(|scope| {
        let senders: Vec<_> = streams
            .iter_mut()
            .zip(&payloads)
            .map(|(stream, payload)| scope.spawn(move || tcp::finish(stream, payload)))
            .collect();
        senders
            .into_iter()
            .map(|s| s.join().expect("sender panicked"))
            .collect::<Result<_>>()
    })?;
    let received = server.join()?;
    let captured = capture.stop()?;

    captured.check_accounting()?;
    ensure!(
        captured.flows.len() == CONNECTIONS,
        "{} flows captured",
        captured.flows.len()
    );
    for (client, payload) in clients.iter().zip(&payloads) {
        ensure!(
            &received[client] == payload,
            "the server got other bytes from {client}"
        );
        let flow = captured
            .flow_from(*client)
            .with_context(|| format!("{client} was not captured"))?;
        let stream = flow.stream().with_context(|| format!("flow of {client}"))?;
        ensure!(
            &stream.bytes == payload,
            "{client}: captured stream differs at {:?}",
            first_difference(&stream.bytes, payload)
        );
    }
    ensure!(captured.counters.get(Counter::RecordsLost) == 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// d: other ports
// ---------------------------------------------------------------------------

#[test]
fn d_traffic_to_an_unmatched_port_emits_nothing_and_is_counted() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    // One packet per segment, so the client's segment count is the number
    // of TCP packets the program sees.
    let topology = Topology::builder().tso(false).gro(false).build()?;
    let capture =
        CaptureRunner::start(&topology.server, CaptureOptions::new(SERVER_IF, vec![PORT]))?;
    let server = TcpSink::start(
        &topology.server,
        topology.server_addr(Family::V4, OTHER_PORT),
        1,
    )?;
    let sent = random_bytes(256 << 10, 0xd);
    let mut stream = tcp::connect(&topology.client, server.addr())?;
    let client = tcp::finish(&mut stream, &sent)?;
    ensure!(server.join()?[&client] == sent);
    let segments = tcp::segments_sent(&stream)? as u64;
    wait_until(Duration::from_secs(2), || {
        capture
            .counters()
            .is_ok_and(|c| c.get(Counter::PortNotMatched) >= segments)
    });
    let captured = capture.stop()?;

    captured.check_accounting()?;
    let c = &captured.counters;
    ensure!(
        captured.flows.is_empty(),
        "records for {:?}",
        captured.flows.keys()
    );
    ensure!(
        captured.drain.records == 0,
        "{} records drained",
        captured.drain.records
    );
    ensure!(c.get(Counter::Matched) == 0, "{c}");
    ensure!(c.get(Counter::RecordsMatched) == 0, "{c}");
    ensure!(c.get(Counter::PayloadBytes) == 0, "{c}");
    ensure!(
        c.get(Counter::PortNotMatched) == segments,
        "port_not_matched {} for {segments} client segments: {c}",
        c.get(Counter::PortNotMatched)
    );
    // Whatever else arrived (IPv6 neighbour and multicast chatter) is not TCP.
    ensure!(
        c.get(Counter::Seen) == segments + c.get(Counter::NotIp) + c.get(Counter::NotTcp),
        "{c}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// e: a full ring loses records and says so
// ---------------------------------------------------------------------------

#[test]
fn e_small_ring_under_burst_counts_every_lost_record() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    const RING: u32 = 16 << 10;
    let topology = Topology::new()?;
    let mut options = CaptureOptions::new(SERVER_IF, vec![PORT]);
    options.ring_bytes = RING;
    // Nobody reads the ring until the burst is over.
    let capture = CaptureRunner::start_with(&topology.server, options, Drain::AtStop)?;
    let server = TcpSink::start(&topology.server, topology.server_addr(Family::V4, PORT), 1)?;
    let sent = random_bytes(4 * MIB, 0xe);
    let client = tcp::send(&topology.client, server.addr(), &sent)?;
    // The program never drops a packet: the burst arrives whole.
    ensure!(
        server.join()?[&client] == sent,
        "the server did not get the burst"
    );
    let captured = capture.stop()?;

    let c = &captured.counters;
    eprintln!("{RING}-byte ring, 4 MiB burst: {c}");
    ensure!(
        c.get(Counter::RecordsLost) > 0,
        "nothing lost in a {RING}-byte ring: {c}"
    );
    ensure!(
        c.get(Counter::RecordsMatched)
            == c.get(Counter::RecordsEmitted) + c.get(Counter::RecordsLost),
        "{c}"
    );
    ensure!(
        captured.drain.records == c.get(Counter::RecordsEmitted),
        "drained {} of {} emitted",
        captured.drain.records,
        c.get(Counter::RecordsEmitted)
    );
    captured.check_accounting()?;
    // What did get through is the client's bytes at the right offsets.
    let flow = captured
        .flow_from(client)
        .context("nothing of the flow captured")?;
    let base = flow
        .syn()
        .context("the SYN, first record in an empty ring, is missing")?
        .seq
        + 1;
    for chunk in &flow.data {
        let offset = chunk.seq.wrapping_sub(base) as usize;
        ensure!(
            sent.get(offset..offset + chunk.bytes.len()) == Some(chunk.bytes.as_slice()),
            "chunk at offset {offset} is not what the client sent there"
        );
    }
    ensure!(
        c.get(Counter::PayloadBytes) == captured.data_bytes(),
        "payload_bytes {} but {} bytes drained",
        c.get(Counter::PayloadBytes),
        captured.data_bytes()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// f: the agent process dies; production does not notice
// ---------------------------------------------------------------------------

/// Programs attached to the server veth's ingress via TCX, by name.
fn tcx_programs(topology: &Topology) -> Result<Vec<String>> {
    topology
        .server
        .run(|| {
            SchedClassifier::query_tcx(SERVER_IF, TcAttachType::Ingress)
                .map(|(_, programs)| {
                    programs
                        .iter()
                        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        })
        .map_err(|e| anyhow::anyhow!("query_tcx: {e}"))
}

/// BPF filters on the server veth's ingress (`tc filter show`), one line each.
fn netlink_filters(topology: &Topology) -> Result<Vec<String>> {
    let shown = topology
        .server
        .exec("tc", ["filter", "show", "dev", SERVER_IF, "ingress"])?;
    Ok(shown
        .lines()
        // `tc` prints a chain line, then one line per filter with its handle.
        .filter(|line| line.contains(" bpf ") && line.contains(" handle "))
        .map(str::to_owned)
        .collect())
}

fn agent_args(attach: &str) -> Vec<String> {
    [
        "--iface",
        SERVER_IF,
        "--port",
        &PORT.to_string(),
        "--attach",
        attach,
    ]
    .map(String::from)
    .to_vec()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn f_sigkill_of_a_tcx_agent_leaves_nothing_and_connections_keep_working() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let topology = Topology::new()?;
    let server = TcpSink::start(&topology.server, topology.server_addr(Family::V4, PORT), 1)?;
    let agent = Agent::start_attached(&topology.server, &as_strs(&agent_args("tcx")))?;
    ensure!(
        tcx_programs(&topology)? == ["mirror_ingress"],
        "attached: {:?}",
        tcx_programs(&topology)?
    );

    let before = random_bytes(64 << 10, 0xf1);
    let after = random_bytes(64 << 10, 0xf2);
    let mut stream = tcp::connect(&topology.client, server.addr())?;
    stream.write_all(&before)?;

    let exit = agent.stop(libc::SIGKILL, Duration::from_secs(10))?;
    ensure!(
        std::os::unix::process::ExitStatusExt::signal(&exit.status) == Some(libc::SIGKILL),
        "agent ended with {}",
        exit.status
    );
    let mut attached = tcx_programs(&topology)?;
    if !attached.is_empty() {
        wait_until(Duration::from_secs(2), || {
            tcx_programs(&topology).is_ok_and(|p| p.is_empty())
        });
        attached = tcx_programs(&topology)?;
    }
    ensure!(
        attached.is_empty(),
        "still attached after SIGKILL: {attached:?}"
    );
    ensure!(netlink_filters(&topology)?.is_empty());

    let client = tcp::finish(&mut stream, &after)?;
    let received = server.join()?;
    ensure!(
        received[&client] == [before, after].concat(),
        "the open connection lost or changed bytes"
    );
    Ok(())
}

#[test]
fn f_sigkill_of_a_netlink_agent_leaves_a_filter_the_next_agent_removes() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let topology = Topology::new()?;
    let server = TcpSink::start(&topology.server, topology.server_addr(Family::V4, PORT), 1)?;
    let args = agent_args("netlink");
    let parts: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(64 << 10, 0xf10 + i)).collect();

    let killed = Agent::start_attached(&topology.server, &as_strs(&args))?;
    let filters = netlink_filters(&topology)?;
    ensure!(
        filters.len() == 1 && filters[0].contains("mirror_ingress"),
        "{filters:?}"
    );
    let mut stream = tcp::connect(&topology.client, server.addr())?;
    stream.write_all(&parts[0])?;
    killed.stop(libc::SIGKILL, Duration::from_secs(10))?;

    // Expected: a netlink filter outlives its process. It still only
    // observes: the connection goes on.
    let leftover = netlink_filters(&topology)?;
    ensure!(leftover.len() == 1, "after SIGKILL: {leftover:?}");
    ensure!(tcx_programs(&topology)?.is_empty());
    stream.write_all(&parts[1])?;

    // The next agent removes the leftover before attaching its own filter.
    let next = Agent::start_attached(&topology.server, &as_strs(&args))?;
    next.wait_for_log(
        "removed a capture filter left by an earlier run",
        Duration::from_secs(1),
    )?;
    let filters = netlink_filters(&topology)?;
    ensure!(filters.len() == 1, "with the second agent: {filters:?}");
    ensure!(
        filters != leftover,
        "the leftover filter is still the one attached"
    );

    let client = tcp::finish(&mut stream, &parts[2])?;
    let exit = next.stop(libc::SIGINT, Duration::from_secs(10))?;
    ensure!(
        exit.status.success(),
        "SIGINT exit: {} {}",
        exit.status,
        exit.stderr
    );
    let filters = netlink_filters(&topology)?;
    ensure!(filters.is_empty(), "after a clean exit: {filters:?}");
    ensure!(
        server.join()?[&client] == parts.concat(),
        "the connection lost bytes"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// g: sampling keeps whole connections, the ones the hash predicts
// ---------------------------------------------------------------------------

/// 1000 connections of 100 bytes each, sampled at `sample_bp`: the captured
/// flows are exactly the predicted ones, each complete. Returns how many.
fn sample_thousand_connections(sample_bp: u32, seed: u32) -> Result<usize> {
    const CONNECTIONS: usize = 1000;
    let topology = Topology::new()?;
    let mut options = CaptureOptions::new(SERVER_IF, vec![PORT]);
    options.sample_bp = sample_bp;
    options.sample_seed = seed;
    let capture = CaptureRunner::start(&topology.server, options)?;
    let server_addr = topology.server_addr(Family::V4, PORT);
    let server = TcpSink::start(&topology.server, server_addr, CONNECTIONS)?;

    let sent: BTreeMap<SocketAddr, Vec<u8>> = topology.client.run(|| {
        (0..CONNECTIONS)
            .map(|i| {
                let payload = random_bytes(100, 0x9000 + i as u64);
                let mut stream = std::net::TcpStream::connect(server_addr)?;
                stream.set_read_timeout(Some(tcp::IO_TIMEOUT))?;
                Ok((tcp::finish(&mut stream, &payload)?, payload))
            })
            .collect::<Result<_>>()
    })?;
    ensure!(
        server.join()? == sent,
        "the server did not get every connection's bytes"
    );
    let captured = capture.stop()?;
    captured.check_accounting()?;

    let predicted: BTreeSet<SocketAddr> = sent
        .keys()
        .copied()
        .filter(|client| predicted_sampled(*client, server_addr, seed, sample_bp))
        .collect();
    let seen: BTreeSet<SocketAddr> = captured.flows.keys().map(|k| k.client).collect();
    ensure!(
        seen == predicted,
        "captured {} flows, predicted {}; unexpected {:?}, missing {:?}",
        seen.len(),
        predicted.len(),
        seen.difference(&predicted).take(5).collect::<Vec<_>>(),
        predicted.difference(&seen).take(5).collect::<Vec<_>>()
    );
    for (key, flow) in &captured.flows {
        let stream = flow
            .stream()
            .with_context(|| format!("{key} is only partly captured"))?;
        ensure!(
            stream.bytes == sent[&key.client],
            "{key}: other bytes captured"
        );
        ensure!(flow.fin().is_some(), "{key}: no FIN");
    }
    let c = &captured.counters;
    if sample_bp == 0 {
        ensure!(c.get(Counter::Matched) == 0, "{c}");
    }
    if sample_bp == 10_000 {
        ensure!(c.get(Counter::NotSampled) == 0, "{c}");
    }
    eprintln!(
        "sample {sample_bp} bp, seed {seed}: {} of {CONNECTIONS} connections",
        seen.len()
    );
    Ok(seen.len())
}

#[test]
fn g_sampling_zero_percent_captures_no_connection() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    ensure!(sample_thousand_connections(0, 0)? == 0);
    Ok(())
}

#[test]
fn g_sampling_hundred_percent_captures_every_connection() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    ensure!(sample_thousand_connections(10_000, 0)? == 1000);
    Ok(())
}

#[test]
fn g_sampling_half_captures_about_half_the_predicted_connections() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let captured = sample_thousand_connections(5_000, 0x5eed)?;
    ensure!(
        (420..=580).contains(&captured),
        "{captured} of 1000 at 50 %"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// h: crafted packets through BPF_PROG_TEST_RUN
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

fn v4_tcp(dst_port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    packet::ethernet(
        packet::ETH_P_IP,
        &packet::ipv4(
            CLIENT_V4,
            SERVER_V4,
            packet::IPPROTO_TCP,
            &[],
            &packet::tcp(40000, dst_port, seq, flags, payload),
        ),
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
            frame: ethernet(
                ETH_P_IP,
                &ipv4(
                    CLIENT_V4,
                    SERVER_V4,
                    IPPROTO_TCP,
                    &[1, 1, 1, 1, 1, 1, 1, 0], // NOPs, end of options
                    &tcp(40000, PORT, 2000, TCP_ACK, &hello),
                ),
            ),
            outcome: Counter::Matched,
            records: vec![data(2000, &hello)],
        },
        Case {
            name: "TCP with options (data offset 8)",
            frame: ethernet(
                ETH_P_IP,
                &ipv4(
                    CLIENT_V4,
                    SERVER_V4,
                    IPPROTO_TCP,
                    &[],
                    &tcp_with_offset(40000, PORT, 2500, TCP_ACK, 8, &hello),
                ),
            ),
            outcome: Counter::Matched,
            records: vec![data(2500, &hello)],
        },
        Case {
            name: "IPv6 TCP to the service port with payload",
            frame: ethernet(
                ETH_P_IPV6,
                &ipv6(
                    CLIENT_V6,
                    SERVER_V6,
                    IPPROTO_TCP,
                    &tcp(40000, PORT, 3000, TCP_ACK | TCP_PSH, &hello),
                ),
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
            frame: ethernet(
                ETH_P_IP,
                &ipv4(
                    CLIENT_V4,
                    SERVER_V4,
                    IPPROTO_UDP,
                    &[],
                    &udp(40000, PORT, &hello),
                ),
            ),
            outcome: Counter::NotTcp,
            records: vec![],
        },
        Case {
            name: "IPv6 with a hop-by-hop extension header before TCP",
            frame: ethernet(
                ETH_P_IPV6,
                &ipv6(
                    CLIENT_V6,
                    SERVER_V6,
                    IPPROTO_HOPOPTS,
                    &hop_by_hop(IPPROTO_TCP, &tcp(40000, PORT, 8000, TCP_ACK, &hello)),
                ),
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
            frame: ethernet(ETH_P_IP, &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, &[], &[])),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "IPv4 IHL beyond the packet",
            frame: {
                let mut frame =
                    ethernet(ETH_P_IP, &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, &[], &[]));
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
            frame: ethernet(
                ETH_P_IP,
                &ipv4(
                    CLIENT_V4,
                    SERVER_V4,
                    IPPROTO_TCP,
                    &[],
                    &tcp_with_offset(40000, PORT, 9000, TCP_ACK, 4, &hello),
                ),
            ),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "TCP data offset beyond the packet",
            frame: ethernet(
                ETH_P_IP,
                &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, &[], &{
                    let mut segment = tcp(40000, PORT, 9500, TCP_ACK, &[]);
                    segment[12] = 15 << 4; // 60 bytes of header, 20 there
                    segment
                }),
            ),
            outcome: Counter::Malformed,
            records: vec![],
        },
        Case {
            name: "IPv6 header only, TCP header missing",
            frame: ethernet(ETH_P_IPV6, &ipv6(CLIENT_V6, SERVER_V6, IPPROTO_TCP, &[])),
            outcome: Counter::Malformed,
            records: vec![],
        },
    ]
}

#[test]
fn h_crafted_packets_always_pass_and_are_counted_by_reason() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
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
            let verdict = match packet::prog_test_run(capture.classifier_fd(), &case.frame) {
                Ok(verdict) => verdict,
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
                [(Counter::Seen.name(), 1), (case.outcome.name(), 1)].into();
            for (counter, n) in [
                (Counter::RecordsMatched, record_count),
                (Counter::RecordsEmitted, record_count),
                (Counter::PayloadBytes, payload),
            ] {
                if n > 0 {
                    expected.insert(counter.name(), n);
                }
            }
            if verdict != packet::TC_ACT_PIPE {
                failures.push(format!("{}: verdict {verdict}, not TC_ACT_PIPE", case.name));
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

// ---------------------------------------------------------------------------
// i: the binary's answers to bad invocations
// ---------------------------------------------------------------------------

/// Runs the agent to completion inside `netns` (via `ip netns exec`).
fn run_agent(netns: &Netns, wrapper: &[&str], args: &[&str]) -> Result<std::process::Output> {
    let binary = mirror_tests::agent_binary()?;
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = netns.command(program);
            command.args(rest).arg(&binary);
            command
        }
        None => netns.command(&binary),
    };
    Ok(command
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()?)
}

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn i_without_privileges_the_agent_names_the_missing_capabilities() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let netns = Netns::new("np")?;
    let output = run_agent(
        &netns,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        &["--iface", "lo", "--port", "80"],
    )?;
    let lines = stderr_lines(&output);
    ensure!(
        !output.status.success(),
        "succeeded unprivileged: {lines:?}"
    );
    ensure!(lines.len() == 1, "not one line: {lines:?}");
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"] {
        ensure!(lines[0].contains(cap), "{cap} not named: {}", lines[0]);
    }
    Ok(())
}

#[test]
fn i_an_unknown_interface_is_refused_with_the_existing_ones() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    let topology = Topology::new()?;
    let output = run_agent(
        &topology.server,
        &[],
        &["--iface", "doesnotexist0", "--port", "80"],
    )?;
    let lines = stderr_lines(&output);
    ensure!(
        !output.status.success(),
        "accepted a missing interface: {lines:?}"
    );
    ensure!(lines.len() == 1, "not one line: {lines:?}");
    for name in ["doesnotexist0", "lo", SERVER_IF] {
        ensure!(lines[0].contains(name), "{name} not in: {}", lines[0]);
    }
    Ok(())
}

#[test]
fn i_ports_out_of_range_are_refused_by_the_command_line() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    // In a namespace of its own: if a port were accepted, the agent would
    // attach to this lo, not the host's.
    let netns = Netns::new("cli")?;
    for port in ["0", "70000"] {
        let output = run_agent(&netns, &[], &["--iface", "lo", "--port", port])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(2),
            "--port {port}: {} {stderr}",
            output.status
        );
        ensure!(
            stderr.contains("error:") && stderr.contains("--port") && stderr.contains(port),
            "--port {port}: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn i_help_lists_every_flag_and_examples() -> Result<()> {
    if !require_kernel() {
        return Ok(());
    }
    use clap::CommandFactory as _;
    let netns = Netns::new("help")?;
    let output = run_agent(&netns, &[], &["--help"])?;
    ensure!(output.status.success(), "--help: {}", output.status);
    let help = String::from_utf8_lossy(&output.stdout);
    let mut flags: Vec<String> = mirror_agent::config::Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .collect();
    flags.extend(["--help".into(), "--version".into()]);
    ensure!(flags.len() > 4, "flags: {flags:?}");
    for flag in &flags {
        ensure!(
            help.contains(flag.as_str()),
            "--help does not mention {flag}:\n{help}"
        );
    }
    ensure!(help.contains("Examples"), "--help has no examples:\n{help}");
    Ok(())
}
