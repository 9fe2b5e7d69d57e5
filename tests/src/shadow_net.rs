//! The replay test network: a client, the primary (v1, where the agent
//! captures) and shadow hosts that only the primary can reach, each on a
//! veth pair of its own. IPv4 only, no route anywhere else.
//!
//! ```text
//!  client netns          primary netns (v1)                 shadow i netns
//!  veth-c 10.200.0.1 ──▶ veth-s 10.200.0.2   (capture here)
//!                        veth-sh<i> 10.200.<10+i>.1 ──veth──▶ veth-p 10.200.<10+i>.2
//! ```
//!
//! A shadow host can carry more addresses ([`ShadowNet::add_shadow_address`]),
//! e.g. two replicas of one service in one namespace.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Result, ensure};

use mirror_testkit::{Link, Netns, veth};

use crate::topology::{Family, Topology};

/// The shadow end of each shadow link (in the shadow's namespace).
pub const SHADOW_IF: &str = "veth-p";

/// At most this many shadow hosts (10.200.10.0/24 to 10.200.59.0/24).
pub const MAX_SHADOWS: usize = 50;

/// The primary's end of the link to shadow `index`.
pub fn primary_if(index: usize) -> String {
    format!("veth-sh{index}")
}

/// Address `host` on the link of shadow `index`: 10.200.<10+index>.<host>.
/// Host 1 is the primary's end, 2 the shadow's first address.
pub fn shadow_v4(index: usize, host: u8) -> Ipv4Addr {
    assert!(index < MAX_SHADOWS, "shadow index {index} out of range");
    Ipv4Addr::new(10, 200, 10 + index as u8, host)
}

/// Client, primary and `n` shadow hosts. Dropping it deletes every
/// namespace, and with them the links and anything attached.
#[derive(Debug)]
pub struct ShadowNet {
    /// Client and primary (`topology.server`).
    pub topology: Topology,
    pub shadows: Vec<Netns>,
}

impl ShadowNet {
    /// Builds the client-primary pair and `shadows` shadow hosts, links up.
    pub fn new(shadows: usize) -> Result<Self> {
        ensure!(shadows <= MAX_SHADOWS, "at most {MAX_SHADOWS} shadows");
        let mut net = Self {
            topology: Topology::new()?,
            shadows: Vec::with_capacity(shadows),
        };
        for index in 0..shadows {
            // Kept before it is configured: a failure below still deletes it.
            net.shadows.push(Netns::new(&format!("sh{index}"))?);
            let shadow = &net.shadows[index];
            let primary_name = primary_if(index);
            veth(&net.topology.server, &primary_name, shadow, SHADOW_IF)?;
            let primary = Link::new(&net.topology.server, &primary_name);
            let far = Link::new(shadow, SHADOW_IF);
            primary.add_address(&format!("{}/24", shadow_v4(index, 1)))?;
            far.add_address(&format!("{}/24", shadow_v4(index, 2)))?;
            primary.up()?;
            far.up()?;
        }
        Ok(net)
    }

    pub fn client(&self) -> &Netns {
        &self.topology.client
    }

    /// The primary's namespace (v1): its server and the agent run here.
    pub fn primary(&self) -> &Netns {
        &self.topology.server
    }

    pub fn shadow(&self, index: usize) -> &Netns {
        &self.shadows[index]
    }

    /// The primary's service address (10.200.0.2:port), as the client sees it.
    pub fn primary_addr(&self, port: u16) -> SocketAddr {
        self.topology.server_addr(Family::V4, port)
    }

    /// The first address of shadow `index` (10.200.<10+index>.2:port).
    pub fn shadow_addr(&self, index: usize, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(shadow_v4(index, 2)), port)
    }

    /// `http://10.200.<10+index>.2:port`.
    pub fn shadow_url(&self, index: usize, port: u16) -> String {
        format!("http://{}", self.shadow_addr(index, port))
    }

    /// Adds 10.200.<10+index>.<host> to shadow `index` (host 3 and up): a
    /// second replica in the same namespace.
    pub fn add_shadow_address(&self, index: usize, host: u8) -> Result<Ipv4Addr> {
        ensure!(host > 2 && host < 255, "host {host}: 1 and 2 are taken");
        let addr = shadow_v4(index, host);
        Link::new(self.shadow(index), SHADOW_IF).add_address(&format!("{addr}/24"))?;
        Ok(addr)
    }
}
