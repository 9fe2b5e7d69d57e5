use std::io::Cursor;

use super::*;

fn meta(kind: PayloadKind, id: &str, ts: i64, latency: i64) -> PayloadMeta {
    PayloadMeta {
        kind,
        id: id.to_owned(),
        timestamp_ns: ts,
        latency_ns: latency,
    }
}

/// Appends to `file` the request `data` with that id and timestamp.
fn push_request(file: &mut Vec<u8>, id: &str, ts: i64, data: &[u8]) {
    encode(&meta(PayloadKind::Request, id, ts, -1), data, file).unwrap();
}

/// Appends `parts` as they are (no payload framing); returns the offset
/// where they start.
fn push_bytes(file: &mut Vec<u8>, parts: &[&[u8]]) -> u64 {
    let at = file.len() as u64;
    for part in parts {
        file.extend_from_slice(part);
    }
    at
}

fn read_all(bytes: &[u8], max_payload: usize) -> Vec<Item> {
    PayloadReader::new(Cursor::new(bytes.to_vec()), max_payload)
        .map(|item| item.expect("reading from memory does not fail"))
        .collect()
}

/// A reader that hands out one byte per read: every separator straddles
/// reads.
struct Trickle(Vec<u8>, usize);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.1 >= self.0.len() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[self.1];
        self.1 += 1;
        Ok(1)
    }
}

#[test]
fn payloads_written_are_read_back_equal_also_in_one_byte_reads() {
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut post = b"POST /up HTTP/1.1\r\nContent-Length: 3000\r\n\r\n".to_vec();
    post.extend_from_slice(&body);
    let payloads = [
        (
            meta(PayloadKind::Request, "a1", 1_700_000_000_000_000_000, -1),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            meta(
                PayloadKind::Response,
                "a1",
                1_700_000_000_100_000_000,
                2_500_000,
            ),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            meta(PayloadKind::Request, "b2", 1_700_000_001_000_000_000, -1),
            post,
        ),
        (
            meta(PayloadKind::Request, "c3", 1_700_000_002_000_000_000, -1),
            Vec::new(),
        ),
    ];
    let mut file = Vec::new();
    for (m, data) in &payloads {
        encode(m, data, &mut file).expect("no separator inside");
    }
    for items in [
        read_all(&file, 1 << 20),
        PayloadReader::new(Trickle(file.clone(), 0), 1 << 20)
            .map(|i| i.unwrap())
            .collect(),
    ] {
        let read: Vec<(PayloadMeta, Vec<u8>)> = items
            .into_iter()
            .map(|item| {
                let p = item.expect("well formed");
                (p.meta, p.data)
            })
            .collect();
        assert_eq!(read, payloads.to_vec());
    }
}

#[test]
fn a_file_written_by_hand_per_goreplays_format_is_read_with_binary_and_crlf_bodies() {
    // As goreplay writes it: type, 24 hex digits of id, Unix ns, latency.
    let mut file = Vec::new();
    file.extend_from_slice(b"1 8a3f0c1d2e4b5a6978877665 1690000000123456789 -1\n");
    file.extend_from_slice(
        b"POST /bin HTTP/1.1\r\nContent-Length: 10\r\n\r\n\x00\xff\r\n\r\n\n\x01\x02\x03",
    );
    file.extend_from_slice("\n🐵🙈🙉\n".as_bytes());
    // An older goreplay: no latency field.
    file.extend_from_slice(b"1 0011223344556677889900aa 1690000000200000000\n");
    file.extend_from_slice(b"GET /old HTTP/1.1\r\n\r\n");
    file.extend_from_slice("\n🐵🙈🙉\n".as_bytes());
    // A response with its latency, then a fork's extra field.
    file.extend_from_slice(b"2 0011223344556677889900aa 1690000000300000000 1500000 10.0.0.1\n");
    file.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    file.extend_from_slice("\n🐵🙈🙉\n".as_bytes());
    let items = read_all(&file, 1 << 20);
    assert_eq!(items.len(), 3);
    let first = items[0].as_ref().expect("valid");
    assert_eq!(
        first.meta,
        meta(
            PayloadKind::Request,
            "8a3f0c1d2e4b5a6978877665",
            1690000000123456789,
            -1
        )
    );
    assert_eq!(
        first.data,
        b"POST /bin HTTP/1.1\r\nContent-Length: 10\r\n\r\n\x00\xff\r\n\r\n\n\x01\x02\x03"
    );
    assert_eq!(first.at, Position { offset: 0, line: 1 });
    let second = items[1].as_ref().expect("valid");
    assert_eq!(second.meta.latency_ns, -1);
    assert_eq!(second.data, b"GET /old HTTP/1.1\r\n\r\n");
    let third = items[2].as_ref().expect("valid");
    assert_eq!(third.meta.kind, PayloadKind::Response);
    assert_eq!(third.meta.latency_ns, 1_500_000);
}

