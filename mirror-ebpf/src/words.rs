//! Addresses and connection keys moved as 8-byte words.
//!
//! BPF's LLVM backend expands a constant-size `memcpy` inline but not
//! `memset` or `memmove`: `header.src_addr = [0; 16]`, a `copy_from_slice`
//! into an address or a `ConnKey` built from a header's fields became calls
//! to compiler_builtins' byte loops (four instructions a byte, about 300 per
//! matched segment). The fields below sit at 8-byte aligned offsets of
//! 8-byte aligned values, so each is two word stores or loads instead.

use core::mem::{offset_of, size_of};

use mirror_common::{ConnKey, RecordHeader};

const _: () = {
    assert!(offset_of!(RecordHeader, src_addr) % 8 == 0);
    assert!(offset_of!(RecordHeader, dst_addr) % 8 == 0);
    assert!(align_of::<RecordHeader>() == 8);
    assert!(size_of::<ConnKey>() == 40);
    assert!(offset_of!(ConnKey, src_addr) == 0);
    assert!(offset_of!(ConnKey, dst_addr) == 16);
    assert!(offset_of!(ConnKey, src_port) == 32);
    assert!(offset_of!(ConnKey, dst_port) == 34);
    assert!(offset_of!(ConnKey, family) == 36);
};

/// Which address of a [`RecordHeader`].
#[derive(Clone, Copy)]
pub enum Addr {
    Src,
    Dst,
}

#[inline(always)]
fn field(header: &RecordHeader, addr: Addr) -> *const u64 {
    match addr {
        Addr::Src => header.src_addr.as_ptr().cast(),
        Addr::Dst => header.dst_addr.as_ptr().cast(),
    }
}

/// The address as two words, in memory order.
#[inline(always)]
pub fn load(header: &RecordHeader, addr: Addr) -> [u64; 2] {
    let p = field(header, addr);
    // SAFETY: 16 bytes at an 8-byte aligned offset of an 8-byte aligned
    // struct (checked above); every bit pattern is a u64.
    unsafe { [p.read(), p.add(1).read()] }
}

/// Stores the address given as two words in memory order.
#[inline(always)]
pub fn store(header: &mut RecordHeader, addr: Addr, words: [u64; 2]) {
    let p = field(header, addr).cast_mut();
    // SAFETY: as in `load`, through the exclusive reference.
    unsafe {
        p.write(words[0]);
        p.add(1).write(words[1]);
    }
}

/// An IPv4 address as a record carries it: in the first 4 bytes, the rest
/// zero.
#[inline(always)]
pub fn ipv4(bytes: [u8; 4]) -> [u64; 2] {
    let [a, b, c, d] = bytes;
    [u64::from_ne_bytes([a, b, c, d, 0, 0, 0, 0]), 0]
}

/// A [`ConnKey`] in 8-byte aligned storage, built word by word.
#[repr(C, align(8))]
pub struct Key([u64; 5]);

impl Key {
    /// The key of the connection `client → server`, `family` as in
    /// [`RecordHeader::family`]; the padding zero.
    #[inline(always)]
    pub fn new(client: [u64; 2], server: [u64; 2], ports: [u16; 2], family: u8) -> Self {
        let [c0, c1] = ports[0].to_ne_bytes();
        let [s0, s1] = ports[1].to_ne_bytes();
        Key([
            client[0],
            client[1],
            server[0],
            server[1],
            u64::from_ne_bytes([c0, c1, s0, s1, family, 0, 0, 0]),
        ])
    }

    #[inline(always)]
    pub fn get(&self) -> &ConnKey {
        // SAFETY: same size (checked above), more aligned, and every bit
        // pattern is a valid ConnKey (integers and byte arrays).
        unsafe { &*(self as *const Key).cast::<ConnKey>() }
    }
}
