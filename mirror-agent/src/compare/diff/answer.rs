//! v1's answer and a target's, compared: status, headers (but the ignored
//! ones), and bodies with their content coding undone: JSON by field path,
//! text by lines, anything else by bytes. Pure: no I/O, no clock, no
//! shared state.
//!
//! Credential header values take part in the comparison but never appear
//! in a [`Difference`]: they are shown as `<redacted>`, and `Set-Cookie` is
//! compared (and shown) by cookie names only.
//!
//! Besides the [`Rules`], three things decide:
//! * the request's method and the status: an answer without a body (to a
//!   HEAD, or a 304) carries in `Content-Length` and `Content-Encoding`
//!   what a body would have been, so they are compared as values there
//!   (elsewhere they are framing, and the decoded bodies are compared);
//! * `Content-Type` is compared as a parsed media type (`media`);
//! * mirror's own rewrites of the copy, echoed back by a target, are not
//!   differences (`additions`); for a HEAD, a `Content-Length` that
//!   differs by no more than echoing them could add is not one either.

use std::collections::{BTreeMap, BTreeSet};

use super::additions::Additions;
use super::decode::{self, Coding, DecodeError};
use super::json::{self, ABSENT, cut, readable};
use super::media::MediaType;
use super::text;
use crate::compare::rules::{REDACTED, Rules};
use crate::compare::verdict::{Difference, Kind, NotCompared};
use crate::http::{Answer, Body};

/// What the diff knows of the request both answers answer.
pub struct Sent<'a> {
    /// The request's method, as sent (`HEAD` answers have no body).
    pub method: &'a [u8],
    /// What mirror changed in the copy the target got.
    pub additions: Additions<'a>,
}

impl Sent<'static> {
    /// A request of `method`, sent to the target as v1 got it.
    pub fn plain(method: &'static str) -> Sent<'static> {
        Sent {
            method: method.as_bytes(),
            additions: Additions::none(),
        }
    }
}

/// Headers compared as values only where an answer has no body.
const BODILESS_VALUES: &[&str] = &["content-length", "content-encoding"];

/// The differences between v1's answer (left) and the target's (right):
/// none means they match. A body that cannot be decided (over the cap
/// with different codings; both sides undecodable alike) makes the pair
/// not compared. `max_decoded` bounds each decoded body.
pub fn diff(
    v1: &Answer,
    target: &Answer,
    sent: &Sent<'_>,
    rules: &Rules,
    max_decoded: usize,
) -> Result<Vec<Difference>, NotCompared> {
    let mut found = Vec::new();
    if v1.status != target.status {
        found.push(Difference::new(
            Kind::Status,
            "status",
            v1.status.to_string(),
            target.status.to_string(),
        ));
    }
    let bodiless =
        sent.method.eq_ignore_ascii_case(b"HEAD") || (v1.status == 304 && target.status == 304);
    diff_headers(v1, target, sent, rules, bodiless, &mut found);
    diff_bodies(v1, target, sent, rules, max_decoded, &mut found)?;
    Ok(found)
}

/// Headers by lowercase name. Reported in name order.
fn diff_headers(
    v1: &Answer,
    target: &Answer,
    sent: &Sent<'_>,
    rules: &Rules,
    bodiless: bool,
    found: &mut Vec<Difference>,
) {
    let left = header_values(v1, rules, bodiless);
    let right = header_values(target, rules, bodiless);
    let names: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for name in names {
        let (l, r) = (left.get(name), right.get(name));
        if l == r {
            continue;
        }
        let text = |value: Option<&HeaderValue>| value.map(HeaderValue::text);
        let (l_text, r_text) = (text(l), text(r));
        if sent
            .additions
            .explains(Some(name), l_text.as_deref(), r_text.as_deref())
        {
            continue;
        }
        // A HEAD's length may be that of a body echoing the additions.
        let lengths = (bodiless && name == "content-length")
            .then(|| {
                Some((
                    l_text.as_deref()?.parse::<u64>().ok()?,
                    r_text.as_deref()?.parse::<u64>().ok()?,
                ))
            })
            .flatten();
        if let Some((l, r)) = lengths
            && sent.additions.explains_length_change(l.abs_diff(r))
        {
            continue;
        }
        let credential = rules.is_credential_header(name) && name != "set-cookie";
        let show = |value: Option<&HeaderValue>| match value {
            None => ABSENT.to_owned(),
            Some(_) if credential => REDACTED.to_owned(),
            Some(value) => value.shown(),
        };
        found.push(Difference::new(
            Kind::Header,
            name.clone(),
            show(l),
            show(r),
        ));
    }
}

