//! Command line and configuration file → one validated [`Config`].
//!
//! Every flag has a key of the same meaning in a TOML file (`--config
//! FILE`): capture (`iface`, `ports`, `sample`, ...), the agent itself
//! (`log_level`, `metrics_addr`, ...), the limits of reassembly and framing,
//! shadow targets and routing. A flag replaces the key of the same name at
//! the top level of the file (`--shadow` replaces the file's `[[target]]`
//! list), while keys inside a `[[target]]` still apply to their target.
//! [`Cli::load`] gives the validated configuration; [`check_config`]
//! validates a file and prints the effective configuration.
//!
//! A file is read key by key, so that every bad key or value is reported
//! (`FILE:LINE:COL: key `x`: message`, one line each), not only the first.
//!
//! The file schema, with every key: [`EXAMPLE_FILE`].

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mirror_common::MAX_PORTS;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::capture::{AttachMode, CaptureOptions, DEFAULT_RING_BYTES};
use crate::flow::FlowConfig;
use crate::http::{HttpConfig, MAX_HEADERS_LIMIT};
use crate::route::{
    HeaderLine, HeaderMatch, HeaderTest, HostHeader, PathRule, Pattern, Rewrites, RouteConfig,
    RouteTarget, Rules, Share, default_marker, header_name,
};
use crate::shadow::{TargetConfig, TargetSettings, TargetUrl};

macro_rules! example_file {
    () => {
        r#"# Capture (the flags --iface, --port, --sample, --ring-size, --attach):
iface = "eth0"                        # interface whose ingress is captured
ports = [80, 8080]                    # service ports, 1 to 16
sample = 100                          # percent of connections, 0 to 100
ring_size = "16M"                     # kernel → agent ring, a power of two
attach = "auto"                       # auto | tcx | netlink

# The agent:
nice = 10                             # CPU priority below the service's, 0 to 19
log_format = "json"                   # json | text (default: text on a terminal)
log_level = "info"                    # or a filter: "info,mirror_agent::shadow=debug"
log_requests = 0                      # percent of requests logged at debug level
metrics_addr = "127.0.0.1:9464"       # /metrics, /healthz, /readyz
stats_interval = "10s"                # summary log line
drain_timeout = "5s"                  # at SIGTERM, for the shadow queues

# Limits of reassembly and framing:
max_flows = 65536                     # connections tracked at once
max_flow_buffer = "1M"                # held out of order, per connection
max_buffered = "256M"                 # buffered by all connections together
flow_idle_timeout = "60s"
hole_timeout = "3s"                   # a hole not filled by then is a gap
max_head_size = "64K"
max_headers = 100
max_body_size = "64M"

dry_run = false                       # route and count, send nothing
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
connect_timeout = "3s"
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
"#
    };
}

/// A configuration file with every key, commented (also the schema's
/// documentation; `mirror-agent check-config --help` prints it).
pub const EXAMPLE_FILE: &str = example_file!();

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
  Everything from a file, one flag on top; check the file first:
    mirror-agent check-config /etc/mirror.toml
    sudo mirror-agent --config /etc/mirror.toml --dry-run
  Log one request in a hundred (method, path, what each target did):
    sudo mirror-agent --config /etc/mirror.toml --log-requests 1

Signals: SIGTERM or SIGINT detach, drain the shadow queues (--drain-timeout),
log the final counts and exit 0; a second one skips the drain. SIGHUP reads
the --config file again and applies its targets and rules without detaching
(a bad file is refused and the running configuration stays).";

