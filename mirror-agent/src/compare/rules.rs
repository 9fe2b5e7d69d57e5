//! What the comparison leaves out: header fields that differ between any
//! two healthy answers (dates, request ids, framing), and the JSON fields
//! the user names (`$.served_at`, `$.items[*].id`). Also which headers
//! carry credentials, whose values are compared but never shown, and the
//! differences' values redacted by the policy of [`crate::redact`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use super::verdict::{Difference, Kind};
use crate::redact::{self, Policy};

/// Header fields ignored by default (lowercase), each with why: they differ
/// between two correct answers to the same request, so comparing them would
/// report every exchange.
pub const DEFAULT_IGNORED_HEADERS: &[(&str, &str)] = &[
    ("date", "the second the answer was made"),
    (
        "server",
        "the software and version answering: differs by design",
    ),
    ("age", "how long a cache held the answer"),
    (
        "etag",
        "often a hash of the build or of the mtime, not of the content",
    ),
    ("last-modified", "file times differ between deployments"),
    ("expires", "computed from the current time"),
    ("via", "names the proxies on each path"),
    ("x-request-id", "a fresh id per request"),
    ("x-correlation-id", "a fresh id per request"),
    ("request-id", "a fresh id per request"),
    ("x-amzn-trace-id", "a fresh trace id per request"),
    (
        "traceparent",
        "a fresh trace id per request (W3C trace context)",
    ),
    (
        "tracestate",
        "vendor trace state per request (W3C trace context)",
    ),
    ("x-runtime", "the time the request took"),
    ("x-served-by", "names the host or cache node that answered"),
    (
        "x-cache",
        "hit or miss in a cache in front of one side only",
    ),
    ("cf-ray", "a fresh Cloudflare id per request"),
    // Framing: bodies are compared after their content coding is undone,
    // so how each side framed and compressed them is not a difference.
    ("content-length", "framing: bodies are compared decoded"),
    (
        "transfer-encoding",
        "framing: bodies are compared dechunked",
    ),
    ("content-encoding", "framing: bodies are compared decoded"),
    (
        "connection",
        "hop-by-hop: about the connection, not the answer",
    ),
    (
        "keep-alive",
        "hop-by-hop: about the connection, not the answer",
    ),
];

/// What replaces a credential header's value in the diff, which has no
/// marker for it (see [`crate::redact`] for the markers).
pub use crate::redact::REDACTED;

/// A header whose values are credentials by the process's redaction
/// policy ([`crate::redact`]: the built-in names and the user's), whatever
/// its case. The report and the diff log redact by it again, in case a
/// value reached them unredacted.
pub fn is_credential_header(name: &str) -> bool {
    crate::redact::current().secret_header(name)
}

/// The one place the comparison's output loses its secrets: right after
/// the diff, every difference at a credential header, at a JSON path
/// through a credential field (`$.data.client_secret`,
/// `$.tokens[0].access_token`), has both values replaced by their markers,
/// so a reader still sees that they differed; every other value loses the
/// credentials it shows inside (a JSON object, a URL's query, a body's
/// preview). The differences were found on the real values and stay
/// counted; the report's examples, `/compare`, the page, the terminal and
/// the diff log all read these.
pub fn redact(policy: &Policy, differences: &mut [Difference]) {
    for difference in differences {
        let secret = match difference.kind {
            Kind::Header => policy.secret_header(&difference.path),
            Kind::Body => policy.secret_path(&difference.path),
            _ => false,
        };
        for value in [&mut difference.left, &mut difference.right] {
            if secret {
                *value = redact::hide(value);
            } else if let Cow::Owned(shown) = policy.redact_text(value) {
                *value = shown;
            }
        }
    }
}

/// The header fields and JSON fields the comparison ignores, and the
/// headers whose values it never shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    ignored_headers: HashSet<String>,
    /// The user's own, lowercase (the defaults' framing headers are
    /// compared where an answer has no body, unless the user named them).
    user_ignored_headers: HashSet<String>,
    ignored_fields: Vec<FieldPattern>,
    extra_credential_headers: HashSet<String>,
}

impl Default for Rules {
    /// The default ignored headers, no ignored field.
    fn default() -> Rules {
        Rules::new(&[], &[])
    }
}

