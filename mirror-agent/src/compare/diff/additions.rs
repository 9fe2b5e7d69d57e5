//! What mirror itself changed in the copy a target received, so that a
//! target echoing it back (an echo service returns the request's headers,
//! path and query in its body) is not reported as differing from v1.
//!
//! The copy differs from v1's request only by the configured rewrites:
//! the marker header, `--forwarded-for`, `--set-header`, stripped headers,
//! `--host-header`, `--rewrite-header`, path and query rewrites. Rather
//! than re-deriving each from the configuration, the two heads are
//! compared: v1's request as the client sent it, and the head the target
//! was sent. That is exact whatever the rewrites were, and costs nothing
//! until a difference has to be explained (the heads are parsed then, once).
//!
//! A difference is mirror's own when:
//! * v1's side is absent and the target's value is a header (or query
//!   parameter) the copy added, at a field named like it
//!   (`$.headers['X-Mirrored-By']`, `x_mirrored_by`, `HTTP_X_MIRRORED_BY`);
//! * the target's side is absent and v1's is one the copy left out;
//! * the target's value is v1's with one rewritten value put in place of
//!   the original: a header's at a field named like it (an appended
//!   forwarded-for), the request target's, path's, query's or Host's at
//!   any field (an echoed `url`).
//!
//! Only strings take part: an echo gives header values as strings.

use std::cell::{Cell, OnceCell};

use crate::http::MAX_HEADERS_LIMIT;

/// Bytes an echo may add around one field besides its name and value
/// (quotes, `: `, `,`, a line's indentation).
pub const ECHO_OVERHEAD: usize = 16;

/// The rewrites of one copy, read from its head and v1's request's.
pub struct Additions<'a> {
    original: &'a [u8],
    sent: &'a [u8],
    parsed: OnceCell<Parsed>,
    explained: Cell<usize>,
}

/// The two heads compared.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    /// Fields (headers, query parameters) the copy carries and v1's
    /// request did not: (name, value).
    added: Vec<(String, String)>,
    /// Fields v1's request carried and the copy does not.
    removed: Vec<(String, String)>,
    /// Values the copy carries rewritten.
    replaced: Vec<Replaced>,
}

#[derive(Debug, PartialEq, Eq)]
struct Replaced {
    /// The field it may show at; `None`: at any field (the request target
    /// and Host, which an echo shows inside a URL).
    name: Option<String>,
    from: String,
    to: String,
}

impl Additions<'static> {
    /// No rewrites known: nothing is explained.
    pub fn none() -> Additions<'static> {
        Additions::between(b"", b"")
    }
}

