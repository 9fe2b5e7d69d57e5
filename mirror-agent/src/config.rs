//! Command line and configuration file → one validated configuration.
//!
//! Capture flags (`--iface`, `--port`, ...) are read from the command line.
//! Shadow targets and routing come from flags, from a TOML file
//! (`--config FILE`), or both: a flag replaces the key of the same name at
//! the top level of the file (`--shadow` replaces the file's `[[target]]`
//! list), while keys inside a `[[target]]` still apply to their target.
//! [`Cli::route_config`] gives the validated [`RouteConfig`];
//! [`check_config`] validates a file and prints the effective configuration.
//!
//! The file schema, with every key: [`EXAMPLE_FILE`].

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, ValueEnum};
use mirror_common::SAMPLE_ALL;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::capture::AttachMode;
use crate::route::{
    HeaderLine, HeaderMatch, HeaderTest, HostHeader, PathRule, Pattern, Rewrites, RouteConfig,
    RouteTarget, Rules, Share, default_marker, header_name,
};
use crate::shadow::{TargetConfig, TargetSettings, TargetUrl};

/// A configuration file with every key, commented (also the schema's
/// documentation; `check-config --help` can print it).
pub const EXAMPLE_FILE: &str = r#"dry_run = false                       # route and count, send nothing
marker = "X-Mirrored-By: mirror"      # or false: no marker, no loop guard

# Rules and rewrites for every target (all keys optional):
share = 50                            # percent of requests, 0 to 100
methods = ["GET", "HEAD"]             # allow-list
path_prefixes = ["/api"]              # allow (any prefix or regex)
path_regexes = ['^/v[0-9]+/']
deny_path_prefixes = ["/api/admin"]   # deny wins over allow
deny_path_regexes = ['/internal$']
host_header = "original"              # original | target | a literal value
set_headers = ["X-Env: shadow"]
strip_headers = ["Authorization", "Cookie"]

# Transport defaults for every target:
queue_size = 1024
max_in_flight = 32
connect_timeout = "1s"
request_timeout = "5s"
resolve_interval = "10s"
idle_timeout = "30s"

# Header matches (tables come after the plain keys, TOML's rule):
[[match]]                             # every match must hold
header = "User-Agent"                 # present ...
regex = "^Mozilla/"                   # ... or matching (or: equals = "exact")

[[target]]
url = "http://myapp-v2:9000"          # http only; a path is a prefix
name = "v2"                           # label in logs and metrics (default: url)
share = 10                            # any rule, rewrite or transport key above
[[target.match]]
header = "X-Canary"
equals = "1"
"#;

const EXAMPLES: &str = "\
Examples:
  Capture HTTP on port 80 of eth0 (debug shows each connection):
    sudo mirror-agent --iface eth0 --port 80 --log-level debug
  Two service ports, a quarter of the connections, netlink attach:
    sudo mirror-agent --iface ens5 --port 80 --port 8080 --sample 25 --attach netlink
  A bigger ring for bursty traffic, JSON logs:
    sudo mirror-agent --iface eth0 --port 80 --ring-size 256M --log-format json
  Mirror port 80 to two shadows, without credentials, a tenth of the requests:
    sudo mirror-agent --iface eth0 --port 80 --shadow http://myapp-v2:9000 \\
      --shadow http://10.0.0.7:9001/prefix --share 10 \\
      --strip-header Authorization --strip-header Cookie
  Only GET requests under /api that carry X-Canary: 1, Host rewritten:
    sudo mirror-agent --iface eth0 --port 8080 --shadow http://v2:8080 --method GET \\
      --path-prefix /api --match-header X-Canary:1 --host-header target
  Everything from a file (see `mirror-agent check-config FILE`), one flag on top:
    sudo mirror-agent --iface eth0 --port 80 --config /etc/mirror.toml --dry-run";

