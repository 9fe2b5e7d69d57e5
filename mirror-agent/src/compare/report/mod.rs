//! The comparison's counts: per target and per endpoint, how many pairs
//! matched, differed (and in what: status, headers, body, which fields), or
//! could not be compared (and why), with v1's and the target's latencies.
//! What is counted, not how it is shown: the renderings are in `render`.
//!
//! * `tally`: the running counts, which the compare thread
//!   [`Report::record`]s each verdict into; bounded by the configuration,
//!   not by the traffic (endpoints past `max_endpoints` pooled under
//!   [`OTHER_ENDPOINT`], fields past [`FIELDS_PER_ENDPOINT`] under
//!   [`OTHER_FIELDS`]).
//! * `latency`: the fixed-memory histograms the latencies go into.
//! * `summary`: per target, the fields that differ across its endpoints
//!   (one header on every endpoint), with the flag that leaves each out;
//!   computed from the endpoints' field counts when a snapshot is taken.
//! * `snapshot`: what a [`Report::snapshot`] returns, a plain serde value:
//!   `/compare` serves it as JSON, the page and the terminal draw it, and
//!   `compare-report` reads it back. Its JSON keys are a contract with
//!   outside scripts: add keys, never rename or drop one.

mod latency;
mod snapshot;
mod summary;
mod tally;
#[cfg(test)]
pub(crate) mod tests;

pub use snapshot::OTHER_FIELDS;
pub use snapshot::{
    CompareReport, EndpointReport, Example, FieldReport, FieldSummary, Kinds, LatencyReport,
    PairCounts, Percentiles, RESULTS, TargetReport,
};
pub use summary::{SUMMARY_FIELDS, SUMMARY_SHARE_PERCENT, field_kind, ignore_hint};
pub use tally::{Durations, FIELDS_PER_ENDPOINT, OTHER_ENDPOINT, Report};