/// Mirror the HTTP requests a service receives to shadow targets.
///
/// A TC ingress eBPF program copies the TCP payload arriving on the service
/// ports; production packets pass untouched. Every flag can also be given
/// in the --config file (flags win).
#[derive(Debug, Parser)]
#[command(
    name = "mirror-agent",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Interface whose ingress traffic is captured (file: `iface`).
    /// Example: --iface eth0
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,

    /// Service port to capture (destination port of the requests); repeat
    /// the flag for more, up to 16 (file: `ports`). Example: --port 80 --port 8080
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,

    /// Share of connections to capture, in percent (0 to 100, two decimals).
    /// A connection is captured whole or not at all. Default 100.
    /// Example: --sample 12.5
    #[arg(long, value_name = "PERCENT")]
    pub sample: Option<Share>,

    /// Ring buffer between kernel and agent, in bytes; a power of two, with
    /// an optional K, M or G suffix. Default 16M. Example: --ring-size 256M
    #[arg(long, value_name = "BYTES")]
    pub ring_size: Option<RingSize>,

    /// CPU priority of the agent as a nice value, from 0 (the service's
    /// own) to 19 (the lowest). Default 10: when the host's CPUs are short,
    /// the service keeps its share and the agent falls behind — counted as
    /// ring losses — instead of slowing production. A higher niceness the
    /// agent was started with is kept. Example: --nice 0
    #[arg(long, value_name = "NICE")]
    pub nice: Option<Niceness>,

    /// How to attach: tcx (Linux >= 6.6), netlink (clsact filter, older
    /// kernels) or auto (default). Example: --attach netlink
    #[arg(long, value_enum, value_name = "MODE")]
    pub attach: Option<AttachMode>,

    /// TOML file with any of the settings of these flags, targets and
    /// per-target rules (`mirror-agent check-config FILE` validates it and
    /// `check-config --help` shows every key). Flags override the file's
    /// top-level keys; SIGHUP reads it again. Example: --config /etc/mirror.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr; JSON when stderr is not a terminal unless set.
    /// Example: --log-format text
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log level or filter (RUST_LOG syntax); RUST_LOG overrides it.
    /// Default info. Example: --log-level debug
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// Log this share of the captured requests, in percent, at debug level:
    /// method, path and what each target did with it (queued, filtered,
    /// dropped). Off by default; costs nothing when off. Example: --log-requests 1
    #[arg(long, value_name = "PERCENT")]
    pub log_requests: Option<Share>,

    /// Where to serve /metrics, /healthz and /readyz. Default
    /// 127.0.0.1:9464 (loopback); another address is an explicit choice.
    /// Example: --metrics-addr 0.0.0.0:9464
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    /// Interval of the summary log line (rates, drops by reason).
    /// Default 10s. Example: --stats-interval 30s
    #[arg(long, value_name = "DURATION")]
    pub stats_interval: Option<HumanDuration>,

    /// On SIGTERM/SIGINT: after detaching, how long the shadow queues may
    /// drain before what is left is dropped (counted). Default 5s.
    /// Example: --drain-timeout 2s
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<HumanDuration>,

    #[command(flatten, next_help_heading = "Limits of reassembly and framing")]
    pub limits: LimitArgs,

    #[command(flatten, next_help_heading = "Shadow targets and routing")]
    pub mirror: MirrorArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print the effective configuration
    /// (every default spelled out). Every error is reported with its line.
    #[command(after_long_help = concat!("A file with every key:\n\n", example_file!()))]
    CheckConfig {
        /// The TOML file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Flags of the reassembly and framing limits (memory caps, timeouts).
#[derive(Clone, Debug, Default, Args)]
pub struct LimitArgs {
    /// Most connections tracked at once; beyond it the oldest is evicted
    /// (counted). Default 65536. Example: --max-flows 200000
    #[arg(long, value_name = "N")]
    pub max_flows: Option<FlowCount>,

    /// Bytes held out of order per connection while a hole waits to be
    /// filled. Default 1M. Example: --max-flow-buffer 4M
    #[arg(long, value_name = "BYTES")]
    pub max_flow_buffer: Option<ByteSize>,

    /// Bytes buffered by all connections together. Default 256M.
    /// Example: --max-buffered 1G
    #[arg(long, value_name = "BYTES")]
    pub max_buffered: Option<ByteSize>,

    /// A connection without packets for this long ends. Default 60s.
    /// Example: --flow-idle-timeout 5m
    #[arg(long, value_name = "DURATION")]
    pub flow_idle_timeout: Option<HumanDuration>,

    /// A hole in a stream not filled within this is given up (a gap).
    /// Default 3s. Example: --hole-timeout 1s
    #[arg(long, value_name = "DURATION")]
    pub hole_timeout: Option<HumanDuration>,

    /// Largest request head (and chunked trailer section). Default 64K.
    /// Example: --max-head-size 128K
    #[arg(long, value_name = "BYTES")]
    pub max_head_size: Option<ByteSize>,

    /// Most header fields in a request, up to 256. Default 100.
    /// Example: --max-headers 200
    #[arg(long, value_name = "N")]
    pub max_headers: Option<HeaderCount>,

    /// Largest body mirrored; larger requests are skipped (counted).
    /// Default 64M. Example: --max-body-size 8M
    #[arg(long, value_name = "BYTES")]
    pub max_body_size: Option<ByteSize>,
}

/// Defaults of the agent's own settings.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The agent's default nice value (see `--nice`).
pub const DEFAULT_NICE: i32 = 10;

/// The validated configuration: flags over the file over the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `None` until given: [`Config::capture_options`] then refuses.
    pub iface: Option<String>,
    pub ports: Vec<u16>,
    pub sample: Share,
    pub ring_bytes: u32,
    pub attach: AttachMode,
    /// The nice value the agent runs at (at least).
    pub nice: i32,
    /// `None`: JSON unless stderr is a terminal.
    pub log_format: Option<LogFormat>,
    pub log_level: String,
    pub log_requests: Share,
    pub metrics_addr: SocketAddr,
    pub stats_interval: Duration,
    pub drain_timeout: Duration,
    pub flow: FlowConfig,
    pub route: RouteConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            iface: None,
            ports: Vec::new(),
            sample: Share::ALL,
            ring_bytes: DEFAULT_RING_BYTES,
            attach: AttachMode::Auto,
            nice: DEFAULT_NICE,
            log_format: None,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_requests: Share::from_percent(0.0).unwrap_or(Share::ALL),
            metrics_addr: DEFAULT_METRICS_ADDR.parse().expect("a valid address"),
            stats_interval: DEFAULT_STATS_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            flow: FlowConfig::default(),
            route: RouteConfig::default(),
        }
    }
}

