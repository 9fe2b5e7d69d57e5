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
mod tests {
    use super::super::decode::encode::{brotli, gzip, zstd};
    use super::*;
    use crate::compare::rules::FieldPattern;
    use crate::compare::verdict::VALUE_CHARS;
    use crate::http::BodyCollector;
    use bytes::Bytes;

    const LIMIT: usize = 1 << 20;
    const CAP: usize = 64 << 10;

    fn answer(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> Answer {
        answer_capped(status, headers, body, CAP)
    }

    fn answer_capped(status: u16, headers: &[(&str, &[u8])], body: &[u8], cap: usize) -> Answer {
        let mut collector = BodyCollector::new(cap);
        collector.push(body);
        Answer {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), Bytes::copy_from_slice(v)))
                .collect(),
            body: collector.finish(),
        }
    }

    fn compare(v1: &Answer, target: &Answer) -> Result<Vec<Difference>, NotCompared> {
        diff(v1, target, &Sent::plain("GET"), &Rules::default(), LIMIT)
    }

    fn rows(found: &[Difference]) -> Vec<(Kind, &str, &str, &str)> {
        found
            .iter()
            .map(|d| {
                assert!(!d.noise, "the diff never decides noise");
                (d.kind, d.path.as_str(), d.left.as_str(), d.right.as_str())
            })
            .collect()
    }

    const JSON: &[(&str, &[u8])] = &[("Content-Type", b"application/json")];

    #[test]
    fn identical_answers_match() {
        let a = answer(200, &[("Content-Type", b"text/plain")], b"hello");
        assert_eq!(compare(&a, &a.clone()), Ok(vec![]));
    }

    #[test]
    fn a_different_status_is_reported() {
        let found = compare(&answer(200, &[], b""), &answer(500, &[], b"")).unwrap();
        assert_eq!(rows(&found), vec![(Kind::Status, "status", "200", "500")]);
    }

    #[test]
    fn headers_compare_by_lowercase_name_with_fields_joined_and_absence_shown() {
        let v1 = answer(
            200,
            &[
                ("Cache-Control", b"no-store"),
                ("Vary", b"Accept"),
                ("vary", b"Origin"),
                ("X-Only-V1", b"1"),
                ("Date", b"Mon, 01 Dec 2026 10:00:00 GMT"),
                ("X-Request-Id", b"aaa"),
            ],
            b"",
        );
        let target = answer(
            200,
            &[
                ("cache-control", b"no-store"),
                ("VARY", b"Accept, Origin"),
                ("X-Only-Target", b"2\n"),
                ("Date", b"Mon, 01 Dec 2026 10:00:01 GMT"),
                ("X-Request-Id", b"bbb"),
                ("Content-Length", b"0"),
            ],
            b"",
        );
        assert_eq!(
            rows(&compare(&v1, &target).unwrap()),
            vec![
                (Kind::Header, "x-only-target", ABSENT, "2\\n"),
                (Kind::Header, "x-only-v1", "1", ABSENT),
            ]
        );
        let rules = Rules::new(&["X-Only-V1".to_owned(), "x-only-target".to_owned()], &[]);
        assert_eq!(
            diff(&v1, &target, &Sent::plain("GET"), &rules, LIMIT),
            Ok(vec![])
        );
    }

    #[test]
    fn credential_values_are_compared_but_never_shown() {
        let v1 = answer(
            200,
            &[
                ("Authorization", b"Bearer v1-secret-aaaa"),
                ("Cookie", b"session=v1-secret-bbbb"),
                ("Set-Cookie", b"session=v1-secret-cccc; Path=/; HttpOnly"),
                ("Set-Cookie", b"theme=dark"),
                ("X-Upstream-Token", b"v1-secret-dddd"),
            ],
            b"",
        );
        let target = answer(
            200,
            &[
                ("authorization", b"Bearer target-secret-aaaa"),
                ("Cookie", b"session=target-secret-bbbb"),
                ("set-cookie", b"session=target-secret-cccc; Path=/"),
                (
                    "Set-Cookie",
                    b"lang=fr; Expires=Wed, 09 Jun 2027 10:18:14 GMT",
                ),
                ("Proxy-Authorization", b"Basic target-secret-eeee"),
            ],
            b"",
        );
        let found = compare(&v1, &target).unwrap();
        assert_eq!(
            rows(&found),
            vec![
                (Kind::Header, "authorization", REDACTED, REDACTED),
                (Kind::Header, "cookie", REDACTED, REDACTED),
                (Kind::Header, "proxy-authorization", ABSENT, REDACTED),
                (
                    Kind::Header,
                    "set-cookie",
                    "session, theme",
                    "lang, session"
                ),
                (Kind::Header, "x-upstream-token", REDACTED, ABSENT),
            ]
        );
        for d in &found {
            for shown in [&d.left, &d.right] {
                assert!(!shown.contains("secret"), "a credential leaked: {d:?}");
            }
        }
    }

    #[test]
    fn set_cookie_values_and_attributes_are_not_differences() {
        let v1 = answer(200, &[("Set-Cookie", b"session=abc; Max-Age=60")], b"");
        let target = answer(
            200,
            &[("Set-Cookie", b"session=xyz; Max-Age=3600; Secure")],
            b"",
        );
        assert_eq!(compare(&v1, &target), Ok(vec![]));
        let same_credential = answer(200, &[("Authorization", b"Bearer same")], b"");
        assert_eq!(
            compare(&same_credential, &same_credential.clone()),
            Ok(vec![])
        );
    }

    #[test]
    fn the_same_json_gzipped_on_one_side_and_plain_on_the_other_matches() {
        let document = br#"{"id":7,"items":[1,2,3]}"#;
        let plain = answer(200, JSON, document);
        for (coding, body) in [
            ("gzip", gzip(document)),
            ("br", brotli(document)),
            ("zstd", zstd(document)),
        ] {
            let encoded = answer(
                200,
                &[
                    ("Content-Type", b"application/json"),
                    ("Content-Encoding", coding.as_bytes()),
                ],
                &body,
            );
            assert_eq!(compare(&encoded, &plain), Ok(vec![]), "{coding}");
            assert_eq!(compare(&plain, &encoded), Ok(vec![]), "{coding}");
        }
        // Same document, other spelling: still a match.
        let respelled = answer(200, JSON, br#"{ "items": [1, 2, 3.0], "id": 7 }"#);
        assert_eq!(compare(&plain, &respelled), Ok(vec![]));
    }

    #[test]
    fn json_bodies_report_the_paths_that_differ_minus_the_ignored_ones() {
        let v1 = answer(
            200,
            JSON,
            br#"{"served_at":"10:00","items":[{"id":"a1","price":10},{"id":"a2","price":5}],"total":15}"#,
        );
        let target_body = br#"{"served_at":"10:01","items":[{"id":"b1","price":10},{"id":"b2","price":6}],"total":16}"#;
        let target = answer(
            200,
            &[
                ("Content-Type", b"application/json"),
                ("Content-Encoding", b"gzip"),
            ],
            &gzip(target_body),
        );
        let rules = Rules::new(
            &[],
            &[
                FieldPattern::parse("$.items[*].id").unwrap(),
                FieldPattern::parse("$.served_at").unwrap(),
            ],
        );
        let found = diff(&v1, &target, &Sent::plain("GET"), &rules, LIMIT).unwrap();
        assert_eq!(
            rows(&found),
            vec![
                (Kind::Body, "$.items[1].price", "5", "6"),
                (Kind::Body, "$.total", "15", "16"),
            ]
        );
        assert_eq!(
            compare(&v1, &target).unwrap().len(),
            6,
            "without the rules: served_at, two items gone and two new (other ids), the total"
        );
    }

    #[test]
    fn json_is_recognised_by_either_content_type_or_by_parsing_when_none_is_given() {
        let left = br#"{"a":1,"b":2}"#;
        let right = br#"{"b":2,"a":1}"#;
        let problem: &[(&str, &[u8])] = &[("Content-Type", b"application/problem+JSON")];
        let found = compare(&answer(200, problem, left), &answer(200, &[], right)).unwrap();
        assert_eq!(
            rows(&found),
            vec![(
                Kind::Header,
                "content-type",
                "application/problem+JSON",
                ABSENT
            )],
            "the bodies match as JSON"
        );
        assert_eq!(
            compare(&answer(200, &[], left), &answer(200, &[], right)),
            Ok(vec![])
        );
        let text: &[(&str, &[u8])] = &[("Content-Type", b"text/plain")];
        let found = compare(&answer(200, text, left), &answer(200, text, right)).unwrap();
        assert_eq!(
            rows(&found)[0].1,
            "body:line 1 at start",
            "text is compared by lines"
        );
    }

    #[test]
    fn a_json_content_type_over_a_body_that_is_not_json_compares_text() {
        let found = compare(
            &answer(200, JSON, br#"{"ok":true}"#),
            &answer(200, JSON, b"<html>Bad Gateway</html>"),
        )
        .unwrap();
        assert_eq!(
            rows(&found),
            vec![(
                Kind::Body,
                "body:line 1 at start",
                r#"{"ok":true}"#,
                "<html>Bad Gateway</html>"
            )]
        );
    }

    #[test]
    fn text_bodies_are_compared_by_lines_each_change_at_its_place() {
        let page = |at: &str, price: &str| {
            format!(
                "<html>\n<h1>Orders</h1>\n<p>price: {price}</p>\n<ul>\n<li>a</li>\n</ul>\n<footer>served {at}</footer>\n</html>\n"
            )
        };
        let html: &[(&str, &[u8])] = &[("Content-Type", b"text/html; charset=utf-8")];
        let found = compare(
            &answer(200, html, page("10:00:01", "10").as_bytes()),
            &answer(200, html, page("10:00:02", "12").as_bytes()),
        )
        .unwrap();
        assert_eq!(
            rows(&found),
            vec![
                (
                    Kind::Body,
                    "body:line 3 after \"<h1>Orders</h1>\"",
                    "<p>price: 10</p>",
                    "<p>price: 12</p>"
                ),
                (
                    Kind::Body,
                    "body:line 7 after \"</ul>\"",
                    "<footer>served 10:00:01</footer>",
                    "<footer>served 10:00:02</footer>"
                ),
            ]
        );
        let long = "y".repeat(1000);
        let found = compare(&answer(200, &[], long.as_bytes()), &answer(200, &[], b"n")).unwrap();
        assert_eq!(found[0].left.chars().count(), VALUE_CHARS + 1);
        assert_eq!(found[0].right, "n");
        // Said to be text, not valid UTF-8 (Latin-1): still by lines.
        let latin: &[(&str, &[u8])] = &[("Content-Type", b"text/plain; charset=latin1")];
        let found = compare(
            &answer(200, latin, b"caf\xe9\nprice 1"),
            &answer(200, latin, b"caf\xe9\nprice 2"),
        )
        .unwrap();
        assert_eq!(
            rows(&found),
            vec![(
                Kind::Body,
                "body:line 2 after \"caf\u{fffd}\"",
                "price 1",
                "price 2"
            )]
        );
    }

    #[test]
    fn binary_bodies_are_shown_by_size_and_hash() {
        let found = compare(
            &answer(200, &[], b"\x89PNG\0\x01"),
            &answer(200, &[], b"\x89PNG\0\x02"),
        )
        .unwrap();
        let (kind, path, left, right) = rows(&found)[0];
        assert_eq!((kind, path), (Kind::Body, "body"));
        assert!(left.starts_with("<6 bytes, hash ") && right.starts_with("<6 bytes, hash "));
        assert_ne!(left, right);
    }

    #[test]
    fn a_body_undecodable_on_one_side_only_is_a_difference_of_its_own_kind() {
        let gz: &[(&str, &[u8])] = &[("Content-Encoding", b"gzip")];
        let corrupt = answer(200, gz, b"plain, not gzip");
        let good = answer(200, gz, &gzip(b"hello"));
        let found = compare(&good, &corrupt).unwrap();
        assert_eq!(found.len(), 1);
        let (kind, path, left, right) = rows(&found)[0];
        assert_eq!(
            (kind, path, left),
            (Kind::Undecodable, "body", "gzip, decodes")
        );
        assert!(right.starts_with("gzip: not gzip data ("), "{right}");
        assert_eq!(found[0].field(), "undecodable");
        // Either side, and with an unknown coding.
        let plain = answer(200, &[], b"hello");
        let found = compare(&corrupt, &plain).unwrap();
        assert_eq!(found[0].kind, Kind::Undecodable);
        assert_eq!(found[0].right, "no content coding, decodes");
        let unknown = answer(200, &[("Content-Encoding", b"compress")], b"hello");
        assert_eq!(
            rows(&compare(&plain, &unknown).unwrap()),
            vec![(
                Kind::Undecodable,
                "body",
                "no content coding, decodes",
                "compress: unknown coding `compress`"
            )]
        );
    }

    #[test]
    fn bodies_undecodable_alike_are_not_compared() {
        let corrupt = answer(
            200,
            &[("Content-Encoding", b"gzip")],
            b"\x1f\x8b not really",
        );
        assert_eq!(
            compare(&corrupt, &corrupt.clone()),
            Err(NotCompared::Undecodable)
        );
        // No body: nothing to decode, whatever the coding says.
        let empty = answer(204, &[("Content-Encoding", b"gzip")], b"");
        assert_eq!(compare(&empty, &answer(204, &[], b"")), Ok(vec![]));
    }

    #[test]
    fn a_head_answers_length_and_coding_are_compared_as_values() {
        let v1 = answer(
            200,
            &[("Content-Length", b"1234"), ("Content-Encoding", b"gzip")],
            b"",
        );
        let target = answer(200, &[("content-length", b"99")], b"");
        let head = Sent::plain("HEAD");
        let found = diff(&v1, &target, &head, &Rules::default(), LIMIT).unwrap();
        assert_eq!(
            rows(&found),
            vec![
                (Kind::Header, "content-encoding", "gzip", ABSENT),
                (Kind::Header, "content-length", "1234", "99"),
            ]
        );
        // Framing for a GET: its decoded body is compared instead.
        assert_eq!(compare(&v1, &target), Ok(vec![]));
        // A 304 on both sides tells the length of what it stands for.
        let not_modified = |length: &'static [u8]| answer(304, &[("Content-Length", length)], b"");
        assert_eq!(
            rows(&compare(&not_modified(b"10"), &not_modified(b"11")).unwrap()),
            vec![(Kind::Header, "content-length", "10", "11")]
        );
        // An echo's HEAD: the length of a body that would echo the
        // marker differs by as much, and no more.
        let echoing = Sent {
            method: b"HEAD",
            additions: Additions::between(
                b"HEAD /e HTTP/1.1\r\n\r\n",
                b"HEAD /e HTTP/1.1\r\nX-Mirrored-By: mirror\r\n\r\n",
            ),
        };
        let length = |length: &'static [u8]| answer(200, &[("Content-Length", length)], b"");
        assert_eq!(
            diff(
                &length(b"1234"),
                &length(b"1264"),
                &echoing,
                &Rules::default(),
                LIMIT
            ),
            Ok(vec![])
        );
        assert_eq!(
            rows(
                &diff(
                    &length(b"1234"),
                    &length(b"99"),
                    &echoing,
                    &Rules::default(),
                    LIMIT
                )
                .unwrap()
            ),
            vec![(Kind::Header, "content-length", "1234", "99")]
        );
        // The user's own ignore list still wins.
        let rules = Rules::new(&["Content-Length".to_owned()], &[]);
        let found = diff(&v1, &target, &head, &rules, LIMIT).unwrap();
        assert_eq!(rows(&found)[0].1, "content-encoding");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn content_types_are_compared_as_parsed_media_types() {
        let typed = |value: &'static [u8]| answer(200, &[("Content-Type", value)], b"{}");
        assert_eq!(
            compare(
                &typed(b"application/json; charset=utf-8"),
                &typed(b"Application/JSON;charset=\"UTF-8\"")
            ),
            Ok(vec![])
        );
        assert_eq!(
            rows(
                &compare(
                    &typed(b"application/json; charset=utf-8"),
                    &typed(b"application/json")
                )
                .unwrap()
            ),
            vec![(
                Kind::Header,
                "content-type",
                "application/json; charset=utf-8",
                "application/json"
            )],
            "shown as sent"
        );
        // Unreadable values are compared as sent.
        assert_eq!(
            compare(&typed(b"nonsense"), &typed(b"nonsense")),
            Ok(vec![])
        );
        assert_eq!(
            compare(&typed(b"nonsense"), &typed(b"Nonsense"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn mirrors_own_additions_echoed_back_are_not_differences() {
        let original = b"GET /echo?x=1 HTTP/1.1\r\nHost: svc\r\n\r\n";
        let copy = b"GET /echo?x=1 HTTP/1.1\r\nHost: svc\r\nX-Env: shadow\r\nX-Forwarded-For: 10.200.0.1\r\nX-Mirrored-By: mirror\r\n\r\n";
        let sent = Sent {
            method: b"GET",
            additions: Additions::between(original, copy),
        };
        let v1 = answer(
            200,
            &[("Content-Type", b"application/json")],
            br#"{"headers":{"Host":"svc"},"url":"/echo?x=1","n":1}"#,
        );
        let target = answer(
            200,
            &[
                ("Content-Type", b"application/json"),
                ("X-Echo-X-Mirrored-By", b"mirror"),
                ("X-Mirrored-By", b"mirror"),
            ],
            br#"{"headers":{"Host":"svc","X-Env":"shadow","X-Forwarded-For":"10.200.0.1","X-Mirrored-By":"mirror"},"url":"/echo?x=1","n":2}"#,
        );
        let found = diff(&v1, &target, &sent, &Rules::default(), LIMIT).unwrap();
        assert_eq!(
            rows(&found),
            vec![
                (Kind::Header, "x-echo-x-mirrored-by", ABSENT, "mirror"),
                (Kind::Body, "$.n", "1", "2"),
            ],
            "the real differences stay"
        );
        assert_eq!(sent.additions.explained(), 4);
        // The same answers without the additions: all of it differs.
        assert_eq!(compare(&v1, &target).unwrap().len(), 6);
    }

    #[test]
    fn a_body_that_decodes_past_the_limit_is_over_the_cap() {
        let bomb = gzip(&vec![b'a'; 4 << 20]);
        let v1 = answer(200, &[("Content-Encoding", b"gzip")], &bomb);
        let target = answer(200, &[], b"a");
        assert_eq!(compare(&v1, &target), Err(NotCompared::BodyOverCap));
    }

    #[test]
    fn bodies_over_the_cap_compare_by_length_and_hash_under_the_same_coding() {
        let big = vec![b'z'; 1000];
        let mut other = big.clone();
        other[999] = b'y';
        let capped =
            |headers: &[(&str, &[u8])], body: &[u8]| answer_capped(200, headers, body, 100);
        assert!(!capped(&[], &big).body.complete());
        assert_eq!(compare(&capped(&[], &big), &capped(&[], &big)), Ok(vec![]));
        let found = compare(&capped(&[], &big), &capped(&[], &other)).unwrap();
        let (kind, path, left, right) = rows(&found)[0];
        assert_eq!((kind, path), (Kind::Body, "body"));
        assert!(left.starts_with("<1000 bytes, hash ") && right.starts_with("<1000 bytes, hash "));
        assert_ne!(left, right);
        // One side over the cap, the other whole: lengths tell them apart.
        let found = compare(&capped(&[], &big), &answer(200, &[], b"short")).unwrap();
        assert_eq!(
            found[0].right,
            format!(
                "<5 bytes, hash {:016x}>",
                twox_hash::XxHash3_64::oneshot(b"short")
            )
        );
        // Same coding, spelt differently.
        let gz: &[(&str, &[u8])] = &[("Content-Encoding", b"gzip")];
        let x_gz: &[(&str, &[u8])] = &[("content-encoding", b"x-gzip")];
        assert_eq!(compare(&capped(gz, &big), &capped(x_gz, &big)), Ok(vec![]));
        // Different codings: the bytes kept cannot decide.
        assert_eq!(
            compare(&capped(gz, &big), &capped(&[], &big)),
            Err(NotCompared::BodyOverCap)
        );
    }
}
