//! Streamed bodies on the real kernel: uploads larger than the agent's
//! whole-body window (64 KiB) go to the shadow as they arrive, and must
//! reach it byte for byte (Content-Length as sent, chunked re-framed with
//! the same data and trailers), in their connection's order; a shadow that
//! does not read is cut (`body_too_slow`) without the agent holding the
//! upload.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test streaming`.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use mirror_testkit::{Signal, process::peak_rss_kib, pseudo_random};
use mirror_tests::{
    ReplayRig, agent,
    mirrored::{MARKER, compare_mirrored},
    require_kernel,
};

const MB: usize = 1 << 20;

/// A POST with a Content-Length body of `len` bytes from `seed`.
fn post(host: &str, path: &str, len: usize, seed: u64) -> Vec<u8> {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&pseudo_random(len, seed));
    request
}

/// A chunked PUT of `len` bytes from `seed` in 60,000-byte chunks, with
/// one trailer.
fn chunked_put(host: &str, path: &str, len: usize, seed: u64) -> Vec<u8> {
    let mut request =
        format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for chunk in pseudo_random(len, seed).chunks(60_000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("0\r\nX-Seed: {seed}\r\n\r\n").as_bytes());
    request
}

#[test]
fn uploads_stream_to_the_shadow_byte_for_byte_in_their_connections_order() -> Result<()> {
    require_kernel!();
    let mut rig = ReplayRig::builder(1).mirror_to(&[0]).build()?;
    let agent = rig.start_agent()?;
    let host = rig.primary_addr().to_string();
    let mut requests = Vec::new();
    for i in 0..6u64 {
        requests.push(post(
            &host,
            &format!("/up/{i}"),
            2 * MB + 12_345 * i as usize,
            i,
        ));
        requests.push(chunked_put(
            &host,
            &format!("/chunked/{i}"),
            MB + 777 * i as usize,
            100 + i,
        ));
        requests.push(format!("GET /after/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes());
    }
    // Three keep-alive connections: each carries uploads and GETs in turn.
    rig.send_all(&requests, 3)?;
    let n = requests.len() as u64;
    let metrics = rig.settle(&[&rig.url(0)], n)?;
    ensure!(
        metrics.get("mirror_requests_streamed_total", &[]) == Some(12.0),
        "the 12 uploads streamed: {:?}",
        metrics.get("mirror_requests_streamed_total", &[])
    );
    let stopped = agent::check_exit(agent.stop(Signal::TERM, Duration::from_secs(20))?)?;
    let counts = stopped.target(&rig.url(0))?;
    ensure!(
        counts.get("captured") == n && counts.get("2xx") == n,
        "final counts: {counts}"
    );
    let served = rig.stop_servers()?;
    let matched = compare_mirrored(served.v1.requests(), served.shadow(0), MARKER)?;
    ensure!(matched == requests.len(), "{matched} of {n} matched");
    Ok(())
}

#[test]
fn a_shadow_that_does_not_read_is_cut_and_the_upload_is_not_held() -> Result<()> {
    require_kernel!();
    let mut rig = ReplayRig::builder(1).serve(&[]).mirror_to(&[0]).build()?;
    // The shadow accepts, then never reads: its receive buffer and the
    // agent's send buffer fill, then the body falls behind the client.
    let at = rig.shadow_addr(0);
    let stall = rig.shadow(0).run(|| TcpListener::bind(at))?;
    let agent = rig.start_agent()?;
    let host = rig.primary_addr().to_string();
    let upload = post(&host, "/big", 64 * MB, 7);
    let start = Instant::now();
    rig.send_all(std::slice::from_ref(&upload), 1)?;
    let metrics = rig.settle(&[&rig.url(0)], 1)?;
    let outcomes = metrics.shadow_outcomes(&rig.url(0));
    ensure!(
        outcomes.get("body_too_slow") == Some(&1),
        "after {:?}: {outcomes:?}",
        start.elapsed()
    );
    let peak_mib = peak_rss_kib(agent.pid())? / 1024;
    // The ring's pages and the binary are most of it; the 64 MiB upload
    // would show.
    ensure!(peak_mib < 96, "peak RSS {peak_mib} MiB");
    let stopped = agent::check_exit(agent.stop(Signal::TERM, Duration::from_secs(20))?)?;
    ensure!(stopped.target(&rig.url(0))?.get("body_too_slow") == 1);
    drop(stall);
    rig.stop_v1()?;
    Ok(())
}
