//! Which requests a target gets: method allow-list, path allow / deny
//! (prefix or regex), header matches and deny rules, and a share of what
//! passes: at random per request, or by a stable key (a header, a query
//! parameter or the client's address) so the same users are always in it.
//!
//! The same [`Rules`] apply globally (every target) and per target; a
//! request goes to a target when both let it through. Checks run in a fixed
//! order and the first that fails names the filter reason: method, path,
//! header (matches, then deny rules), share (`no_share_key` when the key
//! is missing).
//!
//! # The stable share
//! With `share_by`, a request is in the share when
//! `fnv1a64(key) % 10000 < share × 100` (share in percent, two decimals),
//! where `fnv1a64` is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`,
//! prime `0x100000001b3`) over the key's bytes:
//! * `header:NAME`: the first value of header NAME (name case-insensitive),
//!   as sent, without surrounding whitespace;
//! * `query:NAME`: the value of the first parameter NAME of the request
//!   target's query (name compared byte for byte), as sent, not
//!   percent-decoded;
//! * `client-ip`: the client's IP address as seen by the capture, in text
//!   (`10.1.2.3`, `fd00::1`; an IPv4-mapped IPv6 address as IPv4).
//!
//! The hash takes no seed nor the target's name: every agent, every run and
//! every target choose the same keys, and a larger share only adds keys to
//! a smaller one's. A request without the key (header or parameter absent
//! or empty) is not mirrored: filtered `no_share_key`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use regex::bytes::Regex;

use super::FilterReason;
use crate::http::Request;

/// A share of requests in basis points (1/100 of a percent): 0 to 10 000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Share(u32);

impl Share {
    pub const ALL: Share = Share(10_000);
    pub const NONE: Share = Share(0);

    /// From a percentage, 0 to 100 with at most two decimals.
    pub fn from_percent(percent: f64) -> Result<Share, String> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(format!("{percent} is outside 0 to 100"));
        }
        Ok(Share((percent * 100.0).round() as u32))
    }

    pub fn basis_points(self) -> u32 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
}

impl std::str::FromStr for Share {
    type Err = String;
    fn from_str(text: &str) -> Result<Share, String> {
        let number = text.trim().trim_end_matches('%');
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage such as 10 or 12.5"))?;
        Share::from_percent(value)
    }
}

/// A regex with the text it was compiled from (shown back in the effective
/// configuration). Matches bytes: header values and paths need not be UTF-8.
#[derive(Clone, Debug)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        Regex::new(source)
            .map(Pattern)
            .map_err(|e| format!("bad regex `{source}`: {}", one_line(&e.to_string())))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_match(&self, bytes: &[u8]) -> bool {
        self.0.is_match(bytes)
    }

    /// Every match of the pattern in `haystack` replaced by `replacement`
    /// (`$1`, `${name}`: capture groups; `$$`: a dollar sign).
    pub fn replace_all<'h>(&self, haystack: &'h [u8], replacement: &str) -> Cow<'h, [u8]> {
        self.0.replace_all(haystack, replacement.as_bytes())
    }

    /// Checks that every group `replacement` names exists in the pattern:
    /// the regex crate reads an unknown one (`$2` of a one-group pattern,
    /// `$1a` for `${1}a`) as empty, silently.
    pub fn check_replacement(&self, replacement: &str) -> Result<(), String> {
        let names: Vec<&str> = self.0.capture_names().flatten().collect();
        let groups = self.0.captures_len();
        let bytes = replacement.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            let rest = &replacement[i + 1..];
            let (group, used) = if rest.starts_with('$') {
                i += 2;
                continue;
            } else if let Some(braced) = rest.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => return Err(format!("unclosed `${{` in `{replacement}`")),
                }
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], end)
            };
            let known = match group.parse::<usize>() {
                Ok(n) => n < groups,
                Err(_) => names.contains(&group),
            };
            if group.is_empty() || !known {
                return Err(format!(
                    "`{replacement}` refers to group `{group}`, which `{}` does not have \
                     (groups: $0 to ${}; write ${{1}}x for group 1 followed by x)",
                    self.as_str(),
                    groups - 1
                ));
            }
            i += 1 + used;
        }
        Ok(())
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl std::str::FromStr for Pattern {
    type Err = String;
    fn from_str(source: &str) -> Result<Pattern, String> {
        Pattern::new(source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Pattern {}

/// What a header must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderTest {
    /// The header is there, whatever its value.
    Present,
    /// One of its values is exactly this (case-sensitive).
    Equals(String),
    /// One of its values matches (unanchored: use `^…$` for the whole value).
    Regex(Pattern),
}

/// A header (name case-insensitive) and what it must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub test: HeaderTest,
}

impl HeaderMatch {
    pub fn holds(&self, request: &Request) -> bool {
        request
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(self.name.as_bytes()))
            .any(|(_, value)| match &self.test {
                HeaderTest::Present => true,
                HeaderTest::Equals(v) => value == v.as_bytes(),
                HeaderTest::Regex(p) => p.is_match(value),
            })
    }
}

