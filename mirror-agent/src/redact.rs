//! What is never shown (invariant 8): the one redaction policy of the
//! agent. Credential-like header names, query keys and JSON field names
//! are recognised here, and their values replaced by a marker wherever the
//! agent would show or write them: the comparison's differences (and so
//! `/compare`, the page, `compare-report` and the diff log), the paths the
//! diff log writes, and the JSON bodies `record` writes.
//!
//! Names are matched case- and style-insensitively: `apiKey`, `api_key`,
//! `API-KEY` and `Api.Key` are all `apikey` once lowercased and stripped of
//! everything but letters and digits. The built-in names ([`PARTS`],
//! [`NAMES`]) can be extended (`--redact-field`, `--redact-header`,
//! `--redact-query`; a `*` at either end of a name matches anything there)
//! or dropped (`--no-default-redaction`).
//!
//! A marker is `<redacted:3fa2c1d0>`: the first 32 bits of HMAC-SHA256 of
//! the value under a key drawn at random when the process first needs one
//! (ring's `SystemRandom`, the OS's random source; ring is already built
//! for the TLS targets). Equal values give equal markers and different
//! values different ones (but one time in 2^32), so a reader still sees
//! whether v1 and the target differed, and whether a value changed
//! between two lines; without the key, which never leaves the process, a
//! marker says nothing of the value, even a short guessable one. Markers
//! are only comparable within one process's run.
//!
//! A leaf: it imports nothing of the pipeline, which all calls it.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};

use ring::hmac;

/// A value hidden where no marker can be computed (a header already
/// hidden by the diff, the report's backstop).
pub const REDACTED: &str = "<redacted>";
/// How every marker starts.
const MARKER_START: &str = "<redacted:";
/// The diff's word for a side that has no value: not a secret, kept.
const ABSENT: &str = "<absent>";

/// Pieces of a normalised name that make it a credential wherever they
/// appear in it: `access_token`, `X-Client-Secret`, `dbPassword`,
/// `sessionId`, `X-Amz-Signature`, `Set-Cookie`.
pub const PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
    "cookie",
    "session",
    "signature",
];

/// Whole normalised names that are credentials (too short to be looked for
/// inside other names: `sig` is in `design`).
pub const NAMES: &[&str] = &["sig", "pwd", "auth", "otp", "jwt"];

/// Normalised names that hold a built-in part but are known not to be
/// credentials, kept readable: OAuth's `token_type` (`bearer`, RFC 6749
/// §5.1) and the token counts of language-model APIs (`total_tokens`).
const NOT_SECRETS: &[&str] = &[
    "tokentype",
    "tokentypehint",
    "maxtokens",
    "prompttokens",
    "completiontokens",
    "totaltokens",
    "inputtokens",
    "outputtokens",
];

/// A query key or header name ending in this is a key of some API
/// (`?key=`, `subscription-key`, `X-Functions-Key`); JSON fields are not
/// matched so (`sortKey`, `publicKey`).
const KEY_SUFFIX: &str = "key";

/// The query key that is a credential only on an authorisation path: an
/// OAuth authorisation code (`/oauth/callback?code=...`), elsewhere often
/// a country or error code.
const AUTH_CODE: &str = "code";
/// Pieces of a normalised path (or text) that make it an authorisation
/// path: `/oauth/authorize`, `/callback`, `/login`, or any path whose
/// query has OAuth's `state` beside the code.
const AUTH_PATHS: &[&str] = &[
    "auth", "callback", "token", "login", "signin", "sso", "state",
];

/// `apiKey`, `api_key`, `API-KEY` → `apikey`: lowercase, letters and
/// digits only (any script).
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// One name the user added: normalised, with `*` at either end meaning
/// anything there.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Name {
    text: String,
    any_before: bool,
    any_after: bool,
}

impl Name {
    fn parse(pattern: &str) -> Option<Name> {
        let trimmed = pattern.trim();
        let any_before = trimmed.starts_with('*');
        let any_after = trimmed.len() > 1 && trimmed.ends_with('*');
        let text = normalize(trimmed.trim_matches('*'));
        (!text.is_empty()).then_some(Name {
            text,
            any_before,
            any_after,
        })
    }