/// What is compared of one header: its fields joined with `, `, for
/// `Set-Cookie` the set of cookie names, for `Content-Type` the media type
/// it names (shown as sent).
enum HeaderValue {
    Joined(Vec<u8>),
    CookieNames(BTreeSet<String>),
    MediaType { parsed: MediaType, sent: Vec<u8> },
}

impl PartialEq for HeaderValue {
    fn eq(&self, other: &HeaderValue) -> bool {
        match (self, other) {
            (HeaderValue::Joined(a), HeaderValue::Joined(b)) => a == b,
            (HeaderValue::CookieNames(a), HeaderValue::CookieNames(b)) => a == b,
            (
                HeaderValue::MediaType { parsed: a, .. },
                HeaderValue::MediaType { parsed: b, .. },
            ) => a == b,
            (HeaderValue::MediaType { sent: a, .. }, HeaderValue::Joined(b))
            | (HeaderValue::Joined(a), HeaderValue::MediaType { sent: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl HeaderValue {
    /// Readable and cut. Only called for headers that are not credentials
    /// (cookie names are not values).
    fn shown(&self) -> String {
        cut(&self.text())
    }

    /// Readable, whole (for the additions).
    fn text(&self) -> String {
        match self {
            HeaderValue::Joined(value) | HeaderValue::MediaType { sent: value, .. } => {
                readable(value)
            }
            HeaderValue::CookieNames(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                names.join(", ")
            }
        }
    }
}

fn header_values(answer: &Answer, rules: &Rules, bodiless: bool) -> BTreeMap<String, HeaderValue> {
    let mut values: BTreeMap<String, HeaderValue> = BTreeMap::new();
    for (name, value) in &answer.headers {
        let name = name.to_ascii_lowercase();
        let compared_here = bodiless
            && BODILESS_VALUES.contains(&name.as_str())
            && !rules.user_ignores_header(&name);
        if rules.ignores_header(&name) && !compared_here {
            continue;
        }
        if name == "set-cookie" {
            let entry = values
                .entry(name)
                .or_insert_with(|| HeaderValue::CookieNames(BTreeSet::new()));
            if let (HeaderValue::CookieNames(names), Some(cookie)) = (entry, cookie_name(value)) {
                names.insert(cookie);
            }
            continue;
        }
        match values.get_mut(&name) {
            Some(HeaderValue::Joined(joined)) => {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value);
            }
            Some(HeaderValue::MediaType { sent, .. }) => {
                // Several Content-Type fields: compared as sent.
                let mut joined = std::mem::take(sent);
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value);
                values.insert(name, HeaderValue::Joined(joined));
            }
            _ => {
                let parsed = (name == "content-type")
                    .then(|| MediaType::parse(value))
                    .flatten();
                let value = match parsed {
                    Some(parsed) => HeaderValue::MediaType {
                        parsed,
                        sent: value.to_vec(),
                    },
                    None => HeaderValue::Joined(value.to_vec()),
                };
                values.insert(name, value);
            }
        }
    }
    values
}

/// The name of the cookie a `Set-Cookie` field sets (RFC 6265 §5.2: a
/// field without `=` in its first part is ignored), never its value.
fn cookie_name(field: &[u8]) -> Option<String> {
    let pair = field.split(|&b| b == b';').next().unwrap_or_default();
    let equals = pair.iter().position(|&b| b == b'=')?;
    let name = readable(pair[..equals].trim_ascii());
    Some(cut(&name))
}

/// Both header fields of one name, joined (for Content-Encoding and
/// Content-Type, which may come as several fields).
fn joined_header(answer: &Answer, name: &str) -> Option<Vec<u8>> {
    let mut fields = answer
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_ref());
    let mut joined = fields.next()?.to_vec();
    for field in fields {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(field);
    }
    Some(joined)
}

fn diff_bodies(
    v1: &Answer,
    target: &Answer,
    sent: &Sent<'_>,
    rules: &Rules,
    max_decoded: usize,
    found: &mut Vec<Difference>,
) -> Result<(), NotCompared> {
    let left_coding = joined_header(v1, "content-encoding");
    let right_coding = joined_header(target, "content-encoding");
    if !v1.body.complete() || !target.body.complete() {
        return diff_over_cap(&v1.body, left_coding, &target.body, right_coding, found);
    }
    let (left, right) = match (
        decoded(&v1.body, left_coding.as_deref(), max_decoded),
        decoded(&target.body, right_coding.as_deref(), max_decoded),
    ) {
        (Ok(left), Ok(right)) => (left, right),
        (Err(DecodeError::TooLarge { .. }), _) | (_, Err(DecodeError::TooLarge { .. })) => {
            return Err(NotCompared::BodyOverCap);
        }
        (left, right) => {
            let describe = |decoded: &Result<_, DecodeError>, coding: &Option<Vec<u8>>| {
                let coding = coding
                    .as_deref()
                    .map_or_else(|| "no content coding".to_owned(), readable);
                match decoded {
                    Ok(_) => cut(&format!("{coding}, decodes")),
                    Err(error) => cut(&format!("{coding}: {}", undecodable(error))),
                }
            };
            let (left, right) = (
                describe(&left, &left_coding),
                describe(&right, &right_coding),
            );
            // Both sides broken alike: nothing tells them apart.
            if left == right {
                return Err(NotCompared::Undecodable);
            }
            found.push(Difference::new(Kind::Undecodable, "body", left, right));
            return Ok(());
        }
    };
    if left == right {
        return Ok(());
    }
    let (left_type, right_type) = (media_type(v1), media_type(target));
    if compare_as_json(&left_type, &right_type) {
        let left: serde_json::Result<serde_json::Value> = serde_json::from_slice(&left);
        let right: serde_json::Result<serde_json::Value> = serde_json::from_slice(&right);
        if let (Ok(left), Ok(right)) = (left, right) {
            found.extend(json::diff(&left, &right, rules, &sent.additions));
            return Ok(());
        }
    }
    let says_text = |media: &Option<MediaType>| media.as_ref().is_some_and(MediaType::is_text);
    match (as_text(&left), as_text(&right)) {
        (Some(left), Some(right)) => found.extend(text::diff(left, right, &sent.additions)),
        _ if says_text(&left_type) || says_text(&right_type) => {
            let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            found.extend(text::diff(&lossy(&left), &lossy(&right), &sent.additions));
        }
        _ => {
            let shown = |bytes: &[u8]| {
                format!(
                    "<{} bytes, hash {:016x}>",
                    bytes.len(),
                    twox_hash::XxHash3_64::oneshot(bytes)
                )
            };
            found.push(Difference::new(
                Kind::Body,
                "body",
                shown(&left),
                shown(&right),
            ));
        }
    }
    Ok(())
}

/// The body with its content coding undone. No body (a HEAD's, a 204's)
/// has nothing to decode, whatever the coding says.
fn decoded<'a>(
    body: &'a Body,
    coding: Option<&[u8]>,
    max_decoded: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    if body.bytes.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(&[]));
    }
    decode::decode(&body.bytes, coding, max_decoded)
}