/// A configuration that cannot be used: bad flags or file, or something
/// missing. `main` exits with status 2 for it, as for a bad flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl Config {
    /// What the capture stage needs; fails when no interface or no port was
    /// given, by flag or file.
    pub fn capture_options(&self) -> Result<CaptureOptions, InvalidConfig> {
        let Some(iface) = self.iface.clone() else {
            return Err(InvalidConfig(
                "no interface: give --iface or `iface` in the config file".into(),
            ));
        };
        if self.ports.is_empty() {
            return Err(InvalidConfig(
                "no port: give --port or `ports` in the config file".into(),
            ));
        }
        let mut options = CaptureOptions::new(iface, self.ports.clone());
        options.sample_bp = self.sample.basis_points();
        options.ring_bytes = self.ring_bytes;
        options.attach = self.attach;
        Ok(options)
    }

    /// The settings of `new` that differ from `self` and only take effect
    /// after a restart (re-attaching, another listener, another table), by
    /// their file key.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                changed.push(key);
            }
        };
        check("iface", self.iface != new.iface);
        check("ports", self.ports != new.ports);
        check("sample", self.sample != new.sample);
        check("ring_size", self.ring_bytes != new.ring_bytes);
        check("attach", self.attach != new.attach);
        check("nice", self.nice != new.nice);
        check("log_format", self.log_format != new.log_format);
        check("metrics_addr", self.metrics_addr != new.metrics_addr);
        let (a, b) = (&self.flow, &new.flow);
        check("max_flows", a.max_flows != b.max_flows);
        check(
            "max_flow_buffer",
            a.max_ooo_bytes_per_flow != b.max_ooo_bytes_per_flow,
        );
        check("max_buffered", a.max_buffered_bytes != b.max_buffered_bytes);
        check("flow_idle_timeout", a.idle_timeout_ns != b.idle_timeout_ns);
        check("hole_timeout", a.hole_timeout_ns != b.hole_timeout_ns);
        check(
            "max_head_size",
            a.http.max_head_bytes != b.http.max_head_bytes,
        );
        check("max_headers", a.http.max_headers != b.http.max_headers);
        check(
            "max_body_size",
            a.http.max_body_bytes != b.http.max_body_bytes,
        );
        changed
    }
}

impl Cli {
    /// The configuration: the `--config` file if any, the flags over it,
    /// validated. Every problem is reported, one line each.
    pub fn load(&self) -> Result<Config, InvalidConfig> {
        let mut file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        self.apply(&mut file);
        file.resolve().map_err(|errors| file.render_errors(&errors))
    }

    /// The routing part of [`Cli::load`].
    pub fn route_config(&self) -> anyhow::Result<RouteConfig> {
        Ok(self.load()?.route)
    }

    /// Writes the flags that were given over the file's top-level keys.
    fn apply(&self, file: &mut FileConfig) {
        let a = &mut file.agent;
        set(&mut a.iface, &self.iface);
        if !self.port.is_empty() {
            a.ports = Some(Ports(self.port.clone()));
        }
        set(&mut a.sample, &self.sample);
        set(&mut a.ring_size, &self.ring_size);
        set(&mut a.attach, &self.attach);
        set(&mut a.nice, &self.nice);
        set(&mut a.log_format, &self.log_format);
        set(&mut a.log_level, &self.log_level);
        set(&mut a.log_requests, &self.log_requests);
        set(&mut a.metrics_addr, &self.metrics_addr);
        set(&mut a.stats_interval, &self.stats_interval);
        set(&mut a.drain_timeout, &self.drain_timeout);
        let (l, f) = (&mut file.limits, &self.limits);
        set(&mut l.max_flows, &f.max_flows);
        set(&mut l.max_flow_buffer, &f.max_flow_buffer);
        set(&mut l.max_buffered, &f.max_buffered);
        set(&mut l.flow_idle_timeout, &f.flow_idle_timeout);
        set(&mut l.hole_timeout, &f.hole_timeout);
        set(&mut l.max_head_size, &f.max_head_size);
        set(&mut l.max_headers, &f.max_headers);
        set(&mut l.max_body_size, &f.max_body_size);
        self.mirror.apply(file);
    }
}

fn set<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
    if flag.is_some() {
        slot.clone_from(flag);
    }
}

/// Flags of the shadow targets and of routing. Every one has a key of the
/// same meaning in the configuration file.
#[derive(Clone, Debug, Default, Args)]
pub struct MirrorArgs {
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

