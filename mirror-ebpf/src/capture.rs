//! Service-port matching, connection sampling and the control record; the
//! payload copy (`copy.rs`) is done here for a segment of one record and
//! handed to the copier program by tail call for a larger one.
//!
//! Both directions run this: requests at ingress (destination port a
//! service port), v1's responses at egress (source port a service port),
//! each with its own counters. A connection's hash is computed from
//! (client, server) either way, so both directions are sampled together.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::TcContext,
};
use mirror_common::{
    AGENT_ASLEEP, AGENT_AWAKE, CHUNK_SIZE, CaptureConfig, CaptureScratch, ConnKey, Counter,
    Counters, IGNORE_MAX_ENTRIES, Ignore, JUMP_COPY, MAX_CHUNKS, RECORD_HEADER_SIZE, RecordHeader,
    RecordKind, SAMPLE_ALL, TCP_FIN, TCP_RST, TCP_SYN, TO_SERVER, connection_hash, fold_address,
    is_sampled,
};

use crate::{
    copy::copy_one,
    parse::{Segment, parse, read_addresses},
    words::{self, Addr, Key},
};

/// Records to the agent. The agent sets the real size at load time
/// (`--ring-size`); this default only has to be a valid one.
#[map]
pub static MIRROR_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// One [`CaptureConfig`], written by the agent before it attaches.
#[map]
pub static MIRROR_CONFIG: Array<CaptureConfig> = Array::with_max_entries(1, 0);

/// One [`Counters`] per CPU and direction ([`TO_SERVER`], [`TO_CLIENT`](mirror_common::TO_CLIENT)).
#[map]
pub static MIRROR_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(2, 0);

/// Per-CPU space for the segment's record header and the copy job handed
/// to the copier.
#[map]
pub static MIRROR_SCRATCH: PerCpuArray<CaptureScratch> = PerCpuArray::with_max_entries(1, 0);

/// Whether the agent sleeps: [`AGENT_ASLEEP`] until the first record
/// written, which wakes it (see [`wakeup_flag`]).
#[map]
pub static MIRROR_WAKE: Array<u32> = Array::with_max_entries(1, 0);

/// Connections whose payload the agent no longer needs (a body it skips,
/// a connection it gave up): their bytes never take room in the ring that
/// other clients' requests need.
#[map]
pub static MIRROR_IGNORE: LruHashMap<ConnKey, Ignore> =
    LruHashMap::with_max_entries(IGNORE_MAX_ENTRIES, 0);

/// Slot [`JUMP_COPY`] holds the copier program; the agent fills it.
#[map]
static MIRROR_JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The per-CPU counters of a direction. TC programs do not nest on one
/// CPU, so plain increments are safe.
#[inline(always)]
pub fn counters(direction: u8) -> Option<&'static mut Counters> {
    // SAFETY: per-CPU value of the array; see above for exclusivity.
    MIRROR_COUNTERS
        .get_ptr_mut(u32::from(direction))
        .map(|p| unsafe { &mut *p })
}

