//! The message-body length rule of RFC 9112 §6.3, for requests and for
//! responses, from the [`FramingFields`] of a head.

use super::syntax::FramingFields;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body (a request without length fields, a response to `HEAD`, a
    /// 1xx, 204, 304, or a `CONNECT`'s 2xx).
    None,
    /// This many bytes (never 0: that is [`BodyLength::None`]).
    Length(u64),
    Chunked,
    /// Until the server closes (responses only).
    UntilClose,
}

/// Why the length of a message cannot be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LengthError {
    /// A `Transfer-Encoding` a request may not carry: not exactly one
    /// `chunked` in one field, or any in HTTP/1.0 (§6.1).
    TransferEncoding,
    /// A `Content-Length` that is not one decimal value that fits (§6.3
    /// rule 5: unrecoverable).
    ContentLength,
}

/// The body length of a request. Strict: only what every conforming
/// server frames the same way (a `Transfer-Encoding` that is one
/// `chunked`; a `Content-Length` that is one value). Both present:
/// chunked, as §6.3 rule 3 says.
pub(crate) fn request_body(
    fields: &FramingFields,
    http11: bool,
) -> Result<BodyLength, LengthError> {
    // A request says its length once: repeated values, even identical
    // ones, are refused (nginx answers 400; a lenient server would take
    // one), as is a Transfer-Encoding beside a Content-Length (RFC 9112
    // §6.1 lets a server reject it or close after it: not framed alike).
    if fields.content_length_invalid || fields.content_length_values > 1 {
        return Err(LengthError::ContentLength);
    }
    if fields.has_transfer_encoding() {
        if !http11
            || fields.transfer_encoding_fields > 1
            || !fields.only_chunked
            || fields.content_length.is_some()
        {
            return Err(LengthError::TransferEncoding);
        }
        return Ok(BodyLength::Chunked);
    }
    Ok(match fields.content_length {
        None | Some(0) => BodyLength::None,
        Some(n) => BodyLength::Length(n),
    })
}

/// What the request a response answers changes in its framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestKind {
    pub head: bool,
    pub connect: bool,
}

/// The body length of a final (or interim) response with `status`,
/// answering a request of `kind`.
pub(crate) fn response_body(
    fields: &FramingFields,
    status: u16,
    kind: RequestKind,
) -> Result<BodyLength, LengthError> {
    if kind.head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (kind.connect && (200..300).contains(&status))
    {
        return Ok(BodyLength::None);
    }
    if fields.has_transfer_encoding() {
        // A last coding other than chunked runs until the close (rule 4).
        return Ok(if fields.is_chunked() {
            BodyLength::Chunked
        } else {
            BodyLength::UntilClose
        });
    }
    if fields.content_length_invalid {
        return Err(LengthError::ContentLength);
    }
    Ok(match fields.content_length {
        Some(0) => BodyLength::None,
        Some(n) => BodyLength::Length(n),
        None => BodyLength::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::super::syntax::fields;
    use super::*;

    #[test]
    fn a_request_body_is_chunked_content_length_or_none() {
        let req = |h: &[(&str, &str)]| request_body(&fields(h), true);
        assert_eq!(req(&[]), Ok(BodyLength::None));
        assert_eq!(req(&[("Content-Length", "0")]), Ok(BodyLength::None));
        assert_eq!(req(&[("Content-Length", "7")]), Ok(BodyLength::Length(7)));
        assert_eq!(
            req(&[("Transfer-Encoding", "chunked"), ("Content-Length", "7")]),
            Err(LengthError::TransferEncoding),
            "both: refused, not framed by one of them"
        );
        for twice in [["1", "2"], ["2", "2"]] {
            assert_eq!(
                req(&[("Content-Length", twice[0]), ("Content-Length", twice[1])]),
                Err(LengthError::ContentLength)
            );
        }
        assert_eq!(
            req(&[("Content-Length", "99999999999999999999999")]),
            Err(LengthError::ContentLength)
        );
    }

    #[test]
    fn a_request_transfer_encoding_must_be_one_chunked() {
        let req = |h: &[(&str, &str)]| request_body(&fields(h), true);
        for bad in [
            "deflate, chunked",
            "chunked, gzip",
            "chunked, chunked",
            "gzip",
            "",
        ] {
            assert_eq!(
                req(&[("Transfer-Encoding", bad)]),
                Err(LengthError::TransferEncoding),
                "{bad:?}"
            );
        }
        assert_eq!(
            req(&[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ]),
            Err(LengthError::TransferEncoding)
        );
        assert_eq!(
            request_body(&fields(&[("Transfer-Encoding", "chunked")]), false),
            Err(LengthError::TransferEncoding),
            "HTTP/1.0"
        );
    }

    #[test]
    fn a_response_body_depends_on_the_request_and_the_status() {
        let cl = fields(&[("Content-Length", "10")]);
        let plain = RequestKind::default();
        let head = RequestKind {
            head: true,
            connect: false,
        };
        let connect = RequestKind {
            head: false,
            connect: true,
        };
        assert_eq!(response_body(&cl, 200, plain), Ok(BodyLength::Length(10)));
        assert_eq!(response_body(&cl, 200, head), Ok(BodyLength::None));
        for status in [100, 101, 103, 204, 304] {
            assert_eq!(response_body(&cl, status, plain), Ok(BodyLength::None));
        }
        assert_eq!(response_body(&cl, 200, connect), Ok(BodyLength::None));
        assert_eq!(response_body(&cl, 407, connect), Ok(BodyLength::Length(10)));
        let none = fields(&[]);
        assert_eq!(response_body(&none, 200, plain), Ok(BodyLength::UntilClose));
        let gzip_last = fields(&[("Transfer-Encoding", "chunked, gzip")]);
        assert_eq!(
            response_body(&gzip_last, 200, plain),
            Ok(BodyLength::UntilClose)
        );
        let chunked = fields(&[
            ("Transfer-Encoding", "gzip, chunked"),
            ("Content-Length", "x"),
        ]);
        assert_eq!(response_body(&chunked, 200, plain), Ok(BodyLength::Chunked));
        let bad = fields(&[("Content-Length", "-1")]);
        assert_eq!(
            response_body(&bad, 200, plain),
            Err(LengthError::ContentLength)
        );
    }
}
