//! Recognising request lines without a full parse: the quick check at
//! the start of every head, so that garbage, TLS and HTTP/2 are found
//! early.

/// Longest method the head check accepts (httparse has no limit; we want
/// garbage detected early).
const MAX_METHOD_LEN: usize = 32;
/// Bytes looked at to classify the start of a head (TLS, HTTP/2, garbage).
pub(crate) const START_PROBE: usize = 64;
/// The first line of the HTTP/2 connection preface (RFC 9113 §3.4),
/// without its line end (a bare LF after it is still HTTP/2).
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";

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

/// What the first bytes of a head are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    Ok,
    NeedMore,
    Tls,
    Http2,
    Garbage,
}

/// Classifies the first bytes of a head (at most [`START_PROBE`] count).
pub(crate) fn check_start(view: &[u8]) -> Start {
    if let [0x16, rest @ ..] = view {
        // A TLS handshake record: content type 22, version 3.x.
        return match rest {
            [] | [_] => Start::NeedMore,
            [3, minor, ..] if *minor <= 4 => Start::Tls,
            _ => Start::Garbage,
        };
    }
    let n = view.len().min(H2_PREFACE_LINE.len());
    if view[..n] == H2_PREFACE_LINE[..n] {
        return if n == H2_PREFACE_LINE.len() {
            Start::Http2
        } else {
            Start::NeedMore
        };
    }
    // Only the shape counts here: a line longer than the head limit is
    // `head_too_large`, found by the head scan, not garbage.
    match check_request_line(view, usize::MAX) {
        LineCheck::Valid(_) => Start::Ok,
        LineCheck::Invalid => Start::Garbage,
        // A long target: the rest is httparse's to judge.
        LineCheck::NeedMore if view.len() >= START_PROBE => Start::Ok,
        LineCheck::NeedMore => Start::NeedMore,
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
    fn start_classification() {
        assert_eq!(check_start(b"\x16\x03\x01\x02\x00"), Start::Tls);
        assert_eq!(check_start(b"\x16\x03"), Start::NeedMore);
        assert_eq!(
            check_start(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Start::Http2
        );
        assert_eq!(check_start(b"PRI * HT"), Start::NeedMore);
        assert_eq!(check_start(b"PRI * HTTP/2.0\n\nSM\n\n"), Start::Http2);
        assert_eq!(check_start(b"GET / HTTP/1.1\r\n"), Start::Ok);
        assert_eq!(check_start(b"\x00\x01"), Start::Garbage);
    }
}
