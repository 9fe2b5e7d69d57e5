//! Everything that crosses the kernel ↔ agent boundary: the ring record
//! header, the configuration map value and the counter indices.
//!
//! All types are `#[repr(C)]` with explicit padding so that the BPF object and
//! the agent agree on every byte; the agent checks the layout in a test.
#![no_std]

mod labelled;

/// Largest number of service ports one agent captures.
pub const MAX_PORTS: usize = 16;

/// Most payload bytes one ring record carries. A segment larger than this is
/// split into several records. Data records are reserved in size classes
/// (512, 1536 or 4096 payload bytes): the record may be longer than its
/// payload, whose length the header gives.
pub const CHUNK_SIZE: usize = 4096;

/// Records one segment may produce. `CHUNK_SIZE * MAX_CHUNKS` = 512 KiB covers
/// GRO/TSO super-packets including BIG TCP (512 KiB max); anything beyond is
/// reported as a `Truncated` record and counted.
pub const MAX_CHUNKS: usize = 128;

/// Basis points that mean "every connection".
pub const SAMPLE_ALL: u32 = 10_000;

/// Name of the classifier program inside the object. The agent also uses it
/// to find and remove its own netlink leftovers after a crash.
pub const PROGRAM_NAME: &str = "mirror_ingress";
/// The egress classifier: v1's responses (segments whose source port is a
/// service port), attached only when a target compares answers.
pub const RESPONSE_PROGRAM_NAME: &str = "mirror_egress";
/// The payload copier, reached by tail call from [`PROGRAM_NAME`] through
/// [`MAP_JUMP`] slot [`JUMP_COPY`].
pub const COPY_PROGRAM_NAME: &str = "mirror_copy";
pub const MAP_JUMP: &str = "MIRROR_JUMP";
pub const JUMP_COPY: u32 = 0;
/// Map names, as the object declares them.
pub const MAP_EVENTS: &str = "MIRROR_EVENTS";
pub const MAP_CONFIG: &str = "MIRROR_CONFIG";
pub const MAP_COUNTERS: &str = "MIRROR_COUNTERS";
pub const MAP_SCRATCH: &str = "MIRROR_SCRATCH";
/// One `u32`, [`AGENT_ASLEEP`] or [`AGENT_AWAKE`]: the agent says it sleeps
/// (no timer running) before it blocks, and the program wakes it for the
/// first record it writes then.
pub const MAP_WAKE: &str = "MIRROR_WAKE";
pub const AGENT_AWAKE: u32 = 0;
pub const AGENT_ASLEEP: u32 = 1;
/// [`ConnKey`] → [`Ignore`]: connections whose payload the agent no longer
/// needs (LRU: an entry the agent forgot to remove ages out).
pub const MAP_IGNORE: &str = "MIRROR_IGNORE";
pub const IGNORE_MAX_ENTRIES: u32 = 65_536;

/// Which way a record's segment went, as carried in
/// [`RecordHeader::direction`] (and the index of its direction's counters).
pub const TO_SERVER: u8 = 0;
pub const TO_CLIENT: u8 = 1;

/// Address family of a flow, as carried in [`RecordHeader::family`].
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// TCP flag bits, as carried in [`RecordHeader::tcp_flags`] (RFC 9293 order).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// What a ring record says. Stored as `u8` in [`RecordHeader::kind`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// `len` payload bytes follow the header; `seq` is the TCP sequence
    /// number of the first one.
    Data = 1,
    /// A segment carrying SYN, FIN or RST. No bytes follow. `seq` is the
    /// segment's sequence number and `len` its payload length, so a FIN sits
    /// at `seq + len`. Emitted before the segment's data records.
    Control = 2,
    /// The bytes `[seq, seq + len)` of a segment could not be copied (the
    /// segment was larger than `CHUNK_SIZE * MAX_CHUNKS`). No bytes follow.
    Truncated = 3,
}

impl RecordKind {
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Data),
            2 => Some(Self::Control),
            3 => Some(Self::Truncated),
            _ => None,
        }
    }
}

