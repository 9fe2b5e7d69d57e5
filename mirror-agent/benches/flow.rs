//! Throughput of reassembly + framing (issue 3 goals: ≥ 1 M in-order
//! 300-byte GETs/s/core, ≥ 2 GB/s of 1 MB POST bodies).
//!
//! Run: `cargo bench -p mirror-agent --bench flow`. Events are built the way
//! the capture stage hands them over (payload borrowed, at most
//! `CHUNK_SIZE` bytes per record); the sink only counts, so the figures are
//! the cost of the flow and http stages alone.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mirror_agent::capture::{Direction, Event, EventKind, EventSink, FlowKey};
use mirror_agent::flow::FlowConfig;
use mirror_agent::http::testing::{FramedTable, framed_table};
use mirror_agent::http::{Request, RequestSink};
use mirror_common::{CHUNK_SIZE, TCP_ACK, TCP_PSH, TCP_SYN};

#[derive(Default)]
struct Count {
    requests: u64,
    bytes: u64,
}

impl RequestSink for Count {
    fn on_request(&mut self, request: Request) {
        self.requests += 1;
        self.bytes += (request.head.len() + request.body.len()) as u64;
        black_box(&request);
    }
}

fn key() -> FlowKey {
    FlowKey {
        client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), 40_000)),
        server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
    }
}

/// A 300-byte GET, as a browser-ish client sends it.
fn get_300() -> Vec<u8> {
    let mut req = b"GET /api/v1/items/12345?fields=name,price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, br\r\n\
X-Request-ID: 0123456789abcdef\r\n"
        .to_vec();
    let pad = 300 - req.len() - b"X-Pad: \r\n\r\n".len();
    req.extend_from_slice(b"X-Pad: ");
    req.extend(std::iter::repeat_n(b'p', pad));
    req.extend_from_slice(b"\r\n\r\n");
    assert_eq!(req.len(), 300);
    req
}

fn post_1mb() -> Vec<u8> {
    let body_len = 1_000_000;
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: shop.example.com\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    req.extend((0..body_len).map(|i| (i % 251) as u8));
    req
}

/// Feeds `stream` cut into `segment`-byte records, continuing the sequence
/// space across iterations.
struct Feeder {
    table: FramedTable<Count>,
    seq: u32,
    ts: u64,
}

impl Feeder {
    fn new() -> Self {
        let mut table = framed_table(FlowConfig::default(), Count::default());
        let isn = 1_000;
        table.on_event(&Event {
            flow: key(),
            timestamp_ns: 1,
            ifindex: 1,
            direction: Direction::ToServer,
            tcp_flags: TCP_SYN,
            kind: EventKind::Control {
                seq: isn,
                payload_len: 0,
                flags: TCP_SYN,
            },
        });
        Self {
            table,
            seq: isn + 1,
            ts: 1,
        }
    }

    fn feed(&mut self, stream: &[u8], segment: usize) {
        let flow = key();
        for payload in stream.chunks(segment) {
            self.ts += 1_000;
            self.table.on_event(&Event {
                flow,
                timestamp_ns: self.ts,
                ifindex: 1,
                direction: Direction::ToServer,
                tcp_flags: TCP_ACK | TCP_PSH,
                kind: EventKind::Data {
                    seq: self.seq,
                    payload,
                },
            });
            self.seq = self.seq.wrapping_add(payload.len() as u32);
        }
    }
}

fn bench(c: &mut Criterion) {
    let get = get_300();
    let pipelined: Vec<u8> = get.repeat(1_000);

    let mut g = c.benchmark_group("get_300b");
    g.throughput(Throughput::Elements(1_000));
    // One request per segment: a keep-alive client waiting for each answer.
    g.bench_function("one_per_segment", |b| {
        let mut f = Feeder::new();
        b.iter(|| f.feed(&pipelined, get.len()));
        assert!(f.table.consumer().sink().requests > 0);
        assert_eq!(f.table.consumer().stats().dropped.total(), 0);
    });
    // Pipelined: full 4 KiB ring records, requests straddling records.
    g.bench_function("pipelined_4k_records", |b| {
        let mut f = Feeder::new();
        b.iter(|| f.feed(&pipelined, CHUNK_SIZE));
        assert_eq!(f.table.consumer().stats().dropped.total(), 0);
    });
    g.finish();

    let post = post_1mb();
    let mut g = c.benchmark_group("post_1mb");
    g.throughput(Throughput::Bytes(post.len() as u64));
    g.sample_size(50);
    g.bench_function("4k_records", |b| {
        let mut f = Feeder::new();
        b.iter(|| f.feed(&post, CHUNK_SIZE));
        assert_eq!(f.table.consumer().stats().dropped.total(), 0);
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
