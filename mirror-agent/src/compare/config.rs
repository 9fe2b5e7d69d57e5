//! What the comparison is told: which targets are compared and in what
//! role, what to ignore, how much to hold and for how long, and where the
//! diff log goes. Built by `config` from the flags and the file.

use std::path::PathBuf;
use std::time::Duration;

use super::verdict::Role;
use crate::redact::Policy;

/// Default of `compare_body_cap`: the bytes of a body kept for the
/// comparison (beyond it, the length and a hash decide).
pub const DEFAULT_BODY_CAP: usize = 1024 * 1024;
/// Default of `compare_timeout`: how long an exchange waits for v1's and
/// every target's answer. Above the default request timeout (5 s), so a
/// target too slow to answer a request it was sent is a difference
/// (`failed`, timeout), not a pair left uncompared (`timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `compare_max_endpoints`: endpoint templates counted apart
/// (in the report, and as the `endpoint` label of the metrics).
pub const DEFAULT_MAX_ENDPOINTS: usize = 100;
/// Default of `diff_log_rate`: differing exchanges written per second.
pub const DEFAULT_DIFF_LOG_RATE: u32 = 10;

/// The comparison's settings; `targets` lists only the targets compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareConfig {
    pub targets: Vec<TargetCompare>,
    pub diff_log: Option<DiffLogTo>,
    /// Percent of the differing exchanges written (before the rate limit).
    pub diff_log_sample: u8,
    /// Most lines a second.
    pub diff_log_rate: u32,
    /// The diff log file's size past which it is rotated; 0: the default
    /// ([`DEFAULT_MAX_SIZE`](super::log_file::DEFAULT_MAX_SIZE)).
    pub diff_log_max_size: u64,
    /// Rotated files kept (`FILE.1` ... `FILE.N`); `None`: the default
    /// ([`DEFAULT_KEEP`](super::log_file::DEFAULT_KEEP)).
    pub diff_log_keep: Option<usize>,
    /// Endpoint templates counted apart; the rest are `other`. 0 in a
    /// configuration built by hand (`Default`): [`DEFAULT_MAX_ENDPOINTS`].
    pub max_endpoints: usize,
    /// Which values are never shown (`--redact-*`): applied to every
    /// difference once found, so the report, `/compare`, the page, the
    /// terminal and the diff log never hold them; `record` uses it too.
    pub redaction: Policy,
}

impl CompareConfig {
    /// Some target is compared: v1's responses must be captured.
    pub fn enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    pub fn target(&self, name: &str) -> Option<&TargetCompare> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// One compared target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetCompare {
    /// The target's name (its label in metrics).
    pub name: String,
    pub role: Role,
    /// Header names ignored besides the default list (lowercase).
    pub ignore_headers: Vec<String>,
    /// JSON field paths ignored (`$.served_at`, `$.items[*].id`), checked.
    pub ignore_fields: Vec<String>,
    pub body_cap: usize,
    pub timeout: Duration,
}

/// Where the diff log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffLogTo {
    Stderr,
    File(PathBuf),
}

impl std::str::FromStr for DiffLogTo {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "" => Err("the diff log needs a file name, or - for stderr".into()),
            "-" => Ok(DiffLogTo::Stderr),
            path => Ok(DiffLogTo::File(PathBuf::from(path))),
        }
    }
}

impl std::fmt::Display for DiffLogTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiffLogTo::Stderr => f.write_str("-"),
            DiffLogTo::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "candidate" => Ok(Role::Candidate),
            "baseline" => Ok(Role::Baseline),
            _ => Err(format!("`{text}` is not a role: candidate or baseline")),
        }
    }
}