/// Mirror the HTTP requests a service receives to shadow targets.
///
/// A TC ingress eBPF program copies the TCP payload arriving on the service
/// ports; production packets pass untouched.
#[derive(Debug, Parser)]
#[command(name = "mirror-agent", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Interface whose ingress traffic is captured, e.g. eth0.
    #[arg(long, value_name = "IFACE")]
    pub iface: String,

    /// Service port to capture (destination port of the requests); repeat
    /// the flag for more, up to 16. Example: --port 80 --port 8080
    #[arg(long, value_name = "PORT", required = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,

    /// Share of connections to capture, in percent (0 to 100, two decimals).
    /// A connection is captured whole or not at all. Example: --sample 12.5
    #[arg(long, value_name = "PERCENT", default_value = "100", value_parser = parse_percent)]
    pub sample: f64,

    /// Ring buffer between kernel and agent, in bytes; a power of two, with
    /// an optional K, M or G suffix. Default 64M. Example: --ring-size 256M
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,

    /// How to attach: tcx (Linux >= 6.6), netlink (clsact filter, older
    /// kernels) or auto. Example: --attach netlink
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, value_name = "MODE")]
    pub attach: AttachMode,

    /// Log format on stderr; JSON when stderr is not a terminal unless set.
    /// Example: --log-format text
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log level or filter (RUST_LOG syntax); RUST_LOG overrides it.
    /// Example: --log-level debug
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Where to serve /metrics, /healthz and /readyz. Loopback by default;
    /// another address is an explicit choice. Example: --metrics-addr 0.0.0.0:9464
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub metrics_addr: std::net::SocketAddr,

    /// Interval of the summary log line (rates, drops by reason).
    /// Example: --stats-interval 30s
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub stats_interval: HumanDuration,

    /// On SIGTERM/SIGINT: after detaching, how long the shadow queues may
    /// drain before what is left is dropped (counted). Example: --drain-timeout 2s
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub drain_timeout: HumanDuration,

    #[command(flatten, next_help_heading = "Shadow targets and routing")]
    pub mirror: MirrorArgs,
}

impl Cli {
    pub fn sample_basis_points(&self) -> u32 {
        (self.sample * 100.0).round() as u32
    }

    /// The routing configuration: the `--config` file if any, the flags
    /// over it, validated.
    pub fn route_config(&self) -> anyhow::Result<RouteConfig> {
        self.mirror.route_config()
    }
}

/// Flags of the shadow targets and of routing. Every one has a key of the
/// same meaning in the configuration file.
#[derive(Clone, Debug, Default, Args)]
pub struct MirrorArgs {
    /// TOML file with targets, per-target rules and everything below
    /// (`mirror-agent check-config FILE` validates it). Flags override the
    /// file's top-level keys. Example: --config /etc/mirror.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Shadow target, http only; a path is prepended to every request
    /// target. Repeat for more; replaces the file's targets.
    /// Example: --shadow http://myapp-v2:9000 --shadow http://10.0.0.7:9001/prefix
    #[arg(long, value_name = "URL")]
    pub shadow: Vec<TargetUrl>,

    /// Share of the requests to mirror, in percent (per request, on top of
    /// --sample's per-connection sampling). Example: --share 10
    #[arg(long, value_name = "PERCENT")]
    pub share: Option<Share>,

    /// Mirror only requests with this header (any value), or with this
    /// exact value. Repeat: all must hold. Example: --match-header X-Canary:1
    #[arg(long, value_name = "NAME[:VALUE]", value_parser = parse_match_header)]
    pub match_header: Vec<HeaderMatch>,

    /// Mirror only requests with a value of this header matching the regex
    /// (unanchored). Example: --match-header-regex 'User-Agent:^curl/'
    #[arg(long, value_name = "NAME:REGEX", value_parser = parse_match_header_regex)]
    pub match_header_regex: Vec<HeaderMatch>,

    /// Mirror only these methods (case-sensitive). Repeat for more.
    /// Example: --method GET --method HEAD
    #[arg(long, value_name = "METHOD")]
    pub method: Vec<Method>,

    /// Mirror only paths starting with one of these (the query is not part
    /// of the path). Example: --path-prefix /api
    #[arg(long, value_name = "PREFIX")]
    pub path_prefix: Vec<PathPrefix>,

    /// Mirror only paths matching one of these regexes (unanchored).
    /// Example: --path-regex '^/v[0-9]+/'
    #[arg(long, value_name = "REGEX")]
    pub path_regex: Vec<Pattern>,

    /// Never mirror paths starting with this. Example: --deny-path-prefix /admin
    #[arg(long, value_name = "PREFIX")]
    pub deny_path_prefix: Vec<PathPrefix>,

    /// Never mirror paths matching this regex. Example: --deny-path-regex '/internal$'
    #[arg(long, value_name = "REGEX")]
    pub deny_path_regex: Vec<Pattern>,

    /// Set a header on mirrored requests (replacing the client's of that
    /// name). Example: --set-header 'X-Env: shadow'
    #[arg(long, value_name = "'NAME: VALUE'")]
    pub set_header: Vec<HeaderLine>,

    /// Remove a header from mirrored requests. Example: --strip-header Authorization
    #[arg(long, value_name = "NAME")]
    pub strip_header: Vec<HeaderName>,

    /// Host header sent: `original` (as the client sent it, default),
    /// `target` (the target URL's host:port) or a literal value.
    /// Example: --host-header target
    #[arg(long, value_name = "original|target|VALUE")]
    pub host_header: Option<HostHeader>,