    /// Connect timeout (ms, s or m). Default 3s (a lost SYN is resent after
    /// 1 s). Example: --connect-timeout 500ms
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
    /// Writes the flags that were given over the file's top-level keys.
    fn apply(&self, file: &mut FileConfig) {
        fn replace<T: Clone>(slot: &mut Vec<T>, flags: &[T]) {
            if !flags.is_empty() {
                *slot = flags.to_vec();
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
/// to the same configuration. The error lists every problem, one per line.
pub fn check_config(path: &Path) -> Result<String, InvalidConfig> {
    let file = FileConfig::load(path)?;
    let config = file
        .resolve()
        .map_err(|errors| file.render_errors(&errors))?;
    let mut out = format!("# {}: valid. Effective configuration:\n", path.display());
    if config.iface.is_none() {
        out.push_str("# No `iface`: the agent needs --iface too.\n");
    }
    if config.ports.is_empty() {
        out.push_str("# No `ports`: the agent needs --port too.\n");
    }
    out.push_str(&render_config(&config).map_err(|e| InvalidConfig(format!("{e:#}")))?);
    Ok(out)
}

/// The configuration as a TOML file (every key, every target with all its
/// settings).
pub fn render_config(config: &Config) -> anyhow::Result<String> {
    toml::to_string(&FileConfig::from_config(config)).context("cannot render the configuration")
}

// ---------------------------------------------------------------------------
// Value types of the agent's own settings.

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    TargetUrl, HeaderLine, HostHeader, Method, HeaderName, PathPrefix, LogFormat, LogLevel,
    AttachMode
);
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

/// A group of optional keys: the struct, its key list, and a reader that
/// takes one key's value (read by hand rather than with a derived
/// `Deserialize`, so that one bad key does not hide the next).
macro_rules! section {
    ($(#[$meta:meta])* $name:ident { $( $(#[$doc:meta])* $field:ident $key:literal : $ty:ty, )* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, Serialize)]
        pub struct $name {
            $( $(#[$doc])* #[serde(rename = $key, skip_serializing_if = "Unset::unset")] pub $field: $ty, )*
        }

        impl $name {
            const KEYS: &'static [&'static str] = &[$($key),*];

            /// Reads the value of `key`, one of [`Self::KEYS`]; a bad value
            /// is recorded in `walk` under `path`.
            fn read(&mut self, key: &str, path: &str, value: Spanned<DeValue<'_>>, walk: &mut Walk<'_>) {
                match key {
                    $( $key => {
                        if let Some(v) = walk.value::<$ty>(path, value) {
                            self.$field = v;
                        }
                    } )*
                    _ => unreachable!("`{key}` is not a key of this section"),
                }
            }
        }
    };
}

section! {
    /// Capture and agent settings: top level only.
    AgentSection {
        iface "iface": Option<String>,
        ports "ports": Option<Ports>,
        sample "sample": Option<Share>,
        ring_size "ring_size": Option<RingSize>,
        attach "attach": Option<AttachMode>,
        nice "nice": Option<Niceness>,
        log_format "log_format": Option<LogFormat>,
        log_level "log_level": Option<LogLevel>,
        log_requests "log_requests": Option<Share>,
        metrics_addr "metrics_addr": Option<SocketAddr>,
        stats_interval "stats_interval": Option<HumanDuration>,
        drain_timeout "drain_timeout": Option<HumanDuration>,
    }
}

section! {
    /// Limits of the flow and http stages: top level only.
    LimitSection {
        max_flows "max_flows": Option<FlowCount>,
        max_flow_buffer "max_flow_buffer": Option<ByteSize>,
        max_buffered "max_buffered": Option<ByteSize>,
        flow_idle_timeout "flow_idle_timeout": Option<HumanDuration>,
        hole_timeout "hole_timeout": Option<HumanDuration>,
        max_head_size "max_head_size": Option<ByteSize>,
        max_headers "max_headers": Option<HeaderCount>,
        max_body_size "max_body_size": Option<ByteSize>,
    }
}

section! {
    /// Rules, rewrites and transport settings: the keys the top level and
    /// each `[[target]]` have in common.
    Section {
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
}

/// The whole file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileConfig {
    /// Where it was read from, and its text (error locations).
    #[serde(skip)]
    source: Option<(PathBuf, String)>,
    #[serde(flatten)]
    pub agent: AgentSection,
    #[serde(flatten)]
    pub limits: LimitSection,
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

impl TargetFile {
    fn new(url: TargetUrl) -> Self {
        Self {
            url: Spanned::new(0..0, url),
            name: None,
            rules: Section::default(),
        }
    }
}

/// Keys of the top level besides the sections'.
const TOP_KEYS: &[&str] = &["dry_run", "marker", "target"];
/// Keys of a `[[target]]` besides the rules section's.
const TARGET_KEYS: &[&str] = &["url", "name"];

/// Reads a parsed file key by key, collecting every error.
struct Walk<'t> {
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl Walk<'_> {
    /// Deserializes one value; on error records it (at the value, or at
    /// the place inside it that is wrong) and returns `None`.
    fn value<T: de::DeserializeOwned>(
        &mut self,
        path: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(err) => {
                self.errors
                    .push(ConfigError::from_value(&err, path, span, self.text));
                None
            }
        }
    }

    fn unknown(&mut self, key: &Spanned<impl AsRef<str>>, path: &str, expected: &[&'static str]) {
        let name = key.get_ref().as_ref();
        let message = match closest(name, expected) {
            Some(close) => format!("unknown key `{name}`: did you mean `{close}`?"),
            None => format!(
                "unknown key `{name}`, expected one of: {}",
                expected.join(", ")
            ),
        };
        self.errors.push(ConfigError::at(key.span(), path, message));
    }

    fn targets(&mut self, value: Spanned<DeValue<'_>>) -> Vec<TargetFile> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.errors.push(ConfigError::at(
                span,
                "target",
                "targets are [[target]] tables",
            ));
            return Vec::new();
        };
        let mut targets = Vec::new();
        for item in items {
            let span = item.span();
            match item.into_inner() {
                DeValue::Table(table) => {
                    if let Some(target) = self.target(table, span) {
                        targets.push(target);
                    }
                }
                _ => self.errors.push(ConfigError::at(
                    span,
                    "target",
                    "targets are [[target]] tables",
                )),
            }
        }
        targets
    }

    fn target(&mut self, table: DeTable<'_>, span: Range<usize>) -> Option<TargetFile> {
        let mut url = None;
        let mut url_given = false;
        let mut name = None;
        let mut rules = Section::default();
        for (key, value) in table {
            let path = format!("target.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "url" => {
                    url_given = true;
                    let span = value.span();
                    url = self
                        .value::<TargetUrl>(&path, value)
                        .map(|u| Spanned::new(span, u));
                }
                "name" => {
                    let span = value.span();
                    name = self
                        .value::<String>(&path, value)
                        .map(|n| Spanned::new(span, n));
                }
                k if Section::KEYS.contains(&k) => rules.read(k, &path, value, self),
                _ => {
                    let expected: Vec<_> =
                        TARGET_KEYS.iter().chain(Section::KEYS).copied().collect();
                    self.unknown(&key, &path, &expected);
                }
            }
        }
        if !url_given {
            self.errors.push(ConfigError::at(
                span.start..span.start,
                "target",
                "a [[target]] needs a `url`",
            ));
        }
        Some(TargetFile {
            url: url?,
            name,
            rules,
        })
    }
}

/// The expected key closest to a mistyped one, if it is close at all.
fn closest<'a>(key: &str, expected: &[&'a str]) -> Option<&'a str> {
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

