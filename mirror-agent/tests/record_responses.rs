//! `mirror-agent record --input-pcap --responses` through the binary, no
//! kernel and no root: a capture file made here holds both directions of
//! a connection (pipelined requests, answers in one segment, a HEAD's
//! answer without a body, a chunked one); the recording must hold each
//! request as type 1 and v1's answer to it, byte for byte, as type 2 with
//! the same id.

use std::path::PathBuf;
use std::process::Command;

use mirror_agent::file::{PayloadKind, PayloadReader};

mod pcap_file;

use pcap_file::{PORT, frame, pcap};

/// A capture of one connection: each
/// `(to_server, bytes)` one segment, after the handshake.
fn capture(segments: &[(bool, &[u8])]) -> Vec<u8> {
    let (mut client_seq, mut server_seq) = (100u32, 500u32);
    let mut frames = vec![
        frame(true, client_seq - 1, 0x02, b""),
        frame(false, server_seq - 1, 0x12, b""),
    ];
    for (to_server, bytes) in segments {
        let seq = if *to_server {
            &mut client_seq
        } else {
            &mut server_seq
        };
        frames.push(frame(*to_server, *seq, 0x18, bytes));
        *seq += bytes.len() as u32;
    }
    frames.push(frame(true, client_seq, 0x11, b""));
    frames.push(frame(false, server_seq, 0x11, b""));
    pcap(&frames)
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mirror-rec-resp-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_pcap_with_both_directions_records_each_answer_with_its_requests_id() {
    let get = b"GET /a HTTP/1.1\r\nHost: v1\r\n\r\n".as_slice();
    let head = b"HEAD /b HTTP/1.1\r\nHost: v1\r\n\r\n".as_slice();
    let post = b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nx\r\n".as_slice();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".as_slice();
    // The HEAD's answer announces a body it does not carry.
    let head_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".as_slice();
    let created = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\
Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        .as_slice();
    let pipelined = [head, post].concat();
    let answers = [head_ok, created].concat();
    let pcap = capture(&[
        (true, get),
        (false, ok),
        (true, &pipelined),
        (false, &answers),
    ]);
    let dir = scratch();
    let input = dir.join("both.pcap");
    std::fs::write(&input, pcap).unwrap();
    let output = dir.join("out.gor");
    let run = Command::new(env!("CARGO_BIN_EXE_mirror-agent"))
        .args(["record", "--input-pcap"])
        .arg(&input)
        .args(["--port", &PORT.to_string(), "--responses", "--output"])
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("final counts: target=file captured=3 written=3 "),
        "{stdout}"
    );
    assert!(
        stdout.contains("final counts: responses_written=3 responses_dropped=0"),
        "{stdout}"
    );
    let payloads: Vec<_> = PayloadReader::open(&output, 1 << 20)
        .unwrap()
        .map(|p| p.unwrap().unwrap())
        .collect();
    let seen: Vec<(PayloadKind, &[u8])> = payloads
        .iter()
        .map(|p| (p.meta.kind, p.data.as_slice()))
        .collect();
    use PayloadKind::{Request as Q, Response as A};
    assert_eq!(
        seen,
        [
            (Q, get),
            (A, ok),
            (Q, head),
            (Q, post),
            (A, head_ok),
            (A, created)
        ]
    );
    let id = |i: usize| payloads[i].meta.id.as_str();
    assert_eq!((id(1), id(4), id(5)), (id(0), id(2), id(3)));
    // 1 ms between frames: the GET's answer came a frame after it.
    assert_eq!(payloads[1].meta.latency_ns, 1_000_000);
    let _ = std::fs::remove_dir_all(&dir);
}
