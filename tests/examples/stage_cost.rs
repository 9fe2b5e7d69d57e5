//! The kernel program's cost by part: loads each eBPF object given (the
//! real one, and measuring builds that stop after a stage, built with
//! `--cfg mirror_stop="STAGE"`) and times its classifier with
//! `BPF_PROG_TEST_RUN` on a matched 1448 B segment, a matched 100 B one and
//! a packet to another port. Prints one line per object: median ns per run
//! of 5 rounds.
//!
//! `cargo xtask bench capture --stages` builds the objects and runs this;
//! by hand: `cargo run -p mirror-tests --example stage_cost -- OBJ...`
//! (root).

use std::{net::Ipv4Addr, os::fd::AsFd as _};

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    maps::{Array, ProgramArray},
    programs::SchedClassifier,
};
use mirror_common::{
    COPY_PROGRAM_NAME, CaptureConfig, JUMP_COPY, MAP_CONFIG, MAP_EVENTS, MAP_JUMP, PROGRAM_NAME,
};
use mirror_testkit::packet::{self, ETH_P_IP, IPPROTO_TCP};

const PORT: u16 = 9000;
/// Room for every record of the rounds below without a reader: a full ring
/// would make the reservation fail, which is cheaper than a copy.
const RING_BYTES: u32 = 256 << 20;
const ROUNDS: usize = 5;

/// Ethernet + IPv4 + TCP with a 32-byte header (timestamps), ACK|PSH.
fn segment(port: u16, payload: usize) -> Vec<u8> {
    let tcp = packet::tcp_with_offset(40000, port, 1000, 0x18, 8, &vec![b'x'; payload]);
    packet::ethernet(
        ETH_P_IP,
        &packet::ipv4(
            Ipv4Addr::new(10, 200, 0, 1),
            Ipv4Addr::new(10, 200, 0, 2),
            IPPROTO_TCP,
            &[],
            &tcp,
        ),
    )
}

fn measure(path: &str) -> Result<[f64; 3]> {
    let object = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_EVENTS, RING_BYTES)
        .load(&object)?;
    let mut config = CaptureConfig::empty();
    config.set_ports(&[PORT]);
    // As the agent sets it for its default 16 MiB ring.
    config.wakeup_bytes = 1 << 20;
    let mut map: Array<_, CaptureConfig> = ebpf.map_mut(MAP_CONFIG).context("config")?.try_into()?;
    map.set(0, config, 0)?;
    let copier: &mut SchedClassifier = ebpf
        .program_mut(COPY_PROGRAM_NAME)
        .context("copier")?
        .try_into()?;
    copier.load()?;
    let copier_fd = copier.fd()?.try_clone()?;
    let mut jump: ProgramArray<_> = ebpf.map_mut(MAP_JUMP).context("jump")?.try_into()?;
    jump.set(JUMP_COPY, &copier_fd, 0)?;
    let classifier: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_NAME)
        .context("classifier")?
        .try_into()?;
    classifier.load()?;
    let fd = classifier.fd()?.as_fd();
    let median = |frame: &[u8], repeat: u32| -> Result<f64> {
        // One warm-up round, then the median of ROUNDS.
        packet::prog_test_run(fd, frame, repeat)?;
        let mut v = (0..ROUNDS)
            .map(|_| packet::prog_test_run(fd, frame, repeat).map(|r| r.duration_ns as f64))
            .collect::<std::io::Result<Vec<_>>>()?;
        v.sort_by(f64::total_cmp);
        Ok(v[ROUNDS / 2])
    };
    Ok([
        median(&segment(PORT, 1448), 10_000)?,
        median(&segment(PORT, 100), 10_000)?,
        median(&segment(PORT + 1, 0), 100_000)?,
    ])
}

fn main() -> Result<()> {
    println!("object\tmatched 1448 B\tmatched 100 B\tother port");
    for path in std::env::args().skip(1) {
        let [mtu, small, other] = measure(&path)?;
        println!("{path}\t{mtu:.0}\t{small:.0}\t{other:.0}");
    }
    Ok(())
}
