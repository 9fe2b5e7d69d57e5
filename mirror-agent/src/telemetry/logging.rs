//! tracing setup: JSON or text on stderr, level from the flag, the file or
//! RUST_LOG, and the `log` crate (aya) bridged into the same stream.
//!
//! The level can change while running (SIGHUP with a new `log_level`):
//! [`Logging::set_level`]. The format cannot.
//!
//! Sampled request logs (`--log-requests`) are debug events of target
//! [`REQUEST_TARGET`]; when they are on, that target is let through at
//! debug whatever the level of the rest.

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, Registry, fmt, layer::SubscriberExt as _, reload};

/// How log lines are written on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tracing target of the sampled per-request events.
pub const REQUEST_TARGET: &str = "mirror_agent::requests";

/// Changes the log filter of the running agent.
pub struct Logging {
    filter: Option<reload::Handle<EnvFilter, Registry>>,
    format: LogFormat,
}

/// The filter: RUST_LOG if set, else `level`; plus the request events at
/// debug when they are sampled.
fn filter(level: &str, requests: bool) -> EnvFilter {
    let mut filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(level),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    if requests && let Ok(directive) = format!("{REQUEST_TARGET}=debug").parse() {
        filter = filter.add_directive(directive);
    }
    filter
}

/// The format in force: the one asked for, else text on a terminal and
/// JSON otherwise.
pub fn effective_format(format: Option<LogFormat>) -> LogFormat {
    format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    })
}

/// Installs the global subscriber (once; later calls change nothing and
/// return a handle that cannot change the level).
pub fn init(format: Option<LogFormat>, level: &str, requests: bool) -> Logging {
    let format = effective_format(format);
    let (layer, handle) = reload::Layer::new(filter(level, requests));
    let registry = tracing_subscriber::registry().with(layer);
    let installed = match format {
        LogFormat::Json => tracing::subscriber::set_global_default(
            registry.with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    // Events carry a `target` field of their own (a shadow
                    // target's name); the module path would be a second
                    // `target` key in the same object.
                    .with_target(false)
                    .with_writer(super::stderr::log_writer),
            ),
        ),
        LogFormat::Text => tracing::subscriber::set_global_default(
            registry.with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(super::stderr::log_writer),
            ),
        ),
    };
    if installed.is_ok() {
        let _ = tracing_log::LogTracer::init();
    }
    Logging {
        filter: installed.is_ok().then_some(handle),
        format,
    }
}

impl Logging {
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Applies a new level (RUST_LOG, when set, still wins).
    pub fn set_level(&self, level: &str, requests: bool) -> Result<(), String> {
        match &self.filter {
            Some(handle) => handle
                .reload(filter(level, requests))
                .map_err(|e| e.to_string()),
            None => Err("logging was set up elsewhere".to_owned()),
        }
    }
}
