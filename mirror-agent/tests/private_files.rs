//! Every file the agent creates is private whatever the umask: under the
//! usual `umask 022`, `record` (a rotating recording in a dated
//! directory) and `replay --input-pcap --compare --diff-log` leave files
//! 0600 and directories 0700. Through the binary, no kernel, no root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod pcap_file;

use pcap_file::{PORT, agent, capture, scratch, succeeds, target};

const V1_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
/// The target answers otherwise, so the diff log gets lines.
const TARGET_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file and directory under `dir` (not `dir` itself), with its mode.
fn modes_under(dir: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        found.push((path.display().to_string(), mode(&path)));
        if path.is_dir() {
            found.extend(modes_under(&path));
        }
    }
    found
}

#[test]
fn recordings_and_the_diff_log_are_private_under_umask_022() {
    // Children inherit the umask: the agent runs under the usual 022.
    unsafe { libc::umask(0o022) };
    let get = b"GET /a HTTP/1.1\r\nHost: v1\r\n\r\n".as_slice();
    let pcap = capture(&[
        (true, get),
        (false, V1_ANSWER),
        (true, get),
        (false, V1_ANSWER),
    ]);
    let dir = scratch("private-files");
    let input = dir.join("v1.pcap");
    std::fs::write(&input, pcap).unwrap();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();

    succeeds(
        agent()
            .args(["record", "--input-pcap"])
            .arg(&input)
            .args(["--port", &PORT.to_string(), "--responses", "--output"])
            .arg(out.join("%Y/%m/v1-%H.gor"))
            .args(["--nice", "0"]),
    );
    let shadow = format!("http://{}", target(TARGET_ANSWER));
    succeeds(
        agent()
            .args(["replay", "--input-pcap"])
            .arg(&input)
            .args(["--port", &PORT.to_string(), "--shadow", &shadow])
            .args(["--compare", "--speed", "max", "--diff-log"])
            .arg(out.join("diff.jsonl"))
            .args(["--metrics-addr", "127.0.0.1:0", "--nice", "0"]),
    );

    let made = modes_under(&out);
    assert!(
        made.iter().any(|(p, _)| p.ends_with("diff.jsonl"))
            && made.iter().any(|(p, _)| p.ends_with(".gor")),
        "{made:?}"
    );
    for (path, mode) in &made {
        let want = if Path::new(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, want, "{path}: {mode:o}");
    }
    assert!(std::fs::metadata(out.join("diff.jsonl")).unwrap().len() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
