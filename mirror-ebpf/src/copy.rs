//! Payload into the ring. A segment of one record (at most CHUNK_SIZE
//! bytes: every segment without GRO/TSO) is copied by the classifier itself
//! ([`copy_one`]); a larger one goes to the copier, reached by tail call
//! with a copy job in the per-CPU scratch, which writes it in chunks of
//! CHUNK_SIZE, then a truncation record for whatever exceeds CHUNK_SIZE *
//! MAX_CHUNKS.

#[cfg(feature = "broken-bounds-check")]
use aya_ebpf::helpers::bpf_skb_load_bytes;
use aya_ebpf::{EbpfContext as _, bindings::BPF_RB_NO_WAKEUP, programs::TcContext};
use mirror_common::{
    CHUNK_SIZE, CaptureConfig, CaptureScratch, Counter, Counters, MAX_CHUNKS, RECORD_HEADER_SIZE,
    RecordHeader, RecordKind, TCP_PSH,
};

use crate::capture::{
    MIRROR_CONFIG, MIRROR_EVENTS, MIRROR_SCRATCH, RING_RECORD_OVERHEAD, counters, output,
    wakeup_flag,
};

#[inline(always)]
pub fn copy_payload(ctx: &TcContext) {
    let Some(buf) = MIRROR_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value, and TC programs do not nest on one CPU.
    let buf = unsafe { &mut *buf };
    let Some(counters) = counters(buf.header.direction) else {
        return;
    };
    let Some(config) = MIRROR_CONFIG.get(0) else {
        return;
    };
    let payload_offset = buf.copy_offset as usize;
    let payload_len = buf.payload_len as usize;
    let first_seq = buf.first_seq;
    let copy_len = payload_len.min(CHUNK_SIZE * MAX_CHUNKS);
    let chunks = copy_len.div_ceil(CHUNK_SIZE);
    counters.add(Counter::RecordsMatched, chunks as u64);
    #[cfg(mirror_stop = "handoff")]
    return;

    buf.header.kind = RecordKind::Data as u8;
    let wakeup = wakeup_flag(
        config,
        buf,
        (copy_len + chunks * (RING_RECORD_OVERHEAD + RECORD_HEADER_SIZE)) as u64,
    );
    // Every chunk but the last with a constant length, then the last in
    // the smallest size class that holds it. Choosing a class (or anything
    // else) inside the loop made the verifier's walk grow with every
    // iteration. PSH marks the end of a client's write: only the record
    // that ends the segment keeps it, so the agent can tell from the records
    // alone where writes begin (where a request may start).
    let leading = chunks.saturating_sub(1);
    let last_len = copy_len - leading * CHUNK_SIZE;
    let flags = buf.header.tcp_flags;
    buf.header.tcp_flags = flags & !TCP_PSH;
    let mut copied = 0;
    let mut failed = false;
    // The segment's wakeup (if any) goes with its first record only: each
    // submit with BPF_RB_FORCE_WAKEUP queues an irq_work, a self-IPI that
    // a VM pays as an exit, and the agent woken by the first record drains
    // the others as they come. Passed with every chunk, a 64 KiB GRO
    // segment crossing the mark raised up to 16 of them.
    let mut wakeup = wakeup;
    for i in 0..MAX_CHUNKS {
        if i >= leading {
            break;
        }
        let offset = i * CHUNK_SIZE;
        buf.header.seq = first_seq.wrapping_add(offset as u32);
        buf.header.len = CHUNK_SIZE as u32;
        // On the first failure (ring full, copy error) this chunk and every
        // later one of the segment are lost: stopping there, rather than
        // trying each, also keeps the verifier's walk of the loop linear.
        if !copy_into::<{ RECORD_HEADER_SIZE + CHUNK_SIZE }>(
            ctx,
            &buf.header,
            payload_offset + offset,
            CHUNK_SIZE,
            wakeup,
        ) {
            failed = true;
            break;
        }
        wakeup = BPF_RB_NO_WAKEUP as u64;
        copied += 1;
    }
    if !failed && last_len > 0 {
        let offset = leading * CHUNK_SIZE;
        buf.header.seq = first_seq.wrapping_add(offset as u32);
        buf.header.len = last_len as u32;
        if copy_len == payload_len {
            buf.header.tcp_flags = flags;
        }
        if copy_tail(ctx, &buf.header, payload_offset + offset, last_len, wakeup) {
            copied += 1;
        }
    }
    counters.add(Counter::RecordsEmitted, copied as u64);
    counters.add(Counter::RecordsLost, (chunks - copied) as u64);
    let copied_bytes = if copied == chunks {
        copy_len
    } else {
        copied.min(leading) * CHUNK_SIZE
    };
    counters.add(Counter::PayloadBytes, copied_bytes as u64);

    if copy_len < payload_len {
        let missing = payload_len - copy_len;
        counters.add(Counter::TruncatedSegments, 1);
        counters.add(Counter::TruncatedBytes, missing as u64);
        buf.header.kind = RecordKind::Truncated as u8;
        // The truncation ends the segment: it carries the segment's PSH.
        buf.header.tcp_flags = flags;
        buf.header.seq = first_seq.wrapping_add(copy_len as u32);
        buf.header.len = missing as u32;
        output(counters, buf, config);
    }
}

