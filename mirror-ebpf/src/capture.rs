//! Service-port matching, connection sampling and the copy of the payload
//! into the ring, with a counter for every outcome.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    programs::TcContext,
};
use mirror_common::{
    CHUNK_SIZE, COUNTER_COUNT, CaptureConfig, Counter, Counters, MAX_CHUNKS, MAX_PORTS,
    RECORD_HEADER_SIZE, RecordBuffer, RecordHeader, RecordKind, TCP_FIN, TCP_RST, TCP_SYN,
    connection_hash, fold_address, is_sampled,
};

use crate::parse::{Segment, parse};

/// Records to the agent. The agent sets the real size at load time
/// (`--ring-size`); this default only has to be a valid one.
#[map]
static MIRROR_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// One [`CaptureConfig`], written by the agent before it attaches.
#[map]
static MIRROR_CONFIG: Array<CaptureConfig> = Array::with_max_entries(1, 0);

/// One [`Counters`] per CPU.
#[map]
static MIRROR_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU space to assemble a record (header + one chunk) before output.
#[map]
static MIRROR_SCRATCH: PerCpuArray<RecordBuffer> = PerCpuArray::with_max_entries(1, 0);

const _: () = assert!(COUNTER_COUNT > Counter::TruncatedBytes as usize);

#[inline(always)]
pub fn on_packet(ctx: &TcContext) {
    let Some(counters) = MIRROR_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value, and TC programs do not nest on one CPU.
    let counters = unsafe { &mut *counters };
    counters.add(Counter::Seen, 1);
    let Some(config) = MIRROR_CONFIG.get(0) else {
        return;
    };
    let outcome = match parse(ctx) {
        Ok(seg) => classify(config, &seg).map(|()| seg),
        Err(counter) => Err(counter),
    };
    match outcome {
        Ok(seg) => {
            counters.add(Counter::Matched, 1);
            emit(ctx, counters, &seg);
        }
        Err(counter) => counters.add(counter, 1),
    }
}

/// Is the segment for a service port, on a sampled connection?
#[inline(always)]
fn classify(config: &CaptureConfig, seg: &Segment) -> Result<(), Counter> {
    let mut matched = false;
    for i in 0..MAX_PORTS {
        if i as u32 >= config.port_count {
            break;
        }
        if config.ports[i] == seg.dst_port {
            matched = true;
            break;
        }
    }
    if !matched {
        return Err(Counter::PortNotMatched);
    }
    let hash = connection_hash(
        fold_address(&seg.src_addr),
        fold_address(&seg.dst_addr),
        seg.src_port,
        seg.dst_port,
        config.sample_seed,
    );
    if !is_sampled(hash, config.sample_bp) {
        return Err(Counter::NotSampled);
    }
    Ok(())
}

/// Writes the segment's control record (SYN/FIN/RST), then its payload in
/// chunks, then a truncation record for whatever did not fit.
#[inline(always)]
fn emit(ctx: &TcContext, counters: &mut Counters, seg: &Segment) {
    let Some(buf) = MIRROR_SCRATCH.get_ptr_mut(0) else {
        counters.add(Counter::RecordsMatched, 1);
        counters.add(Counter::RecordsLost, 1);
        return;
    };
    // SAFETY: per-CPU value, and TC programs do not nest on one CPU.
    let buf = unsafe { &mut *buf };
    buf.header = RecordHeader {
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        src_addr: seg.src_addr,
        dst_addr: seg.dst_addr,
        seq: seg.seq,
        len: seg.payload_len as u32,
        // SAFETY: reading a field of the context the kernel handed us.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        src_port: seg.src_port,
        dst_port: seg.dst_port,
        family: seg.family,
        tcp_flags: seg.tcp_flags,
        kind: RecordKind::Control as u8,
        _pad: [0; 5],
    };

    if seg.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        output(counters, buf, 0);
    }
    if seg.payload_len == 0 {
        return;
    }

    // A SYN's sequence number is the ISN; its data (TCP Fast Open) starts
    // one later.
    let first_seq = seg.seq.wrapping_add((seg.tcp_flags & TCP_SYN != 0) as u32);
    let copy_len = if seg.payload_len > CHUNK_SIZE * MAX_CHUNKS {
        CHUNK_SIZE * MAX_CHUNKS
    } else {
        seg.payload_len
    };
    buf.header.kind = RecordKind::Data as u8;
    for i in 0..MAX_CHUNKS {
        let offset = i * CHUNK_SIZE;
        if offset >= copy_len {
            break;
        }
        let remaining = copy_len - offset;
        let len = if remaining > CHUNK_SIZE { CHUNK_SIZE } else { remaining };
        buf.header.seq = first_seq.wrapping_add(offset as u32);
        buf.header.len = len as u32;
        // The verifier needs the length proven in [1, CHUNK_SIZE] at the
        // call; LLVM would drop an ordinary comparison (TOOLCHAIN.md).
        if !aya_ebpf::check_bounds_signed(len as i64, 1, CHUNK_SIZE as i64) {
            counters.add(Counter::RecordsMatched, 1);
            counters.add(Counter::RecordsLost, 1);
            continue;
        }
        // SAFETY: `payload` has CHUNK_SIZE bytes and len <= CHUNK_SIZE.
        let loaded = unsafe {
            bpf_skb_load_bytes(
                ctx.as_ptr(),
                (seg.payload_offset + offset) as u32,
                buf.payload.as_mut_ptr().cast(),
                len as u32,
            )
        };
        if loaded < 0 {
            counters.add(Counter::RecordsMatched, 1);
            counters.add(Counter::RecordsLost, 1);
            continue;
        }
        if output(counters, buf, len) {
            counters.add(Counter::PayloadBytes, len as u64);
        }
    }

    if copy_len < seg.payload_len {
        let missing = seg.payload_len - copy_len;
        counters.add(Counter::TruncatedSegments, 1);
        counters.add(Counter::TruncatedBytes, missing as u64);
        buf.header.kind = RecordKind::Truncated as u8;
        buf.header.seq = first_seq.wrapping_add(copy_len as u32);
        buf.header.len = missing as u32;
        output(counters, buf, 0);
    }
}

/// Hands the header plus `payload_len` bytes of `buf` to the ring. Every call
/// is one matched record, either emitted or lost.
#[inline(always)]
fn output(counters: &mut Counters, buf: &RecordBuffer, payload_len: usize) -> bool {
    counters.add(Counter::RecordsMatched, 1);
    let size = RECORD_HEADER_SIZE + payload_len;
    if !aya_ebpf::check_bounds_signed(size as i64, RECORD_HEADER_SIZE as i64, (RECORD_HEADER_SIZE + CHUNK_SIZE) as i64) {
        counters.add(Counter::RecordsLost, 1);
        return false;
    }
    // SAFETY: `size` is within the RecordBuffer, proven just above.
    let bytes = unsafe { core::slice::from_raw_parts((buf as *const RecordBuffer).cast::<u8>(), size) };
    match MIRROR_EVENTS.output::<[u8]>(bytes, 0) {
        Ok(()) => {
            counters.add(Counter::RecordsEmitted, 1);
            true
        }
        Err(_) => {
            counters.add(Counter::RecordsLost, 1);
            false
        }
    }
}
