//! TCP reassembly and HTTP framing on the real kernel: real clients (curl,
//! ab, Rust sockets) talk to a test server that frames requests on its own;
//! the capture runs in-process with the agent's `FlowTable` as its sink,
//! and every request the flow + http stages extract must be what the
//! server received, byte for byte, with counters that say the same.
//!
//! Each test builds its own namespaces and runs in parallel with the others.
//! Run as root: `cargo test -p mirror-tests --test http`.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_agent::{
    capture::{CaptureOptions, EventSink, KernelCounters},
    flow::{FlowConfig, FlowEndReason},
    http::testing::{FramedTable, TableStats as Stats, framed_table, table_stats},
    http::{Request, SkipReason},
};
use mirror_common::Counter;
use mirror_testkit::{
    Received, ReceivedRequest, ScratchDir, Server, ab, pseudo_random, server::RESPONSE, tcp,
};
use mirror_tests::{
    CaptureRunner, Collector, Drain, Family, Finished, Tee, Topology,
    http_compare::{compare_exact, same_request, show},
    require_kernel,
    topology::SERVER_IF,
};

const PORT: u16 = 8080;
const MB: usize = 1_000_000;

type Table = FramedTable;

fn new_table() -> Table {
    framed_table(FlowConfig::default(), Vec::new())
}

/// Attaches the capture in the server namespace, feeding `sink`.
fn start_capture_into<S: EventSink + Send + 'static>(
    topology: &Topology,
    sink: S,
) -> Result<CaptureRunner<S>> {
    CaptureRunner::start_sink(
        &topology.server,
        CaptureOptions::new(SERVER_IF, vec![PORT]),
        Drain::Continuous,
        sink,
    )
}

/// Attaches the capture in the server namespace, feeding a fresh flow table.
fn start_capture(topology: &Topology) -> Result<CaptureRunner<Table>> {
    start_capture_into(topology, new_table())
}

/// What the agent's stages made of a capture run.
struct Extracted {
    requests: Vec<Request>,
    stats: Stats,
    counters: KernelCounters,
}

/// Detaches and drains the ring into the sink. The kernel and the ring
/// must have lost nothing: a loss there would show up as a gap in the flow
/// stage and hide what these tests look at.
fn finish<S: EventSink + Send + 'static>(capture: CaptureRunner<S>) -> Result<Finished<S>> {
    let finished = capture.finish()?;
    let c = &finished.counters;
    ensure!(c.packets_balance() && c.records_balance(), "{c}");
    ensure!(
        c.get(Counter::RecordsLost) == 0,
        "the ring lost records: {c}"
    );
    ensure!(
        finished.drain.decode_errors == 0
            && finished.drain.records == c.get(Counter::RecordsEmitted),
        "drained {:?}, kernel {c}",
        finished.drain
    );
    Ok(finished)
}

impl Extracted {
    fn new(table: Table, counters: KernelCounters) -> Self {
        Self {
            stats: table_stats(&table),
            requests: table.into_consumer().into_sink(),
            counters,
        }
    }
}

/// [`finish`], then what the flow table extracted.
fn finish_table(capture: CaptureRunner<Table>) -> Result<Extracted> {
    let finished = finish(capture)?;
    Ok(Extracted::new(finished.sink, finished.counters))
}

/// Non-zero drop counters by reason.
fn drops(stats: &Stats) -> BTreeMap<&'static str, u64> {
    stats
        .http
        .dropped
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str(), n))
        .collect()
}

