//! A response as the comparison sees it: status, header fields, and the
//! body after its transfer framing is undone (content coding kept), up to
//! a cap, with the length and a hash of the whole body.
//!
//! Both sides fill one: the response framer (v1's answers, from the
//! capture) and the shadow workers (each target's answer). The cap bounds
//! the memory an answer holds; the hash, computed while the bytes stream
//! past, still tells two bodies over the cap apart.

use bytes::Bytes;
use std::hash::Hasher;

use twox_hash::XxHash3_64;

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Status of the final response (1xx interim responses skipped).
    pub status: u16,
    /// Header fields in the order they came, names as sent.
    pub headers: Vec<(String, Bytes)>,
    pub body: Body,
}

impl Answer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// Bytes this answer holds (for the comparison's memory budget).
    pub fn held_bytes(&self) -> usize {
        self.body.bytes.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 16)
                .sum::<usize>()
    }
}

/// A body, dechunked, content coding kept.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Body {
    /// The first bytes of the body, at most the collector's cap.
    pub bytes: Bytes,
    /// Length of the whole body.
    pub len: u64,
    /// XXH3-64 of the whole body.
    pub hash: u64,
}

impl Body {
    /// The whole body is in [`Body::bytes`].
    pub fn complete(&self) -> bool {
        self.bytes.len() as u64 == self.len
    }
}

/// Builds a [`Body`] from the pieces of a body as they arrive.
pub struct BodyCollector {
    cap: usize,
    bytes: Vec<u8>,
    len: u64,
    hasher: XxHash3_64,
}

impl BodyCollector {
    /// Keeps at most `cap` bytes; hashes everything.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            bytes: Vec::new(),
            len: 0,
            hasher: XxHash3_64::new(),
        }
    }

    pub fn push(&mut self, piece: &[u8]) {
        self.len += piece.len() as u64;
        self.hasher.write(piece);
        let room = self.cap.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&piece[..piece.len().min(room)]);
    }

    pub fn finish(self) -> Body {
        Body {
            bytes: Bytes::from(self.bytes),
            len: self.len,
            hash: self.hasher.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_over_the_cap_keeps_its_start_its_length_and_the_hash_of_all_of_it() {
        let mut small = BodyCollector::new(4);
        small.push(b"hello");
        small.push(b" world");
        let small = small.finish();
        let mut whole = BodyCollector::new(1 << 20);
        whole.push(b"hello world");
        let whole = whole.finish();
        assert_eq!(&small.bytes[..], b"hell");
        assert_eq!((small.len, whole.len), (11, 11));
        assert!(!small.complete() && whole.complete());
        assert_eq!(small.hash, whole.hash, "the hash covers the whole body");
    }
}
