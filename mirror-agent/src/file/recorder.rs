//! Recording: a [`RequestStage`] that writes each captured request to a
//! `.gor` file as goreplay's type 1 payload, after the same routing rules
//! as live mirroring (share, method, path and header filters, rewrites),
//! the file standing for one target.
//!
//! The capture task never waits on the disk: encoded payloads go through a
//! bounded queue (count and bytes) to a writer thread, and a full queue
//! drops the request, counted (`queue_full`), as a slow shadow does. Every
//! request ends in exactly one counter: `captured = written + filtered +
//! dropped + queued`. [`Recording::finish`] waits for the queue to empty
//! and completes the file (flush, gzip trailer, sync), so a stop signal
//! leaves a file whose last payload is whole.
//!
//! With v1's responses captured too ([`Recorder::responses`]), each
//! response of a written request is written as a type 2 payload with the
//! request's id: the protocol pairs them ([`crate::http::paired`], as for
//! the comparison), the request's exchange being its id ([`Written`]) and
//! the [`ResponseRecorder`] the stage its answer goes to. A written
//! request whose response is not written is counted with a reason
//! ([`ResponseDrop`]).
//!
//! JSON bodies are written without their credentials ([`redaction`]).
//! The counters are in [`stats`], the queue and the writer thread in
//! [`writer`].

mod redaction;
mod stats;
mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use tracing::warn;

pub use self::stats::{RecordDrop, RecordSnapshot, RecordStats, ResponseDrop};
pub use self::writer::{MAX_QUEUED_BYTES, QUEUE_PAYLOADS};
use self::writer::{Queue, Refused};
use super::gor::{self, PayloadKind, PayloadMeta, WriteError};
use super::rotation::{OutputPlan, RotatingWriter};
use crate::http::{AnswerStage, CapturedResponse, Request, RequestStage, Unanswered};
use crate::redact::Policy;
use crate::route::{Plan, RouteConfig, RouteTarget, Router, TargetUrl, Verdict};

/// Payload ids: 24 hex digits as goreplay writes them, a random prefix per
/// recording and a counter, so ids never repeat within a file and rarely
/// across files.
#[derive(Debug)]
struct Ids {
    prefix: u32,
    next: u64,
}

impl Ids {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // The standard library's per-process random keys.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(crate::clock::monotonic_ns());
        Self {
            prefix: h.finish() as u32,
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        self.next += 1;
        format!("{:08x}{:016x}", self.prefix, self.next)
    }
}

/// A written request, waiting for v1's response: the exchange the
/// pairing hands back with it.
#[derive(Debug)]
pub struct Written {
    id: String,
    /// When the request was complete (monotonic ns): the response's
    /// latency runs from it.
    complete_ns: u64,
}

/// The request stage of a recording (see the module documentation).
pub struct Recorder {
    router: Router,
    verdicts: Vec<Verdict>,
    queue: Queue,
    ids: Ids,
    /// Added to a request's timestamp for the file's Unix nanoseconds (0
    /// when the timestamps are Unix time already, as a packet capture's).
    wall_offset_ns: i64,
    stats: Arc<RecordStats>,
    encoded: Vec<u8>,
    /// Whose JSON body fields are written as markers.
    redaction: Arc<Policy>,
}

/// The answer stage of a recording: v1's responses, each written as a
/// type 2 payload with its request's id.
pub struct ResponseRecorder {
    queue: Queue,
    wall_offset_ns: i64,
    stats: Arc<RecordStats>,
    redaction: Arc<Policy>,
}

/// The writer side of a recording: its thread and the shared counters.
pub struct Recording {
    writer: JoinHandle<std::io::Result<()>>,
    stats: Arc<RecordStats>,
}

/// The name the recording has in the routing stage and the final counts.
pub const RECORDING_TARGET: &str = "file";

/// Starts recording to `output` (a file, or files by time pattern, size
/// or age: [`super::rotation`]) with `route`'s rules and rewrites (its
/// targets are replaced by the file). No marker header is added, so the
/// file holds what clients sent (a replay adds it); without a marker the
/// loop guard does not apply either.
pub fn record(
    output: impl Into<OutputPlan>,
    mut route: RouteConfig,
    wall_offset_ns: i64,
) -> std::io::Result<(Recorder, Recording)> {
    let writer = RotatingWriter::create(output.into())?;
    let url = TargetUrl::parse("http://recording.invalid")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut target = RouteTarget::new(url);
    target.name = RECORDING_TARGET.to_owned();
    route.targets = vec![target];
    route.marker = None;
    let stats = Arc::new(RecordStats::default());
    let (queue, writer) = writer::start(writer, &stats)?;
    let router = Router::new(Arc::new(Plan::new(route)));
    let recorder = Recorder {
        router,
        verdicts: Vec::new(),
        queue,
        ids: Ids::new(),
        wall_offset_ns,
        stats: Arc::clone(&stats),
        encoded: Vec::new(),
        redaction: Arc::new(Policy::default()),
    };
    Ok((recorder, Recording { writer, stats }))
}

impl Recorder {
    pub fn stats(&self) -> Arc<RecordStats> {
        Arc::clone(&self.stats)
    }