/// Extracted == received, request by request, and the table's counters
/// agree: every request delivered, none dropped, no gap, every one of the
/// `connections` seen from its SYN to its FIN.
fn check_exact(extracted: &Extracted, received: &Received) -> Result<()> {
    let matched = compare_exact(&extracted.requests, received)?;
    let stats = &extracted.stats;
    let (flow, http) = (&stats.flow, &stats.http);
    ensure!(
        http.requests == received.request_count() as u64 && matched == received.request_count(),
        "{} requests delivered, {matched} matched, the server received {}",
        http.requests,
        received.request_count()
    );
    ensure!(
        http.dropped.total() == 0,
        "requests dropped: {:?}",
        drops(stats)
    );
    let body_bytes: usize = received.requests().map(|r| r.body.len()).sum();
    ensure!(
        http.body_bytes == body_bytes as u64,
        "{} body bytes delivered, {body_bytes} received",
        http.body_bytes
    );
    let chunked = received.requests().filter(|r| r.chunked).count();
    ensure!(http.chunked_requests == chunked as u64, "{http:?}");
    ensure!(
        http.resyncs == 0 && http.skipped_bytes == 0,
        "the framer skipped bytes: {http:?}"
    );
    let connections = received.connections.len() as u64;
    ensure!(
        flow.flows_started == connections && flow.midstream_joins == 0,
        "{} flows ({} joined midstream) for {connections} connections",
        flow.flows_started,
        flow.midstream_joins
    );
    ensure!(
        flow.ended(FlowEndReason::Fin) == connections,
        "flows ended: {:?}",
        flow.flows_ended
    );
    ensure!(
        flow.gaps == 0 && flow.holes_abandoned == 0 && flow.out_of_window_segments == 0,
        "{flow:?}"
    );
    ensure!(
        flow.buffered_bytes == 0,
        "{} bytes still buffered",
        flow.buffered_bytes
    );
    Ok(())
}

fn url(topology: &Topology, family: Family, path: &str) -> String {
    format!("http://{}{path}", topology.server_addr(family, PORT))
}

// ---------------------------------------------------------------------------
// curl uploads
// ---------------------------------------------------------------------------

/// `curl --data-binary @file` of `len` random bytes, with `extra` curl
/// arguments, through a capture; returns the one request the server got.
fn curl_upload(
    topology: &Topology,
    len: usize,
    seed: u64,
    extra: &[&str],
) -> Result<ReceivedRequest> {
    let capture = start_capture(topology)?;
    let server = Server::start(&topology.server, topology.server_addr(Family::V4, PORT))?;
    let scratch = ScratchDir::new("upload")?;
    let content = pseudo_random(len, seed);
    let file = scratch.write("body.bin", &content)?;
    let data = format!("@{}", file.display());
    let target = url(topology, Family::V4, "/upload");
    let mut args = vec!["-sS", "--fail", "--data-binary", &data];
    args.extend_from_slice(extra);
    args.push(&target);
    let started = Instant::now();
    // curl must succeed.
    let output = topology.client.exec("curl", &args)?;
    let took = started.elapsed();
    ensure!(output == "ok", "curl printed {:?}", show(output.as_bytes()));
    let received = server.stop()?;
    let extracted = finish_table(capture)?;

    ensure!(received.request_count() == 1, "{received:?}");
    let request = received.connections[0].requests[0].clone();
    ensure!(
        request.body == content,
        "the server did not get the file ({} bytes)",
        request.body.len()
    );
    check_exact(&extracted, &received)?;
    eprintln!(
        "curl {len} bytes{}: {took:?}, {} matched packets, head {:?}",
        if request.chunked { " chunked" } else { "" },
        extracted.counters.get(Counter::Matched),
        show(&request.head)
    );
    Ok(request)
}

#[test]
fn ten_megabyte_post_from_curl_is_extracted_exactly() -> Result<()> {
    require_kernel!();
    let topology = Topology::builder().gro(true).build()?;
    let request = curl_upload(&topology, 10 * MB, 0xa, &[])?;
    ensure!(request.head.starts_with(b"POST /upload HTTP/1.1\r\n"));
    ensure!(!request.chunked);
    Ok(())
}

