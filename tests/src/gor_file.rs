//! goreplay's file format read and written by the tests with code of their
//! own (not the agent's reader), so that what the agent records is judged
//! by an independent parser: payloads, their header lines, and each
//! request's head and decoded body compared with what a server received.
//!
//! A payload is `TYPE ID TIMESTAMP LATENCY\n`, the bytes as sent, then
//! [`SEPARATOR`].

use std::collections::VecDeque;

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{Received, ReceivedRequest};

use crate::http_compare::show;

/// Ends every payload.
pub const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();

/// One payload of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GorPayload {
    /// `1` request, `2` response, `3` replayed response.
    pub kind: u8,
    pub id: String,
    /// Unix nanoseconds.
    pub timestamp_ns: i64,
    pub latency_ns: i64,
    pub data: Vec<u8>,
}

/// Every payload of a whole file, which must end with a separator (a
/// complete last payload).
pub fn parse(file: &[u8]) -> Result<Vec<GorPayload>> {
    let mut payloads = Vec::new();
    let mut rest = file;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let end = rest
            .windows(SEPARATOR.len())
            .position(|w| w == SEPARATOR)
            .with_context(|| {
                format!(
                    "the file does not end with a complete payload: {} bytes after byte \
                     {offset} have no separator ({:?}...)",
                    rest.len(),
                    show(&rest[..rest.len().min(80)])
                )
            })?;
        let chunk = &rest[..end];
        let nl = chunk
            .iter()
            .position(|b| *b == b'\n')
            .with_context(|| format!("payload at byte {offset}: no header line"))?;
        let line = std::str::from_utf8(&chunk[..nl])
            .with_context(|| format!("payload at byte {offset}: header line not UTF-8"))?;
        let fields: Vec<&str> = line.split(' ').collect();
        ensure!(
            fields.len() == 4,
            "payload at byte {offset}: header line {line:?} is not `TYPE ID TIMESTAMP LATENCY`"
        );
        let kind = match fields[0] {
            "1" => 1,
            "2" => 2,
            "3" => 3,
            other => bail!("payload at byte {offset}: type {other:?}"),
        };
        payloads.push(GorPayload {
            kind,
            id: fields[1].to_owned(),
            timestamp_ns: fields[2]
                .parse()
                .with_context(|| format!("payload at byte {offset}: timestamp in {line:?}"))?,
            latency_ns: fields[3]
                .parse()
                .with_context(|| format!("payload at byte {offset}: latency in {line:?}"))?,
            data: chunk[nl + 1..].to_vec(),
        });
        offset += end + SEPARATOR.len();
        rest = &rest[end + SEPARATOR.len()..];
    }
    Ok(payloads)
}

/// A payload as goreplay writes it, separator included.
pub fn encode(kind: u8, id: &str, timestamp_ns: i64, latency_ns: i64, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{kind} {id} {timestamp_ns} {latency_ns}\n").into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(SEPARATOR);
    out
}

