//! The kernel program's cost by part (docs/benchmarks.md, "Where a matched
//! segment's time goes"). Builds the eBPF crate once per stage with
//! `--cfg mirror_stop="STAGE"` (a build whose classifier stops after that
//! stage: mirror-ebpf/Cargo.toml lists them) and once whole, then times each
//! classifier with `BPF_PROG_TEST_RUN` on a matched 1448 B segment, a
//! matched 100 B one, a matched segment without payload (an ACK) and a
//! packet to another port; and, in the same ring, the copy's floor: a
//! 2-call program that only reserves, copies the 1448 B and submits.
//!
//! Each figure is the median ns per run of 5 rounds, net of a 2-instruction
//! program timed just before (the test loop's own cost, and bpf_stats' when
//! something turned them on: the line then says so). The ring is the
//! agent's default 16 MiB, emptied after every round.
//!
//! Run as root: `cargo run --release -p mirror-tests --example stage_cost`
//! (or `-- OBJECT...` to time objects built elsewhere).

#[path = "../../xtask/src/toolchain.rs"]
mod toolchain;

use std::{
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    maps::{Array, ProgramArray, RingBuf},
    programs::SchedClassifier,
};
use mirror_common::{
    COPY_PROGRAM_NAME, CaptureConfig, JUMP_COPY, MAP_CONFIG, MAP_EVENTS, MAP_JUMP, PROGRAM_NAME,
    RECORD_HEADER_SIZE,
};
use mirror_testkit::packet::{self, ETH_P_IP, IPPROTO_TCP};

const PORT: u16 = 9000;
/// The agent's default ring. It is emptied after every round (a full ring
/// would make the reservation fail, which is cheaper than a copy), so the
/// program writes over memory it used before, as it does in production.
const RING_BYTES: u32 = 16 << 20;
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

/// One BPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | ((dst | (src << 4)) as u64) << 8
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// Loads a classifier made of `insns` with bpf(2).
fn load_raw(insns: &[u64]) -> Result<OwnedFd> {
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&3u32.to_le_bytes()); // BPF_PROG_TYPE_SCHED_CLS
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_le_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_le_bytes());
    // SAFETY: a zero-padded bpf_attr whose pointers outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("loading a raw program");
    }
    // SAFETY: a new fd, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `r0 = TC_ACT_UNSPEC; exit`: the test loop's floor.
fn empty_program() -> Result<OwnedFd> {
    load_raw(&[insn(0xb7, 0, 0, 0, -1), insn(0x95, 0, 0, 0, 0)])
}

/// The copy's floor, in `ring`: reserves a record as the program does for
/// a 1448 B payload (header + the 1536 B class), copies the payload of
/// [`segment`] into it with `bpf_skb_load_bytes`, submits it; nothing else.
fn copy_floor_program(ring: BorrowedFd<'_>) -> Result<OwnedFd> {
    let header = RECORD_HEADER_SIZE as i32;
    load_raw(&[
        insn(0xbf, 6, 1, 0, 0),                // r6 = ctx
        insn(0x18, 1, 1, 0, ring.as_raw_fd()), // r1 = ring (map fd)
        insn(0, 0, 0, 0, 0),                   //
        insn(0xb7, 2, 0, 0, header + 1536),    // r2 = size
        insn(0xb7, 3, 0, 0, 0),                // r3 = 0
        insn(0x85, 0, 0, 0, 131),              // call bpf_ringbuf_reserve
        insn(0x55, 0, 0, 2, 0),                // if r0 != 0 goto +2
        insn(0xb7, 0, 0, 0, -1),               //
        insn(0x95, 0, 0, 0, 0),                // exit
        insn(0xbf, 7, 0, 0, 0),                // r7 = record
        insn(0xbf, 1, 6, 0, 0),                // r1 = ctx
        insn(0xb7, 2, 0, 0, 14 + 20 + 32),     // r2 = payload offset
        insn(0xbf, 3, 7, 0, 0),                // r3 = record
        insn(0x07, 3, 0, 0, header),           // r3 += header
        insn(0xb7, 4, 0, 0, 1448),             // r4 = len
        insn(0x85, 0, 0, 0, 26),               // call bpf_skb_load_bytes
        insn(0xbf, 1, 7, 0, 0),                // r1 = record
        insn(0xb7, 2, 0, 0, 1),                // r2 = BPF_RB_NO_WAKEUP
        insn(0x85, 0, 0, 0, 132),              // call bpf_ringbuf_submit
        insn(0xb7, 0, 0, 0, -1),               //
        insn(0x95, 0, 0, 0, 0),                // exit
    ])
}

