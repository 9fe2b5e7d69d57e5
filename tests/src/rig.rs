//! The replay rig: a client, v1 (a [`Server`] on the primary, where
//! the agent captures), HTTP servers on the shadow hosts a test chooses,
//! and the real agent on v1's interface with the flags the test chooses:
//! `ReplayRig::builder(2).mirror_to(&[0, 1]).start()?` is v1, v2 and v3
//! serving and an agent mirroring to both, attached.
//!
//! ```text
//!  client ──▶ v1 :8080 (mirror-agent on veth-s) ──▶ shadow 0 :8080 (v2)
//!                                               └─▶ shadow 1 :8080 (v3)
//! ```
//!
//! A test that needs another kind of shadow (one that is slow, one that is
//! down, two replicas on one host) leaves that host without a rig server
//! and starts its own there. Stop the agent before the servers: the
//! agent's pooled connections to the shadows are closed by then.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use mirror_testkit::{
    Agent, HttpClient, Metrics, Netns, Received, ScratchDir, Server,
    ab::{self, AbReport},
    metrics,
};

use crate::{
    agent,
    load::Load,
    shadow_net::{ShadowNet, shadow_v4},
    topology::SERVER_IF,
};

/// The service port: v1's, and every rig server's on the shadow hosts.
pub const PORT: u16 = 8080;
/// How long the agent may take to account for every captured request.
pub const SETTLE: Duration = Duration::from_secs(20);

/// The service URL on shadow host `index` (`http://10.200.<10+index>.2:8080`),
/// as a `--shadow` target or a `url` in a config file.
pub fn shadow_url(index: usize) -> String {
    format!("http://{}:{PORT}", shadow_v4(index, 2))
}

/// See the [module](self).
pub struct ReplayRig {
    pub net: ShadowNet,
    /// None once stopped, or where the test runs v1 itself.
    v1: Option<Server>,
    /// By shadow host; None where the rig runs no server.
    servers: Vec<Option<Server>>,
    /// The agent's command line.
    args: Vec<String>,
    scratch: ScratchDir,
}

/// The choices of a [`ReplayRig`].
#[derive(Clone, Debug)]
pub struct ReplayRigBuilder {
    shadow_hosts: usize,
    serve_primary: bool,
    served: Option<Vec<usize>>,
    json_logs: bool,
    mirror_to: Vec<usize>,
    config: Option<String>,
    args: Vec<String>,
}

impl ReplayRigBuilder {
    /// No rig server on the primary: the test runs v1 itself (nginx, say).
    pub fn own_primary(mut self) -> Self {
        self.serve_primary = false;
        self
    }

    /// HTTP servers on these shadow hosts only (default: on every one).
    pub fn serve(mut self, shadows: &[usize]) -> Self {
        self.served = Some(shadows.to_vec());
        self
    }

    /// The agent logs JSON (`--log-format json`).
    pub fn json_logs(mut self) -> Self {
        self.json_logs = true;
        self
    }

    /// The agent mirrors to these shadow hosts (`--shadow URL`, see
    /// [`shadow_url`]).
    pub fn mirror_to(mut self, shadows: &[usize]) -> Self {
        self.mirror_to = shadows.to_vec();
        self
    }

    /// The agent reads a config file with this text (`--config FILE`).
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// More agent flags, after the others.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// [`ReplayRigBuilder::build`], then the agent: attached when this
    /// returns.
    pub fn start(self) -> Result<(ReplayRig, Agent)> {
        let rig = self.build()?;
        let agent = rig.start_agent()?;
        Ok((rig, agent))
    }

    /// The hosts, v1 and the shadow servers, listening when this returns;
    /// the agent is for [`ReplayRig::start_agent`] (after servers of the
    /// test's own).
    pub fn build(self) -> Result<ReplayRig> {
        let net = ShadowNet::new(self.shadow_hosts)?;
        let v1 = self
            .serve_primary
            .then(|| Server::start(net.primary(), net.primary_addr(PORT)))
            .transpose()?;
        let served = self
            .served
            .unwrap_or_else(|| (0..self.shadow_hosts).collect());
        let servers = (0..self.shadow_hosts)
            .map(|i| {
                served
                    .contains(&i)
                    .then(|| Server::start(net.shadow(i), net.shadow_addr(i, PORT)))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        let scratch = ScratchDir::new("rig")?;
        let mut args: Vec<String> = ["--iface", SERVER_IF, "--port", &PORT.to_string()]
            .map(String::from)
            .to_vec();
        if self.json_logs {
            args.extend(["--log-format".to_owned(), "json".to_owned()]);
        }
        for index in self.mirror_to {
            args.extend(["--shadow".to_owned(), shadow_url(index)]);
        }
        if let Some(text) = self.config {
            let path = scratch.write("mirror.toml", text)?;
            args.extend(["--config".to_owned(), path.display().to_string()]);
        }
        args.extend(self.args);
        Ok(ReplayRig {
            net,
            v1,
            servers,
            args,
            scratch,
        })
    }
}

/// What the rig's servers received, once stopped.
#[derive(Debug)]
pub struct Served {
    pub v1: Received,
    shadows: Vec<Option<Received>>,
}

impl Served {
    /// What the rig server on shadow host `index` received.
    pub fn shadow(&self, index: usize) -> &Received {
        self.shadows
            .get(index)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("the rig ran no server on shadow {index}"))
    }
}

impl ReplayRig {
    /// `shadow_hosts` shadow hosts behind the primary.
    pub fn builder(shadow_hosts: usize) -> ReplayRigBuilder {
        ReplayRigBuilder {
            shadow_hosts,
            serve_primary: true,
            served: None,
            json_logs: false,
            mirror_to: Vec::new(),
            config: None,
            args: Vec::new(),
        }
    }