impl FileConfig {
    /// Reads and parses a file; every error reads
    /// `FILE:LINE:COL: key `x`: message`, one per line.
    pub fn load(path: &Path) -> Result<FileConfig, InvalidConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InvalidConfig(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        let mut file = FileConfig::parse(&text)
            .map_err(|errors| InvalidConfig(render_all(&errors, Some(path), Some(&text))))?;
        file.source = Some((path.to_path_buf(), text));
        Ok(file)
    }

    /// Parses TOML text; the errors are in the order of the file.
    pub fn parse(text: &str) -> Result<FileConfig, Vec<ConfigError>> {
        let root = DeTable::parse(text).map_err(|e| vec![ConfigError::from_toml(&e, text)])?;
        let mut walk = Walk {
            text,
            errors: Vec::new(),
        };
        let mut file = FileConfig::default();
        for (key, value) in root.into_inner() {
            let name: &str = key.get_ref().as_ref();
            match name {
                "dry_run" => {
                    if let Some(v) = walk.value(name, value) {
                        file.dry_run = Some(v);
                    }
                }
                "marker" => {
                    if let Some(v) = walk.value(name, value) {
                        file.marker = Some(v);
                    }
                }
                "target" => file.targets = walk.targets(value),
                k if AgentSection::KEYS.contains(&k) => file.agent.read(k, k, value, &mut walk),
                k if LimitSection::KEYS.contains(&k) => file.limits.read(k, k, value, &mut walk),
                k if Section::KEYS.contains(&k) => file.rules.read(k, k, value, &mut walk),
                k => {
                    let expected: Vec<_> = TOP_KEYS
                        .iter()
                        .chain(AgentSection::KEYS)
                        .chain(LimitSection::KEYS)
                        .chain(Section::KEYS)
                        .copied()
                        .collect();
                    walk.unknown(&key, k, &expected);
                }
            }
        }
        if walk.errors.is_empty() {
            Ok(file)
        } else {
            walk.errors
                .sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
            Err(walk.errors)
        }
    }

    /// The errors as lines naming this file (if it was read from one).
    fn render_errors(&self, errors: &[ConfigError]) -> InvalidConfig {
        let (path, text) = match &self.source {
            Some((path, text)) => (Some(path.as_path()), Some(text.as_str())),
            None => (None, None),
        };
        InvalidConfig(render_all(errors, path, text))
    }