    /// Header added to every mirrored request; captured requests that carry
    /// it are never mirrored (loop guard). Default 'X-Mirrored-By: mirror'.
    #[arg(long, value_name = "'NAME: VALUE'", conflicts_with = "no_marker")]
    pub marker_header: Option<HeaderLine>,

    /// Add no marker header (and so no loop guard by header).
    #[arg(long)]
    pub no_marker: bool,

    /// Requests queued per target; beyond it they are dropped and counted.
    /// Default 1024. Example: --queue-size 4096
    #[arg(long, value_name = "N")]
    pub queue_size: Option<Count>,

    /// Requests in flight per target (and so connections per address).
    /// Default 32. Example: --max-in-flight 64
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<Count>,

    /// Connect timeout (ms, s or m). Default 1s. Example: --connect-timeout 500ms
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<HumanDuration>,

    /// Time for a whole request and its response. Default 5s.
    /// Example: --request-timeout 2s
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<HumanDuration>,

    /// How often target host names are resolved again. Default 10s.
    /// Example: --resolve-interval 30s
    #[arg(long, value_name = "DURATION")]
    pub resolve_interval: Option<HumanDuration>,

    /// How long an idle keep-alive connection is kept. Default 30s.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<HumanDuration>,

    /// Capture and route, count what would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl MirrorArgs {
    /// The file (if any) with these flags over it, validated.
    pub fn route_config(&self) -> anyhow::Result<RouteConfig> {
        let mut file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        self.apply(&mut file);
        file.resolve()
            .map_err(|e| anyhow::anyhow!("{}", e.render(self.config.as_deref(), None)))
    }

    /// Writes the flags that were given over the file's top-level keys.
    fn apply(&self, file: &mut FileConfig) {
        fn replace<T: Clone>(slot: &mut Vec<T>, flags: &[T]) {
            if !flags.is_empty() {
                *slot = flags.to_vec();
            }
        }
        fn set<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
            if flag.is_some() {
                slot.clone_from(flag);
            }
        }
        if !self.shadow.is_empty() {
            file.targets = self
                .shadow
                .iter()
                .map(|url| TargetFile::new(url.clone()))
                .collect();
        }
        let r = &mut file.rules;
        set(&mut r.share, &self.share);
        if !self.match_header.is_empty() || !self.match_header_regex.is_empty() {
            r.matches = self
                .match_header
                .iter()
                .chain(&self.match_header_regex)
                .cloned()
                .collect();
        }
        replace(&mut r.methods, &self.method);
        replace(&mut r.path_prefixes, &self.path_prefix);
        replace(&mut r.path_regexes, &self.path_regex);
        replace(&mut r.deny_path_prefixes, &self.deny_path_prefix);
        replace(&mut r.deny_path_regexes, &self.deny_path_regex);
        set(&mut r.host_header, &self.host_header);
        replace(&mut r.set_headers, &self.set_header);
        replace(&mut r.strip_headers, &self.strip_header);
        set(&mut r.queue_size, &self.queue_size);
        set(&mut r.max_in_flight, &self.max_in_flight);
        set(&mut r.connect_timeout, &self.connect_timeout);
        set(&mut r.request_timeout, &self.request_timeout);
        set(&mut r.resolve_interval, &self.resolve_interval);
        set(&mut r.idle_timeout, &self.idle_timeout);
        if let Some(marker) = &self.marker_header {
            file.marker = Some(Marker::Header(marker.clone()));
        }
        if self.no_marker {
            file.marker = Some(Marker::Off);
        }
        if self.dry_run {
            file.dry_run = Some(true);
        }
    }
}

/// Validates a configuration file on its own (no flags) and returns the
/// effective configuration, every default spelled out, as TOML that loads
/// to the same configuration.
pub fn check_config(path: &Path) -> anyhow::Result<String> {
    let file = FileConfig::load(path)?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let config = file
        .resolve()
        .map_err(|e| anyhow::anyhow!("{}", e.render(Some(path), Some(&text))))?;
    Ok(format!(
        "# {}: valid. Effective configuration:\n{}",
        path.display(),
        render_config(&config)?
    ))
}

/// The configuration as a TOML file (every target with all its settings).
pub fn render_config(config: &RouteConfig) -> anyhow::Result<String> {
    toml::to_string(&FileConfig::from_route(config)).context("cannot render the configuration")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of percent"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{value} is outside 0 to 100"));
    }
    if ((value * 100.0).round() as u32) > SAMPLE_ALL {
        return Err(format!("{value} is above 100"));
    }
    Ok(value)
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
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
    let bytes = base
        .checked_mul(multiplier)
        .filter(|b| *b <= (1u64 << 31))
        .ok_or_else(|| format!("{text} is larger than the 2G a ring can hold"))?;
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(format!("{text} must be a power of two of at least 4K"));
    }
    Ok(bytes as u32)
}

