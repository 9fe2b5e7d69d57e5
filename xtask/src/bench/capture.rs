//! `cargo xtask bench capture` (also part of `cargo xtask bench`): the
//! kernel program's cost per packet, from the kernel's own accounting
//! (bpf_stats), and the capture rate reached without ring losses. Runs in
//! two throw-away network namespaces.
//!
//! Method:
//! * the client side of the veth has TSO/GSO off and the server side GRO
//!   off, so every segment the program sees is MTU-sized (1448 payload bytes);
//! * phase "unmatched": a stream to a port outside the service set;
//! * phase "matched": a stream to the service port, every byte copied;
//! * phase "rate": several parallel streams to the service port as fast as
//!   the machine goes, GRO on (the normal setting), ring losses read back.
//!
//! `run_time_ns / run_cnt` of the classifier includes its tail call to the
//! copier (tail calls do not leave the entry program's accounting). The
//! figures are read from the agent's own program fds (fdinfo), so other
//! agents running meanwhile (tests) do not mix in.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{
    Agent, Link, Netns, Process, Signal,
    agent::{kernel_counters, kernel_counters_line},
    command, is_root, veth,
};

use super::{
    bpf,
    probe::{self, BpfStats},
};

const CLIENT_NS: &str = "mirror-bench-c";
const SERVER_NS: &str = "mirror-bench-s";
const CLIENT_IF: &str = "mbc0";
const SERVER_IF: &str = "mbs0";
const SERVER_ADDR: &str = "10.200.0.2";
const SERVICE_PORT: u16 = 9000;
const OTHER_PORT: u16 = 9001;

/// A TCP sink: accepts connections forever and discards what they send.
const SINK: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
def drain(c):
    while c.recv(1 << 20): pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
"#;

/// Sends `megabytes` MiB on each of `streams` parallel connections, as
/// HTTP/1.1 POSTs of a 1 MiB body each: the agent keeps such bodies, so
/// the program copies every byte. (Bytes that are not HTTP make the agent
/// give the connection up and tell the program to leave it out: the
/// "matched" phase then timed the ignore path, not the copy.)
const SOURCE: &str = r#"
import socket, sys, threading
host, port, mib, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
body = b"x" * (1 << 20)
head = b"POST /bench HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % len(body)
def send():
    c = socket.create_connection((host, port))
    for _ in range(mib): c.sendall(head); c.sendall(body)
    c.close()
ts = [threading.Thread(target=send) for _ in range(streams)]
[t.start() for t in ts]; [t.join() for t in ts]
"#;

/// The client and the server, joined by a veth pair; removed (and so the
/// pair and every process's view of them) even when the bench fails
/// half-way.
struct Hosts {
    client: Netns,
    server: Netns,
}

impl Hosts {
    fn client_link(&self) -> Link<'_> {
        Link::new(&self.client, CLIENT_IF)
    }

    fn server_link(&self) -> Link<'_> {
        Link::new(&self.server, SERVER_IF)
    }
}

/// What the capture bench measured.
#[derive(Clone, Debug)]
pub struct CaptureFigures {
    pub ns_per_unmatched: f64,
    pub unmatched_packets: u64,
    pub ns_per_matched: f64,
    pub matched_segments: u64,
    pub streams: u64,
    pub rate_mib_per_stream: u64,
    pub rate_mb_per_s: f64,
    pub payload_bytes: u64,
    pub records_lost: u64,
    /// The agent's `kernel counters:` line at exit.
    pub counters: String,
    /// The same program under BPF_PROG_TEST_RUN, net of an empty program.
    pub test_run: Option<bpf::TestRun>,
}

impl CaptureFigures {
    /// Per packet to another port, bpf_stats' own cost taken off.
    pub fn net_unmatched(&self) -> f64 {
        self.ns_per_unmatched - self.test_run.map_or(0.0, |t| t.stats_floor_ns)
    }

    /// Per matched MTU-sized segment, bpf_stats' own cost taken off.
    pub fn net_matched(&self) -> f64 {
        self.ns_per_matched - self.test_run.map_or(0.0, |t| t.stats_floor_ns)
    }

