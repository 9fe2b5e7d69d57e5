//! v1's answer and a target's, compared: status, headers (but the ignored
//! ones), and bodies with their content coding undone, JSON by field path.
//! Pure: no I/O, no clock, no shared state.
//!
//! Credential header values take part in the comparison but never appear
//! in a [`Difference`]: they are shown as `<redacted>`, and `Set-Cookie` is
//! compared (and shown) by cookie names only.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::{self, Coding};
use super::json::{self, ABSENT, cut};
use crate::compare::rules::{REDACTED, Rules};
use crate::compare::verdict::{Difference, Kind, NotCompared};
use crate::http::{Answer, Body};

/// Characters of context shown before the first differing byte of two
/// text bodies.
const PREVIEW_CONTEXT: usize = 24;

/// The differences between v1's answer (left) and the target's (right):
/// none means they match. A body that cannot be decided (undecodable, or
/// over the cap with different codings) makes the pair not compared.
/// `max_decoded` bounds each decoded body.
pub fn diff(
    v1: &Answer,
    target: &Answer,
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
    diff_headers(v1, target, rules, &mut found);
    diff_bodies(v1, target, rules, max_decoded, &mut found)?;
    Ok(found)
}

/// Headers by lowercase name. Reported in name order.
fn diff_headers(v1: &Answer, target: &Answer, rules: &Rules, found: &mut Vec<Difference>) {
    let left = header_values(v1, rules);
    let right = header_values(target, rules);
    let names: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for name in names {
        let (l, r) = (left.get(name), right.get(name));
        if l == r {
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

/// What is compared of one header: its fields joined with `, `, or for
/// `Set-Cookie` the set of cookie names.
#[derive(PartialEq, Eq)]
enum HeaderValue {
    Joined(Vec<u8>),
    CookieNames(BTreeSet<String>),
}

impl HeaderValue {
    /// Readable and cut. Only called for headers that are not credentials
    /// (cookie names are not values).
    fn shown(&self) -> String {
        match self {
            HeaderValue::Joined(value) => cut(&readable(value)),
            HeaderValue::CookieNames(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                cut(&names.join(", "))
            }
        }
    }
}

fn header_values(answer: &Answer, rules: &Rules) -> BTreeMap<String, HeaderValue> {
    let mut values: BTreeMap<String, HeaderValue> = BTreeMap::new();
    for (name, value) in &answer.headers {
        let name = name.to_ascii_lowercase();
        if rules.ignores_header(&name) {
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
            _ => {
                values.insert(name, HeaderValue::Joined(value.to_vec()));
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

/// Bytes as text: invalid UTF-8 replaced, control characters escaped.
fn readable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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
    rules: &Rules,
    max_decoded: usize,
    found: &mut Vec<Difference>,
) -> Result<(), NotCompared> {
    let left_coding = joined_header(v1, "content-encoding");
    let right_coding = joined_header(target, "content-encoding");
    if !v1.body.complete() || !target.body.complete() {
        return diff_over_cap(&v1.body, left_coding, &target.body, right_coding, found);
    }
    let left = decode::decode(&v1.body.bytes, left_coding.as_deref(), max_decoded)?;
    let right = decode::decode(&target.body.bytes, right_coding.as_deref(), max_decoded)?;
    if left == right {
        return Ok(());
    }
    if compare_as_json(v1, target) {
        let left: serde_json::Result<serde_json::Value> = serde_json::from_slice(&left);
        let right: serde_json::Result<serde_json::Value> = serde_json::from_slice(&right);
        if let (Ok(left), Ok(right)) = (left, right) {
            found.extend(json::diff(&left, &right, rules));
            return Ok(());
        }
    }
    let (left, right) = previews(&left, &right);
    found.push(Difference::new(Kind::Body, "body", left, right));
    Ok(())
}

/// JSON when either side says so, or when neither says what it is (then
/// only if both parse).
fn compare_as_json(v1: &Answer, target: &Answer) -> bool {
    let (left, right) = (
        joined_header(v1, "content-type"),
        joined_header(target, "content-type"),
    );
    let says_json = |content_type: &Option<Vec<u8>>| {
        content_type.as_ref().is_some_and(|value| {
            value
                .windows(4)
                .any(|window| window.eq_ignore_ascii_case(b"json"))
        })
    };
    says_json(&left) || says_json(&right) || (left.is_none() && right.is_none())
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

/// Two differing bodies made readable: from a little before their first
/// differing character when both are text, else their size and hash.
fn previews(left: &[u8], right: &[u8]) -> (String, String) {
    let (Some(left_text), Some(right_text)) = (as_text(left), as_text(right)) else {
        let shown = |bytes: &[u8]| {
            format!(
                "<{} bytes, hash {:016x}>",
                bytes.len(),
                twox_hash::XxHash3_64::oneshot(bytes)
            )
        };
        return (shown(left), shown(right));
    };
    let first_difference = left_text
        .char_indices()
        .zip(right_text.chars())
        .find(|((_, l), r)| l != r)
        .map_or(left_text.len().min(right_text.len()), |((at, _), _)| at);
    let start = left_text[..first_difference]
        .char_indices()
        .rev()
        .nth(PREVIEW_CONTEXT - 1)
        .map_or(0, |(at, _)| at);
    let from = |text: &str| {
        let shown = cut(&readable(&text.as_bytes()[start..]));
        if start > 0 {
            format!("…{shown}")
        } else {
            shown
        }
    };
    (from(left_text), from(right_text))
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
        diff(v1, target, &Rules::default(), LIMIT)
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
        assert_eq!(diff(&v1, &target, &rules, LIMIT), Ok(vec![]));
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
        let found = diff(&v1, &target, &rules, LIMIT).unwrap();
        assert_eq!(
            rows(&found),
            vec![
                (Kind::Body, "$.items[1].price", "5", "6"),
                (Kind::Body, "$.total", "15", "16"),
            ]
        );
        assert_eq!(
            compare(&v1, &target).unwrap().len(),
            5,
            "without the rules: served_at, two ids, a price, the total"
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
        assert_eq!(rows(&found)[0].1, "body", "text is compared by bytes");
    }

    #[test]
    fn a_json_content_type_over_a_body_that_is_not_json_compares_bytes() {
        let found = compare(
            &answer(200, JSON, br#"{"ok":true}"#),
            &answer(200, JSON, b"<html>Bad Gateway</html>"),
        )
        .unwrap();
        assert_eq!(
            rows(&found),
            vec![(
                Kind::Body,
                "body",
                r#"{"ok":true}"#,
                "<html>Bad Gateway</html>"
            )]
        );
    }

    #[test]
    fn text_bodies_are_previewed_from_just_before_their_first_difference() {
        let common = "line of text that both sides share\n".repeat(5);
        let left = format!("{common}price: 10\n");
        let right = format!("{common}price: 12\n");
        let found = compare(
            &answer(200, &[], left.as_bytes()),
            &answer(200, &[], right.as_bytes()),
        )
        .unwrap();
        let (_, path, l, r) = rows(&found)[0];
        assert_eq!(path, "body");
        assert_eq!(l, "…oth sides share\\nprice: 10\\n");
        assert_eq!(r, "…oth sides share\\nprice: 12\\n");
        let long = "y".repeat(1000);
        let found = compare(&answer(200, &[], long.as_bytes()), &answer(200, &[], b"n")).unwrap();
        assert_eq!(found[0].left.chars().count(), VALUE_CHARS + 1);
        assert_eq!(found[0].right, "n");
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
    fn an_undecodable_body_makes_the_pair_not_compared() {
        let corrupt = answer(
            200,
            &[("Content-Encoding", b"gzip")],
            b"\x1f\x8b not really",
        );
        let plain = answer(200, &[], b"hello");
        assert_eq!(compare(&corrupt, &plain), Err(NotCompared::Undecodable));
        assert_eq!(compare(&plain, &corrupt), Err(NotCompared::Undecodable));
        let unknown = answer(200, &[("Content-Encoding", b"compress")], b"hello");
        assert_eq!(compare(&plain, &unknown), Err(NotCompared::Undecodable));
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
