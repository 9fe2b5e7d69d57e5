//! Two JSON documents compared by structure: each difference reported at
//! its field path (`$.items[3].price`), so that a report can count "which
//! field changed" rather than "the body changed".
//!
//! Object members are matched by key (their order is not a difference),
//! numbers by value (`1` equals `1.0`). The fields the [`Rules`] name are
//! skipped with everything inside them, and a difference that is mirror's
//! own rewrite echoed back ([`Additions`]) is not one.
//!
//! Arrays, so that a list that changed reads as what happened to it:
//! * elements that are all objects with one identity member ([`ID_KEYS`]:
//!   present in every element of both sides, a string or a number, unique
//!   per side, not an ignored field) are matched by it: a changed element
//!   at `$.items[id=7].price`, one side's only element at `$.items[id=7]`;
//!   a length and an order of the common ids that differ come first;
//! * otherwise, lengths that differ are one difference (`$.items`,
//!   `length 3` against `length 10`), followed by the elements found on
//!   one side only (`$.items[4]`, at their index on their side);
//! * equal lengths, the same elements in another order: one difference
//!   (`$.items`, `same elements in another order`);
//! * equal lengths, other elements: compared by position.
//!
//! [`Difference::field`] groups `[3]` and `[id=7]` alike as `[*]`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io;

use serde_json::{Number, Value};

use super::additions::Additions;
use crate::compare::rules::{Rules, Segment, write_key};
use crate::compare::verdict::{Difference, Kind, VALUE_CHARS};

/// Most differences listed for one pair of bodies; past it one more entry,
/// at [`MORE_PATH`], says how many were left out.
pub const MAX_BODY_DIFFERENCES: usize = 64;

/// The path of the entry that counts the differences left out: not a
/// field of the document, a note that this answer had more differences
/// than [`MAX_BODY_DIFFERENCES`].
pub const MORE_PATH: &str = "(more differences)";

/// The value shown for a field one side does not have.
pub const ABSENT: &str = "<absent>";

/// The members that identify an array's elements, tried in this order:
/// the first that every element of both sides has (and unique) is used.
pub const ID_KEYS: &[&str] = &["id", "_id", "uuid", "key", "name"];

/// The differences between two documents (left = v1), at most
/// [`MAX_BODY_DIFFERENCES`] of them plus one entry counting the rest;
/// those `additions` explain are left out.
pub fn diff(left: &Value, right: &Value, rules: &Rules, additions: &Additions) -> Vec<Difference> {
    let mut walk = Walk {
        rules,
        additions,
        path: Vec::new(),
        identities: Vec::new(),
        found: Vec::new(),
        left_out: 0,
    };
    walk.compare(Some(left), Some(right));
    let mut found = walk.found;
    if walk.left_out > 0 {
        found.push(more_differences(walk.left_out));
    }
    found
}

/// The entry that counts the differences past the cap.
pub(super) fn more_differences(left_out: usize) -> Difference {
    let count = format!(
        "{left_out} more differences in this answer, not listed (at most {MAX_BODY_DIFFERENCES} are)"
    );
    Difference::new(Kind::Body, MORE_PATH, count.clone(), count)
}

