//! Host names for programs started in a namespace: `ip netns exec NAME`
//! bind-mounts `/etc/netns/NAME/hosts` over `/etc/hosts` when that file
//! exists, so a program started that way (the agent, say) resolves these
//! names with the system resolver, as it would resolve service names in a
//! cluster, and nothing else does.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::{Context as _, Result};

use crate::netns::Netns;

const ETC_NETNS: &str = "/etc/netns";

/// Creating and removing `/etc/netns` go one at a time in this process.
static LOCK: Mutex<()> = Mutex::new(());

/// `/etc/netns/NAME/hosts`, removed on drop (and `/etc/netns` with it when
/// nothing else is left there).
#[derive(Debug)]
pub struct EtcHosts {
    dir: PathBuf,
}

impl EtcHosts {
    /// Writes the hosts file of `netns`: localhost plus one line per entry
    /// (a name may come several times: one address per line).
    pub fn create(netns: &Netns, entries: &[(IpAddr, &str)]) -> Result<Self> {
        let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = Path::new(ETC_NETNS).join(netns.name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let hosts = Self { dir };
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (addr, name) in entries {
            text.push_str(&format!("{addr} {name}\n"));
        }
        let path = hosts.path();
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(hosts)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("hosts")
    }
}

impl Drop for EtcHosts {
    fn drop(&mut self) {
        let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {err}", self.dir.display());
        }
        // Only if empty: other namespaces may have files there.
        let _ = std::fs::remove_dir(ETC_NETNS);
    }
}
