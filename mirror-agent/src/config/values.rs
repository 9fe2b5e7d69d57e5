//! The value types of settings: each parses from a flag (`FromStr`) and
//! from the file (serde, with the same checks), and renders back the way
//! it is written.
//!
//! Here the values of the agent and of the comparison (log level, counts,
//! ports, CA file, field paths) and the macros every value file shares;
//! sizes in [`sizes`], durations in [`durations`], the routing rules'
//! values in [`routing`].

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use mirror_common::MAX_PORTS;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::capture::AttachMode;
use crate::compare::{DiffLogTo, Role};
use crate::http::MAX_HEADERS_LIMIT;
use crate::route::{
    HeaderLine, HeaderRewrite, HostHeader, PathRewrite, QueryParam, ShareKey, TargetUrl,
};
use crate::telemetry::LogFormat;

/// Splits a number with a unit (`1.5s`, `32M`) after its leading run of
/// characters `in_number` accepts. The unit is empty when there is none,
/// the number when the text starts with the unit: each value says which it
/// refuses.
fn number_and_unit(text: &str, in_number: impl Fn(char) -> bool) -> (&str, &str) {
    text.split_at(text.find(|c: char| !in_number(c)).unwrap_or(text.len()))
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

/// Values kept as the text that was written once a check passed (a
/// method, a header name, a path prefix...): the check returns the text to
/// keep or the error; the value renders back as that text, and the file
/// goes through the same check as the flag.
macro_rules! checked_text {
    ($( $(#[$doc:meta])* $name:ident = $check:expr; )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(pub String);

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<String, String> = $check;
                check(text).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        serde_as_string!($name);
    )*};
}

mod durations;
mod forms;
mod routing;
mod sizes;

pub use durations::{HumanDuration, RotateAge};
pub use routing::{HeaderName, HeaderRegex, Marker, Method, PathPrefix, QueryName};
pub(super) use routing::{parse_match_header, parse_match_header_regex};
pub use sizes::{ByteSize, RingSize, RotateSize};

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

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

checked_text! {
    /// A log level (`info`) or a filter in RUST_LOG syntax
    /// (`info,mirror_agent::shadow=debug`).
    LogLevel = |text| {
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
        Ok(text.to_owned())
    };
    /// A JSON field path the comparison ignores, such as `$.served_at` or
    /// `$.items[*].id`; checked by the comparison's own parser.
    FieldPath = |text| crate::compare::FieldPattern::parse(text).map(|_| text.to_string());
    /// A name whose values are credentials (`--redact-*`): any case and
    /// style, `*` at either end for anything there; letters or digits
    /// needed.
    RedactName = |text| {
        let text = text.trim();
        if crate::redact::normalize(text.trim_matches('*')).is_empty() {
            return Err(format!(
                "`{text}` is not a name to redact: give letters or digits, such as \
                 `pin` or `*ssn*`"
            ));
        }
        Ok(text.to_owned())
    };
}

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

serde_as_string!(
    TargetUrl,
    CaFile,
    HeaderLine,
    HostHeader,
    LogFormat,
    AttachMode,
    ShareKey,
    HeaderRegex,
    PathRewrite,
    HeaderRewrite,
    QueryParam,
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

impl From<Ports> for Vec<u16> {
    fn from(ports: Ports) -> Self {
        ports.0
    }
}
