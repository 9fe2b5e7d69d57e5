//! HTTP/1 message syntax shared by every framer (RFC 9110 §5.6, RFC 9112):
//! whitespace, comma lists, tokens, decimal lengths, hex digits, and the
//! header fields that decide a message's framing and its connection.
//!
//! The request framer, v1's response framer and the shadow client all read
//! these fields through [`FramingFields`], so a `Content-Length` or a
//! `Transfer-Encoding` means the same to the three of them.

/// Most hex digits of a chunk size: 15 keep it below 2^60.
pub(crate) const MAX_CHUNK_SIZE_DIGITS: usize = 15;

/// `s` without the optional whitespace (SP, HTAB) around it.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Comma-separated list elements, trimmed, empty ones skipped (RFC 9110
/// §5.6.1).
pub(crate) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// Whether the list `value` holds `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    list(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// A decimal number of digits only (no sign, no space), refused when it
/// does not fit in a `u64`.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        if b.is_ascii_digit() {
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The value of one hex digit.
pub(crate) fn hex_digit(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// What the header fields of one head say about its framing and its
/// connection, collected field by field ([`FramingFields::add`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FramingFields {
    /// `Transfer-Encoding` fields seen.
    pub transfer_encoding_fields: u32,
    /// Over all of them, the last coding is `chunked` and no other one is.
    pub chunked_last: bool,
    /// Exactly one coding in all of them: `chunked` (what a request may
    /// carry: nginx answers 501 to `gzip, chunked`).
    pub only_chunked: bool,
    /// The `Content-Length` (identical values in lists and repeated fields
    /// are one value); `None` if absent.
    pub content_length: Option<u64>,
    /// A `Content-Length` that is not one decimal value that fits.
    pub content_length_invalid: bool,
    /// `Content-Length` values seen, over lists and repeated fields (a
    /// request must send one).
    pub content_length_values: u32,
    /// `Host` fields seen.
    pub host_fields: u32,
    /// A `Host` value that is not `host[:port]` (empty included).
    pub host_invalid: bool,
    /// `Connection` lists `close` / `keep-alive` / `upgrade`.
    pub connection_close: bool,
    pub connection_keep_alive: bool,
    pub connection_upgrade: bool,
    /// A non-empty `Upgrade` field.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Codings seen so far (for `only_chunked`).
    codings: u32,
    /// A `chunked` that was not the last coding.
    chunked_early: bool,
}

impl FramingFields {
    /// Takes one header field into account.
    pub(crate) fn add(&mut self, name: &[u8], value: &[u8]) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            let mut any = false;
            for v in list(value) {
                any = true;
                self.content_length_values += 1;
                match (parse_decimal(v), self.content_length) {
                    (None, _) => self.content_length_invalid = true,
                    (Some(n), Some(prev)) if n != prev => self.content_length_invalid = true,
                    (Some(n), _) => self.content_length = Some(n),
                }
            }
            self.content_length_invalid |= !any;
        } else if is("transfer-encoding") {
            self.transfer_encoding_fields += 1;
            // An empty value still announces a coding (not chunked).
            if list(value).next().is_none() {
                self.codings += 1;
                self.chunked_early |= self.chunked_last;
                self.chunked_last = false;
            }
            for coding in list(value) {
                // A coding may carry parameters; its name is what counts.
                let name = trim_ows(coding.split(|b| *b == b';').next().unwrap_or_default());
                self.codings += 1;
                self.chunked_early |= self.chunked_last;
                self.chunked_last = name.eq_ignore_ascii_case(b"chunked");
            }
            self.only_chunked = self.codings == 1 && self.chunked_last;
        } else if is("host") {
            self.host_fields += 1;
            self.host_invalid |= !super::target::valid_authority(trim_ows(value));
        } else if is("connection") {
            self.connection_close |= has_token(value, b"close");
            self.connection_keep_alive |= has_token(value, b"keep-alive");
            self.connection_upgrade |= has_token(value, b"upgrade");
        } else if is("upgrade") {
            self.upgrade |= !trim_ows(value).is_empty();
        } else if is("expect") {
            self.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        }
    }

    /// Whether a `Transfer-Encoding` was sent at all.
    pub(crate) fn has_transfer_encoding(&self) -> bool {
        self.transfer_encoding_fields > 0
    }

    /// The codings end with `chunked`, which appears once (RFC 9112 §6.1:
    /// chunked must be last and must not be applied twice).
    pub(crate) fn is_chunked(&self) -> bool {
        self.chunked_last && !self.chunked_early
    }

    /// The message leaves its connection open (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `keep-alive`.
    pub(crate) fn keeps_alive(&self, http11: bool) -> bool {
        !self.connection_close && (http11 || self.connection_keep_alive)
    }
}

/// The fields of a head made of `(name, value)` pairs.
#[cfg(test)]
pub(crate) fn fields(head: &[(&str, &str)]) -> FramingFields {
    let mut f = FramingFields::default();
    for (n, v) in head {
        f.add(n.as_bytes(), v.as_bytes());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_tokens_ignore_whitespace_and_empty_elements() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        let items: Vec<&[u8]> = list(b" a, ,b ,, c\t").collect();
        assert_eq!(items, vec![&b"a"[..], b"b", b"c"]);
        assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"keep-alive-ish", b"keep-alive"));
    }

    #[test]
    fn decimals_are_digits_only_and_overflow_is_refused() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"0042"), Some(42));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"1000000000000000000000"), None);
        for bad in [&b""[..], b"+5", b"-1", b"5 ", b"0x10", b"1_000"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_length_lists_of_one_value_are_one_value_and_others_invalid() {
        let f = fields(&[("Content-Length", "5, 5"), ("content-length", "5")]);
        assert_eq!(
            (f.content_length, f.content_length_invalid),
            (Some(5), false)
        );
        let f = fields(&[("Content-Length", "1"), ("Content-Length", "2")]);
        assert!(f.content_length_invalid);
        let f = fields(&[("Content-Length", "1000000000000000000000")]);
        assert!(f.content_length_invalid);
        let f = fields(&[("Content-Length", "")]);
        assert!(f.content_length_invalid);
    }

    #[test]
    fn transfer_codings_are_read_over_every_field() {
        let f = fields(&[("Transfer-Encoding", "chunked")]);
        assert!(f.is_chunked() && f.only_chunked);
        let f = fields(&[
            ("Transfer-Encoding", "gzip"),
            ("Transfer-Encoding", "Chunked"),
        ]);
        assert!(f.is_chunked() && !f.only_chunked);
        assert_eq!(f.transfer_encoding_fields, 2);
        let f = fields(&[("Transfer-Encoding", "deflate, chunked")]);
        assert!(f.is_chunked() && !f.only_chunked);
        let f = fields(&[("Transfer-Encoding", "chunked, gzip")]);
        assert!(!f.is_chunked());
        let f = fields(&[("Transfer-Encoding", "chunked, chunked")]);
        assert!(!f.is_chunked() && !f.only_chunked);
        let f = fields(&[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "")]);
        assert!(!f.is_chunked());
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(fields(&[]).keeps_alive(true));
        assert!(!fields(&[]).keeps_alive(false));
        assert!(fields(&[("Connection", "Keep-Alive")]).keeps_alive(false));
        assert!(!fields(&[("Connection", "close")]).keeps_alive(true));
        let f = fields(&[("Connection", "keep-alive, Upgrade"), ("Upgrade", "ws")]);
        assert!(f.connection_upgrade && f.upgrade);
    }
}
