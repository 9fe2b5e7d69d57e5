//! A recorded message's JSON body without its credentials: the values of
//! the credential fields ([`crate::redact`], at any depth) replaced by
//! their markers, everything else byte for byte, and the framing fixed to
//! the new length.
//!
//! Only bodies that say they are JSON (`Content-Type: ...json...`) and
//! carry no content coding are rewritten: a gzip body, a form or a binary
//! body is written as it was. A chunked body that is rewritten is written
//! whole with a `Content-Length` (its trailers dropped): its chunks held
//! the secrets' lengths, and one length is what a reader of the file needs.
//! Header values and query strings are not rewritten (a replay sends
//! them): `--strip-header` and `--remove-query` take them out.

use crate::redact::Policy;

/// The message rewritten, or `None` when it holds nothing to hide (or is
/// not a JSON body this can read): then it is written as it was.
pub(super) fn redact_message(policy: &Policy, message: &[u8]) -> Option<Vec<u8>> {
    let head_end = memchr::memmem::find(message, b"\r\n\r\n")?;
    let head = &message[..head_end];
    let mut lines = head.split(|&b| b == b'\n');
    let start_line = lines.next()?;
    let mut json = false;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    let mut kept: Vec<&[u8]> = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-type") {
            json |= value
                .windows(4)
                .any(|window| window.eq_ignore_ascii_case(b"json"));
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            if !value.eq_ignore_ascii_case(b"identity") {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !value.eq_ignore_ascii_case(b"chunked") {
                return None;
            }
            chunked = true;
            continue;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(std::str::from_utf8(value).ok()?.parse().ok()?);
            continue;
        }
        kept.push(line);
    }
    if !json {
        return None;
    }
    let rest = &message[head_end + 4..];
    let body = if chunked {
        dechunked(rest)?
    } else {
        rest.get(..length.unwrap_or(rest.len()))?.to_vec()
    };
    let body = policy.redact_json(&body)?;
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(start_line.strip_suffix(b"\r").unwrap_or(start_line));
    out.extend_from_slice(b"\r\n");
    for line in kept {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

/// A chunked body's data (RFC 9112 §7.1), or `None` if it is not whole.
fn dechunked(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = memchr::memmem::find(rest, b"\r\n")?;
        let size_text = rest[..line_end].split(|&b| b == b';').next()?.trim_ascii();
        let size = usize::from_str_radix(std::str::from_utf8(size_text).ok()?, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(message: &[u8]) -> Option<String> {
        redact_message(&Policy::default(), message).map(|m| String::from_utf8(m).unwrap())
    }

    #[test]
    fn a_json_body_loses_its_credentials_and_gets_its_new_length() {
        let body = r#"{"access_token":"at-qq","user":{"password":"pw-zz","name":"bob"}}"#;
        let message = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nX-Other: 1\r\n\r\n{body}",
            body.len()
        );
        let out = redacted(message.as_bytes()).expect("rewritten");
        assert!(!out.contains("at-qq") && !out.contains("pw-zz"), "{out}");
        let (head, new_body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json"));
        assert!(head.contains("X-Other: 1"));
        assert!(
            head.ends_with(&format!("Content-Length: {}", new_body.len())),
            "{head}"
        );
        let value: serde_json::Value = serde_json::from_str(new_body).unwrap();
        assert_eq!(value["user"]["name"], "bob");
        assert!(
            value["access_token"]
                .as_str()
                .unwrap()
                .starts_with("<redacted:")
        );
    }

    #[test]
    fn a_chunked_json_request_is_written_whole_with_a_length() {
        let message = b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\n\r\n5;x=1\r\n{\"pas\r\n14\r\nsword\":\"hunter-zz\"} \r\n0\r\nTrailer: t\r\n\r\n";
        let out = redacted(message).expect("rewritten");
        assert!(
            !out.contains("hunter-zz") && !out.contains("chunked"),
            "{out}"
        );
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.ends_with(&format!("Content-Length: {}", body.len())),
            "{out}"
        );
        assert!(body.starts_with("{\"password\":\"<redacted:") && body.ends_with("\"} "));
    }

    #[test]
    fn other_bodies_are_written_as_they_were() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\n{\"access_token\":\"zz\"}";
        assert_eq!(redacted(plain), None, "not JSON by its type");
        let gzip =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
Content-Length: 3\r\n\r\nabc";
        assert_eq!(redacted(gzip), None, "coded: left as it is");
        let clean = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(redacted(clean), None, "nothing to hide");
        let head_only = b"GET /a?access_token=zz HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(redacted(head_only), None);
        let cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\"";
        assert_eq!(redacted(cut), None, "a body that is not whole");
    }
}
