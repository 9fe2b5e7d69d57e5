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
    let capped = |headers: &[(&str, &[u8])], body: &[u8]| answer_capped(200, headers, body, 100);
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
