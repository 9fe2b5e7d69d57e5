//! The second seed's topology on one machine: a service of three v1
//! replicas behind HAProxy, each replica with its own mirror-agent
//! comparing v1's answers with two shadows, v2 (the same code) and v3 (a
//! planted regression), and one Prometheus scraping the three agents. The
//! fleet kernel test (`tests/tests/fleet.rs`) and `cargo xtask demo fleet`
//! both build it from here, so the demo shows what the test checks.
//!
//! Every host is a network namespace with one interface, `eth0`, plugged
//! into a bridge in a namespace of its own (the switch): one segment,
//! 10.200.125.0/24, no route out.
//!
//! ```text
//!  client .1 ──▶ HAProxy .2:80 ──round robin──▶ v1-1 .11:80  v1-2 .12:80  v1-3 .13:80
//!                                               (each: mirror-agent on eth0, metrics :9464)
//!                                                   │ copies of every request
//!                                                   ├──▶ v2 .21:9000  (identical)
//!                                                   └──▶ v3 .22:9000  (--regression)
//!  Prometheus .30:9090 scrapes the three agents' /metrics
//! ```
//!
//! Every version is the demo service, `deploy/demo/myapp.py`; v3 runs it
//! with `--regression`: `GET /items/ID` answers 500 for every ID divisible
//! by 7 ([`planted`] counts them), the one planted difference the traffic
//! here ([`Fleet::get_items`]) meets. Dropping the fleet stops every process
//! and deletes every namespace, also when the caller fails.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};

use crate::{
    Agent, HttpClient, Link, Metrics, Netns, Process, haproxy::HaProxy, prometheus::Prometheus,
    veth,
};

/// v1's replicas.
pub const REPLICAS: usize = 3;

/// Every host's address is 10.200.125.<host>.
pub const fn host_v4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 125, host)
}

pub const CLIENT_V4: Ipv4Addr = host_v4(1);
pub const BALANCER_V4: Ipv4Addr = host_v4(2);
pub const V2_V4: Ipv4Addr = host_v4(21);
pub const V3_V4: Ipv4Addr = host_v4(22);
pub const PROMETHEUS_V4: Ipv4Addr = host_v4(30);

/// Replica `index` (0-based): 10.200.125.11, .12, .13.
pub fn replica_v4(index: usize) -> Ipv4Addr {
    assert!(index < REPLICAS, "replica {index} out of range");
    host_v4(11 + index as u8)
}

/// The service's port, on HAProxy and on every v1 replica.
pub const SERVICE_PORT: u16 = 80;
pub const SHADOW_PORT: u16 = 9000;
/// Each agent's metrics address is its replica's address on this port.
pub const METRICS_PORT: u16 = 9464;
pub const PROMETHEUS_PORT: u16 = 9090;

/// The shadow targets, as every agent is given them (and as the `target`
/// label of their series reads).
pub fn v2_url() -> String {
    format!("http://{V2_V4}:{SHADOW_PORT}")
}

pub fn v3_url() -> String {
    format!("http://{V3_V4}:{SHADOW_PORT}")
}

/// The agent of replica `index`'s metrics address.
pub fn metrics_addr(index: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(replica_v4(index)), METRICS_PORT)
}

/// How many of `GET /items/ID` for `ids` v3 answers differently from v1:
/// myapp's `--regression` answers 500 for every ID divisible by 7.
pub fn planted(ids: RangeInclusive<u32>) -> u64 {
    ids.filter(|id| id % 7 == 0).count() as u64
}

/// How the fleet's namespaces are named.
#[derive(Clone, Copy, Debug)]
pub enum Names<'a> {
    /// Unique per process (`mt-PID-N-fleet-ROLE`): tests in parallel.
    Unique,
    /// `PREFIX-ROLE`, a leftover of an interrupted run replaced: the demo,
    /// whose hosts a person may want to look at by name.
    Fixed(&'a str),
}