#[test]
fn a_malformed_payload_is_reported_with_its_offset_and_line_and_the_next_ones_are_read() {
    let mut file = Vec::new();
    push_request(&mut file, "ok1", 1, b"GET /1 HTTP/1.1\r\n\r\n");
    let bad = b"9 zz notanumber\nGET /bad HTTP/1.1\r\n\r\n";
    let bad_offset = push_bytes(&mut file, &[bad, SEPARATOR]);
    let bad_ts = b"1 id2 12x -1\nGET /bad2 HTTP/1.1\r\n\r\n";
    let bad_ts_offset = push_bytes(&mut file, &[bad_ts, SEPARATOR]);
    push_request(&mut file, "ok2", 2, b"GET /2 HTTP/1.1\r\n\r\n");
    let items = read_all(&file, 1 << 20);
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].as_ref().unwrap().meta.id, "ok1");
    let bad = items[1].as_ref().unwrap_err();
    // Five newlines before it (the header line's, the request line's, the
    // empty line's, the separator's two): the bad payload is on line 6.
    assert_eq!(
        bad.at,
        Position {
            offset: bad_offset,
            line: 6
        }
    );
    assert!(
        bad.to_string()
            .contains(&format!("byte {bad_offset} (line 6)")),
        "{bad}"
    );
    assert!(bad.reason.contains("type is not 1, 2 or 3"), "{bad}");
    let bad2 = items[2].as_ref().unwrap_err();
    assert_eq!(bad2.at.offset, bad_ts_offset);
    assert!(bad2.reason.contains("timestamp"), "{bad2}");
    assert_eq!(items[3].as_ref().unwrap().data, b"GET /2 HTTP/1.1\r\n\r\n");
}

#[test]
fn a_cut_file_reports_its_last_payload_and_keeps_the_complete_ones() {
    let mut file = Vec::new();
    push_request(&mut file, "a", 1, b"GET / HTTP/1.1\r\n\r\n");
    let cut = b"1 b 2 -1\nPOST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc";
    let cut_at = push_bytes(&mut file, &[cut]);
    let items = read_all(&file, 1 << 20);
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    let cut = items[1].as_ref().unwrap_err();
    assert_eq!(cut.at.offset, cut_at);
    assert!(cut.reason.contains("was cut"), "{cut}");
}

#[test]
fn a_payload_over_the_limit_is_skipped_without_holding_it() {
    let mut file = Vec::new();
    push_request(&mut file, "big", 1, &[b'x'; 5000]);
    push_request(&mut file, "small", 2, b"GET / HTTP/1.1\r\n\r\n");
    let items: Vec<Item> = PayloadReader::new(Trickle(file, 0), 1000)
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(items.len(), 2);
    let big = items[0].as_ref().unwrap_err();
    assert_eq!(big.at.offset, 0);
    assert!(big.reason.contains("longer than 1000"), "{big}");
    assert_eq!(items[1].as_ref().unwrap().meta.id, "small");
}

