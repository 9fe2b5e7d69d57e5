//! Hand-made Ethernet frames, and running a BPF program on one with
//! `BPF_PROG_TEST_RUN` (the classifier's tests check its verdict, the
//! bench times it).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, BorrowedFd},
};

// EtherTypes and IP protocol numbers, as the frames carry them.
pub const ETH_P_IP: u16 = libc::ETH_P_IP as u16;
pub const ETH_P_IPV6: u16 = libc::ETH_P_IPV6 as u16;
pub const ETH_P_ARP: u16 = libc::ETH_P_ARP as u16;
pub const ETH_P_8021Q: u16 = libc::ETH_P_8021Q as u16;
pub const IPPROTO_HOPOPTS: u8 = libc::IPPROTO_HOPOPTS as u8;
pub const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;
pub const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;

/// TC verdict "continue with the next program / normal processing".
pub const TC_ACT_PIPE: u32 = 3;
/// `TC_ACT_UNSPEC` / `TCX_NEXT` (-1) as BPF_PROG_TEST_RUN's u32 `retval`:
/// "continue", the only verdict the kernel program gives.
pub const TC_ACT_UNSPEC: u32 = u32::MAX;

/// Ethernet header + `payload`.
pub fn ethernet(ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 header (with `options`, a multiple of 4 bytes) and `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()) as u16;
    let mut packet = Vec::with_capacity(total as usize);
    packet.push(0x40 | (header_len / 4) as u8);
    packet.push(0); // DSCP/ECN
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0x12, 0x34]); // identification
    packet.extend_from_slice(&[0x40, 0x00]); // DF, offset 0
    packet.push(64); // TTL
    packet.push(protocol);
    packet.extend_from_slice(&[0, 0]); // checksum, below
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(options);
    let checksum = internet_checksum(&packet[..header_len]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// An IPv6 header and `payload`, the first header being `next_header`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(40 + payload.len());
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    packet.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    packet.push(next_header);
    packet.push(64); // hop limit
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// An IPv6 hop-by-hop options header (8 bytes, padding only) in front of
/// `payload` of type `next_header`.
pub fn hop_by_hop(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = vec![next_header, 0, 1, 4, 0, 0, 0, 0]; // PadN of 4
    header.extend_from_slice(payload);
    header
}

/// A TCP segment. `data_offset` is in 32-bit words (5 for a plain header,
/// more adds NOP options, fewer makes a broken header).
pub fn tcp(src_port: u16, dst_port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_with_offset(src_port, dst_port, seq, flags, 5, payload)
}

pub fn tcp_with_offset(
    src_port: u16,
    dst_port: u16,
    seq: u32,
    flags: u8,
    data_offset: u8,
    payload: &[u8],
) -> Vec<u8> {
    let header_len = (data_offset.max(5) as usize) * 4;
    let mut segment = Vec::with_capacity(header_len + payload.len());
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&seq.to_be_bytes());
    segment.extend_from_slice(&0u32.to_be_bytes()); // ack
    segment.push(data_offset << 4);
    segment.push(flags);
    segment.extend_from_slice(&64240u16.to_be_bytes()); // window
    segment.extend_from_slice(&[0, 0, 0, 0]); // checksum (unchecked), urgent
    segment.resize(header_len, 1); // NOP options
    segment.extend_from_slice(payload);
    segment
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(8 + payload.len());
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&dst_port.to_be_bytes());
    datagram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    datagram
}

/// An ARP request for `target` from `sender`.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet(ETH_P_ARP, &arp)
}

/// The Internet checksum (RFC 1071) of `bytes`, an odd last byte padded
/// with zero.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What `BPF_PROG_TEST_RUN` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (a TC verdict for a classifier).
    pub retval: u32,
    /// Mean time of one run, in ns, as the kernel's test loop measured it.
    pub duration_ns: u32,
}

/// Runs the program `prog` `repeat` times on `frame` with
/// `BPF_PROG_TEST_RUN`. The kernel wants at least an Ethernet header and at
/// most about a page.
pub fn prog_test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> std::io::Result<TestRun> {
    /// The `test` member of `union bpf_attr` (linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;

    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: the attribute is a valid, zero-padded bpf_attr.test that points
    // at `frame`, which outlives the call; the kernel writes only retval,
    // duration and the size fields back into it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TestRun {
        retval: attr.retval,
        duration_ns: attr.duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_their_lengths_and_a_valid_checksum() {
        let segment = tcp_with_offset(40000, 8080, 7, TCP_ACK_PSH, 8, b"hello");
        assert_eq!(segment.len(), 32 + 5);
        assert_eq!(segment[12] >> 4, 8);
        let packet = ipv4(
            Ipv4Addr::new(10, 200, 0, 1),
            Ipv4Addr::new(10, 200, 0, 2),
            IPPROTO_TCP,
            &[],
            &segment,
        );
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]) as usize,
            packet.len()
        );
        assert_eq!(internet_checksum(&packet[..20]), 0);
        let frame = ethernet(ETH_P_IP, &packet);
        assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), 0x0800);
        assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 8080);
    }

    const TCP_ACK_PSH: u8 = 0x18;
}