// ---------------------------------------------------------------------------
// Value types shared by the flags and the file.

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

/// A queue size or in-flight limit: 1 to 1 000 000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub usize);

impl FromStr for Count {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(Count(n)),
            _ => Err(format!("`{text}` is not a number from 1 to 1000000")),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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

fn parse_match_header(text: &str) -> Result<HeaderMatch, String> {
    let (name, test) = match text.split_once(':') {
        Some((name, value)) => (name, HeaderTest::Equals(value.trim().to_string())),
        None => (text, HeaderTest::Present),
    };
    Ok(HeaderMatch {
        name: header_name(name)?,
        test,
    })
}

fn parse_match_header_regex(text: &str) -> Result<HeaderMatch, String> {
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
    TargetUrl, HeaderLine, HostHeader, Method, HeaderName, PathPrefix
);

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

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        n.to_string().parse().map_err(de::Error::custom)
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0 as u64)
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

// ---------------------------------------------------------------------------
// The file.

/// `skip_serializing_if` for the optional keys.
trait Unset {
    fn unset(&self) -> bool;
}

impl<T> Unset for Option<T> {
    fn unset(&self) -> bool {
        self.is_none()
    }
}

impl<T> Unset for Vec<T> {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

macro_rules! section {
    ($( $(#[$doc:meta])* $field:ident $key:literal : $ty:ty, )*) => {
        /// Rules, rewrites and transport settings: the keys the top level
        /// and each `[[target]]` have in common. (Parsed by hand rather than
        /// with `#[serde(flatten)]`, which `deny_unknown_fields` does not
        /// support.)
        #[derive(Clone, Debug, Default, Serialize)]
        pub struct Section {
            $( $(#[$doc])* #[serde(rename = $key, skip_serializing_if = "Unset::unset")] pub $field: $ty, )*
        }

        impl Section {
            const KEYS: &'static [&'static str] = &[$($key),*];

            /// Reads the value of `key` if it is one of the section's.
            fn read<'de, A: de::MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
                match key {
                    $( $key => self.$field = map.next_value()?, )*
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
    };
}

section! {
    share "share": Option<Share>,
    methods "methods": Vec<Method>,
    path_prefixes "path_prefixes": Vec<PathPrefix>,
    path_regexes "path_regexes": Vec<Pattern>,
    deny_path_prefixes "deny_path_prefixes": Vec<PathPrefix>,
    deny_path_regexes "deny_path_regexes": Vec<Pattern>,
    host_header "host_header": Option<HostHeader>,
    set_headers "set_headers": Vec<HeaderLine>,
    strip_headers "strip_headers": Vec<HeaderName>,
    queue_size "queue_size": Option<Count>,
    max_in_flight "max_in_flight": Option<Count>,
    connect_timeout "connect_timeout": Option<HumanDuration>,
    request_timeout "request_timeout": Option<HumanDuration>,
    resolve_interval "resolve_interval": Option<HumanDuration>,
    idle_timeout "idle_timeout": Option<HumanDuration>,
    /// `[[match]]` tables: every one must hold.
    matches "match": Vec<HeaderMatch>,
}

/// The whole file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileConfig {
    /// Where it was read from, and its text (error locations).
    #[serde(skip)]
    source: Option<(std::path::PathBuf, String)>,
    #[serde(skip_serializing_if = "Unset::unset")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Unset::unset")]
    pub marker: Option<Marker>,
    #[serde(flatten)]
    pub rules: Section,
    #[serde(rename = "target", skip_serializing_if = "Unset::unset")]
    pub targets: Vec<TargetFile>,
}

/// One `[[target]]`.
#[derive(Clone, Debug, Serialize)]
pub struct TargetFile {
    pub url: Spanned<TargetUrl>,
    #[serde(skip_serializing_if = "Unset::unset")]
    pub name: Option<Spanned<String>>,
    #[serde(flatten)]
    pub rules: Section,
}

/// The keys of a table, for "unknown key" errors.
fn expected_keys(own: &[&'static str]) -> Vec<&'static str> {
    own.iter().chain(Section::KEYS).copied().collect()
}

fn unknown_key<E: de::Error>(key: &str, own: &'static [&'static str]) -> E {
    E::custom(format!(
        "unknown key `{key}`, expected one of: {}",
        expected_keys(own).join(", ")
    ))
}

impl<'de> Deserialize<'de> for FileConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = FileConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of settings")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<FileConfig, A::Error> {
                const OWN: &[&str] = &["dry_run", "marker", "target"];
                let mut file = FileConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "dry_run" => file.dry_run = map.next_value()?,
                        "marker" => file.marker = map.next_value()?,
                        "target" => file.targets = map.next_value()?,
                        k => {
                            if !file.rules.read(k, &mut map)? {
                                return Err(unknown_key(k, OWN));
                            }
                        }
                    }
                }
                Ok(file)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for TargetFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = TargetFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [[target]] table")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<TargetFile, A::Error> {
                const OWN: &[&str] = &["url", "name"];
                let mut url = None;
                let mut name = None;
                let mut rules = Section::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "url" => url = Some(map.next_value()?),
                        "name" => name = map.next_value()?,
                        k => {
                            if !rules.read(k, &mut map)? {
                                return Err(unknown_key(k, OWN));
                            }
                        }
                    }
                }
                let url = url.ok_or_else(|| de::Error::custom("a [[target]] needs a `url`"))?;
                Ok(TargetFile { url, name, rules })
            }
        }
        d.deserialize_map(V)
    }
}