/// A segment at ingress ([`TO_SERVER`]) or egress
/// ([`TO_CLIENT`](mirror_common::TO_CLIENT)).
#[inline(always)]
pub fn on_packet(ctx: &TcContext, direction: u8) {
    let Some(counters) = counters(direction) else {
        return;
    };
    counters.add(Counter::Seen, 1);
    #[cfg(mirror_stop = "seen")]
    return;
    let Some(config) = MIRROR_CONFIG.get(0) else {
        return;
    };
    let to_server = direction == TO_SERVER;
    let seg = match parse(ctx).and_then(|seg| {
        let service_port = if to_server {
            seg.dst_port
        } else {
            seg.src_port
        };
        if config.has_port(service_port) {
            Ok(seg)
        } else {
            Err(Counter::PortNotMatched)
        }
    }) {
        Ok(seg) => seg,
        Err(counter) => {
            counters.add(counter, 1);
            return;
        }
    };
    #[cfg(mirror_stop = "parse")]
    {
        counters.add(Counter::Matched, 1);
        return;
    }
    // A segment with nothing to record (no payload, no SYN, FIN or RST:
    // a pure ACK, as many as there are requests) is done as soon as its
    // outcome is known: at once when every connection is sampled.
    let quiet = seg.payload_len == 0 && seg.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0;
    if quiet && config.sample_bp >= SAMPLE_ALL {
        counters.add(Counter::Matched, 1);
        return;
    }
    let Some(buf) = MIRROR_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value, and TC programs do not nest on one CPU.
    let buf = unsafe { &mut *buf };
    // The addresses go straight into the record header: packets for other
    // ports (the common case) never pay for them.
    // A constant counter: with one from the `Result`, LLVM kept a bounds
    // check (and its panic call) that no verifier accepts.
    if read_addresses(ctx, seg.family, &mut buf.header).is_err() {
        counters.add(Counter::Malformed, 1);
        return;
    }
    if !sampled(config, &seg, &buf.header, to_server) {
        counters.add(Counter::NotSampled, 1);
        return;
    }
    if quiet {
        counters.add(Counter::Matched, 1);
        return;
    }
    #[cfg(mirror_stop = "sample")]
    {
        counters.add(Counter::Matched, 1);
        return;
    }
    buf.header.src_port = seg.src_port;
    buf.header.dst_port = seg.dst_port;
    buf.header.family = seg.family;
    buf.header.direction = direction;
    let ignored = ignored(&seg, &buf.header, to_server);
    counters.add(
        if ignored {
            Counter::Ignored
        } else {
            Counter::Matched
        },
        1,
    );
    #[cfg(mirror_stop = "ignore")]
    return;
    let header = &mut buf.header;
    // SAFETY: helper without arguments.
    header.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    header.seq = seg.seq;
    header.len = seg.payload_len as u32;
    // SAFETY: reading a field of the context the kernel handed us.
    header.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    header.tcp_flags = seg.tcp_flags;
    header.kind = RecordKind::Control as u8;
    header._pad = [0; 4];
    #[cfg(mirror_stop = "header")]
    return;
    if seg.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        output(counters, buf, config);
    }
    if ignored {
        counters.add(Counter::IgnoredBytes, seg.payload_len as u64);
        return;
    }
    if seg.payload_len == 0 {
        return;
    }
    // A SYN's sequence number is the ISN; its data (TCP Fast Open) starts
    // one later.
    let first_seq = seg.seq.wrapping_add((seg.tcp_flags & TCP_SYN != 0) as u32);
    if seg.payload_len <= CHUNK_SIZE {
        // One record (every segment without GRO/TSO): copied here. The tail
        // call and the copier's own lookups cost more than this branch.
        #[cfg(mirror_stop = "handoff")]
        {
            counters.add(Counter::RecordsMatched, 1);
            return;
        }
        buf.header.kind = RecordKind::Data as u8;
        buf.header.seq = first_seq;
        copy_one(
            ctx,
            counters,
            buf,
            config,
            seg.payload_offset,
            seg.payload_len,
        );
        return;
    }
    buf.copy_offset = seg.payload_offset as u32;
    buf.payload_len = seg.payload_len as u32;
    buf.first_seq = first_seq;
    // SAFETY: the copier is a classifier of the same kind; on success this
    // does not return and the copier's verdict (always "continue") applies.
    unsafe { MIRROR_JUMP.tail_call(ctx, JUMP_COPY) };
    // Only reached when the tail call failed (the agent fills the slot
    // before attaching, so this does not happen): the records are lost.
    let records = seg
        .payload_len
        .min(CHUNK_SIZE * MAX_CHUNKS)
        .div_ceil(CHUNK_SIZE) as u64;
    counters.add(Counter::RecordsMatched, records);
    counters.add(Counter::RecordsLost, records);
}

/// Is the segment's payload one the agent no longer needs? `header` holds
/// its addresses, ports and family. A SYN starts a new connection on the
/// 4-tuple: whatever the agent said of the old one is forgotten. Entries
/// are keyed client → server; a response segment honours only `forever`
/// (the byte ranges are the request stream's).
#[inline(always)]
fn ignored(seg: &Segment, header: &RecordHeader, to_server: bool) -> bool {
    if seg.payload_len == 0 && seg.tcp_flags & TCP_SYN == 0 {
        return false;
    }
    let (src, dst) = (
        words::load(header, Addr::Src),
        words::load(header, Addr::Dst),
    );
    let key = if to_server {
        Key::new(src, dst, [header.src_port, header.dst_port], header.family)
    } else {
        Key::new(dst, src, [header.dst_port, header.src_port], header.family)
    };
    let key = key.get();
    if seg.tcp_flags & TCP_SYN != 0 {
        // Nothing to remove is the common case; either way go on.
        let _ = MIRROR_IGNORE.remove(key);
        return false;
    }
    if !to_server {
        // SAFETY: as below; only read.
        return unsafe { MIRROR_IGNORE.get(key) }.is_some_and(|ignore| ignore.forever != 0);
    }
    let end_seq = seg.seq.wrapping_add(seg.payload_len as u32);
    match MIRROR_IGNORE.get_ptr_mut(key) {
        // SAFETY: a map value the kernel keeps alive for the program's
        // run. A connection's segments come in order on one CPU; two CPUs
        // racing here at worst move it on by a step twice (bytes copied
        // that the agent then skips), never skip wanted bytes for long: the
        // agent replaces the entry whenever it skips again.
        Some(ignore) => unsafe { (*ignore).covers(end_seq) },
        None => false,
    }
}

