//! `mirror-agent record --input-pcap` through the binary, no kernel and no
//! root: a capture file made here, recorded to files named by a time
//! pattern and rotated by size; every file must read on its own and
//! together hold every request once, in order. A bad rotation value is
//! one clear error line.

use std::path::Path;

use mirror_agent::file::PayloadReader;

mod pcap_file;

use pcap_file::{agent, frame, pcap, scratch};

/// A capture of one connection carrying `requests`, one segment each.
fn capture(requests: &[Vec<u8>]) -> Vec<u8> {
    let mut frames = vec![frame(true, 99, 0x02, b"")];
    let mut seq = 100u32;
    for request in requests {
        frames.push(frame(true, seq, 0x18, request));
        seq += request.len() as u32;
    }
    frames.push(frame(true, seq, 0x11, b""));
    pcap(&frames)
}

fn payloads(path: &Path) -> Vec<Vec<u8>> {
    PayloadReader::open(path, 1 << 20)
        .unwrap()
        .map(|item| item.unwrap().unwrap().data)
        .collect()
}

#[test]
fn a_pcap_recorded_with_a_time_pattern_and_a_size_limit_gives_complete_files_in_order() {
    let dir = scratch("rec-rot-size");
    let requests: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            format!("GET /r/{i:03} HTTP/1.1\r\nHost: svc\r\nX-Pad: {i:0100}\r\n\r\n").into_bytes()
        })
        .collect();
    let pcap = dir.join("in.pcap");
    std::fs::write(&pcap, capture(&requests)).unwrap();
    let output = agent()
        .args(["record", "--input-pcap"])
        .arg(&pcap)
        .args([
            "--port",
            "8080",
            "--log-format",
            "json",
            "--rotate-size",
            "1K",
        ])
        .arg("--output")
        .arg(dir.join("out/%Y/req-%Y.gor.gz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("written=60"), "{stdout}");

    let year_dir = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let year = year_dir.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(year.len() == 4 && year.starts_with("20"), "{year}");
    let mut got = Vec::new();
    let mut files = 0;
    loop {
        let name = match files {
            0 => format!("req-{year}.gor.gz"),
            n => format!("req-{year}_{n}.gor.gz"),
        };
        let path = year_dir.join(&name);
        if !path.exists() {
            break;
        }
        let these = payloads(&path);
        assert!(
            !these.is_empty() && these.len() <= 4,
            "{name}: {}",
            these.len()
        );
        assert!(
            stderr.contains(&format!("{}", path.display())),
            "{name} is logged"
        );
        got.extend(these);
        files += 1;
    }
    assert_eq!(
        std::fs::read_dir(&year_dir).unwrap().count(),
        files,
        "no other file"
    );
    // About 230 bytes a payload: 4 to a 1 KiB file.
    assert_eq!(files, 15);
    assert_eq!(got, requests);
    assert_eq!(
        stderr.matches("recording file complete").count(),
        15,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_rotation_values_and_patterns_are_one_clear_error() {
    for (flag, value, expected) in [
        ("--rotate-size", "12XB", "not a size such as 32M"),
        ("--rotate-size", "0", "0 bytes"),
        ("--rotate-age", "10", "not a duration such as 30s"),
        (
            "--output",
            "req-%y.gor",
            "`%y` in `req-%y.gor` is not a time pattern",
        ),
    ] {
        let mut command = agent();
        command.args(["record", "--input-pcap", "in.pcap", "--port", "80"]);
        if flag != "--output" {
            command.args(["--output", "out.gor"]);
        }
        let output = command.args([flag, value]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
}
