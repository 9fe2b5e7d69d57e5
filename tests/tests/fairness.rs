//! Fairness under one heavy flow (issue 16): one client streaming at line
//! rate must not crowd the other clients out of the ring. The agent tells
//! the kernel program which payload it no longer needs (the rest of a body
//! over `--max-body-size`, a connection it gave up), and those bytes never
//! enter the ring. Before, a line-rate upload left 39 % of the other
//! clients' requests captured.
//!
//! ```text
//!  uploader ─┐
//!  clients  ─┴─▶ v1 (nginx; mirror-agent on veth-s) ──▶ shadow
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test fairness`.

use std::{
    io::Write as _,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{Metrics, Nginx, Signal, metrics, tcp};
use mirror_tests::{ReplayRig, agent, require_kernel};

/// How long the other clients send while the upload runs.
const LOAD_TIME: Duration = Duration::from_secs(3);
const RING: &str = "1M";
/// Share of the other clients' requests that must be captured.
const GOAL: f64 = 0.99;

#[test]
fn a_line_rate_upload_leaves_the_other_clients_requests_captured() -> Result<()> {
    require_kernel!();
    // A small ring: a heavy flow whose bytes enter it fills it in a moment.
    let rig = ReplayRig::builder(1)
        .own_primary()
        .mirror_to(&[0])
        .args(&["--ring-size", RING])
        .build()?;
    // nginx answers at once and reads the body away at line rate.
    let _v1 = Nginx::start(
        rig.primary(),
        rig.primary_addr(),
        "    client_max_body_size 0;\n    location / { return 200 \"ok\"; }",
    )?;
    let agent = rig.start_agent()?;

    let stop = AtomicBool::new(false);
    let (uploaded, answered) = std::thread::scope(|scope| -> Result<(u64, u64)> {
        let mut stream = tcp::connect(rig.client(), rig.primary_addr())?;
        let stop = &stop;
        let uploader = scope.spawn(move || -> Result<u64> {
            // A body announced far larger than what will be sent.
            stream.write_all(
                b"POST /stream HTTP/1.1\r\nHost: v1\r\nContent-Length: 1000000000000\r\n\r\n",
            )?;
            let chunk = vec![b'z'; 256 << 10];
            let mut sent = 0u64;
            while !stop.load(Ordering::Acquire) {
                stream.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
            Ok(sent)
        });
        std::thread::sleep(Duration::from_millis(300));
        let load = rig.load(8, Duration::from_millis(1))?;
        std::thread::sleep(LOAD_TIME);
        let answered = load.stop();
        stop.store(true, Ordering::Release);
        let uploaded = uploader.join().expect("uploader panicked")?;
        Ok((uploaded, answered?))
    })?;

    // The agent has read the ring when its count stops growing.
    let mut captured = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = Metrics::scrape(rig.primary(), metrics::DEFAULT_ADDR)?;
        let now = metrics.requests_captured();
        if (now == captured && now > 0) || Instant::now() > deadline {
            break;
        }
        captured = now;
        std::thread::sleep(Duration::from_millis(300));
    }
    let exit = agent.stop(Signal::TERM, Duration::from_secs(20))?;
    let stopped = agent::check_exit(exit)?;
    let kernel = &stopped.kernel;
    let share = captured as f64 / answered.max(1) as f64;
    eprintln!(
        "upload: {} MiB in {LOAD_TIME:?}+; other clients: {answered} requests answered, \
         {captured} captured ({:.2} %); kernel: ignored {} MiB, records lost {}",
        uploaded >> 20,
        100.0 * share,
        kernel.get("ignored_bytes").copied().unwrap_or(0) >> 20,
        kernel.get("records_lost").copied().unwrap_or(0),
    );
    ensure!(
        uploaded > 256 << 20,
        "the upload sent only {uploaded} bytes: not a heavy flow"
    );
    ensure!(
        share >= GOAL,
        "{captured} of {answered} requests captured ({:.2} %) with a line-rate upload running",
        100.0 * share
    );
    ensure!(captured <= answered, "{captured} captured, {answered} sent");
    let ignored = kernel
        .get("ignored_bytes")
        .copied()
        .context("no ignored_bytes in the kernel counters")?;
    ensure!(
        ignored > uploaded / 2,
        "the kernel left out {ignored} of {uploaded} upload bytes"
    );
    Ok(())
}
