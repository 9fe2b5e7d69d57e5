//! Text bodies (HTML, plain text, XML) compared by lines, so that one
//! changing line (a timestamp in a page) is one difference at one place,
//! not "the body differs".
//!
//! Each group of changed lines (a hunk of a line diff: Myers, as the
//! `similar` crate computes it, its work bounded on hard inputs) is one
//! [`Difference`] at `body:line 12 after "<footer>"`: v1's line number,
//! then the nearest unchanged line above it (`at start` when none), its
//! digits and other ids templated as `#`. [`Difference::field`] groups by
//! that anchor alone (`body:after "<footer>"`): the same region of a page
//! that shifts by a few lines from one request to the next is one field,
//! so noise can be measured on it. Values are the changed lines, shown
//! from a little before their first differing character.

use similar::{Algorithm, DiffOp, capture_diff_slices};

use super::additions::Additions;
use super::json::{ABSENT, MAX_BODY_DIFFERENCES, cut, more_differences, readable};
use crate::compare::verdict::{Difference, Kind};

/// Characters of context shown before the first differing character.
const PREVIEW_CONTEXT: usize = 24;
/// Longest anchor kept (characters).
const ANCHOR_CHARS: usize = 40;

/// The changed regions of two texts (left = v1), at most
/// [`MAX_BODY_DIFFERENCES`] plus one entry counting the rest; those the
/// `additions` explain (echoed header lines) are left out.
pub fn diff(left: &str, right: &str, additions: &Additions) -> Vec<Difference> {
    let old: Vec<&str> = left.split('\n').collect();
    let new: Vec<&str> = right.split('\n').collect();
    let mut found = Vec::new();
    let mut left_out = 0;
    for (old_lines, new_lines) in hunks(&capture_diff_slices(Algorithm::Myers, &old, &new)) {
        let (old_part, new_part) = (&old[old_lines.clone()], &new[new_lines]);
        if additions.explains_lines(old_part, new_part) {
            continue;
        }
        if found.len() >= MAX_BODY_DIFFERENCES {
            left_out += 1;
            continue;
        }
        let path = format!(
            "body:line {} {}",
            old_lines.start + 1,
            anchor(&old[..old_lines.start])
        );
        let (shown_left, shown_right) = previews(&old_part.join("\n"), &new_part.join("\n"));
        let absent_if_empty = |lines: &[&str], shown: String| match lines {
            [] => ABSENT.to_owned(),
            _ => shown,
        };
        found.push(Difference::new(
            Kind::Body,
            path,
            absent_if_empty(old_part, shown_left),
            absent_if_empty(new_part, shown_right),
        ));
    }
    if left_out > 0 {
        found.push(more_differences(left_out));
    }
    found
}

/// The line ranges (v1's, the target's) of each run of changes.
fn hunks(ops: &[DiffOp]) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let mut hunks: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    let mut open = false;
    for op in ops {
        if let DiffOp::Equal { .. } = op {
            open = false;
            continue;
        }
        let (old, new) = (op.old_range(), op.new_range());
        match hunks.last_mut() {
            Some((o, n)) if open => {
                o.end = old.end;
                n.end = new.end;
            }
            _ => hunks.push((old, new)),
        }
        open = true;
    }
    hunks
}

/// Where a hunk is: after the nearest non-blank line above it, templated.
fn anchor(above: &[&str]) -> String {
    match above
        .iter()
        .rev()
        .map(|line| line.trim())
        .find(|l| !l.is_empty())
    {
        None => "at start".to_owned(),
        Some(line) => {
            let templated: String = template(line).chars().take(ANCHOR_CHARS).collect();
            format!("after \"{}\"", readable(templated.as_bytes()))
        }
    }
}