/// Median ns per run of `fd` on `frame` over ROUNDS rounds, after one
/// warm-up round.
fn median(fd: BorrowedFd<'_>, frame: &[u8], repeat: u32, mut between: impl FnMut()) -> Result<f64> {
    packet::prog_test_run(fd, frame, repeat)?;
    between();
    let mut v = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        v.push(packet::prog_test_run(fd, frame, repeat)?.duration_ns as f64);
        between();
    }
    v.sort_by(f64::total_cmp);
    Ok(v[ROUNDS / 2])
}

fn measure(path: &Path, empty: BorrowedFd<'_>) -> Result<[f64; 5]> {
    let object = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_EVENTS, RING_BYTES)
        .load(&object)?;
    let ring = ebpf.take_map(MAP_EVENTS).context("ring")?;
    let mut config = CaptureConfig::empty();
    config.set_ports(&[PORT]);
    // As the agent sets it for its default 16 MiB ring.
    config.wakeup_bytes = 1 << 20;
    let mut map: Array<_, CaptureConfig> =
        ebpf.map_mut(MAP_CONFIG).context("config")?.try_into()?;
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
    let mut ring = RingBuf::try_from(ring)?;
    let copy_floor = copy_floor_program(ring.as_fd())?;
    let mut net = |prog: BorrowedFd<'_>, frame: &[u8], repeat: u32| -> Result<f64> {
        let floor = median(empty, frame, 100_000, || {})?;
        let run = median(prog, frame, repeat, || while ring.next().is_some() {})?;
        Ok(run - floor)
    };
    Ok([
        net(copy_floor.as_fd(), &segment(PORT, 1448), 5_000)?,
        net(fd, &segment(PORT, 1448), 5_000)?,
        net(fd, &segment(PORT, 100), 5_000)?,
        net(fd, &segment(PORT, 0), 100_000)?,
        net(fd, &segment(PORT + 1, 0), 100_000)?,
    ])
}

fn bpf_stats_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() != "0")
}

/// The measuring builds, in the order the program runs through them.
const STAGES: [&str; 8] = [
    "seen", "parse", "sample", "ignore", "header", "handoff", "reserve", "full",
];

/// Builds the eBPF crate for `stage` ("full": the real program) as the
/// agent's build.rs does, and returns the object's path.
fn build(root: &Path, stage: &str) -> Result<PathBuf> {
    let arch = std::env::consts::ARCH;
    let mut flags = vec![
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_string(),
        "-Clink-arg=--btf".to_string(),
    ];
    if stage != "full" {
        flags.push(format!("--cfg=mirror_stop=\"{stage}\""));
        // The code after the stop is unreachable, as meant.
        flags.push("-Awarnings".to_string());
    }
    let target_dir = root.join("target/ebpf-stages");
    let status = Command::new("cargo")
        .arg(format!("+{}", toolchain::ebpf_toolchain()))
        .args(["build", "-q", "-p", "mirror-ebpf", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .current_dir(root)
        .status()
        .context("running cargo")?;
    anyhow::ensure!(status.success(), "building the {stage} stage failed");
    let object = target_dir.join(format!("{stage}.o"));
    std::fs::copy(
        target_dir.join("bpfel-unknown-none/release/mirror"),
        &object,
    )?;
    Ok(object)
}

fn main() -> Result<()> {
    let given: Vec<String> = std::env::args().skip(1).collect();
    let objects = if given.is_empty() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        STAGES
            .iter()
            .map(|stage| build(&root, stage))
            .collect::<Result<Vec<_>>>()?
    } else {
        given.into_iter().map(PathBuf::from).collect()
    };
    let empty = empty_program()?;
    println!(
        "object\tcopy floor 1448 B\tmatched 1448 B\tmatched 100 B\tmatched ACK\tother port \
         (ns per run, net)"
    );
    for path in objects {
        let stats = bpf_stats_on();
        let [floor, mtu, small, ack, other] = measure(&path, empty.as_fd())?;
        let note = if stats || bpf_stats_on() {
            "\t(bpf_stats on)"
        } else {
            ""
        };
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        println!("{name}\t{floor:.0}\t{mtu:.0}\t{small:.0}\t{ack:.0}\t{other:.0}{note}");
    }
    Ok(())
}