impl Names<'_> {
    fn netns(&self, role: &str) -> Result<Netns> {
        match self {
            Self::Unique => Netns::new(&format!("fleet-{role}")),
            Self::Fixed(prefix) => Netns::named(&format!("{prefix}-{role}")),
        }
    }
}

/// What [`Fleet::start`] runs.
#[derive(Clone, Debug)]
pub struct FleetConfig<'a> {
    /// The mirror-agent binary.
    pub agent: &'a Path,
    /// The demo service, `deploy/demo/myapp.py`.
    pub myapp: &'a Path,
    pub names: Names<'a>,
    pub scrape_interval: Duration,
    /// More flags for every agent (`--nice 0`, `--log-format json`).
    pub agent_args: &'a [&'a str],
}

/// The hosts, each a namespace on the switch.
#[derive(Debug)]
pub struct Hosts {
    pub client: Netns,
    pub balancer: Netns,
    pub replicas: Vec<Netns>,
    pub v2: Netns,
    pub v3: Netns,
    pub prometheus: Netns,
    pub switch: Netns,
}

/// The bridge in the switch namespace.
const BRIDGE: &str = "br0";

impl Hosts {
    fn build(names: Names<'_>) -> Result<Self> {
        // The switch first: a failure below still deletes whatever exists.
        let switch = names.netns("sw")?;
        switch.ip(["link", "add", BRIDGE, "type", "bridge"])?;
        Link::new(&switch, BRIDGE).up()?;
        let client = names.netns("client")?;
        let balancer = names.netns("lb")?;
        let replicas = (1..=REPLICAS)
            .map(|i| names.netns(&format!("v1-{i}")))
            .collect::<Result<Vec<_>>>()?;
        let v2 = names.netns("v2")?;
        let v3 = names.netns("v3")?;
        let prometheus = names.netns("prom")?;
        let hosts = Self {
            client,
            balancer,
            replicas,
            v2,
            v3,
            prometheus,
            switch,
        };
        hosts.plug(&hosts.client, "p-client", CLIENT_V4)?;
        hosts.plug(&hosts.balancer, "p-lb", BALANCER_V4)?;
        for (i, replica) in hosts.replicas.iter().enumerate() {
            hosts.plug(replica, &format!("p-v1-{}", i + 1), replica_v4(i))?;
        }
        hosts.plug(&hosts.v2, "p-v2", V2_V4)?;
        hosts.plug(&hosts.v3, "p-v3", V3_V4)?;
        hosts.plug(&hosts.prometheus, "p-prom", PROMETHEUS_V4)?;
        Ok(hosts)
    }

    /// `host`'s eth0, with `addr`, on the bridge's port `port`.
    fn plug(&self, host: &Netns, port: &str, addr: Ipv4Addr) -> Result<()> {
        veth(host, "eth0", &self.switch, port)?;
        self.switch
            .ip(["link", "set", "dev", port, "master", BRIDGE])?;
        Link::new(&self.switch, port).up()?;
        Link::new(host, "eth0").up_with_address(&format!("{addr}/24"))
    }
}

/// The running fleet. Fields drop in order: the processes, then the hosts.
pub struct Fleet {
    pub prometheus: Prometheus,
    /// Replica i's agent.
    pub agents: Vec<Agent>,
    pub balancer: HaProxy,
    /// Replica i's v1.
    pub v1: Vec<Process>,
    pub v2: Process,
    pub v3: Process,
    pub hosts: Hosts,
}

/// How long an agent may take to load and attach its program.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

