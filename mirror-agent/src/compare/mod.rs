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
mod exchange;
pub mod json;
mod judge;
mod pairing;
mod recorded;
pub mod render;
pub mod report;
pub mod rules;
pub mod verdict;

pub use config::{
    CompareConfig, DEFAULT_BODY_CAP, DEFAULT_DIFF_LOG_RATE, DEFAULT_TIMEOUT, DiffLogTo,
    TargetCompare,
};
pub use diff::diff;
pub use diff_log::{DiffLog, Exchange};
pub use endpoint::{Endpoints, template};
pub use engine::{Engine, MAX_HELD_BYTES, MAX_PENDING};
pub use exchange::{RequestMeta, V1Response};
pub use pairing::{Comparing, Pairing, V1Responses, shared_pairing};
pub use recorded::RecordedAnswers;
pub use render::{render_html, render_text, verdict_line};
pub use report::{CompareReport, Report};
pub use rules::{FieldPattern, Rules};
pub use verdict::{Difference, Kind, NotCompared, Role, VALUE_CHARS, Verdict};