    fn matches(&self, normalized: &str) -> bool {
        match (self.any_before, self.any_after) {
            (false, false) => normalized == self.text,
            (true, false) => normalized.ends_with(&self.text),
            (false, true) => normalized.starts_with(&self.text),
            (true, true) => normalized.contains(&self.text),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let star = |any: bool| if any { "*" } else { "" };
        write!(
            f,
            "{}{}{}",
            star(self.any_before),
            self.text,
            star(self.any_after)
        )
    }
}

/// Which names are credentials: the built-in ones (unless dropped) and the
/// user's, for each place a name can be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    defaults: bool,
    fields: Vec<Name>,
    headers: Vec<Name>,
    queries: Vec<Name>,
}

impl Default for Policy {
    /// The built-in names only.
    fn default() -> Policy {
        Policy::new(true)
    }
}

impl Policy {
    /// The built-in names (`defaults`), or none.
    pub fn new(defaults: bool) -> Policy {
        Policy {
            defaults,
            fields: Vec::new(),
            headers: Vec::new(),
            queries: Vec::new(),
        }
    }

    /// Also these JSON field names, at any depth.
    pub fn with_fields(mut self, names: &[String]) -> Policy {
        self.fields
            .extend(names.iter().filter_map(|n| Name::parse(n)));
        self
    }

    /// Also these header names.
    pub fn with_headers(mut self, names: &[String]) -> Policy {
        self.headers
            .extend(names.iter().filter_map(|n| Name::parse(n)));
        self
    }

    /// Also these query keys (and form fields).
    pub fn with_queries(mut self, names: &[String]) -> Policy {
        self.queries
            .extend(names.iter().filter_map(|n| Name::parse(n)));
        self
    }

    /// The built-in names are on.
    pub fn has_defaults(&self) -> bool {
        self.defaults
    }