    pub fn client(&self) -> &Netns {
        self.net.client()
    }

    /// The primary's namespace (v1): its server and the agent run here.
    pub fn primary(&self) -> &Netns {
        self.net.primary()
    }

    pub fn shadow(&self, index: usize) -> &Netns {
        self.net.shadow(index)
    }

    /// v1's address as the client sees it.
    pub fn primary_addr(&self) -> SocketAddr {
        self.net.primary_addr(PORT)
    }

    /// `http://10.200.0.2:8080{path}`.
    pub fn primary_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.primary_addr())
    }

    /// The service address on shadow host `index`.
    pub fn shadow_addr(&self, index: usize) -> SocketAddr {
        self.net.shadow_addr(index, PORT)
    }

    /// The service URL on shadow host `index` ([`shadow_url`]).
    pub fn url(&self, index: usize) -> String {
        shadow_url(index)
    }

    /// The agent's command line: `--iface veth-s --port 8080
    /// [--log-format json] [--shadow URL]... [--config FILE] ARGS...`.
    pub fn agent_args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// The agent in v1's namespace with [`ReplayRig::agent_args`], attached.
    pub fn start_agent(&self) -> Result<Agent> {
        agent::start_attached(self.primary(), &self.agent_args())
    }

    /// Writes `text` over the rig's config file (or as a new one); returns
    /// its path, for `--config`.
    pub fn write_config(&self, text: &str) -> Result<String> {
        Ok(self
            .scratch
            .write("mirror.toml", text)?
            .display()
            .to_string())
    }

    /// `ab ARGS URL` from the client to v1's `/`: every one of `requests`
    /// completed with a 2xx.
    pub fn ab_ok(&self, args: &[&str], requests: u64) -> Result<AbReport> {
        let report = ab::run(self.client(), args, &self.primary_url("/"))?;
        ensure!(
            report.complete == requests && report.failed == 0 && report.non_2xx == 0,
            "ab: {}",
            report.text
        );
        Ok(report)
    }

    /// Steady load on v1: `connections` clients, each pausing `pause`
    /// between an answer and its next request.
    pub fn load(&self, connections: usize, pause: Duration) -> Result<Load> {
        Load::start(self.client(), self.primary_addr(), connections, pause)
    }

    /// Sends each request to v1 over `connections` keep-alive connections
    /// in turn; each must be answered 200.
    pub fn send_all(&self, requests: &[Vec<u8>], connections: usize) -> Result<()> {
        let mut clients = (0..connections)
            .map(|_| HttpClient::connect(self.client(), self.primary_addr()))
            .collect::<Result<Vec<_>>>()?;
        for (i, request) in requests.iter().enumerate() {
            let response = clients[i % connections].request(request)?;
            ensure!(response.status == 200, "request {i}: {}", response.status);
        }
        for client in clients {
            client.close()?;
        }
        Ok(())
    }

    /// Waits until the agent reassembled `captured` requests and each of
    /// `targets` accounted for every one of them (sent, filtered or
    /// dropped: nothing queued or in flight); returns that scrape.
    pub fn settle(&self, targets: &[&str], captured: u64) -> Result<Metrics> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let metrics = Metrics::scrape(self.primary(), metrics::DEFAULT_ADDR)?;
            let got = metrics.requests_captured();
            let accounted: Vec<u64> = targets
                .iter()
                .map(|t| metrics.shadow_outcomes(t).values().sum())
                .collect();
            if got == captured && accounted.iter().all(|n| *n == captured) {
                return Ok(metrics);
            }
            ensure!(
                got <= captured && Instant::now() < deadline,
                "after {SETTLE:?}: {got} requests captured ({captured} sent by the client), \
                 targets {targets:?} accounted for {accounted:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops v1 (its clients are done); returns what it received.
    pub fn stop_v1(&mut self) -> Result<Received> {
        self.v1
            .take()
            .expect("the rig runs v1 (not own_primary) and stops it once")
            .stop()
    }

    /// Ends the rig server on shadow host `index` now, whatever broke (a
    /// connection the agent closed mid-body); returns what came whole.
    pub fn halt_shadow(&mut self, index: usize) -> Received {
        self.servers[index]
            .take()
            .unwrap_or_else(|| panic!("no running rig server on shadow {index}"))
            .halt()
    }

    /// Stops the rig server on shadow host `index`.
    pub fn stop_shadow(&mut self, index: usize) -> Result<Received> {
        self.servers[index]
            .take()
            .unwrap_or_else(|| panic!("no running rig server on shadow {index}"))
            .stop()
    }

    /// Stops v1 and every shadow server; returns what each received.
    pub fn stop_servers(&mut self) -> Result<Served> {
        let v1 = self.stop_v1()?;
        let shadows = self
            .servers
            .iter_mut()
            .map(|server| server.take().map(Server::stop).transpose())
            .collect::<Result<_>>()?;
        Ok(Served { v1, shadows })
    }
}
