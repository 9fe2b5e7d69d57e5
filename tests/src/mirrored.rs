//! Compares what a shadow received with what the primary received: the
//! same requests, byte for byte, apart from the marker header line the
//! agent adds. Shadows get requests over their own connections, in no
//! particular order, so requests are compared as multisets.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, ensure};

use mirror_testkit::{Received, ReceivedRequest};

use crate::http_compare::show;

/// The marker header the agent adds by default.
pub const MARKER: &str = "X-Mirrored-By: mirror";

/// `head` without its one `marker` line (`Name: value`, the name in any
/// case); an error if the line is missing or there twice.
pub fn strip_marker(head: &[u8], marker: &str) -> Result<Vec<u8>> {
    let (name, value) = marker
        .split_once(':')
        .context("a marker is `Name: value`")?;
    let (name, value) = (name.trim().as_bytes(), value.trim().as_bytes());
    let is_marker = |line: &[u8]| {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return false;
        };
        line[..colon].eq_ignore_ascii_case(name) && line[colon + 1..].trim_ascii() == value
    };
    let mut out = Vec::with_capacity(head.len());
    let mut found = 0;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if is_marker(content) {
            found += 1;
        } else {
            out.extend_from_slice(line);
        }
    }
    ensure!(found == 1, "{found} `{marker}` lines in {:?}", show(head));
    Ok(out)
}

/// What identifies a request: head, decoded body, chunked or not, trailers.
type Key = (Vec<u8>, Vec<u8>, bool, Vec<u8>);

fn key(request: &ReceivedRequest, head: Vec<u8>) -> Key {
    (
        head,
        request.body.clone(),
        request.chunked,
        request.trailers.clone(),
    )
}

fn describe(key: &Key) -> String {
    format!("{:?} with a {}-byte body", show(&key.0), key.1.len())
}

/// Every request of `expected` (as the primary received them) reached the
/// shadow exactly once, with the marker line and otherwise identical, and
/// the shadow received nothing else. Returns how many matched.
pub fn compare_mirrored<'a>(
    expected: impl IntoIterator<Item = &'a ReceivedRequest>,
    shadow: &Received,
    marker: &str,
) -> Result<usize> {
    let mut want: BTreeMap<Key, i64> = BTreeMap::new();
    let mut total = 0;
    for request in expected {
        *want.entry(key(request, request.head.clone())).or_default() += 1;
        total += 1;
    }
    for request in shadow.requests() {
        let head = strip_marker(&request.head, marker)?;
        *want.entry(key(request, head)).or_default() -= 1;
    }
    let missing: Vec<_> = want.iter().filter(|(_, n)| **n > 0).collect();
    let extra: Vec<_> = want.iter().filter(|(_, n)| **n < 0).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "the shadow received {} requests, {total} expected; {} kinds missing (first: {}), \
         {} kinds extra (first: {})",
        shadow.request_count(),
        missing.len(),
        missing
            .first()
            .map(|(k, n)| format!("{n} x {}", describe(k)))
            .unwrap_or_default(),
        extra.len(),
        extra
            .first()
            .map(|(k, n)| format!("{} x {}", -**n, describe(k)))
            .unwrap_or_default(),
    );
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_testkit::server::ServerConnection;

    fn request(head: &str, body: &str) -> ReceivedRequest {
        ReceivedRequest {
            head: head.as_bytes().to_vec(),
            body: body.as_bytes().to_vec(),
            chunked: false,
            trailers: Vec::new(),
        }
    }

    fn received(requests: Vec<ReceivedRequest>) -> Received {
        Received {
            connections: vec![ServerConnection {
                client: "10.200.0.1:1".parse().unwrap(),
                requests,
            }],
        }
    }

    #[test]
    fn the_marker_line_is_removed_once() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nx-mirrored-by:  mirror\r\n\r\n";
        assert_eq!(
            strip_marker(head, MARKER).unwrap(),
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        assert!(strip_marker(b"GET / HTTP/1.1\r\n\r\n", MARKER).is_err());
        let twice = b"GET / HTTP/1.1\r\nX-Mirrored-By: mirror\r\nX-Mirrored-By: mirror\r\n\r\n";
        assert!(strip_marker(twice, MARKER).is_err());
    }

    #[test]
    fn shadows_match_as_multisets() {
        let primary = [
            request("GET /a HTTP/1.1\r\n\r\n", ""),
            request("POST /b HTTP/1.1\r\nContent-Length: 1\r\n\r\n", "x"),
        ];
        let marked = |r: &ReceivedRequest| {
            let head = String::from_utf8(r.head.clone()).unwrap();
            let head = head.replacen("\r\n", "\r\nX-Mirrored-By: mirror\r\n", 1);
            request(&head, std::str::from_utf8(&r.body).unwrap())
        };
        let shadow = received(vec![marked(&primary[1]), marked(&primary[0])]);
        assert_eq!(compare_mirrored(&primary, &shadow, MARKER).unwrap(), 2);
        let short = received(vec![marked(&primary[1])]);
        assert!(compare_mirrored(&primary, &short, MARKER).is_err());
        let changed = received(vec![
            marked(&primary[0]),
            marked(&request(
                "POST /b HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
                "y",
            )),
        ]);
        assert!(compare_mirrored(&primary, &changed, MARKER).is_err());
    }
}