impl TargetFile {
    fn new(url: TargetUrl) -> Self {
        Self {
            url: Spanned::new(0..0, url),
            name: None,
            rules: Section::default(),
        }
    }
}

impl FileConfig {
    /// Reads and parses a file; errors read `FILE:LINE:COL: key `x`: message`.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut file = FileConfig::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.render(Some(path), Some(&text))))?;
        file.source = Some((path.to_path_buf(), text));
        Ok(file)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))
    }

    /// Validates and builds the routing configuration.
    pub fn resolve(&self) -> Result<RouteConfig, ConfigError> {
        let defaults = TargetSettings::default();
        let mut targets: Vec<RouteTarget> = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let url = t.url.get_ref().clone();
            let name = match &t.name {
                Some(n) => n.get_ref().clone(),
                None => url.to_string(),
            };
            let (span, key) = match &t.name {
                Some(n) => (n.span(), "target.name"),
                None => (t.url.span(), "target.url"),
            };
            if name.trim().is_empty() {
                return Err(ConfigError::at(span, key, "a target name cannot be empty"));
            }
            if targets.iter().any(|other| other.shadow.name == name) {
                let message =
                    format!("two targets are named `{name}` (give each a distinct `name`)");
                return Err(if span.is_empty() {
                    ConfigError::flag("--shadow", format!("`{name}` is given twice"))
                } else {
                    ConfigError::at(span, key, message)
                });
            }
            let pick = |own: Option<HumanDuration>, top: Option<HumanDuration>, default| {
                own.or(top).map_or(default, |d| d.0)
            };
            let (own, top) = (&t.rules, &self.rules);
            let settings = TargetSettings {
                queue_size: own
                    .queue_size
                    .or(top.queue_size)
                    .map_or(defaults.queue_size, |c| c.0),
                max_in_flight: own
                    .max_in_flight
                    .or(top.max_in_flight)
                    .map_or(defaults.max_in_flight, |c| c.0),
                connect_timeout: pick(
                    own.connect_timeout,
                    top.connect_timeout,
                    defaults.connect_timeout,
                ),
                request_timeout: pick(
                    own.request_timeout,
                    top.request_timeout,
                    defaults.request_timeout,
                ),
                resolve_interval: pick(
                    own.resolve_interval,
                    top.resolve_interval,
                    defaults.resolve_interval,
                ),
                idle_timeout: pick(own.idle_timeout, top.idle_timeout, defaults.idle_timeout),
            };
            targets.push(RouteTarget {
                shadow: TargetConfig {
                    name,
                    url,
                    settings,
                },
                rules: t.rules.rules(),
                rewrites: t.rules.rewrites(),
            });
        }
        Ok(RouteConfig {
            dry_run: self.dry_run.unwrap_or(false),
            marker: match &self.marker {
                None => Some(default_marker()),
                Some(Marker::Off) => None,
                Some(Marker::Header(h)) => Some(h.clone()),
            },
            rules: self.rules.rules(),
            rewrites: {
                let mut global = self.rules.rewrites();
                // Nothing to inherit from: `original` is the default.
                if global.host == Some(HostHeader::Original) {
                    global.host = None;
                }
                global
            },
            targets,
        })
    }

    /// The file that gives `config`, every target spelled out in full.
    pub fn from_route(config: &RouteConfig) -> FileConfig {
        let mut top = Section::from_rules(&config.rules, &config.rewrites);
        top.host_header = Some(config.rewrites.host.clone().unwrap_or_default());
        FileConfig {
            source: None,
            dry_run: Some(config.dry_run),
            marker: Some(match &config.marker {
                None => Marker::Off,
                Some(h) => Marker::Header(h.clone()),
            }),
            rules: top,
            targets: config
                .targets
                .iter()
                .map(|t| {
                    let mut rules = Section::from_rules(&t.rules, &t.rewrites);
                    let s = &t.shadow.settings;
                    rules.queue_size = Some(Count(s.queue_size));
                    rules.max_in_flight = Some(Count(s.max_in_flight));
                    rules.connect_timeout = Some(HumanDuration(s.connect_timeout));
                    rules.request_timeout = Some(HumanDuration(s.request_timeout));
                    rules.resolve_interval = Some(HumanDuration(s.resolve_interval));
                    rules.idle_timeout = Some(HumanDuration(s.idle_timeout));
                    TargetFile {
                        url: Spanned::new(0..0, t.shadow.url.clone()),
                        name: Some(Spanned::new(0..0, t.shadow.name.clone())),
                        rules,
                    }
                })
                .collect(),
        }
    }
}

