//! Harness for the tests of mirror on the real kernel.
//!
//! Every test builds its own hosts out of network namespaces
//! ([`Topology`] for client + server, [`Netns`] and [`netns::veth`] for
//! more), drives the capture stage in-process ([`CaptureRunner`]) or the
//! agent binary ([`Agent`]), and sends real TCP traffic ([`tcp`]) or HTTP
//! to a server that frames requests on its own ([`HttpServer`]). Names
//! are unique per process and test, so tests run in parallel; everything
//! is removed in Drop guards, also when a test fails.
//!
//! Replay to shadows: [`ShadowNet`] adds shadow hosts behind the primary,
//! [`SlowServer`] is a shadow that cannot keep up, [`EtcHosts`] gives the
//! agent host names, [`Metrics`] scrapes it, [`agent_output`] reads its
//! final counts and [`mirrored`] compares what shadows and primary got.
//!
//! Operating the agent: [`ops`] checks its accounting identities on a
//! scrape, reads its JSON logs and what it left attached; [`Prometheus`]
//! scrapes it like production would; [`Load`] is steady client traffic.
//!
//! Addresses: 10.200.0.0/16 and fd00:200::/64 only, and no route out.

pub mod ab;
pub mod agent;
pub mod agent_output;
pub mod capture;
pub mod etc_hosts;
pub mod http_client;
pub mod http_compare;
pub mod http_server;
pub mod load;
pub mod metrics;
pub mod mirrored;
pub mod netns;
pub mod ops;
pub mod packet;
pub mod prometheus;
pub mod scratch;
pub mod shadow_net;
pub mod slow_server;
pub mod tcp;
pub mod topology;

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

pub use agent::{Agent, AgentExit, agent_binary};
pub use capture::{CaptureRunner, Captured, Collector, Drain, Finished, FlowCapture, Stream, Tee};
pub use etc_hosts::EtcHosts;
pub use http_client::HttpClient;
pub use http_server::{HttpServer, Received, ReceivedRequest};
pub use load::Load;
pub use metrics::Metrics;
pub use netns::{Link, Netns};
pub use prometheus::Prometheus;
pub use scratch::ScratchDir;
pub use shadow_net::ShadowNet;
pub use slow_server::SlowServer;
pub use topology::{Family, Topology};

/// Set to 1 to skip the kernel tests on a machine that cannot run them
/// (not root, no netns). Ignored when `CI=true`: there they must run.
pub const SKIP_ENV: &str = "MIRROR_SKIP_KERNEL_TESTS";

/// Call first in every kernel test: `if !require_kernel() { return Ok(()); }`.
///
/// Checks that this process is root and can create a network namespace, and
/// panics with the reason when not. Only outside CI, and only with
/// `MIRROR_SKIP_KERNEL_TESTS=1`, does it instead print why and return false
/// so the test passes without running.
pub fn require_kernel() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(probe_kernel);
    let Err(reason) = probe else {
        return true;
    };
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
    if skip && !in_ci {
        eprintln!("skipped: {reason} ({SKIP_ENV}=1)");
        return false;
    }
    panic!(
        "this kernel test cannot run: {reason}. Run the tests as root on Linux \
         (sudo -E cargo test -p mirror-tests){}",
        if in_ci {
            ""
        } else {
            ", or set MIRROR_SKIP_KERNEL_TESTS=1 to skip them"
        }
    );
}

fn probe_kernel() -> Result<(), String> {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!("not root (euid {euid})"));
    }
    let netns =
        Netns::new("probe").map_err(|e| format!("cannot create a network namespace: {e:#}"))?;
    netns
        .run(|| std::fs::read_dir("/sys/class/net").map(|_| ()))
        .map_err(|e| format!("cannot enter a network namespace: {e}"))?;
    Ok(())
}

/// `len` pseudo-random bytes from `seed` (xorshift64*): payloads that no
/// offset mix-up can reproduce by accident, the same on every run.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    if state == 0 {
        state = 1;
    }
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Where the first difference between two byte strings is, for messages
/// that say more than "not equal" about megabytes.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Polls `condition` every few milliseconds until it holds or `timeout`
/// passed; returns whether it held. For kernel state that settles shortly
/// after the event a test waited for (a packet still in a softirq, a link
/// released at process exit).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_repeatable_and_differ_by_seed() {
        assert_eq!(random_bytes(1000, 1), random_bytes(1000, 1));
        assert_ne!(random_bytes(1000, 1), random_bytes(1000, 2));
        assert_eq!(random_bytes(13, 5).len(), 13);
        assert_eq!(random_bytes(13, 5)[..], random_bytes(20, 5)[..13]);
    }

    #[test]
    fn first_difference_finds_the_offset_or_the_shorter_end() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }
}