impl<'a> Additions<'a> {
    /// The rewrites that turned v1's request head `original` into the head
    /// `sent` to a target (both complete heads, request line included).
    pub fn between(original: &'a [u8], sent: &'a [u8]) -> Additions<'a> {
        Additions {
            original,
            sent,
            parsed: OnceCell::new(),
            explained: Cell::new(0),
        }
    }

    /// Differences explained so far (dropped as mirror's own).
    pub fn explained(&self) -> usize {
        self.explained.get()
    }

    /// Whether a difference at a field called `name` (a header's name, a
    /// JSON member's key; `None` when unnamed), v1's value `left` and the
    /// target's `right` (`None`: absent), is mirror's own rewrite.
    pub fn explains(&self, name: Option<&str>, left: Option<&str>, right: Option<&str>) -> bool {
        if self.original == self.sent {
            return false;
        }
        let parsed = self
            .parsed
            .get_or_init(|| parse(self.original, self.sent).unwrap_or_default());
        let named = |field: &str| name.is_some_and(|name| same_name(name, field));
        let explained = match (left, right) {
            (None, Some(right)) => parsed
                .added
                .iter()
                .any(|(field, value)| named(field) && value == right),
            (Some(left), None) => parsed
                .removed
                .iter()
                .any(|(field, value)| named(field) && value == left),
            (Some(left), Some(right)) => parsed.replaced.iter().any(|r| {
                r.name.as_deref().is_none_or(named) && replaced_once(left, &r.from, &r.to, right)
            }),
            (None, None) => false,
        };
        if explained {
            self.explained.set(self.explained.get() + 1);
        }
        explained
    }

    /// Whether a body's length that differs by `delta` bytes (a HEAD's
    /// `Content-Length`: the body is not there to look at) may be the
    /// additions echoed back: no more than each added, removed or
    /// rewritten field's name and value could add, with
    /// [`ECHO_OVERHEAD`] bytes each for quoting and punctuation (rewrites
    /// twice: a path shows in `path` and in `url`). A tolerance, not an
    /// exact match: a larger difference is still reported.
    pub fn explains_length_change(&self, delta: u64) -> bool {
        if self.original == self.sent {
            return false;
        }
        let parsed = self
            .parsed
            .get_or_init(|| parse(self.original, self.sent).unwrap_or_default());
        let fields = parsed
            .added
            .iter()
            .chain(&parsed.removed)
            .map(|(name, value)| name.len() + value.len() + ECHO_OVERHEAD);
        let rewrites = parsed
            .replaced
            .iter()
            .map(|r| 2 * (r.to.len().abs_diff(r.from.len()) + ECHO_OVERHEAD));
        let bound: usize = fields.chain(rewrites).sum();
        let explained = delta > 0 && delta <= bound as u64;
        if explained {
            self.explained.set(self.explained.get() + 1);
        }
        explained
    }

    /// Whether a changed group of text lines is mirror's own: lines only
    /// the target has are added fields (`Name: value`), lines only v1 has
    /// removed ones, or each line pair a rewrite.
    pub fn explains_lines(&self, left: &[&str], right: &[&str]) -> bool {
        fn value(line: Option<&str>) -> Option<&str> {
            match line.and_then(header_line) {
                Some((_, value)) => Some(value),
                None => line,
            }
        }
        let line = |left: Option<&str>, right: Option<&str>| {
            let name = left
                .and_then(header_line)
                .or_else(|| right.and_then(header_line))
                .map(|(name, _)| name);
            self.explains(name, value(left), value(right))
                || (left.is_some() && right.is_some() && self.explains(None, left, right))
        };
        match (left.len(), right.len()) {
            (0, 0) => false,
            (0, _) => right.iter().all(|r| line(None, Some(r))),
            (_, 0) => left.iter().all(|l| line(Some(l), None)),
            (l, r) if l == r => left.iter().zip(right).all(|(l, r)| line(Some(l), Some(r))),
            _ => false,
        }
    }
}

/// `Name: value` → (name, value), for a line that looks like a header.
fn header_line(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    (!name.is_empty() && name.chars().all(token)).then(|| (name, value.trim()))
}

/// Names equal but for case, `_` for `-`, and a CGI `HTTP_` prefix.
fn same_name(a: &str, b: &str) -> bool {
    let normal = |name: &str| -> String {
        let name = name.to_ascii_lowercase().replace('_', "-");
        match name.strip_prefix("http-") {
            Some(rest) => rest.to_owned(),
            None => name,
        }
    };
    normal(a) == normal(b)
}

/// `right` is `left` with one occurrence of `from` replaced by `to`.
fn replaced_once(left: &str, from: &str, to: &str, right: &str) -> bool {
    if from.is_empty() || left.len() + to.len() != right.len() + from.len() {
        return false;
    }
    left.match_indices(from).any(|(at, _)| {
        right.starts_with(&left[..at])
            && right[at..].starts_with(to)
            && right[at + to.len()..] == left[at + from.len()..]
    })
}

/// One head's request target and header fields (names lowercase, the
/// values of one name joined with `, `, in order of first appearance).
struct Head {
    target: String,
    fields: Vec<(String, String)>,
}

