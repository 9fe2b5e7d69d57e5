//! What a target receives: the client's head byte for byte, except for the
//! configured rewrites, applied at the byte level.
//!
//! * stripped headers: their lines are left out (every occurrence);
//! * set headers: existing lines of that name are left out, and
//!   `Name: value` is appended after the client's last header;
//! * Host (`--host-header`): `original` keeps the client's line; `target`
//!   or a literal value replace the value in place (name case and position
//!   kept), or append a Host line if the client sent none;
//! * header value rewrites (`--rewrite-header`): each value of that name
//!   goes through every rule (global ones, then the target's), in place;
//! * forwarded-for (`--forwarded-for`): the client's IP address as the
//!   capture saw it is appended to the last `X-Forwarded-For` line (`, `
//!   then the address), or a line is added, before the marker;
//! * the marker header (`X-Mirrored-By: mirror`) is appended last;
//! * the request target: origin form, path rewrites, query edits, the target
//!   URL's path prefix (see `request_target`).
//!
//! The body goes out as received for Content-Length requests. A chunked
//! request (the framer refuses one that also carries a `Content-Length`)
//! keeps its `Transfer-Encoding: chunked` head and is re-framed as a single chunk
//! followed by the client's trailer fields, stripped and set headers left
//! out (see [`BodyFraming::Chunked`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::request_target::{HeaderRewrite, PathRewrite, QueryParam, TargetRewrite};
use super::{BodyFraming, PreparedRequest, StreamedBody, TargetUrl};
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

/// Where the client's address goes (`--forwarded-for`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardedFor {
    /// Not added (a target's `forwarded_for = false` over a global one).
    Off,
    /// Appended to this header (`X-Forwarded-For` for the plain flag).
    Header(String),
}

/// The header `--forwarded-for` appends to.
pub const FORWARDED_FOR: &str = "X-Forwarded-For";

impl FromStr for ForwardedFor {
    type Err = String;
    fn from_str(text: &str) -> Result<ForwardedFor, String> {
        match text {
            "false" | "off" => Ok(ForwardedFor::Off),
            "true" | "on" => Ok(ForwardedFor::Header(FORWARDED_FOR.into())),
            name => header_name(name).map(ForwardedFor::Header),
        }
    }
}

impl fmt::Display for ForwardedFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardedFor::Off => f.write_str("off"),
            ForwardedFor::Header(name) => f.write_str(name),
        }
    }
}

/// Rewrites of one level (global or one target).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// `None`: inherit (from the global level; `original` there).
    pub host: Option<HostHeader>,
    /// Headers set (replacing the client's of that name), in this order.
    pub set: Vec<HeaderLine>,
    /// Headers left out (case-insensitive names).
    pub strip: Vec<String>,
    /// Path rewrites; the first that matches applies (a target's own are
    /// tried before the global ones).
    pub paths: Vec<PathRewrite>,
    /// Header value rewrites, each applied in turn (global, then target).
    pub headers: Vec<HeaderRewrite>,
    /// Query parameters left out, by name.
    pub remove_query: Vec<String>,
    /// Query parameters set (replacing the client's of that name).
    pub set_query: Vec<QueryParam>,
    /// `None`: inherit (from the global level; off there).
    pub forwarded_for: Option<ForwardedFor>,
}

