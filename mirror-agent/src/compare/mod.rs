//! The verdict: each shadow's answer compared with the answer v1 really
//! gave the client (captured at egress), per request and per endpoint.
//! Files by job, from the request's side down to the words they share:
//!
//! * `pairing`: on the capture task, each compared request gets an
//!   exchange, and v1's responses are paired with them per connection;
//!   `recorded`: the same from a recording's answers (replay).
//! * `engine`: the exchanges waiting for their answers (bounded), and the
//!   compare thread that hands each complete one to the `judge`;
//!   `exchange`: one compared request and what came back for it.
//! * `judge`: the diff under the target's rules, the noise, the report,
//!   the diff log; `noise`: Diffy's idea, done passively (a target in the
//!   baseline role runs v1's own version; per endpoint and field, a
//!   candidate's difference whose rate is close to the baseline's is
//!   noise, reported as such and kept out of the candidates' verdicts).
//! * `diff/`: two [`Answer`](crate::http::Answer)s → their
//!   [`Difference`]s: status, headers (`Content-Type` as a media type:
//!   `media`), bodies with their content coding undone (`decode`), JSON by
//!   field path with arrays by identity, length and order (`json`), text
//!   by lines (`text`); what mirror itself changed in the copy, echoed
//!   back by a target, is no difference (`additions`).
//! * `rules`: what the comparison leaves out (headers, JSON fields) and
//!   which headers are credentials; `endpoint`: `POST /orders/123` →
//!   `POST /orders/{id}`, a bounded set; `config`: what it is told.
//! * `report/`: the counts per target and endpoint (`tally`), their
//!   latencies (`latency`), and the snapshot that `/compare` serves as JSON
//!   (`snapshot`); `render/`: that snapshot drawn as `/compare.html`
//!   (`page`), as `compare-report`'s text (`terminal`), and the verdict
//!   line of the summary (`words`).
//! * `diff_log`: one JSON line per differing exchange, sampled and rate
//!   limited, credentials never written; `log_file`: its file, bounded in
//!   size, rotated, reopened on SIGHUP.
//! * `visible`: network text as a reader is shown it (bidirectional and
//!   invisible characters escaped), for the page, the terminal and the
//!   endpoint names.
//! * `gate`: the promotion rule (pass, fail, inconclusive) over a
//!   target's counts, one agent's or the fleet's; what `/verdict` and
//!   `mirror-agent verdict` answer.
//! * `verdict`: the words all of them speak ([`Kind`], [`Difference`],
//!   [`NotCompared`], [`Role`], [`Verdict`]); it imports none of them.
//!
//! This file only declares the modules and names what the rest of the
//! agent uses.

mod config;
pub mod diff;
pub mod diff_log;
pub mod endpoint;
mod engine;
mod exchange;
pub mod gate;
mod judge;
pub mod log_file;
mod noise;
mod pairing;
mod recorded;
pub mod render;
pub mod report;
pub mod rules;
pub mod verdict;
pub mod visible;

pub use config::{
    CompareConfig, DEFAULT_BODY_CAP, DEFAULT_DIFF_LOG_RATE, DEFAULT_MAX_ENDPOINTS, DEFAULT_TIMEOUT,
    DiffLogTo, TargetCompare,
};
pub use diff::diff;
pub use diff_log::{DiffLog, Exchange};
pub use endpoint::{Endpoints, template};
pub use engine::{Engine, MAX_HELD_BYTES, MAX_PENDING};
pub use exchange::{RequestMeta, V1Response};
pub use judge::UNKNOWN_ENDPOINT;
pub use pairing::{Exchanges, V1Responses};
pub use recorded::RecordedAnswers;
pub use render::{render_html, render_text, verdict_line, verdict_lines};
pub use report::{CompareReport, Report};
pub use rules::{FieldPattern, Rules};
pub use verdict::{Difference, Kind, NotCompared, Role, VALUE_CHARS, Verdict};