/// Why a body did not decode, in a few words.
fn undecodable(error: &DecodeError) -> String {
    match error {
        DecodeError::UnknownCoding(coding) => format!("unknown coding `{coding}`"),
        DecodeError::Corrupt { coding, detail } => format!("not {coding} data ({detail})"),
        DecodeError::TooLarge { limit } => format!("over {limit} bytes decoded"),
    }
}

/// The answer's media type, if it says one that can be read.
fn media_type(answer: &Answer) -> Option<MediaType> {
    MediaType::parse(&joined_header(answer, "content-type")?)
}

/// JSON when either side says so (`application/json`, `+json`), or when
/// neither says what it is (then only if both parse).
fn compare_as_json(left: &Option<MediaType>, right: &Option<MediaType>) -> bool {
    let says_json = |media: &Option<MediaType>| {
        media.as_ref().is_some_and(|media| {
            media.essence.ends_with("/json") || media.essence.ends_with("+json")
        })
    };
    says_json(left) || says_json(right) || (left.is_none() && right.is_none())
}

/// At least one body is longer than the cap: only the length and hash of
/// the whole (encoded) bodies are known, which decide only when both sides
/// used the same coding.
fn diff_over_cap(
    left: &Body,
    left_coding: Option<Vec<u8>>,
    right: &Body,
    right_coding: Option<Vec<u8>>,
    found: &mut Vec<Difference>,
) -> Result<(), NotCompared> {
    let normalized = |coding: Option<Vec<u8>>| -> Result<Vec<Coding>, NotCompared> {
        Ok(decode::codings(coding.as_deref())?)
    };
    if normalized(left_coding)? != normalized(right_coding)? {
        return Err(NotCompared::BodyOverCap);
    }
    if (left.len, left.hash) != (right.len, right.hash) {
        let shown = |body: &Body| format!("<{} bytes, hash {:016x}>", body.len, body.hash);
        found.push(Difference::new(
            Kind::Body,
            "body",
            shown(left),
            shown(right),
        ));
    }
    Ok(())
}

/// The body as text, if it is: valid UTF-8 without NUL bytes.
fn as_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|text| !text.contains('\0'))
}

#[cfg(test)]
mod tests;
