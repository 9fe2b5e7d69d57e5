//! The verdict: each shadow's answer compared with the answer v1 really
//! gave the client (captured at egress), per request and per endpoint.
//!
//! * `diff`: two [`Answer`](crate::http::Answer)s → the [`Difference`]s
//!   between them (status; headers but the ignored ones; bodies after
//!   undoing their content coding, JSON structurally by field path), under
//!   the [`Rules`].
//! * `endpoint`: `POST /orders/123` → `POST /orders/{id}`, a bounded set.
//! * `report`: the counts per target and endpoint that `/compare`,
//!   `/compare.html`, `compare-report` and the summary read.
//! * `diff_log`: one JSON line per differing exchange, sampled and rate
//!   limited, credentials never written.
//!
//! Noise (Diffy's idea, done passively): a target in the baseline role runs
//! v1's own version. A difference that v1 and the baseline also show is
//! noise: reported as such, kept out of the candidates' verdicts.

mod config;
pub mod decode;
pub mod diff;
pub mod diff_log;
pub mod endpoint;
mod engine;
pub mod json;
pub mod page;
mod pairing;
mod recorded;
pub mod report;
pub mod rules;
pub mod terminal;

use std::fmt;

pub use config::{
    CompareConfig, DEFAULT_BODY_CAP, DEFAULT_DIFF_LOG_RATE, DEFAULT_TIMEOUT, DiffLogTo,
    TargetCompare,
};
pub use diff::diff;
pub use diff_log::{DiffLog, Exchange};
pub use endpoint::{Endpoints, template};
pub use engine::{Engine, MAX_HELD_BYTES, MAX_PENDING, RequestMeta, V1Response};
pub use page::render_html;
pub use pairing::{Exchanges, V1Responses};
pub use recorded::RecordedAnswers;
pub use report::{CompareReport, Report, verdict_line};
pub use rules::{FieldPattern, Rules};
pub use terminal::render_text;

/// What part of a response differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Status,
    Header,
    Body,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Status, Kind::Header, Kind::Body];

    /// The metric label and the report key.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Header => "header",
            Kind::Body => "body",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between v1's answer (left) and a target's (right).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub kind: Kind,
    /// Where: `status`; a header's name, lowercase; a JSON body's field
    /// path (`$.items[3].price`, `$` for the whole document); `body` for a
    /// body compared by bytes.
    pub path: String,
    /// v1's value, made readable and cut to [`VALUE_CHARS`]; `<absent>`
    /// when v1 has none; `<redacted>` for credential headers.
    pub left: String,
    /// The target's value, the same way.
    pub right: String,
    /// v1 and the baseline differ here too (set by the engine, not by the
    /// diff): noise, kept out of the verdict.
    pub noise: bool,
}

/// Longest value kept in a [`Difference`] (characters).
pub const VALUE_CHARS: usize = 120;

/// Why a (request, target) pair was not compared. Each is a value of the
/// `result` label of `mirror_compare_total`, next to `match` and `differ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotCompared {
    /// v1's response was not seen in time (lost in the capture, or slower
    /// than the timeout).
    NoV1Response,
    /// The target gave no answer: dropped before sending (queue full,
    /// expired, ...), connect or I/O error, timeout.
    TargetFailed,
    /// Both answers did not arrive within the comparison's timeout.
    Timeout,
    /// A body is longer than the cap and the bytes kept cannot decide (the
    /// hashes differ but the content codings do too).
    BodyOverCap,
    /// A body could not be decoded (bad gzip, unknown coding on one side).
    Undecodable,
    /// Too many exchanges waiting, or too many bytes held: given up.
    Overflow,
    /// The connection's requests and responses could no longer be paired
    /// (a capture gap, a request the framer skipped, an upgrade).
    Unpaired,
}

impl NotCompared {
    pub const ALL: [NotCompared; 7] = [
        NotCompared::NoV1Response,
        NotCompared::TargetFailed,
        NotCompared::Timeout,
        NotCompared::BodyOverCap,
        NotCompared::Undecodable,
        NotCompared::Overflow,
        NotCompared::Unpaired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotCompared::NoV1Response => "no_v1_response",
            NotCompared::TargetFailed => "target_failed",
            NotCompared::Timeout => "timeout",
            NotCompared::BodyOverCap => "body_over_cap",
            NotCompared::Undecodable => "undecodable",
            NotCompared::Overflow => "overflow",
            NotCompared::Unpaired => "unpaired",
        }
    }
}

impl fmt::Display for NotCompared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target's part in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A new version, judged against v1.
    Candidate,
    /// v1's own version elsewhere: its differences with v1 are noise.
    Baseline,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Baseline => "baseline",
        }
    }
}

/// The verdict on one (request, target) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Compared; no difference, or only noise (the noise listed).
    Match(Vec<Difference>),
    /// Compared; at least one difference that is not noise (noise
    /// included, flagged).
    Differ(Vec<Difference>),
    NotCompared(NotCompared),
}