    pub fn markdown(&self, quick: bool) -> String {
        let test_run = self.test_run.map_or(String::new(), |t| {
            format!(
                "| bpf_stats' own cost per run (an empty 2-instruction program) | {:.1} | |\n\
                 | → kernel ns per packet to another port, without it | {:.1} | ≤ 50 |\n\
                 | → kernel ns per matched MTU-sized segment, without it | {:.1} | ≤ 300 |\n\
                 | BPF_PROG_TEST_RUN, net of an empty program: packet to another port | {:.1} | |\n\
                 | BPF_PROG_TEST_RUN, net: matched segment, 1448 B payload (linear skb, hot) | {:.1} | |\n\
                 | BPF_PROG_TEST_RUN, net: matched segment, 100 B payload | {:.1} | |\n\
                 | BPF_PROG_TEST_RUN, net: bpf_ringbuf_reserve + submit of a 512 B record alone | {:.1} | |\n\
                 | BPF_PROG_TEST_RUN, net: reserve + bpf_skb_load_bytes of 1448 B + submit alone (the copy's floor) | {:.1} | |\n",
                t.stats_floor_ns,
                self.net_unmatched(),
                self.net_matched(),
                t.unmatched_ns,
                t.matched_mtu_ns,
                t.matched_small_ns,
                t.ring_record_ns,
                t.copy_record_ns,
            )
        });
        format!(
            "| measure | value | goal |\n|---|---|---|\n\
             | kernel ns per packet to another port (bpf_stats, {} packets) | {:.1} | ≤ 50 |\n\
             | kernel ns per matched MTU-sized segment (bpf_stats, {} segments, 1448 B copied) | {:.1} | ≤ 300 |\n\
             {test_run}\
             | capture rate, {} streams x {} MiB, GRO on | {:.0} MB/s | |\n\
             | payload bytes captured (all phases) | {} | |\n\
             | ring records lost (all phases) | {} | 0 |\n\n\
             Command: `cargo xtask bench capture{}`. Kernel counters at exit: `{}`\n",
            self.unmatched_packets,
            self.ns_per_unmatched,
            self.matched_segments,
            self.ns_per_matched,
            self.streams,
            self.rate_mib_per_stream,
            self.rate_mb_per_s,
            self.payload_bytes,
            self.records_lost,
            if quick { " --quick" } else { "" },
            self.counters.trim(),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ns_per_unmatched_packet": round1(self.ns_per_unmatched),
            "unmatched_packets": self.unmatched_packets,
            "ns_per_matched_segment": round1(self.ns_per_matched),
            "matched_segments": self.matched_segments,
            "capture_rate_mb_per_s": self.rate_mb_per_s.round(),
            "payload_bytes": self.payload_bytes,
            "records_lost": self.records_lost,
            "kernel_counters": self.counters.trim(),
            "test_run": self.test_run.map(|t| serde_json::json!({
                "bpf_stats_floor_ns": round1(t.stats_floor_ns),
                "net_ns_per_unmatched_packet": round1(self.net_unmatched()),
                "net_ns_per_matched_segment": round1(self.net_matched()),
                "test_run_unmatched_ns": round1(t.unmatched_ns),
                "test_run_matched_1448_ns": round1(t.matched_mtu_ns),
                "test_run_matched_100_ns": round1(t.matched_small_ns),
                "test_run_ring_record_512_ns": round1(t.ring_record_ns),
                "test_run_copy_record_1448_ns": round1(t.copy_record_ns),
            })),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `cargo xtask bench capture`: measures, writes target/bench/capture.md
/// and capture.json.
pub fn capture(root: &Path, quick: bool, agent: Option<&Path>) -> Result<()> {
    let agent = match agent {
        Some(path) => path.to_path_buf(),
        None => build_agent(root)?,
    };
    let figures = measure(&agent, quick)?;
    let report = format!("# mirror capture bench\n\n{}", figures.markdown(quick));
    let out = root.join("target/bench");
    fs::create_dir_all(&out)?;
    fs::write(out.join("capture.md"), &report)?;
    fs::write(out.join("capture.json"), format!("{}\n", figures.json()))?;
    println!("{report}");
    println!("written to {}", out.join("capture.md").display());
    if figures.records_lost > 0 {
        // The rate phase sends as fast as the machine goes: past what the
        // agent drains, records are lost and counted; that is a figure of
        // the bench, not a failure of it.
        println!(
            "note: {} ring records were lost (the agent fell behind the rate phase)",
            figures.records_lost
        );
    }
    Ok(())
}

/// Runs the three phases with the agent at `agent`.
pub fn measure(agent: &Path, quick: bool) -> Result<CaptureFigures> {
    ensure!(
        is_root(),
        "the capture bench needs root (network namespaces, BPF)"
    );
    let hosts = topology()?;
    let stats_before =
        fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_else(|_| "0".into());
    sysctl("kernel.bpf_stats_enabled=1")?;
    let result = phases(&hosts, agent, quick);
    let _ = sysctl(&format!("kernel.bpf_stats_enabled={}", stats_before.trim()));
    result
}

fn sysctl(setting: &str) -> Result<()> {
    command::run(Command::new("sysctl").args(["-q", "-w", setting])).map(drop)
}

fn phases(hosts: &Hosts, agent: &Path, quick: bool) -> Result<CaptureFigures> {
    let _sinks = [sink(hosts, SERVICE_PORT)?, sink(hosts, OTHER_PORT)?];
    let agent = Agent::start(
        &hosts.server,
        agent,
        &[
            "--iface",
            SERVER_IF,
            "--port",
            &SERVICE_PORT.to_string(),
            "--log-level",
            "warn",
            "--log-format",
            "text",
        ],
    )
    .context("starting mirror-agent")?;
    let pid = agent.pid();
    // Attached once the agent holds its programs (loading takes ~0.5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe::bpf_stats(pid).is_err() || !holds_program(pid) {
        ensure!(
            Instant::now() < deadline,
            "mirror-agent did not attach within 20 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));

    let mib = if quick { 64 } else { 512 };
    let unmatched = measure_load(pid, || send(hosts, OTHER_PORT, mib, 1))?;
    let matched = measure_load(pid, || send(hosts, SERVICE_PORT, mib, 1))?;

    // Rate: GRO back on, as in production; several streams at once.
    hosts.server_link().set_features(&[("gro", true)])?;
    hosts
        .client_link()
        .set_features(&[("tso", true), ("gso", true)])?;
    let streams = 4;
    let rate_mib = if quick { 128 } else { 1024 };
    let started = Instant::now();
    send(hosts, SERVICE_PORT, rate_mib, streams)?;
    let elapsed = started.elapsed();
    thread::sleep(Duration::from_millis(500));
    // bpf_stats are still on: the empty program's runs give their floor.
    let test_run = match classifier_id(pid) {
        Some(id) => match bpf::measure(id, SERVICE_PORT) {
            Ok(t) => Some(t),
            Err(err) => {
                eprintln!("warning: BPF_PROG_TEST_RUN figures unavailable: {err:#}");
                None
            }
        },
        None => None,
    };
    let exit = agent.stop(Signal::INT, Duration::from_secs(60))?;
    // The agent logs at warn level: what it had to say, after the phases.
    if !exit.stderr.is_empty() {
        eprintln!("{}", exit.stderr);
    }
    let exit = exit.success()?;
    let counters = kernel_counters_line(&exit.stdout)?.to_owned();
    let kernel = kernel_counters(&exit.stdout)?;
    let counter = |name: &str| {
        kernel
            .get(name)
            .copied()
            .with_context(|| format!("no {name} in `{counters}`"))
    };

    ensure!(
        matched.run_cnt > 0 && unmatched.run_cnt > 0,
        "the program saw no packets"
    );
    let total_bytes = (rate_mib * streams) as f64 * 1048576.0;
    Ok(CaptureFigures {
        ns_per_unmatched: unmatched.run_time_ns as f64 / unmatched.run_cnt.max(1) as f64,
        unmatched_packets: unmatched.run_cnt,
        ns_per_matched: matched.run_time_ns as f64 / matched.run_cnt.max(1) as f64,
        matched_segments: matched.run_cnt,
        streams,
        rate_mib_per_stream: rate_mib,
        rate_mb_per_s: total_bytes / elapsed.as_secs_f64() / 1e6,
        payload_bytes: counter("payload_bytes")?,
        records_lost: counter("records_lost")?,
        counters,
        test_run,
    })
}

/// The id of the program the agent attached (its link's prog_id).
fn classifier_id(pid: u32) -> Option<u32> {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains("link_type:"))
        .find_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// The agent has its classifier loaded (a prog fd with bpf_stats).
fn holds_program(pid: u32) -> bool {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| fs::read_to_string(e.path()).is_ok_and(|t| t.contains("link_type:")))
        })
        .unwrap_or(false)
}

fn build_agent(root: &Path) -> Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "mirror-agent"])
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "building mirror-agent failed");
    Ok(root.join("target/release/mirror-agent"))
}