/// Header of every ring record. A `Data` record is this header followed by
/// exactly `len` payload bytes; other kinds are the header alone.
///
/// Addresses and ports are the segment's own (for a response, `src` is the
/// server). Addresses are in network byte order; IPv4 uses the first 4
/// bytes and leaves the rest zero. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// `bpf_ktime_get_ns()` when the segment was seen (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub seq: u32,
    pub len: u32,
    pub ifindex: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// The segment's TCP flags byte (FIN, SYN, RST, PSH, ACK, ...).
    pub tcp_flags: u8,
    /// A [`RecordKind`] value.
    pub kind: u8,
    /// [`TO_SERVER`] (a request stream, ingress) or [`TO_CLIENT`] (a
    /// response stream, egress).
    pub direction: u8,
    pub _pad: [u8; 4],
}

pub const RECORD_HEADER_SIZE: usize = core::mem::size_of::<RecordHeader>();

/// A connection as the program sees it: the key of [`MAP_IGNORE`].
/// Addresses and ports as in [`RecordHeader`]; the padding is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}

impl ConnKey {
    /// The connection of a record header.
    #[inline(always)]
    pub fn of(header: &RecordHeader) -> Self {
        Self {
            src_addr: header.src_addr,
            dst_addr: header.dst_addr,
            src_port: header.src_port,
            dst_port: header.dst_port,
            family: header.family,
            _pad: [0; 3],
        }
    }
}

/// What the agent no longer needs of a connection's payload: the bytes
/// before `until_seq` and `beyond` more after it (the rest of a body it
/// skips), or all of them (`forever`: TLS, HTTP/2, upgraded, refused).
/// Control segments (SYN, FIN, RST) are still recorded; a SYN removes the
/// entry (a new connection on the same 4-tuple).
///
/// Sequence numbers compare modulo 2^32, so `until_seq` stays within
/// [`IGNORE_STEP`] of the connection's position; the program moves it on by
/// up to a step from `beyond` when the connection reaches it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ignore {
    /// Bytes still to leave out after `until_seq`.
    pub beyond: u64,
    /// Sequence number of the first byte not covered yet.
    pub until_seq: u32,
    /// Non-zero: every payload byte from now on.
    pub forever: u32,
}

/// Most bytes `until_seq` moves ahead of the connection at once.
pub const IGNORE_STEP: u64 = 1 << 30;

impl Ignore {
    /// Leaves out everything from now on.
    pub const FOREVER: Self = Self {
        beyond: 0,
        until_seq: 0,
        forever: 1,
    };

    /// Leaves out the `len` bytes from sequence number `from`.
    pub fn bytes(from: u32, len: u64) -> Self {
        let step = len.min(IGNORE_STEP);
        Self {
            beyond: len - step,
            until_seq: from.wrapping_add(step as u32),
            forever: 0,
        }
    }

    /// Whether a segment whose payload ends just before `end_seq` is
    /// wholly ignored. A segment past `until_seq` moves it on by a step from
    /// `beyond` first (segments are far shorter than a step).
    #[inline(always)]
    pub fn covers(&mut self, end_seq: u32) -> bool {
        if self.forever != 0 {
            return true;
        }
        if (self.until_seq.wrapping_sub(end_seq) as i32) < 0 && self.beyond > 0 {
            let step = if self.beyond < IGNORE_STEP {
                self.beyond
            } else {
                IGNORE_STEP
            };
            self.beyond -= step;
            self.until_seq = self.until_seq.wrapping_add(step as u32);
        }
        (self.until_seq.wrapping_sub(end_seq) as i32) >= 0
    }
}

/// Per-CPU scratch of the kernel program: the header of the segment being
/// captured and the copy job the classifier hands to the copier.
///
/// A separate, tail-called program copies a payload of several records
/// because the verifier walks a 128-iteration loop once per distinct entry
/// state: inline after the header parsing paths it exceeded the
/// 1M-instruction budget; in its own program it is walked once. A payload
/// of one record (no loop) is copied by the classifier itself.
#[repr(C)]
pub struct CaptureScratch {
    pub header: RecordHeader,
    /// Offset of the first payload byte from the start of the frame.
    pub copy_offset: u32,
    pub payload_len: u32,
    /// Sequence number of the first payload byte.
    pub first_seq: u32,
    /// Bytes this CPU added to the ring since the program last read the
    /// ring's positions (it does so once in a while, not per record).
    pub unqueried: u32,
}

