use super::*;
use crate::compare::rules::FieldPattern;
use serde_json::json;

fn paths(left: Value, right: Value, rules: &Rules) -> Vec<(String, String, String)> {
    diff(&left, &right, rules, &Additions::none())
        .into_iter()
        .map(|d| {
            assert_eq!((d.kind, d.noise), (Kind::Body, false));
            (d.path, d.left, d.right)
        })
        .collect()
}

fn row(path: &str, left: &str, right: &str) -> (String, String, String) {
    (path.to_owned(), left.to_owned(), right.to_owned())
}

fn ignoring(patterns: &[&str]) -> Rules {
    let patterns: Vec<FieldPattern> = patterns
        .iter()
        .map(|p| FieldPattern::parse(p).unwrap())
        .collect();
    Rules::new(&[], &patterns)
}

#[test]
fn key_order_and_number_spelling_are_not_differences() {
    let left = json!({"a": 1, "b": [1.0, 2, {"x": -3, "y": 1e3}], "c": null});
    let right: Value =
        serde_json::from_str(r#"{"c": null, "b": [1, 2.0, {"y": 1000, "x": -3.0}], "a": 1.0}"#)
            .unwrap();
    assert_eq!(paths(left, right, &Rules::default()), vec![]);
}

#[test]
fn planted_differences_are_reported_at_their_exact_paths() {
    let left = json!({
        "order": {"id": 7, "total": 12.5, "status": "paid"},
        "items": [{"sku": "a", "price": 10}, {"sku": "b", "price": 2.5}],
        "gone": true,
        "a b": 1,
        "tags": ["x"],
    });
    let right = json!({
        "order": {"id": 7, "total": 12.75, "status": "paid"},
        "items": [{"sku": "a", "price": 10}, {"sku": "b", "price": "2.5"}],
        "new": {"deep": [1]},
        "a b": 2,
        "tags": ["x", "y"],
    });
    // Sorted: the order of members depends on serde_json's features.
    let mut found = paths(left, right, &Rules::default());
    found.sort();
    assert_eq!(
        found,
        vec![
            row("$.gone", "true", ABSENT),
            row("$.items[1].price", "2.5", "\"2.5\""),
            row("$.new", ABSENT, r#"{"deep":[1]}"#),
            row("$.order.total", "12.5", "12.75"),
            row("$.tags", "length 1", "length 2"),
            row("$.tags[1]", ABSENT, "\"y\""),
            row("$['a b']", "1", "2"),
        ]
    );
}

#[test]
fn a_type_change_is_reported_once_at_its_path() {
    assert_eq!(
        paths(json!({"a": {"b": 1}}), json!({"a": [1]}), &Rules::default()),
        vec![row("$.a", r#"{"b":1}"#, "[1]")]
    );
    assert_eq!(
        paths(json!([1]), json!({"0": 1}), &Rules::default()),
        vec![row("$", "[1]", r#"{"0":1}"#)]
    );
    assert_eq!(
        paths(json!({"n": 1}), json!({"n": "1"}), &Rules::default()),
        vec![row("$.n", "1", "\"1\"")]
    );
}

#[test]
fn big_integers_are_compared_exactly() {
    assert_eq!(
        paths(json!(u64::MAX), json!(u64::MAX), &Rules::default()),
        vec![]
    );
    assert_eq!(
        paths(json!(-1), json!(u64::MAX), &Rules::default()).len(),
        1
    );
    assert_eq!(
        paths(
            json!(9007199254740993u64),
            json!(9007199254740992u64),
            &Rules::default()
        )
        .len(),
        1,
        "integers past 2^53 are not rounded"
    );
}

#[test]
fn ignored_fields_are_skipped_with_their_subtrees() {
    let left = json!({
        "served_at": "2026-12-01T10:00:00Z",
        "items": [{"id": "u1", "price": 1}, {"id": "u2", "price": 2}],
        "meta": {"trace": {"span": 1}},
    });
    let right = json!({
        "items": [{"id": "v1", "price": 1}, {"id": "v2", "price": 3}],
        "meta": {"trace": [2, 3]},
    });
    assert_eq!(
        paths(
            left.clone(),
            right.clone(),
            &ignoring(&["$.served_at", "$.items[*].id", "$.meta"])
        ),
        vec![row("$.items[1].price", "2", "3")]
    );
    assert_eq!(
        paths(left, right, &Rules::default()).len(),
        6,
        "without the rules: served_at, two items gone and two new (other ids), the trace"
    );
}

#[test]
fn long_values_and_keys_are_cut_with_an_ellipsis() {
    let long = "x".repeat(1000);
    let found = paths(
        json!({ &long: [long.clone()] }),
        json!({}),
        &Rules::default(),
    );
    let (path, left, right) = &found[0];
    assert_eq!(left.chars().count(), VALUE_CHARS + 1);
    assert!(left.starts_with(r#"["xxx"#) && left.ends_with('…'));
    assert_eq!(right, ABSENT);
    assert!(
        path.starts_with("$['xxx") && path.ends_with("…']"),
        "{path}"
    );
    assert_eq!(path.chars().count(), VALUE_CHARS + 6);
    let wide = "é".repeat(500);
    assert_eq!(render_value(&json!(wide)).chars().count(), VALUE_CHARS + 1);
    assert_eq!(render_value(&json!("short")), "\"short\"");
}

#[test]
fn keys_that_are_not_identifiers_are_quoted_and_escaped() {
    assert_eq!(
        render_path(&[
            Segment::Key("a"),
            Segment::Key("1st"),
            Segment::Key("it's"),
            Segment::Key("line\nbreak"),
            Segment::Index(4),
            Segment::Key("_ok9"),
        ]),
        r"$.a['1st']['it\'s']['line\nbreak'][4]._ok9"
    );
    let pattern = FieldPattern::parse(r"$['it\'s']['line\nbreak']").unwrap();
    assert!(pattern.matches(&[Segment::Key("it's"), Segment::Key("line\nbreak")]));
}

#[test]
fn the_differences_are_capped_and_the_rest_counted() {
    let left = Value::Array((0..100).map(|i| json!(i)).collect());
    let right = Value::Array((0..100).map(|i| json!(i + 1)).collect());
    let found = paths(left, right, &Rules::default());
    assert_eq!(found.len(), MAX_BODY_DIFFERENCES + 1);
    assert_eq!(found[0], row("$[0]", "0", "1"));
    let more = "36 more differences in this answer, not listed (at most 64 are)";
    assert_eq!(found[MAX_BODY_DIFFERENCES], row(MORE_PATH, more, more));
    assert_eq!(
        Difference::new(Kind::Body, MORE_PATH, "", "").field(),
        "(more differences)",
        "a readable name of its own in the report"
    );
}

#[test]
fn elements_with_an_identity_are_matched_by_it() {
    let left = json!({"items": [
        {"id": 1, "price": 10}, {"id": 2, "price": 5}, {"id": 3, "price": 7}
    ]});
    let right = json!({"items": [
        {"id": 2, "price": 6}, {"id": 1, "price": 10}, {"id": 4, "price": 1}
    ]});
    let found = paths(left, right, &Rules::default());
    assert_eq!(
        found,
        vec![
            row("$.items", "id order: 1, 2", "id order: 2, 1"),
            row("$.items[id=2].price", "5", "6"),
            row("$.items[id=3]", r#"{"id":3,"price":7}"#, ABSENT),
            row("$.items[id=4]", ABSENT, r#"{"id":4,"price":1}"#),
        ]
    );
    let fields: Vec<String> = diff(
        &json!([{"id": 1, "p": 1}]),
        &json!([{"id": 1, "p": 2}]),
        &Rules::default(),
        &Additions::none(),
    )
    .iter()
    .map(Difference::field)
    .collect();
    assert_eq!(fields, vec!["$[*].p"], "grouped like an index");
}

#[test]
fn identities_are_strings_or_numbers_unique_on_both_sides_and_not_ignored() {
    // String ids, quoted in the path; `_id` when there is no `id`.
    assert_eq!(
        paths(
            json!([{"_id": "a'1", "n": 1}, {"_id": "b", "n": 2}]),
            json!([{"_id": "b", "n": 2}, {"_id": "a'1", "n": 3}]),
            &Rules::default()
        ),
        vec![
            row(
                "$",
                "_id order: \"a'1\", \"b\"",
                "_id order: \"b\", \"a'1\""
            ),
            row(r"$[_id='a\'1'].n", "1", "3"),
        ]
    );
    // A repeated id, a missing id, an object id: compared by position.
    for (left, right) in [
        (
            json!([{"id": 1, "n": 1}, {"id": 1, "n": 2}]),
            json!([{"id": 1, "n": 1}, {"id": 1, "n": 3}]),
        ),
        (
            json!([{"id": 1, "n": 1}, {"n": 2}]),
            json!([{"id": 1, "n": 1}, {"n": 3}]),
        ),
        (
            json!([{"id": {}, "n": 1}, {"id": [], "n": 2}]),
            json!([{"id": {}, "n": 1}, {"id": [], "n": 3}]),
        ),
    ] {
        assert_eq!(
            paths(left, right, &Rules::default()),
            vec![row("$[1].n", "2", "3")]
        );
    }
    // An ignored id is no identity.
    assert_eq!(
        paths(
            json!([{"id": "a", "n": 1}]),
            json!([{"id": "b", "n": 2}]),
            &ignoring(&["$[*].id"])
        ),
        vec![row("$[0].n", "1", "2")]
    );
}

#[test]
fn arrays_of_other_lengths_say_so_then_list_what_one_side_only_has() {
    let posts = |range: std::ops::RangeInclusive<i32>| {
        Value::Array(
            range
                .map(|i| json!({"title": format!("post {i}")}))
                .collect(),
        )
    };
    let found = paths(
        json!({"posts": posts(1..=3)}),
        json!({"posts": posts(1..=10)}),
        &Rules::default(),
    );
    assert_eq!(found.len(), 8);
    assert_eq!(found[0], row("$.posts", "length 3", "length 10"));
    assert_eq!(found[1], row("$.posts[3]", ABSENT, r#"{"title":"post 4"}"#));
    assert_eq!(found[7].0, "$.posts[9]");
    // Duplicates count as many times as they appear.
    assert_eq!(
        paths(json!([1, 1, 2]), json!([1, 2]), &Rules::default()),
        vec![row("$", "length 3", "length 2"), row("$[1]", "1", ABSENT)]
    );
}

#[test]
fn the_same_elements_in_another_order_are_one_difference() {
    assert_eq!(
        paths(
            json!({"tags": ["a", 1.0, {"x": 1}]}),
            json!({"tags": [{"x": 1.0}, "a", 1]}),
            &Rules::default()
        ),
        vec![row(
            "$.tags",
            r#"same elements in another order: ["a",1.0,{"x":1}]"#,
            r#"same elements in another order: [{"x":1.0},"a",1]"#
        )]
    );
    // Other elements at equal length: by position, as before.
    assert_eq!(
        paths(json!([1, 2, 3]), json!([1, 5, 3]), &Rules::default()),
        vec![row("$[1]", "2", "5")]
    );
    assert_eq!(
        paths(json!([1, 2]), json!([1, 2.0]), &Rules::default()),
        vec![]
    );
}

#[test]
fn echoed_additions_are_not_differences_but_real_ones_stay() {
    let original = b"GET /items HTTP/1.1\r\nHost: a\r\n\r\n";
    let sent = b"GET /v2/items HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Mirrored-By: mirror\r\n\r\n";
    let additions = Additions::between(original, sent);
    let left = json!({
        "headers": {"Host": "a"},
        "list": [{"name": "Host", "value": "a"}],
        "path": "/items",
        "count": 1,
    });
    let right = json!({
        "headers": {"Host": "a", "X-Mirrored-By": ["mirror"], "x-forwarded-for": "10.0.0.1"},
        "list": [{"name": "Host", "value": "a"}, {"name": "X-Mirrored-By", "value": "mirror"}],
        "path": "/v2/items",
        "count": 2,
        "source": "mirror",
    });
    let mut found: Vec<(String, String, String)> =
        diff(&left, &right, &Rules::default(), &additions)
            .into_iter()
            .map(|d| (d.path, d.left, d.right))
            .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            row("$.count", "1", "2"),
            row("$.source", ABSENT, "\"mirror\""),
        ],
        "the list's length is explained by its added element"
    );
    assert_eq!(additions.explained(), 4);
    // Headers echoed as lines in an array, without identity.
    let found = diff(
        &json!({"raw": ["Host: a"]}),
        &json!({"raw": ["Host: a", "X-Mirrored-By: mirror"]}),
        &Rules::default(),
        &additions,
    );
    assert_eq!(found, vec![]);
    let found = diff(
        &json!({"raw": ["Host: a"]}),
        &json!({"raw": ["Host: a", "X-Other: mirror"]}),
        &Rules::default(),
        &additions,
    );
    assert_eq!(found.len(), 2, "{found:?}");
}
