//! Which endpoint a request is for: `POST /orders/123?x=1&y=2` →
//! `POST /orders/{id}?x&y`, so that the report counts differences per
//! route and query shape, not per URL. A bounded set of names keeps the
//! report (and any metric labelled with it) from growing with the traffic.

use std::collections::HashSet;
use std::sync::Arc;

use super::visible::is_invisible;

/// Longest template kept (characters); longer ones end in `…`.
pub const MAX_TEMPLATE_CHARS: usize = 160;

/// Longest method kept (characters).
const MAX_METHOD_CHARS: usize = 24;

/// What an id-like path segment becomes.
pub const ID: &str = "{id}";

/// Query keys kept in a template; more are written `&…`.
const MAX_QUERY_KEYS: usize = 8;

/// Longest query key kept (characters).
const MAX_KEY_CHARS: usize = 32;

/// The name shared by every endpoint past the bound of [`Endpoints`].
pub const OTHER: &str = "other";

/// The endpoint template of a request: its method and path, id-like
/// segments (numbers, UUIDs, hex ids, base64 and other opaque tokens)
/// written `{id}`, then the query's shape: the set of its keys, sorted,
/// without their values (`GET /posts?_page&_per_page` apart from
/// `GET /posts?_sort`: a paging bug and a sorting bug are told apart); the
/// fragment left out. An absolute-form target (`http://host/path`) counts
/// by its path; `*` stays `*`; an empty path is `/`. Bytes that are not
/// UTF-8, and control characters, are escaped.
pub fn template(method: &[u8], target: &[u8]) -> String {
    let mut out = String::new();
    push_escaped(&mut out, method, MAX_METHOD_CHARS);
    out.push(' ');
    let target = target.split(|&b| b == b'#').next().unwrap_or_default();
    let (target, query) = match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &b""[..]),
    };
    if target == b"*" {
        out.push('*');
        return out;
    }
    if method == b"CONNECT" {
        // host:port: one endpoint, whichever host.
        out.push_str("{authority}");
        return out;
    }
    let path = path_of(target);
    if path.is_empty() {
        out.push('/');
    }
    let limit = out.chars().count() + MAX_TEMPLATE_CHARS;
    for (index, segment) in path.split(|&b| b == b'/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        if is_id(segment) {
            out.push_str(ID);
        } else {
            push_escaped(&mut out, segment, MAX_TEMPLATE_CHARS);
        }
        if out.chars().count() > limit {
            let end = out
                .char_indices()
                .nth(limit)
                .map_or(out.len(), |(at, _)| at);
            out.truncate(end);
            out.push('…');
            return out;
        }
    }
    push_query_shape(&mut out, query);
    out
}

/// `?a&b` for a query with the keys `b` and `a` (each once, sorted, at
/// most [`MAX_QUERY_KEYS`]); nothing for an empty query.
fn push_query_shape(out: &mut String, query: &[u8]) {
    let mut keys: Vec<&[u8]> = query
        .split(|&b| b == b'&' || b == b';')
        .map(|pair| pair.split(|&b| b == b'=').next().unwrap_or_default())
        .filter(|key| !key.is_empty())
        .collect();
    if keys.is_empty() {
        return;
    }
    keys.sort_unstable();
    keys.dedup();
    for (index, key) in keys.iter().enumerate() {
        out.push(if index == 0 { '?' } else { '&' });
        if index == MAX_QUERY_KEYS {
            out.push('…');
            break;
        }
        push_escaped(out, key, MAX_KEY_CHARS);
    }
}

