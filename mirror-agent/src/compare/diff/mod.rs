//! Two answers → their differences, under the target's `Rules`:
//! pure functions, no I/O, no clock, no shared state.
//!
//! * `answer`: v1's answer and a target's: status, headers (but the
//!   ignored ones), bodies, credentials never shown.
//! * `decode`: a body's content coding undone, bounded (decompression
//!   bombs stop at a limit).
//! * `json`: two JSON documents compared by structure, each difference at
//!   its field path.

pub mod answer;
pub mod decode;
pub mod json;

pub use answer::diff;
