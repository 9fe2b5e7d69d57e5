//! Ethernet → IPv4/IPv6 → TCP header parsing by byte offset.
//!
//! Headers are read with direct packet access to the skb's linear area: the
//! fast path, and the only one for almost every frame. A frame whose
//! headers are not all in the linear area (a packet socket's TX ring, a
//! driver that builds skbs from pages) is parsed again, only then, with
//! `bpf_skb_load_bytes` into the stack, which reads paged fragments too. The
//! packet itself is never touched: no `bpf_skb_pull_data`, which would
//! reallocate and linearise it (time, and memory that may not be there).
//! The payload, linear or paged, is copied later with `bpf_skb_load_bytes`.

use aya_ebpf::programs::TcContext;
use mirror_common::{Counter, FAMILY_IPV4, FAMILY_IPV6, RecordHeader};

use crate::words::{self, Addr};

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

/// Where header fields are read from: [`Linear`] or [`Paged`]. The parsing
/// is written once over this; each reader gets its own inlined copy.
trait Frame {
    /// The `T` at `offset` from the start of the frame, or `Malformed` when
    /// the reader cannot get it.
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Counter>;
}

/// Direct packet access to the linear area.
struct Linear<'a>(&'a TcContext);

impl Frame for Linear<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Counter> {
        let start = self.0.data();
        let end = self.0.data_end();
        if start + offset + core::mem::size_of::<T>() > end {
            return Err(Counter::Malformed);
        }
        // SAFETY: bounds checked against data_end just above.
        Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
    }
}

/// `bpf_skb_load_bytes` into the stack: reads the linear area and the paged
/// fragments alike; fails only past the end of the frame. A helper call
/// per field, which is why it is the fallback.
struct Paged<'a>(&'a TcContext);

impl Frame for Paged<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Result<T, Counter> {
        // A constant length (size_of::<T>()) into a stack slot: no length
        // for the verifier to bound, unlike the payload copy in copy.rs.
        self.0.load::<T>(offset).map_err(|_| Counter::Malformed)
    }
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
    // [`parse`] already found the TCP header, which lies after the
    // addresses: when direct access fails here, the frame has a paged part.
    if addresses_from(&Linear(ctx), family, header).is_ok() {
        return Ok(());
    }
    core::hint::cold_path();
    addresses_from(&Paged(ctx), family, header)
}

#[inline(always)]
fn addresses_from(
    frame: &impl Frame,
    family: u8,
    header: &mut RecordHeader,
) -> Result<(), Counter> {
    // Read as words (see words.rs), then stored.
    let (src, dst) = if family == FAMILY_IPV4 {
        (
            words::ipv4(frame.read(ETH_HDR_LEN + 12)?),
            words::ipv4(frame.read(ETH_HDR_LEN + 16)?),
        )
    } else {
        (
            frame.read::<[u64; 2]>(ETH_HDR_LEN + 8)?,
            frame.read::<[u64; 2]>(ETH_HDR_LEN + 24)?,
        )
    };
    words::store(header, Addr::Src, src);
    words::store(header, Addr::Dst, dst);
    Ok(())
}

/// Parses the headers (all but the addresses, see [`read_addresses`]), or
/// says which counter explains why not.
///
/// Direct access first; only a frame it finds `Malformed` is read again,
/// with `bpf_skb_load_bytes`: headers outside the linear area are parsed,
/// never counted as malformed. A frame that is malformed indeed is found so
/// again, at the same field (a few helper calls, for a frame the stack
/// drops anyway). Telling the two apart up front would take `data_end -
/// data`, a pointer subtraction the verifier allows only with CAP_PERFMON.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Segment, Counter> {
    match parse_from(ctx, &Linear(ctx)) {
        Err(Counter::Malformed) => {
            // Branch weights: the register allocator keeps the fast path's
            // values in registers and spills on this side instead.
            core::hint::cold_path();
            parse_from(ctx, &Paged(ctx))
        }
        result => result,
    }
}

#[inline(always)]
fn parse_from(ctx: &TcContext, frame: &impl Frame) -> Result<Segment, Counter> {
    let ether_type = u16::from_be(frame.read::<u16>(12).map_err(|_| Counter::NotIp)?);
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
            let vihl: u8 = frame.read(ETH_HDR_LEN)?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN {
                return Err(Counter::Malformed);
            }
            // Fixed part of the header: tot_len, frag, proto, addresses.
            let tot_len = u16::from_be(frame.read::<u16>(ETH_HDR_LEN + 2)?) as usize;
            let frag = u16::from_be(frame.read::<u16>(ETH_HDR_LEN + 6)?);
            let proto: u8 = frame.read(ETH_HDR_LEN + 9)?;
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
            let vtc: u8 = frame.read(ETH_HDR_LEN)?;
            if vtc >> 4 != 6 {
                return Err(Counter::Malformed);
            }
            let payload_len = u16::from_be(frame.read::<u16>(ETH_HDR_LEN + 4)?) as usize;
            let next_header: u8 = frame.read(ETH_HDR_LEN + 6)?;
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
    let ports: [u8; 4] = frame.read(l4_offset)?;
    let seq = u32::from_be(frame.read::<u32>(l4_offset + 4)?);
    let doff_flags: [u8; 2] = frame.read(l4_offset + 12)?;
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
