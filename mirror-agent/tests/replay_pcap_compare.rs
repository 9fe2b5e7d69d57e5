//! `mirror-agent replay --input-pcap --compare` through the binary, no
//! kernel and no root: v1's answers in a capture file are paired with
//! their requests in memory (the same flow → http pairing as live
//! traffic), the replayed answers of a local target compared with them,
//! and nothing is created under `$TMPDIR`.

mod pcap_file;

use pcap_file::{PORT, agent, capture, scratch, succeeds, target};

/// v1's answer to every request, and the target's.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn v1s_answers_in_a_capture_are_compared_in_memory_with_no_temporary_file() {
    let get = b"GET /a HTTP/1.1\r\nHost: v1\r\n\r\n".as_slice();
    let other = b"GET /b HTTP/1.1\r\nHost: v1\r\n\r\n".as_slice();
    let pcap = capture(&[(true, get), (false, OK), (true, other), (false, OK)]);
    let dir = scratch("replay-pcap");
    let input = dir.join("v1.pcap");
    std::fs::write(&input, pcap).unwrap();
    // $TMPDIR of the replay is a plain file: creating anything under it
    // fails, even as root, and so would the replay if it wrote a
    // temporary recording.
    let tmp = dir.join("not-a-directory");
    std::fs::write(&tmp, b"").unwrap();
    let shadow = format!("http://{}", target(OK));
    let stdout = succeeds(
        agent()
            .env("TMPDIR", &tmp)
            .args(["replay", "--input-pcap"])
            .arg(&input)
            .args(["--port", &PORT.to_string(), "--shadow", &shadow])
            .args([
                "--compare",
                "--speed",
                "max",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--nice", "0"]),
    );
    assert!(
        stdout.contains(
            "final counts: capture: requests_captured=2 requests_skipped=0 \
             responses_written=2 responses_dropped=0"
        ),
        "{stdout}"
    );
    let verdict = stdout
        .lines()
        .find(|l| l.starts_with("final counts: comparison: "))
        .unwrap_or_else(|| panic!("no verdict line: {stdout}"));
    assert!(
        verdict.contains(": 100.0 % match of 2 compared"),
        "{verdict}"
    );
    assert!(std::fs::metadata(&tmp).unwrap().is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
