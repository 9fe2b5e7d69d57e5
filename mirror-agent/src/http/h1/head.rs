//! Parsing one complete request head: httparse for the syntax, then the
//! strict rules of the [HTTP/1 grammar](super): the target's form, one
//! `Host`, and the body length (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use super::body_length::{BodyLength, LengthError, request_body};
use super::syntax::FramingFields;
use super::target::{TargetError, check_target};
use crate::http::request::{HeaderSpan, MAX_HEADERS_LIMIT, SkipReason, Span, Version};

/// How the body of a request is delimited.
pub(crate) type BodyKind = BodyLength;

/// What the framer needs from a head, besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedHead {
    pub method: Span,
    pub target: Span,
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    pub body: BodyKind,
    pub expect_continue: bool,
    /// An upgrade (`Upgrade` + `Connection: upgrade`): nothing after this
    /// request is HTTP/1.
    pub upgrade: bool,
    /// v1 closes the connection after answering (`Connection: close`, or
    /// HTTP/1.0 without keep-alive): nothing after it was served.
    pub close: bool,
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

/// Parses `head` (exactly one head, ending with its empty line; its line
/// ends already checked by the framer's strict scan).
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
    // Methods are case-sensitive tokens; every registered one is upper
    // case, and nginx refuses any other (a lenient server would not).
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(SkipReason::InvalidHead);
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    check_target(method.as_bytes(), target.as_bytes()).map_err(|e| match e {
        TargetError::Http2Preface => SkipReason::UnsupportedHttp2,
        TargetError::Unsupported => SkipReason::UnsupportedTarget,
        TargetError::InvalidAuthority => SkipReason::InvalidAuthority,
    })?;

    let mut fields = FramingFields::default();
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        headers.push(HeaderSpan {
            name: span_of(head, h.name.as_bytes()),
            value: span_of(head, h.value),
        });
        fields.add(h.name.as_bytes(), h.value);
    }
    let http11 = version == Version::Http11;
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one before,
    // and a valid `host[:port]` (nginx refuses an empty or odd one).
    if fields.host_fields > 1 || (http11 && fields.host_fields == 0) || fields.host_invalid {
        return Err(SkipReason::InvalidHost);
    }
    let body = request_body(&fields, http11).map_err(|e| match e {
        LengthError::TransferEncoding => SkipReason::InvalidTransferEncoding,
        LengthError::ContentLength => SkipReason::InvalidContentLength,
    })?;
    Ok(ParsedHead {
        method: span_of(head, method.as_bytes()),
        target: span_of(head, target.as_bytes()),
        version,
        headers,
        body,
        expect_continue: fields.expect_continue,
        upgrade: fields.upgrade && fields.connection_upgrade,
        close: !fields.keeps_alive(http11),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<ParsedHead, SkipReason> {
        parse_head(head.as_bytes(), 100)
    }

    /// A POST with `fields` (and a Host).
    fn post(fields: &str) -> Result<ParsedHead, SkipReason> {
        parse(&format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n"))
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
        assert_eq!(
            post("Content-Length: 5\r\n").unwrap().body,
            BodyKind::Length(5)
        );
        // A length given twice, or a length beside chunked, is refused.
        for (headers, refused) in [
            ("Content-Length: 5, 5\r\n", SkipReason::InvalidContentLength),
            (
                "Content-Length: 5\r\ncontent-length: 5\r\n",
                SkipReason::InvalidContentLength,
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                SkipReason::InvalidTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                SkipReason::InvalidTransferEncoding,
            ),
        ] {
            assert_eq!(post(headers).map(|p| p.body), Err(refused), "{headers}");
        }
        let p = post("Transfer-Encoding: Chunked\r\n").expect("chunked");
        assert_eq!(p.body, BodyKind::Chunked);
    }

    #[test]
    fn differing_or_overflowing_content_lengths_are_refused_at_the_head() {
        for fields in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 1, 2\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Content-Length: 1000000000000000000000\r\n",
            "Content-Length:\r\n",
        ] {
            assert_eq!(
                post(fields),
                Err(SkipReason::InvalidContentLength),
                "{fields}"
            );
        }
    }

    #[test]
    fn a_transfer_encoding_other_than_one_chunked_is_refused() {
        for fields in [
            "Transfer-Encoding: deflate, chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: identity\r\n",
        ] {
            assert_eq!(
                post(fields),
                Err(SkipReason::InvalidTransferEncoding),
                "{fields}"
            );
        }
        assert_eq!(
            parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(SkipReason::InvalidTransferEncoding)
        );
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\nX: y\r\n\r\n"),
            Err(SkipReason::InvalidHost)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Err(SkipReason::InvalidHost)
        );
        assert_eq!(
            parse("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            Err(SkipReason::InvalidHost)
        );
        assert!(
            parse("GET / HTTP/1.0\r\n\r\n").is_ok(),
            "HTTP/1.0 needs none"
        );
    }

    #[test]
    fn connect_asterisk_forms_and_bad_authorities_are_refused() {
        assert_eq!(
            parse("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Err(SkipReason::UnsupportedTarget)
        );
        assert_eq!(
            parse("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(SkipReason::UnsupportedTarget)
        );
        assert!(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert_eq!(
            parse("PRI * HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(SkipReason::UnsupportedHttp2)
        );
        assert_eq!(
            parse("GET http://a:b@c@host/toto HTTP/1.1\r\nHost: host\r\n\r\n"),
            Err(SkipReason::InvalidAuthority)
        );
        let p = parse("GET http://host/toto HTTP/1.1\r\nHost: host\r\n\r\n").expect("absolute");
        assert_eq!(p.body, BodyKind::None);
    }

    #[test]
    fn a_request_after_which_v1_closes_is_marked() {
        let close = |head: &str| parse(head).expect("valid").close;
        assert!(close("GET / HTTP/1.0\r\n\r\n"));
        assert!(!close("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(close(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!close("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn upgrades_and_expect_are_seen() {
        let p = post("Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n").expect("ws");
        assert!(p.upgrade);
        let p = post("Upgrade: websocket\r\n").expect("no connection");
        assert!(!p.upgrade);
        let p = post("Expect: 100-Continue\r\nContent-Length: 1\r\n").expect("expect");
        assert!(p.expect_continue);
    }

    #[test]
    fn header_limits_apply() {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..4 {
            head.push_str(&format!("H{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert!(parse_head(head.as_bytes(), 5).is_ok());
        assert_eq!(
            parse_head(head.as_bytes(), 4),
            Err(SkipReason::TooManyHeaders)
        );
        assert_eq!(post("Bad Name: v\r\n"), Err(SkipReason::InvalidHead));
    }
}
