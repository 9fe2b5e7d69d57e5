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
//! * `snapshot`: what a [`Report::snapshot`] returns, a plain serde value:
//!   `/compare` serves it as JSON, the page and the terminal draw it, and
//!   `compare-report` reads it back. Its JSON keys are a contract with
//!   outside scripts: add keys, never rename or drop one.

mod latency;
mod snapshot;
mod tally;
#[cfg(test)]
pub(crate) mod tests;

pub use snapshot::{
    CompareReport, EndpointReport, Example, FieldReport, Kinds, LatencyReport, PairCounts,
    Percentiles, TargetReport,
};
pub use tally::{FIELDS_PER_ENDPOINT, OTHER_ENDPOINT, OTHER_FIELDS, Report};
