//! Recording: a [`RequestSink`] that writes each captured request to a
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::gor::{self, PayloadKind, PayloadMeta, WriteError};
use super::rotation::{OutputPlan, RotatingWriter};
use crate::http::{Request, RequestSink};
use crate::route::{FilterReason, Plan, RouteConfig, RouteTarget, Router, TargetUrl, Verdict};

/// Payloads waiting for the writer at most (beside [`MAX_QUEUED_BYTES`]).
pub const QUEUE_PAYLOADS: usize = 4096;
/// Bytes of payloads waiting for the writer at most; one larger payload is
/// still taken when the queue is empty.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// The writer pushes what it buffered to the file at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

mirror_common::labelled! {
    /// Why a captured request was not written: the `reason` of the
    /// recording's dropped count.
    pub enum RecordDrop {
        /// The writer is behind (slow disk): the queue was full.
        QueueFull => "queue_full",
        /// Writing the file failed (disk full, I/O error).
        WriteFailed => "write_failed",
        /// The request contains goreplay's payload separator, which the
        /// format cannot hold.
        ContainsSeparator => "contains_separator",
    }
}

/// The recording's accounting, shared by the capture task and the writer.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub captured: AtomicU64,
    pub written: AtomicU64,
    pub queued: AtomicU64,
    pub filtered: [AtomicU64; FilterReason::COUNT],
    pub dropped: [AtomicU64; RecordDrop::COUNT],
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSnapshot {
    pub captured: u64,
    pub written: u64,
    pub queued: u64,
    pub filtered: [u64; FilterReason::COUNT],
    pub dropped: [u64; RecordDrop::COUNT],
}

impl RecordStats {
    fn drop_one(&self, reason: RecordDrop) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> RecordSnapshot {
        RecordSnapshot {
            // Read last-counted first so a request in transit is never
            // seen in two places.
            written: self.written.load(Relaxed),
            dropped: std::array::from_fn(|i| self.dropped[i].load(Relaxed)),
            queued: self.queued.load(Relaxed),
            filtered: std::array::from_fn(|i| self.filtered[i].load(Relaxed)),
            captured: self.captured.load(Relaxed),
        }
    }
}

impl RecordSnapshot {
    pub fn filtered_total(&self) -> u64 {
        self.filtered.iter().sum()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn dropped_by(&self, reason: RecordDrop) -> u64 {
        self.dropped[reason as usize]
    }

    /// `captured = written + filtered + dropped + queued`.
    pub fn balances(&self) -> bool {
        self.captured == self.written + self.filtered_total() + self.dropped_total() + self.queued
    }
}

impl std::fmt::Display for RecordSnapshot {
    /// `captured=N written=N filtered=N (method=N) dropped=N (queue_full=N)`,
    /// zero reasons left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn parts<T: std::fmt::Display>(
            f: &mut std::fmt::Formatter<'_>,
            labels: impl IntoIterator<Item = T>,
            counts: &[u64],
        ) -> std::fmt::Result {
            let shown: Vec<String> = labels
                .into_iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(l, n)| format!("{l}={n}"))
                .collect();
            if !shown.is_empty() {
                write!(f, " ({})", shown.join(" "))?;
            }
            Ok(())
        }
        write!(f, "captured={} written={}", self.captured, self.written)?;
        write!(f, " filtered={}", self.filtered_total())?;
        parts(f, FilterReason::ALL, &self.filtered)?;
        write!(f, " dropped={}", self.dropped_total())?;
        parts(f, RecordDrop::ALL, &self.dropped)?;
        if self.queued > 0 {
            write!(f, " queued={}", self.queued)?;
        }
        Ok(())
    }
}

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

/// The request sink of a recording (see the module documentation).
pub struct Recorder {
    router: Router,
    verdicts: Vec<Verdict>,
    queue: SyncSender<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    ids: Ids,
    /// Added to a request's timestamp for the file's Unix nanoseconds (0
    /// when the timestamps are Unix time already, as a packet capture's).
    wall_offset_ns: i64,
    stats: Arc<RecordStats>,
    encoded: Vec<u8>,
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
    let mut writer = RotatingWriter::create(output.into())?;
    let url = TargetUrl::parse("http://recording.invalid")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut target = RouteTarget::new(url);
    target.name = RECORDING_TARGET.to_owned();
    route.targets = vec![target];
    route.marker = None;
    let stats = Arc::new(RecordStats::default());
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::sync_channel(QUEUE_PAYLOADS);
    let writer = {
        let stats = Arc::clone(&stats);
        let queued_bytes = Arc::clone(&queued_bytes);
        std::thread::Builder::new()
            .name("mirror-record".into())
            .spawn(move || {
                write_loop(&mut writer, &rx, &stats, &queued_bytes).and(writer.finish().map(drop))
            })?
    };
    let router = Router::new(Arc::new(Plan::new(route)));
    let recorder = Recorder {
        router,
        verdicts: Vec::new(),
        queue: tx,
        queued_bytes,
        ids: Ids::new(),
        wall_offset_ns,
        stats: Arc::clone(&stats),
        encoded: Vec::new(),
    };
    Ok((recorder, Recording { writer, stats }))
}

