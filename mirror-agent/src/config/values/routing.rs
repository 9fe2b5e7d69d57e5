//! The values of the routing rules: methods, header names and header
//! tests, path prefixes, query names, shares, the marker header and the
//! forwarded-for header; each read from a flag and from the file with the
//! same checks as the routing stage's own parsers.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::forms::Forms;

/// The values that are off (`false`), the default header (`true`) or a
/// header given as text: the marker and the forwarded-for header, read and
/// written back the same way.
macro_rules! off_or_header {
    ($ty:ident: $expecting:literal, true => $on:expr, text => $text:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(Forms {
                    boolean: Some(|on| Ok(if on { $on } else { $ty::Off })),
                    text: Some($text),
                    ..Forms::expecting($expecting)
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $ty::Off => s.serialize_bool(false),
                    $ty::Header(header) => s.collect_str(header),
                }
            }
        }
    };
}

use crate::route::{
    ForwardedFor, HeaderLine, HeaderMatch, HeaderTest, Pattern, Share, default_marker, header_name,
    query_name,
};

checked_text! {
    /// An HTTP method (a token, case kept).
    Method = |text| header_name(text).map_err(|_| format!("`{text}` is not an HTTP method"));
    /// A header name.
    HeaderName = header_name;
    /// A path prefix: starts with `/`.
    PathPrefix = |text| {
        if !text.starts_with('/') || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("`{text}` is not a path prefix such as /api"));
        }
        Ok(text.to_string())
    };
    /// A query parameter name (`--remove-query`, `remove_queries`).
    QueryName = query_name;
}

/// `NAME:REGEX`, a header whose value matches (`--deny-header-regex`,
/// `deny_header_regexes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRegex(pub HeaderMatch);

impl FromStr for HeaderRegex {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_match_header_regex(text).map(HeaderRegex)
    }
}

impl fmt::Display for HeaderRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.test {
            HeaderTest::Regex(p) => write!(f, "{}:{}", self.0.name, p.as_str()),
            // Only regexes are built by the parser; render the others as
            // the regex that means the same.
            HeaderTest::Present => write!(f, "{}:", self.0.name),
            HeaderTest::Equals(v) => write!(f, "{}:^{}$", self.0.name, regex::escape(v)),
        }
    }
}

pub(in crate::config) fn parse_match_header(text: &str) -> Result<HeaderMatch, String> {
    let (name, test) = match text.split_once(':') {
        Some((name, value)) => (name, HeaderTest::Equals(value.trim().to_string())),
        None => (text, HeaderTest::Present),
    };
    Ok(HeaderMatch {
        name: header_name(name)?,
        test,
    })
}

pub(in crate::config) fn parse_match_header_regex(text: &str) -> Result<HeaderMatch, String> {
    let Some((name, regex)) = text.split_once(':') else {
        return Err(format!(
            "`{text}` is not NAME:REGEX, such as 'User-Agent:^curl/'"
        ));
    };
    Ok(HeaderMatch {
        name: header_name(name)?,
        test: HeaderTest::Regex(Pattern::new(regex)?),
    })
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Pattern::new(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A share is a number of percent: `share = 10` or `share = 12.5`.
impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Forms {
            whole: Some(|v| Share::from_percent(v as f64)),
            decimal: Some(Share::from_percent),
            ..Forms::expecting("a percentage from 0 to 100")
        })
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.basis_points().is_multiple_of(100) {
            s.serialize_u64(u64::from(self.basis_points() / 100))
        } else {
            s.serialize_f64(self.percent())
        }
    }
}

/// `[[match]]`: `header` and at most one of `equals` and `regex`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MatchFile {
    header: HeaderName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<Pattern>,
}

impl<'de> Deserialize<'de> for HeaderMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = MatchFile::deserialize(d)?;
        let test = match (m.equals, m.regex) {
            (None, None) => HeaderTest::Present,
            (Some(v), None) => HeaderTest::Equals(v),
            (None, Some(r)) => HeaderTest::Regex(r),
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(
                    "a match takes `equals` or `regex`, not both",
                ));
            }
        };
        Ok(HeaderMatch {
            name: m.header.0,
            test,
        })
    }
}

impl Serialize for HeaderMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (equals, regex) = match &self.test {
            HeaderTest::Present => (None, None),
            HeaderTest::Equals(v) => (Some(v.clone()), None),
            HeaderTest::Regex(r) => (None, Some(r.clone())),
        };
        MatchFile {
            header: HeaderName(self.name.clone()),
            equals,
            regex,
        }
        .serialize(s)
    }
}

/// `marker = "Name: value"`, `marker = false` (none) or `marker = true`
/// (the default one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    Off,
    Header(HeaderLine),
}

off_or_header!(
    Marker: "a header such as \"X-Mirrored-By: mirror\", or false",
    true => Marker::Header(default_marker()),
    text => |v| v.parse().map(Marker::Header)
);

// `forwarded_for = true` (X-Forwarded-For), `false`, or a header name.
off_or_header!(
    ForwardedFor: "true, false or a header name such as \"X-Real-Client\"",
    true => ForwardedFor::Header(crate::route::FORWARDED_FOR.into()),
    text => |v| header_name(v).map(ForwardedFor::Header)
);
