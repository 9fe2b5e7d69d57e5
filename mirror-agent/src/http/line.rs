//! Recognising request lines without a full parse: the quick check at the
//! start of every head, and the search that resynchronises a connection
//! after a gap, garbage or a join in the middle of it.
//!
//! Resynchronisation looks for `METHOD SP target SP HTTP/1.x CRLF` anywhere
//! in the stream, not only after a line end, because a body need not end
//! with one. To keep false matches (inside a body, or a request whose start
//! was lost) rare it accepts only the methods of RFC 9110 plus PATCH: none
//! of them is a suffix of another, so a gap that ends inside a method never
//! yields a shortened one ("ET /" is not taken for "GET /"). A connection
//! that uses other methods is found again at its next standard request.

/// Methods the resynchronising search accepts.
const KNOWN_METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// Longest method the head check accepts (httparse has no limit; we want
/// garbage detected early).
const MAX_METHOD_LEN: usize = 32;

/// The verdict on bytes that should start with a request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineCheck {
    /// A complete request line of this many bytes (line end included).
    Valid(usize),
    /// Everything so far fits; more bytes are needed.
    NeedMore,
    Invalid,
}

/// Where the resynchronising search stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// A complete request line starts here.
    Line(usize),
    /// A request line may start here; the input ends before it does.
    Partial(usize),
    /// No request line starts in the input.
    None,
}

const fn tchar_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
}

static TCHAR: [bool; 256] = tchar_table();

/// First bytes of the known methods.
fn may_start_method(b: u8) -> bool {
    matches!(b, b'G' | b'H' | b'P' | b'D' | b'C' | b'O' | b'T')
}

fn is_target_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f
}

/// Checks whether `buf` starts with a request line of at most `max_len`
/// bytes. With `known_only` the method must be one of [`KNOWN_METHODS`].
///
/// The verdict depends only on the first `max_len` bytes, so it is the same
/// however the stream was cut: a line that needs more is `Invalid` once
/// `buf` holds `max_len` bytes.
pub(crate) fn check_request_line(buf: &[u8], max_len: usize, known_only: bool) -> LineCheck {
    match check_line(buf, max_len, known_only) {
        LineCheck::NeedMore if buf.len() >= max_len => LineCheck::Invalid,
        LineCheck::Valid(n) if n > max_len => LineCheck::Invalid,
        verdict => verdict,
    }
}

fn check_line(buf: &[u8], max_len: usize, known_only: bool) -> LineCheck {
    let mut i = 0;
    while i < buf.len() && TCHAR[buf[i] as usize] {
        i += 1;
        if i > MAX_METHOD_LEN {
            return LineCheck::Invalid;
        }
    }
    let method = &buf[..i];
    if i == buf.len() {
        if known_only && !KNOWN_METHODS.iter().any(|m| m.starts_with(method)) {
            return LineCheck::Invalid;
        }
        return LineCheck::NeedMore;
    }
    if i == 0 || buf[i] != b' ' {
        return LineCheck::Invalid;
    }
    if known_only && !KNOWN_METHODS.contains(&method) {
        return LineCheck::Invalid;
    }
    i += 1;
    let target_start = i;
    while i < buf.len() && is_target_byte(buf[i]) {
        i += 1;
    }
    if i > max_len {
        return LineCheck::Invalid;
    }
    if i == buf.len() {
        return LineCheck::NeedMore;
    }
    if i == target_start || buf[i] != b' ' {
        return LineCheck::Invalid;
    }
    i += 1;
    for &expected in b"HTTP/1." {
        match buf.get(i) {
            None => return LineCheck::NeedMore,
            Some(&b) if b == expected => i += 1,
            Some(_) => return LineCheck::Invalid,
        }
    }
    match buf.get(i) {
        None => return LineCheck::NeedMore,
        Some(b'0' | b'1') => i += 1,
        Some(_) => return LineCheck::Invalid,
    }
    if buf.get(i) == Some(&b'\r') {
        i += 1;
    }
    let verdict = match buf.get(i) {
        None => LineCheck::NeedMore,
        Some(b'\n') => LineCheck::Valid(i + 1),
        Some(_) => LineCheck::Invalid,
    };
    if i + 1 > max_len {
        return LineCheck::Invalid;
    }
    verdict
}

