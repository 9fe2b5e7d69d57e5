//! Debian's HAProxy in a namespace: the load balancer of the second seed's
//! exercise, in front of a service's replicas, as users run it. Plain HTTP
//! mode, round-robin per request, no health checks: a health check would
//! be one more request to every replica, captured and mirrored by their
//! agents, and a test that counts what the agents compared must know every
//! request it sent.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};

use crate::{netns::Netns, process::Process, scratch::ScratchDir, wait::wait_until};

/// How long HAProxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One running HAProxy; dropping it kills it and removes its files.
pub struct HaProxy {
    addr: SocketAddr,
    process: Process,
    _scratch: ScratchDir,
}

impl HaProxy {
    /// Listens on `addr` inside `netns` and spreads the requests over
    /// `servers` in turn (`balance roundrobin`), each request on its own:
    /// the requests of one keep-alive client connection go to every server.
    pub fn start(netns: &Netns, addr: SocketAddr, servers: &[SocketAddr]) -> Result<Self> {
        ensure!(!servers.is_empty(), "HAProxy needs at least one server");
        let scratch = ScratchDir::new("haproxy")?;
        let config = scratch.write("haproxy.cfg", config(addr, servers))?;
        // -db: in the foreground, not a daemon, so that the Process guard
        // is HAProxy itself.
        let process = Process::spawn(
            "haproxy",
            netns.command("haproxy").arg("-db").arg("-f").arg(&config),
        )
        .context("cannot run haproxy (Debian package haproxy)")?;
        let proxy = Self {
            addr,
            process,
            _scratch: scratch,
        };
        let listening = wait_until(START_TIMEOUT, || {
            netns.run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        });
        ensure!(
            listening,
            "haproxy is not listening on {addr} after {START_TIMEOUT:?}: {}",
            proxy.process.stderr_lines().join("\n")
        );
        Ok(proxy)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What HAProxy wrote on stderr (alerts and warnings).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.process.stderr_lines()
    }
}

/// The configuration: one frontend, one backend named like the seed's
/// (`service-v1`), the servers `v1-1`, `v1-2`, ...
fn config(addr: SocketAddr, servers: &[SocketAddr]) -> String {
    let mut text = format!(
        "global\n    maxconn 1024\n\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\n\n\
         frontend service\n    bind {addr}\n    default_backend service-v1\n\n\
         backend service-v1\n    balance roundrobin\n"
    );
    for (i, server) in servers.iter().enumerate() {
        text.push_str(&format!("    server v1-{} {server}\n", i + 1));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_lists_every_server_without_checks() {
        let text = config(
            "10.200.125.2:80".parse().unwrap(),
            &[
                "10.200.125.11:80".parse().unwrap(),
                "10.200.125.12:80".parse().unwrap(),
            ],
        );
        assert!(text.contains("bind 10.200.125.2:80"), "{text}");
        assert!(text.contains("balance roundrobin"), "{text}");
        assert!(text.contains("server v1-1 10.200.125.11:80\n"), "{text}");
        assert!(text.contains("server v1-2 10.200.125.12:80\n"), "{text}");
        assert!(!text.contains("check"), "{text}");
    }
}