/// The whole payload of a segment of at most CHUNK_SIZE bytes as one data
/// record, header from `scratch` (kind, seq and flags set by the caller),
/// with its counters: one record matched, emitted or lost.
#[inline(always)]
pub fn copy_one(
    ctx: &TcContext,
    counters: &mut Counters,
    scratch: &mut CaptureScratch,
    config: &CaptureConfig,
    offset: usize,
    len: usize,
) {
    counters.add(Counter::RecordsMatched, 1);
    let wakeup = wakeup_flag(
        config,
        scratch,
        (len + RING_RECORD_OVERHEAD + RECORD_HEADER_SIZE) as u64,
    );
    scratch.header.len = len as u32;
    if copy_tail(ctx, &scratch.header, offset, len, wakeup) {
        counters.add(Counter::RecordsEmitted, 1);
        counters.add(Counter::PayloadBytes, len as u64);
    } else {
        counters.add(Counter::RecordsLost, 1);
    }
}

/// Copies the last chunk (up to CHUNK_SIZE bytes) into a record of the
/// smallest size class that holds it: `bpf_ringbuf_reserve` only takes a
/// constant size. The
/// header's `len` says how many payload bytes are real; the agent reads only
/// those.
#[inline(always)]
fn copy_tail(
    ctx: &TcContext,
    header: &RecordHeader,
    offset: usize,
    len: usize,
    wakeup: u64,
) -> bool {
    if len <= SMALL_CLASS {
        copy_into::<{ RECORD_HEADER_SIZE + SMALL_CLASS }>(ctx, header, offset, len, wakeup)
    } else if len <= MTU_CLASS {
        copy_into::<{ RECORD_HEADER_SIZE + MTU_CLASS }>(ctx, header, offset, len, wakeup)
    } else {
        copy_into::<{ RECORD_HEADER_SIZE + CHUNK_SIZE }>(ctx, header, offset, len, wakeup)
    }
}

/// Payload room of the small class: requests without a body.
const SMALL_CLASS: usize = 512;
/// Payload room of the MTU class: a full 1500-byte-MTU segment (1448 bytes
/// with timestamps) and then some.
const MTU_CLASS: usize = 1536;

/// Reserves a record of `SIZE` bytes in the ring and copies `len` payload
/// bytes at `offset` straight into it: one copy, from the packet to the ring.
#[inline(always)]
fn copy_into<const SIZE: usize>(
    ctx: &TcContext,
    header: &RecordHeader,
    offset: usize,
    len: usize,
    wakeup: u64,
) -> bool {
    let Some(mut record) = MIRROR_EVENTS.reserve_bytes(SIZE, 0) else {
        return false;
    };
    #[cfg(mirror_stop = "reserve")]
    {
        let _ = (ctx, header, offset, len);
        record.submit(wakeup);
        return true;
    }
    // SAFETY: the reservation holds SIZE >= RECORD_HEADER_SIZE bytes, 8-byte
    // aligned by the kernel; `load_payload` copies at most SIZE -
    // RECORD_HEADER_SIZE bytes after the header.
    let loaded = unsafe {
        let base = record.as_mut_ptr();
        // An aligned write: eight 8-byte stores. `write_unaligned` made
        // LLVM copy the 64-byte header byte by byte (128 instructions).
        base.cast::<RecordHeader>().write(*header);
        load_payload::<SIZE>(ctx, offset as u32, base.add(RECORD_HEADER_SIZE), len as u64)
    };
    if loaded < 0 {
        record.discard(BPF_RB_NO_WAKEUP as u64);
        return false;
    }
    record.submit(wakeup);
    true
}

/// `bpf_skb_load_bytes(ctx, offset, to, len)` with `len` proven to be in
/// `[1, SIZE - RECORD_HEADER_SIZE]` in the very register the helper reads,
/// right before the call; -EINVAL (nothing copied) when it is not.
///
/// Why assembly: the verifier must see the range check and the call on the
/// same register. In Rust, LLVM spilled the length to the stack before its
/// check and reloaded the unchecked copy for the call; 6.6+ verifiers carry
/// the check over to the spilled slot, Debian 12's 6.1 does not ("invalid
/// access to memory ... size=0 / R3 min value is outside of the allowed
/// memory range"). Nothing between the check and the call leaves room for
/// that here.
///
/// # Safety
/// `to` must point into a ring reservation of `SIZE` bytes at offset
/// `RECORD_HEADER_SIZE`, and `ctx` be the program's context.
#[inline(always)]
unsafe fn load_payload<const SIZE: usize>(
    ctx: &TcContext,
    offset: u32,
    to: *mut u8,
    len: u64,
) -> i64 {
    #[cfg(not(feature = "broken-bounds-check"))]
    {
        let ret: i64;
        // SAFETY: the caller's contract, and the range check below.
        unsafe {
            core::arch::asm!(
                "if r4 s< 1 goto +3",
                "if r4 > {room} goto +2",
                "call {helper}",
                "goto +1",
                "r0 = -22",
                room = const SIZE - RECORD_HEADER_SIZE,
                helper = const BPF_FUNC_SKB_LOAD_BYTES,
                inout("r1") ctx.as_ptr() => _,
                inout("r2") offset as u64 => _,
                inout("r3") to => _,
                inout("r4") len => _,
                out("r5") _,
                out("r0") ret,
            );
        }
        ret
    }
    // Test-only (`cargo xtask vm-test --broken-bounds-check`): the length
    // reaches the helper unchecked, which every verifier must reject; it
    // proves that the kernel matrix can fail.
    #[cfg(feature = "broken-bounds-check")]
    {
        let _ = SIZE;
        // SAFETY: none: this build exists to be rejected by the verifier.
        unsafe { bpf_skb_load_bytes(ctx.as_ptr(), offset, to.cast(), len as u32) }
    }
}

/// The helper's number in the kernel's UAPI (`BPF_FUNC_skb_load_bytes`).
const BPF_FUNC_SKB_LOAD_BYTES: u32 = 26;
