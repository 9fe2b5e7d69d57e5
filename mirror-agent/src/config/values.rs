//! The value types of settings: each parses from a flag (`FromStr`) and
//! from the file (serde, with the same checks), and renders back the way
//! it is written.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use mirror_common::MAX_PORTS;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::capture::AttachMode;
use crate::compare::{DiffLogTo, Role};
use crate::http::MAX_HEADERS_LIMIT;
use crate::route::{
    ForwardedFor, HeaderLine, HeaderMatch, HeaderRewrite, HeaderTest, HostHeader, PathRewrite,
    Pattern, QueryParam, Share, ShareKey, TargetUrl, default_marker, header_name, query_name,
};
use crate::telemetry::LogFormat;

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        <LogFormat as ValueEnum>::from_str(text, false)
            .map_err(|_| format!("`{text}` is not a log format (json or text)"))
    }
}

impl FromStr for AttachMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        <AttachMode as ValueEnum>::from_str(text, false)
            .map_err(|_| format!("`{text}` is not an attach mode (auto, tcx or netlink)"))
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log level (`info`) or a filter in RUST_LOG syntax
/// (`info,mirror_agent::shadow=debug`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLevel(pub String);

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        // A lone word that is not a level would be read as a target name
        // (everything of target `inof` at trace): most likely a typo.
        let lone_word = !text.contains(['=', ',', ':', '[']);
        if text.is_empty() || (lone_word && !LEVELS.contains(&text.to_ascii_lowercase().as_str())) {
            return Err(format!(
                "`{text}` is not a log level ({}) or a filter such as \
                 info,mirror_agent::shadow=debug",
                LEVELS.join(", ")
            ));
        }
        tracing_subscriber::EnvFilter::try_new(text)
            .map_err(|e| format!("`{text}` is not a log filter: {e}"))?;
        Ok(LogLevel(text.to_owned()))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `64M`, `4096`, `1G`: a number of bytes with an optional K, M or G
/// (binary) suffix.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let base: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 65536, 64K or 64M"))?;
    let multiplier: u64 = match unit {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    base.checked_mul(multiplier)
        .filter(|b| *b <= 1 << 40)
        .ok_or_else(|| format!("{text} is too large"))
}

/// Bytes with the largest unit that divides them exactly.
fn format_size(bytes: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return write!(f, "{}{unit}", bytes >> shift);
        }
    }
    write!(f, "{bytes}")
}

/// A size of the ring buffer: a power of two from 4K to 2G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize(pub u32);

impl FromStr for RingSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = parse_size(text)?;
        if bytes > 1 << 31 {
            return Err(format!("{text} is larger than the 2G a ring can hold"));
        }
        if !bytes.is_power_of_two() || bytes < 4096 {
            return Err(format!("{text} must be a power of two of at least 4K"));
        }
        Ok(RingSize(bytes as u32))
    }
}

impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(u64::from(self.0), f)
    }
}

/// A memory limit in bytes: 1 to 1T, with an optional K, M or G suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match parse_size(text)? {
            0 => Err("a limit of 0 bytes lets nothing through".to_owned()),
            bytes => Ok(ByteSize(bytes)),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(self.0, f)
    }
}

/// Sizes are strings (`"64M"`) or plain numbers of bytes in the file.
macro_rules! serde_size {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a size such as \"64M\" or a number of bytes")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serde_size!(RingSize, ByteSize);

/// Whole numbers within bounds: integers in the file, digits on the
/// command line.
macro_rules! bounded {
    ($( $(#[$doc:meta])* $name:ident: $min:expr, $max:expr; )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub usize);

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text.parse::<usize>() {
                    Ok(n) if ($min..=$max).contains(&n) => Ok($name(n)),
                    _ => Err(format!("`{text}` is not a number from {} to {}", $min, $max)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = i64::deserialize(d)?;
                n.to_string().parse().map_err(de::Error::custom)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.0 as u64)
            }
        }
    )*};
}

bounded! {
    /// A queue size or in-flight limit: 1 to 1 000 000.
    Count: 1, 1_000_000;
    /// Connections tracked at once.
    FlowCount: 1, 1 << 24;
    /// Header fields in one head.
    HeaderCount: 1, MAX_HEADERS_LIMIT;
    /// A nice value the agent may take: 0 to 19 (never above the
    /// service's priority).
    Niceness: 0, 19;
}

/// `ports = [80, 8080]`: 1 to 16 ports, each 1 to 65535.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports(pub Vec<u16>);

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ports = Vec::<i64>::deserialize(d)?;
        if ports.is_empty() || ports.len() > MAX_PORTS {
            return Err(de::Error::custom(format!(
                "between 1 and {MAX_PORTS} ports are needed, got {}",
                ports.len()
            )));
        }
        ports
            .iter()
            .map(|p| {
                u16::try_from(*p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| de::Error::custom(format!("{p} is not a port (1 to 65535)")))
            })
            .collect::<Result<_, _>>()
            .map(Ports)
    }
}

impl Serialize for Ports {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Serde through `FromStr` and `Display`: the file holds these as strings,
/// and a bad one is an error at its place in the file.
macro_rules! serde_as_string {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(de::Error::custom)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serde_as_string!(
    TargetUrl,
    CaFile,
    HeaderLine,
    HostHeader,
    Method,
    HeaderName,
    PathPrefix,
    LogFormat,
    LogLevel,
    AttachMode,
    ShareKey,
    HeaderRegex,
    PathRewrite,
    HeaderRewrite,
    QueryParam,
    QueryName,
    FieldPath,
    Role,
    DiffLogTo
);

/// A CA file for https targets (`--ca-file`, `ca_file`): a path, read and
/// checked when the configuration is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFile(pub std::path::PathBuf);

impl FromStr for CaFile {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("a CA file needs a file name".into());
        }
        Ok(CaFile(text.into()))
    }
}

