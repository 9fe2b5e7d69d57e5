//! Recognising request lines without a full parse (the quick check at
//! the start of every head, so that garbage is found early) and the end of
//! a head across slices.

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

fn is_target_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f
}

/// Checks whether `buf` starts with a request line of at most `max_len`
/// bytes.
///
/// The verdict depends only on the first `max_len` bytes, so it is the same
/// however the stream was cut: a line that needs more is `Invalid` once
/// `buf` holds `max_len` bytes.
pub(crate) fn check_request_line(buf: &[u8], max_len: usize) -> LineCheck {
    match check_line(buf, max_len) {
        LineCheck::NeedMore if buf.len() >= max_len => LineCheck::Invalid,
        LineCheck::Valid(n) if n > max_len => LineCheck::Invalid,
        verdict => verdict,
    }
}

fn check_line(buf: &[u8], max_len: usize) -> LineCheck {
    let mut i = 0;
    while i < buf.len() && TCHAR[buf[i] as usize] {
        i += 1;
        if i > MAX_METHOD_LEN {
            return LineCheck::Invalid;
        }
    }
    if i == buf.len() {
        return LineCheck::NeedMore;
    }
    if i == 0 || buf[i] != b' ' {
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
            check_request_line(b"GET / HTTP/1.1\r\n", max),
            LineCheck::Valid(16)
        );
        assert_eq!(
            check_request_line(b"GET / HTTP/1.0\n", max),
            LineCheck::Valid(15)
        );
        assert_eq!(check_request_line(b"GE", max), LineCheck::NeedMore);
        assert_eq!(check_request_line(b"GET /x HT", max), LineCheck::NeedMore);
        assert_eq!(check_request_line(b"G(", max), LineCheck::Invalid);
        assert_eq!(
            check_request_line(b"PURGE / HTTP/1.1\r\n", max),
            LineCheck::Valid(18)
        );
        assert_eq!(
            check_request_line(b"GET / HTTP/2.0\r\n", max),
            LineCheck::Invalid
        );
        assert_eq!(
            check_request_line(b"GET  / HTTP/1.1\r\n", max),
            LineCheck::Invalid
        );
        assert_eq!(check_request_line(b"\x16\x03\x01", max), LineCheck::Invalid);
        assert_eq!(check_request_line(b"GET /aaaaaaaa", 8), LineCheck::Invalid);
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
