//! The view across a target's endpoints: the fields that differ on many of
//! them at once (a header every answer of the new version adds, a body
//! field renamed everywhere), which the per-endpoint lists repeat once per
//! endpoint and which one flag often removes. Computed at snapshot time
//! from the endpoints' field counts, which are already bounded
//! (`max_endpoints` × [`FIELDS_PER_ENDPOINT`](super::FIELDS_PER_ENDPOINT)),
//! so this costs a scrape, not the compare thread.

use std::collections::HashMap;

use super::snapshot::{EndpointReport, FieldSummary, OTHER_FIELDS};
use crate::compare::rules::FieldPattern;
use crate::compare::verdict::Kind;

/// Most fields in a target's summary; the rest are still in their
/// endpoints' lists.
pub const SUMMARY_FIELDS: usize = 20;

/// A field on a single endpoint is summarised when it differs on at least
/// this share (percent) of the target's compared pairs: then it is a
/// headline of its own, not one endpoint's detail.
pub const SUMMARY_SHARE_PERCENT: u64 = 10;

/// The summary of `endpoints` (one target's, `compared` pairs in all):
/// the fields that differ on two endpoints or more, or on at least
/// [`SUMMARY_SHARE_PERCENT`] of the pairs; real differences before those
/// that were only ever noise, then the most severe kind first (failed,
/// status, undecodable, body, header), then the most pairs, the most
/// endpoints, the path. At most [`SUMMARY_FIELDS`].
pub fn summarize(endpoints: &[EndpointReport], compared: u64) -> Vec<FieldSummary> {
    let mut by_path: HashMap<&str, FieldSummary> = HashMap::new();
    for endpoint in endpoints {
        for field in &endpoint.fields {
            // The pooled rest of an endpoint is not one field.
            if field.path == OTHER_FIELDS {
                continue;
            }
            let summary = by_path
                .entry(field.path.as_str())
                .or_insert_with(|| FieldSummary {
                    path: field.path.clone(),
                    kind: field_kind(&field.path),
                    count: 0,
                    noise_count: 0,
                    noise: true,
                    endpoints: 0,
                    compared: 0,
                    hint: ignore_hint(&field.path),
                });
            summary.count += field.count;
            summary.noise_count += field.noise_count;
            summary.noise &= field.noise;
            summary.endpoints += 1;
            summary.compared += endpoint.pairs.compared;
        }
    }
    let mut summary: Vec<FieldSummary> = by_path
        .into_values()
        .filter(|f| {
            f.endpoints >= 2
                || u128::from(f.count) * 100
                    >= u128::from(compared) * u128::from(SUMMARY_SHARE_PERCENT)
        })
        .collect();
    summary.sort_by(|a, b| {
        a.noise
            .cmp(&b.noise)
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| b.count.cmp(&a.count))
            .then_with(|| b.endpoints.cmp(&a.endpoints))
            .then_with(|| a.path.cmp(&b.path))
    });
    summary.truncate(SUMMARY_FIELDS);
    summary
}

/// The kind of difference a report field path names (the inverse of
/// [`Difference::field`](crate::compare::Difference::field)): `status`,
/// `failed...`, `undecodable...`, `header:<name>`, anything else a body.
pub fn field_kind(path: &str) -> Kind {
    if path == "status" {
        Kind::Status
    } else if path.starts_with("failed") {
        Kind::Failed
    } else if path.starts_with("undecodable") {
        Kind::Undecodable
    } else if path.starts_with("header:") {
        Kind::Header
    } else {
        Kind::Body
    }
}

/// The flag that leaves the field at `path` out of the comparison, ready
/// to paste into a shell: `--compare-ignore-header X-Powered-By`,
/// `--compare-ignore-field '$.items[*].id'`. None for what no flag
/// ignores (status, failures, a body compared whole) and for `$` and
/// `$[*]`, whose pattern would leave the whole body (every element of a
/// top-level list) out: that is no advice to give.
/// The flag names are the command line's (config/sections.rs).
pub fn ignore_hint(path: &str) -> Option<String> {
    match field_kind(path) {
        Kind::Header => {
            let name = path.strip_prefix("header:")?;
            (!name.is_empty())
                .then(|| format!("--compare-ignore-header {}", shell_word(&header_case(name))))
        }
        Kind::Body => {
            let pattern = FieldPattern::parse(path).ok()?;
            // The canonical spelling, which the flag reads back.
            let pattern = pattern.to_string();
            (pattern != "$" && pattern != "$[*]")
                .then(|| format!("--compare-ignore-field {}", single_quoted(&pattern)))
        }
        Kind::Failed | Kind::Status | Kind::Undecodable => None,
    }
}

/// `x-powered-by` → `X-Powered-By`: names are compared in any case, and
/// this is how they are usually written.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `word` as is when the shell reads it as one plain word, else quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        word.to_owned()
    } else {
        single_quoted(word)
    }
}

/// `'…'`, a `'` inside written `'\''`: nothing in it is expanded.
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_path_names_its_kind() {
        assert_eq!(field_kind("status"), Kind::Status);
        assert_eq!(field_kind("failed"), Kind::Failed);
        assert_eq!(field_kind("undecodable"), Kind::Undecodable);
        assert_eq!(field_kind("header:etag"), Kind::Header);
        assert_eq!(field_kind("$.items[*].price"), Kind::Body);
        assert_eq!(field_kind("body"), Kind::Body);
    }

    #[test]
    fn the_hint_is_a_flag_to_paste_or_none() {
        assert_eq!(
            ignore_hint("header:x-powered-by").as_deref(),
            Some("--compare-ignore-header X-Powered-By")
        );
        assert_eq!(
            ignore_hint("header:x-a'b$c").as_deref(),
            Some(r"--compare-ignore-header 'X-A'\''b$c'")
        );
        assert_eq!(
            ignore_hint("$.items[*].price").as_deref(),
            Some("--compare-ignore-field '$.items[*].price'")
        );
        assert_eq!(
            ignore_hint("$['it''s']").as_deref(),
            None,
            "not a pattern the flag reads"
        );
        assert_eq!(
            ignore_hint(r"$['it\'s']").as_deref(),
            Some(r"--compare-ignore-field '$['\''it\'\''s'\'']'")
        );
        for none in [
            "status",
            "failed",
            "undecodable",
            "body",
            "$",
            "$[*]",
            "$…",
            "header:",
        ] {
            assert_eq!(ignore_hint(none), None, "{none}");
        }
        // What the hint says is what the flag parses.
        let pattern = "$['a b'][*].c";
        let hint = ignore_hint(pattern).unwrap();
        let quoted = hint.strip_prefix("--compare-ignore-field ").unwrap();
        assert_eq!(quoted, "'$['\\''a b'\\''][*].c'");
        assert!(FieldPattern::parse(pattern).is_ok());
    }
}
