//! Frames whose IP and TCP headers are not in the skb's linear area
//! (issue 16, item 8): a client sends through a packet socket's TX ring,
//! as replay tools do, so the server's TC ingress gets skbs with only the
//! Ethernet header linear and everything after it in a page fragment
//! (`mirror_testkit::tx_ring`). The program must capture them like any
//! other frame, and the server must get the bytes unchanged.
//!
//! The program that read headers with direct packet access only counted
//! every such frame `malformed` and captured nothing of the connection.
//!
//! Run as root: `cargo test -p mirror-tests --test nonlinear`.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use mirror_agent::{
    capture::CaptureOptions,
    flow::FlowConfig,
    http::testing::{FramedTable, framed_table, table_stats},
};
use mirror_common::Counter;
use mirror_testkit::{
    tcp::TcpSink,
    tx_ring::{self, Endpoint, RingTcp},
    wait_until,
};
use mirror_tests::{
    CaptureRunner, Captured, Collector, Drain, Family, Tee, Topology,
    topology::{CLIENT_IF, SERVER_IF},
};

const PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40123;
/// The TX-ring client's addresses: no interface has them (see
/// `mirror_testkit::tx_ring`), the server reaches them by a static
/// neighbour entry.
const RING_CLIENT_V4: &str = "10.200.0.3";
const RING_CLIENT_V6: &str = "fd00:200::3";
const RING_CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xc8, 0x00, 0x03];
/// Close below 2^32: the sequence numbers wrap inside the connection.
const ISN: u32 = u32::MAX - 100;

/// Two requests, each in a segment of its own.
fn requests(family: Family) -> Vec<Vec<u8>> {
    let body = "field=paged&value=0123456789";
    vec![
        format!(
            "GET /nonlinear/{family:?}?n=1 HTTP/1.1\r\nHost: primary.test\r\n\
             User-Agent: tx-ring\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "POST /nonlinear/{family:?}?n=2 HTTP/1.1\r\nHost: primary.test\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    ]
}

/// The client opens a connection through its TX ring, sends the requests
/// and closes it; the capture on the server's veth must deliver the
/// connection whole, and the agent's flow and HTTP stages the requests.
fn requests_in_paged_frames_are_captured(family: Family) -> Result<()> {
    // GRO off (the veth default): GRO would pull the headers into the
    // linear area before TC ingress.
    let topology = Topology::builder().gro(false).build()?;
    ensure!(!topology.server_gro()?, "GRO still on");
    let server_addr = topology.server_addr(family, PORT);
    let client_ip: IpAddr = match family {
        Family::V4 => RING_CLIENT_V4,
        Family::V6 => RING_CLIENT_V6,
    }
    .parse()?;
    let local = Endpoint {
        mac: RING_CLIENT_MAC,
        addr: SocketAddr::new(client_ip, CLIENT_PORT),
    };
    let remote = Endpoint {
        mac: tx_ring::mac_address(&topology.server, SERVER_IF)?,
        addr: server_addr,
    };
    tx_ring::static_neighbour(&topology.server, SERVER_IF, client_ip, RING_CLIENT_MAC)?;

    let capture = CaptureRunner::start_sink(
        &topology.server,
        CaptureOptions::new(SERVER_IF, vec![PORT]),
        Drain::Continuous,
        Tee(Collector::default(), new_table()),
    )?;
    let server = TcpSink::start(&topology.server, server_addr, 1)?;
    let requests = requests(family);
    let sent: Vec<u8> = requests.concat();

    let mut client = RingTcp::connect(&topology.client, CLIENT_IF, local, remote, ISN)?;
    for request in &requests {
        client.send(request)?;
    }
    client.close()?;
    let frames = client.frames_sent() as u64;
    // The program never drops or changes a packet: the server got the
    // bytes as sent.
    let received = server.join()?;
    ensure!(
        received.get(&local.addr) == Some(&sent),
        "the server did not get the bytes sent: {:?}",
        received.keys()
    );
    // A blocking send on the ring returns once the frame's skb was freed,
    // after TC ingress; the wait only guards against a slower kernel.
    wait_until(Duration::from_secs(2), || {
        capture
            .counters()
            .is_ok_and(|c| c.get(Counter::Matched) + c.get(Counter::Malformed) >= frames)
    });
    let finished = capture.finish()?;
    let Tee(collector, table) = finished.sink;
    let stats = table_stats(&table);
    let extracted = table.into_consumer().into_sink();
    let captured = Captured {
        flows: collector.into_flows(),
        responses: Default::default(),
        counters: finished.counters,
        response_counters: finished.response_counters,
        drain: finished.drain,
        attach_mode: finished.attach_mode,
    };

    let c = &captured.counters;
    eprintln!("{family:?}: {frames} frames through the TX ring; kernel counters: {c}");
    captured.check_accounting()?;
    ensure!(
        c.get(Counter::Malformed) == 0,
        "{} of {frames} frames counted malformed: {c}",
        c.get(Counter::Malformed)
    );
    ensure!(
        c.get(Counter::Matched) == frames,
        "{} frames matched of the {frames} the client sent: {c}",
        c.get(Counter::Matched)
    );
    ensure!(c.get(Counter::RecordsLost) == 0, "{c}");

    // The capture: the connection, byte for byte, from SYN to FIN.
    let flow = captured
        .flow_from(local.addr)
        .context("the connection was not captured")?;
    flow.whole_stream(&sent)?;
    ensure!(c.get(Counter::PayloadBytes) == sent.len() as u64, "{c}");

    // The agent's stages: the requests, as sent.
    ensure!(
        extracted.len() == requests.len(),
        "{} requests extracted of {} sent; http {:?}",
        extracted.len(),
        requests.len(),
        stats.http
    );
    for (request, sent) in extracted.iter().zip(&requests) {
        let whole = [&request.head[..], &request.body[..]].concat();
        ensure!(
            &whole == sent,
            "extracted {:?}, sent {:?}",
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(sent)
        );
        ensure!(request.flow.key.client == local.addr);
    }
    Ok(())
}

fn new_table() -> FramedTable {
    framed_table(FlowConfig::default(), Vec::new())
}

mirror_tests::kernel_tests! {
    ipv4_requests_whose_headers_are_outside_the_linear_area_are_captured =>
        requests_in_paged_frames_are_captured(Family::V4);
    ipv6_requests_whose_headers_are_outside_the_linear_area_are_captured =>
        requests_in_paged_frames_are_captured(Family::V6);
}
