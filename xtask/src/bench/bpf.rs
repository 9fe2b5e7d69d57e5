//! The kernel program's cost without bpf_stats' own: `BPF_PROG_TEST_RUN`
//! runs a program `repeat` times on a crafted packet and reports the mean
//! time per run. Run on the agent's classifier (found by id, from the
//! agent's fdinfo) and on a 2-instruction program (the loop's own cost and,
//! with bpf_stats on, bpf_stats' cost per run), plus a program that only
//! reserves and submits a 512-byte ring record (the ring's own cost).
//!
//! Raw bpf(2) calls: xtask needs no BPF library for the three commands it
//! makes here; the test run itself and the frames are the test kit's.

use std::{
    fs,
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};
use mirror_testkit::packet::{self, ETH_P_IP, IPPROTO_TCP};

/// The bpf(2) commands used here (linux/bpf.h).
#[derive(Clone, Copy, Debug)]
#[repr(i64)]
enum Cmd {
    MapCreate = 0,
    ProgLoad = 5,
    ProgGetFdById = 13,
}

/// `BPF_PROG_TYPE_SCHED_CLS`.
const PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_MAP_TYPE_RINGBUF`.
const MAP_TYPE_RINGBUF: u32 = 27;
/// The part of `union bpf_attr` these commands use, zero-padded.
const ATTR_SIZE: usize = 128;

fn bpf(cmd: Cmd, attr: &mut [u8; ATTR_SIZE]) -> Result<i64> {
    // SAFETY: `attr` is a zero-padded bpf_attr of ATTR_SIZE bytes whose
    // pointers (if any) point to buffers that outlive the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd as i64, attr.as_mut_ptr(), ATTR_SIZE) };
    if ret < 0 {
        bail!("bpf({cmd:?}): {}", std::io::Error::last_os_error());
    }
    Ok(ret)
}

fn put<const N: usize>(attr: &mut [u8; ATTR_SIZE], at: usize, bytes: [u8; N]) {
    attr[at..at + N].copy_from_slice(&bytes);
}

fn fd(ret: i64) -> OwnedFd {
    // SAFETY: a new fd returned by bpf(2), owned from here on.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

/// One BPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = dst | (src << 4);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

fn load(insns: &[[u8; 8]]) -> Result<OwnedFd> {
    let code: Vec<u8> = insns.concat();
    let license = b"GPL\0";
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, PROG_TYPE_SCHED_CLS.to_le_bytes());
    put(&mut attr, 4, (insns.len() as u32).to_le_bytes());
    put(&mut attr, 8, (code.as_ptr() as u64).to_le_bytes());
    put(&mut attr, 16, (license.as_ptr() as u64).to_le_bytes());
    Ok(fd(bpf(Cmd::ProgLoad, &mut attr)?))
}

/// `r0 = TC_ACT_PIPE; exit`.
fn empty_program() -> Result<OwnedFd> {
    load(&[insn(0xb7, 0, 0, 0, 3), insn(0x95, 0, 0, 0, 0)])
}

/// Reserves a 512-byte record in `ring` and submits it (no wakeup).
fn ring_program(ring: &OwnedFd) -> Result<OwnedFd> {
    let map = ring.as_raw_fd();
    load(&[
        insn(0x18, 1, 1, 0, map), // r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 2, 0, 0, 512), // r2 = size
        insn(0xb7, 3, 0, 0, 0),   // r3 = flags
        insn(0x85, 0, 0, 0, 131), // call bpf_ringbuf_reserve
        insn(0x55, 0, 0, 2, 0),   // if r0 != 0 goto +2
        insn(0xb7, 0, 0, 0, 3),
        insn(0x95, 0, 0, 0, 0),
        insn(0xbf, 1, 0, 0, 0),   // r1 = r0
        insn(0xb7, 2, 0, 0, 1),   // r2 = BPF_RB_NO_WAKEUP
        insn(0x85, 0, 0, 0, 132), // call bpf_ringbuf_submit
        insn(0xb7, 0, 0, 0, 3),
        insn(0x95, 0, 0, 0, 0),
    ])
}

/// The floor of a matched MTU segment: reserves a record of the size the
/// classifier reserves for it (header + 1536 B class), copies the 1448
/// payload bytes of [`segment`] into it with `bpf_skb_load_bytes` and
/// submits it (no wakeup). Nothing else: no parsing, no counters.
fn copy_program(ring: &OwnedFd) -> Result<OwnedFd> {
    let map = ring.as_raw_fd();
    // mirror_common::RECORD_HEADER_SIZE (xtask does not depend on it).
    let header = 64;
    load(&[
        insn(0xbf, 6, 1, 0, 0), // r6 = ctx
        insn(0x18, 1, 1, 0, map),
        insn(0, 0, 0, 0, 0),
        insn(0xb7, 2, 0, 0, header + 1536),
        insn(0xb7, 3, 0, 0, 0),
        insn(0x85, 0, 0, 0, 131), // call bpf_ringbuf_reserve
        insn(0x55, 0, 0, 2, 0),   // if r0 != 0 goto +2
        insn(0xb7, 0, 0, 0, 3),
        insn(0x95, 0, 0, 0, 0),
        insn(0xbf, 7, 0, 0, 0),                      // r7 = record
        insn(0xbf, 1, 6, 0, 0),                      // r1 = ctx
        insn(0xb7, 2, 0, 0, SEGMENT_PAYLOAD_OFFSET), // r2 = offset
        insn(0xbf, 3, 7, 0, 0),                      // r3 = record
        insn(0x07, 3, 0, 0, header),                 // r3 += header
        insn(0xb7, 4, 0, 0, 1448),                   // r4 = len
        insn(0x85, 0, 0, 0, 26),                     // call bpf_skb_load_bytes
        insn(0xbf, 1, 7, 0, 0),                      // r1 = record
        insn(0xb7, 2, 0, 0, 1),                      // r2 = BPF_RB_NO_WAKEUP
        insn(0x85, 0, 0, 0, 132),                    // call bpf_ringbuf_submit
        insn(0xb7, 0, 0, 0, 3),
        insn(0x95, 0, 0, 0, 0),
    ])
}

/// Where [`segment`]'s payload starts: Ethernet, IPv4, a 32-byte TCP header.
const SEGMENT_PAYLOAD_OFFSET: i32 = 14 + 20 + 32;

fn ring(bytes: u32) -> Result<OwnedFd> {
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, MAP_TYPE_RINGBUF.to_le_bytes());
    put(&mut attr, 12, bytes.to_le_bytes());
    Ok(fd(bpf(Cmd::MapCreate, &mut attr)?))
}

fn prog_by_id(id: u32) -> Result<OwnedFd> {
    let mut attr = [0u8; ATTR_SIZE];
    put(&mut attr, 0, id.to_le_bytes());
    Ok(fd(bpf(Cmd::ProgGetFdById, &mut attr)?))
}

/// Mean ns per run of `prog` on `frame` over `repeat` runs.
fn test_run(prog: &OwnedFd, frame: &[u8], repeat: u32) -> Result<f64> {
    let run = packet::prog_test_run(prog.as_fd(), frame, repeat).context("BPF_PROG_TEST_RUN")?;
    Ok(run.duration_ns as f64)
}

/// run_time_ns and run_cnt of one of our own fds.
fn own_stats(prog: &OwnedFd) -> (u64, u64) {
    let text =
        fs::read_to_string(format!("/proc/self/fdinfo/{}", prog.as_raw_fd())).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("run_time_ns:"), field("run_cnt:"))
}

/// An Ethernet + IPv4 + TCP segment with a header of 32 bytes (the size
/// timestamps make), ACK|PSH, to `port`.
pub fn segment(port: u16, payload: usize) -> Vec<u8> {
    const ACK_PSH: u8 = 0x18;
    let tcp = packet::tcp_with_offset(40000, port, 1000, ACK_PSH, 8, &vec![b'x'; payload]);
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

/// What `BPF_PROG_TEST_RUN` measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRun {
    /// bpf_stats' own cost per run: run_time_ns / run_cnt of the empty
    /// program (only meaningful with bpf_stats on).
    pub stats_floor_ns: f64,
    /// Net ns per run of the classifier (minus the empty program's run).
    pub unmatched_ns: f64,
    pub matched_mtu_ns: f64,
    pub matched_small_ns: f64,
    /// Reserve + submit of a 512-byte record, net.
    pub ring_record_ns: f64,
    /// Reserve + copy of the 1448 payload bytes + submit, net: the floor
    /// of a matched MTU segment.
    pub copy_record_ns: f64,
}

/// The classifier with id `prog_id` (the agent's, capturing `port`) under
/// test runs. bpf_stats must be on (for the floor); the test runs
/// themselves are timed by the kernel's test loop.
pub fn measure(prog_id: u32, port: u16) -> Result<TestRun> {
    let classifier = prog_by_id(prog_id).context("the agent's classifier by id")?;
    let empty = empty_program().context("loading an empty program")?;
    let ring_fd = ring(64 << 20)?;
    let ring_prog = ring_program(&ring_fd).context("loading a ring program")?;
    let copy_ring = ring(64 << 20)?;
    let copy_prog = copy_program(&copy_ring).context("loading a copy program")?;
    let other = segment(port.wrapping_add(1), 0);
    let mtu = segment(port, 1448);
    let small = segment(port, 100);
    // Warm up, then take the median of 5 rounds of each.
    let median = |f: &mut dyn FnMut() -> Result<f64>| -> Result<f64> {
        let mut v = (0..5).map(|_| f()).collect::<Result<Vec<_>>>()?;
        v.sort_by(f64::total_cmp);
        Ok(v[2])
    };
    let (t0, c0) = own_stats(&empty);
    let base = median(&mut || test_run(&empty, &other, 100_000))?;
    let (t1, c1) = own_stats(&empty);
    let stats_floor_ns = (t1 - t0) as f64 / (c1 - c0).max(1) as f64;
    let unmatched = median(&mut || test_run(&classifier, &other, 100_000))?;
    // The classifier writes into the agent's ring: 2000 records of ~1.6 KB
    // (3 MB of its 16 MiB) a round, and a pause for the agent to drain them
    // before the next, so that no reservation fails (a failed one is
    // cheaper than a copy and would flatter the figure).
    let drained = |ns: f64| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        ns
    };
    let matched_mtu = median(&mut || test_run(&classifier, &mtu, 2_000).map(drained))?;
    let matched_small = median(&mut || test_run(&classifier, &small, 2_000).map(drained))?;
    // 20,000 records of 520 bytes per round: 5 rounds fill 52 MB of 64.
    let ring_record = median(&mut || test_run(&ring_prog, &other, 20_000))?;
    // 8000 records of 1600 bytes per round: 5 rounds fill 64 MB of 64.
    let copy_record = median(&mut || test_run(&copy_prog, &mtu, 8_000))?;
    Ok(TestRun {
        stats_floor_ns,
        unmatched_ns: unmatched - base,
        matched_mtu_ns: matched_mtu - base,
        matched_small_ns: matched_small - base,
        ring_record_ns: ring_record - base,
        copy_record_ns: copy_record - base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_segments_have_consistent_lengths() {
        let s = segment(9000, 1448);
        assert_eq!(s.len(), 14 + 20 + 32 + 1448);
        assert_eq!(u16::from_be_bytes([s[16], s[17]]) as usize, s.len() - 14);
        assert_eq!(u16::from_be_bytes([s[36], s[37]]), 9000);
    }
}
