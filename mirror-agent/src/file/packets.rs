//! Packet captures (pcap and pcapng, as tcpdump, Wireshark and tshark
//! write them) as a source of capture [`Event`]s: the same events the
//! kernel ring gives, so the same flow → http stages run on them, without
//! root and without the kernel program.
//!
//! * [`PacketReader`] reads the file's packets (both formats, either byte
//!   order, micro- or nanosecond timestamps, pcapng's per-interface link
//!   types and timestamp resolutions) one at a time.
//! * [`segment`] takes a frame (Ethernet with VLAN tags, Linux cooked
//!   SLL/SLL2, BSD loopback, raw IP) down to its TCP segment.
//! * [`Segments::emit`] turns a segment of the service ports into events
//!   as the kernel program would: a control event for SYN/FIN/RST, then
//!   the payload (from the sequence number after a SYN), and a
//!   `Truncated` event for bytes the capture's snap length cut.
//!
//! Timestamps stay the file's (Unix nanoseconds): the flow stage's
//! timeouts then run on the capture's own clock.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use mirror_common::{CHUNK_SIZE, TCP_FIN, TCP_RST, TCP_SYN};

use crate::capture::{Direction, Event, EventKind, EventSink, FlowKey};

/// Link types (the `LINKTYPE_*` numbers of pcap and pcapng).
const LINK_NULL: u32 = 0;
const LINK_ETHERNET: u32 = 1;
const LINK_RAW: u32 = 101;
const LINK_LOOP: u32 = 108;
const LINK_LINUX_SLL: u32 = 113;
const LINK_IPV4: u32 = 228;
const LINK_IPV6: u32 = 229;
const LINK_LINUX_SLL2: u32 = 276;
/// Old raw IP value, as some BSD tools write it.
const LINK_RAW_OLD: u32 = 12;

/// Largest packet (or block) accepted: anything bigger is a corrupt file.
const MAX_BLOCK: usize = 16 << 20;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Unix time in nanoseconds.
    pub timestamp_ns: u64,
    pub link: u32,
    /// The bytes captured (maybe fewer than were on the wire).
    pub data: Vec<u8>,
    /// Length on the wire.
    pub wire_len: u32,
}

/// Why a capture file cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap or pcapng file (magic number {0:#010x})")]
    NotPcap(u32),
    /// Zero bytes: what a capture that never started leaves.
    #[error("the file is empty: not a pcap or pcapng file")]
    Empty,
    #[error("not a pcap or pcapng file: it ends inside its file header ({0} bytes)")]
    ShortHeader(u64),
    #[error("corrupt capture file at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    /// The file ends inside a packet or block. Only seen by the reader
    /// itself: [`PacketReader::next_packet`] ends there and keeps it as
    /// [`PacketReader::cut`].
    #[error("the file ends inside a packet")]
    Cut,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where a capture file cut short ends: inside the packet (or block) that
/// starts at `at`, of which `present` bytes are in the file. A capture
/// tcpdump did not close (killed, disk full, a copy not finished) ends so;
/// the packets before it are whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutEnd {
    pub at: u64,
    pub present: u64,
}

enum Format {
    Pcap {
        big_endian: bool,
        /// Nanosecond timestamps (magic a1b23c4d).
        nanos: bool,
        link: u32,
    },
    PcapNg {
        big_endian: bool,
        /// Per interface: link type and nanoseconds per timestamp unit
        /// (0: a power of two below 1 ns, see `if_tsresol`).
        interfaces: Vec<Interface>,
    },
}

#[derive(Clone, Copy)]
struct Interface {
    link: u32,
    /// Timestamp units per second.
    units_per_second: u64,
}

/// Reads the packets of a pcap or pcapng file in file order.
pub struct PacketReader<R> {
    inner: R,
    format: Format,
    offset: u64,
    /// The snap length the capture was taken with (pcap: the file's; pcapng:
    /// the smallest of its interfaces' that set one).
    snaplen: Option<u32>,
    /// Set when the file ends inside a packet.
    cut: Option<CutEnd>,
    /// Where the packet or block being read starts.
    record_at: u64,
}

impl PacketReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, PcapError> {
        Self::new(BufReader::with_capacity(256 * 1024, File::open(path)?))
    }
}

