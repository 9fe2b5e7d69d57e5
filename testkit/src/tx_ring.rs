//! A TCP client whose every frame leaves through a packet socket's TX ring
//! (`PACKET_TX_RING`), the way packet generators and replay tools send.
//!
//! The kernel builds the skb of such a frame with only the link-layer
//! header in its linear area; the IP and TCP headers and the payload stay in
//! the ring's page, attached as a paged fragment. A veth pair forwards that
//! skb as it is, so the peer's TC ingress sees IP and TCP headers outside
//! the linear part (`data_end - data` = 14 bytes), which a receiving NIC
//! driver may also hand up. Ordinary sockets never produce such frames.
//!
//! [`RingTcp`] speaks just enough TCP for one short connection to a real
//! server on a lossless link: handshake, segments it waits to see
//! acknowledged, the server's data acknowledged in order and kept
//! ([`RingTcp::received`]), FIN both ways. It sends from an address and a
//! MAC address that no interface has: the client namespace's own stack
//! drops the server's answers (they are for another host) instead of
//! resetting the connection it knows nothing of. The server reaches that
//! address through a permanent neighbour entry ([`static_neighbour`]).
//!
//! Ring slots are never reused: the receiver may keep a frame's page
//! fragment (in a socket's receive queue) after the kernel handed the slot
//! back, and a new frame written there would change bytes already received.
//! One client sends at most [`FRAMES`] frames.

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{netns::Netns, packet};

/// Frames one client can send (ring slots, never reused).
pub const FRAMES: usize = 64;
/// Bytes of one ring slot: its `tpacket2_hdr` and one frame.
const FRAME_SIZE: usize = 2048;
const BLOCK_SIZE: usize = 4096;
/// Where a frame starts in its slot: after the header, aligned (the
/// kernel's `tp_hdrlen - sizeof(struct sockaddr_ll)` for TPACKET_V2).
const DATA_OFFSET: usize = libc::TPACKET2_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();
/// Largest payload of one segment.
pub const MAX_PAYLOAD: usize = FRAME_SIZE - DATA_OFFSET - 14 - 40 - 24;
/// How long the client waits for the server's answer to a segment.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The window the client advertises (no window scaling).
const WINDOW: u16 = 65535;
/// The MSS option of the client's SYN.
const MSS: u16 = 1400;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// One end of the connection: its MAC address and its socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub mac: [u8; 6],
    pub addr: SocketAddr,
}

/// The MAC address of `interface` in `netns`.
pub fn mac_address(netns: &Netns, interface: &str) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{interface}/address");
    let text = netns
        .run(|| std::fs::read_to_string(&path))
        .with_context(|| format!("reading {path} in {}", netns.name()))?;
    parse_mac(text.trim())
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("not a MAC address: {text:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("not a MAC address: {text:?}"))
}