/// The single value of the config map, filled by the agent before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Destination ports to capture, host byte order. Every slot holds a
    /// service port: [`CaptureConfig::set_ports`] repeats the first port in
    /// the unused ones, so the program scans all of them (see
    /// [`CaptureConfig::has_port`]).
    pub ports: [u16; MAX_PORTS],
    /// How many distinct ports the agent gave (for readers of the map;
    /// the program does not use it).
    pub port_count: u32,
    /// Share of connections captured, in basis points (0..=10_000).
    pub sample_bp: u32,
    /// Mixed into the connection hash so that two agents sampling the same
    /// traffic can pick different connections.
    pub sample_seed: u32,
    /// The program wakes the agent each time the data waiting in the ring
    /// crosses a multiple of this many bytes; below that the agent drains
    /// on its own short timer: a wakeup per record would cost more than the
    /// copy itself (docs/design-notes.md).
    pub wakeup_bytes: u32,
}

impl CaptureConfig {
    pub const fn empty() -> Self {
        Self {
            ports: [0; MAX_PORTS],
            port_count: 0,
            sample_bp: SAMPLE_ALL,
            sample_seed: 0,
            wakeup_bytes: 0,
        }
    }

    /// Fills every slot: `ports` in order, then the first one repeated.
    /// At most [`MAX_PORTS`] are taken; an empty list matches nothing but
    /// port 0, which no TCP segment is addressed to.
    pub fn set_ports(&mut self, ports: &[u16]) {
        let count = ports.len().min(MAX_PORTS);
        let first = ports.first().copied().unwrap_or(0);
        for (i, slot) in self.ports.iter_mut().enumerate() {
            *slot = if i < count { ports[i] } else { first };
        }
        self.port_count = count as u32;
    }

    /// Is `port` a service port? A scan of every slot, with no bound that
    /// depends on the map's contents: with a `port_count` bound, LLVM made
    /// a count-down loop that Debian 12's 6.1 verifier could not bound (the
    /// index went negative: "invalid access to map value ... off=48"). A
    /// constant trip count is walked with a known index at each step.
    #[inline(always)]
    pub fn has_port(&self, port: u16) -> bool {
        let mut i = 0;
        while i < MAX_PORTS {
            if self.ports[i] == port {
                return true;
            }
            i += 1;
        }
        false
    }
}

labelled! {
    /// Indices into the per-CPU counter array. Two identities hold at every
    /// instant the agent reads a consistent snapshot:
    ///
    /// * packets: `seen = not_ip + not_tcp + malformed + port_not_matched +
    ///   not_sampled + ignored + matched`
    /// * records: `records_matched = records_emitted + records_lost`
    ///
    /// A variant's index (`counter as usize`) is its slot in
    /// [`Counters::values`]: the order is part of the kernel ↔ agent
    /// contract.
    #[repr(u32)]
    pub enum Counter {
        /// Every packet the program ran on.
        Seen => "seen",
        /// Not IPv4/IPv6 (ARP, LLDP, VLAN-tagged, ...).
        NotIp => "not_ip",
        /// IP, but not TCP (UDP, ICMP, IPv6 extension headers, fragments).
        NotTcp => "not_tcp",
        /// IP/TCP headers truncated or inconsistent (bad IHL, bad data offset).
        Malformed => "malformed",
        /// TCP to a port outside the service set.
        PortNotMatched => "port_not_matched",
        /// TCP to a service port on a connection outside the sampled share.
        NotSampled => "not_sampled",
        /// TCP to a service port on a sampled connection: these are copied.
        Matched => "matched",
        /// Payload bytes of matched segments handed to the ring.
        PayloadBytes => "payload_bytes",
        /// Records the program tried to write (data, control and truncation).
        RecordsMatched => "records_matched",
        /// Records written to the ring.
        RecordsEmitted => "records_emitted",
        /// Records lost because the ring was full (or a copy failed).
        RecordsLost => "records_lost",
        /// Segments larger than `CHUNK_SIZE * MAX_CHUNKS`.
        TruncatedSegments => "truncated_segments",
        /// Payload bytes not copied from such segments.
        TruncatedBytes => "truncated_bytes",
        /// TCP to a service port whose payload the agent said it no longer
        /// needs ([`MAP_IGNORE`]): not copied (a SYN, FIN or RST it carries
        /// is still recorded).
        Ignored => "ignored",
        /// Payload bytes of those segments.
        IgnoredBytes => "ignored_bytes",
    }
}