    /// Validates and builds the configuration; every error found.
    pub fn resolve(&self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let route = self.resolve_route(&mut errors);
        let a = &self.agent;
        let ports = a.ports.clone().map(|p| p.0).unwrap_or_default();
        // The file's list was checked as it was read: a list this long came
        // from the flags.
        if ports.len() > MAX_PORTS {
            errors.push(ConfigError::flag(
                "--port",
                format!(
                    "at most {MAX_PORTS} ports can be captured, got {}",
                    ports.len()
                ),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let defaults = Config::default();
        let l = &self.limits;
        let d = &defaults.flow;
        let nanos = |d: HumanDuration| u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX);
        let bytes = |b: ByteSize| usize::try_from(b.0).unwrap_or(usize::MAX);
        Ok(Config {
            iface: a.iface.clone(),
            ports,
            sample: a.sample.unwrap_or(defaults.sample),
            ring_bytes: a.ring_size.map_or(defaults.ring_bytes, |r| r.0),
            attach: a.attach.unwrap_or(defaults.attach),
            nice: a.nice.map_or(defaults.nice, |n| n.0 as i32),
            log_format: a.log_format,
            log_level: a
                .log_level
                .clone()
                .map_or(defaults.log_level, |level| level.0),
            log_requests: a.log_requests.unwrap_or(defaults.log_requests),
            metrics_addr: a.metrics_addr.unwrap_or(defaults.metrics_addr),
            stats_interval: a.stats_interval.map_or(defaults.stats_interval, |d| d.0),
            drain_timeout: a.drain_timeout.map_or(defaults.drain_timeout, |d| d.0),
            flow: FlowConfig {
                max_flows: l.max_flows.map_or(d.max_flows, |n| n.0),
                max_ooo_bytes_per_flow: l.max_flow_buffer.map_or(d.max_ooo_bytes_per_flow, bytes),
                max_buffered_bytes: l.max_buffered.map_or(d.max_buffered_bytes, bytes),
                idle_timeout_ns: l.flow_idle_timeout.map_or(d.idle_timeout_ns, nanos),
                hole_timeout_ns: l.hole_timeout.map_or(d.hole_timeout_ns, nanos),
                http: HttpConfig {
                    max_head_bytes: l.max_head_size.map_or(d.http.max_head_bytes, bytes),
                    max_headers: l.max_headers.map_or(d.http.max_headers, |n| n.0),
                    max_body_bytes: l.max_body_size.map_or(d.http.max_body_bytes, |b| b.0),
                },
            },
            route,
        })
    }

    /// The routing configuration; its errors go to `errors`.
    fn resolve_route(&self, errors: &mut Vec<ConfigError>) -> RouteConfig {
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
                errors.push(ConfigError::at(span, key, "a target name cannot be empty"));
                continue;
            }
            if targets.iter().any(|other| other.shadow.name == name) {
                let message =
                    format!("two targets are named `{name}` (give each a distinct `name`)");
                errors.push(if span.is_empty() {
                    ConfigError::flag("--shadow", format!("`{name}` is given twice"))
                } else {
                    ConfigError::at(span, key, message)
                });
                continue;
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
        RouteConfig {
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
        }
    }

    /// The file that gives `config`, every key and target spelled out.
    pub fn from_config(config: &Config) -> FileConfig {
        let route = &config.route;
        let mut top = Section::from_rules(&route.rules, &route.rewrites);
        top.host_header = Some(route.rewrites.host.clone().unwrap_or_default());
        let flow = &config.flow;
        let duration = |ns: u64| Some(HumanDuration(Duration::from_nanos(ns)));
        FileConfig {
            source: None,
            agent: AgentSection {
                iface: config.iface.clone(),
                ports: (!config.ports.is_empty()).then(|| Ports(config.ports.clone())),
                sample: Some(config.sample),
                ring_size: Some(RingSize(config.ring_bytes)),
                attach: Some(config.attach),
                nice: Some(Niceness(config.nice as usize)),
                log_format: config.log_format,
                log_level: Some(LogLevel(config.log_level.clone())),
                log_requests: Some(config.log_requests),
                metrics_addr: Some(config.metrics_addr),
                stats_interval: Some(HumanDuration(config.stats_interval)),
                drain_timeout: Some(HumanDuration(config.drain_timeout)),
            },
            limits: LimitSection {
                max_flows: Some(FlowCount(flow.max_flows)),
                max_flow_buffer: Some(ByteSize(flow.max_ooo_bytes_per_flow as u64)),
                max_buffered: Some(ByteSize(flow.max_buffered_bytes as u64)),
                flow_idle_timeout: duration(flow.idle_timeout_ns),
                hole_timeout: duration(flow.hole_timeout_ns),
                max_head_size: Some(ByteSize(flow.http.max_head_bytes as u64)),
                max_headers: Some(HeaderCount(flow.http.max_headers)),
                max_body_size: Some(ByteSize(flow.http.max_body_bytes)),
            },
            dry_run: Some(route.dry_run),
            marker: Some(match &route.marker {
                None => Marker::Off,
                Some(h) => Marker::Header(h.clone()),
            }),
            rules: top,
            targets: route
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

/// Every error on a line of its own, in file order.
fn render_all(errors: &[ConfigError], path: Option<&Path>, text: Option<&str>) -> String {
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

    /// An error of one value read by [`Walk::value`]: at the place inside
    /// the value that is wrong if the error knows it, else at the value.
    fn from_value(err: &toml::de::Error, path: &str, span: Range<usize>, text: &str) -> Self {
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
        assert_eq!(cli.load().unwrap().sample.basis_points(), 1250);
        assert!("101".parse::<Share>().is_err());
        assert!("-1".parse::<Share>().is_err());
    }

    #[test]
    fn port_zero_is_rejected_and_a_missing_port_or_interface_named() {
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "70000"]).is_err());
        let config = Cli::try_parse_from(["mirror-agent", "--iface", "lo"])
            .unwrap()
            .load()
            .unwrap();
        let err = config.capture_options().unwrap_err().to_string();
        assert_eq!(err, "no port: give --port or `ports` in the config file");
        let config = Cli::try_parse_from(["mirror-agent", "--port", "80"])
            .unwrap()
            .load()
            .unwrap();
        let err = config.capture_options().unwrap_err().to_string();
        assert_eq!(
            err,
            "no interface: give --iface or `iface` in the config file"
        );
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
        assert_eq!(config.route.targets.len(), 1);
        assert_eq!(config.route.targets[0].shadow.name, "v2");
        assert_eq!(config.iface.as_deref(), Some("eth0"));
        assert_eq!(config.ports, [80, 8080]);
    }

    #[test]
    fn a_file_gives_global_and_per_target_rules_and_settings() {
        let config = FileConfig::parse(EXAMPLE).unwrap().resolve().unwrap().route;
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
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
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
                ":3:3: key `target.shar`: unknown key `shar`: did you mean `share`?",
            ),
            (
                "[[target]]\nurl = \"http://a\"\n  colour = 2\n",
                ":3:3: key `target.colour`: unknown key `colour`, expected one of: url, name, share,",
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
                ":1:28: key `strip_headers`: `Bad:Name` is not a header name",
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
    fn every_error_of_a_file_is_reported_with_its_line() {
        let text = "\
ifcae = \"eth0\"
ports = [8080]
path_regexes = ['^/ok', '^/v[0-9+/']

[[target]]
url = \"https://v2:9000\"

[[target]]
url = \"http://v3:9000\"
queue_sise = 10
";
        let path = write_temp("three.toml", text);
        let err = check_config(&path).unwrap_err().to_string();
        let lines: Vec<&str> = err.lines().collect();
        let p = path.display();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(
            lines[0].starts_with(&format!(
                "{p}:1:1: key `ifcae`: unknown key `ifcae`: did you mean `iface`?"
            )),
            "{err}"
        );
        assert!(
            lines[1].starts_with(&format!("{p}:3:25: key `path_regexes`: bad regex")),
            "{err}"
        );
        assert!(
            lines[2].starts_with(&format!(
                "{p}:6:7: key `target.url`: `https://v2:9000`: https targets are not supported"
            )),
            "{err}"
        );
        assert!(
            lines[3].starts_with(&format!(
                "{p}:10:1: key `target.queue_sise`: unknown key `queue_sise`: did you mean `queue_size`?"
            )),
            "{err}"
        );
    }

    #[test]
    fn capture_agent_and_limit_keys_come_from_the_file_and_flags_win() {
        let text = "\
iface = \"veth0\"
ports = [80, 8080]
sample = 12.5
ring_size = \"8M\"
attach = \"netlink\"
log_format = \"text\"
log_level = \"debug\"
log_requests = 1
metrics_addr = \"127.0.0.1:9999\"
stats_interval = \"2s\"
drain_timeout = \"500ms\"
max_flows = 1000
max_flow_buffer = \"2M\"
max_buffered = 1048576
flow_idle_timeout = \"5m\"
hole_timeout = \"1s\"
max_head_size = \"16K\"
max_headers = 50
max_body_size = \"1M\"
";
        let config = FileConfig::parse(text).unwrap().resolve().unwrap();
        assert_eq!(config.iface.as_deref(), Some("veth0"));
        assert_eq!(config.ports, [80, 8080]);
        assert_eq!(config.sample.basis_points(), 1250);
        assert_eq!(config.ring_bytes, 8 << 20);
        assert_eq!(config.attach, AttachMode::Netlink);
        assert_eq!(config.log_format, Some(LogFormat::Text));
        assert_eq!(config.log_level, "debug");
        assert_eq!(config.log_requests.basis_points(), 100);
        assert_eq!(config.metrics_addr.port(), 9999);
        assert_eq!(config.stats_interval, Duration::from_secs(2));
        assert_eq!(config.drain_timeout, Duration::from_millis(500));
        let f = &config.flow;
        assert_eq!(f.max_flows, 1000);
        assert_eq!(f.max_ooo_bytes_per_flow, 2 << 20);
        assert_eq!(f.max_buffered_bytes, 1 << 20);
        assert_eq!(f.idle_timeout_ns, 300_000_000_000);
        assert_eq!(f.hole_timeout_ns, 1_000_000_000);
        assert_eq!(f.http.max_head_bytes, 16 << 10);
        assert_eq!(f.http.max_headers, 50);
        assert_eq!(f.http.max_body_bytes, 1 << 20);
        let options = config.capture_options().unwrap();
        assert_eq!((options.iface.as_str(), options.sample_bp), ("veth0", 1250));

        // The effective configuration loads back to the same.
        let rendered = render_config(&config).unwrap();
        let again = FileConfig::parse(&rendered).unwrap().resolve().unwrap();
        assert_eq!(again, config, "{rendered}");

        let path = write_temp("agent.toml", text);
        let path = path.to_str().unwrap();
        let flags = Cli::try_parse_from([
            "mirror-agent",
            "--config",
            path,
            "--iface",
            "eth1",
            "--port",
            "9000",
            "--max-flows",
            "7",
            "--log-level",
            "warn,mirror_agent=info",
            "--stats-interval",
            "1s",
        ])
        .unwrap()
        .load()
        .unwrap();
        assert_eq!(flags.iface.as_deref(), Some("eth1"));
        assert_eq!(flags.ports, [9000]);
        assert_eq!(flags.flow.max_flows, 7);
        assert_eq!(flags.log_level, "warn,mirror_agent=info");
        assert_eq!(flags.stats_interval, Duration::from_secs(1));
        assert_eq!(flags.ring_bytes, 8 << 20, "from the file");
        assert_eq!(
            config.restart_needed(&flags),
            ["iface", "ports", "max_flows"],
            "what SIGHUP cannot apply"
        );
    }

    #[test]
    fn bad_agent_values_are_errors_at_their_place() {
        let cases = [
            ("ports = []\n", ":1:9: key `ports`: between 1 and 16 ports"),
            ("ports = [80, 0]\n", ":1:9: key `ports`: 0 is not a port"),
            (
                "ring_size = \"3M\"\n",
                ":1:13: key `ring_size`: 3M must be a power of two",
            ),
            (
                "attach = \"xdp\"\n",
                ":1:10: key `attach`: `xdp` is not an attach mode",
            ),
            (
                "log_level = \"inof\"\n",
                ":1:13: key `log_level`: `inof` is not a log level",
            ),
            (
                "log_format = \"yaml\"\n",
                ":1:14: key `log_format`: `yaml` is not a log format",
            ),
            (
                "metrics_addr = \"localhost\"\n",
                ":1:16: key `metrics_addr`: invalid socket address",
            ),
            (
                "max_headers = 1000\n",
                ":1:15: key `max_headers`: `1000` is not a number from 1 to 256",
            ),
            (
                "sample = 120\n",
                ":1:10: key `sample`: 120 is outside 0 to 100",
            ),
        ];
        for (text, expected) in cases {
            let path = write_temp("agent-bad.toml", text);
            let err = check_config(&path).unwrap_err().to_string();
            let expected = format!("{}{expected}", path.display());
            assert!(
                err.starts_with(&expected),
                "\n got: {err}\nwant: {expected}"
            );
        }
        let err = |args: &[&str]| cli(args).unwrap_err().to_string();
        assert!(err(&["--log-level", "verbose"]).contains("not a log level"));
        assert!(err(&["--max-headers", "300"]).contains("--max-headers"));
        assert!(err(&["--max-body-size", "12X"]).contains("unknown size unit"));
        let many: Vec<String> = (1..=17).map(|p| p.to_string()).collect();
        let mut args = vec!["mirror-agent", "--iface", "lo"];
        for p in &many {
            args.extend(["--port", p]);
        }
        let err = Cli::try_parse_from(args)
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--port: at most 16 ports can be captured, got 17");
    }

    #[test]
    fn check_config_says_what_the_agent_still_needs() {
        let path = write_temp("routing-only.toml", "[[target]]\nurl = \"http://v2:1\"\n");
        let printed = check_config(&path).unwrap();
        assert!(printed.contains("# No `iface`"), "{printed}");
        assert!(printed.contains("# No `ports`"), "{printed}");
        assert!(
            printed.contains("metrics_addr = \"127.0.0.1:9464\""),
            "{printed}"
        );
        assert!(printed.contains("max_body_size = \"64M\""), "{printed}");
        let err = check_config(Path::new("/nonexistent/mirror.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read the configuration file /nonexistent/mirror.toml"));
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