fn u16_at(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl<R: Read> PacketReader<R> {
    /// Reads the file header (pcap) or the first section header (pcapng).
    pub fn new(inner: R) -> Result<Self, PcapError> {
        let mut reader = PacketReader {
            inner,
            format: Format::Pcap {
                big_endian: false,
                nanos: false,
                link: 0,
            },
            offset: 0,
            snaplen: None,
            cut: None,
            record_at: 0,
        };
        // A file that ends before its first packet could begin is not a
        // capture: said in those words, not as an I/O error.
        let header = |reader: &Self, err: PcapError| match err {
            PcapError::Cut => PcapError::ShortHeader(reader.offset),
            other => other,
        };
        let magic = match reader.read_n(4) {
            Ok(Some(magic)) => magic,
            Ok(None) => return Err(PcapError::Empty),
            Err(err) => return Err(header(&reader, err)),
        };
        let le = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
        match le {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                let big_endian = matches!(le, 0xd4c3_b2a1 | 0x4d3c_b2a1);
                let nanos = matches!(le, 0xa1b2_3c4d | 0x4d3c_b2a1);
                let rest = match reader.read_n(20) {
                    Ok(Some(rest)) => rest,
                    Ok(None) => return Err(PcapError::ShortHeader(reader.offset)),
                    Err(err) => return Err(header(&reader, err)),
                };
                let link = u32_at(&rest[16..20], big_endian) & 0x0fff_ffff;
                reader.snaplen = Some(u32_at(&rest[12..16], big_endian));
                reader.format = Format::Pcap {
                    big_endian,
                    nanos,
                    link,
                };
            }
            0x0a0d_0d0a => {
                reader.format = Format::PcapNg {
                    big_endian: false,
                    interfaces: Vec::new(),
                };
                reader
                    .section_header()
                    .map_err(|err| header(&reader, err))?;
            }
            other => return Err(PcapError::NotPcap(other)),
        }
        Ok(reader)
    }

    /// The snap length the capture was taken with, when the file says
    /// (pcapng: the smallest of its interfaces').
    pub fn snaplen(&self) -> Option<u32> {
        self.snaplen
    }

    /// Where the file ends inside a packet, if it does: reading stopped
    /// there, everything before it was read.
    pub fn cut(&self) -> Option<CutEnd> {
        self.cut
    }

    /// Bytes of the file read so far (a replay's progress).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn corrupt(&self, reason: impl Into<String>) -> PcapError {
        PcapError::Corrupt {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    /// Reads exactly `n` bytes; `None` at a clean end of file, [`PcapError::Cut`]
    /// when it ends after some of them (those count as read).
    fn read_n(&mut self, n: usize) -> Result<Option<Vec<u8>>, PcapError> {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    self.offset += got as u64;
                    return Err(PcapError::Cut);
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += n as u64;
        Ok(Some(buf))
    }

    /// The next `n` bytes of a packet or block already begun: the end of
    /// the file here is a cut.
    fn read_more(&mut self, n: usize) -> Result<Vec<u8>, PcapError> {
        self.read_n(n)?.ok_or(PcapError::Cut)
    }

    /// A pcapng section header block, after its block type (already read):
    /// sets the byte order, forgets the interfaces of the last section.
    fn section_header(&mut self) -> Result<(), PcapError> {
        let head = self.read_more(8)?;
        let big_endian = match u32::from_le_bytes([head[4], head[5], head[6], head[7]]) {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            other => return Err(self.corrupt(format!("bad byte-order magic {other:#010x}"))),
        };
        let total = u32_at(&head[0..4], big_endian) as usize;
        if !(28..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
            return Err(self.corrupt(format!("bad section header length {total}")));
        }
        // The rest of the block: versions, section length, options, length.
        self.read_more(total - 12)?;
        self.format = Format::PcapNg {
            big_endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    /// The next packet; `None` at the end of the file, also when it ends
    /// inside a packet (then [`cut`](Self::cut) says where).
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PcapError> {
        if self.cut.is_some() {
            return Ok(None);
        }
        match self.read_packet() {
            Err(PcapError::Cut) => {
                self.cut = Some(CutEnd {
                    at: self.record_at,
                    present: self.offset - self.record_at,
                });
                Ok(None)
            }
            other => other,
        }
    }

    fn read_packet(&mut self) -> Result<Option<Packet>, PcapError> {
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                link,
            } => {
                self.record_at = self.offset;
                let Some(h) = self.read_n(16)? else {
                    return Ok(None);
                };
                let secs = u32_at(&h[0..4], big_endian) as u64;
                let frac = u32_at(&h[4..8], big_endian) as u64;
                let caplen = u32_at(&h[8..12], big_endian) as usize;
                let wire_len = u32_at(&h[12..16], big_endian);
                if caplen > MAX_BLOCK {
                    return Err(self.corrupt(format!("packet of {caplen} bytes")));
                }
                let data = self.read_more(caplen)?;
                let frac_ns = if nanos { frac } else { frac * 1000 };
                Ok(Some(Packet {
                    timestamp_ns: secs * 1_000_000_000 + frac_ns,
                    link,
                    data,
                    wire_len,
                }))
            }
            Format::PcapNg { .. } => self.next_block(),
        }
    }

    fn next_block(&mut self) -> Result<Option<Packet>, PcapError> {
        loop {
            let Format::PcapNg { big_endian, .. } = self.format else {
                return Ok(None);
            };
            self.record_at = self.offset;
            let Some(kind) = self.read_n(4)? else {
                return Ok(None);
            };
            if kind == [0x0a, 0x0d, 0x0d, 0x0a] {
                self.section_header()?;
                continue;
            }
            let kind = u32_at(&kind, big_endian);
            let len = self.read_more(4)?;
            let total = u32_at(&len, big_endian) as usize;
            if !(12..=MAX_BLOCK).contains(&total) {
                return Err(self.corrupt(format!("bad block length {total}")));
            }
            let body = self.read_more(total - 8)?;
            // The body without the trailing copy of the length.
            let body = &body[..total - 12];
            match kind {
                1 => self.interface(body, big_endian)?,
                // Enhanced packet block.
                6 => {
                    if body.len() < 20 {
                        return Err(self.corrupt("short enhanced packet block"));
                    }
                    let iface = u32_at(&body[0..4], big_endian) as usize;
                    let ts = ((u32_at(&body[4..8], big_endian) as u64) << 32)
                        | u32_at(&body[8..12], big_endian) as u64;
                    let caplen = u32_at(&body[12..16], big_endian) as usize;
                    let wire_len = u32_at(&body[16..20], big_endian);
                    let Some(data) = body.get(20..20 + caplen) else {
                        return Err(self.corrupt("packet longer than its block"));
                    };
                    let Some(interface) = self.interface_of(iface) else {
                        return Err(self.corrupt(format!("packet of unknown interface {iface}")));
                    };
                    return Ok(Some(Packet {
                        timestamp_ns: to_ns(ts, interface.units_per_second),
                        link: interface.link,
                        data: data.to_vec(),
                        wire_len,
                    }));
                }
                // Simple packet block: interface 0, no timestamp.
                3 => {
                    if body.len() < 4 {
                        return Err(self.corrupt("short simple packet block"));
                    }
                    let wire_len = u32_at(&body[0..4], big_endian);
                    let Some(interface) = self.interface_of(0) else {
                        return Err(self.corrupt("packet before any interface"));
                    };
                    let data = &body[4..];
                    let caplen = data.len().min(wire_len as usize);
                    return Ok(Some(Packet {
                        timestamp_ns: 0,
                        link: interface.link,
                        data: data[..caplen].to_vec(),
                        wire_len,
                    }));
                }
                // Name resolution, statistics, custom blocks...: not ours.
                _ => {}
            }
        }
    }

    fn interface_of(&self, index: usize) -> Option<Interface> {
        match &self.format {
            Format::PcapNg { interfaces, .. } => interfaces.get(index).copied(),
            Format::Pcap { .. } => None,
        }
    }

    /// An interface description block: link type and `if_tsresol`.
    fn interface(&mut self, body: &[u8], big: bool) -> Result<(), PcapError> {
        if body.len() < 8 {
            return Err(self.corrupt("short interface description block"));
        }
        let link = u16_at(&body[0..2], big) as u32;
        // 0: no limit.
        let snaplen = u32_at(&body[4..8], big);
        if snaplen > 0 {
            self.snaplen = Some(self.snaplen.map_or(snaplen, |s| s.min(snaplen)));
        }
        let mut units_per_second = 1_000_000;
        let mut options = &body[8..];
        while options.len() >= 4 {
            let code = u16_at(&options[0..2], big);
            let len = u16_at(&options[2..4], big) as usize;
            let Some(value) = options.get(4..4 + len) else {
                break;
            };
            if code == 0 {
                break;
            }
            // if_tsresol: 10^-n, or 2^-n with the top bit set.
            if code == 9 && len >= 1 {
                let n = u32::from(value[0] & 0x7f);
                units_per_second = if value[0] & 0x80 == 0 {
                    10u64.checked_pow(n).unwrap_or(u64::MAX)
                } else {
                    1u64.checked_shl(n).unwrap_or(u64::MAX)
                };
            }
            let padded = (len + 3) & !3;
            options = options.get(4 + padded..).unwrap_or_default();
        }
        if let Format::PcapNg { interfaces, .. } = &mut self.format {
            interfaces.push(Interface {
                link,
                units_per_second: units_per_second.max(1),
            });
        }
        Ok(())
    }
}

fn to_ns(ts: u64, units_per_second: u64) -> u64 {
    let ns = u128::from(ts) * 1_000_000_000 / u128::from(units_per_second);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// A TCP segment taken out of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: u8,
    /// The payload captured.
    pub payload: &'a [u8],
    /// Payload bytes the capture cut (snap length).
    pub missing: u32,
}

/// The TCP segment in `frame` of link type `link`; `None` for anything
/// else (another protocol, an IP fragment, a truncated header).
/// `wire_len` is the frame's length on the wire.
pub fn segment(link: u32, frame: &[u8], wire_len: u32) -> Option<Segment<'_>> {
    let cut = (wire_len as usize).saturating_sub(frame.len());
    let (ethertype, ip) = match link {
        LINK_ETHERNET => {
            let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            let mut at = 14;
            // 802.1Q / 802.1ad tags.
            while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
                ethertype = u16::from_be_bytes([*frame.get(at + 2)?, *frame.get(at + 3)?]);
                at += 4;
            }
            (ethertype, frame.get(at..)?)
        }
        LINK_LINUX_SLL => (
            u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]),
            frame.get(16..)?,
        ),
        LINK_LINUX_SLL2 => (
            u16::from_be_bytes([*frame.first()?, *frame.get(1)?]),
            frame.get(20..)?,
        ),
        LINK_NULL | LINK_LOOP => {
            // The address family in host (NULL) or network (LOOP) order;
            // IPv6 has several values across BSDs: look at the version.
            let ip = frame.get(4..)?;
            (version_ethertype(ip)?, ip)
        }
        LINK_RAW | LINK_RAW_OLD | LINK_IPV4 | LINK_IPV6 => (version_ethertype(frame)?, frame),
        _ => return None,
    };
    match ethertype {
        0x0800 => ipv4(ip, cut),
        0x86dd => ipv6(ip, cut),
        _ => None,
    }
}