impl fmt::Display for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
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

/// A query parameter name (`--remove-query`, `remove_queries`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryName(pub String);

impl FromStr for QueryName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        query_name(text).map(QueryName)
    }
}

impl fmt::Display for QueryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `forwarded_for = true` (X-Forwarded-For), `false`, or a header name.
impl<'de> Deserialize<'de> for ForwardedFor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ForwardedFor;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a header name such as \"X-Real-Client\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ForwardedFor, E> {
                Ok(if v {
                    ForwardedFor::Header(crate::route::FORWARDED_FOR.into())
                } else {
                    ForwardedFor::Off
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ForwardedFor, E> {
                header_name(v).map(ForwardedFor::Header).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ForwardedFor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ForwardedFor::Off => s.serialize_bool(false),
            ForwardedFor::Header(name) => s.serialize_str(name),
        }
    }
}
/// A duration such as `500ms`, `2s`, `1.5s` or `1m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a duration such as 500ms, 2s or 1m");
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            _ => return Err(bad()),
        };
        if !(0.001..=86_400.0).contains(&seconds) {
            return Err(format!("`{text}` is outside 1ms to 24h"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// The size at which a recording moves to a new file: a number of bytes
/// with an optional unit, case-insensitive, every unit binary as the
/// agent's other sizes (`32M` = `32MB` = `32MiB` = 33554432 bytes; K, M,
/// G, each optionally followed by B or iB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateSize(pub u64);

impl FromStr for RotateSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a size such as 32M, 512KB or 1GiB");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit
            .strip_suffix("ib")
            .or_else(|| unit.strip_suffix('b'))
            .unwrap_or(&unit);
        let shift = match unit {
            "" => 0,
            "k" => 10,
            "m" => 20,
            "g" => 30,
            _ => return Err(bad()),
        };
        match number.checked_mul(1 << shift) {
            Some(0) => Err(format!("`{text}`: a file of 0 bytes holds nothing")),
            Some(bytes) if bytes <= 1 << 40 => Ok(RotateSize(bytes)),
            _ => Err(format!("`{text}` is larger than 1T")),
        }
    }
}

impl fmt::Display for RotateSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(self.0, f)
    }
}

/// The age at which a recording moves to a new file: `30s`, `10m`, `1h`,
/// `1d`; from 1 second to 366 days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateAge(pub Duration);

impl FromStr for RotateAge {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a duration such as 30s, 10m, 1h or 1d");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(bad)?;
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        match number.checked_mul(unit_secs) {
            Some(secs) if (1..=366 * 86_400).contains(&secs) => {
                Ok(RotateAge(Duration::from_secs(secs)))
            }
            _ => Err(format!("`{text}` is outside 1s to 366d")),
        }
    }
}

impl fmt::Display for RotateAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m")] {
            if secs.is_multiple_of(unit) {
                return write!(f, "{}{name}", secs / unit);
            }
        }
        write!(f, "{secs}s")
    }
}

/// An HTTP method (a token, case kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method(pub String);

impl FromStr for Method {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        header_name(text)
            .map(Method)
            .map_err(|_| format!("`{text}` is not an HTTP method"))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A header name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderName(pub String);

impl FromStr for HeaderName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        header_name(text).map(HeaderName)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON field path the comparison ignores, such as `$.served_at` or
/// `$.items[*].id`; checked by the comparison's own parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(pub String);

impl FromStr for FieldPath {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        crate::compare::FieldPattern::parse(text).map(|_| FieldPath(text.to_string()))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path prefix: starts with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPrefix(pub String);

impl FromStr for PathPrefix {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("`{text}` is not a path prefix such as /api"));
        }
        Ok(PathPrefix(text.to_string()))
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) fn parse_match_header(text: &str) -> Result<HeaderMatch, String> {
    let (name, test) = match text.split_once(':') {
        Some((name, value)) => (name, HeaderTest::Equals(value.trim().to_string())),
        None => (text, HeaderTest::Present),
    };
    Ok(HeaderMatch {
        name: header_name(name)?,
        test,
    })
}

pub(super) fn parse_match_header_regex(text: &str) -> Result<HeaderMatch, String> {
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

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"2s\" or \"1m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage from 0 to 100")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Share, E> {
                Share::from_percent(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Share, E> {
                Share::from_percent(v as f64).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Share, E> {
                Share::from_percent(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
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

impl<'de> Deserialize<'de> for Marker {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Marker;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header such as \"X-Mirrored-By: mirror\", or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Marker, E> {
                Ok(if v {
                    Marker::Header(default_marker())
                } else {
                    Marker::Off
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Marker, E> {
                v.parse().map(Marker::Header).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Marker {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Marker::Off => s.serialize_bool(false),
            Marker::Header(h) => s.collect_str(h),
        }
    }
}

impl From<Ports> for Vec<u16> {
    fn from(ports: Ports) -> Self {
        ports.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_take_units_and_need_powers_of_two() {
        let ring = |text: &str| text.parse::<RingSize>().map(|r| r.0);
        assert_eq!(ring("64M"), Ok(64 << 20));
        assert_eq!(ring("4096"), Ok(4096));
        assert!(ring("3M").is_err());
        assert!(ring("1K").is_err());
        assert!(ring("4T").is_err());
        assert!(ring("4G").is_err());
        assert_eq!(RingSize(64 << 20).to_string(), "64M");
        assert_eq!("1536K".parse::<ByteSize>().unwrap().to_string(), "1536K");
        assert!("0".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations_read_and_print_in_their_units() {
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(
            "1.5s".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert!("0ms".parse::<HumanDuration>().is_err());
    }
}