/// The path of an origin-form target, or of an absolute-form one
/// (`scheme://authority/path`, the authority dropped).
fn path_of(target: &[u8]) -> &[u8] {
    if target.starts_with(b"/") {
        return target;
    }
    let Some(after_scheme) = find(target, b"://") else {
        return target;
    };
    let scheme = &target[..after_scheme];
    if scheme.is_empty()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return target;
    }
    let rest = &target[after_scheme + 3..];
    match rest.iter().position(|&b| b == b'/') {
        Some(slash) => &rest[slash..],
        None => b"",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A path segment that names one thing among many: all digits; a UUID;
/// 8 or more hex digits with at least one digit (so `deadbeef` the word
/// stays); an opaque token (see [`is_opaque`]).
fn is_id(segment: &[u8]) -> bool {
    if segment.is_empty() {
        return false;
    }
    let has_digit = segment.iter().any(u8::is_ascii_digit);
    let all_digits = segment.iter().all(u8::is_ascii_digit);
    let hex_id = segment.len() >= 8 && has_digit && segment.iter().all(u8::is_ascii_hexdigit);
    all_digits || hex_id || is_uuid(segment) || is_opaque(segment)
}

/// A token no one would name a route after: base64 (or base64url) and the
/// like. Words and slugs stay (`getting-started`, `getUserProfile`,
/// `jquery-3.6.0.min.js`): a token is made of base64's letters only and
/// is 20 or more of them mixing letters and digits (today's session ids,
/// tokens); or 12 or more ending in `=` padding; or 16 or more mixing
/// digits with both cases; or 20 or more letters whose case flips at
/// least every third letter, as random letters do and camelCase does not.
fn is_opaque(segment: &[u8]) -> bool {
    let base64ish = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'=');
    if !segment.iter().all(base64ish) {
        return false;
    }
    let len = segment.len();
    let has_digit = segment.iter().any(u8::is_ascii_digit);
    let has_letter = segment.iter().any(u8::is_ascii_alphabetic);
    let has_upper = segment.iter().any(u8::is_ascii_uppercase);
    let has_lower = segment.iter().any(u8::is_ascii_lowercase);
    let padded = len >= 12 && segment.ends_with(b"=") && has_letter;
    let mixed_token = len >= 20 && has_digit && has_letter;
    let mixed_case_token = len >= 16 && has_digit && has_upper && has_lower;
    let letters: Vec<bool> = segment
        .iter()
        .filter(|b| b.is_ascii_alphabetic())
        .map(u8::is_ascii_uppercase)
        .collect();
    let flips = letters.windows(2).filter(|w| w[0] != w[1]).count();
    let random_letters = letters.len() >= 20 && flips * 3 >= letters.len();
    padded || mixed_token || mixed_case_token || random_letters
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(segment: &[u8]) -> bool {
    segment.len() == 36
        && segment.iter().enumerate().all(|(at, b)| match at {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Appends `bytes` as text, at most `max` characters: invalid UTF-8 as
/// `\xNN`, control characters and `\` escaped.
fn push_escaped(out: &mut String, bytes: &[u8], max: usize) {
    let mut written = 0;
    let mut push = |out: &mut String, piece: &str| {
        if written < max {
            out.push_str(piece);
        }
        written += 1;
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() || is_invisible(c) {
                push(out, &c.escape_default().to_string());
            } else {
                push(out, c.encode_utf8(&mut [0; 4]));
            }
        }
        for byte in chunk.invalid() {
            push(out, &format!("\\x{byte:02x}"));
        }
    }
    if written > max {
        out.push('…');
    }
}

/// A bounded set of endpoint names.
///
/// The first `max` distinct templates keep their own name; every later new
/// one is counted under the one pooled name [`OTHER`]. Templates already
/// collapse ids, so `max` is reached only by a service with very many
/// routes, or by paths with ids the heuristics miss (words used as keys):
/// the report and its labels stay bounded either way, and `other`
/// growing says so.
#[derive(Debug)]
pub struct Endpoints {
    max: usize,
    known: HashSet<Arc<str>>,
    other: Arc<str>,
}

impl Endpoints {
    /// Keeps at most `max` names apart from [`OTHER`].
    pub fn new(max: usize) -> Endpoints {
        Endpoints {
            max,
            known: HashSet::new(),
            other: Arc::from(OTHER),
        }
    }

    /// Keeps at most `max` names apart from now on; names already given
    /// stay.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The name to count `template` under: itself if known or if there is
    /// room, else [`OTHER`]. Known names are shared, not copied.
    pub fn name(&mut self, template: String) -> Arc<str> {
        if let Some(known) = self.known.get(template.as_str()) {
            return Arc::clone(known);
        }
        if self.known.len() >= self.max {
            return Arc::clone(&self.other);
        }
        let name: Arc<str> = Arc::from(template);
        self.known.insert(Arc::clone(&name));
        name
    }

    /// Names kept apart so far (without [`OTHER`]).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// No new name will be kept apart.
    pub fn is_full(&self) -> bool {
        self.known.len() >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(method: &str, target: &[u8]) -> String {
        template(method.as_bytes(), target)
    }

    #[test]
    fn ids_in_the_path_become_placeholders() {
        for (method, target, want) in [
            ("POST", &b"/orders/123"[..], "POST /orders/{id}"),
            (
                "GET",
                b"/users/550e8400-e29b-41d4-a716-446655440000/cart",
                "GET /users/{id}/cart",
            ),
            ("GET", b"/static/app.js", "GET /static/app.js"),
            ("GET", b"/v1/items?id=3", "GET /v1/items?id"),
            ("GET", b"/v1/items#top", "GET /v1/items"),
            ("GET", b"/blobs/5f2b9c0e1a", "GET /blobs/{id}"),
            ("GET", b"/words/deadbeef", "GET /words/deadbeef"),
            ("GET", b"/hex/abc123", "GET /hex/abc123"),
            ("GET", b"/s/AbCdEfGh12345678_-xyZ/view", "GET /s/{id}/view"),
            (
                "GET",
                b"/docs/getting-started-with-the-api",
                "GET /docs/getting-started-with-the-api",
            ),
            ("GET", b"/a/1/b/2/", "GET /a/{id}/b/{id}/"),
            ("GET", b"/v2/users", "GET /v2/users"),
        ] {
            assert_eq!(
                t(method, target),
                want,
                "{}",
                String::from_utf8_lossy(target)
            );
        }
    }

    #[test]
    fn the_query_counts_by_its_set_of_keys() {
        for (target, want) in [
            (&b"/posts"[..], "GET /posts"),
            (b"/posts?", "GET /posts"),
            (b"/posts?_page=2&_per_page=10", "GET /posts?_page&_per_page"),
            (b"/posts?_per_page=5&_page=1", "GET /posts?_page&_per_page"),
            (b"/posts?_sort=title", "GET /posts?_sort"),
            (b"/posts?_start=0&_end=10", "GET /posts?_end&_start"),
            (b"/posts?title_like=rem&q", "GET /posts?q&title_like"),
            (b"/posts?tag=a&tag=b", "GET /posts?tag"),
            (b"/posts?=x&&a", "GET /posts?a"),
            (b"/posts/7?x=1#frag", "GET /posts/{id}?x"),
            (b"/posts#?notquery", "GET /posts"),
            (b"/s?a=1;b=2", "GET /s?a&b"),
        ] {
            assert_eq!(
                t("GET", target),
                want,
                "{}",
                String::from_utf8_lossy(target)
            );
        }
        let many: String = (0..20).map(|i| format!("k{i:02}=v&")).collect();
        let made = t("GET", format!("/s?{many}").as_bytes());
        assert_eq!(made, "GET /s?k00&k01&k02&k03&k04&k05&k06&k07&…");
        let long_key = format!("/s?{}=1", "k".repeat(100));
        assert!(t("GET", long_key.as_bytes()).chars().count() <= "GET /s?".len() + 33);
        assert_eq!(t("GET", b"/s?\x01=\xff"), r"GET /s?\u{1}");
    }

    #[test]
    fn opaque_segments_are_ids_and_words_are_not() {
        for segment in [
            "SGVsbG8gV29ybGQ=",
            "aGVsbG8gd29ybGQgZm9yIGV2ZXI",
            "eyJhbGciOiJIUzI1NiJ9",
            "xKqPzRtWmYbNvLcHdJfGsA",
            "dGhpcyBpcyBhIHRlc3Q-_x",
        ] {
            assert_eq!(
                t("GET", format!("/base64/{segment}").as_bytes()),
                "GET /base64/{id}",
                "{segment}"
            );
        }
        for word in [
            "getUserProfileSettings",
            "XMLHttpRequestHandler",
            "jquery-3.6.0.min.js",
            "getting-started-with-the-api",
            "SGVsbG8",
            "release-2024",
            "v2",
        ] {
            assert_eq!(
                t("GET", format!("/x/{word}").as_bytes()),
                format!("GET /x/{word}"),
                "{word}"
            );
        }
    }

    #[test]
    fn absolute_star_and_empty_targets() {
        assert_eq!(
            t("GET", b"http://shop.example:8080/orders/9?x"),
            "GET /orders/{id}?x"
        );
        assert_eq!(t("GET", b"HTTPS://shop.example"), "GET /");
        assert_eq!(t("OPTIONS", b"*"), "OPTIONS *");
        assert_eq!(t("GET", b""), "GET /");
        assert_eq!(t("GET", b"?only=query"), "GET /?only");
        assert_eq!(t("CONNECT", b"db.internal:5432"), "CONNECT {authority}");
    }

    #[test]
    fn bytes_that_are_not_text_are_escaped() {
        assert_eq!(t("GET", b"/caf\xe9/\x01x"), r"GET /caf\xe9/\u{1}x");
        assert_eq!(template(b"G\xffT", b"/"), r"G\xffT /");
        assert_eq!(t("GET", "/café".as_bytes()), "GET /café");
    }

    #[test]
    fn a_template_is_bounded() {
        let long = format!("/{}", "segment/".repeat(100));
        let made = t("GET", long.as_bytes());
        assert_eq!(made.chars().count(), "GET ".len() + MAX_TEMPLATE_CHARS + 1);
        assert!(made.ends_with('…'));
        let one_long = format!("/{}", "é".repeat(1000));
        assert!(
            t("GET", one_long.as_bytes()).chars().count() <= "GET ".len() + MAX_TEMPLATE_CHARS + 2
        );
        let method = "M".repeat(100);
        assert_eq!(t(&method, b"/").chars().count(), MAX_METHOD_CHARS + 1 + 2);
    }

    #[test]
    fn the_set_of_names_is_bounded_and_later_ones_share_other() {
        let mut endpoints = Endpoints::new(2);
        let first = endpoints.name("GET /a".into());
        let second = endpoints.name("GET /b".into());
        assert!(endpoints.is_full());
        let third = endpoints.name("GET /c".into());
        let fourth = endpoints.name("GET /d".into());
        assert_eq!((&*first, &*second, &*third), ("GET /a", "GET /b", OTHER));
        assert!(Arc::ptr_eq(&third, &fourth), "one pooled name");
        let again = endpoints.name("GET /a".into());
        assert!(Arc::ptr_eq(&first, &again), "a known name is shared");
        assert_eq!(endpoints.len(), 2);
        let mut none = Endpoints::new(0);
        assert_eq!(&*none.name("GET /a".into()), OTHER);
        assert!(none.is_empty());
    }
}
