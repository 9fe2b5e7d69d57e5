//! Configuration errors: where (a place in the file, or a flag), which key,
//! what; rendered `FILE:LINE:COL: key `x`: message`, one per line.

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// Every error on a line of its own, in file order.
pub(super) fn render_all(
    errors: &[ConfigError],
    path: Option<&Path>,
    text: Option<&str>,
) -> String {
    errors
        .iter()
        .map(|e| e.render(path, text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A configuration error: where (a place in the file, or a flag), which
/// key, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub span: Option<Range<usize>>,
    /// Dotted key path, e.g. `target.share`.
    pub key: Option<String>,
    pub flag: Option<&'static str>,
    pub message: String,
}

impl ConfigError {
    pub(super) fn at(span: Range<usize>, key: &str, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            key: Some(key.to_string()),
            flag: None,
            message: message.into(),
        }
    }

    /// About a key whose place is not known (given by the file or by its
    /// flag).
    pub(super) fn key(key: &str, message: impl Into<String>) -> Self {
        Self {
            span: None,
            key: Some(key.to_string()),
            flag: None,
            message: message.into(),
        }
    }

    pub(super) fn flag(flag: &'static str, message: impl Into<String>) -> Self {
        Self {
            span: None,
            key: None,
            flag: Some(flag),
            message: message.into(),
        }
    }

    /// An error of one value read by `Walk::value`: at the place inside
    /// the value that is wrong if the error knows it, else at the value.
    pub(super) fn from_value(
        err: &toml::de::Error,
        path: &str,
        span: Range<usize>,
        text: &str,
    ) -> Self {
        let mut e = Self::from_toml(err, text);
        e.key = Some(match e.key.take() {
            Some(inner) => format!("{path}.{inner}"),
            None => path.to_owned(),
        });
        let span = e.span.take().unwrap_or(span);
        e.span = Some(Self::narrow_to_element(span, &e.message, text));
        e
    }

    /// An error about one element of an array is reported at the array;
    /// when the message quotes the bad value (`` `value` ``), point at that
    /// element instead.
    fn narrow_to_element(span: Range<usize>, message: &str, text: &str) -> Range<usize> {
        let Some(value) = text.get(span.clone()) else {
            return span;
        };
        if !value.starts_with('[') {
            return span;
        }
        let quoted = message.split('`').nth(1).filter(|q| !q.is_empty());
        match quoted.and_then(|q| value.find(q)) {
            // Back up over the quote that opens the element.
            Some(at) => {
                let start = span.start + at;
                let start =
                    if start > span.start && matches!(text.as_bytes()[start - 1], b'"' | b'\'') {
                        start - 1
                    } else {
                        start
                    };
                start..start + quoted.map_or(0, str::len)
            }
            None => span,
        }
    }

    pub(super) fn from_toml(err: &toml::de::Error, text: &str) -> Self {
        // The key path is only printed, and only without the input.
        let mut bare = err.clone();
        bare.set_input(None);
        let printed = bare.to_string();
        let mut key = printed
            .lines()
            .filter_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
            .next_back()
            .map(|k| {
                k.split('.')
                    .filter(|part| part.parse::<usize>().is_err())
                    .collect::<Vec<_>>()
                    .join(".")
            });
        let mut span = err.span();
        let message = err.message().trim().to_string();
        // An unknown key: point at the key itself, name it in the path.
        if let Some(unknown) = message
            .strip_prefix("unknown key `")
            .or_else(|| message.strip_prefix("unknown field `"))
            .and_then(|rest| rest.split('`').next())
        {
            if let Some(at) = span.clone().and_then(|s| find_key(text, s.start, unknown)) {
                span = Some(at..at + unknown.len());
            }
            key = Some(match key {
                Some(k) if !k.is_empty() => format!("{k}.{unknown}"),
                _ => unknown.to_string(),
            });
        }
        Self {
            span,
            key: key.filter(|k| !k.is_empty()),
            flag: None,
            message,
        }
    }

    /// `FILE:LINE:COL: key `x`: message`, or `--flag: message`.
    pub fn render(&self, path: Option<&Path>, text: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(flag) = self.flag {
            out.push_str(flag);
            out.push_str(": ");
        } else if let Some(path) = path {
            out.push_str(&path.display().to_string());
            if let (Some(span), Some(text)) = (&self.span, text) {
                let (line, col) = line_col(text, span.start);
                out.push_str(&format!(":{line}:{col}"));
            }
            out.push_str(": ");
        }
        if let Some(key) = &self.key {
            out.push_str(&format!("key `{key}`: "));
        }
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None, None))
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The offset of `key = ...` (or `key.sub = ...`) at the start of a line,
/// searching from `from`.
fn find_key(text: &str, from: usize, key: &str) -> Option<usize> {
    let from = text.floor_char_boundary(from.min(text.len()));
    let line_start = text[..from].rfind('\n').map_or(0, |i| i + 1);
    let mut offset = line_start;
    for line in text[line_start..].split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let bare = trimmed.strip_prefix(['"', '\'']).unwrap_or(trimmed);
        let quoted = trimmed.len() - bare.len();
        if let Some(rest) = bare.strip_prefix(key) {
            let rest = rest.trim_start_matches(['"', '\'']).trim_start();
            if rest.starts_with('=') || rest.starts_with('.') {
                return Some(offset + indent + quoted);
            }
        }
        offset += line.len();
    }
    None
}

/// The expected key closest to a mistyped one, if it is close at all.
pub(super) fn closest<'a>(key: &str, expected: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let substitution = previous + usize::from(ca != *cb);
                previous = row[j + 1];
                row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
            }
        }
        row[b.len()]
    }
    expected
        .iter()
        .map(|candidate| (distance(key, candidate), *candidate))
        .filter(|(d, candidate)| *d <= 2.max(candidate.len() / 4) && *d < candidate.len())
        .min()
        .map(|(_, candidate)| candidate)
}