/// Finds the first position in `buf` where a request line with a known
/// method starts (or may start, if the input ends first).
///
/// A `Partial` position is the last candidate: any complete line after it
/// would need a line end that the candidate would have reached first.
pub(crate) fn find_request_line(buf: &[u8], max_len: usize) -> Found {
    for (pos, &b) in buf.iter().enumerate() {
        if !may_start_method(b) {
            continue;
        }
        match check_request_line(&buf[pos..], max_len, true) {
            LineCheck::Valid(_) => return Found::Line(pos),
            LineCheck::NeedMore => return Found::Partial(pos),
            LineCheck::Invalid => {}
        }
    }
    Found::None
}

/// Carries the search for the empty line that ends a head across input
/// slices: `0` = in a line, `1` = just after `\n`, `2` = after `\n\r`.
/// Accepts CRLF and bare LF line ends, as httparse does.
pub(crate) fn scan_head_end(state: &mut u8, data: &[u8]) -> Option<usize> {
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

    #[test]
    fn request_lines_are_recognised() {
        let max = 1000;
        assert_eq!(
            check_request_line(b"GET / HTTP/1.1\r\n", max, true),
            LineCheck::Valid(16)
        );
        assert_eq!(
            check_request_line(b"GET / HTTP/1.0\n", max, true),
            LineCheck::Valid(15)
        );
        assert_eq!(check_request_line(b"GE", max, true), LineCheck::NeedMore);
        assert_eq!(
            check_request_line(b"GET /x HT", max, true),
            LineCheck::NeedMore
        );
        assert_eq!(check_request_line(b"XE", max, true), LineCheck::Invalid);
        assert_eq!(
            check_request_line(b"ET / HTTP/1.1\r\n", max, true),
            LineCheck::Invalid
        );
        assert_eq!(
            check_request_line(b"PURGE / HTTP/1.1\r\n", max, false),
            LineCheck::Valid(18)
        );
        assert_eq!(
            check_request_line(b"PURGE / HTTP/1.1\r\n", max, true),
            LineCheck::Invalid
        );
        assert_eq!(
            check_request_line(b"GET / HTTP/2.0\r\n", max, true),
            LineCheck::Invalid
        );
        assert_eq!(
            check_request_line(b"GET  / HTTP/1.1\r\n", max, true),
            LineCheck::Invalid
        );
        assert_eq!(
            check_request_line(b"\x16\x03\x01", max, false),
            LineCheck::Invalid
        );
        assert_eq!(
            check_request_line(b"GET /aaaaaaaa", 8, true),
            LineCheck::Invalid
        );
    }

    #[test]
    fn search_finds_a_line_glued_to_a_body() {
        assert_eq!(
            find_request_line(b"xyzPOST GET /a HTTP/1.1\r\n", 100),
            Found::Line(8)
        );
        assert_eq!(find_request_line(b"body bytes PO", 100), Found::Partial(11));
        assert_eq!(find_request_line(b"body bytes", 100), Found::None);
    }

    #[test]
    fn head_end_is_found_across_slices() {
        let mut state = 0;
        assert_eq!(scan_head_end(&mut state, b"GET / HTTP/1.1\r\nA: b\r"), None);
        assert_eq!(scan_head_end(&mut state, b"\n"), None);
        assert_eq!(scan_head_end(&mut state, b"\r"), None);
        assert_eq!(scan_head_end(&mut state, b"\nrest"), Some(1));
        let mut state = 0;
        assert_eq!(scan_head_end(&mut state, b"GET / HTTP/1.0\n\nX"), Some(16));
    }
}