    /// The user's JSON field names, as [`Policy::with_fields`] reads them
    /// back (normalised: `*api_Key` → `*apikey`).
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(Name::to_string).collect()
    }

    /// The user's header names, the same way.
    pub fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(Name::to_string).collect()
    }

    /// The user's query keys, the same way.
    pub fn query_names(&self) -> Vec<String> {
        self.queries.iter().map(Name::to_string).collect()
    }

    fn builtin(&self, normalized: &str) -> bool {
        self.defaults
            && (PARTS.iter().any(|part| normalized.contains(part)) || NAMES.contains(&normalized))
            && !NOT_SECRETS.contains(&normalized)
    }

    /// A JSON field of this name holds a credential.
    pub fn secret_field(&self, name: &str) -> bool {
        let name = normalize(name);
        self.builtin(&name) || self.fields.iter().any(|n| n.matches(&name))
    }

    /// A header of this name holds a credential.
    pub fn secret_header(&self, name: &str) -> bool {
        let name = normalize(name);
        self.builtin(&name)
            || (self.defaults && name.ends_with(KEY_SUFFIX))
            || self.headers.iter().any(|n| n.matches(&name))
    }

    /// A query parameter (or form field) of this name holds a credential;
    /// `context` is the request target (or the text) it was found in, for
    /// `code`.
    pub fn secret_query(&self, key: &str, context: &str) -> bool {
        let key = normalize(key);
        if self.builtin(&key)
            || (self.defaults && key.ends_with(KEY_SUFFIX))
            || self.queries.iter().any(|n| n.matches(&key))
        {
            return true;
        }
        self.defaults && key == AUTH_CODE && {
            let context = normalize(context);
            AUTH_PATHS.iter().any(|part| context.contains(part))
        }
    }

    /// Some field on this JSON path (`$.data.client_secret`,
    /// `$.tokens[3].access_token`, `$['X-Api-Key']`: the diff's spelling)
    /// holds a credential, and so does everything inside it.
    pub fn secret_path(&self, path: &str) -> bool {
        path_keys(path).iter().any(|key| self.secret_field(key))
    }

    /// A request target with the values of its credential query keys (and
    /// path parameters: `;jsessionid=...`) replaced by markers; the keys
    /// are kept.
    pub fn redact_target<'a>(&self, target: &'a str) -> Cow<'a, str> {
        let (path, query) = match target.find('?') {
            Some(at) => target.split_at(at),
            None => (target, ""),
        };
        let mut found = Vec::new();
        self.pairs(path, b"/;?#&", target, 0, &mut found);
        self.pairs(query, b"&;#", target, path.len(), &mut found);
        replaced(target, &found, false)
    }

    /// Any text shown (a header's value, a JSON value, a body's preview)
    /// with the values of credential JSON fields (`"access_token": ...`,
    /// found whatever the text's start, so a cut document too) and of
    /// credential `key=value` pairs (a URL, a form) replaced by markers.
    pub fn redact_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut found = Vec::new();
        self.json_fields(text.as_bytes(), &mut found);
        let json = replaced(text, &found, true);
        found.clear();
        self.pairs(&json, b"&;#,\"'<> \t\r\n", &json, 0, &mut found);
        match replaced(&json, &found, false) {
            Cow::Borrowed(_) => json,
            Cow::Owned(both) => Cow::Owned(both),
        }
    }

    /// A JSON document with the value of every credential field, at any
    /// depth, replaced by its marker as a JSON string (the rest byte for
    /// byte as it was); `None` when it has none.
    pub fn redact_json(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut found = Vec::new();
        self.json_fields(body, &mut found);
        if found.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for &(start, end) in &found {
            out.extend_from_slice(&body[at..start]);
            out.push(b'"');
            out.extend_from_slice(marker(&body[start..end]).as_bytes());
            out.push(b'"');
            at = end;
        }
        out.extend_from_slice(&body[at..]);
        Some(out)
    }

    /// The values (start, end) of credential fields in JSON text. A key is
    /// a string followed by `:`; found by looking back from each `:`, so
    /// that a text starting inside a string (a cut preview) is read right.
    /// A credential field's value is skipped whole: its insides are hidden
    /// with it.
    fn json_fields(&self, text: &[u8], found: &mut Vec<(usize, usize)>) {
        let mut at = 0;
        while let Some(offset) = memchr::memchr(b':', &text[at..]) {
            let colon = at + offset;
            at = colon + 1;
            let Some(key) = key_before(text, colon) else {
                continue;
            };
            // Keys are text: the slice is between two ASCII quotes.
            if !self.secret_field(&String::from_utf8_lossy(key)) {
                continue;
            }
            let start = skip_space(text, colon + 1);
            let end = value_end(text, start);
            if end > start {
                found.push((start, end));
                at = end;
            }
        }
    }

    /// The values of credential `key=value` pairs in `text` (a value ends
    /// at one of `ends`), at `base` + their offset; `context` decides
    /// `code`.
    fn pairs(
        &self,
        text: &str,
        ends: &[u8],
        context: &str,
        base: usize,
        found: &mut Vec<(usize, usize)>,
    ) {
        let bytes = text.as_bytes();
        let mut at = 0;
        while let Some(offset) = memchr::memchr(b'=', &bytes[at..]) {
            let equals = at + offset;
            at = equals + 1;
            let key_start = bytes[..equals]
                .iter()
                .rposition(|&b| !is_key_byte(b))
                .map_or(0, |p| p + 1);
            if key_start == equals || !self.secret_query(&text[key_start..equals], context) {
                continue;
            }
            let end = bytes[equals + 1..]
                .iter()
                .position(|b| ends.contains(b))
                .map_or(bytes.len(), |p| equals + 1 + p);
            if end > equals + 1 {
                found.push((base + equals + 1, base + end));
                at = end;
            }
        }
    }
}

/// A character of a query key or form field name.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']' | b'%')
}

/// The key of `"key"<spaces>:` ending at `colon`, if the text has one
/// there (quotes not escaped).
fn key_before(text: &[u8], colon: usize) -> Option<&[u8]> {
    let close = text[..colon]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())?;
    if text[close] != b'"' || escaped(text, close) {
        return None;
    }
    let mut open = close;
    loop {
        open = text[..open].iter().rposition(|&b| b == b'"')?;
        if !escaped(text, open) {
            return Some(&text[open + 1..close]);
        }
    }
}