/// A request's bytes as the wire carried them, framed as the test server
/// frames them: head as sent, body decoded, trailers. Every byte must
/// belong to the one request.
pub fn frame_request(wire: &[u8]) -> Result<ReceivedRequest> {
    let head_end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?
        + 4;
    let head = wire[..head_end].to_vec();
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    ensure!(
        parsed.parse(&head)?.is_complete(),
        "incomplete head {}",
        show(&head)
    );
    let value = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let chunked = value("transfer-encoding").is_some_and(|v| v.ends_with("chunked"));
    let rest = &wire[head_end..];
    if !chunked {
        let len: usize = value("content-length").map_or(Ok(0), |v| v.parse())?;
        ensure!(
            rest.len() == len,
            "{}: {} body bytes, Content-Length {len}",
            show(&head),
            rest.len()
        );
        return Ok(ReceivedRequest {
            head,
            body: rest.to_vec(),
            chunked: false,
            trailers: Vec::new(),
        });
    }
    let mut body = Vec::new();
    let mut at = 0;
    let line = |from: usize| -> Result<(usize, &[u8])> {
        let end = rest[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .with_context(|| format!("chunked body cut at {from}"))?;
        Ok((from + end + 2, &rest[from..from + end]))
    };
    loop {
        let (next, size_line) = line(at)?;
        let size_text = std::str::from_utf8(size_line)?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        at = next;
        if size == 0 {
            break;
        }
        ensure!(rest.len() >= at + size + 2, "chunk cut at {at}");
        body.extend_from_slice(&rest[at..at + size]);
        ensure!(
            &rest[at + size..at + size + 2] == b"\r\n",
            "no CRLF after a chunk"
        );
        at += size + 2;
    }
    let mut trailers = Vec::new();
    loop {
        let (next, trailer) = line(at)?;
        at = next;
        if trailer.is_empty() {
            break;
        }
        trailers.extend_from_slice(trailer);
        trailers.extend_from_slice(b"\r\n");
    }
    ensure!(
        at == rest.len(),
        "{} bytes after the chunked body",
        rest.len() - at
    );
    Ok(ReceivedRequest {
        head,
        body,
        chunked: true,
        trailers,
    })
}

/// What identifies a request: head, decoded body, chunked, trailers.
fn same(a: &ReceivedRequest, b: &ReceivedRequest) -> bool {
    a.head == b.head && a.body == b.body && a.chunked == b.chunked && a.trailers == b.trailers
}

fn describe(r: &ReceivedRequest) -> String {
    format!(
        "{} with a {}-byte{} body",
        show(&r.head),
        r.body.len(),
        if r.chunked { " chunked" } else { "" }
    )
}

/// `sequence` is exactly the requests `primary` received, byte for byte,
/// each of its connections' requests in the order that connection carried
/// them (connections interleaved in any way). Returns how many matched.
///
/// Each request is matched with the first connection whose next request is
/// identical to it: sound when requests that are identical across
/// connections come only from connections that carry nothing else (ab's).
pub fn same_order_per_connection(
    primary: &Received,
    sequence: &[ReceivedRequest],
) -> Result<usize> {
    let mut queues: Vec<VecDeque<&ReceivedRequest>> = primary
        .connections
        .iter()
        .map(|c| c.requests.iter().collect())
        .collect();
    for (i, request) in sequence.iter().enumerate() {
        let Some(queue) = queues
            .iter_mut()
            .find(|q| q.front().is_some_and(|next| same(next, request)))
        else {
            let expected: Vec<String> = queues
                .iter()
                .filter_map(|q| q.front().map(|r| describe(r)))
                .take(3)
                .collect();
            let known = primary.requests().any(|r| same(r, request));
            bail!(
                "request {i} of {} ({}) is {}; the connections' next requests were \
                 (first 3) {expected:?}",
                sequence.len(),
                describe(request),
                if known {
                    "out of its connection's order, or extra"
                } else {
                    "not one the primary received"
                }
            );
        };
        queue.pop_front();
    }
    let missing: usize = queues.iter().map(VecDeque::len).sum();
    ensure!(
        missing == 0,
        "{missing} requests of the primary are missing (of {}), first {}",
        primary.request_count(),
        queues
            .iter()
            .find_map(|q| q.front().map(|r| describe(r)))
            .unwrap_or_default()
    );
    Ok(sequence.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_testkit::server::ServerConnection;

    #[test]
    fn a_file_parses_and_a_cut_one_does_not() {
        let mut file = encode(1, "a1", 5, -1, b"GET / HTTP/1.1\r\n\r\n");
        file.extend(encode(2, "a1", 6, 100, b"HTTP/1.1 200 OK\r\n\r\n"));
        let payloads = parse(&file).unwrap();
        assert_eq!(payloads.len(), 2);
        assert_eq!(payloads[1].kind, 2);
        assert_eq!(payloads[1].latency_ns, 100);
        assert_eq!(payloads[0].data, b"GET / HTTP/1.1\r\n\r\n");
        assert!(parse(&file[..file.len() - 1]).is_err());
    }

    #[test]
    fn chunked_and_sized_requests_frame_like_the_server() {
        let chunked = frame_request(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;x=y\r\nd\r\n0\r\nT: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"abcd");
        assert_eq!(chunked.trailers, b"T: 1\r\n");
        let sized = frame_request(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab").unwrap();
        assert_eq!(sized.body, b"ab");
        assert!(frame_request(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabc").is_err());
    }

    #[test]
    fn order_is_checked_per_connection() {
        let r =
            |path: &str| frame_request(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes()).unwrap();
        let primary = Received {
            connections: vec![
                ServerConnection {
                    client: "10.200.0.1:1".parse().unwrap(),
                    requests: vec![r("/a1"), r("/a2")],
                },
                ServerConnection {
                    client: "10.200.0.1:2".parse().unwrap(),
                    requests: vec![r("/b1")],
                },
            ],
        };
        let ok = [r("/a1"), r("/b1"), r("/a2")];
        assert_eq!(same_order_per_connection(&primary, &ok).unwrap(), 3);
        assert!(same_order_per_connection(&primary, &[r("/a2"), r("/a1"), r("/b1")]).is_err());
        assert!(same_order_per_connection(&primary, &ok[..2]).is_err());
    }
}