#[test]
fn a_chunked_upload_from_curl_is_extracted_exactly() -> Result<()> {
    require_kernel!();
    // One MSS per packet: chunk framing lands anywhere in a segment.
    let topology = Topology::builder().tso(false).gro(false).build()?;
    let request = curl_upload(
        &topology,
        3 * MB + 12_345,
        0xb,
        &["-H", "Transfer-Encoding: chunked"],
    )?;
    ensure!(
        request.chunked,
        "curl did not send chunks: {}",
        show(&request.head)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// pipelining
// ---------------------------------------------------------------------------

/// One request as the client writes it, and as it must be received.
struct Pipelined {
    wire: Vec<u8>,
    head: Vec<u8>,
    body: Vec<u8>,
}

/// 20 requests of every kind: GET, POST/PUT with Content-Length (binary
/// bodies, one of 200 KB, one whose body holds a request line), DELETE,
/// odd header spacing and case, and one chunked with an extension and a
/// trailer.
fn pipelined_requests(host: &str) -> Vec<Pipelined> {
    (0..20u64)
        .map(|i| {
            let mut body = Vec::new();
            let head = match i % 5 {
                0 => format!("GET /pipe/{i}?q=a%20b HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n"),
                1 => {
                    let len = if i == 11 { 200_000 } else { 100 + i as usize * 517 };
                    body = pseudo_random(len, 0xc00 + i);
                    format!(
                        "POST /pipe/{i} HTTP/1.1\r\nHost: {host}\r\n\
                         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
                    )
                }
                2 => {
                    body = format!("{i}").repeat(i as usize).into_bytes();
                    format!(
                        "PUT /pipe/{i} HTTP/1.1\r\nhost: {host}\r\nx-MiXeD-CaSe:   spaced value  \r\n\
                         content-length:{}\r\n\r\n",
                        body.len()
                    )
                }
                3 => format!("DELETE /pipe/{i} HTTP/1.1\r\nHost: {host}\r\nX-Empty:\r\n\r\n"),
                _ => {
                    body = format!("GET /not-a-request/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n")
                        .into_bytes();
                    format!(
                        "POST /pipe/{i} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                }
            };
            let head = head.into_bytes();
            if i == 10 {
                let head = format!(
                    "POST /pipe/{i}/chunked HTTP/1.1\r\nHost: {host}\r\n\
                     Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                )
                .into_bytes();
                let mut wire = head.clone();
                let mut body = Vec::new();
                for (n, size) in [1usize, 4096, 17, 3000].into_iter().enumerate() {
                    let chunk = pseudo_random(size, 0xcc0 + n as u64);
                    let ext = if n == 1 { ";name=value" } else { "" };
                    wire.extend_from_slice(format!("{size:x}{ext}\r\n").as_bytes());
                    wire.extend_from_slice(&chunk);
                    wire.extend_from_slice(b"\r\n");
                    body.extend_from_slice(&chunk);
                }
                wire.extend_from_slice(b"0\r\nX-Checksum: 1234\r\n\r\n");
                return Pipelined { wire, head, body };
            }
            let wire = [head.as_slice(), &body].concat();
            Pipelined { wire, head, body }
        })
        .collect()
}

/// Writes the 20 requests at once on one connection, then reads the 20
/// answers. With `offloads` off the client sends one MSS per packet and
/// the server's veth merges nothing: heads, chunk-size lines and bodies
/// straddle many segment boundaries. On, GRO merges what TSO did not.
fn twenty_pipelined_requests(family: Family, offloads: bool) -> Result<()> {
    let topology = Topology::builder().tso(offloads).gro(offloads).build()?;
    let capture = start_capture(&topology)?;
    let server = Server::start(&topology.server, topology.server_addr(family, PORT))?;
    let requests = pipelined_requests(&server.addr().to_string());
    let wire: Vec<u8> = requests
        .iter()
        .flat_map(|r| r.wire.iter().copied())
        .collect();

    let mut stream = tcp::connect(&topology.client, server.addr())?;
    stream.write_all(&wire)?;
    let mut responses = vec![0; RESPONSE.len() * requests.len()];
    stream
        .read_exact(&mut responses)
        .context("reading the 20 responses")?;
    ensure!(
        responses == RESPONSE.repeat(requests.len()),
        "{}",
        show(&responses)
    );
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    let received = server.stop()?;
    let extracted = finish_table(capture)?;

    ensure!(received.connections.len() == 1);
    let got = &received.connections[0].requests;
    ensure!(
        got.len() == requests.len(),
        "the server got {} requests",
        got.len()
    );
    for (sent, got) in requests.iter().zip(got) {
        ensure!(
            sent.head == got.head,
            "the server got {:?}",
            show(&got.head)
        );
        ensure!(
            sent.body == got.body,
            "other body for {:?}",
            show(&got.head)
        );
    }
    check_exact(&extracted, &received)?;
    ensure!(
        extracted.requests[10].trailers[..] == b"X-Checksum: 1234\r\n"[..],
        "trailers {:?}",
        show(&extracted.requests[10].trailers)
    );
    eprintln!(
        "{family:?} offloads {offloads}: 20 pipelined requests, {} bytes, in {} matched packets",
        wire.len(),
        extracted.counters.get(Counter::Matched)
    );
    Ok(())
}

mirror_tests::kernel_tests! {
    twenty_pipelined_requests_ipv4_segment_by_segment_are_extracted_in_order =>
        twenty_pipelined_requests(Family::V4, false);
    twenty_pipelined_requests_ipv6_tso_gro_are_extracted_in_order =>
        twenty_pipelined_requests(Family::V6, true);
}

// ---------------------------------------------------------------------------
// ab
// ---------------------------------------------------------------------------

/// `ab ARGS URL` through a capture; every request extracted exactly.
fn apache_bench(topology: &Topology, args: &[&str], requests: usize) -> Result<Extracted> {
    let capture = start_capture(topology)?;
    let server = Server::start(&topology.server, topology.server_addr(Family::V4, PORT))?;
    let target = url(topology, Family::V4, "/");
    let started = Instant::now();
    let report = ab::run(&topology.client, args, &target)?;
    let took = started.elapsed();
    ensure!(
        report.complete == requests as u64 && report.failed == 0,
        "ab: {}",
        report.text
    );
    let received = server.stop()?;
    let extracted = finish_table(capture)?;

    ensure!(
        received.request_count() == requests,
        "the server received {} requests",
        received.request_count()
    );
    check_exact(&extracted, &received)?;
    eprintln!(
        "ab {args:?}: {requests} requests on {} connections in {took:?}",
        received.connections.len()
    );
    Ok(extracted)
}

#[test]
fn ab_thousand_keep_alive_requests_are_extracted_exactly() -> Result<()> {
    require_kernel!();
    let topology = Topology::new()?;
    let extracted = apache_bench(&topology, &["-k", "-n", "1000", "-c", "10"], 1000)?;
    let flows = extracted.stats.flow.flows_started;
    ensure!(
        flows <= 20,
        "ab -k used {flows} connections for 1000 requests"
    );
    Ok(())
}

#[test]
fn ab_http10_one_request_per_connection_is_extracted_exactly() -> Result<()> {
    require_kernel!();
    let topology = Topology::builder().gro(true).build()?;
    let extracted = apache_bench(&topology, &["-n", "200", "-c", "4"], 200)?;
    // ab opens a few connections more than it needs and closes them unused.
    ensure!(extracted.stats.flow.flows_started >= 200);
    ensure!(
        extracted
            .requests
            .iter()
            .all(|r| r.head.starts_with(b"GET / HTTP/1.0\r\n"))
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// the capture joins connections that are already busy
// ---------------------------------------------------------------------------

const CONNECTIONS: usize = 50;
const ID_HEADER: &str = "X-Request-Id";
const SPLIT_PAUSE: Duration = Duration::from_millis(2);
const REST: Duration = Duration::from_millis(1);
/// Traffic before the capture attaches, and after.
const BEFORE_ATTACH: Duration = Duration::from_millis(500);
const AFTER_ATTACH: Duration = Duration::from_millis(1500);

/// A request a client sent, and when.
struct Sent {
    id: String,
    head: Vec<u8>,
    body: Vec<u8>,
    /// Just before its first byte was written.
    started: Instant,
}

/// Request `n` of connection `conn`: every third a GET, the others POSTs
/// with bodies of 0 to ~4 KB (some span segments) of letters and digits,
/// never anything that reads as a request line.
fn busy_request(host: &str, conn: usize, n: usize) -> (String, Vec<u8>, Vec<u8>) {
    let id = format!("{conn}-{n}");
    if n.is_multiple_of(3) {
        let head =
            format!("GET /busy/{conn}/{n} HTTP/1.1\r\nHost: {host}\r\n{ID_HEADER}: {id}\r\n\r\n");
        return (id, head.into_bytes(), Vec::new());
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = (n * 997 + conn * 131) % 4100;
    let body: Vec<u8> = pseudo_random(len, (conn * 1_000_003 + n) as u64)
        .into_iter()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()])
        .collect();
    let head = format!(
        "POST /busy/{conn}/{n} HTTP/1.1\r\nHost: {host}\r\n{ID_HEADER}: {id}\r\nContent-Length: {len}\r\n\r\n"
    );
    (id, head.into_bytes(), body)
}

/// Sends requests one after the other (keep-alive, each answered before
/// the next) until `stop`, then closes and waits for the server to close.
/// A request goes out in two writes [`SPLIT_PAUSE`] apart (a body's first
/// half with the head), so that at any instant many are half sent, and the
/// client rests [`REST`] after each answer: enough traffic to keep every
/// connection busy without starving the other threads of the machine.
fn busy_client(
    mut stream: TcpStream,
    conn: usize,
    stop: &AtomicBool,
) -> Result<(SocketAddr, Vec<Sent>)> {
    let client = stream.local_addr()?;
    let host = stream.peer_addr()?.to_string();
    let mut sent = Vec::new();
    let mut response = vec![0; RESPONSE.len()];
    while !stop.load(Ordering::Acquire) {
        let (id, head, body) = busy_request(&host, conn, sent.len());
        let wire = [head.as_slice(), &body].concat();
        let split = head.len() + body.len() / 2;
        let started = Instant::now();
        stream.write_all(&wire[..split])?;
        if split < wire.len() {
            std::thread::sleep(SPLIT_PAUSE);
            stream.write_all(&wire[split..])?;
        }
        stream
            .read_exact(&mut response)
            .with_context(|| format!("response to {id}"))?;
        ensure!(
            response == RESPONSE,
            "response to {id}: {}",
            show(&response)
        );
        sent.push(Sent {
            id,
            head,
            body,
            started,
        });
        std::thread::sleep(REST);
    }
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok((client, sent))
}

#[test]
fn capture_joining_busy_keep_alive_connections_extracts_every_later_request() -> Result<()> {
    require_kernel!();
    let topology = Topology::new()?;
    let server = Server::start(&topology.server, topology.server_addr(Family::V4, PORT))?;
    let streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| tcp::connect(&topology.client, server.addr()))
        .collect::<Result<_>>()?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (capture, clients) = std::thread::scope(|scope| -> Result<_> {
        let threads: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(conn, stream)| {
                let stop = &stop;
                scope.spawn(move || busy_client(stream, conn, stop))
            })
            .collect();
        std::thread::sleep(BEFORE_ATTACH);
        // The raw records too, to know where in each connection the
        // capture began.
        let capture = start_capture_into(&topology, Tee(Collector::default(), new_table()));
        if capture.is_ok() {
            std::thread::sleep(AFTER_ATTACH);
        }
        stop.store(true, Ordering::Release);
        let clients: Vec<(SocketAddr, Vec<Sent>)> = threads
            .into_iter()
            .map(|t| t.join().expect("client thread panicked"))
            .collect::<Result<_>>()?;
        Ok((capture?, clients))
    })?;
    let attached_at = capture.attached_at();
    let received = server.stop()?;
    let finished = finish(capture)?;
    let Tee(collector, table) = finished.sink;
    let extracted = Extracted::new(table, finished.counters);
    let raw = collector.into_flows();

    // The server got what the clients sent.
    let by_client: BTreeMap<SocketAddr, &Vec<ReceivedRequest>> = received
        .connections
        .iter()
        .map(|c| (c.client, &c.requests))
        .collect();
    ensure!(by_client.len() == CONNECTIONS);
    for (client, sent) in &clients {
        let got = by_client
            .get(client)
            .with_context(|| format!("{client} not received"))?;
        ensure!(
            got.len() == sent.len(),
            "{client}: {} received, {} sent",
            got.len(),
            sent.len()
        );
        for (s, g) in sent.iter().zip(got.iter()) {
            ensure!(
                s.head == g.head && s.body == g.body,
                "{client}: {} received otherwise",
                s.id
            );
        }
    }

    // Per connection: the first segment the capture saw proves nothing
    // (it may be anywhere in an upload), so the request it lies in is lost
    // (one midstream_join); every request after it is extracted, exactly.
    let mut extracted_by_client: BTreeMap<SocketAddr, Vec<&Request>> = BTreeMap::new();
    for request in &extracted.requests {
        extracted_by_client
            .entry(request.flow.key.client)
            .or_default()
            .push(request);
    }
    let (mut after_attach, mut joined, mut early) = (0, 0, 0);
    for (client, sent) in &clients {
        let first_after = sent.partition_point(|s| s.started < attached_at);
        after_attach += sent.len() - first_after;
        let got = extracted_by_client.remove(client).unwrap_or_default();
        let first_chunk = raw
            .iter()
            .find(|(key, _)| key.client == *client)
            .and_then(|(_, flow)| flow.data.first());
        let Some(first_chunk) = first_chunk else {
            ensure!(
                first_after == sent.len() && got.is_empty(),
                "{client}: nothing captured"
            );
            continue;
        };
        joined += 1;
        let Some(first) = got.first() else {
            bail!("{client}: nothing extracted of {} requests", sent.len());
        };
        let id = first
            .header(ID_HEADER)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let start = sent
            .iter()
            .position(|s| Some(&s.id) == id.as_ref())
            .with_context(|| {
                format!(
                    "{client}: extracted a request never sent: {}",
                    show(&first.head)
                )
            })?;
        // It began in the request before the first extracted one.
        let inside = start
            .checked_sub(1)
            .map(|i| [sent[i].head.as_slice(), &sent[i].body].concat())
            .is_some_and(|wire| {
                wire.windows(first_chunk.bytes.len())
                    .any(|w| w == first_chunk.bytes)
            });
        ensure!(
            inside,
            "{client}: the capture began at {:?}, extraction at {}",
            show(&first_chunk.bytes[..first_chunk.bytes.len().min(40)]),
            sent[start].id
        );
        // At worst the first request started after the attach is the one
        // the capture began in.
        ensure!(
            start <= first_after + 1,
            "{client}: extraction starts at request {start}, {first_after} started before the attach"
        );
        early += first_after.saturating_sub(start);
        ensure!(
            start + got.len() == sent.len(),
            "{client}: {} extracted from request {start}, {} sent",
            got.len(),
            sent.len()
        );
        for (got, sent) in got.iter().zip(&sent[start..]) {
            let as_sent = ReceivedRequest {
                head: sent.head.clone(),
                body: sent.body.clone(),
                chunked: false,
                trailers: Vec::new(),
            };
            same_request(got, &as_sent)
                .with_context(|| format!("{client}: request {}", sent.id))?;
        }
    }
    ensure!(
        extracted_by_client.is_empty(),
        "requests from unknown clients: {:?}",
        extracted_by_client.keys()
    );

    let stats = &extracted.stats;
    let dropped = drops(stats);
    let midstream = stats.http.dropped.get(SkipReason::MidstreamJoin);
    ensure!(
        dropped
            .keys()
            .all(|r| *r == SkipReason::MidstreamJoin.as_str()),
        "drops other than midstream joins: {dropped:?}"
    );
    ensure!(
        midstream == joined as u64,
        "{midstream} midstream_join drops for {joined} connections joined"
    );
    ensure!(
        stats.http.resyncs == joined as u64,
        "{} resyncs for {joined} connections joined",
        stats.http.resyncs
    );
    ensure!(stats.http.requests == extracted.requests.len() as u64);
    let flow = &stats.flow;
    ensure!(
        flow.flows_started == CONNECTIONS as u64 && flow.midstream_joins == CONNECTIONS as u64,
        "{flow:?}"
    );
    ensure!(
        flow.ended(FlowEndReason::Fin) == CONNECTIONS as u64,
        "{flow:?}"
    );
    ensure!(flow.gaps == 0 && flow.holes_abandoned == 0, "{flow:?}");
    let total: usize = clients.iter().map(|(_, s)| s.len()).sum();
    eprintln!(
        "{total} requests sent in {:?}, {after_attach} after the attach; {} extracted ({early} \
         started before the attach) on {joined} connections joined",
        started.elapsed(),
        extracted.requests.len()
    );
    Ok(())
}