impl Rules {
    /// The defaults plus the user's headers (any case) and field patterns.
    pub fn new(extra_ignored_headers: &[String], ignored_fields: &[FieldPattern]) -> Rules {
        let user_ignored_headers: HashSet<String> = extra_ignored_headers
            .iter()
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let ignored_headers = DEFAULT_IGNORED_HEADERS
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .chain(user_ignored_headers.iter().cloned())
            .collect();
        Rules {
            ignored_headers,
            user_ignored_headers,
            ignored_fields: ignored_fields.to_vec(),
            extra_credential_headers: HashSet::new(),
        }
    }

    /// Also treats these headers (any case) as credentials: compared, their
    /// values never shown. The built-in list is always on.
    pub fn with_credential_headers(mut self, names: &[String]) -> Rules {
        self.extra_credential_headers
            .extend(names.iter().map(|name| name.trim().to_ascii_lowercase()));
        self
    }

    /// Header `name` (any case) is left out of the comparison.
    pub fn ignores_header(&self, name: &str) -> bool {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.ignored_headers.contains(&name.to_ascii_lowercase())
        } else {
            self.ignored_headers.contains(name)
        }
    }

    /// The user asked to leave header `name` (lowercase) out: the default
    /// list aside.
    pub fn user_ignores_header(&self, name: &str) -> bool {
        self.user_ignored_headers.contains(name)
    }

    /// The value of header `name` (any case) is a credential: compared, but
    /// shown as [`REDACTED`]. The built-in list, and the user's names.
    pub fn is_credential_header(&self, name: &str) -> bool {
        is_credential_header(name)
            || self
                .extra_credential_headers
                .contains(&name.to_ascii_lowercase())
    }

    /// Some field pattern is set (a shortcut for the JSON walk).
    pub fn ignores_any_field(&self) -> bool {
        !self.ignored_fields.is_empty()
    }

    /// The JSON field at `path` is left out: a pattern matches it or one of
    /// the fields it is inside.
    pub fn ignores_field(&self, path: &[Segment<'_>]) -> bool {
        self.ignored_fields
            .iter()
            .any(|pattern| pattern.matches_within(path))
    }
}

/// One step of a concrete path into a JSON document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A member of an object.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// One step of a [`FieldPattern`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// `.name` or `['name']`: this member.
    Key(String),
    /// `[3]`: this element.
    Index(usize),
    /// `.*` or `[*]`: any member or element.
    Any,
}

/// A JSON field (or set of fields) to ignore, written JSONPath-like:
/// `$.served_at`, `$.items[*].id`, `$.items[2].id`, `$.a.*`,
/// `$['weird key']`. Only names, indexes and `*`; no filters, slices or
/// recursive descent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPattern {
    steps: Vec<Step>,
}

impl FieldPattern {
    /// Parses a pattern; the error names what is wrong and where.
    pub fn parse(text: &str) -> Result<FieldPattern, String> {
        Parser {
            text,
            chars: text.char_indices().peekable(),
        }
        .pattern()
    }

