//! Two answers → their differences, under the target's `Rules`:
//! pure functions, no I/O, no clock, no shared state.
//!
//! * `answer`: v1's answer and a target's: status, headers (but the
//!   ignored ones), bodies, credentials never shown.
//! * `decode`: a body's content coding undone, bounded (decompression
//!   bombs stop at a limit).
//! * `media`: a `Content-Type` read as a media type.
//! * `json`: two JSON documents compared by structure, each difference at
//!   its field path; arrays by identity, length, order.
//! * `text`: two texts compared by lines, one difference per changed
//!   region.
//! * `additions`: what mirror changed in the copy (marker, forwarded-for,
//!   rewrites), so that a target echoing it back is not a difference.

pub mod additions;
pub mod answer;
pub mod decode;
pub mod json;
pub mod media;
pub mod text;

pub use additions::Additions;
pub use answer::{Sent, diff};
