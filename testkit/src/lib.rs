//! What the kernel tests (`mirror-tests`), the demo, the bench and the
//! vm-test guest (`xtask`) share, written once.
//!
//! Hosts are network namespaces ([`Netns`]) joined by veth pairs
//! ([`link::veth`], settings through [`Link`]); code runs inside them on
//! threads of its own ([`Netns::run`]), programs through `ip netns exec`
//! ([`Netns::command`]), in the background as a [`Process`] whose output is
//! kept line by line, or to completion ([`command::run`]). The agent is one
//! such process ([`Agent`]), read from the outside as a script would: its
//! log, its `kernel counters:` and `final counts` ([`agent::report`]), its
//! Prometheus endpoint ([`Metrics`]). Traffic: plain TCP ([`tcp`]), HTTP
//! from a minimal client ([`HttpClient`]) or ab ([`ab`]) to the test
//! server, which frames requests with code of its own and answers, stalls
//! or fails as a test tells it ([`Server`]), or a real one ([`Nginx`]);
//! Debian's HAProxy in front of replicas ([`HaProxy`]) and Prometheus
//! scraping agents ([`Prometheus`]), together the fleet of the second
//! seed's exercise ([`fleet`]); crafted frames
//! through `BPF_PROG_TEST_RUN` ([`packet`]), or through a packet socket's
//! TX ring, headers outside the receiver's linear skb area ([`tx_ring`]).
//!
//! Everything made here is removed in Drop guards, also when the caller
//! fails: namespaces, scratch directories ([`ScratchDir`]), hosts files
//! ([`EtcHosts`]), processes.
//!
//! Addresses are the caller's choice; the project's callers keep to
//! 10.200.0.0/16 and fd00:200::/64 and never add a route out.

pub mod ab;
pub mod agent;
pub mod command;
pub mod etc_hosts;
pub mod fleet;
pub mod haproxy;
pub mod http_client;
pub mod link;
pub mod metrics;
pub mod netns;
pub mod nginx;
pub mod packet;
pub mod process;
pub mod prometheus;
pub mod random;
pub mod scratch;
pub mod server;
pub mod tcp;
pub mod tx_ring;
pub mod wait;

pub use agent::{Agent, AgentExit, TargetCounts};
pub use etc_hosts::EtcHosts;
pub use haproxy::HaProxy;
pub use http_client::HttpClient;
pub use link::{Link, veth};
pub use metrics::{Metrics, Sample};
pub use netns::Netns;
pub use nginx::{Nginx, NginxConfig};
pub use process::Process;
pub use prometheus::Prometheus;
pub use random::pseudo_random;
pub use rustix::process::Signal;
pub use scratch::ScratchDir;
pub use server::{Received, ReceivedRequest, Server};
pub use wait::wait_until;

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    effective_uid() == 0
}
