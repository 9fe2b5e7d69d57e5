//! `mirror-agent replay` stops when asked, and waits only what it should
//! (through the binary, no kernel, no root): a stop signal ends any wait at
//! once (a recorded gap, a slow --speed, a FIFO no one writes to), the
//! queues drain for at most --drain-timeout, a second signal stops at once,
//! and the final counts are always printed; --max-wait caps a gap, and the
//! gap between two files is not waited unless --keep-file-gaps.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

mod agent_run;
// Only its agent and scratch directory here.
#[allow(dead_code)]
mod pcap_file;

use agent_run::{HOUR_NS, Running, T0, gor, target, wait_until};
use pcap_file::{agent, scratch};

/// `replay FILES --shadow URL` with the metrics on a free port and a
/// drain timeout of 1 s.
fn replay(files: &[&Path], shadow: &str) -> Command {
    replay_draining(files, shadow, "1s")
}

fn replay_draining(files: &[&Path], shadow: &str, drain_timeout: &str) -> Command {
    let mut command = agent();
    command
        .arg("replay")
        .args(files)
        .args(["--shadow", shadow, "--metrics-addr", "127.0.0.1:0"])
        .args(["--drain-timeout", drain_timeout, "--nice", "0"]);
    command
}

fn final_line<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no `{start}` line in:\n{stdout}"))
}

