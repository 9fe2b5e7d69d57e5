//! What a target receives: the client's head byte for byte, except for the
//! configured rewrites, applied at the byte level.
//!
//! * stripped headers: their lines are left out (every occurrence);
//! * set headers: existing lines of that name are left out, and
//!   `Name: value` is appended after the client's last header;
//! * Host (`--host-header`): `original` keeps the client's line; `target`
//!   or a literal value replace the value in place (name case and position
//!   kept), or append a Host line if the client sent none;
//! * the marker header (`X-Mirrored-By: mirror`) is appended last;
//! * a target URL path prefix is inserted before the request target's path.
//!
//! The body goes out as received for Content-Length requests. A chunked
//! request keeps its `Transfer-Encoding: chunked` head, loses any
//! `Content-Length` (RFC 9112 §6.3) and is re-framed as a single chunk
//! followed by the client's trailer fields, stripped and set headers left
//! out (see [`BodyFraming::Chunked`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::{BodyFraming, PreparedRequest, TargetUrl};
use crate::http::{Request, Version};

/// `true` for the characters of an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a header name.
pub fn header_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the header name is empty".into());
    }
    if let Some(c) = name.bytes().find(|b| !is_tchar(*b)) {
        return Err(format!(
            "`{name}` is not a header name (`{}` is not allowed)",
            (c as char).escape_default()
        ));
    }
    Ok(name.to_string())
}

/// Checks a header value (surrounding whitespace removed).
pub fn header_value(value: &str) -> Result<String, String> {
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "the value `{}` has control characters (CR, LF, ...)",
            value.escape_default()
        ));
    }
    Ok(value.to_string())
}

/// A header field `Name: value`, as `--set-header` and `--marker-header`
/// take it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderLine {
    pub name: String,
    pub value: String,
}

impl FromStr for HeaderLine {
    type Err = String;
    fn from_str(text: &str) -> Result<HeaderLine, String> {
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!("`{text}` is not a header such as 'X-Env: shadow'"));
        };
        Ok(HeaderLine {
            name: header_name(name)?,
            value: header_value(value)?,
        })
    }
}

impl fmt::Display for HeaderLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// The marker added to every mirrored request, `X-Mirrored-By: mirror`
/// unless configured.
pub fn default_marker() -> HeaderLine {
    HeaderLine {
        name: "X-Mirrored-By".into(),
        value: "mirror".into(),
    }
}

/// The Host header a target receives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum HostHeader {
    /// As the client sent it (default).
    #[default]
    Original,
    /// The target URL's `host[:port]`.
    Target,
    /// This value.
    Value(String),
}

impl FromStr for HostHeader {
    type Err = String;
    fn from_str(text: &str) -> Result<HostHeader, String> {
        Ok(match text {
            "original" => HostHeader::Original,
            "target" => HostHeader::Target,
            "" => return Err("empty Host value (use original, target or a value)".into()),
            value => HostHeader::Value(header_value(value)?),
        })
    }
}

impl fmt::Display for HostHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostHeader::Original => f.write_str("original"),
            HostHeader::Target => f.write_str("target"),
            HostHeader::Value(v) => f.write_str(v),
        }
    }
}

/// Header rewrites of one level (global or one target).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// `None`: inherit (from the global level; `original` there).
    pub host: Option<HostHeader>,
    /// Headers set (replacing the client's of that name), in this order.
    pub set: Vec<HeaderLine>,
    /// Headers left out (case-insensitive names).
    pub strip: Vec<String>,
}

/// The rewrites of one target, global and per-target merged and rendered
/// once; targets with equal sets share the prepared bytes of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RewriteSet {
    /// Names whose lines are left out: stripped and set headers.
    drop: Vec<String>,
    /// Rendered lines appended after the client's headers: set headers,
    /// then the marker.
    append: Vec<u8>,
    /// Replacement Host value; `None` keeps the client's.
    host: Option<Vec<u8>>,
    path_prefix: Vec<u8>,
}

