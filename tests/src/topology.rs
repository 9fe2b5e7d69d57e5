//! The two-host test network: a client namespace and a server namespace
//! joined by a veth pair, IPv4 and IPv6, no route anywhere else.
//!
//! ```text
//!  client netns                       server netns
//!  veth-c 10.200.0.1/24  <──veth──>   veth-s 10.200.0.2/24   (capture here)
//!         fd00:200::1/64                     fd00:200::2/64
//! ```
//!
//! More hosts (shadows) are more [`Netns`] values joined with [`veth`] and
//! configured through [`Link`] (see [`crate::ShadowNet`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context as _, Result};

use mirror_testkit::{Link, Netns, veth};

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);

/// Interface names (each lives in its own namespace).
pub const CLIENT_IF: &str = "veth-c";
pub const SERVER_IF: &str = "veth-s";

/// Which IP version a test talks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Client and server namespaces joined by a veth pair. Dropping it deletes
/// both namespaces, and with them the veth pair and anything attached.
#[derive(Debug)]
pub struct Topology {
    pub client: Netns,
    pub server: Netns,
}

/// Options of a [`Topology`]; unset ones keep the kernel's defaults.
#[derive(Clone, Debug, Default)]
pub struct TopologyBuilder {
    server_gro: Option<bool>,
    client_tso: Option<bool>,
    mtu: Option<u32>,
}

impl TopologyBuilder {
    /// GRO on the server-side veth (`ethtool -K veth-s gro on|off`). On a
    /// veth, GRO on also turns on NAPI for its receive path, which is what
    /// makes GRO happen there.
    pub fn gro(mut self, on: bool) -> Self {
        self.server_gro = Some(on);
        self
    }

    /// TSO and GSO on the client-side veth. Off, the client sends segments
    /// of one MSS each; on (the default), the veth carries super-packets of
    /// up to 64 KiB to the server untouched.
    pub fn tso(mut self, on: bool) -> Self {
        self.client_tso = Some(on);
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn build(self) -> Result<Topology> {
        let client = Netns::new("c")?;
        let server = Netns::new("s")?;
        veth(&client, CLIENT_IF, &server, SERVER_IF)?;
        let topology = Topology { client, server };
        let (client_link, server_link) = (topology.client_link(), topology.server_link());
        for (link, v4, v6) in [
            (client_link, CLIENT_V4, CLIENT_V6),
            (server_link, SERVER_V4, SERVER_V6),
        ] {
            if let Some(mtu) = self.mtu {
                link.set_mtu(mtu)?;
            }
            link.add_address(&format!("{v4}/24"))?;
            link.add_address(&format!("{v6}/64"))?;
        }
        if let Some(on) = self.client_tso {
            client_link.set_features(&[("tso", on), ("gso", on)])?;
        }
        if let Some(on) = self.server_gro {
            server_link.set_features(&[("gro", on)])?;
        }
        client_link.up()?;
        server_link.up()?;
        Ok(topology)
    }
}

impl Topology {
    /// Client and server with the kernel's default offloads.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    pub fn client_link(&self) -> Link<'_> {
        Link::new(&self.client, CLIENT_IF)
    }

    pub fn server_link(&self) -> Link<'_> {
        Link::new(&self.server, SERVER_IF)
    }

    /// The server's address for `port` in `family`.
    pub fn server_addr(&self, family: Family, port: u16) -> SocketAddr {
        let ip = match family {
            Family::V4 => IpAddr::V4(SERVER_V4),
            Family::V6 => IpAddr::V6(SERVER_V6),
        };
        SocketAddr::new(ip, port)
    }

    /// Whether GRO is on for the server-side veth, as ethtool reports it.
    pub fn server_gro(&self) -> Result<bool> {
        let value = self
            .server_link()
            .feature("generic-receive-offload")
            .context("reading GRO state")?;
        Ok(value.starts_with("on"))
    }
}