fn read_head(head: &[u8]) -> Option<Head> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
    let mut request = httparse::Request::new(&mut storage);
    request.parse(head).ok()?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(header.value);
        match fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => fields.push((name, value.into_owned())),
        }
    }
    Some(Head {
        target: request.path?.to_owned(),
        fields,
    })
}

/// `name=value` pairs of a request target's query, as sent.
fn query(target: &str) -> Vec<(String, String)> {
    let Some((_, query)) = target.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn parse(original: &[u8], sent: &[u8]) -> Option<Parsed> {
    let (original, sent) = (read_head(original)?, read_head(sent)?);
    let mut parsed = Parsed::default();
    let mut compare =
        |before: &[(String, String)], after: &[(String, String)], anywhere: &[&str]| {
            for (name, value) in after {
                match before.iter().find(|(n, _)| n == name) {
                    None => parsed.added.push((name.clone(), value.clone())),
                    Some((_, old)) if old != value => parsed.replaced.push(Replaced {
                        name: (!anywhere.contains(&name.as_str())).then(|| name.clone()),
                        from: old.clone(),
                        to: value.clone(),
                    }),
                    Some(_) => {}
                }
            }
            for (name, value) in before {
                if !after.iter().any(|(n, _)| n == name) {
                    parsed.removed.push((name.clone(), value.clone()));
                }
            }
        };
    compare(&original.fields, &sent.fields, &["host"]);
    compare(&query(&original.target), &query(&sent.target), &[]);
    if original.target != sent.target {
        let path = |target: &str| target.split('?').next().unwrap_or_default().to_owned();
        let (from, to) = (path(&original.target), path(&sent.target));
        if from != to {
            parsed.replaced.push(Replaced {
                name: None,
                from,
                to,
            });
        }
        parsed.replaced.push(Replaced {
            name: None,
            from: original.target,
            to: sent.target,
        });
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"GET /orders/7?page=2 HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 1.2.3.4\r\nX-Env: prod\r\nX-Secret: s\r\n\r\n";
    const SENT: &[u8] = b"GET /v2/orders/7?page=2&debug=1 HTTP/1.1\r\nHost: shadow:8080\r\nX-Forwarded-For: 1.2.3.4, 10.200.0.1\r\nX-Env: shadow\r\nX-Mirrored-By: mirror\r\n\r\n";

    #[test]
    fn added_removed_and_rewritten_fields_are_read_from_the_two_heads() {
        let parsed = parse(ORIGINAL, SENT).unwrap();
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            parsed.added,
            vec![pair("x-mirrored-by", "mirror"), pair("debug", "1")]
        );
        assert_eq!(parsed.removed, vec![pair("x-secret", "s")]);
        let replaced: Vec<(Option<&str>, &str, &str)> = parsed
            .replaced
            .iter()
            .map(|r| (r.name.as_deref(), r.from.as_str(), r.to.as_str()))
            .collect();
        assert_eq!(
            replaced,
            vec![
                (None, "shop", "shadow:8080"),
                (Some("x-forwarded-for"), "1.2.3.4", "1.2.3.4, 10.200.0.1"),
                (Some("x-env"), "prod", "shadow"),
                (None, "/orders/7", "/v2/orders/7"),
                (None, "/orders/7?page=2", "/v2/orders/7?page=2&debug=1"),
            ]
        );
    }

    #[test]
    fn echoed_additions_are_explained_at_fields_named_like_them() {
        let additions = Additions::between(ORIGINAL, SENT);
        assert!(additions.explains(Some("X-Mirrored-By"), None, Some("mirror")));
        assert!(additions.explains(Some("x_mirrored_by"), None, Some("mirror")));
        assert!(additions.explains(Some("HTTP_X_MIRRORED_BY"), None, Some("mirror")));
        assert!(additions.explains(Some("debug"), None, Some("1")));
        assert!(additions.explains(Some("X-Secret"), Some("s"), None));
        assert!(additions.explains(
            Some("x-forwarded-for"),
            Some("1.2.3.4"),
            Some("1.2.3.4, 10.200.0.1")
        ));
        assert!(additions.explains(
            Some("url"),
            Some("http://shop/orders/7?page=2"),
            Some("http://shadow:8080/orders/7?page=2")
        ));
        assert!(additions.explains(Some("path"), Some("/orders/7"), Some("/v2/orders/7")));
        assert_eq!(additions.explained(), 8);
    }

    #[test]
    fn real_differences_are_not_explained() {
        let additions = Additions::between(ORIGINAL, SENT);
        // The added value at another field: a candidate's new member.
        assert!(!additions.explains(Some("source"), None, Some("mirror")));
        assert!(!additions.explains(None, None, Some("mirror")));
        // Another value at the added field.
        assert!(!additions.explains(Some("X-Mirrored-By"), None, Some("other")));
        // A header's rewrite elsewhere than at its field.
        assert!(!additions.explains(Some("env"), Some("prod"), Some("shadow")));
        // Present on both sides: not an addition.
        assert!(!additions.explains(Some("X-Mirrored-By"), Some("x"), Some("mirror")));
        // A rewrite plus another change.
        assert!(!additions.explains(Some("path"), Some("/orders/7"), Some("/v2/orders/8")));
        assert_eq!(additions.explained(), 0);
        // Without rewrites nothing is mirror's.
        assert!(!Additions::none().explains(Some("X-Mirrored-By"), None, Some("mirror")));
        assert!(!Additions::between(ORIGINAL, ORIGINAL).explains(
            Some("X-Mirrored-By"),
            None,
            Some("mirror")
        ));
        assert!(!Additions::between(b"garbage", SENT).explains(
            Some("X-Mirrored-By"),
            None,
            Some("mirror")
        ));
    }

    #[test]
    fn a_length_change_is_explained_up_to_what_the_additions_could_add() {
        let additions = Additions::between(ORIGINAL, SENT);
        // debug=1, x-mirrored-by: mirror, x-secret: s, and the rewrites.
        let fields = (5 + 1 + 16) + (13 + 6 + 16) + (8 + 1 + 16);
        let rewrites =
            2 * ((11 - 4 + 16) + (19 - 7 + 16) + (6 - 4 + 16) + (12 - 9 + 16) + (27 - 16 + 16));
        assert!(additions.explains_length_change(1));
        assert!(additions.explains_length_change(fields + rewrites));
        assert!(!additions.explains_length_change(fields + rewrites + 1));
        assert!(!additions.explains_length_change(0));
        assert!(!Additions::none().explains_length_change(1));
    }

    #[test]
    fn echoed_header_lines_are_explained_as_a_group() {
        let additions = Additions::between(ORIGINAL, SENT);
        assert!(additions.explains_lines(&[], &["X-Mirrored-By: mirror"]));
        assert!(additions.explains_lines(
            &["x-forwarded-for: 1.2.3.4", "GET /orders/7?page=2 HTTP/1.1"],
            &[
                "x-forwarded-for: 1.2.3.4, 10.200.0.1",
                "GET /v2/orders/7?page=2&debug=1 HTTP/1.1"
            ]
        ));
        assert!(additions.explains_lines(&["X-Secret: s"], &[]));
        assert!(!additions.explains_lines(&[], &["X-Mirrored-By: mirror", "price: 12"]));
        assert!(!additions.explains_lines(&["a"], &["b", "c"]));
    }

    #[test]
    fn one_replacement_is_found_at_any_occurrence() {
        assert!(replaced_once("/a/a", "/a", "/b", "/a/b"));
        assert!(replaced_once("/a/a", "/a", "/b", "/b/a"));
        assert!(!replaced_once("/a/a", "/a", "/b", "/b/b"));
        assert!(!replaced_once("x", "", "y", "yx"));
    }
}