    /// Waits for the writer when its queue is full instead of dropping:
    /// for a file read as fast as it can be (a packet capture), where
    /// waiting delays nothing. Before [`Recorder::responses`].
    pub fn wait_when_full(&mut self) {
        self.queue.waits = true;
    }

    /// Writes the JSON bodies with the values of `policy`'s credential
    /// fields replaced by markers (the built-in names until set). Before
    /// [`Recorder::responses`].
    pub fn redact_with(&mut self, policy: Policy) {
        self.redaction = Arc::new(policy);
    }

    /// Also records v1's responses: the stage they go to once paired with
    /// this recorder's requests ([`crate::http::paired`]).
    pub fn responses(&self) -> ResponseRecorder {
        ResponseRecorder {
            queue: self.queue.clone(),
            wall_offset_ns: self.wall_offset_ns,
            stats: Arc::clone(&self.stats),
            redaction: Arc::clone(&self.redaction),
        }
    }

    /// Encodes and queues one request's bytes as they would go to a target;
    /// its id if it was queued.
    fn write(&mut self, request: &Request, bytes: &[u8]) -> Option<String> {
        let meta = PayloadMeta {
            kind: PayloadKind::Request,
            id: self.ids.next(),
            timestamp_ns: (request.first_byte_ns as i64).saturating_add(self.wall_offset_ns),
            latency_ns: -1,
        };
        self.encoded.clear();
        if let Err(WriteError::ContainsSeparator | WriteError::Io(_)) =
            gor::encode(&meta, bytes, &mut self.encoded)
        {
            self.stats.drop_one(RecordDrop::ContainsSeparator);
            return None;
        }
        match self.queue.offer(false, std::mem::take(&mut self.encoded)) {
            Ok(()) => Some(meta.id),
            Err(refused) => {
                self.stats.drop_one(match refused {
                    Refused::QueueFull => RecordDrop::QueueFull,
                    Refused::WriterGone => RecordDrop::WriteFailed,
                });
                None
            }
        }
    }
}

/// A request's exchange is its payload id when it was written (`None`:
/// filtered or dropped, its response is not written either).
impl RequestStage for Recorder {
    type Exchange = Option<Written>;

    fn on_request(&mut self, request: Request) -> Option<Written> {
        self.stats.captured.fetch_add(1, Relaxed);
        self.router.route(&request, &mut self.verdicts);
        let id = match self.verdicts.pop() {
            Some(Verdict::Send(prepared)) => {
                let bytes = prepared.to_vec();
                let bytes = redaction::redact_message(&self.redaction, &bytes).unwrap_or(bytes);
                self.write(&request, &bytes)
            }
            Some(Verdict::Filtered(reason)) => {
                self.stats.filtered[reason as usize].fetch_add(1, Relaxed);
                None
            }
            None => {
                warn!("the recording has no routing verdict");
                None
            }
        };
        self.verdicts.clear();
        id.map(|id| Written {
            id,
            complete_ns: request.complete_ns,
        })
    }
}

impl AnswerStage<Option<Written>> for ResponseRecorder {
    fn answered(&mut self, written: Option<Written>, response: CapturedResponse) {
        let Some(written) = written else {
            return;
        };
        let Some(raw) = response.raw else {
            self.stats.drop_response(ResponseDrop::TooLarge);
            return;
        };
        let meta = PayloadMeta {
            kind: PayloadKind::Response,
            id: written.id,
            timestamp_ns: (response.first_byte_ns as i64).saturating_add(self.wall_offset_ns),
            latency_ns: response.first_byte_ns.saturating_sub(written.complete_ns) as i64,
        };
        let redacted = redaction::redact_message(&self.redaction, &raw);
        let raw = redacted.as_deref().unwrap_or(&raw);
        let mut encoded = Vec::with_capacity(raw.len() + 64);
        if gor::encode(&meta, raw, &mut encoded).is_err() {
            self.stats.drop_response(ResponseDrop::ContainsSeparator);
            return;
        }
        if let Err(refused) = self.queue.offer(true, encoded) {
            self.stats.drop_response(match refused {
                Refused::QueueFull => ResponseDrop::QueueFull,
                Refused::WriterGone => ResponseDrop::WriteFailed,
            });
        }
    }

    /// Counts a written request whose response will not be written.
    fn unanswered(&mut self, written: Option<Written>, why: Unanswered) {
        if written.is_some() {
            self.stats.drop_response(match why {
                Unanswered::Unpaired => ResponseDrop::Unpaired,
                Unanswered::NoResponse => ResponseDrop::NoResponse,
            });
        }
    }
}

impl Recording {
    pub fn stats(&self) -> Arc<RecordStats> {
        Arc::clone(&self.stats)
    }

    /// Waits for the writer to take what is queued and complete the file.
    /// The [`Recorder`] must be dropped first (it holds the queue open).
    pub fn finish(self) -> std::io::Result<RecordSnapshot> {
        let result = self
            .writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the recording's writer panicked")));
        result.map(|()| self.stats.snapshot())
    }
}

#[cfg(test)]
mod tests;
