//! The capture stage on the real kernel, driven in-process: what the TC
//! program copies from real TCP traffic and what it counts.
//!
//! Each test builds its own namespaces and runs in parallel with the others.
//! Run as root: `cargo test -p mirror-tests`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use aya::programs::{SchedClassifier, TcAttachType};
use mirror_agent::capture::CaptureOptions;
use mirror_common::Counter;
use mirror_testkit::{
    HttpClient, Server, pseudo_random,
    server::RESPONSE,
    tcp::{self, TcpSink},
    wait_until,
};
use mirror_tests::{
    CaptureRunner, Captured, Drain, Family, Topology, capture::predicted_sampled, first_difference,
    require_kernel, topology::SERVER_IF,
};

const PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// one connection, 1 MiB, byte for byte, IPv4 and IPv6
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
    let sent = pseudo_random(MIB, 0xa);

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
    let stream = flow.whole_stream(&sent)?;
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

mirror_tests::kernel_tests! {
    one_mebibyte_ipv4_gro_off_is_captured_exactly =>
        one_mebibyte_segment_by_segment(Family::V4);
    one_mebibyte_ipv4_gro_on_is_captured_exactly =>
        one_mebibyte_through_gro(Family::V4);
    one_mebibyte_ipv4_tso_super_packets_is_captured_exactly =>
        one_mebibyte_in_tso_super_packets(Family::V4);
    one_mebibyte_ipv6_gro_off_is_captured_exactly =>
        one_mebibyte_segment_by_segment(Family::V6);
    one_mebibyte_ipv6_gro_on_is_captured_exactly =>
        one_mebibyte_through_gro(Family::V6);
    one_mebibyte_ipv6_tso_super_packets_is_captured_exactly =>
        one_mebibyte_in_tso_super_packets(Family::V6);
}

// ---------------------------------------------------------------------------
// many connections at once
// ---------------------------------------------------------------------------

#[test]
fn hundred_concurrent_connections_are_each_captured_exactly() -> Result<()> {
    require_kernel!();
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
        .map(|i| pseudo_random(BYTES, 0xb00 + i as u64))
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
// other ports
// ---------------------------------------------------------------------------

#[test]
fn traffic_to_an_unmatched_port_emits_nothing_and_is_counted() -> Result<()> {
    require_kernel!();
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
    let sent = pseudo_random(256 << 10, 0xd);
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
// a full ring loses records and says so
// ---------------------------------------------------------------------------

#[test]
fn small_ring_under_burst_counts_every_lost_record() -> Result<()> {
    require_kernel!();
    const RING: u32 = 16 << 10;
    let topology = Topology::new()?;
    let mut options = CaptureOptions::new(SERVER_IF, vec![PORT]);
    options.ring_bytes = RING;
    // Nobody reads the ring until the burst is over.
    let capture = CaptureRunner::start_with(&topology.server, options, Drain::AtStop)?;
    let server = TcpSink::start(&topology.server, topology.server_addr(Family::V4, PORT), 1)?;
    let sent = pseudo_random(4 * MIB, 0xe);
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
// sampling keeps whole connections, the ones the hash predicts
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
                let payload = pseudo_random(100, 0x9000 + i as u64);
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
fn sampling_zero_percent_captures_no_connection() -> Result<()> {
    require_kernel!();
    ensure!(sample_thousand_connections(0, 0)? == 0);
    Ok(())
}

#[test]
fn sampling_hundred_percent_captures_every_connection() -> Result<()> {
    require_kernel!();
    ensure!(sample_thousand_connections(10_000, 0)? == 1000);
    Ok(())
}

#[test]
fn sampling_half_captures_about_half_the_predicted_connections() -> Result<()> {
    require_kernel!();
    let captured = sample_thousand_connections(5_000, 0x5eed)?;
    ensure!(
        (420..=580).contains(&captured),
        "{captured} of 1000 at 50 %"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// v1's responses, at egress, only when asked
// ---------------------------------------------------------------------------

/// The programs attached to the server's veth, as `direction/name`: the
/// kernel's own answer (a TCX query; the capture attaches with TCX here).
fn attached_programs(topology: &Topology) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (direction, attach) in [
        ("ingress", TcAttachType::Ingress),
        ("egress", TcAttachType::Egress),
    ] {
        let (_, programs) = topology
            .server
            .run(|| SchedClassifier::query_tcx(SERVER_IF, attach))
            .with_context(|| format!("querying {direction}"))?;
        for program in programs {
            found.push(format!(
                "{direction}/{}",
                program.name_as_str().unwrap_or("?")
            ));
        }
    }
    Ok(found)
}

/// Three exchanges on one keep-alive connection through a capture with or
/// without responses; returns what it captured and what was attached.
fn exchanges(responses: bool) -> Result<(Captured, Vec<String>, SocketAddr)> {
    let topology = Topology::new()?;
    let mut options = CaptureOptions::new(SERVER_IF, vec![PORT]);
    options.responses = responses;
    let capture = CaptureRunner::start(&topology.server, options)?;
    let attached = attached_programs(&topology)?;
    let server = Server::start(&topology.server, topology.server_addr(Family::V4, PORT))?;
    let mut client = HttpClient::connect(&topology.client, server.addr())?;
    for i in 0..3 {
        let request = format!("GET /r/{i} HTTP/1.1\r\nHost: v1\r\n\r\n");
        ensure!(client.request(request.as_bytes())?.status == 200);
    }
    let local = client.local_addr()?;
    client.close()?;
    server.stop()?;
    // The server's FIN may still be on its way out.
    wait_until(Duration::from_secs(2), || {
        capture
            .counters()
            .is_ok_and(|c| c.get(Counter::RecordsEmitted) > 0)
    });
    std::thread::sleep(Duration::from_millis(100));
    Ok((capture.stop()?, attached, local))
}

#[test]
fn v1s_responses_are_captured_at_egress_only_when_asked() -> Result<()> {
    require_kernel!();
    let (captured, attached, client) = exchanges(true)?;
    ensure!(
        attached.contains(&"egress/mirror_egress".to_owned()),
        "no egress program attached: {attached:?}"
    );
    captured.check_accounting()?;
    let flow = captured
        .responses
        .values()
        .find(|f| f.syn().is_some())
        .with_context(|| format!("no response stream: {:?}", captured.responses.keys()))?;
    let key = captured
        .responses
        .keys()
        .next()
        .context("no response stream")?;
    ensure!(key.client == client, "{key} is not {client}'s connection");
    ensure!(
        flow.stream()?.bytes == RESPONSE.repeat(3),
        "the responses differ"
    );
    let requests = captured.flow_from(client).context("no request stream")?;
    ensure!(
        requests
            .stream()?
            .bytes
            .starts_with(b"GET /r/0 HTTP/1.1\r\n")
    );

    let (captured, attached, _) = exchanges(false)?;
    ensure!(
        attached == ["ingress/mirror_ingress"],
        "attached without responses: {attached:?}"
    );
    ensure!(captured.responses.is_empty());
    Ok(())
}
