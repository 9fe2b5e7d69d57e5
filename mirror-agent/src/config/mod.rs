//! Command line and configuration file → one validated [`Config`].
//!
//! Every flag has a key of the same meaning in a TOML file (`--config
//! FILE`): capture (`iface`, `ports`, `sample`, ...), the agent itself
//! (`log_level`, `metrics_addr`, ...), the limits of reassembly and framing,
//! shadow targets and routing. A flag replaces the key of the same name at
//! the top level of the file (`--shadow` replaces the file's `[[target]]`
//! list), while keys inside a `[[target]]` still apply to their target.
//!
//! * [`sections`]: the groups of settings; one struct per group serves the
//!   flags and the file keys;
//! * [`cli`]: the command line, and the flags written over the file;
//! * [`file`]: reading the file key by key, every error reported;
//! * [`values`]: the value types, parsed the same way from both;
//! * [`walk`]: reading values one by one, collecting every error;
//! * [`resolve`]: defaults filled in, checked, typed ([`Config`]), and back
//!   to a file (`check-config`);
//! * [`error`]: errors with their file, line, column and key.
//!
//! The validated configuration is split by what a reload may change:
//! [`Startup`] needs a restart, [`Live`] is applied by SIGHUP.
//!
//! The file schema, with every key: [`EXAMPLE_FILE`].

mod cli;
mod error;
mod file;
mod resolve;
mod sections;
mod values;
mod walk;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use cli::{
    Cli, Command, CompareReportArgs, DEFAULT_MAX_RESPONSE, RecordArgs, ReplayArgs, Speed,
    VerdictArgs,
};
pub use error::ConfigError;
pub use file::{FileConfig, TargetFile};
pub use sections::{AgentSection, CaptureSection, LimitSection, RuleSection};
pub use values::{
    ByteSize, Count, FlowCount, HeaderCount, HeaderName, HumanDuration, LogLevel, Marker, Method,
    Niceness, PathPrefix, Ports, RingSize, RotateAge, RotateSize,
};

use crate::capture::{AttachMode, CaptureOptions, DEFAULT_RING_BYTES};
use crate::compare::CompareConfig;
use crate::flow::FlowConfig;
use crate::http::HttpConfig;
use crate::route::Share;
use crate::shadow::ShadowConfig;
use crate::telemetry::LogFormat;

/// A configuration file with every key, commented (also the schema's
/// documentation; `mirror-agent check-config --help` prints it).
pub const EXAMPLE_FILE: &str = include_str!("example.toml");

/// Defaults of the agent's own settings.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The agent's default nice value (see `--nice`).
pub const DEFAULT_NICE: i32 = 10;

/// The validated configuration: flags over the file over the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub startup: Startup,
    pub live: Live,
}

/// What the agent starts with: a change needs a restart (re-attaching,
/// another listener, other tables). A reload keeps all of it and names the
/// keys that changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Startup {
    pub capture: CaptureSettings,
    /// The nice value the agent runs at (at least).
    pub nice: i32,
    /// `None`: JSON unless stderr is a terminal.
    pub log_format: Option<LogFormat>,
    pub metrics_addr: SocketAddr,
    pub flow: FlowConfig,
    pub http: HttpConfig,
}

/// What a reload (SIGHUP) applies to the running agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    pub log_level: String,
    pub log_requests: Share,
    pub stats_interval: Duration,
    pub drain_timeout: Duration,
    /// Targets, routing and transport.
    pub shadows: ShadowConfig,
    /// Which targets are compared with v1, and how.
    pub compare: CompareConfig,
}

/// What the kernel program captures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    /// `None` until given: [`CaptureSettings::options`] then refuses.
    pub iface: Option<String>,
    pub ports: Vec<u16>,
    pub sample: Share,
    pub ring_bytes: u32,
    pub attach: AttachMode,
}

impl Default for Startup {
    fn default() -> Self {
        Self {
            capture: CaptureSettings {
                iface: None,
                ports: Vec::new(),
                sample: Share::ALL,
                ring_bytes: DEFAULT_RING_BYTES,
                attach: AttachMode::Auto,
            },
            nice: DEFAULT_NICE,
            log_format: None,
            metrics_addr: DEFAULT_METRICS_ADDR.parse().expect("a valid address"),
            flow: FlowConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Self {
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_requests: Share::NONE,
            stats_interval: DEFAULT_STATS_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            shadows: ShadowConfig::default(),
            compare: CompareConfig::default(),
        }
    }
}

/// A configuration that cannot be used: bad flags or file, or something
/// missing. `main` exits with status 2 for it, as for a bad flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl CaptureSettings {
    /// What the capture stage needs; fails when no interface or no port was
    /// given, by flag or file.
    pub fn options(&self) -> Result<CaptureOptions, InvalidConfig> {
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
}

impl Startup {
    /// The file keys whose values differ between `self` and `new`: what a
    /// reload cannot apply. Found by rendering both, so no list of keys
    /// has to be kept in step with the types.
    pub fn changed_keys(&self, new: &Startup) -> Vec<String> {
        let render = |startup: &Startup| {
            let config = Config {
                startup: startup.clone(),
                live: Live::default(),
            };
            toml::Table::try_from(FileConfig::from_config(&config)).unwrap_or_default()
        };
        let (old, new) = (render(self), render(new));
        let mut keys: Vec<String> = old
            .keys()
            .chain(new.keys())
            .filter(|key| old.get(*key) != new.get(*key))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
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
    if config.startup.capture.iface.is_none() {
        out.push_str("# No `iface`: the agent needs --iface too.\n");
    }
    if config.startup.capture.ports.is_empty() {
        out.push_str("# No `ports`: the agent needs --port too.\n");
    }
    out.push_str(&render_config(&config).map_err(|e| InvalidConfig(format!("{e:#}")))?);
    Ok(out)
}

/// The configuration as a TOML file (every key, every target with all its
/// settings).
pub fn render_config(config: &Config) -> anyhow::Result<String> {
    use anyhow::Context as _;
    toml::to_string(&FileConfig::from_config(config)).context("cannot render the configuration")
}

#[cfg(test)]
mod tests;