impl Section {
    fn rules(&self) -> Rules {
        let paths = |prefixes: &[PathPrefix], regexes: &[Pattern]| -> Vec<PathRule> {
            prefixes
                .iter()
                .map(|p| PathRule::Prefix(p.0.clone()))
                .chain(regexes.iter().map(|r| PathRule::Regex(r.clone())))
                .collect()
        };
        Rules {
            share: self.share,
            headers: self.matches.clone(),
            methods: self.methods.iter().map(|m| m.0.clone()).collect(),
            allow_paths: paths(&self.path_prefixes, &self.path_regexes),
            deny_paths: paths(&self.deny_path_prefixes, &self.deny_path_regexes),
        }
    }

    fn rewrites(&self) -> Rewrites {
        Rewrites {
            host: self.host_header.clone(),
            set: self.set_headers.clone(),
            strip: self.strip_headers.iter().map(|h| h.0.clone()).collect(),
        }
    }

    fn from_rules(rules: &Rules, rewrites: &Rewrites) -> Section {
        let split = |list: &[PathRule]| {
            let mut prefixes = Vec::new();
            let mut regexes = Vec::new();
            for rule in list {
                match rule {
                    PathRule::Prefix(p) => prefixes.push(PathPrefix(p.clone())),
                    PathRule::Regex(r) => regexes.push(r.clone()),
                }
            }
            (prefixes, regexes)
        };
        let (path_prefixes, path_regexes) = split(&rules.allow_paths);
        let (deny_path_prefixes, deny_path_regexes) = split(&rules.deny_paths);
        Section {
            share: rules.share,
            methods: rules.methods.iter().map(|m| Method(m.clone())).collect(),
            path_prefixes,
            path_regexes,
            deny_path_prefixes,
            deny_path_regexes,
            host_header: rewrites.host.clone(),
            set_headers: rewrites.set.clone(),
            strip_headers: rewrites
                .strip
                .iter()
                .map(|h| HeaderName(h.clone()))
                .collect(),
            matches: rules.headers.clone(),
            ..Section::default()
        }
    }
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
    fn at(span: Range<usize>, key: &str, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            key: Some(key.to_string()),
            flag: None,
            message: message.into(),
        }
    }

    fn flag(flag: &'static str, message: impl Into<String>) -> Self {
        Self {
            span: None,
            key: None,
            flag: Some(flag),
            message: message.into(),
        }
    }

    fn from_toml(err: &toml::de::Error, text: &str) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_take_units_and_need_powers_of_two() {
        assert_eq!(parse_ring_size("64M"), Ok(64 << 20));
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("1K").is_err());
        assert!(parse_ring_size("4T").is_err());
        assert!(parse_ring_size("4G").is_err());
    }

    #[test]
    fn percent_becomes_basis_points() {
        let cli = Cli::parse_from([
            "mirror-agent",
            "--iface",
            "lo",
            "--port",
            "80",
            "--sample",
            "12.5",
        ]);
        assert_eq!(cli.sample_basis_points(), 1250);
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
    }

    #[test]
    fn port_zero_and_missing_port_are_rejected() {
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo"]).is_err());
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "70000"]).is_err());
    }

    const EXAMPLE: &str = r#"
dry_run = false
marker = "X-Shadow-Copy: 1"
share = 50
methods = ["GET", "POST"]
path_prefixes = ["/api"]
path_regexes = ['^/v[0-9]+/']
deny_path_prefixes = ["/api/admin"]
strip_headers = ["Authorization", "Cookie"]
set_headers = ["X-Env: shadow"]
queue_size = 100
request_timeout = "2s"

[[match]]
header = "User-Agent"
regex = "^curl/"

[[target]]
url = "http://myapp-v2:9000"
name = "v2"
share = 10
host_header = "target"
queue_size = 7
[[target.match]]
header = "X-Canary"
equals = "1"

