//! Parsing one complete head: httparse for the syntax, then the framing
//! decision of RFC 9112 §6.3 for a request.

use std::mem::MaybeUninit;

use super::{HeaderSpan, MAX_HEADERS_LIMIT, SkipReason, Span, Version};

/// How the body of a request is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// What the framer needs from a head, besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedHead {
    pub method: Span,
    pub target: Span,
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    pub body: BodyKind,
    /// Both Transfer-Encoding and Content-Length were present.
    pub te_overrides_cl: bool,
    pub expect_continue: bool,
    /// Upgrade or CONNECT: nothing after this request is HTTP/1.
    pub upgrade: bool,
}

fn span_of(head: &[u8], part: &[u8]) -> Span {
    // httparse hands out subslices of `head`; the offsets fit in u32 since
    // heads are limited far below 4 GiB.
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    let start = start.min(head.len());
    let end = (start + part.len()).min(head.len());
    Span {
        start: start as u32,
        end: end as u32,
    }
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

/// Comma-separated list elements, trimmed, empty ones skipped (RFC 9110 §5.6.1).
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
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses `head` (exactly one head, ending with its empty line).
pub(crate) fn parse_head(head: &[u8], max_headers: usize) -> Result<ParsedHead, SkipReason> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
    let limit = max_headers.min(MAX_HEADERS_LIMIT);
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut storage[..limit]) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(SkipReason::InvalidHead),
        Err(httparse::Error::TooManyHeaders) => return Err(SkipReason::TooManyHeaders),
        Err(_) => return Err(SkipReason::InvalidHead),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(SkipReason::InvalidHead);
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };

    let mut content_length: Option<u64> = None;
    let mut cl_invalid = false;
    let mut has_te = false;
    let mut te_chunked_last = false;
    let mut te_chunked_early = false;
    let mut expect_continue = false;
    let mut connection_upgrade = false;
    let mut has_upgrade = false;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        headers.push(HeaderSpan {
            name: span_of(head, h.name.as_bytes()),
            value: span_of(head, h.value),
        });
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
            if !any {
                cl_invalid = true;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in list(h.value) {
                // A coding may carry parameters: `gzip;q=1` is not valid
                // here, but its name is what counts.
                let name = trim_ows(coding.split(|b| *b == b';').next().unwrap_or_default());
                if has_te && te_chunked_last {
                    // chunked was not the last coding.
                    te_chunked_early = true;
                }
                has_te = true;
                te_chunked_last = name.eq_ignore_ascii_case(b"chunked");
            }
            if !has_te {
                // An empty Transfer-Encoding value still asks for a coding.
                has_te = true;
                te_chunked_last = false;
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= trim_ows(h.value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= list(h.value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            has_upgrade |= !trim_ows(h.value).is_empty();
        }
    }

    let te_overrides_cl = has_te && content_length.is_some();
    let body = if has_te {
        if version == Version::Http10 || !te_chunked_last || te_chunked_early {
            return Err(SkipReason::InvalidFraming);
        }
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, even an
        // invalid one.
        BodyKind::Chunked
    } else if cl_invalid {
        return Err(SkipReason::InvalidFraming);
    } else {
        match content_length {
            None | Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    let upgrade = method == "CONNECT" || (has_upgrade && connection_upgrade);
    Ok(ParsedHead {
        method: span_of(head, method.as_bytes()),
        target: span_of(head, target.as_bytes()),
        version,
        headers,
        body,
        te_overrides_cl,
        expect_continue,
        upgrade,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<ParsedHead, SkipReason> {
        parse_head(head.as_bytes(), 100)
    }

    #[test]
    fn spans_point_into_the_head() {
        let head = "POST /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Case: V a l\r\n\r\n";
        let p = parse(head).expect("valid head");
        assert_eq!(&head[p.method.range()], "POST");
        assert_eq!(&head[p.target.range()], "/x?y=1");
        assert_eq!(&head[p.headers[1].name.range()], "X-Case");
        assert_eq!(&head[p.headers[1].value.range()], "V a l");
        assert_eq!(p.body, BodyKind::None);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let p = parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").expect("cl");
        assert_eq!(p.body, BodyKind::Length(5));
        let p = parse("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n")
            .expect("same cl");
        assert_eq!(p.body, BodyKind::Length(5));
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(SkipReason::InvalidFraming)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            Err(SkipReason::InvalidFraming)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(SkipReason::InvalidFraming)
        );
        let p = parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("te wins");
        assert_eq!(p.body, BodyKind::Chunked);
        assert!(p.te_overrides_cl);
        let p = parse(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n",
        )
        .expect("chunked last");
        assert_eq!(p.body, BodyKind::Chunked);
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Err(SkipReason::InvalidFraming)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            Err(SkipReason::InvalidFraming)
        );
        assert_eq!(
            parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(SkipReason::InvalidFraming)
        );
    }

    #[test]
    fn upgrades_and_expect_are_seen() {
        let p = parse(
            "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .expect("ws");
        assert!(p.upgrade);
        let p = parse("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").expect("no connection");
        assert!(!p.upgrade);
        let p = parse("CONNECT a:443 HTTP/1.1\r\n\r\n").expect("connect");
        assert!(p.upgrade);
        let p = parse("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .expect("expect");
        assert!(p.expect_continue);
    }

    #[test]
    fn header_limits_apply() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..5 {
            head.push_str(&format!("H{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(parse_head(head.as_bytes(), 5).is_ok());
        assert_eq!(
            parse_head(head.as_bytes(), 4),
            Err(SkipReason::TooManyHeaders)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nBad Name: v\r\n\r\n"),
            Err(SkipReason::InvalidHead)
        );
    }
}
