//! Ethernet → IPv4/IPv6 → TCP header parsing by byte offset.
//!
//! Headers are read with direct packet access; the payload (which may sit in
//! paged fragments) is copied later with `bpf_skb_load_bytes`.

use aya_ebpf::programs::TcContext;
use mirror_common::{Counter, FAMILY_IPV4, FAMILY_IPV6, RecordHeader};

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPV4_MIN_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
const TCP_MIN_HDR_LEN: usize = 20;
const IPPROTO_TCP: u8 = 6;

/// The fields of a TCP segment the capture needs (the addresses are read
/// later, only for the service ports: [`read_addresses`]).
pub struct Segment {
    pub family: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub tcp_flags: u8,
    /// Offset of the first payload byte from the start of the frame.
    pub payload_offset: usize,
    pub payload_len: usize,
}

/// Reads a `T` at `offset` of the linear packet data, or fails with
/// `Malformed` when it is not there.
///
/// Headers are always in the linear part after GRO and on the veth/virtio
/// paths we run on; a single strategy keeps the verifier's path count (and
/// so its load time) low. A packet whose headers sit in paged fragments is
/// counted as malformed, never misread.
#[inline(always)]
fn read<T: Copy>(ctx: &TcContext, offset: usize) -> Result<T, Counter> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Counter::Malformed);
    }
    // SAFETY: bounds checked against data_end just above.
    Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

/// Reads the segment's addresses into the record header (an IPv4 address
/// in the first 4 bytes, the rest zero). Kept apart from [`parse`] so that
/// packets for other ports (the common case) never pay for the copies.
#[inline(always)]
pub fn read_addresses(
    ctx: &TcContext,
    family: u8,
    header: &mut RecordHeader,
) -> Result<(), Counter> {
    if family == FAMILY_IPV4 {
        let src: [u8; 4] = read(ctx, ETH_HDR_LEN + 12)?;
        let dst: [u8; 4] = read(ctx, ETH_HDR_LEN + 16)?;
        header.src_addr = [0; 16];
        header.dst_addr = [0; 16];
        header.src_addr[..4].copy_from_slice(&src);
        header.dst_addr[..4].copy_from_slice(&dst);
    } else {
        header.src_addr = read(ctx, ETH_HDR_LEN + 8)?;
        header.dst_addr = read(ctx, ETH_HDR_LEN + 24)?;
    }
    Ok(())
}

/// Parses the headers (all but the addresses, see [`read_addresses`]), or
/// says which counter explains why not.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Segment, Counter> {
    let ether_type = u16::from_be(read::<u16>(ctx, 12).map_err(|_| Counter::NotIp)?);
    let skb_len = ctx.len() as usize;
    let mut seg = Segment {
        family: 0,
        src_port: 0,
        dst_port: 0,
        seq: 0,
        tcp_flags: 0,
        payload_offset: 0,
        payload_len: 0,
    };
    // Offset of the TCP header and the number of bytes from there to the end
    // of the IP packet.
    let (l4_offset, l4_len) = match ether_type {
        ETH_P_IP => {
            let vihl: u8 = read(ctx, ETH_HDR_LEN)?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN {
                return Err(Counter::Malformed);
            }
            // Fixed part of the header: tot_len, frag, proto, addresses.
            let tot_len = u16::from_be(read::<u16>(ctx, ETH_HDR_LEN + 2)?) as usize;
            let frag = u16::from_be(read::<u16>(ctx, ETH_HDR_LEN + 6)?);
            let proto: u8 = read(ctx, ETH_HDR_LEN + 9)?;
            if proto != IPPROTO_TCP {
                return Err(Counter::NotTcp);
            }
            // A fragment (MF set or offset non-zero) has no usable TCP
            // header of its own.
            if frag & 0x3fff != 0 {
                return Err(Counter::NotTcp);
            }
            seg.family = FAMILY_IPV4;
            let l4_offset = ETH_HDR_LEN + ihl;
            // BIG TCP IPv4 super-packets carry tot_len 0: the skb length
            // is the truth there. Otherwise tot_len excludes link padding.
            let ip_len = if tot_len == 0 {
                skb_len.saturating_sub(ETH_HDR_LEN)
            } else {
                tot_len
            };
            if ip_len < ihl {
                return Err(Counter::Malformed);
            }
            (l4_offset, ip_len - ihl)
        }
        ETH_P_IPV6 => {
            let vtc: u8 = read(ctx, ETH_HDR_LEN)?;
            if vtc >> 4 != 6 {
                return Err(Counter::Malformed);
            }
            let payload_len = u16::from_be(read::<u16>(ctx, ETH_HDR_LEN + 4)?) as usize;
            let next_header: u8 = read(ctx, ETH_HDR_LEN + 6)?;
            // Extension headers are not followed: such packets count as
            // "not TCP" rather than being misread.
            if next_header != IPPROTO_TCP {
                return Err(Counter::NotTcp);
            }
            seg.family = FAMILY_IPV6;
            // payload_len 0 is a jumbogram / BIG TCP super-packet.
            let l4_len = if payload_len == 0 {
                skb_len.saturating_sub(ETH_HDR_LEN + IPV6_HDR_LEN)
            } else {
                payload_len
            };
            (ETH_HDR_LEN + IPV6_HDR_LEN, l4_len)
        }
        _ => return Err(Counter::NotIp),
    };

    // Source port, destination port, sequence number, data offset, flags.
    let ports: [u8; 4] = read(ctx, l4_offset)?;
    let seq = u32::from_be(read::<u32>(ctx, l4_offset + 4)?);
    let doff_flags: [u8; 2] = read(ctx, l4_offset + 12)?;
    let tcp_hdr_len = ((doff_flags[0] >> 4) as usize) * 4;
    if tcp_hdr_len < TCP_MIN_HDR_LEN || tcp_hdr_len > l4_len {
        return Err(Counter::Malformed);
    }
    seg.src_port = u16::from_be_bytes([ports[0], ports[1]]);
    seg.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    seg.seq = seq;
    seg.tcp_flags = doff_flags[1];
    seg.payload_offset = l4_offset + tcp_hdr_len;
    seg.payload_len = l4_len - tcp_hdr_len;
    Ok(seg)
}
