//! `tcpdump -w FILE` of the service port on one interface, as an SRE takes
//! a capture to feed `record --input-pcap` or `replay --input-pcap`.

use std::{path::Path, time::Duration};

use anyhow::{Result, ensure};
use mirror_testkit::{Netns, Process, Signal};

use crate::rig::PORT;

/// A snap length of one full-sized segment: enough where TSO and GRO are
/// off. libpcap sizes its ring's blocks by the snap length, and with the
/// default (256 KiB blocks) it ran out of them under a test's load.
pub const SNAP_ONE_MSS: u32 = 4096;

/// tcpdump writing each packet of the service port as it comes; stopped
/// (and its file complete) by [`Tcpdump::stop`].
pub struct Tcpdump {
    process: Process,
}

impl Tcpdump {
    /// Captures `tcp port PORT` on `iface` of `netns` into `file`, each
    /// packet cut at `snap` bytes.
    pub fn start(netns: &Netns, iface: &str, file: &Path, snap: u32) -> Result<Self> {
        let mut command = netns.command("tcpdump");
        command
            .args(["-i", iface, "-n", "-U", "-B", "65536", "-s"])
            .arg(snap.to_string())
            .arg("-w")
            .arg(file)
            .args(["tcp", "port"])
            .arg(PORT.to_string());
        let process = Process::spawn("tcpdump", &mut command)?;
        process.wait_for_stderr("listening on", Duration::from_secs(10))?;
        Ok(Self { process })
    }

    /// SIGINT once tcpdump read every packet so far (its ring hands over
    /// blocks at least every second); it must exit 0 having written every
    /// packet its filter received.
    pub fn stop(mut self) -> Result<()> {
        std::thread::sleep(Duration::from_millis(1500));
        let status = self.process.stop(Signal::INT, Duration::from_secs(10))?;
        let said = self.process.stderr_lines().join("\n");
        ensure!(status.success(), "tcpdump ended with {status}: {said}");
        ensure!(
            said.lines().any(|l| l == "0 packets dropped by kernel"),
            "tcpdump lost packets: {said}"
        );
        let count = |what: &str| {
            said.lines()
                .find_map(|l| l.strip_suffix(what))
                .and_then(|n| n.trim().parse::<u64>().ok())
        };
        let (written, received) = (
            count(" packets captured"),
            count(" packets received by filter"),
        );
        ensure!(
            written.is_some() && written == received,
            "tcpdump wrote {written:?} of {received:?} packets: {said}"
        );
        Ok(())
    }
}
