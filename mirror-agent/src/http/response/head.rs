//! Parsing one complete response head: httparse for the syntax, then what
//! the header fields say about the body's framing (RFC 9112 §6.3; what the
//! request and the status change is the framer's to decide).

use std::mem::MaybeUninit;

use bytes::Bytes;

use super::{Headers, ResponseLoss};
use crate::http::MAX_HEADERS_LIMIT;

/// What the start of a response must look like.
pub(super) const STATUS_LINE_PREFIX: &[u8] = b"HTTP/1.";

/// How the body is delimited, going by the header fields alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
    /// An invalid Content-Length (and no Transfer-Encoding): RFC 9112
    /// §6.3 makes that an unrecoverable error.
    Invalid,
}

/// A parsed head.
#[derive(Debug)]
pub(super) struct ParsedHead {
    pub status: u16,
    /// Names as sent; values slices of the head's bytes.
    pub headers: Headers,
    pub framing: Framing,
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Comma-separated list elements, trimmed, empty ones skipped.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
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

/// Parses `head` (exactly one head, ending with its empty line).
pub(super) fn parse_head(head: &Bytes, max_headers: usize) -> Result<ParsedHead, ResponseLoss> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
    let limit = max_headers.min(MAX_HEADERS_LIMIT);
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        head,
        &mut storage[..limit],
    );
    match parsed {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(ResponseLoss::InvalidHead),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseLoss::TooManyHeaders),
        Err(_) => return Err(ResponseLoss::InvalidHead),
    }
    let status = match response.code {
        Some(code) if code >= 100 => code,
        _ => return Err(ResponseLoss::InvalidHead),
    };

    let mut content_length: Option<u64> = None;
    let mut cl_invalid = false;
    let mut has_te = false;
    let mut te_chunked_last = false;
    let mut headers = Vec::with_capacity(response.headers.len());
    for h in response.headers.iter() {
        headers.push((h.name.to_string(), head.slice_ref(h.value)));
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let mut any = false;
            for v in list(h.value) {
                any = true;
                match (parse_decimal(v), content_length) {
                    (None, _) => cl_invalid = true,
                    (Some(n), Some(prev)) if n != prev => cl_invalid = true,
                    (Some(n), _) => content_length = Some(n),
                }
            }
            cl_invalid |= !any;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // An empty value still announces a coding (not chunked).
            has_te = true;
            te_chunked_last = false;
            for coding in list(h.value) {
                let name = trim_ows(coding.split(|b| *b == b';').next().unwrap_or_default());
                te_chunked_last = name.eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    let framing = if has_te {
        // Transfer-Encoding overrides Content-Length; a response whose last
        // coding is not chunked runs until the close (§6.3 rule 4).
        if te_chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if cl_invalid {
        Framing::Invalid
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(ParsedHead {
        status,
        headers,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &[u8]) -> Result<ParsedHead, ResponseLoss> {
        parse_head(&Bytes::copy_from_slice(head), 100)
    }

    fn framing(head: &[u8]) -> Framing {
        parse(head).map(|p| p.framing).unwrap_or(Framing::Invalid)
    }

    #[test]
    fn the_header_fields_decide_the_framing() {
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Framing::Length(12)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n"),
            Framing::Length(12)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n"),
            Framing::Invalid
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Framing::Invalid
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(framing(b"HTTP/1.0 200 OK\r\n\r\n"), Framing::UntilClose);
    }

    #[test]
    fn headers_keep_their_order_names_and_values() {
        let p = parse(b"HTTP/1.1 404 Not Found\r\nX-B: 2\r\nx-a:  1 \r\nX-B: 3\r\n\r\n").unwrap();
        assert_eq!(p.status, 404);
        let headers: Vec<(&str, &[u8])> = p
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), &v[..]))
            .collect();
        assert_eq!(
            headers,
            vec![("X-B", &b"2"[..]), ("x-a", &b"1"[..]), ("X-B", &b"3"[..])]
        );
    }

    #[test]
    fn bad_heads_are_refused_with_a_reason() {
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").err(),
            Some(ResponseLoss::InvalidHead)
        );
        assert_eq!(
            parse(b"HTTP/1.1 099 Odd\r\n\r\n").err(),
            Some(ResponseLoss::InvalidHead)
        );
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).err(), Some(ResponseLoss::TooManyHeaders));
    }
}
