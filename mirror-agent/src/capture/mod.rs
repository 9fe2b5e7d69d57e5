//! Capture stage: loads the kernel program, attaches it to the interface,
//! drains the ring buffer and decodes records into events.

mod event;

pub use event::{DecodeError, Event, EventKind, EventSink, FlowKey, decode};
