//! The diff log on the real kernel (issue 24): bounded by
//! `--diff-log-max-size` and `--diff-log-keep` however many exchanges
//! differ, every line whole, and after an outside `mv` a SIGHUP moves the
//! writing to a new file at the configured path — the way logrotate works.
//! v1 and a candidate whose every answer carries a unique `served_at`
//! (no baseline: each answer differs), real TCP through the agent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{ScratchDir, Signal};
use mirror_tests::{
    app::Behaviour,
    app_client::ClientRequest,
    compare_rig::{AppRig, serial, stop},
    or_skip,
    rig::shadow_url,
};
use serde_json::Value;

/// Bytes past which the diff log rotates in this test: a few lines each.
const MAX_SIZE: u64 = 2048;

/// Every line of `path` parsed (each must be whole JSON); none if absent.
fn lines(path: &Path) -> Result<Vec<Value>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    std::fs::read_to_string(path)?
        .lines()
        .map(|line| {
            serde_json::from_str(line).with_context(|| format!("{}: {line}", path.display()))
        })
        .collect()
}

fn paths(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["path"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn get_items(rig: &AppRig, from: u64, to: u64) -> Result<()> {
    let mut client = rig.client()?;
    for n in from..to {
        let response = client.exchange(&ClientRequest::new("GET", &format!("/items/{n}"), &[]))?;
        ensure!(response.status == 200, "v1: {response:?}");
    }
    client.close()
}

#[test]
fn the_diff_log_rotates_at_its_size_and_follows_a_move_on_sighup() -> Result<()> {
    let _machine = or_skip!(serial());
    let candidate = Behaviour {
        served_at: true,
        ..Behaviour::v1("v2")
    };
    let rig = AppRig::new(Behaviour::v1("v1"), vec![Some(candidate)])?;
    let dir = ScratchDir::new("diff-log")?;
    let log = dir.path().join("diff.jsonl");
    let numbered = |n: u32| dir.path().join(format!("diff.jsonl.{n}"));
    let v2 = shadow_url(0);
    let log_arg = log.display().to_string();
    let max_size = MAX_SIZE.to_string();
    let agent = rig.agent(
        &[
            "--shadow",
            &v2,
            "--compare",
            "--diff-log",
            &log_arg,
            "--diff-log-rate",
            "1000000",
            "--diff-log-max-size",
            &max_size,
            "--diff-log-keep",
            "2",
        ],
        1,
    )?;

    get_items(&rig, 0, 60)?;
    rig.judged(&[&v2], 60)?;
    // Rotated: the file and two kept, no third; each within its size but
    // for the one line that crossed it; the newest lines in the file.
    let (current, first, second) = (lines(&log)?, lines(&numbered(1))?, lines(&numbered(2))?);
    ensure!(!numbered(3).exists(), "a third rotated file was kept");
    for path in [log.clone(), numbered(1), numbered(2)] {
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} missing", path.display()))?
            .len();
        ensure!(size <= MAX_SIZE + 1024, "{}: {size} bytes", path.display());
    }
    let kept = current.len() + first.len() + second.len();
    ensure!(
        kept < 60 && paths(&current).last().map(String::as_str) == Some("/items/59"),
        "{kept} lines kept; the file ends with {:?}",
        paths(&current).last()
    );

    // logrotate: move the file, then SIGHUP.
    let moved = dir.path().join("moved.jsonl");
    std::fs::rename(&log, &moved)?;
    let moved_size = std::fs::metadata(&moved)?.len();
    agent.signal(Signal::HUP)?;
    agent.wait_for_log("SIGHUP received", Duration::from_secs(10))?;
    get_items(&rig, 60, 65)?;
    rig.judged(&[&v2], 65)?;
    let after = paths(&lines(&log)?);
    ensure!(
        after == (60..65).map(|n| format!("/items/{n}")).collect::<Vec<_>>(),
        "the new file holds {after:?}"
    );
    ensure!(
        std::fs::metadata(&moved)?.len() == moved_size,
        "the moved file kept growing"
    );
    stop(agent)?;
    Ok(())
}
