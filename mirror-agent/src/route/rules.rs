//! Which requests a target gets: method allow-list, path allow / deny
//! (prefix or regex), header matches, and a share of what passes.
//!
//! The same [`Rules`] apply globally (every target) and per target; a
//! request goes to a target when both let it through. Checks run in a fixed
//! order and the first that fails names the filter reason: method, path,
//! header, share.

use std::borrow::Cow;
use std::fmt;

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

/// The rules of one level (global or one target). Empty lists allow all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Share of the requests that pass the other rules; `None` is all.
    pub share: Option<Share>,
    /// Every one must hold.
    pub headers: Vec<HeaderMatch>,
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
        if !self.headers.iter().all(|h| h.holds(request)) {
            return Err(FilterReason::Header);
        }
        if let Some(share) = self.share
            && !rng.chance(share)
        {
            return Err(FilterReason::Share);
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
        // FNV-1a.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Rng(h)
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