/// A depth-first walk of both documents at once. Recursion is bounded:
/// serde_json refuses documents nested deeper than 128 levels.
struct Walk<'r, 'v> {
    rules: &'r Rules,
    additions: &'r Additions<'r>,
    path: Vec<Segment<'v>>,
    /// The elements of `path` matched by identity: (their index in
    /// `path`, the identity member, its value), shown as `[id=7]`.
    identities: Vec<(usize, &'v str, &'v Value)>,
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
                self.compare_arrays(left, right);
            }
            (Some(Value::Number(a)), Some(Value::Number(b))) if numbers_equal(a, b) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => {}
            (left, right) => self.report(left, right),
        }
    }

    fn compare_arrays(&mut self, left: &'v [Value], right: &'v [Value]) {
        if let Some(key) = self.identity_key(left, right) {
            return self.compare_by_identity(key, left, right);
        }
        if left.len() != right.len() {
            // The length first, unless mirror's additions explain every
            // element one side only has.
            let before = self.mark();
            let (left_only, right_only) = one_side_only(left, right);
            for index in left_only {
                self.element(index, Some(&left[index]), None);
            }
            for index in right_only {
                self.element(index, None, Some(&right[index]));
            }
            if self.grew_since(before) {
                self.note_at(before.0, length(left), length(right));
            }
            return;
        }
        let before = self.mark();
        let (found, left_out) = before;
        for (index, (l, r)) in left.iter().zip(right).enumerate() {
            self.element(index, Some(l), Some(r));
        }
        if self.grew_since(before) && one_side_only(left, right) == (vec![], vec![]) {
            self.found.truncate(found);
            self.left_out = left_out;
            let shown = |elements: &[Value]| {
                format!("same elements in another order: {}", render_value(elements))
            };
            self.note(cut(&shown(left)), cut(&shown(right)));
        }
    }

    /// The identity member of both arrays' elements, if they have one.
    fn identity_key(&self, left: &[Value], right: &[Value]) -> Option<&'static str> {
        if left.is_empty() || right.is_empty() {
            return None;
        }
        ID_KEYS.iter().copied().find(|key| {
            let identifies = |elements: &[Value]| {
                let mut seen = std::collections::HashSet::with_capacity(elements.len());
                elements
                    .iter()
                    .all(|element| identity(element, key).is_some_and(|id| seen.insert(id)))
            };
            let ignored = self.rules.ignores_any_field() && {
                let mut path = self.path.clone();
                path.extend([Segment::Index(0), Segment::Key(key)]);
                self.rules.ignores_field(&path)
            };
            !ignored && identifies(left) && identifies(right)
        })
    }

    fn compare_by_identity(&mut self, key: &'static str, left: &'v [Value], right: &'v [Value]) {
        let position = |elements: &'v [Value]| -> HashMap<IdKey<'v>, usize> {
            elements
                .iter()
                .enumerate()
                .filter_map(|(index, element)| Some((identity(element, key)?, index)))
                .collect()
        };
        let in_right = position(right);
        let in_left = position(left);
        let first = self.found.len();
        // The common elements' order, each side's.
        let common: Vec<usize> = left
            .iter()
            .filter_map(|element| in_right.get(&identity(element, key)?).copied())
            .collect();
        if common.windows(2).any(|pair| pair[0] > pair[1]) {
            let ids = |indices: &mut dyn Iterator<Item = usize>, elements: &[Value]| {
                let shown: Vec<String> = indices
                    .take(VALUE_CHARS / 2)
                    .filter_map(|index| elements[index].get(key).map(render_value))
                    .collect();
                cut(&format!("{key} order: {}", shown.join(", ")))
            };
            let mut in_left_order = left
                .iter()
                .enumerate()
                .filter(|(_, element)| {
                    identity(element, key).is_some_and(|id| in_right.contains_key(&id))
                })
                .map(|(index, _)| index);
            let mut sorted = common.clone();
            sorted.sort_unstable();
            let shown_left = ids(&mut in_left_order, left);
            let shown_right = ids(&mut sorted.into_iter(), right);
            self.note(shown_left, shown_right);
        }
        let before = self.mark();
        for (index, element) in left.iter().enumerate() {
            let other = identity(element, key)
                .and_then(|id| in_right.get(&id))
                .map(|&at| &right[at]);
            self.identified(index, key, element, Some(element), other);
        }
        for (index, element) in right.iter().enumerate() {
            if identity(element, key).is_some_and(|id| !in_left.contains_key(&id)) {
                self.identified(index, key, element, None, Some(element));
            }
        }
        if left.len() != right.len() && self.grew_since(before) {
            self.note_at(first, length(left), length(right));
        }
    }

    /// Compares one element known by its identity (`element`'s `key`).
    fn identified(
        &mut self,
        index: usize,
        key: &'v str,
        element: &'v Value,
        left: Option<&'v Value>,
        right: Option<&'v Value>,
    ) {
        let Some(id) = element.get(key) else { return };
        self.path.push(Segment::Index(index));
        self.identities.push((self.path.len() - 1, key, id));
        self.compare(left, right);
        self.identities.pop();
        self.path.pop();
    }

    /// Compares one element known by its index.
    fn element(&mut self, index: usize, left: Option<&'v Value>, right: Option<&'v Value>) {
        self.path.push(Segment::Index(index));
        self.compare(left, right);
        self.path.pop();
    }

    /// Reports a difference at the current path; mirror's own additions
    /// are not differences.
    fn report(&mut self, left: Option<&Value>, right: Option<&Value>) {
        if self.explained(left, right) {
            return;
        }
        self.push(
            left.map_or_else(|| ABSENT.to_owned(), render_value),
            right.map_or_else(|| ABSENT.to_owned(), render_value),
        );
    }

    /// A difference of the current array itself (its length, its order).
    fn note(&mut self, left: String, right: String) {
        self.push(left, right);
    }

    /// The same, put before the differences found since `at` (when the
    /// list is full, the last one listed makes room).
    fn note_at(&mut self, at: usize, left: String, right: String) {
        if at >= MAX_BODY_DIFFERENCES {
            self.left_out += 1;
            return;
        }
        if self.found.len() >= MAX_BODY_DIFFERENCES {
            self.found.pop();
            self.left_out += 1;
        }
        let path = self.render_path();
        self.found
            .insert(at, Difference::new(Kind::Body, path, left, right));
    }

    /// How many differences are found so far, listed and left out.
    fn mark(&self) -> (usize, usize) {
        (self.found.len(), self.left_out)
    }

    fn grew_since(&self, (found, left_out): (usize, usize)) -> bool {
        self.found.len() > found || self.left_out > left_out
    }

    fn push(&mut self, left: String, right: String) {
        if self.found.len() >= MAX_BODY_DIFFERENCES {
            self.left_out += 1;
            return;
        }
        let path = self.render_path();
        self.found
            .push(Difference::new(Kind::Body, path, left, right));
    }

    /// Whether the additions explain this difference: a string (or strings
    /// in an array, as some echoes give header values) named by the
    /// nearest member key, or a `{"name": .., "value": ..}` pair.
    fn explained(&self, left: Option<&Value>, right: Option<&Value>) -> bool {
        let name = self.path.iter().rev().find_map(|segment| match segment {
            Segment::Key(key) => Some(*key),
            Segment::Index(_) => None,
        });
        let (l, r) = (left.and_then(as_text), right.and_then(as_text));
        let text_or_absent =
            |value: Option<&Value>, text: &Option<String>| value.is_none() || text.is_some();
        if text_or_absent(left, &l) && text_or_absent(right, &r) && (l.is_some() || r.is_some()) {
            let (l_lines, r_lines): (Vec<&str>, Vec<&str>) = (
                l.as_deref().into_iter().collect(),
                r.as_deref().into_iter().collect(),
            );
            return self.additions.explains(name, l.as_deref(), r.as_deref())
                || self.additions.explains_lines(&l_lines, &r_lines);
        }
        match (left, right) {
            (None, Some(pair)) => name_value(pair)
                .is_some_and(|(n, v)| self.additions.explains(Some(n), None, Some(v))),
            (Some(pair), None) => name_value(pair)
                .is_some_and(|(n, v)| self.additions.explains(Some(n), Some(v), None)),
            _ => false,
        }
    }

    /// The current path, elements matched by identity shown by it.
    fn render_path(&self) -> String {
        let mut out = String::from("$");
        let mut identities = self.identities.iter().peekable();
        for (at, segment) in self.path.iter().enumerate() {
            if let Some((_, key, id)) = identities.next_if(|(depth, _, _)| *depth == at) {
                write_identity(&mut out, key, id);
                continue;
            }
            write_segment(&mut out, segment);
        }
        out
    }
}

