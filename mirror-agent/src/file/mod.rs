//! Files as sources and sinks of the pipeline, beside the kernel ring and
//! the shadows: goreplay's `.gor` format both ways ([`gor`]), packet
//! captures as capture events ([`packets`]), the recording sink
//! ([`recorder`]) and its files, by time pattern, size and age
//! ([`rotation`]), and the replay sources ([`source`]).
//!
//! `mirror-agent record` puts [`recorder::Recorder`] where the live agent
//! puts the shadows' dispatcher; `mirror-agent replay` takes requests from
//! a [`source::Source`] instead of the capture (see `app`).

pub mod gor;
pub mod packets;
pub mod recorder;
pub mod rotation;
pub mod source;

pub use gor::{
    Malformed, Payload, PayloadKind, PayloadMeta, PayloadReader, PayloadWriter, Position,
};
pub use packets::{PacketReader, PacketStats, PcapError, Segments};
pub use recorder::{
    RecordDrop, RecordSnapshot, RecordStats, Recorder, Recording, ResponseDrop, ResponseRecorder,
    Written, record,
};
pub use rotation::OutputPlan;
pub use source::{Item, PairedAnswer, Recorded, RecordedResponse, Source, SourceStats};