fn version_ethertype(ip: &[u8]) -> Option<u16> {
    match ip.first()? >> 4 {
        4 => Some(0x0800),
        6 => Some(0x86dd),
        _ => None,
    }
}

fn ipv4(ip: &[u8], cut: usize) -> Option<Segment<'_>> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.len() < 20 || ihl < 20 || *ip.get(9)? != 6 {
        return None;
    }
    let flags_frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    // A fragment (more fragments, or an offset): not reassembled.
    if flags_frag & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    // Ethernet padding after a short packet is not payload; a total of 0
    // (TSO) means "as long as the frame".
    let (end, missing) = bounded(ip.len(), total, ihl, cut);
    tcp(src, dst, ip.get(ihl..end)?, missing)
}

fn ipv6(ip: &[u8], cut: usize) -> Option<Segment<'_>> {
    let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
    let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let mut next = *ip.get(6)?;
    let mut at = 40;
    // Extension headers before TCP (a fragment header: not reassembled).
    while matches!(next, 0 | 43 | 60) {
        let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
        next = *ip.get(at)?;
        at += len;
    }
    if next != 6 {
        return None;
    }
    let (end, missing) = bounded(ip.len(), payload_len + 40, at, cut);
    tcp(
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        ip.get(at..end)?,
        missing,
    )
}

