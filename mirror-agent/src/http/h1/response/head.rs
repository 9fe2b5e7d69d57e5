//! Parsing one complete response head: httparse for the syntax, then what
//! the header fields say about the body's framing, read by the shared
//! [HTTP/1 grammar](crate::http::h1).

use std::mem::MaybeUninit;

use bytes::Bytes;

use super::{Headers, ResponseLoss};
use crate::http::h1::syntax::FramingFields;
use crate::http::request::MAX_HEADERS_LIMIT;

/// What the start of a response must look like.
pub(super) const STATUS_LINE_PREFIX: &[u8] = b"HTTP/1.";

/// A parsed head.
#[derive(Debug)]
pub(super) struct ParsedHead {
    pub status: u16,
    /// Names as sent; values slices of the head's bytes.
    pub headers: Headers,
    /// What the fields say about the body (the request and the status
    /// decide the rest: [`response_body`](crate::http::h1::body_length::response_body)).
    pub fields: FramingFields,
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

    let mut fields = FramingFields::default();
    let mut headers = Vec::with_capacity(response.headers.len());
    for h in response.headers.iter() {
        headers.push((h.name.to_string(), head.slice_ref(h.value)));
        fields.add(h.name.as_bytes(), h.value);
    }
    Ok(ParsedHead {
        status,
        headers,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::body_length::{BodyLength, LengthError, response_body};

    fn parse(head: &[u8]) -> Result<ParsedHead, ResponseLoss> {
        parse_head(&Bytes::copy_from_slice(head), 100)
    }

    /// The framing of a response to a GET (an invalid one: `Err`).
    fn framing(head: &[u8]) -> Result<BodyLength, LengthError> {
        let p = parse(head).expect("a valid head");
        response_body(&p.fields, p.status, Default::default())
    }

    #[test]
    fn the_header_fields_decide_the_framing() {
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Ok(BodyLength::Length(12))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n"),
            Ok(BodyLength::Length(12))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n"),
            Err(LengthError::ContentLength)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(LengthError::ContentLength)
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"
            ),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Ok(BodyLength::UntilClose)
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\n\r\n"),
            Ok(BodyLength::UntilClose)
        );
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