    /// Matches `path` exactly (same length, every step).
    pub fn matches(&self, path: &[Segment<'_>]) -> bool {
        self.steps.len() == path.len() && self.matches_within(path)
    }

    /// Matches `path` or one of the fields it is inside.
    pub fn matches_within(&self, path: &[Segment<'_>]) -> bool {
        self.steps.len() <= path.len()
            && self
                .steps
                .iter()
                .zip(path)
                .all(|(step, segment)| match (step, segment) {
                    (Step::Any, _) => true,
                    (Step::Key(want), Segment::Key(key)) => want == key,
                    (Step::Index(want), Segment::Index(index)) => want == index,
                    _ => false,
                })
    }
}

impl fmt::Display for FieldPattern {
    /// The canonical spelling, which [`FieldPattern::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.steps {
            match step {
                Step::Key(key) => write_key(f, key)?,
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::Any => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldPattern {
    type Err = String;
    fn from_str(text: &str) -> Result<FieldPattern, String> {
        FieldPattern::parse(text)
    }
}

/// A key is written `.key` when it is an identifier.
pub(super) fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes a path step for `key`: `.key`, or `['a b']` with `\\`, `\'` and
/// control characters escaped (the escapes the pattern parser reads).
pub(super) fn write_key(out: &mut impl fmt::Write, key: &str) -> fmt::Result {
    if is_identifier(key) {
        out.write_char('.')?;
        return out.write_str(key);
    }
    out.write_str("['")?;
    for c in key.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\'' => out.write_str("\\'")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_str("']")
}

/// A recursive-descent reader of one pattern.
struct Parser<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl Parser<'_> {
    fn pattern(mut self) -> Result<FieldPattern, String> {
        if self.text.trim().is_empty() {
            return Err("an empty field pattern: write one such as `$.served_at`".into());
        }
        match self.chars.next() {
            Some((_, '$')) => {}
            _ => {
                return Err(self.error(
                    0,
                    "must start with `$` (the whole document), as in `$.served_at`",
                ));
            }
        }
        let mut steps = Vec::new();
        while let Some((at, c)) = self.chars.next() {
            let step = match c {
                '.' => self.dotted(at)?,
                '[' => self.bracketed(at)?,
                ']' => return Err(self.error(at, "`]` without a `[` before it")),
                _ => return Err(self.error(at, "expected `.name` or `[...]` here")),
            };
            steps.push(step);
        }
        Ok(FieldPattern { steps })
    }

    /// After `.`: `*` or a name up to the next `.` or `[`.
    fn dotted(&mut self, dot: usize) -> Result<Step, String> {
        let mut name = String::new();
        while let Some(&(at, c)) = self.chars.peek() {
            match c {
                '.' | '[' => break,
                ']' => return Err(self.error(at, "`]` without a `[` before it")),
                '\'' | '"' | '\\' => {
                    return Err(self.error(at, "quotes belong in brackets: write `['a name']`"));
                }
                c if c.is_whitespace() || c.is_control() => {
                    return Err(self.error(
                        at,
                        "a name with spaces or control characters goes in brackets: `['a b']`",
                    ));
                }
                c => name.push(c),
            }
            self.chars.next();
        }
        match name.as_str() {
            "" => match self.chars.peek() {
                Some(&(_, '.')) => Err(self.error(
                    dot,
                    "`..` (recursive descent) is not supported: name each level",
                )),
                _ => Err(self.error(dot, "a name or `*` must follow `.`")),
            },
            "*" => Ok(Step::Any),
            _ => Ok(Step::Key(name)),
        }
    }

    /// After `[`: `*`, an index, or a quoted name, then `]`.
    fn bracketed(&mut self, open: usize) -> Result<Step, String> {
        let unclosed = |parser: &Self| parser.error(open, "`[` is not closed by `]`");
        let step = match self.chars.peek().copied() {
            None => return Err(unclosed(self)),
            Some((_, '*')) => {
                self.chars.next();
                Step::Any
            }
            Some((_, quote @ ('\'' | '"'))) => {
                self.chars.next();
                Step::Key(self.quoted(open, quote)?)
            }
            Some((at, c)) if c.is_ascii_digit() => {
                let mut digits = String::new();
                while let Some(&(_, c)) = self.chars.peek() {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    digits.push(c);
                    self.chars.next();
                }
                let index = digits
                    .parse()
                    .map_err(|_| self.error(at, "the index is too large"))?;
                Step::Index(index)
            }
            Some((at, _)) => {
                return Err(self.error(
                    at,
                    "expected `*`, an index such as `[2]` or a quoted name such as `['a b']` \
                     (filters, slices and negative indexes are not supported)",
                ));
            }
        };
        match self.chars.next() {
            Some((_, ']')) => Ok(step),
            Some((at, _)) => Err(self.error(at, "expected `]` here")),
            None => Err(unclosed(self)),
        }
    }

    /// A name up to the closing `quote`, with `\\`, `\'`, `\"`, `\n`, `\r`,
    /// `\t` and `\u{hex}` escapes.
    fn quoted(&mut self, open: usize, quote: char) -> Result<String, String> {
        let mut name = String::new();
        loop {
            let Some((at, c)) = self.chars.next() else {
                return Err(self.error(open, "the quoted name is not closed"));
            };
            match c {
                c if c == quote => return Ok(name),
                '\\' => match self.chars.next() {
                    Some((_, c @ ('\\' | '\'' | '"'))) => name.push(c),
                    Some((_, 'n')) => name.push('\n'),
                    Some((_, 'r')) => name.push('\r'),
                    Some((_, 't')) => name.push('\t'),
                    Some((_, 'u')) => name.push(self.unicode_escape(at)?),
                    _ => {
                        return Err(self.error(
                            at,
                            "unknown escape: use \\\\, \\', \\\", \\n, \\r, \\t or \\u{hex}",
                        ));
                    }
                },
                c => name.push(c),
            }
        }
    }

    /// After `\u`: `{hex}`.
    fn unicode_escape(&mut self, at: usize) -> Result<char, String> {
        let bad =
            |parser: &Self| parser.error(at, "a \\u escape is written \\u{hex}, as in \\u{1f}");
        if !matches!(self.chars.next(), Some((_, '{'))) {
            return Err(bad(self));
        }
        let mut hex = String::new();
        loop {
            match self.chars.next() {
                Some((_, '}')) => break,
                Some((_, c)) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                _ => return Err(bad(self)),
            }
        }
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| bad(self))
    }

    fn error(&self, at: usize, what: &str) -> String {
        format!(
            "field pattern `{}`, at character {}: {what}",
            self.text,
            at + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> FieldPattern {
        FieldPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        match FieldPattern::parse(text) {
            Ok(p) => panic!("{text} parsed as {p:?}"),
            Err(e) => e,
        }
    }

    use Segment::{Index, Key};

    #[test]
    fn the_pattern_forms_parse_and_print_back_canonically() {
        for (text, canonical) in [
            ("$", "$"),
            ("$.served_at", "$.served_at"),
            ("$.items[*].id", "$.items[*].id"),
            ("$.items[2].id", "$.items[2].id"),
            ("$.a.*", "$.a[*]"),
            ("$['weird key']", "$['weird key']"),
            ("$[\"double\"]", "$.double"),
            (
                "$['it\\'s']['back\\\\slash']",
                "$['it\\'s']['back\\\\slash']",
            ),
            ("$['tab\\there']['\\u{1}']", "$['tab\\there']['\\u{1}']"),
            ("$['a.b'][0]", "$['a.b'][0]"),
        ] {
            let parsed = pattern(text);
            assert_eq!(parsed.to_string(), canonical, "{text}");
            assert_eq!(pattern(canonical), parsed, "{canonical} reads back");
        }
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("served_at", "must start with `$`"),
            (".served_at", "must start with `$`"),
            ("$.items[2.id", "expected `]`"),
            ("$.items[2", "not closed"),
            ("$.items[", "not closed"),
            ("$.items]", "without a `[`"),
            ("$.a..b", "recursive descent"),
            ("$..b", "recursive descent"),
            ("$.", "must follow `.`"),
            ("$.items[-1]", "negative indexes"),
            ("$.items[1:3]", "expected `]`"),
            ("$.items[?(@.id)]", "filters"),
            ("$['open", "not closed"),
            ("$['bad \\q escape']", "unknown escape"),
            ("$.a b", "brackets"),
            ("$x", "expected `.name`"),
            ("$.items[99999999999999999999999]", "too large"),
        ] {
            let message = error(text);
            assert!(message.contains(says), "{text}: {message}");
            assert!(
                message.contains(text),
                "{text}: the message quotes the pattern"
            );
        }
    }

    #[test]
    fn a_pattern_matches_concrete_paths_step_by_step() {
        let ids = pattern("$.items[*].id");
        assert!(ids.matches(&[Key("items"), Index(0), Key("id")]));
        assert!(ids.matches(&[Key("items"), Index(7), Key("id")]));
        assert!(!ids.matches(&[Key("items"), Index(7), Key("price")]));
        assert!(!ids.matches(&[Key("items"), Index(7)]));
        assert!(!ids.matches(&[Key("list"), Index(7), Key("id")]));
        let second = pattern("$.items[2].id");
        assert!(second.matches(&[Key("items"), Index(2), Key("id")]));
        assert!(!second.matches(&[Key("items"), Index(3), Key("id")]));
        assert!(!second.matches(&[Key("items"), Key("2"), Key("id")]));
        let children = pattern("$.a.*");
        assert!(children.matches(&[Key("a"), Key("anything")]));
        assert!(children.matches(&[Key("a"), Index(4)]));
        assert!(!children.matches(&[Key("a")]));
        assert!(pattern("$['weird key']").matches(&[Key("weird key")]));
        assert!(pattern("$").matches(&[]));
    }

    #[test]
    fn rules_ignore_a_matched_field_and_everything_inside_it() {
        let rules = Rules::new(&[], &[pattern("$.served_at"), pattern("$.items[*].id")]);
        assert!(rules.ignores_field(&[Key("served_at")]));
        assert!(rules.ignores_field(&[Key("served_at"), Key("zone")]));
        assert!(rules.ignores_field(&[Key("items"), Index(1), Key("id"), Index(0)]));
        assert!(!rules.ignores_field(&[Key("items"), Index(1), Key("price")]));
        assert!(!rules.ignores_field(&[Key("items")]));
        assert!(!rules.ignores_field(&[]));
        assert!(!Rules::default().ignores_field(&[Key("served_at")]));
    }

    /// `holds` is `expected` for each of `names`.
    fn check(names: &[&str], expected: bool, holds: impl Fn(&str) -> bool) {
        for name in names {
            assert_eq!(holds(name), expected, "{name}");
        }
    }

    #[test]
    fn default_headers_are_ignored_in_any_case_and_the_users_are_added() {
        let defaults = Rules::default();
        let ignored = [
            "date",
            "Date",
            "X-Request-Id",
            "content-length",
            "Content-Encoding",
        ];
        check(&ignored, true, |name| defaults.ignores_header(name));
        let compared = ["content-type", "cache-control", "x-build", "set-cookie"];
        check(&compared, false, |name| defaults.ignores_header(name));
        let rules = Rules::new(&[" X-Build ".to_owned()], &[]);
        assert!(rules.ignores_header("x-build") && rules.ignores_header("X-BUILD"));
        assert!(rules.ignores_header("date"), "the defaults stay");
    }

    #[test]
    fn credential_headers_are_known_by_name_and_by_what_the_name_contains() {
        let rules = Rules::default();
        let credentials = [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "COOKIE",
            "Set-Cookie",
            "x-api-key",
            "X-Auth-Token",
            "x-csrf-token",
            "x-client-secret",
            "x-db-password",
            "my-api-key",
        ];
        let others = [
            "content-type",
            "x-build",
            "location",
            "etag",
            "x-request-id",
            "cache-control",
        ];
        // The built-in list and the rules agree on every name.
        for (names, expected) in [(&credentials[..], true), (&others[..], false)] {
            check(names, expected, is_credential_header);
            check(names, expected, |name| rules.is_credential_header(name));
        }
        let rules = rules.with_credential_headers(&["X-Tenant".to_owned()]);
        assert!(rules.is_credential_header("x-tenant"));
        assert!(
            !is_credential_header("x-tenant"),
            "the user's names are the rules'"
        );
    }

    #[test]
    fn differences_lose_their_secrets_but_still_show_that_the_sides_differed() {
        let body = |path: &str, l: &str, r: &str| Difference::new(Kind::Body, path, l, r);
        let mut differences = vec![
            body("$.access_token", "\"tok-one\"", "\"tok-two\""),
            body("$.data.client_secret", "\"same\"", "<absent>"),
            body("$.tokens[0].refreshToken", "\"rt-qq\"", "\"rt-qq\""),
            body("$.data", r#"{"client_secret":"cs-nested","n":1}"#, "null"),
            body(
                "body",
                "…IkpXVCJ9\",\"id_token\":\"idt-cut",
                "…x\",\"id_token\":\"idt-qz",
            ),
            body("$.price", "1", "2"),
            Difference::new(Kind::Header, "x-session-id", "sess-one", "sess-two"),
            Difference::new(
                Kind::Header,
                "location",
                "/cb?code=co-1&state=s",
                "/cb?code=co-2&state=s",
            ),
            Difference::new(Kind::Status, "status", "200", "500"),
        ];
        let before = differences.clone();
        redact(&Policy::default(), &mut differences);
        let shown = format!("{differences:?}");
        for secret in [
            "tok-",
            "same",
            "rt-qq",
            "cs-nested",
            "idt-",
            "sess-",
            "co-1",
            "co-2",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let pair = |i: usize| (differences[i].left.as_str(), differences[i].right.as_str());
        let (l, r) = pair(0);
        assert!(l.starts_with("<redacted:") && r.starts_with("<redacted:") && l != r);
        assert_eq!(pair(1).1, "<absent>", "a missing side is not a secret");
        let (l, r) = pair(2);
        assert_eq!(l, r, "equal values, equal markers");
        assert!(pair(3).0.contains(r#""n":1"#), "the rest of a value stays");
        assert_ne!(pair(4).0, pair(4).1);
        assert_eq!(pair(5), ("1", "2"));
        assert_eq!(pair(8), ("200", "500"));
        // Where each one is, and so what is counted, does not change.
        let places = |d: &[Difference]| d.iter().map(Difference::field).collect::<Vec<_>>();
        assert_eq!(places(&differences), places(&before));
        // Without the built-in names, the values are shown.
        let mut shown = before.clone();
        redact(&Policy::new(false), &mut shown);
        assert_eq!(shown, before);
    }
}