fn show_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A permanent neighbour entry in `netns`: `addr` is at `mac` on `dev`.
pub fn static_neighbour(netns: &Netns, dev: &str, addr: IpAddr, mac: [u8; 6]) -> Result<()> {
    netns.ip([
        "neigh",
        "replace",
        &addr.to_string(),
        "lladdr",
        &show_mac(&mac),
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// A TCP connection whose frames go out through a TX ring; see the module
/// documentation.
pub struct RingTcp {
    tx: TxRing,
    /// A packet socket that sees every frame on the interface: the server's
    /// answers are picked out of it.
    rx: OwnedFd,
    local: Endpoint,
    remote: Endpoint,
    snd_nxt: u32,
    /// Zero until the SYN-ACK came.
    rcv_nxt: u32,
    established: bool,
    /// What the server sent, in order.
    received: Vec<u8>,
}

/// What the client needs of a segment from the server.
#[derive(Clone, Debug)]
struct Answer {
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

impl RingTcp {
    /// Opens the sockets on `interface` of `netns` and makes the handshake
    /// from `local` to `remote` (both the same address family), starting
    /// at sequence number `isn`.
    pub fn connect(
        netns: &Netns,
        interface: &str,
        local: Endpoint,
        remote: Endpoint,
        isn: u32,
    ) -> Result<Self> {
        ensure!(
            local.addr.is_ipv4() == remote.addr.is_ipv4(),
            "{} and {} are of different families",
            local.addr,
            remote.addr
        );
        let (tx, rx) = netns
            .run(|| -> Result<_> {
                let ifindex = ifindex(interface)?;
                // The receiver first: the SYN-ACK must not come before it.
                Ok((receiver(ifindex)?, TxRing::open(ifindex)?))
            })
            .with_context(|| format!("packet sockets on {interface} in {}", netns.name()))
            .map(|(rx, tx)| (tx, rx))?;
        let mut client = Self {
            tx,
            rx,
            local,
            remote,
            snd_nxt: isn,
            rcv_nxt: 0,
            established: false,
            received: Vec::new(),
        };
        let mss = MSS.to_be_bytes();
        client.send_segment(TCP_SYN, &[2, 4, mss[0], mss[1]], &[])?;
        client.snd_nxt = isn.wrapping_add(1);
        let expected = client.snd_nxt;
        let syn_ack = client
            .wait_for("the SYN-ACK", |a| {
                a.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && a.ack == expected
            })
            .context("handshake")?;
        client.rcv_nxt = syn_ack.seq.wrapping_add(1);
        client.established = true;
        client.send_segment(TCP_ACK, &[], &[])?;
        Ok(client)
    }

    pub fn local(&self) -> SocketAddr {
        self.local.addr
    }

    /// The bytes the server sent so far (acknowledged).
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Frames sent so far (each one through its own ring slot).
    pub fn frames_sent(&self) -> usize {
        self.tx.next
    }

    /// Sends `data` in one segment (PSH, ACK) and waits until the server
    /// acknowledged it (its data meanwhile is acknowledged and kept).
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        ensure!(
            !data.is_empty() && data.len() <= MAX_PAYLOAD,
            "{} bytes: one segment carries 1 to {MAX_PAYLOAD}",
            data.len()
        );
        self.send_segment(TCP_PSH | TCP_ACK, &[], data)?;
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        let expected = self.snd_nxt;
        self.wait_for("the ACK of the data", |a| {
            a.flags & TCP_ACK != 0 && a.ack == expected
        })?;
        Ok(())
    }

    /// Sends FIN, waits for the server's FIN (it closes once it read
    /// everything) and acknowledges it.
    pub fn close(&mut self) -> Result<()> {
        self.send_segment(TCP_FIN | TCP_ACK, &[], &[])?;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        let fin = self.wait_for("the server's FIN", |a| a.flags & TCP_FIN != 0)?;
        // wait_for kept the FIN's data when it came in order.
        ensure!(
            fin.seq.wrapping_add(fin.payload.len() as u32) == self.rcv_nxt,
            "the server's FIN came before some of its data"
        );
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.send_segment(TCP_ACK, &[], &[])
    }

    /// One segment from `snd_nxt` (not advanced here).
    fn send_segment(&mut self, flags: u8, options: &[u8], payload: &[u8]) -> Result<()> {
        let frame = self.frame(flags, options, payload);
        self.tx.send(&frame)
    }

    fn frame(&self, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        assert!(options.len().is_multiple_of(4) && options.len() <= 40);
        let (local, remote) = (self.local.addr, self.remote.addr);
        let mut segment = packet::tcp_with_offset(
            local.port(),
            remote.port(),
            self.snd_nxt,
            flags,
            (5 + options.len() / 4) as u8,
            payload,
        );
        let ack = if flags & TCP_ACK != 0 {
            self.rcv_nxt
        } else {
            0
        };
        segment[8..12].copy_from_slice(&ack.to_be_bytes());
        segment[14..16].copy_from_slice(&WINDOW.to_be_bytes());
        segment[20..20 + options.len()].copy_from_slice(options);
        let checksum = tcp_checksum(local.ip(), remote.ip(), &segment);
        segment[16..18].copy_from_slice(&checksum.to_be_bytes());
        let mut frame = match (local.ip(), remote.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => packet::ethernet(
                packet::ETH_P_IP,
                &packet::ipv4(src, dst, packet::IPPROTO_TCP, &[], &segment),
            ),
            (IpAddr::V6(src), IpAddr::V6(dst)) => packet::ethernet(
                packet::ETH_P_IPV6,
                &packet::ipv6(src, dst, packet::IPPROTO_TCP, &segment),
            ),
            _ => unreachable!("families checked in connect"),
        };
        frame[..6].copy_from_slice(&self.remote.mac);
        frame[6..12].copy_from_slice(&self.local.mac);
        frame
    }

    /// Reads frames until one from the server to this client satisfies
    /// `wanted`; fails on a RST or after [`ANSWER_TIMEOUT`]. Data on the
    /// way is acknowledged: the next expected bytes are kept, anything else
    /// (a retransmission) gets a duplicate ACK.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Answer) -> bool) -> Result<Answer> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut frame = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "no {what} within {ANSWER_TIMEOUT:?}");
            let mut poll = [rustix::event::PollFd::new(
                &self.rx,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(left)?;
            if rustix::event::poll(&mut poll, Some(&timeout))? == 0 {
                continue;
            }
            // SAFETY: recv into a buffer we own, of the length given.
            let n = unsafe {
                libc::recv(
                    self.rx.as_raw_fd(),
                    frame.as_mut_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::WouldBlock {
                    continue;
                }
                return Err(err).context("reading the packet socket");
            }
            let Some(answer) = self.answer(&frame[..n as usize]) else {
                continue;
            };
            if answer.flags & TCP_RST != 0 {
                bail!("the server reset the connection while the client waited for {what}");
            }
            if self.established && !answer.payload.is_empty() {
                if answer.seq == self.rcv_nxt {
                    self.received.extend_from_slice(&answer.payload);
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(answer.payload.len() as u32);
                }
                self.send_segment(TCP_ACK, &[], &[])?;
            }
            if wanted(&answer) {
                return Ok(answer);
            }
        }
    }

    /// The segment `frame` carries if it goes from the server to this
    /// client.
    fn answer(&self, frame: &[u8]) -> Option<Answer> {
        let ether_type = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
        let ip = frame.get(14..)?;
        let length = |at: usize| Some(u16::from_be_bytes(ip.get(at..at + 2)?.try_into().ok()?));
        // The TCP segment ends where the IP packet says (not at the end of
        // the frame, which may carry link padding).
        let (src, dst, l4) = match ether_type {
            packet::ETH_P_IP => {
                let ihl = ((ip.first()? & 0x0f) as usize) * 4;
                if *ip.get(9)? != packet::IPPROTO_TCP {
                    return None;
                }
                let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                let end = length(2)? as usize;
                (IpAddr::from(src), IpAddr::from(dst), ip.get(ihl..end)?)
            }
            packet::ETH_P_IPV6 => {
                if *ip.get(6)? != packet::IPPROTO_TCP {
                    return None;
                }
                let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                let end = 40 + length(4)? as usize;
                (IpAddr::from(src), IpAddr::from(dst), ip.get(40..end)?)
            }
            _ => return None,
        };
        let port = |at: usize| Some(u16::from_be_bytes(l4.get(at..at + 2)?.try_into().ok()?));
        let word = |at: usize| Some(u32::from_be_bytes(l4.get(at..at + 4)?.try_into().ok()?));
        let from = SocketAddr::new(src, port(0)?);
        let to = SocketAddr::new(dst, port(2)?);
        if from != self.remote.addr || to != self.local.addr {
            return None;
        }
        let header_len = ((*l4.get(12)? >> 4) as usize) * 4;
        Some(Answer {
            seq: word(4)?,
            ack: word(8)?,
            flags: *l4.get(13)?,
            payload: l4.get(header_len..)?.to_vec(),
        })
    }
}

/// The TCP checksum of `segment` (its checksum field zero) from `src` to
/// `dst`: RFC 9293's pseudo-header for IPv4, RFC 8200's for IPv6.
pub fn tcp_checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    let mut summed = Vec::with_capacity(40 + segment.len());
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            summed.extend_from_slice(&src.octets());
            summed.extend_from_slice(&dst.octets());
            summed.extend_from_slice(&[0, packet::IPPROTO_TCP]);
            summed.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            summed.extend_from_slice(&src.octets());
            summed.extend_from_slice(&dst.octets());
            summed.extend_from_slice(&(segment.len() as u32).to_be_bytes());
            summed.extend_from_slice(&[0, 0, 0, packet::IPPROTO_TCP]);
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
    summed.extend_from_slice(segment);
    packet::internet_checksum(&summed)
}

fn ifindex(interface: &str) -> Result<i32> {
    let name = std::ffi::CString::new(interface)?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    ensure!(index != 0, "no interface {interface}");
    Ok(index as i32)
}

/// A packet socket of `protocol` (network byte order) bound to `ifindex`.
fn packet_socket(ifindex: i32, protocol: u16) -> Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol as i32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET, SOCK_RAW)");
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_ll is valid; the fields set below make
    // it a bind address.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex;
    // SAFETY: the address and its length describe a sockaddr_ll.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    Ok(fd)
}

/// Every frame on the interface, both directions.
fn receiver(ifindex: i32) -> Result<OwnedFd> {
    packet_socket(ifindex, (libc::ETH_P_ALL as u16).to_be())
}

fn set_option<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &str) -> Result<()> {
    // SAFETY: `value` is the option's C type, of the length given.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| what.to_owned());
    }
    Ok(())
}

