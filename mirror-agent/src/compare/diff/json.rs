//! Two JSON documents compared by structure: each difference reported at
//! its field path (`$.items[3].price`), so that a report can count "which
//! field changed" rather than "the body changed".
//!
//! Object members are matched by key (their order is not a difference),
//! array elements by index, numbers by value (`1` equals `1.0`). The
//! fields the [`Rules`] name are skipped with everything inside them.

use std::fmt::Write as _;
use std::io;

use serde_json::{Number, Value};

use crate::compare::rules::{Rules, Segment, write_key};
use crate::compare::verdict::{Difference, Kind, VALUE_CHARS};

/// Most differences listed for one pair of bodies; past it one more entry,
/// at [`MORE_PATH`], says how many were left out.
pub const MAX_BODY_DIFFERENCES: usize = 64;

/// The path of the entry that counts the differences left out.
pub const MORE_PATH: &str = "$…";

/// The value shown for a field one side does not have.
pub const ABSENT: &str = "<absent>";

/// The differences between two documents (left = v1), at most
/// [`MAX_BODY_DIFFERENCES`] of them plus one entry counting the rest.
pub fn diff(left: &Value, right: &Value, rules: &Rules) -> Vec<Difference> {
    let mut walk = Walk {
        rules,
        path: Vec::new(),
        found: Vec::new(),
        left_out: 0,
    };
    walk.compare(Some(left), Some(right));
    let mut found = walk.found;
    if walk.left_out > 0 {
        let count = format!("{} more differences not listed", walk.left_out);
        found.push(Difference::new(Kind::Body, MORE_PATH, count.clone(), count));
    }
    found
}

/// A depth-first walk of both documents at once. Recursion is bounded:
/// serde_json refuses documents nested deeper than 128 levels.
struct Walk<'r, 'v> {
    rules: &'r Rules,
    path: Vec<Segment<'v>>,
    found: Vec<Difference>,
    /// Differences past the cap, counted only.
    left_out: usize,
}

impl<'v> Walk<'_, 'v> {
    /// Compares the values at the current path (`None`: absent on that side).
    fn compare(&mut self, left: Option<&'v Value>, right: Option<&'v Value>) {
        if self.rules.ignores_any_field() && self.rules.ignores_field(&self.path) {
            return;
        }
        match (left, right) {
            (Some(Value::Object(left)), Some(Value::Object(right))) => {
                for (key, left_value) in left {
                    self.path.push(Segment::Key(key));
                    self.compare(Some(left_value), right.get(key));
                    self.path.pop();
                }
                for (key, right_value) in right {
                    if !left.contains_key(key) {
                        self.path.push(Segment::Key(key));
                        self.compare(None, Some(right_value));
                        self.path.pop();
                    }
                }
            }
            (Some(Value::Array(left)), Some(Value::Array(right))) => {
                for index in 0..left.len().max(right.len()) {
                    self.path.push(Segment::Index(index));
                    self.compare(left.get(index), right.get(index));
                    self.path.pop();
                }
            }
            (Some(Value::Number(a)), Some(Value::Number(b))) if numbers_equal(a, b) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => {}
            (left, right) => self.report(left, right),
        }
    }

    fn report(&mut self, left: Option<&Value>, right: Option<&Value>) {
        if self.found.len() >= MAX_BODY_DIFFERENCES {
            self.left_out += 1;
            return;
        }
        self.found.push(Difference::new(
            Kind::Body,
            render_path(&self.path),
            left.map_or_else(|| ABSENT.to_owned(), render_value),
            right.map_or_else(|| ABSENT.to_owned(), render_value),
        ));
    }
}

/// Numbers by value: integers exactly, and as floats when either is one.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a == b;
    }
    (a.is_f64() || b.is_f64()) && a.as_f64() == b.as_f64()
}

/// `$`, then `.name`, `['a b']` or `[3]` per step; each key cut to
/// [`VALUE_CHARS`] characters.
pub fn render_path(path: &[Segment<'_>]) -> String {
    let mut out = String::from("$");
    for segment in path {
        // Writing to a String cannot fail.
        let _ = match segment {
            Segment::Key(key) => write_key(&mut out, &cut(key)),
            Segment::Index(index) => write!(out, "[{index}]"),
        };
    }
    out
}

/// A value as compact JSON text, cut to [`VALUE_CHARS`] characters with
/// `…`. Serialization stops once enough is written: a large subtree costs
/// no more than a small one.
pub fn render_value(value: &Value) -> String {
    let mut text = Bounded {
        bytes: Vec::new(),
        limit: VALUE_CHARS * 4 + 4,
    };
    // Stopping early is the expected error; what was written is kept.
    let _ = serde_json::to_writer(&mut text, value);
    cut(&String::from_utf8_lossy(&text.bytes))
}

/// `text` cut to [`VALUE_CHARS`] characters, `…` marking the cut.
pub(super) fn cut(text: &str) -> String {
    match text.char_indices().nth(VALUE_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => {
            let mut shown = text[..end].to_owned();
            shown.push('…');
            shown
        }
    }
}

/// A writer that takes `limit` bytes, then refuses.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.bytes.len();
        if room == 0 {
            return Err(io::Error::other("enough of the value is written"));
        }
        let taken = buf.len().min(room);
        self.bytes.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::rules::FieldPattern;
    use serde_json::json;

    fn paths(left: Value, right: Value, rules: &Rules) -> Vec<(String, String, String)> {
        diff(&left, &right, rules)
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
            5,
            "without the rules: served_at, two ids, the price, the trace"
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
        let more = "36 more differences not listed";
        assert_eq!(found[MAX_BODY_DIFFERENCES], row(MORE_PATH, more, more));
    }
}