impl Fleet {
    /// Builds the hosts, starts v1, v2, v3, HAProxy, the agents (attached,
    /// both targets started) and Prometheus (ready; it may not have scraped
    /// yet: [`Fleet::wait_scraped`]).
    pub fn start(config: &FleetConfig<'_>) -> Result<Self> {
        let hosts = Hosts::build(config.names)?;
        let myapp = |netns: &Netns, name: &str, port: u16, extra: &[&str]| {
            start_myapp(config.myapp, netns, name, port, extra)
        };
        let v1 = hosts
            .replicas
            .iter()
            .enumerate()
            .map(|(i, replica)| myapp(replica, &format!("v1-{}", i + 1), SERVICE_PORT, &[]))
            .collect::<Result<Vec<_>>>()?;
        let v2 = myapp(&hosts.v2, "v2", SHADOW_PORT, &[])?;
        let v3 = myapp(&hosts.v3, "v3", SHADOW_PORT, &["--regression"])?;
        let servers: Vec<SocketAddr> = (0..REPLICAS)
            .map(|i| SocketAddr::new(IpAddr::V4(replica_v4(i)), SERVICE_PORT))
            .collect();
        let balancer = HaProxy::start(
            &hosts.balancer,
            SocketAddr::new(IpAddr::V4(BALANCER_V4), SERVICE_PORT),
            &servers,
        )?;
        // All three load their programs at once; then each is waited for.
        let agents = hosts
            .replicas
            .iter()
            .enumerate()
            .map(|(i, replica)| {
                let args = agent_args(i, config.agent_args);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Agent::start(replica, config.agent, &args)
            })
            .collect::<Result<Vec<_>>>()?;
        let agents = agents
            .into_iter()
            .map(|agent| {
                let agent = agent.attached(ATTACH_TIMEOUT)?;
                agent.wait_for_targets(2, Duration::from_secs(10))?;
                Ok(agent)
            })
            .collect::<Result<Vec<_>>>()?;
        let targets: Vec<SocketAddr> = (0..REPLICAS).map(metrics_addr).collect();
        let prometheus = Prometheus::start_scraping(
            &hosts.prometheus,
            SocketAddr::new(IpAddr::V4(PROMETHEUS_V4), PROMETHEUS_PORT),
            &targets,
            config.scrape_interval,
        )?;
        Ok(Self {
            prometheus,
            agents,
            balancer,
            v1,
            v2,
            v3,
            hosts,
        })
    }

    /// Every agent's command line (after the binary) for replica `index`.
    pub fn agent_command(index: usize, extra: &[&str]) -> Vec<String> {
        agent_args(index, extra)
    }

    /// `http://10.200.125.2:80`: the service, as its clients know it.
    pub fn service_url(&self) -> String {
        format!("http://{}", self.balancer.addr())
    }

    /// `GET /items/ID` for every ID, in order, from the client through
    /// HAProxy on one keep-alive connection (HAProxy still spreads the
    /// requests one by one). Returns how many got each status.
    pub fn get_items(&self, ids: RangeInclusive<u32>) -> Result<BTreeMap<u16, u64>> {
        let mut client = HttpClient::connect(&self.hosts.client, self.balancer.addr())?;
        let mut statuses = BTreeMap::new();
        for id in ids {
            let request = format!("GET /items/{id} HTTP/1.1\r\nHost: myapp\r\n\r\n");
            let response = client
                .request(request.as_bytes())
                .with_context(|| format!("GET /items/{id} through HAProxy"))?;
            *statuses.entry(response.status).or_default() += 1;
        }
        client.close()?;
        Ok(statuses)
    }

    /// Replica `index`'s agent's metrics, scraped now.
    pub fn scrape(&self, index: usize) -> Result<Metrics> {
        Metrics::scrape(&self.hosts.replicas[index], metrics_addr(index))
    }

    /// Exchanges replica `index`'s agent judged for `target` so far (every
    /// result of `mirror_compare_total`: match, differ, not compared).
    pub fn judged(&self, index: usize, target: &str) -> Result<u64> {
        Ok(self
            .scrape(index)?
            .sum("mirror_compare_total", &[("target", target)]) as u64)
    }

