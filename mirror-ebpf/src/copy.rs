//! The copier: reached by tail call with a copy job in the per-CPU scratch,
//! it writes the segment's payload to the ring in chunks of CHUNK_SIZE, then
//! a truncation record for whatever exceeds CHUNK_SIZE * MAX_CHUNKS.

use aya_ebpf::{EbpfContext as _, helpers::bpf_skb_load_bytes, programs::TcContext};
use mirror_common::{CHUNK_SIZE, CaptureConfig, Counter, MAX_CHUNKS, RecordBuffer, RecordKind};

use crate::capture::{MIRROR_CONFIG, MIRROR_SCRATCH, counters, output, ring_output};

#[inline(always)]
pub fn copy_payload(ctx: &TcContext) {
    let Some(counters) = counters() else {
        return;
    };
    let Some(config) = MIRROR_CONFIG.get(0) else {
        return;
    };
    let Some(buf) = MIRROR_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value, and TC programs do not nest on one CPU.
    let buf = unsafe { &mut *buf };
    let payload_offset = buf.copy_offset as usize;
    let payload_len = buf.payload_len as usize;
    let first_seq = buf.first_seq;
    let copy_len = payload_len.min(CHUNK_SIZE * MAX_CHUNKS);
    let chunks = copy_len.div_ceil(CHUNK_SIZE);
    counters.add(Counter::RecordsMatched, chunks as u64);

    buf.header.kind = RecordKind::Data as u8;
    for i in 0..MAX_CHUNKS {
        let offset = i * CHUNK_SIZE;
        if offset >= copy_len {
            break;
        }
        let remaining = copy_len - offset;
        let len = if remaining > CHUNK_SIZE {
            CHUNK_SIZE
        } else {
            remaining
        };
        buf.header.seq = first_seq.wrapping_add(offset as u32);
        buf.header.len = len as u32;
        // On the first failure (ring full, copy error) this chunk and every
        // later one of the segment are lost: stopping there, rather than
        // trying each, also keeps the verifier's walk of the loop linear.
        if !copy_chunk(ctx, buf, config, payload_offset + offset, len) {
            counters.add(Counter::RecordsLost, (chunks - i) as u64);
            break;
        }
        counters.add(Counter::RecordsEmitted, 1);
        counters.add(Counter::PayloadBytes, len as u64);
    }

    if copy_len < payload_len {
        let missing = payload_len - copy_len;
        counters.add(Counter::TruncatedSegments, 1);
        counters.add(Counter::TruncatedBytes, missing as u64);
        buf.header.kind = RecordKind::Truncated as u8;
        buf.header.seq = first_seq.wrapping_add(copy_len as u32);
        buf.header.len = missing as u32;
        output(counters, buf, config);
    }
}

/// Copies `len` payload bytes at `offset` into `buf` and hands the record to
/// the ring.
#[inline(always)]
fn copy_chunk(
    ctx: &TcContext,
    buf: &mut RecordBuffer,
    config: &CaptureConfig,
    offset: usize,
    len: usize,
) -> bool {
    // The verifier needs the length proven in [1, CHUNK_SIZE] at the call;
    // LLVM would drop an ordinary comparison (TOOLCHAIN.md).
    if !aya_ebpf::check_bounds_signed(len as i64, 1, CHUNK_SIZE as i64) {
        return false;
    }
    // SAFETY: `payload` has CHUNK_SIZE bytes and len <= CHUNK_SIZE.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            offset as u32,
            buf.payload.as_mut_ptr().cast(),
            len as u32,
        )
    };
    loaded >= 0 && ring_output(buf, len, config)
}