#[test]
fn sigint_in_an_hours_gap_ends_within_the_drain_timeout_with_the_final_counts() {
    let dir = scratch("replay-stop-gap");
    let file = dir.join("hour.gor");
    std::fs::write(
        &file,
        gor(&[(T0, "/first"), (T0 + HOUR_NS, "/an-hour-later")]),
    )
    .unwrap();
    // The recorded pace, and a pace so slow that any gap is endless.
    for speed in [None, Some("0.001%")] {
        let target = target(true);
        let mut command = replay(&[&file], &target.url);
        if let Some(speed) = speed {
            command.args(["--speed", speed]);
        }
        let mut run = Running::start(&mut command);
        assert!(
            wait_until(Duration::from_secs(20), || target.seen.load(Relaxed) == 1),
            "the first request never came:\n{}",
            run.stderr()
        );
        // Now in the gap.
        std::thread::sleep(Duration::from_millis(200));
        assert!(run.alive(), "{}", run.stderr());
        run.signal(libc::SIGINT);
        let signalled = std::time::Instant::now();
        let ended = run.end_within(Duration::from_secs(10));
        assert!(ended.status.success(), "{speed:?}: {}", ended.shown());
        // Drain timeout 1 s (and nothing to drain): well within 3 s.
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "{speed:?}: {:?}",
            signalled.elapsed()
        );
        assert!(
            ended.stderr.contains("no more requests are read"),
            "{}",
            ended.shown()
        );
        // The request waiting for its time was not handed on.
        let replay = final_line(&ended.stdout, "final counts: replay: ");
        assert!(replay.contains(" requests=1 "), "{replay}");
        let counts = final_line(&ended.stdout, "final counts: target=");
        assert!(counts.contains("captured=1 sent=1"), "{counts}");
        assert_eq!(target.seen.load(Relaxed), 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_signal_ends_at_once_while_the_target_never_answers() {
    let dir = scratch("replay-stop-twice");
    let file = dir.join("many.gor");
    let requests: Vec<(i64, String)> = (0..20).map(|i| (T0 + i, format!("/{i}"))).collect();
    let requests: Vec<(i64, &str)> = requests.iter().map(|(t, p)| (*t, p.as_str())).collect();
    std::fs::write(&file, gor(&requests)).unwrap();
    let silent = target(false);
    // Nothing gives up on its own: only the signals end the run. One
    // request in flight, one queued: the replay waits for room.
    let mut command = replay_draining(&[&file], &silent.url, "60s");
    command.args(["--speed", "max", "--request-timeout", "60s"]);
    command.args(["--queue-size", "1", "--max-in-flight", "1"]);
    let mut run = Running::start(&mut command);
    assert!(
        wait_until(Duration::from_secs(20), || silent.seen.load(Relaxed) > 0),
        "no request reached the target:\n{}",
        run.stderr()
    );
    run.signal(libc::SIGTERM);
    run.wait_log("no more requests are read", Duration::from_secs(5));
    // The first signal drains (for up to 60 s, the queue blocked).
    std::thread::sleep(Duration::from_millis(500));
    assert!(run.alive(), "{}", run.stderr());
    run.signal(libc::SIGINT);
    let signalled = std::time::Instant::now();
    let ended = run.end_within(Duration::from_secs(10));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    assert!(ended.status.success(), "{}", ended.shown());
    assert!(
        ended
            .stderr
            .contains("received again: not waiting for the queues"),
        "{}",
        ended.shown()
    );
    // What was queued or in flight counts as dropped, and it balances.
    let counts = final_line(&ended.stdout, "final counts: target=");
    assert!(counts.contains("shutdown="), "{counts}");
    assert!(
        !ended.stderr.contains("does not balance"),
        "{}",
        ended.shown()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fifo_no_one_writes_to_does_not_keep_a_stop_waiting() {
    let dir = scratch("replay-stop-fifo");
    let fifo = dir.join("requests.gor");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let target = target(true);
    let run = Running::start(&mut replay(&[&fifo], &target.url));
    // Opening the FIFO blocks from here on (no writer, ever).
    run.wait_log("replaying", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    run.signal(libc::SIGINT);
    let signalled = std::time::Instant::now();
    let ended = run.end_within(Duration::from_secs(10));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    assert!(ended.status.success(), "{}", ended.shown());
    let replay = final_line(&ended.stdout, "final counts: replay: ");
    assert!(replay.contains("payloads_read=0 requests=0"), "{replay}");
    final_line(&ended.stdout, "final counts: target=");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn max_wait_caps_an_hours_gap() {
    let dir = scratch("replay-max-wait");
    let file = dir.join("hour.gor");
    std::fs::write(
        &file,
        gor(&[(T0, "/first"), (T0 + HOUR_NS, "/an-hour-later")]),
    )
    .unwrap();
    let target = target(true);
    let ended = Running::start(replay(&[&file], &target.url).args(["--max-wait", "1s"]))
        .end_within(Duration::from_secs(20));
    assert!(ended.status.success(), "{}", ended.shown());
    // About 1 s: the gap, capped (not a tight timing).
    assert!(
        ended.elapsed >= Duration::from_secs(1) && ended.elapsed < Duration::from_secs(5),
        "{:?}",
        ended.elapsed
    );
    assert_eq!(target.seen.load(Relaxed), 2);
    let counts = final_line(&ended.stdout, "final counts: target=");
    assert!(counts.contains("captured=2 sent=2"), "{counts}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_files_a_day_apart_are_replayed_back_to_back_unless_their_gap_is_kept() {
    let dir = scratch("replay-two-files");
    let half = 500_000_000;
    let day = 24 * HOUR_NS;
    let (a, b) = (dir.join("dayA.gor"), dir.join("dayB.gor"));
    std::fs::write(&a, gor(&[(T0, "/a1"), (T0 + half, "/a2")])).unwrap();
    std::fs::write(&b, gor(&[(T0 + day, "/b1"), (T0 + day + half, "/b2")])).unwrap();
    let back_to_back = target(true);
    let ended = Running::start(&mut replay(&[&a, &b], &back_to_back.url))
        .end_within(Duration::from_secs(20));
    assert!(ended.status.success(), "{}", ended.shown());
    // Each file's own half-second gap is kept; the day between them is not.
    assert!(
        ended.elapsed >= Duration::from_secs(1) && ended.elapsed < Duration::from_secs(5),
        "{:?}",
        ended.elapsed
    );
    assert_eq!(back_to_back.seen.load(Relaxed), 4);
    // Kept (capped at 2 s): 0.5 + 2 + 0.5 s.
    let kept = target(true);
    let ended =
        Running::start(replay(&[&a, &b], &kept.url).args(["--keep-file-gaps", "--max-wait", "2s"]))
            .end_within(Duration::from_secs(20));
    assert!(ended.status.success(), "{}", ended.shown());
    assert!(
        ended.elapsed >= Duration::from_secs(3) && ended.elapsed < Duration::from_secs(8),
        "{:?}",
        ended.elapsed
    );
    assert_eq!(kept.seen.load(Relaxed), 4);
    let _ = std::fs::remove_dir_all(&dir);
}