    /// Waits until the agents together judged `total` exchanges for every
    /// target (v2 and v3) and nothing moved for a while; returns each
    /// agent's share (the same for both targets: each replica mirrors its
    /// own requests to both). More than `total` fails at once.
    pub fn wait_judged(&self, total: u64, timeout: Duration) -> Result<Vec<u64>> {
        let targets = [v2_url(), v3_url()];
        let deadline = std::time::Instant::now() + timeout;
        let mut previous = None;
        loop {
            let mut shares = Vec::with_capacity(REPLICAS);
            let mut sums = [0; 2];
            for index in 0..REPLICAS {
                let metrics = self.scrape(index)?;
                let counts: Vec<u64> = targets
                    .iter()
                    .map(|t| metrics.sum("mirror_compare_total", &[("target", t)]) as u64)
                    .collect();
                shares.push(counts[0]);
                for (sum, n) in sums.iter_mut().zip(&counts) {
                    *sum += n;
                }
            }
            ensure!(
                sums.iter().all(|n| *n <= total),
                "the agents judged {sums:?} exchanges of {total} requests"
            );
            let now = (shares.clone(), sums);
            if sums.iter().all(|n| *n == total) && previous.as_ref() == Some(&now) {
                return Ok(shares);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "after {timeout:?} the agents judged {sums:?} of {total} exchanges \
                 (v2, v3; per agent for v2: {shares:?})"
            );
            previous = Some(now);
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until Prometheus scraped every agent successfully (`up` 1)
    /// at least once after this call, so that what the agents counted
    /// before it is what Prometheus holds.
    pub fn wait_scraped(&self, timeout: Duration) -> Result<()> {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        // `timestamp` of the plain selector: the samples' own time (of an
        // expression such as `up == 1`, it is the query's).
        let (held, last) = self.prometheus.wait_for(
            &self.hosts.prometheus,
            "timestamp(up)",
            timeout,
            |series| series.len() == REPLICAS && series.iter().all(|s| s.value > since),
        )?;
        ensure!(
            held,
            "Prometheus did not scrape all {REPLICAS} agents within {timeout:?}: {last:?}; {}",
            self.prometheus.log()
        );
        let up = self.prometheus.query(&self.hosts.prometheus, "up")?;
        ensure!(
            up.len() == REPLICAS && up.iter().all(|s| s.value == 1.0),
            "an agent's scrape failed: {up:?}"
        );
        Ok(())
    }
}

/// Replica `index`'s agent's flags: capture v1's port on eth0, copy to v2
/// and v3 and compare, v1's own version stamp (`$.version`, the
/// `X-App-Version` header) ignored as the versions' one known difference,
/// metrics on the replica's address for Prometheus.
fn agent_args(index: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--iface",
        "eth0",
        "--port",
        &SERVICE_PORT.to_string(),
        "--shadow",
        &v2_url(),
        "--shadow",
        &v3_url(),
        "--compare",
        "--compare-ignore-field",
        "$.version",
        "--compare-ignore-header",
        "X-App-Version",
        "--metrics-addr",
        &metrics_addr(index).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `python3 MYAPP --name NAME --port PORT [EXTRA]` in `netns`, listening
/// when this returns.
fn start_myapp(
    myapp: &Path,
    netns: &Netns,
    name: &str,
    port: u16,
    extra: &[&str],
) -> Result<Process> {
    let server = Process::spawn(
        name,
        netns
            .command("python3")
            .arg(myapp)
            .args(["--name", name, "--port", &port.to_string()])
            .args(extra),
    )?;
    server.wait_for_stdout("listening", Duration::from_secs(10))?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_differences_are_the_multiples_of_seven() {
        assert_eq!(planted(1..=6), 0);
        assert_eq!(planted(1..=7), 1);
        assert_eq!(planted(1..=700), 100);
        assert_eq!(planted(7..=14), 2);
    }

    #[test]
    fn each_agent_serves_its_metrics_on_its_replica() {
        let args = agent_args(2, &["--nice", "0"]);
        let at = args.iter().position(|a| a == "--metrics-addr").unwrap();
        assert_eq!(args[at + 1], "10.200.125.13:9464");
        assert_eq!(&args[args.len() - 2..], ["--nice", "0"]);
        assert!(args.contains(&"http://10.200.125.22:9000".to_owned()));
    }
}
