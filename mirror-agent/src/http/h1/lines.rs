//! Where a head ends, across input slices: strictly (CRLF line ends only,
//! no obs-fold: what a request head must be for every server to read it
//! alike) or leniently (CRLF or bare LF, as httparse reads v1's responses),
//! and the start of a head held while its end has not come ([`PendingHead`],
//! the same for the request and the response framer).

/// A buffer that empties keeps its allocation up to this size; larger ones
/// are freed so idle connections hold (almost) nothing.
const KEEP_CAPACITY: usize = 512;

/// The head in progress of a framer: its start when it straddles slices,
/// where its scan for the end stands, whether its first bytes were checked
/// (a request line, a status line), and when it began.
#[derive(Debug, Default)]
pub(crate) struct PendingHead {
    /// Start of a head that straddles slices.
    pub bytes: Vec<u8>,
    /// [`scan_strict`] or [`scan_lenient`] state over `bytes`.
    pub scan: u8,
    /// The start of the head in `bytes` passed the framer's check.
    pub start_checked: bool,
    /// Timestamp of the segment with the first byte of the head.
    pub first_byte_ns: u64,
}

impl PendingHead {
    /// A head starts in a segment seen at `ts_ns`.
    pub fn begin(&mut self, ts_ns: u64) {
        self.first_byte_ns = ts_ns;
        self.scan = 0;
        self.start_checked = false;
    }

    /// Forgets the bytes held, keeping a small allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::new();
        }
    }
}

/// How many CR and LF bytes `data` starts with: the empty lines a
/// recipient skips between messages (RFC 9112 §2.2).
pub(crate) fn leading_line_ends(data: &[u8]) -> usize {
    data.iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// What [`scan_strict`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadScan {
    /// The head ends after this many bytes of the slice.
    End(usize),
    /// No end in the slice; the state carries over to the next.
    More,
    /// A bare LF or a bare CR at this many bytes into the slice.
    BareLineEnd(usize),
    /// A line that starts with whitespace (obs-fold, RFC 9112 §5.2, or
    /// whitespace before the first field, §2.2).
    ObsFold(usize),
}

/// Scans for the empty line that ends a head with CRLF line ends only.
/// `state` carries the search across slices (0 at the start of a head):
/// 0 inside a line, 1 after CR, 2 at a line start, 3 after an empty
/// line's CR.
pub(crate) fn scan_strict(state: &mut u8, data: &[u8]) -> HeadScan {
    let mut i = 0;
    while i < data.len() {
        match *state {
            1 => match data[i] {
                b'\n' => *state = 2,
                _ => return HeadScan::BareLineEnd(i + 1),
            },
            2 => match data[i] {
                b'\r' => *state = 3,
                b'\n' => return HeadScan::BareLineEnd(i + 1),
                b' ' | b'\t' => return HeadScan::ObsFold(i + 1),
                _ => *state = 0,
            },
            3 => match data[i] {
                b'\n' => return HeadScan::End(i + 1),
                _ => return HeadScan::BareLineEnd(i + 1),
            },
            _ => match memchr::memchr2(b'\r', b'\n', &data[i..]) {
                Some(p) if data[i + p] == b'\n' => return HeadScan::BareLineEnd(i + p + 1),
                Some(p) => {
                    i += p;
                    *state = 1;
                }
                None => return HeadScan::More,
            },
        }
        i += 1;
    }
    HeadScan::More
}

/// Carries the search for the empty line that ends a head across input
/// slices: `0` = in a line, `1` = just after `\n`, `2` = after `\n\r`.
/// Accepts CRLF and bare LF line ends, as httparse does.
pub(crate) fn scan_lenient(state: &mut u8, data: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        match *state {
            1 => match data.get(i) {
                Some(b'\n') => return Some(i + 1),
                Some(b'\r') => {
                    i += 1;
                    *state = 2;
                }
                Some(_) => *state = 0,
                None => return None,
            },
            2 => match data.get(i) {
                Some(b'\n') => return Some(i + 1),
                Some(_) => *state = 0,
                None => return None,
            },
            _ => match memchr::memchr(b'\n', data.get(i..).unwrap_or_default()) {
                Some(p) => {
                    i += p + 1;
                    *state = 1;
                }
                None => return None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `parts` one after the other with one state.
    fn strict(parts: &[&[u8]]) -> Vec<HeadScan> {
        let mut state = 0;
        parts.iter().map(|p| scan_strict(&mut state, p)).collect()
    }

    #[test]
    fn a_crlf_head_ends_at_its_empty_line_however_it_is_cut() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
        for cut in 0..head.len() {
            let (a, b) = head.split_at(cut);
            let found = strict(&[a, b]);
            let at = match found[..] {
                [HeadScan::End(n), _] => n,
                [HeadScan::More, HeadScan::End(n)] => cut + n,
                _ => panic!("cut at {cut}: {found:?}"),
            };
            assert_eq!(at, head.len() - 4, "cut at {cut}");
        }
    }

    #[test]
    fn bare_lf_and_bare_cr_are_found_where_they_are() {
        for (head, at) in [
            (&b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..], 15),
            (b"GET / HTTP/1.1\r\nHost: a\n\n", 24),
            (b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 22),
            (b"GET / HTTP/1.1\r\n\n", 17),
        ] {
            let found = strict(&[head]);
            assert_eq!(
                found,
                [HeadScan::BareLineEnd(at)],
                "{}",
                head.escape_ascii()
            );
        }
        assert_eq!(
            strict(&[b"GET / HTTP/1.1\r\nA: b\r\n\r", b"x"]),
            [HeadScan::More, HeadScan::BareLineEnd(1)]
        );
    }

    #[test]
    fn a_line_starting_with_whitespace_is_obs_fold() {
        assert_eq!(
            strict(&[b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"]),
            [HeadScan::ObsFold(23)]
        );
        assert_eq!(
            strict(&[b"GET / HTTP/1.1\r\n", b"\tA: b\r\n\r\n"]),
            [HeadScan::More, HeadScan::ObsFold(1)]
        );
    }

    #[test]
    fn the_lenient_scan_takes_bare_lf_across_slices() {
        let mut state = 0;
        assert_eq!(scan_lenient(&mut state, b"HTTP/1.1 200 OK\r\nA: b\r"), None);
        assert_eq!(scan_lenient(&mut state, b"\n"), None);
        assert_eq!(scan_lenient(&mut state, b"\r"), None);
        assert_eq!(scan_lenient(&mut state, b"\nrest"), Some(1));
        let mut state = 0;
        assert_eq!(scan_lenient(&mut state, b"HTTP/1.0 200 OK\n\nX"), Some(17));
    }
}