/// Is the segment's connection inside the sampled share? `header` holds
/// its addresses. The hash takes (client, server) whichever way the
/// segment goes.
#[inline(always)]
fn sampled(config: &CaptureConfig, seg: &Segment, header: &RecordHeader, to_server: bool) -> bool {
    // Every connection (the default): no hash to compute.
    if config.sample_bp >= SAMPLE_ALL {
        return true;
    }
    let (src, dst) = (
        fold_address(&header.src_addr),
        fold_address(&header.dst_addr),
    );
    let hash = if to_server {
        connection_hash(src, dst, seg.src_port, seg.dst_port, config.sample_seed)
    } else {
        connection_hash(dst, src, seg.dst_port, seg.src_port, config.sample_seed)
    };
    is_sampled(hash, config.sample_bp)
}

/// Hands the header-only record in `scratch` (control, truncation) to the
/// ring, counted as one matched record, emitted or lost.
#[inline(always)]
pub fn output(counters: &mut Counters, scratch: &mut CaptureScratch, config: &CaptureConfig) {
    counters.add(Counter::RecordsMatched, 1);
    let flag = wakeup_flag(
        config,
        scratch,
        (RING_RECORD_OVERHEAD + RECORD_HEADER_SIZE) as u64,
    );
    match MIRROR_EVENTS.output::<RecordHeader>(&scratch.header, flag) {
        Ok(()) => counters.add(Counter::RecordsEmitted, 1),
        Err(_) => counters.add(Counter::RecordsLost, 1),
    }
}

/// The ring's own header in front of every record.
pub const RING_RECORD_OVERHEAD: usize = 8;

/// Wakes the agent when it sleeps (the first record after it said so), and
/// when the records about to be added (`adding` bytes) take the data waiting
/// in the ring across a multiple of `CaptureConfig::wakeup_bytes`;
/// otherwise the awake agent drains on its own timer. Once per crossing,
/// not once per record above the mark: a wakeup is an irq_work (a
/// self-IPI), and a lagging agent would have every record above the mark
/// pay one (docs/design-notes.md).
#[inline(always)]
pub fn wakeup_flag(config: &CaptureConfig, scratch: &mut CaptureScratch, adding: u64) -> u64 {
    if let Some(wake) = MIRROR_WAKE.get_ptr_mut(0) {
        // SAFETY: a one-entry array's value; CPUs racing here at worst
        // each wake the agent once.
        unsafe {
            if core::ptr::read_volatile(wake) == AGENT_ASLEEP {
                core::ptr::write_volatile(wake, AGENT_AWAKE);
                return BPF_RB_FORCE_WAKEUP as u64;
            }
        }
    }
    let step = config.wakeup_bytes as u64;
    if step == 0 {
        return BPF_RB_NO_WAKEUP as u64;
    }
    // The ring's positions are asked for once per 1/QUERY_FRACTION of a
    // step that this CPU adds, not per record: reading the consumer's
    // position is a cache miss whenever the agent has drained meanwhile
    // (its CPU wrote it). The crossing is judged over all the bytes added
    // since the last look, so a wakeup comes at most that much later.
    let since = scratch.unqueried as u64 + adding;
    if since < step / QUERY_FRACTION {
        scratch.unqueried = since as u32;
        return BPF_RB_NO_WAKEUP as u64;
    }
    scratch.unqueried = 0;
    let after = MIRROR_EVENTS.query(BPF_RB_AVAIL_DATA as u64) + adding;
    if after / step > after.saturating_sub(since) / step {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// See [`wakeup_flag`]: at 1 MiB steps (a 16 MiB ring), a look at the
/// ring every 64 KiB a CPU adds.
const QUERY_FRACTION: u64 = 16;
