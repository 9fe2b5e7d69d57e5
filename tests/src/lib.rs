//! What only the tests of mirror on the real kernel need; the rest (network
//! namespaces, processes, the agent runner, HTTP servers and clients,
//! Prometheus parsing) comes from the test kit, `mirror-testkit`.
//!
//! Every test builds its own hosts out of network namespaces ([`Topology`]
//! for client + server, [`ShadowNet`] for a primary with shadows behind
//! it), drives the capture stage in-process ([`CaptureRunner`]) or the
//! agent binary ([`agent`]), and sends real TCP or HTTP traffic. Names are
//! unique per process and test, so tests run in parallel; everything is
//! removed in Drop guards, also when a test fails.
//!
//! Replay to shadows: [`ReplayRig`] is v1, its shadows and the agent with
//! the flags a test chooses; the shadows are test servers
//! ([`mirror_testkit::Server`]: slow, held, failing as a test needs),
//! [`mirrored`] compares what shadows and primary got.
//! [`nginx_stage`] puts Debian's nginx in v1's place, logging its parse of
//! each request, in front of a strict shadow: a test server that frames by
//! RFC 9112's grammar alone and keeps every byte it could not frame.
//!
//! Operating the agent: [`ops`] checks its accounting identities on a
//! scrape, reads its JSON logs and what it left attached; [`Prometheus`]
//! scrapes it like production would; [`Load`] is steady client traffic.
//! [`fleet`]: three replicas behind HAProxy, an agent each, one Prometheus
//! scraping them all, and the `mirror-agent verdict` command run against it.
//!
//! Addresses: 10.200.0.0/16 and fd00:200::/64 only, and no route out.

pub mod agent;
pub mod app;
pub mod app_client;
pub mod capture;
pub mod compare_rig;
pub mod fleet;
pub mod gor_file;
pub mod http_compare;
pub mod load;
pub mod mirrored;
pub mod nginx_stage;
pub mod ops;
pub mod pcapng;
pub mod prometheus;
pub mod rig;
pub mod shadow_net;
pub mod stateful;
pub mod tcpdump;
pub mod tls_front;
pub mod topology;

use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use mirror_testkit::Netns;

pub use capture::{CaptureRunner, Captured, Collector, Drain, Finished, FlowCapture, Stream, Tee};
pub use load::Load;
pub use prometheus::Prometheus;
pub use rig::ReplayRig;
pub use shadow_net::ShadowNet;
pub use tls_front::{TestPki, TlsFront};
pub use topology::{Family, Topology};

/// Set to 1 to skip the kernel tests on a machine that cannot run them
/// (not root, no netns). Ignored when `CI=true`: there they must run.
pub const SKIP_ENV: &str = "MIRROR_SKIP_KERNEL_TESTS";

/// Call first in every kernel test that returns a `Result`:
/// `require_kernel!();` (or `if !require_kernel() { return ...; }`).
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
    let euid = mirror_testkit::effective_uid();
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

/// The first line of a kernel test returning a `Result`: the test ends
/// there, passed, where [`require_kernel`] says to skip.
#[macro_export]
macro_rules! require_kernel {
    () => {
        if !$crate::require_kernel() {
            return Ok(());
        }
    };
}

/// The first line of a kernel test that holds a guard while it runs (a
/// share of the machine, the machine to itself): `let _load =
/// or_skip!(LOAD.shared());` binds the guard, or ends the test there,
/// passed, where there is none (the kernel tests are skipped).
#[macro_export]
macro_rules! or_skip {
    ($guard:expr) => {
        match $guard {
            Some(guard) => guard,
            None => return Ok(()),
        }
    };
}

/// Kernel tests that each run one scenario function, written as a table:
/// `name => scenario(args);`. Each is a `#[test]` that first calls
/// [`require_kernel`].
#[macro_export]
macro_rules! kernel_tests {
    ($($name:ident => $scenario:expr;)+) => {
        $(
            #[test]
            fn $name() -> ::anyhow::Result<()> {
                $crate::require_kernel!();
                $scenario
            }
        )+
    };
}

/// A test file's share of the machine: the test that judges a rate or a
/// latency takes all of it, the file's other tests (each an agent, servers
/// and a client busy at once) share it and wait meanwhile, so that a bound
/// judges the agent and not the neighbours. One `static` per test file.
pub struct MachineShare(RwLock<()>);

impl MachineShare {
    pub const fn new() -> Self {
        Self(RwLock::new(()))
    }

    /// The kernel check ([`require_kernel`]), then a share of the machine;
    /// None where the kernel tests are skipped.
    pub fn shared(&self) -> Option<RwLockReadGuard<'_, ()>> {
        require_kernel().then(|| self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The kernel check, then the whole machine.
    pub fn exclusive(&self) -> Option<RwLockWriteGuard<'_, ()>> {
        require_kernel().then(|| self.0.write().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Default for MachineShare {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the first difference between two byte strings is, for messages
/// that say more than "not equal" about megabytes.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_finds_the_offset_or_the_shorter_end() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }
}