/// Where the IP packet's bytes end in the capture, and how many of them
/// the capture cut.
fn bounded(captured: usize, total: usize, header: usize, cut: usize) -> (usize, u32) {
    if total == 0 || total < header {
        return (captured, cut as u32);
    }
    if total <= captured {
        (total, 0)
    } else {
        (captured, (total - captured) as u32)
    }
}

fn tcp(src: IpAddr, dst: IpAddr, t: &[u8], missing: u32) -> Option<Segment<'_>> {
    let offset = usize::from(t.get(12)? >> 4) * 4;
    if offset < 20 {
        return None;
    }
    let src_port = u16::from_be_bytes([t[0], t[1]]);
    let dst_port = u16::from_be_bytes([t[2], t[3]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let flags = *t.get(13)?;
    // A header cut by the snap length: its payload is all missing.
    let (payload, missing) = match t.get(offset..) {
        Some(payload) => (payload, missing),
        None => (&[][..], missing + (offset - t.len()) as u32),
    };
    Some(Segment {
        src: SocketAddr::new(src, src_port),
        dst: SocketAddr::new(dst, dst_port),
        seq,
        flags,
        payload,
        missing,
    })
}

/// Turns segments into capture events for the service ports.
#[derive(Clone, Debug)]
pub struct Segments {
    ports: Vec<u16>,
    /// Also the server → client direction (v1's responses).
    responses: bool,
    pub stats: PacketStats,
}

/// What became of the packets of a capture file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    pub packets: u64,
    /// TCP segments to (or, with responses, from) a service port.
    pub matched: u64,
    /// Not TCP of a service port (other traffic, IP fragments, link
    /// types not read).
    pub other: u64,
    /// Payload bytes the capture's snap length cut (gaps in the streams).
    pub cut_bytes: u64,
    /// Packets of the service ports that lost payload bytes so.
    pub cut_packets: u64,
}