fn length(elements: &[Value]) -> String {
    format!("length {}", elements.len())
}

/// A member's text for the additions: a string, or an array of strings
/// joined with `, ` (as a header's fields are).
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Array(items) if !items.is_empty() => {
            let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            Some(texts?.join(", "))
        }
        _ => None,
    }
}

/// `{"name": "X-A", "value": "1"}` (or `key`), as some echoes list headers.
fn name_value(value: &Value) -> Option<(&str, &str)> {
    let object = value.as_object()?;
    if object.len() != 2 {
        return None;
    }
    let name = object.get("name").or_else(|| object.get("key"))?.as_str()?;
    Some((name, object.get("value")?.as_str()?))
}

/// An element's identity: its `key` member, a string or a number.
#[derive(Hash, PartialEq, Eq)]
enum IdKey<'v> {
    Text(&'v str),
    Number(String),
}

fn identity<'v>(element: &'v Value, key: &str) -> Option<IdKey<'v>> {
    match element.as_object()?.get(key)? {
        Value::String(text) => Some(IdKey::Text(text)),
        Value::Number(number) => Some(IdKey::Number(number.to_string())),
        _ => None,
    }
}

/// The indices of the elements of each side that the other does not have
/// (as many times: a multiset), by value.
fn one_side_only(left: &[Value], right: &[Value]) -> (Vec<usize>, Vec<usize>) {
    let mut unmatched: HashMap<u64, Vec<usize>> = HashMap::new();
    for (index, element) in right.iter().enumerate() {
        unmatched
            .entry(value_hash(element))
            .or_default()
            .push(index);
    }
    let mut left_only = Vec::new();
    for (index, element) in left.iter().enumerate() {
        let bucket = unmatched.get_mut(&value_hash(element));
        let matched = bucket.and_then(|bucket| {
            let at = bucket
                .iter()
                .position(|&r| values_equal(element, &right[r]))?;
            Some(bucket.swap_remove(at))
        });
        if matched.is_none() {
            left_only.push(index);
        }
    }
    let mut right_only: Vec<usize> = unmatched.into_values().flatten().collect();
    right_only.sort_unstable();
    (left_only, right_only)
}