fn topology() -> Result<Hosts> {
    // Named: a namespace left by an interrupted run is removed first.
    let hosts = Hosts {
        client: Netns::named(CLIENT_NS)?,
        server: Netns::named(SERVER_NS)?,
    };
    veth(&hosts.client, CLIENT_IF, &hosts.server, SERVER_IF)?;
    hosts.client_link().up_with_address("10.200.0.1/24")?;
    hosts.server_link().up_with_address("10.200.0.2/24")?;
    // MTU-sized segments for the per-packet figures.
    hosts
        .client_link()
        .set_features(&[("tso", false), ("gso", false)])?;
    hosts.server_link().set_features(&[("gro", false)])?;
    Ok(hosts)
}

/// Runs `load` and returns the bpf_stats delta of the agent's programs
/// over it (its own fds: other agents loaded meanwhile do not count).
fn measure_load(pid: u32, load: impl FnOnce() -> Result<()>) -> Result<BpfStats> {
    let before = probe::bpf_stats(pid)?;
    load()?;
    Ok(probe::bpf_stats(pid)?.since(before))
}

fn send(hosts: &Hosts, port: u16, mib: u64, streams: u64) -> Result<()> {
    command::run(hosts.client.command("python3").args([
        "-c",
        SOURCE,
        SERVER_ADDR,
        &port.to_string(),
        &mib.to_string(),
        &streams.to_string(),
    ]))
    .map(drop)
}

/// A TCP sink on `port` of the server, killed on drop.
fn sink(hosts: &Hosts, port: u16) -> Result<Process> {
    let sink = Process::spawn(
        "the TCP sink",
        hosts
            .server
            .command("python3")
            .args(["-c", SINK, SERVER_ADDR, &port.to_string()]),
    )?;
    thread::sleep(Duration::from_millis(200));
    Ok(sink)
}
