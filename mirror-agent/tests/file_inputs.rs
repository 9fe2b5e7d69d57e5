//! File inputs say what happened (through the binary, no kernel, no root):
//! a capture cut inside its last packet is read up to it with a warning
//! (exit 0); an empty capture, random bytes and a CRLF-converted `.gor`
//! are refused in one sentence (exit 1); a capture without packets and one
//! taken with a small snap length are each named as such.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

// Only its targets and runs with a deadline here.
#[allow(dead_code)]
mod agent_run;
mod pcap_file;

use agent_run::{Running, T0, gor, target};
use pcap_file::{PORT, agent, frame, pcap, pcap_snaplen, scratch};

/// One connection's handshake, then a GET request per path, a segment
/// each.
fn gets(paths: &[&str]) -> Vec<Vec<u8>> {
    let mut frames = vec![frame(true, 99, 0x02, b""), frame(false, 499, 0x12, b"")];
    let mut seq = 100u32;
    for path in paths {
        let request = format!("GET {path} HTTP/1.1\r\nHost: v1\r\n\r\n");
        frames.push(frame(true, seq, 0x18, request.as_bytes()));
        seq += request.len() as u32;
    }
    frames
}

fn record(pcap: &Path, output: &Path) -> Output {
    agent()
        .args(["record", "--input-pcap"])
        .arg(pcap)
        .args(["--port", &PORT.to_string(), "--output"])
        .arg(output)
        .output()
        .unwrap()
}

fn replay(input: &[&str], file: &Path, shadow: &str) -> Command {
    let mut command = agent();
    command
        .arg("replay")
        .args(input)
        .arg(file)
        .args(["--shadow", shadow, "--speed", "max"])
        .args(["--port", &PORT.to_string()])
        .args(["--metrics-addr", "127.0.0.1:0", "--nice", "0"]);
    command
}

fn shown(run: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

#[test]
fn a_capture_cut_inside_its_last_packet_is_recorded_and_replayed_up_to_it() {
    let dir = scratch("file-inputs-cut");
    let mut file = pcap(&gets(&["/1", "/2", "/3-cut"]));
    // tcpdump killed while writing the third request's packet.
    file.truncate(file.len() - 10);
    let input = dir.join("cut.pcap");
    std::fs::write(&input, file).unwrap();
    let warning = "ends inside its last packet";

    let run = record(&input, &dir.join("out.gor"));
    let said = shown(&run);
    assert!(run.status.success(), "{said}");
    assert!(said.contains(warning), "{said}");
    assert!(said.contains("the 4 packets before it were read"), "{said}");
    assert!(
        said.contains("final counts: capture: requests_captured=2 requests_skipped=0"),
        "{said}"
    );
    assert!(said.contains("written=2"), "{said}");

    let target = target(true);
    let run = Running::start(&mut replay(&["--input-pcap"], &input, &target.url))
        .end_within(Duration::from_secs(20));
    assert!(run.status.success(), "{}", run.shown());
    assert!(run.stderr.contains(warning), "{}", run.shown());
    assert_eq!(target.seen.load(Relaxed), 2, "{}", run.shown());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_empty_capture_is_refused_and_a_header_only_one_is_said_to_hold_nothing() {
    let dir = scratch("file-inputs-empty");
    let target = target(true);
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let header_only = dir.join("header.pcap");
    std::fs::write(&header_only, pcap(&[])).unwrap();
    let refused = "the file is empty: not a pcap or pcapng file";
    let nothing = "the capture holds no packets (only its file header): nothing to read";

    let run = record(&empty, &dir.join("a.gor"));
    let said = shown(&run);
    assert_eq!(run.status.code(), Some(1), "{said}");
    assert!(said.contains(refused), "{said}");
    assert!(!said.contains("failed to fill whole buffer"), "{said}");
    let run = replay(&["--input-pcap"], &empty, &target.url)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", shown(&run));
    assert!(shown(&run).contains(refused), "{}", shown(&run));

    let run = record(&header_only, &dir.join("b.gor"));
    assert!(run.status.success(), "{}", shown(&run));
    assert!(shown(&run).contains(nothing), "{}", shown(&run));
    let run = replay(&["--input-pcap"], &header_only, &target.url)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", shown(&run));
    assert!(shown(&run).contains(nothing), "{}", shown(&run));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn random_bytes_a_crlf_converted_recording_and_dev_zero_are_not_goreplay_files() {
    let dir = scratch("file-inputs-not-gor");
    let target = target(true);
    let mut noise = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push(x as u8);
    }
    let random = dir.join("random.gor");
    std::fs::write(&random, noise).unwrap();
    let crlf = dir.join("crlf.gor");
    let recording = gor(&[(T0, "/1"), (T0 + 1, "/2")]);
    let converted: Vec<u8> = recording
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    std::fs::write(&crlf, converted).unwrap();
    for (file, why) in [
        (random.as_path(), "not a goreplay file: "),
        (crlf.as_path(), "not a goreplay file: its lines end in CRLF"),
        (Path::new("/dev/zero"), "not a goreplay file: "),
    ] {
        let run =
            Running::start(&mut replay(&[], file, &target.url)).end_within(Duration::from_secs(20));
        assert_eq!(run.status.code(), Some(1), "{}", run.shown());
        assert!(run.stderr.contains(why), "{}", run.shown());
        assert!(!run.stderr.contains("the file was cut"), "{}", run.shown());
    }
    assert_eq!(target.seen.load(Relaxed), 0);
    // After a good file: its requests are sent and counted, then the
    // refusal is the exit status.
    let good = dir.join("good.gor");
    std::fs::write(&good, &recording).unwrap();
    let run = Running::start(replay(&[], &good, &target.url).arg(&random))
        .end_within(Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(1), "{}", run.shown());
    assert!(
        run.stderr.contains("not a goreplay file: "),
        "{}",
        run.shown()
    );
    assert!(
        run.stdout.contains("captured=2 sent=2 (2xx=2)"),
        "{}",
        run.shown()
    );
    assert_eq!(target.seen.load(Relaxed), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_capture_taken_with_a_tiny_snaplen_names_it() {
    let dir = scratch("file-inputs-snaplen");
    let input = dir.join("snap64.pcap");
    std::fs::write(&input, pcap_snaplen(&gets(&["/one", "/two"]), 64)).unwrap();
    let run = record(&input, &dir.join("out.gor"));
    let said = shown(&run);
    assert!(run.status.success(), "{said}");
    assert!(
        said.contains("the capture was taken with snaplen 64: payload bytes were cut"),
        "{said}"
    );
    assert!(said.contains("capture with -s 0"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