impl RewriteSet {
    pub fn new(
        global: &Rewrites,
        target: &Rewrites,
        marker: Option<&HeaderLine>,
        url: &TargetUrl,
    ) -> RewriteSet {
        let mut set: Vec<&HeaderLine> = Vec::new();
        for line in global.set.iter().chain(&target.set) {
            match set
                .iter_mut()
                .find(|l| l.name.eq_ignore_ascii_case(&line.name))
            {
                Some(slot) => *slot = line,
                None => set.push(line),
            }
        }
        let mut drop: Vec<String> = Vec::new();
        for name in global
            .strip
            .iter()
            .chain(&target.strip)
            .chain(set.iter().map(|l| &l.name))
        {
            if !drop.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                drop.push(name.clone());
            }
        }
        let mut append = Vec::new();
        for line in set.into_iter().chain(marker) {
            append.extend_from_slice(line.name.as_bytes());
            append.extend_from_slice(b": ");
            append.extend_from_slice(line.value.as_bytes());
            append.extend_from_slice(b"\r\n");
        }
        let host = match target.host.as_ref().or(global.host.as_ref()) {
            None | Some(HostHeader::Original) => None,
            Some(HostHeader::Target) => Some(url.authority.as_bytes().to_vec()),
            Some(HostHeader::Value(v)) => Some(v.as_bytes().to_vec()),
        };
        RewriteSet {
            drop,
            append,
            host,
            path_prefix: url.path_prefix.as_bytes().to_vec(),
        }
    }

    fn drops(&self, name: &[u8]) -> bool {
        self.drop
            .iter()
            .any(|d| d.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The trailer lines a target receives: stripped and set headers are
    /// left out there too.
    fn trailers<'a>(&self, trailers: &'a [u8]) -> Cow<'a, [u8]> {
        let dropped = |line: &[u8]| {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            self.drops(name.trim_ascii())
        };
        if !trailers.split_inclusive(|b| *b == b'\n').any(dropped) {
            return Cow::Borrowed(trailers);
        }
        Cow::Owned(
            trailers
                .split_inclusive(|b| *b == b'\n')
                .filter(|line| !dropped(line))
                .flatten()
                .copied()
                .collect(),
        )
    }

    /// The bytes this target receives for `request`.
    pub fn apply(&self, request: &Request) -> PreparedRequest {
        let head = &request.head[..];
        let extra = self.path_prefix.len()
            + self.append.len()
            + self.host.as_ref().map_or(0, |h| h.len() + 8)
            + if request.chunked {
                request.trailers.len() + 32
            } else {
                0
            };
        let mut out = Vec::with_capacity(head.len() + extra);
        let mut cursor = 0;

        if !self.path_prefix.is_empty()
            && let Some(at) = prefix_position(head, request.target.range())
        {
            out.extend_from_slice(&head[..at]);
            out.extend_from_slice(&self.path_prefix);
            cursor = at;
        }

        let mut host_seen = false;
        for h in &request.headers {
            let name = &head[h.name.range()];
            let line_start = h.name.start as usize;
            if line_start < cursor {
                continue;
            }
            // A chunked request goes out without the Content-Length it may
            // also carry (RFC 9112 §6.3: an intermediary removes it), so no
            // shadow sees two framings it could read differently.
            let stale_length = request.chunked && name.eq_ignore_ascii_case(b"content-length");
            if self.drops(name) || stale_length {
                out.extend_from_slice(&head[cursor..line_start]);
                cursor = line_end(head, h.name.end as usize);
            } else if let Some(host) = &self.host
                && name.eq_ignore_ascii_case(b"host")
            {
                host_seen = true;
                let value = h.value.range();
                let value_start = value.start.max(h.name.end as usize + 1);
                let value_end = value.end.max(value_start);
                out.extend_from_slice(&head[cursor..value_start]);
                out.extend_from_slice(host);
                cursor = value_end;
            }
        }

        let end_line = final_line_start(head).max(cursor);
        out.extend_from_slice(&head[cursor..end_line]);
        if let Some(host) = &self.host
            && !host_seen
        {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.append);
        out.extend_from_slice(&head[end_line..]);

        let trailers = self.trailers(&request.trailers);
        let framing = if request.chunked {
            BodyFraming::Chunked {
                trailers: &trailers,
            }
        } else {
            BodyFraming::AsIs
        };
        PreparedRequest::new(out, request.body.clone(), framing)
            .with_connection(request.method(), keeps_alive(request), request.upgrade)
            .with_captured_ns(request.complete_ns)
    }
}

/// Where a path prefix goes in the request line: before the path of an
/// origin-form or absolute-form target; `None` for `*` and CONNECT's
/// authority form.
fn prefix_position(head: &[u8], target: std::ops::Range<usize>) -> Option<usize> {
    let t = head.get(target.clone())?;
    if t.first() == Some(&b'/') {
        return Some(target.start);
    }
    let scheme_end = memchr::memmem::find(t, b"://")? + 3;
    let path = t[scheme_end..]
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(t.len(), |p| scheme_end + p);
    Some(target.start + path)
}

/// The position after the line end that follows `from`.
fn line_end(head: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &head[from..]).map_or(head.len(), |i| from + i + 1)
}

/// Start of the empty line that ends the head (`\r\n` or a bare `\n`).
fn final_line_start(head: &[u8]) -> usize {
    let n = head.len();
    if n >= 2 && head[n - 2] == b'\r' {
        n - 2
    } else {
        n.saturating_sub(1)
    }
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The request leaves its connection open: HTTP/1.1 unless
/// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
fn keeps_alive(request: &Request) -> bool {
    let connection = || {
        request
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .map(|(_, v)| v)
    };
    match request.version {
        Version::Http11 => !connection().any(|v| has_token(v, b"close")),
        Version::Http10 => connection().any(|v| has_token(v, b"keep-alive")),
    }
}