/// The byte at `at` is preceded by an odd number of backslashes.
fn escaped(text: &[u8], at: usize) -> bool {
    text[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The end of the JSON value starting at `start`: a string to its closing
/// quote, an object or array to its closing bracket, anything else to the
/// next `,`, `}`, `]` or space; the text's end if it is cut first.
fn value_end(text: &[u8], start: usize) -> usize {
    match text.get(start) {
        None => start,
        Some(b'"') => string_end(text, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut at = start;
            while at < text.len() {
                match text[at] {
                    b'"' => {
                        at = string_end(text, at);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return at + 1;
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            text.len()
        }
        Some(_) => text[start..]
            .iter()
            .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
            .map_or(text.len(), |p| start + p),
    }
}

/// After the string opening at `open`: past its closing quote, or the
/// text's end.
fn string_end(text: &[u8], open: usize) -> usize {
    let mut at = open + 1;
    while at < text.len() {
        match text[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    text.len()
}

/// `text` with each (start, end) replaced by the marker of what it held
/// (quoted: a JSON string).
fn replaced<'a>(text: &'a str, found: &[(usize, usize)], quoted: bool) -> Cow<'a, str> {
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(start, end) in found {
        // Every bound is next to an ASCII delimiter or the text's end:
        // a char boundary.
        out.push_str(&text[at..start]);
        let marker = marker(&text.as_bytes()[start..end]);
        if quoted {
            out.push('"');
            out.push_str(&marker);
            out.push('"');
        } else {
            out.push_str(&marker);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The keys along a JSON path as the diff writes it: `.name`, `['a b']`
/// (with `\\`, `\'` escapes), `[3]`.
fn path_keys(path: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let Some(mut rest) = path.strip_prefix('$') else {
        return keys;
    };
    loop {
        if let Some(after) = rest.strip_prefix("['") {
            let mut key = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => key.extend(chars.next().map(|(_, c)| c)),
                    '\'' => {
                        end = at + 1;
                        break;
                    }
                    c => key.push(c),
                }
            }
            keys.push(key);
            rest = after[end..].strip_prefix(']').unwrap_or(&after[end..]);
        } else if let Some(after) = rest.strip_prefix('[') {
            rest = after.split_once(']').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            keys.push(after[..end].to_owned());
            rest = &after[end..];
        } else {
            return keys;
        }
    }
}

/// The process's marker key, drawn once.
static KEY: LazyLock<hmac::Key> = LazyLock::new(|| {
    let random = ring::rand::SystemRandom::new();
    hmac::Key::generate(hmac::HMAC_SHA256, &random).unwrap_or_else(|_| {
        // The OS gave no random bytes (it always does on Linux): the
        // standard library's per-process random hash keys instead.
        use std::hash::{BuildHasher, Hasher};
        let mut seed = Vec::with_capacity(32);
        for round in 0u64..4 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(round);
            seed.extend_from_slice(&h.finish().to_le_bytes());
        }
        hmac::Key::new(hmac::HMAC_SHA256, &seed)
    })
});

/// `<redacted:3fa2c1d0>`: the value's keyed hash, 32 bits of it.
pub fn marker(value: &[u8]) -> String {
    let tag = hmac::sign(&KEY, value);
    let mut text = String::from(MARKER_START);
    for byte in &tag.as_ref()[..4] {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('>');
    text
}

/// Not a value but the diff's or this module's word for one: `<absent>`,
/// `<redacted>`, a marker.
pub fn is_placeholder(value: &str) -> bool {
    value == ABSENT
        || value == REDACTED
        || (value.starts_with(MARKER_START) && value.ends_with('>') && !value.contains(' '))
}

/// A whole value hidden: its marker (a placeholder is kept).
pub fn hide(value: &str) -> String {
    if is_placeholder(value) {
        value.to_owned()
    } else {
        marker(value.as_bytes())
    }
}

/// The policy the whole process uses where none is handed down (the
/// report's backstop, the diff log's path); the configuration's, once
/// [`install`]ed.
static CURRENT: LazyLock<RwLock<Arc<Policy>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Policy::default())));

/// The process's policy.
pub fn current() -> Arc<Policy> {
    Arc::clone(&CURRENT.read().unwrap_or_else(|e| e.into_inner()))
}

/// Makes `policy` the process's (at start and on reload).
pub fn install(policy: Policy) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
}

#[cfg(test)]
mod tests;