impl Counter {
    /// What became of a packet: every packet the program ran on (`Seen`)
    /// has exactly one of these.
    pub const PACKET_OUTCOMES: [Counter; 7] = [
        Counter::NotIp,
        Counter::NotTcp,
        Counter::Malformed,
        Counter::PortNotMatched,
        Counter::NotSampled,
        Counter::Ignored,
        Counter::Matched,
    ];
}

/// The single value of the per-CPU counter map: one lookup per packet gives
/// the program every counter of its CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    pub values: [u64; Counter::COUNT],
}

impl Counters {
    pub const fn zero() -> Self {
        Self {
            values: [0; Counter::COUNT],
        }
    }

    #[inline(always)]
    pub fn add(&mut self, counter: Counter, n: u64) {
        self.values[counter as usize] += n;
    }

    pub const fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }
}

/// Folds a record address (IPv4 in the first 4 bytes, rest zero; or IPv6)
/// to 32 bits for [`connection_hash`]: the XOR of its four words.
#[inline(always)]
pub fn fold_address(addr: &[u8; 16]) -> u32 {
    let word = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    word(0) ^ word(4) ^ word(8) ^ word(12)
}

/// The connection hash used for sampling. Both sides compute it the same way
/// so the agent (and its tests) can predict which connections the kernel keeps.
/// The address words come from [`fold_address`].
#[inline(always)]
pub fn connection_hash(
    src_word: u32,
    dst_word: u32,
    src_port: u16,
    dst_port: u16,
    seed: u32,
) -> u32 {
    let ports = ((src_port as u64) << 16) | dst_port as u64;
    let mut x =
        ((src_word as u64) << 32 | dst_word as u64) ^ (ports << 17) ^ ((seed as u64) << 7) ^ ports;
    // murmur3/splitmix64 finaliser: every input bit affects every output bit,
    // so sequential client ports spread evenly.
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x as u32
}

/// Whether a connection with this hash is inside the sampled share.
#[inline(always)]
pub fn is_sampled(hash: u32, sample_bp: u32) -> bool {
    sample_bp >= SAMPLE_ALL || hash % SAMPLE_ALL < sample_bp
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` structs of integers and byte arrays with
    // explicit padding fields: every bit pattern is a valid value.
    unsafe impl aya::Pod for super::RecordHeader {}
    unsafe impl aya::Pod for super::CaptureConfig {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::Ignore {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ignore_entry_covers_segments_ending_at_or_before_its_end() {
        let mut ignore = Ignore::bytes(0, 1000);
        assert!(ignore.covers(999));
        assert!(ignore.covers(1000));
        assert!(!ignore.covers(1001));
        // Across the wrap of sequence numbers.
        let mut ignore = Ignore::bytes(u32::MAX - 10, 21);
        assert!(ignore.covers(u32::MAX - 5));
        assert!(ignore.covers(10));
        assert!(!ignore.covers(11));
        let mut forever = Ignore::FOREVER;
        assert!(forever.covers(12345));
    }

    #[test]
    fn a_skip_longer_than_the_sequence_space_moves_on_step_by_step() {
        // 10 GiB from sequence number 5: walk it in 64 KiB segments' ends
        // sampled every 256 MiB, then the first byte after it.
        let len = 10u64 << 30;
        let mut ignore = Ignore::bytes(5, len);
        let mut at = 0u64;
        while at < len {
            at = (at + (256 << 20)).min(len);
            assert!(ignore.covers(5u32.wrapping_add(at as u32)), "at {at}");
        }
        assert_eq!(ignore.beyond, 0);
        assert!(!ignore.covers(5u32.wrapping_add(len as u32 + 1)));
    }

    #[test]
    fn every_port_slot_holds_a_service_port() {
        let mut config = CaptureConfig::empty();
        config.set_ports(&[8080, 80]);
        assert_eq!(config.port_count, 2);
        assert_eq!(&config.ports[..3], &[8080, 80, 8080]);
        assert!(config.ports[2..].iter().all(|&p| p == 8080));
        assert!(config.has_port(80) && config.has_port(8080));
        assert!(!config.has_port(0) && !config.has_port(443));

        let all: [u16; MAX_PORTS] = core::array::from_fn(|i| 1000 + i as u16);
        config.set_ports(&all);
        assert!(all.iter().all(|&p| config.has_port(p)));
        assert!(!config.has_port(999));
    }
}
