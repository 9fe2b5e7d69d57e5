use std::io::Cursor;

use super::*;

/// An Ethernet frame with an IPv4 or IPv6 TCP segment.
fn frame(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + tcp.len()) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!("one family"),
    }
    f.extend_from_slice(&tcp);
    f
}

fn pcap(frames: &[(u64, Vec<u8>)], snaplen: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(snaplen as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (ts_us, f) in frames {
        let cap = f.len().min(snaplen);
        out.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(cap as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f[..cap]);
    }
    out
}

/// pcapng, big-endian, nanosecond resolution (if_tsresol 9).
fn pcapng(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let total = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&total.to_be_bytes());
    };
    let mut shb = 0x1a2b_3c4du32.to_be_bytes().to_vec();
    shb.extend_from_slice(&[0, 1, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_be_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = vec![0, 1, 0, 0, 0, 0, 0xff, 0xff];
    idb.extend_from_slice(&[0, 9, 0, 1, 9, 0, 0, 0, 0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    // A block we do not read (name resolution) in between.
    block(&mut out, 4, &[0, 0, 0, 0]);
    for (ts_ns, f) in frames {
        let mut epb = 0u32.to_be_bytes().to_vec();
        epb.extend_from_slice(&((ts_ns >> 32) as u32).to_be_bytes());
        epb.extend_from_slice(&(*ts_ns as u32).to_be_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_be_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_be_bytes());
        epb.extend_from_slice(f);
        while !epb.len().is_multiple_of(4) {
            epb.push(0);
        }
        block(&mut out, 6, &epb);
    }
    out
}

#[derive(Default)]
struct Seen(Vec<(FlowKey, Direction, u64, String)>);

impl EventSink for Seen {
    fn on_event(&mut self, e: &Event<'_>) {
        let what = match e.kind {
            EventKind::Data { seq, payload } => {
                format!("data {seq} {}", String::from_utf8_lossy(payload))
            }
            EventKind::Control { seq, flags, .. } => format!("control {seq} {flags:#x}"),
            EventKind::Truncated { seq, len } => format!("truncated {seq} {len}"),
        };
        self.0.push((e.flow, e.direction, e.timestamp_ns, what));
    }
}

fn events(file: Vec<u8>, ports: &[u16], responses: bool) -> (Seen, PacketStats) {
    let mut reader = PacketReader::new(Cursor::new(file)).expect("a capture file");
    let mut segments = Segments::new(ports.to_vec(), responses);
    let mut seen = Seen::default();
    while let Some(packet) = reader.next_packet().expect("well formed") {
        segments.emit(&packet, &mut seen);
    }
    (seen, segments.stats)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn a_pcap_gives_the_events_the_kernel_would_both_directions_by_port() {
    let (c, s) = (addr("10.200.0.1:40000"), addr("10.200.0.2:80"));
    let file = pcap(
        &[
            (1_000_000, frame(c, s, 99, TCP_SYN, b"")),
            (1_000_500, frame(c, s, 100, 0x18, b"GET / HTTP/1.1\r\n\r\n")),
            (1_001_000, frame(s, c, 5000, 0x18, b"HTTP/1.1 200 OK\r\n")),
            (
                1_002_000,
                frame(addr("10.200.0.1:1"), addr("10.200.0.2:22"), 1, 0x18, b"ssh"),
            ),
            (1_003_000, frame(c, s, 118, 0x11, b"")),
        ],
        65535,
    );
    let (seen, stats) = events(file.clone(), &[80], false);
    let flow = FlowKey {
        client: c,
        server: s,
    };
    let got: Vec<_> = seen.0.iter().map(|e| (e.1, e.2, e.3.as_str())).collect();
    assert_eq!(
        got,
        [
            (Direction::ToServer, 1_000_000_000, "control 99 0x2"),
            (
                Direction::ToServer,
                1_000_500_000,
                "data 100 GET / HTTP/1.1\r\n\r\n"
            ),
            (Direction::ToServer, 1_003_000_000, "control 118 0x11"),
        ]
    );
    assert!(seen.0.iter().all(|e| e.0 == flow));
    assert_eq!((stats.packets, stats.matched, stats.other), (5, 3, 2));

    let (seen, _) = events(file, &[80], true);
    let response = seen
        .0
        .iter()
        .find(|e| e.1 == Direction::ToClient)
        .expect("v1's response");
    assert_eq!(response.0, flow, "keyed client → server");
    assert_eq!(response.3, "data 5000 HTTP/1.1 200 OK\r\n");
}

#[test]
fn a_pcapng_with_ipv6_and_nanosecond_timestamps_is_read() {
    let (c, s) = (addr("[fd00:200::1]:40000"), addr("[fd00:200::2]:8080"));
    let file = pcapng(&[(
        1_700_000_000_123_456_789,
        frame(c, s, 7, 0x18, b"GET /v6 HTTP/1.1\r\n\r\n"),
    )]);
    let (seen, stats) = events(file, &[8080], false);
    assert_eq!(stats.matched, 1);
    assert_eq!(
        seen.0[0].0,
        FlowKey {
            client: c,
            server: s
        }
    );
    assert_eq!(seen.0[0].2, 1_700_000_000_123_456_789);
    assert_eq!(seen.0[0].3, "data 7 GET /v6 HTTP/1.1\r\n\r\n");
}

#[test]
fn bytes_cut_by_the_snap_length_become_a_known_gap() {
    let (c, s) = (addr("10.200.0.1:40000"), addr("10.200.0.2:80"));
    let payload = [b'a'; 200];
    let file = pcap(&[(0, frame(c, s, 1000, 0x18, &payload))], 14 + 20 + 20 + 50);
    let (seen, stats) = events(file, &[80], false);
    let what: Vec<&str> = seen.0.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(
        what,
        [
            format!("data 1000 {}", "a".repeat(50)).as_str(),
            "truncated 1050 150"
        ]
    );
    assert_eq!(stats.cut_bytes, 150);
}

#[test]
fn what_is_not_a_capture_file_is_refused_in_one_sentence() {
    let refused = |bytes: &[u8]| match PacketReader::new(Cursor::new(bytes.to_vec())) {
        Err(err) => err.to_string(),
        Ok(_) => panic!("{bytes:?} read as a capture"),
    };
    assert!(
        refused(b"GET / HTTP/1.1\r\n\r\n").starts_with("not a pcap or pcapng file (magic"),
        "not a capture"
    );
    assert_eq!(refused(b""), "the file is empty: not a pcap or pcapng file");
    assert_eq!(
        refused(&[0xd4, 0xc3]),
        "not a pcap or pcapng file: it ends inside its file header (2 bytes)"
    );
    let header = pcap(&[], 65535);
    assert_eq!(
        refused(&header[..10]),
        "not a pcap or pcapng file: it ends inside its file header (10 bytes)"
    );
    let ng = pcapng(&[]);
    assert!(
        refused(&ng[..20]).contains("ends inside its file header"),
        "pcapng cut in its section header"
    );
    // Garbage frames are not segments, and do not panic.
    for len in 0..60 {
        let junk = vec![0x45u8; len];
        for link in [
            LINK_ETHERNET,
            LINK_RAW,
            LINK_LINUX_SLL,
            LINK_LINUX_SLL2,
            LINK_NULL,
        ] {
            let _ = segment(link, &junk, len as u32);
        }
    }
}

/// The packets of `file` and the notes on it.
fn notes(file: Vec<u8>, ports: &[u16]) -> (Vec<Packet>, Vec<String>) {
    let mut reader = PacketReader::new(Cursor::new(file)).expect("a capture file");
    let mut segments = Segments::new(ports.to_vec(), false);
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet().expect("read to its end") {
        segments.emit(&packet, &mut Seen::default());
        packets.push(packet);
    }
    (packets, segments.notes(&reader))
}

#[test]
fn a_capture_cut_inside_its_last_packet_is_read_up_to_it_with_a_note() {
    let (c, s) = (addr("10.200.0.1:40000"), addr("10.200.0.2:80"));
    let frames: Vec<_> = (0..3u32)
        .map(|i| {
            (
                u64::from(i),
                frame(c, s, 1 + 18 * i, 0x18, b"GET / HTTP/1.1\r\n\r\n"),
            )
        })
        .collect();
    let whole = pcap(&frames, 65535);
    let last_at = (whole.len() - (16 + frames[2].1.len())) as u64;
    // Cut inside the last packet's data, and inside its record header.
    for cut in [5, frames[2].1.len() + 10] {
        let (packets, said) = notes(whole[..whole.len() - cut].to_vec(), &[80]);
        assert_eq!(packets.len(), 2);
        assert_eq!(said.len(), 1, "{said:?}");
        let present = 16 + frames[2].1.len() - cut;
        assert!(
            said[0].starts_with(&format!(
                "the capture ends inside its last packet (byte {last_at}, {present} bytes of it"
            )),
            "{said:?}"
        );
        assert!(
            said[0].contains("the 2 packets before it were read"),
            "{said:?}"
        );
    }
    // A pcapng cut inside a block: the same.
    let ng = pcapng(
        &frames
            .iter()
            .map(|(t, f)| (*t, f.clone()))
            .collect::<Vec<_>>(),
    );
    let (packets, said) = notes(ng[..ng.len() - 7].to_vec(), &[80]);
    assert_eq!(packets.len(), 2);
    assert!(said[0].contains("ends inside its last packet"), "{said:?}");
    // Whole: nothing to say.
    let (packets, said) = notes(whole, &[80]);
    assert_eq!((packets.len(), said.len()), (3, 0), "{said:?}");
}

#[test]
fn no_packets_no_port_and_a_small_snaplen_are_each_said() {
    let (_, said) = notes(pcap(&[], 65535), &[80]);
    assert_eq!(
        said,
        ["the capture holds no packets (only its file header): nothing to read"]
    );
    let (c, s) = (addr("10.200.0.1:40000"), addr("10.200.0.2:80"));
    let get = frame(c, s, 1, 0x18, &[b'a'; 100]);
    let (_, said) = notes(pcap(&[(0, get.clone())], 65535), &[8080, 8081]);
    assert_eq!(
        said,
        ["none of its 1 packets is TCP of port 8080 or 8081: is --port the service's port?"]
    );
    let (_, said) = notes(pcap(&[(0, get.clone()), (1, get)], 64), &[80]);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with(
            "the capture was taken with snaplen 64: payload bytes were cut (180 bytes of 2 packets;"
        ),
        "{said:?}"
    );
    assert!(said[0].ends_with("capture with -s 0"), "{said:?}");
}