/// A path rule. Paths are the request target without its query string
/// (for an absolute-form target, the path part of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRule {
    Prefix(String),
    /// Unanchored: use `^` to match from the start.
    Regex(Pattern),
}

impl PathRule {
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathRule::Prefix(p) => path.starts_with(p.as_bytes()),
            PathRule::Regex(r) => r.is_match(path),
        }
    }
}

/// What a stable share hashes (see the [module](self) documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ShareKey {
    /// `header:NAME`: the first value of this header.
    Header(String),
    /// `query:NAME`: the value of the first query parameter of this name.
    Query(String),
    /// `client-ip`: the client's address as seen by the capture.
    ClientIp,
}

impl ShareKey {
    /// The key of `request`; `None` when it has none (or an empty one).
    pub fn of<'r>(&self, request: &'r Request) -> Option<Cow<'r, [u8]>> {
        let key = match self {
            ShareKey::Header(name) => Cow::Borrowed(request.header(name)?),
            ShareKey::Query(name) => Cow::Borrowed(query_param(request.target(), name)?),
            ShareKey::ClientIp => Cow::Owned(
                request
                    .flow
                    .key
                    .client
                    .ip()
                    .to_canonical()
                    .to_string()
                    .into_bytes(),
            ),
        };
        (!key.is_empty()).then_some(key)
    }
}

impl FromStr for ShareKey {
    type Err = String;
    fn from_str(text: &str) -> Result<ShareKey, String> {
        let bad = || format!("`{text}` is not header:NAME, query:NAME or client-ip");
        match text.split_once(':') {
            None if text == "client-ip" => Ok(ShareKey::ClientIp),
            Some(("header", name)) => super::header_name(name).map(ShareKey::Header),
            Some(("query", name)) => {
                if name.is_empty() || name.bytes().any(|b| b <= b' ' || b"&#=?\x7f".contains(&b)) {
                    return Err(format!("`{name}` is not a query parameter name"));
                }
                Ok(ShareKey::Query(name.to_string()))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ShareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareKey::Header(name) => write!(f, "header:{name}"),
            ShareKey::Query(name) => write!(f, "query:{name}"),
            ShareKey::ClientIp => f.write_str("client-ip"),
        }
    }
}

/// 64-bit FNV-1a of `bytes`: the stable share's hash (and the seed of a
/// target's random share, from its name).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A key is in `share` when its hash, modulo 10 000, is below the share in
/// basis points: the same answer on every agent and every run.
pub fn key_in_share(key: &[u8], share: Share) -> bool {
    fnv1a64(key) % 10_000 < u64::from(share.basis_points())
}

/// The value of the first parameter `name` in the query of a request
/// target (after `?`, before `#`), as sent; `None` if there is none.
pub fn query_param<'t>(target: &'t [u8], name: &str) -> Option<&'t [u8]> {
    let target = match memchr::memchr(b'#', target) {
        Some(end) => &target[..end],
        None => target,
    };
    let query = &target[memchr::memchr(b'?', target)? + 1..];
    query.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        (k == name.as_bytes()).then_some(v)
    })
}

/// The rules of one level (global or one target). Empty lists allow all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Share of the requests that pass the other rules; `None` is all.
    pub share: Option<Share>,
    /// The share is chosen by this key instead of at random.
    pub share_by: Option<ShareKey>,
    /// Every one must hold.
    pub headers: Vec<HeaderMatch>,
    /// None may hold (deny rules on headers).
    pub deny_headers: Vec<HeaderMatch>,
    /// Allowed methods (exact, case-sensitive as HTTP methods are).
    pub methods: Vec<String>,
    /// The path must match one of them.
    pub allow_paths: Vec<PathRule>,
    /// The path must match none of them (deny wins over allow).
    pub deny_paths: Vec<PathRule>,
}

impl Rules {
    /// Lets the request through, or says which rule kept it. `rng` draws
    /// the share.
    pub fn check(&self, request: &Request, path: &[u8], rng: &mut Rng) -> Result<(), FilterReason> {
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.as_bytes() == request.method())
        {
            return Err(FilterReason::Method);
        }
        if (!self.allow_paths.is_empty() && !self.allow_paths.iter().any(|r| r.matches(path)))
            || self.deny_paths.iter().any(|r| r.matches(path))
        {
            return Err(FilterReason::Path);
        }
        if !self.headers.iter().all(|h| h.holds(request))
            || self.deny_headers.iter().any(|h| h.holds(request))
        {
            return Err(FilterReason::Header);
        }
        if let Some(share) = self.share {
            let chosen = match &self.share_by {
                None => rng.chance(share),
                Some(key) => {
                    let key = key.of(request).ok_or(FilterReason::NoShareKey)?;
                    key_in_share(&key, share)
                }
            };
            if !chosen {
                return Err(FilterReason::Share);
            }
        }
        Ok(())
    }
}

