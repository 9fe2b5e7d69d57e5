//! Capture files made by the tests that feed `mirror-agent record
//! --input-pcap`: one IPv4 TCP connection between 10.200.0.1:40000 (the
//! client) and 10.200.0.2:8080 (the service), as tcpdump writes it; and
//! the agent's binary that reads them, and a local target for its replays.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

/// The service's port.
pub const PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40_000;

/// An Ethernet + IPv4 + TCP frame, client → service or back.
pub fn frame(to_server: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (client, server) = ([10, 200, 0, 1], [10, 200, 0, 2]);
    let (src, dst, sport, dport) = match to_server {
        true => (client, server, CLIENT_PORT, PORT),
        false => (server, client, PORT, CLIENT_PORT),
    };
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    let total = (20 + 20 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A classic pcap (microseconds, Ethernet) of `frames`, 1 ms apart.
pub fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    pcap_snaplen(frames, 65_535)
}

/// [`pcap`] as tcpdump `-s snaplen` writes it: each frame cut to
/// `snaplen` bytes, its length on the wire kept.
pub fn pcap_snaplen(frames: &[Vec<u8>], snaplen: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(snaplen as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        let ts_us = 1_700_000_000_000_000u64 + i as u64 * 1000;
        let captured = f.len().min(snaplen);
        out.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(captured as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f[..captured]);
    }
    out
}

/// A capture of one connection: each
/// `(to_server, bytes)` one segment, after the handshake.
// Not every test binary that includes this module builds whole captures.
#[allow(dead_code)]
pub fn capture(segments: &[(bool, &[u8])]) -> Vec<u8> {
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

/// An empty directory of this test process, `mirror-{name}-{pid}` under
/// the system's temporary directory.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mirror-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The agent's binary, for a command line.
pub fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mirror-agent"))
}

/// Runs `command` to its end, which must be a success (else both its
/// outputs are shown); its standard output.
// Not every test binary that includes this module checks a success.
#[allow(dead_code)]
pub fn succeeds(command: &mut Command) -> String {
    let run = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// A target on 127.0.0.1 that answers `answer` to each request (heads
/// without a body) on every connection; its address. (Only the replaying
/// tests use it.)
#[allow(dead_code)]
pub fn target(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}