/// Numbers, and runs of letters and digits that hold a digit and are
/// longer than a tag name (`h1` stays; dates, ids, hashes go) → `#`: the
/// anchor stays the same whatever the request.
fn template(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let (digits, length) = (
            word.chars().filter(char::is_ascii_digit).count(),
            word.chars().count(),
        );
        if digits > 0 && (digits == length || length > 3) {
            out.push('#');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Two differing texts made readable: from a little before their first
/// differing character, cut.
pub(super) fn previews(left: &str, right: &str) -> (String, String) {
    let first_difference = left
        .char_indices()
        .zip(right.chars())
        .find(|((_, l), r)| l != r)
        .map_or(left.len().min(right.len()), |((at, _), _)| at);
    let start = left[..first_difference]
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
    (from(left), from(right))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::verdict::VALUE_CHARS;

    fn rows(left: &str, right: &str) -> Vec<(String, String, String)> {
        diff(left, right, &Additions::none())
            .into_iter()
            .map(|d| {
                assert_eq!(d.kind, Kind::Body);
                (d.path, d.left, d.right)
            })
            .collect()
    }

    fn row(path: &str, left: &str, right: &str) -> (String, String, String) {
        (path.to_owned(), left.to_owned(), right.to_owned())
    }

    fn page(items: usize, at: &str) -> String {
        let list: String = (0..items).map(|i| format!("<li>item {i}</li>\n")).collect();
        format!("<html>\n<ul>\n{list}</ul>\n<footer>\n<p>served at {at}</p>\n</footer>\n</html>\n")
    }

    #[test]
    fn one_changed_line_is_one_difference_at_its_line() {
        assert_eq!(
            rows(&page(3, "10:00:01"), &page(3, "10:00:02")),
            vec![row(
                "body:line 8 after \"<footer>\"",
                "<p>served at 10:00:01</p>",
                "<p>served at 10:00:02</p>"
            )]
        );
    }

    #[test]
    fn the_field_of_a_region_stays_when_the_page_shifts() {
        let short = diff(&page(2, "1"), &page(2, "2"), &Additions::none());
        let long = diff(&page(9, "1"), &page(9, "2"), &Additions::none());
        assert_ne!(short[0].path, long[0].path, "the line numbers differ");
        assert_eq!(short[0].field(), long[0].field());
        assert_eq!(short[0].field(), "body:after \"<footer>\"");
        // Ids in the line above are templated.
        let at = |id: u32| {
            diff(
                &format!("<h1>Order {id}-a7f3</h1>\nx"),
                "",
                &Additions::none(),
            )
            .remove(0)
            .field()
        };
        assert_eq!(at(1), "body:at start");
        let below = |id: u32| {
            diff(
                &format!("<h1>Order {id}-a7f3</h1>\nx"),
                &format!("<h1>Order {id}-a7f3</h1>\ny"),
                &Additions::none(),
            )
            .remove(0)
            .field()
        };
        assert_eq!(below(7), below(12345));
        assert_eq!(below(7), "body:after \"<h1>Order #-#</h1>\"");
    }

    #[test]
    fn separate_changes_are_separate_hunks_and_insertions_show_absence() {
        let found = rows("a\nb\nc\nd\ne", "a\nB\nc\nd\nd2\ne");
        assert_eq!(
            found,
            vec![
                row("body:line 2 after \"a\"", "b", "B"),
                row("body:line 5 after \"d\"", ABSENT, "d2"),
            ]
        );
        assert_eq!(
            rows("a\nb", "a"),
            vec![row("body:line 2 after \"a\"", "b", ABSENT)]
        );
    }

    #[test]
    fn a_long_line_is_shown_from_just_before_its_first_difference() {
        let common = "x".repeat(200);
        let found = rows(&format!("{common}price: 10"), &format!("{common}price: 12"));
        let (_, left, right) = &found[0];
        assert_eq!(left, &format!("…{}price: 10", "x".repeat(16)));
        assert_eq!(right, &format!("…{}price: 12", "x".repeat(16)));
        let long = "y".repeat(1000);
        let found = rows(&long, "n");
        assert_eq!(found[0].1.chars().count(), VALUE_CHARS + 1);
    }

    #[test]
    fn hunks_are_capped_and_the_rest_counted() {
        let left: String = (0..100).map(|i| format!("same\nold {i}\n")).collect();
        let right: String = (0..100).map(|i| format!("same\nnew {i}\n")).collect();
        let found = diff(&left, &right, &Additions::none());
        assert_eq!(found.len(), MAX_BODY_DIFFERENCES + 1);
        assert!(
            found[MAX_BODY_DIFFERENCES]
                .left
                .starts_with("36 more differences")
        );
    }

    #[test]
    fn echoed_header_lines_are_not_differences() {
        let original = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let sent = b"GET / HTTP/1.1\r\nHost: a\r\nX-Mirrored-By: mirror\r\n\r\n";
        let additions = Additions::between(original, sent);
        let v1 = "GET / HTTP/1.1\nHost: a\n\nserved 1";
        let target = "GET / HTTP/1.1\nHost: a\nX-Mirrored-By: mirror\n\nserved 2";
        let found = diff(v1, target, &additions);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].right, "served 2");
    }
}