#[test]
fn data_that_contains_the_separator_is_refused_and_nothing_is_written() {
    let mut out = b"before".to_vec();
    let mut data = b"POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n".to_vec();
    data.extend_from_slice(SEPARATOR);
    let err = encode(&meta(PayloadKind::Request, "x", 1, -1), &data, &mut out).unwrap_err();
    assert!(matches!(err, WriteError::ContainsSeparator));
    assert_eq!(out, b"before");
}

#[test]
fn gzip_files_round_trip_through_the_file_system() {
    let dir = std::env::temp_dir().join(format!("mirror-gor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["plain.gor", "packed.gor.gz"] {
        let path = dir.join(name);
        let mut writer = PayloadWriter::create(&path).unwrap();
        let mut bytes = Vec::new();
        for i in 0..100 {
            bytes.clear();
            let data = format!("GET /{i} HTTP/1.1\r\n\r\n");
            encode(
                &meta(PayloadKind::Request, &format!("{i:024x}"), i, -1),
                data.as_bytes(),
                &mut bytes,
            )
            .unwrap();
            writer.write_encoded(&bytes).unwrap();
        }
        writer.finish().unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(
            name.ends_with(".gz"),
            raw.starts_with(&[0x1f, 0x8b]),
            "{name}"
        );
        let read: Vec<Payload> = PayloadReader::open(&path, 1 << 20)
            .unwrap()
            .map(|i| i.unwrap().unwrap())
            .collect();
        assert_eq!(read.len(), 100, "{name}");
        assert_eq!(read[42].data, b"GET /42 HTTP/1.1\r\n\r\n");
        assert_eq!(read[42].meta.timestamp_ns, 42);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The error of the first read of `input`, which must be [`NotGor`].
fn not_gor(input: impl Read) -> String {
    let err = PayloadReader::new(input, 1 << 20)
        .next_item()
        .expect_err("not a goreplay file");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err.get_ref().expect("a NotGor inside");
    assert!(inner.is::<NotGor>(), "{inner}");
    err.to_string()
}

#[test]
fn a_file_that_does_not_start_with_a_payload_header_is_not_a_goreplay_file() {
    // Random bytes (a fixed sample: no line end in the first 4 KiB).
    let mut noise = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push((x as u8) | 0x80);
    }
    let said = not_gor(Cursor::new(noise));
    assert!(
        said.starts_with("not a goreplay file: its first 4096 bytes"),
        "{said}"
    );
    // Control bytes are escaped, not written to the terminal.
    assert!(!said.chars().any(|c| c.is_control()), "{said}");
    // /dev/zero: refused after its first read, not read forever.
    let said = not_gor(io::repeat(0));
    assert!(said.contains(r"\x00\x00"), "{said}");
    // Another text format, with lines.
    let said = not_gor(Cursor::new(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()));
    assert!(
        said.contains(r"its first line `GET / HTTP/1.1\r` is not a payload header"),
        "{said}"
    );
    let said = not_gor(Cursor::new(b"{\"method\":\"GET\"}\n".to_vec()));
    assert!(
        said.contains(r#"its first line `{"method":"GET"}` is not a payload header"#),
        "{said}"
    );
    let said = not_gor(Cursor::new(b"short".to_vec()));
    assert!(
        said.contains("its 5 bytes hold no payload header line"),
        "{said}"
    );
}

#[test]
fn a_goreplay_file_converted_to_crlf_is_named_as_such() {
    let mut file = Vec::new();
    push_request(&mut file, "a", 1, b"GET /1 HTTP/1.1\r\n\r\n");
    push_request(&mut file, "b", 2, b"GET /2 HTTP/1.1\r\n\r\n");
    // What unix2dos or git's autocrlf do: every LF becomes CRLF.
    let mut crlf = Vec::new();
    for &b in &file {
        if b == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    let said = not_gor(Cursor::new(crlf));
    assert!(
        said.starts_with("not a goreplay file: its lines end in CRLF"),
        "{said}"
    );
    // Unconverted, it reads; and an empty file is a recording of nothing.
    assert_eq!(read_all(&file, 1 << 20).len(), 2);
    assert!(read_all(b"", 1 << 20).is_empty());
}