impl Segments {
    pub fn new(ports: Vec<u16>, responses: bool) -> Self {
        Self {
            ports,
            responses,
            stats: PacketStats::default(),
        }
    }

    /// Feeds `sink` the events of one packet, as the kernel program would
    /// emit them.
    pub fn emit(&mut self, packet: &Packet, sink: &mut impl EventSink) {
        self.stats.packets += 1;
        let Some(seg) = segment(packet.link, &packet.data, packet.wire_len) else {
            self.stats.other += 1;
            return;
        };
        let (flow, direction) = if self.ports.contains(&seg.dst.port()) {
            (
                FlowKey {
                    client: seg.src,
                    server: seg.dst,
                },
                Direction::ToServer,
            )
        } else if self.responses && self.ports.contains(&seg.src.port()) {
            (
                FlowKey {
                    client: seg.dst,
                    server: seg.src,
                },
                Direction::ToClient,
            )
        } else {
            self.stats.other += 1;
            return;
        };
        self.stats.matched += 1;
        let event = |kind| Event {
            flow,
            direction,
            timestamp_ns: packet.timestamp_ns,
            ifindex: 0,
            tcp_flags: seg.flags,
            kind,
        };
        let payload_len = seg.payload.len() as u32 + seg.missing;
        if seg.flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
            sink.on_event(&event(EventKind::Control {
                seq: seg.seq,
                payload_len,
                flags: seg.flags,
            }));
        }
        let mut seq = seg.seq.wrapping_add(u32::from(seg.flags & TCP_SYN != 0));
        for chunk in seg.payload.chunks(CHUNK_SIZE) {
            sink.on_event(&event(EventKind::Data {
                seq,
                payload: chunk,
            }));
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        if seg.missing > 0 {
            self.stats.cut_bytes += u64::from(seg.missing);
            self.stats.cut_packets += 1;
            sink.on_event(&event(EventKind::Truncated {
                seq,
                len: seg.missing,
            }));
        }
    }
}

impl Segments {
    /// What the user is told once the capture has been read, one sentence
    /// each: the file cut short, no packets, none of the service ports,
    /// payloads cut by the snap length. Each explains counts that would
    /// otherwise look like lost requests (`gap`, `incomplete`) or nothing.
    pub fn notes<R: Read>(&self, reader: &PacketReader<R>) -> Vec<String> {
        let stats = &self.stats;
        let mut notes = Vec::new();
        if let Some(cut) = reader.cut() {
            notes.push(format!(
                "the capture ends inside its last packet (byte {}, {} bytes of it in the file): \
                 the file was cut short (tcpdump killed, disk full, a copy not finished?); \
                 the {} packets before it were read, the cut one is left out",
                cut.at, cut.present, stats.packets
            ));
        } else if stats.packets == 0 {
            notes.push(
                "the capture holds no packets (only its file header): nothing to read".into(),
            );
        }
        if stats.packets > 0 && stats.matched == 0 {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            notes.push(format!(
                "none of its {} packets is TCP of port {}: is --port the service's port?",
                stats.packets,
                ports.join(" or ")
            ));
        }
        if stats.cut_bytes > 0 {
            let how = match reader.snaplen() {
                Some(snaplen) if snaplen > 0 => {
                    format!("the capture was taken with snaplen {snaplen}")
                }
                _ => "packets were captured shorter than they were on the wire".into(),
            };
            notes.push(format!(
                "{how}: payload bytes were cut ({} bytes of {} packets; the requests and \
                 responses they were in are lost as gaps); capture with -s 0",
                stats.cut_bytes, stats.cut_packets
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests;