fn write_loop(
    writer: &mut RotatingWriter,
    rx: &Receiver<Vec<u8>>,
    stats: &RecordStats,
    queued_bytes: &AtomicUsize,
) -> std::io::Result<()> {
    let mut failed: Option<std::io::Error> = None;
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(bytes) => {
                queued_bytes.fetch_sub(bytes.len(), Relaxed);
                if failed.is_some() {
                    stats.drop_one(RecordDrop::WriteFailed);
                } else if let Err(err) = writer.write_encoded(&bytes) {
                    error!("cannot write the recording: {err}; what follows is dropped");
                    stats.drop_one(RecordDrop::WriteFailed);
                    failed = Some(err);
                } else {
                    stats.written.fetch_add(1, Relaxed);
                }
                stats.queued.fetch_sub(1, Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if failed.is_none() && last_flush.elapsed() >= FLUSH_EVERY {
            if let Err(err) = writer.flush() {
                error!("cannot write the recording: {err}; what follows is dropped");
                failed = Some(err);
            }
            last_flush = Instant::now();
        }
    }
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

impl Recorder {
    pub fn stats(&self) -> Arc<RecordStats> {
        Arc::clone(&self.stats)
    }

    /// Encodes and queues one request's bytes as they would go to a target.
    fn write(&mut self, request: &Request, bytes: &[u8]) {
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
            return;
        }
        let len = self.encoded.len();
        let queued = self.queued_bytes.load(Relaxed);
        if queued > 0 && queued + len > MAX_QUEUED_BYTES {
            self.stats.drop_one(RecordDrop::QueueFull);
            return;
        }
        self.stats.queued.fetch_add(1, Relaxed);
        self.queued_bytes.fetch_add(len, Relaxed);
        match self.queue.try_send(std::mem::take(&mut self.encoded)) {
            Ok(()) => {}
            Err(err) => {
                self.stats.queued.fetch_sub(1, Relaxed);
                self.queued_bytes.fetch_sub(len, Relaxed);
                let reason = match err {
                    TrySendError::Full(_) => RecordDrop::QueueFull,
                    TrySendError::Disconnected(_) => RecordDrop::WriteFailed,
                };
                self.stats.drop_one(reason);
            }
        }
    }
}

impl RequestSink for Recorder {
    fn on_request(&mut self, request: Request) {
        self.stats.captured.fetch_add(1, Relaxed);
        self.router.route(&request, &mut self.verdicts);
        match self.verdicts.pop() {
            Some(Verdict::Send(prepared)) => {
                let bytes = prepared.to_vec();
                self.write(&request, &bytes);
            }
            Some(Verdict::Filtered(reason)) => {
                self.stats.filtered[reason as usize].fetch_add(1, Relaxed);
            }
            None => warn!("the recording has no routing verdict"),
        }
        self.verdicts.clear();
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
mod tests {
    use super::*;
    use crate::file::gor::PayloadReader;
    use crate::http::testing::frame;

    #[test]
    fn recorded_requests_read_back_as_they_were_captured_and_filters_are_counted() {
        let dir = std::env::temp_dir().join(format!("mirror-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.gor");
        let stream = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n\x00\r\n\xff\n\
DELETE /c HTTP/1.1\r\n\r\n\
GET /d HTTP/1.1\r\nX-Mirrored-By: mirror\r\n\r\n";
        let requests = frame(stream);
        assert_eq!(requests.len(), 4);
        let mut route = RouteConfig::default();
        route.rules.methods = vec!["GET".into(), "POST".into()];
        let (mut recorder, recording) = record(&path, route, 1_000).unwrap();
        for r in requests {
            recorder.on_request(r);
        }
        drop(recorder);
        let counts = recording.finish().unwrap();
        assert!(counts.balances(), "{counts}");
        assert_eq!(counts.captured, 4);
        assert_eq!(counts.written, 3);
        assert_eq!(counts.filtered[FilterReason::Method as usize], 1);
        let read: Vec<_> = PayloadReader::open(&path, 1 << 20)
            .unwrap()
            .map(|i| i.unwrap().unwrap())
            .collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].data, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            read[1].data,
            b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n\x00\r\n\xff\n"
        );
        assert_eq!(read[0].meta.kind, PayloadKind::Request);
        assert_eq!(read[0].meta.id.len(), 24);
        assert_ne!(read[0].meta.id, read[1].meta.id);
        assert_eq!(read[0].meta.timestamp_ns, 1_000, "timestamp 0 + the offset");
        assert_eq!(
            read[2].data, b"GET /d HTTP/1.1\r\nX-Mirrored-By: mirror\r\n\r\n",
            "recorded as sent: no marker, no loop guard"
        );
        assert_eq!(
            counts.to_string(),
            "captured=4 written=3 filtered=1 (method=1) dropped=0"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