/// The path of a request target: without query or fragment; for an
/// absolute-form target (`http://host/p`) its path (`/` if empty).
pub fn path_of(target: &[u8]) -> &[u8] {
    let target = match target.iter().position(|b| *b == b'?' || *b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    if target.first() == Some(&b'/') {
        return target;
    }
    match memchr::memmem::find(target, b"://") {
        Some(i) => {
            let after = &target[i + 3..];
            match after.iter().position(|b| *b == b'/') {
                Some(j) => &after[j..],
                None => b"/",
            }
        }
        None => target,
    }
}

/// The path as a server would match it, for the path rules: percent escapes
/// decoded, dot segments removed, repeated slashes merged (RFC 3986 §5.2.4,
/// and what nginx does). `//admin/x`, `/%61dmin/x`, `/./admin/x` and
/// `/a/../admin/x` are all `/admin/x`: a deny rule cannot be walked around
/// by spelling. Only the rules see it; the shadow gets the client's bytes.
pub fn normalized_path(target: &[u8]) -> Cow<'_, [u8]> {
    let path = path_of(target);
    let plain = !path.contains(&b'%')
        && memchr::memmem::find(path, b"//").is_none()
        && memchr::memmem::find(path, b"/.").is_none();
    if plain {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decoded(path);
    let mut segments: Vec<&[u8]> = Vec::new();
    let last = decoded
        .split(|b| *b == b'/')
        .next_back()
        .unwrap_or_default();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    // A directory stays one: `/a/`, `/a/.`, `/a/b/..` all end in `/`.
    if out.is_empty() || matches!(last, b"" | b"." | b"..") {
        out.push(b'/');
    }
    Cow::Owned(out)
}

/// Every `%XX` decoded; a `%` not followed by two hex digits is kept.
fn percent_decoded(path: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%'
            && let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

/// A small deterministic PRNG (splitmix64) for the shares: one per target
/// and one for the global share, owned by the router (no sharing, no locks).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from a name, so a target draws the same sequence every run.
    pub fn from_name(name: &str) -> Rng {
        Rng(fnv1a64(name.as_bytes()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `share`.
    pub fn chance(&mut self, share: Share) -> bool {
        if share >= Share::ALL {
            return true;
        }
        if share.0 == 0 {
            return false;
        }
        (self.next_u64() % 10_000) < u64::from(share.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_as_percent() {
        assert_eq!("12.5".parse::<Share>().unwrap().basis_points(), 1250);
        assert_eq!("10%".parse::<Share>().unwrap().basis_points(), 1000);
        assert!("101".parse::<Share>().is_err());
        assert!("-1".parse::<Share>().is_err());
        assert!("ten".parse::<Share>().is_err());
        assert_eq!(Share::from_percent(0.5).unwrap().to_string(), "0.5%");
    }

    #[test]
    fn a_share_draws_close_to_its_rate() {
        let mut rng = Rng::from_name("t");
        let share = Share::from_percent(10.0).unwrap();
        let hits = (0..100_000).filter(|_| rng.chance(share)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert!((0..100).all(|_| rng.chance(Share::ALL)));
        assert!((0..100).all(|_| !rng.chance(Share(0))));
    }

    #[test]
    fn paths_leave_out_the_query_and_the_authority() {
        assert_eq!(path_of(b"/api/x?y=1"), b"/api/x");
        assert_eq!(path_of(b"/a#frag"), b"/a");
        assert_eq!(path_of(b"http://h:1/p/q?z"), b"/p/q");
        assert_eq!(path_of(b"http://h"), b"/");
        assert_eq!(path_of(b"*"), b"*");
        assert_eq!(path_of(b"example.com:443"), b"example.com:443");
    }

    #[test]
    fn paths_are_normalised_as_servers_match_them() {
        let norm = |t: &[u8]| String::from_utf8_lossy(&normalized_path(t)).into_owned();
        for spelled in [
            &b"/admin/x"[..],
            b"//admin/x",
            b"/%61dmin/x",
            b"/%2Fadmin/x",
            b"/./admin/x",
            b"/a/../admin/x",
            b"/a/b/../../admin/./x",
            b"/../admin/x",
            b"http://h/%61dmin//x?q=/../y",
        ] {
            assert_eq!(
                norm(spelled),
                "/admin/x",
                "{}",
                String::from_utf8_lossy(spelled)
            );
        }
        assert_eq!(norm(b"/a/"), "/a/");
        assert_eq!(norm(b"/a/b/.."), "/a/");
        assert_eq!(norm(b"/a/."), "/a/");
        assert_eq!(norm(b"/"), "/");
        assert_eq!(norm(b"/%zz/%4"), "/%zz/%4", "bad escapes kept");
        assert!(matches!(
            normalized_path(b"/plain/path?x"),
            Cow::Borrowed(b"/plain/path")
        ));
    }

    #[test]
    fn a_bad_regex_is_reported_on_one_line() {
        let err = Pattern::new("a(b").unwrap_err();
        assert!(err.starts_with("bad regex `a(b`"), "{err}");
        assert!(!err.contains('\n'));
    }
}