/// Equality as the walk sees it: numbers by value, members in any order.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| values_equal(a, b)))
        }
        (a, b) => a == b,
    }
}

/// A hash that agrees with [`values_equal`]: numbers hashed as floats,
/// members in key order.
fn value_hash(value: &Value) -> u64 {
    fn feed(value: &Value, hasher: &mut impl Hasher) {
        match value {
            Value::Null => 0u8.hash(hasher),
            Value::Bool(b) => (1u8, b).hash(hasher),
            Value::Number(n) => (2u8, n.as_f64().map(f64::to_bits)).hash(hasher),
            Value::String(s) => (3u8, s).hash(hasher),
            Value::Array(items) => {
                (4u8, items.len()).hash(hasher);
                items.iter().for_each(|item| feed(item, hasher));
            }
            Value::Object(members) => {
                let mut keys: Vec<&String> = members.keys().collect();
                keys.sort_unstable();
                (5u8, keys.len()).hash(hasher);
                for key in keys {
                    key.hash(hasher);
                    feed(&members[key], hasher);
                }
            }
        }
    }
    let mut hasher = twox_hash::XxHash3_64::default();
    feed(value, &mut hasher);
    hasher.finish()
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
        write_segment(&mut out, segment);
    }
    out
}

fn write_segment(out: &mut String, segment: &Segment<'_>) {
    // Writing to a String cannot fail.
    let _ = match segment {
        Segment::Key(key) => write_key(out, &cut(key)),
        Segment::Index(index) => write!(out, "[{index}]"),
    };
}

/// `[id=7]`, or `[id='a-1']` with `\\` and `\'` escaped (the identity's
/// text cut to [`VALUE_CHARS`] characters).
fn write_identity(out: &mut String, key: &str, id: &Value) {
    out.push('[');
    out.push_str(key);
    out.push('=');
    match id {
        Value::String(text) => {
            out.push('\'');
            for c in cut(text).chars() {
                match c {
                    '\\' | '\'' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if c.is_control() => out.extend(c.escape_default()),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        other => out.push_str(&render_value(other)),
    }
    out.push(']');
}

/// A value as compact JSON text, cut to [`VALUE_CHARS`] characters with
/// `…`. Serialization stops once enough is written: a large subtree costs
/// no more than a small one.
pub fn render_value(value: &(impl serde::Serialize + ?Sized)) -> String {
    let mut text = Bounded {
        bytes: Vec::new(),
        limit: VALUE_CHARS * 4 + 4,
    };
    // Stopping early is the expected error; what was written is kept.
    let _ = serde_json::to_writer(&mut text, value);
    cut(&String::from_utf8_lossy(&text.bytes))
}

/// Bytes as text: invalid UTF-8 replaced, control characters escaped.
pub(super) fn readable(bytes: &[u8]) -> String {
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
mod tests;
