//! Links between namespaces: veth pairs, and the settings of one interface
//! (addresses, MTU, state, offloads).

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{command::run, netns::Netns};

/// Creates a veth pair with one end in each namespace, directly (the pair
/// never exists in the caller's namespace). Both ends stay down: see
/// [`Link`] for addresses and state.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    run(Command::new("ip").args([
        "link",
        "add",
        "name",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]))
    .with_context(|| {
        format!(
            "cannot create veth {}:{a_if} <-> {}:{b_if}",
            a.name(),
            b.name()
        )
    })?;
    Ok(())
}

/// One interface inside a namespace.
#[derive(Clone, Copy, Debug)]
pub struct Link<'a> {
    pub netns: &'a Netns,
    pub name: &'a str,
}

impl<'a> Link<'a> {
    pub fn new(netns: &'a Netns, name: &'a str) -> Self {
        Self { netns, name }
    }

    /// Adds an address such as `10.200.0.1/24` or `fd00:200::1/64` (IPv6
    /// without duplicate address detection, so it is usable at once).
    pub fn add_address(&self, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", self.name];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.netns.ip(args)?;
        Ok(())
    }

    /// [`Link::add_address`], then [`Link::up`]: a host with one address.
    pub fn up_with_address(&self, cidr: &str) -> Result<()> {
        self.add_address(cidr)?;
        self.up()
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.netns
            .ip(["link", "set", "dev", self.name, "mtu", &mtu.to_string()])?;
        Ok(())
    }

    pub fn up(&self) -> Result<()> {
        self.netns.ip(["link", "set", "dev", self.name, "up"])?;
        Ok(())
    }

    /// `ethtool -K IF FEATURE on|off ...`.
    pub fn set_features(&self, features: &[(&str, bool)]) -> Result<()> {
        let mut args = vec!["-K", self.name];
        for (feature, on) in features {
            args.push(feature);
            args.push(if *on { "on" } else { "off" });
        }
        self.netns.exec("ethtool", args)?;
        Ok(())
    }

    /// The value of one feature as `ethtool -k` shows it (`on`, `off`,
    /// `off [fixed]`, ...).
    pub fn feature(&self, name: &str) -> Result<String> {
        let shown = self.netns.exec("ethtool", ["-k", self.name])?;
        shown
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}:")))
            .map(|value| value.trim().to_owned())
            .with_context(|| format!("ethtool -k {} shows no {name}", self.name))
    }
}