/// A send-only packet socket with a TPACKET_V2 TX ring mapped in.
struct TxRing {
    fd: OwnedFd,
    map: NonNull<u8>,
    len: usize,
    /// The next unused slot.
    next: usize,
}

// SAFETY: the mapping belongs to this value alone; nothing else touches it.
unsafe impl Send for TxRing {}

impl TxRing {
    fn open(ifindex: i32) -> Result<Self> {
        // Protocol 0: the socket receives nothing.
        let fd = packet_socket(ifindex, 0)?;
        let version = libc::tpacket_versions::TPACKET_V2 as i32;
        set_option(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION",
        )?;
        let request = libc::tpacket_req {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: (FRAMES * FRAME_SIZE / BLOCK_SIZE) as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: FRAMES as u32,
        };
        set_option(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_TX_RING,
            &request,
            "PACKET_TX_RING",
        )?;
        // A send waits for the frames it sent to be freed (their
        // destructor releases the slots): never forever.
        let timeout = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        set_option(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &timeout,
            "SO_SNDTIMEO",
        )?;
        let len = FRAMES * FRAME_SIZE;
        // SAFETY: maps the ring the kernel just made for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of the TX ring");
        }
        Ok(Self {
            fd,
            map: NonNull::new(map.cast()).context("mmap returned null")?,
            len,
            next: 0,
        })
    }

    /// Writes `frame` into the next slot and has the kernel send it.
    fn send(&mut self, frame: &[u8]) -> Result<()> {
        ensure!(
            self.next < FRAMES,
            "all {FRAMES} TX ring slots used (slots are never reused)"
        );
        ensure!(frame.len() <= FRAME_SIZE - DATA_OFFSET, "frame too long");
        // SAFETY: slot `next` lies inside the mapping; its header is a
        // tpacket2_hdr the kernel reads once tp_status asks it to, and
        // the frame fits the slot after DATA_OFFSET (checked above).
        let status = unsafe {
            let slot = self.map.as_ptr().add(self.next * FRAME_SIZE);
            let header = slot.cast::<libc::tpacket2_hdr>();
            let status = AtomicU32::from_ptr(&raw mut (*header).tp_status);
            ensure!(
                status.load(Ordering::Acquire) == libc::TP_STATUS_AVAILABLE,
                "TX ring slot {} is not available",
                self.next
            );
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(DATA_OFFSET), frame.len());
            (*header).tp_len = frame.len() as u32;
            status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            status
        };
        self.next += 1;
        // Blocking: returns once the kernel sent the frame and freed its skb.
        // SAFETY: a send without data on our own socket.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, 0) };
        if sent < 0 {
            return Err(std::io::Error::last_os_error()).context("send on the TX ring");
        }
        let status = status.load(Ordering::Acquire);
        ensure!(
            status & libc::TP_STATUS_WRONG_FORMAT == 0,
            "the kernel refused the frame (TP_STATUS_WRONG_FORMAT)"
        );
        ensure!(
            status & libc::TP_STATUS_SEND_REQUEST == 0,
            "the kernel did not take the frame (tp_status {status:#x})"
        );
        Ok(())
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_with_its_checksum_sums_to_zero() {
        let src: IpAddr = "10.200.0.3".parse().unwrap();
        let dst: IpAddr = "10.200.0.2".parse().unwrap();
        let mut segment = packet::tcp(40000, 8080, 7, TCP_ACK | TCP_PSH, b"odd");
        let checksum = tcp_checksum(src, dst, &segment);
        segment[16..18].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(tcp_checksum(src, dst, &segment), 0);

        let src: IpAddr = "fd00:200::3".parse().unwrap();
        let dst: IpAddr = "fd00:200::2".parse().unwrap();
        let mut segment = packet::tcp(40000, 8080, 7, TCP_SYN, b"");
        let checksum = tcp_checksum(src, dst, &segment);
        segment[16..18].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(tcp_checksum(src, dst, &segment), 0);
    }

    #[test]
    fn mac_addresses_read_and_show_alike() {
        let mac = parse_mac("02:00:0a:c8:00:03").unwrap();
        assert_eq!(mac, [2, 0, 0x0a, 0xc8, 0, 3]);
        assert_eq!(show_mac(&mac), "02:00:0a:c8:00:03");
        assert!(parse_mac("02:00").is_err());
    }
}