[[target]]
url = "http://10.0.0.7:9001/prefix"
"#;

    fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mirror-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut all = vec!["mirror-agent", "--iface", "lo", "--port", "80"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
    }

    #[test]
    fn the_documented_example_file_is_valid() {
        let config = FileConfig::parse(EXAMPLE_FILE).unwrap().resolve().unwrap();
        assert_eq!(config.targets.len(), 1);
        assert_eq!(config.targets[0].shadow.name, "v2");
    }

    #[test]
    fn a_file_gives_global_and_per_target_rules_and_settings() {
        let config = FileConfig::parse(EXAMPLE).unwrap().resolve().unwrap();
        assert_eq!(
            config.marker.as_ref().unwrap().to_string(),
            "X-Shadow-Copy: 1"
        );
        assert_eq!(config.rules.share.unwrap().basis_points(), 5000);
        assert_eq!(config.rules.methods, ["GET", "POST"]);
        assert_eq!(config.rules.allow_paths.len(), 2);
        assert_eq!(
            config.rules.deny_paths,
            [PathRule::Prefix("/api/admin".into())]
        );
        assert_eq!(config.rewrites.strip, ["Authorization", "Cookie"]);
        assert_eq!(config.rewrites.host, None);
        assert!(matches!(config.rules.headers[0].test, HeaderTest::Regex(_)));

        let [v2, other] = &config.targets[..] else {
            panic!("two targets")
        };
        assert_eq!(v2.shadow.name, "v2");
        assert_eq!(v2.rules.share.unwrap().basis_points(), 1000);
        assert_eq!(v2.rewrites.host, Some(HostHeader::Target));
        assert_eq!(
            v2.rules.headers,
            [HeaderMatch {
                name: "X-Canary".into(),
                test: HeaderTest::Equals("1".into())
            }]
        );
        assert_eq!(v2.shadow.settings.queue_size, 7, "the target's own value");
        assert_eq!(
            other.shadow.settings.queue_size, 100,
            "the top-level default"
        );
        assert_eq!(
            other.shadow.settings.request_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(other.shadow.settings.max_in_flight, 32, "built-in default");
        assert_eq!(other.shadow.name, "http://10.0.0.7:9001/prefix");
        assert_eq!(other.shadow.url.path_prefix, "/prefix");
    }

    #[test]
    fn the_effective_configuration_loads_back_to_the_same() {
        let config = FileConfig::parse(EXAMPLE).unwrap().resolve().unwrap();
        let text = render_config(&config).unwrap();
        let again = FileConfig::parse(&text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .resolve()
            .unwrap();
        assert_eq!(again, config, "{text}");
        assert!(text.contains("[[target.match]]"), "{text}");

        let path = write_temp("ok.toml", EXAMPLE);
        let printed = check_config(&path).unwrap();
        assert!(printed.starts_with(&format!("# {}: valid.", path.display())));
        assert!(printed.contains("name = \"v2\""), "{printed}");
    }

    #[test]
    fn file_errors_name_file_line_column_and_key() {
        let cases = [
            (
                "share = 150\n",
                ":1:9: key `share`: 150 is outside 0 to 100",
            ),
            (
                "[[target]]\nurl = \"http://a\"\nshare = -5\n",
                ":3:9: key `target.share`: -5 is outside 0 to 100",
            ),
            (
                "[[target]]\nurl = \"https://a\"\n",
                ":2:7: key `target.url`: `https://a`: https targets are not supported yet (use http)",
            ),
            (
                "[[target]]\nurl = \"http://a\"\n  shar = 2\n",
                ":3:3: key `target.shar`: unknown key `shar`, expected one of: url, name, share,",
            ),
            (
                "[[match]]\nheader = \"X\"\nregex = \"a(\"\n",
                ":3:9: key `match.regex`: bad regex `a(`",
            ),
            (
                "[[match]]\nheader = \"X Y\"\n",
                ":2:10: key `match.header`: `X Y` is not a header name",
            ),
            (
                "strip_headers = [\"Cookie\", \"Bad:Name\"]\n",
                ":1:17: key `strip_headers`: `Bad:Name` is not a header name",
            ),
            (
                "connect_timeout = 5\n",
                ":1:19: key `connect_timeout`: invalid type: integer `5`, expected a duration",
            ),
            (
                "[[target]]\nname = \"x\"\n",
                ":1:1: key `target`: a [[target]] needs a `url`",
            ),
            (
                "[[target]]\nurl = \"http://a:1\"\n[[target]]\nurl = \"http://b:1\"\nname = \"http://a:1\"\n",
                ":5:8: key `target.name`: two targets are named `http://a:1`",
            ),
        ];
        for (text, expected) in cases {
            let path = write_temp("bad.toml", text);
            let err = check_config(&path).unwrap_err().to_string();
            let expected = format!("{}{expected}", path.display());
            assert!(
                err.starts_with(&expected),
                "\n got: {err}\nwant: {expected}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn flags_override_the_file_top_level_and_shadow_replaces_its_targets() {
        let path = write_temp("flags.toml", EXAMPLE);
        let path = path.to_str().unwrap();
        let c = cli(&[
            "--config",
            path,
            "--share",
            "20",
            "--method",
            "PUT",
            "--no-marker",
        ])
        .unwrap()
        .route_config()
        .unwrap();
        assert_eq!(c.rules.share.unwrap().basis_points(), 2000);
        assert_eq!(c.rules.methods, ["PUT"]);
        assert_eq!(c.marker, None);
        assert_eq!(c.targets.len(), 2, "targets from the file");
        assert_eq!(
            c.targets[0].rules.share.unwrap().basis_points(),
            1000,
            "per target kept"
        );
        assert_eq!(
            c.rewrites.strip,
            ["Authorization", "Cookie"],
            "not overridden"
        );

        let c = cli(&[
            "--config",
            path,
            "--shadow",
            "http://v3:1",
            "--queue-size",
            "9",
            "--dry-run",
        ])
        .unwrap()
        .route_config()
        .unwrap();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].shadow.name, "http://v3:1");
        assert_eq!(c.targets[0].shadow.settings.queue_size, 9);
        assert!(c.dry_run);
    }

    #[test]
    fn every_routing_flag_lands_in_the_configuration() {
        let c = cli(&[
            "--shadow",
            "http://a:1",
            "--shadow",
            "http://[::1]:2/p",
            "--share",
            "12.5",
            "--match-header",
            "X-Canary:1",
            "--match-header",
            "X-Debug",
            "--match-header-regex",
            "User-Agent:^curl/",
            "--method",
            "GET",
            "--path-prefix",
            "/api",
            "--path-regex",
            "^/v[0-9]",
            "--deny-path-prefix",
            "/api/admin",
            "--deny-path-regex",
            "secret",
            "--set-header",
            "X-Env: shadow",
            "--strip-header",
            "Authorization",
            "--host-header",
            "target",
            "--marker-header",
            "X-Copy: yes",
            "--max-in-flight",
            "4",
            "--connect-timeout",
            "250ms",
            "--request-timeout",
            "3s",
            "--resolve-interval",
            "1m",
            "--idle-timeout",
            "5s",
        ])
        .unwrap()
        .route_config()
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.rules.share.unwrap().basis_points(), 1250);
        assert_eq!(c.rules.headers.len(), 3);
        assert_eq!(c.rules.headers[1].test, HeaderTest::Present);
        assert_eq!(c.rules.allow_paths.len(), 2);
        assert_eq!(c.rules.deny_paths.len(), 2);
        assert_eq!(c.rewrites.set[0].to_string(), "X-Env: shadow");
        assert_eq!(c.rewrites.host, Some(HostHeader::Target));
        assert_eq!(c.marker.unwrap().name, "X-Copy");
        let s = &c.targets[1].shadow.settings;
        assert_eq!(s.max_in_flight, 4);
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert_eq!(s.request_timeout, Duration::from_secs(3));
        assert_eq!(s.resolve_interval, Duration::from_secs(60));
        assert_eq!(s.idle_timeout, Duration::from_secs(5));
        assert_eq!(s.queue_size, 1024);
        assert_eq!(c.targets[1].shadow.url.authority, "[::1]:2");
    }

    #[test]
    fn bad_flags_are_errors_naming_the_flag() {
        let err = |args: &[&str]| cli(args).unwrap_err().to_string();
        assert!(err(&["--shadow", "https://x"]).contains("--shadow <URL>"));
        assert!(err(&["--shadow", "https://x"]).contains("not supported yet"));
        assert!(err(&["--share", "101"]).contains("--share <PERCENT>"));
        assert!(err(&["--match-header-regex", "X:a("]).contains("bad regex"));
        assert!(err(&["--set-header", "NoColon"]).contains("--set-header"));
        assert!(err(&["--strip-header", "a b"]).contains("not a header name"));
        assert!(err(&["--queue-size", "0"]).contains("--queue-size"));
        assert!(err(&["--connect-timeout", "5"]).contains("not a duration"));
        assert!(err(&["--path-prefix", "api"]).contains("not a path prefix"));
        assert!(err(&["--no-marker", "--marker-header", "X: 1"]).contains("cannot be used with"));
        let dup = cli(&["--shadow", "http://a:1", "--shadow", "http://a:1"])
            .unwrap()
            .route_config()
            .unwrap_err()
            .to_string();
        assert_eq!(dup, "--shadow: `http://a:1` is given twice");
    }

    #[test]
    fn without_routing_flags_the_defaults_hold() {
        let c = cli(&[]).unwrap().route_config().unwrap();
        assert_eq!(c, RouteConfig::default());
        assert_eq!(c.marker.unwrap().to_string(), "X-Mirrored-By: mirror");
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