/// The rewrites of one target, global and per-target merged and rendered
/// once; targets with equal sets share the prepared bytes of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RewriteSet {
    /// Names whose lines are left out: stripped and set headers.
    drop: Vec<String>,
    /// Rendered lines appended after the client's headers: set headers.
    append: Vec<u8>,
    /// The marker line, appended last.
    marker: Vec<u8>,
    /// Replacement Host value; `None` keeps the client's.
    host: Option<Vec<u8>>,
    /// Header value rewrites, in the order they apply.
    values: Vec<HeaderRewrite>,
    /// The header the client's address is appended to.
    forwarded_for: Option<String>,
    target: TargetRewrite,
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
        let render = |lines: &mut dyn Iterator<Item = &HeaderLine>| {
            let mut out = Vec::new();
            for line in lines {
                out.extend_from_slice(line.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(line.value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out
        };
        let append = render(&mut set.into_iter());
        let marker = render(&mut marker.into_iter());
        let host = match target.host.as_ref().or(global.host.as_ref()) {
            None | Some(HostHeader::Original) => None,
            Some(HostHeader::Target) => Some(url.authority.as_bytes().to_vec()),
            Some(HostHeader::Value(v)) => Some(v.as_bytes().to_vec()),
        };
        let mut set_query: Vec<QueryParam> = Vec::new();
        for param in global.set_query.iter().chain(&target.set_query) {
            match set_query.iter_mut().find(|p| p.name == param.name) {
                Some(slot) => *slot = param.clone(),
                None => set_query.push(param.clone()),
            }
        }
        let mut remove_query: Vec<String> = Vec::new();
        for name in global.remove_query.iter().chain(&target.remove_query) {
            if !remove_query.contains(name) {
                remove_query.push(name.clone());
            }
        }
        let forwarded_for = match target
            .forwarded_for
            .as_ref()
            .or(global.forwarded_for.as_ref())
        {
            None | Some(ForwardedFor::Off) => None,
            Some(ForwardedFor::Header(name)) => Some(name.clone()),
        };
        RewriteSet {
            drop,
            append,
            marker,
            host,
            values: global
                .headers
                .iter()
                .chain(&target.headers)
                .cloned()
                .collect(),
            forwarded_for,
            target: TargetRewrite {
                paths: target.paths.iter().chain(&global.paths).cloned().collect(),
                remove_query,
                set_query,
                prefix: url.path_prefix.as_bytes().to_vec(),
            },
        }
    }

    /// The value a kept header line goes out with: the Host replacement,
    /// or the value rewrites of its name; `None` when it is the client's.
    fn new_value(&self, name: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        if let Some(host) = &self.host
            && name.eq_ignore_ascii_case(b"host")
        {
            return Some(host.clone());
        }
        let mut current: Option<Vec<u8>> = None;
        for rule in &self.values {
            if !rule.name.as_bytes().eq_ignore_ascii_case(name) {
                continue;
            }
            let before = current.as_deref().unwrap_or(value);
            if rule.pattern.is_match(before) {
                current = Some(
                    rule.pattern
                        .replace_all(before, &rule.replacement)
                        .into_owned(),
                );
            }
        }
        current
    }

    fn drops(&self, name: &[u8]) -> bool {
        self.drop
            .iter()
            .any(|d| d.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The bytes this target receives for `request`.
    pub fn apply(&self, request: &Request) -> PreparedRequest {
        let head = &request.head[..];
        let client = self
            .forwarded_for
            .as_ref()
            .map(|_| request.flow.key.client.ip().to_canonical().to_string());
        let extra = self.target.prefix.len()
            + self.append.len()
            + self.marker.len()
            + self.host.as_ref().map_or(0, |h| h.len() + 8)
            + client.as_ref().map_or(0, |c| c.len() + 40)
            + if request.chunked {
                request.trailers.len() + 32
            } else {
                0
            };
        let mut out = Vec::with_capacity(head.len() + extra);
        let mut cursor = 0;

        let target = request.target.range();
        if let Some(new_target) = head.get(target.clone()).and_then(|t| self.target.apply(t)) {
            out.extend_from_slice(&head[..target.start]);
            out.extend_from_slice(&new_target);
            cursor = target.end;
        }

        // The line the client's address is appended to: the last kept one
        // of that name.
        let forwarded_line = self.forwarded_for.as_ref().and_then(|name| {
            request.headers.iter().rposition(|h| {
                let n = &head[h.name.range()];
                n.eq_ignore_ascii_case(name.as_bytes()) && !self.drops(n)
            })
        });

        let mut host_seen = false;
        for (i, h) in request.headers.iter().enumerate() {
            let name = &head[h.name.range()];
            let line_start = h.name.start as usize;
            if line_start < cursor {
                continue;
            }
            if self.drops(name) {
                out.extend_from_slice(&head[cursor..line_start]);
                cursor = line_end(head, h.name.end as usize);
                continue;
            }
            host_seen |= name.eq_ignore_ascii_case(b"host");
            let value = h.value.range();
            let value_start = value.start.max(h.name.end as usize + 1);
            let value_end = value.end.max(value_start);
            let mut new_value = self.new_value(name, &head[value_start..value_end]);
            if forwarded_line == Some(i)
                && let Some(client) = &client
            {
                let mut v = new_value.unwrap_or_else(|| head[value_start..value_end].to_vec());
                if !v.is_empty() {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(client.as_bytes());
                new_value = Some(v);
            }
            if let Some(v) = new_value {
                out.extend_from_slice(&head[cursor..value_start]);
                out.extend_from_slice(&v);
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
        if let (Some(name), Some(client), None) = (&self.forwarded_for, &client, forwarded_line) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(client.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.marker);
        out.extend_from_slice(&head[end_line..]);

        if let Some(body) = &request.stream {
            // The body follows as it arrives; its trailers at its end.
            let streamed = StreamedBody {
                body: body.clone(),
                chunked: request.chunked,
                drop_trailers: self.drop.clone(),
            };
            return PreparedRequest::new(out, Bytes::new(), BodyFraming::AsIs)
                .streaming(streamed)
                .with_connection(request.method(), keeps_alive(request), request.upgrade)
                .with_captured_ns(request.complete_ns);
        }
        let trailers = strip_trailers(&self.drop, &request.trailers);
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

/// The trailer lines a target receives: stripped and set headers (`drop`)
/// are left out there too.
pub(super) fn strip_trailers<'a>(drop: &[String], trailers: &'a [u8]) -> Cow<'a, [u8]> {
    let dropped = |line: &[u8]| {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        drop.iter().any(|d| d.as_bytes().eq_ignore_ascii_case(name))
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
