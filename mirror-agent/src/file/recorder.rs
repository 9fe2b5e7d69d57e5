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
//!
//! With v1's responses captured too ([`Recorder::responses`]), each
//! response of a written request is written as a type 2 payload with the
//! request's id, paired on its connection in order ([`InOrder`]); a
//! written request whose response is not written is counted with a reason
//! ([`ResponseDrop`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::gor::{self, PayloadKind, PayloadMeta, WriteError};
use super::rotation::{OutputPlan, RotatingWriter};
use crate::capture::FlowId;
use crate::http::{
    Answers, CapturedResponse, InOrder, Request, RequestSink, ResponseLoss, ResponseSink,
    Unanswered,
};
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

mirror_common::labelled! {
    /// Why the response to a written request was not written.
    pub enum ResponseDrop {
        /// The connection's order was lost (a request or a response lost
        /// in the capture): which response answers it is not known.
        Unpaired => "unpaired",
        /// Its response was lost in the capture, or the connection (or the
        /// recording) ended first.
        NoResponse => "no_response",
        /// The response is larger than `--max-response` (default 1 MiB).
        TooLarge => "too_large",
        QueueFull => "queue_full",
        WriteFailed => "write_failed",
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
    /// v1's responses written (type 2), when they are recorded.
    pub responses_written: AtomicU64,
    pub responses_queued: AtomicU64,
    pub responses_dropped: [AtomicU64; ResponseDrop::COUNT],
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSnapshot {
    pub captured: u64,
    pub written: u64,
    pub queued: u64,
    pub filtered: [u64; FilterReason::COUNT],
    pub dropped: [u64; RecordDrop::COUNT],
    pub responses_written: u64,
    pub responses_queued: u64,
    pub responses_dropped: [u64; ResponseDrop::COUNT],
}

impl RecordStats {
    fn drop_one(&self, reason: RecordDrop) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    fn drop_response(&self, reason: ResponseDrop) {
        self.responses_dropped[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> RecordSnapshot {
        RecordSnapshot {
            // Read last-counted first so a request in transit is never
            // seen in two places.
            responses_written: self.responses_written.load(Relaxed),
            responses_dropped: std::array::from_fn(|i| self.responses_dropped[i].load(Relaxed)),
            responses_queued: self.responses_queued.load(Relaxed),
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

    pub fn responses_dropped_total(&self) -> u64 {
        self.responses_dropped.iter().sum()
    }

    /// `responses: written=N dropped=N (reason=N)`, for the final counts of
    /// a recording of responses.
    pub fn responses_line(&self) -> String {
        let reasons: Vec<String> = ResponseDrop::ALL
            .iter()
            .zip(&self.responses_dropped)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        let mut line = format!(
            "responses_written={} responses_dropped={}",
            self.responses_written,
            self.responses_dropped_total()
        );
        if !reasons.is_empty() {
            line += &format!(" ({})", reasons.join(" "));
        }
        if self.responses_queued > 0 {
            line += &format!(" responses_queued={}", self.responses_queued);
        }
        line
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

/// What the writer thread is handed: an encoded payload.
struct Queued {
    response: bool,
    bytes: Vec<u8>,
}

/// The capture task's end of the queue to the writer, shared by the
/// request and the response sides.
#[derive(Clone)]
struct Queue {
    tx: SyncSender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
    stats: Arc<RecordStats>,
    /// Wait for the writer instead of dropping ([`Recorder::wait_when_full`]).
    waits: bool,
}

/// Why a payload did not go into the queue.
#[derive(Clone, Copy, Debug)]
enum Refused {
    QueueFull,
    WriterGone,
}

impl Queue {
    /// Queues an encoded payload: dropped when the writer is behind, or
    /// once it has room when the queue waits.
    fn offer(&self, response: bool, bytes: Vec<u8>) -> Result<(), Refused> {
        let len = bytes.len();
        let over = || {
            let queued = self.queued_bytes.load(Relaxed);
            queued > 0 && queued + len > MAX_QUEUED_BYTES
        };
        while over() {
            if !self.waits {
                return Err(Refused::QueueFull);
            }
            // The writer takes a payload in far less (and zeroes the count
            // if it ends).
            std::thread::sleep(Duration::from_millis(1));
        }
        let counter = if response {
            &self.stats.responses_queued
        } else {
            &self.stats.queued
        };
        counter.fetch_add(1, Relaxed);
        self.queued_bytes.fetch_add(len, Relaxed);
        let queued = Queued { response, bytes };
        let sent = match self.waits {
            true => self.tx.send(queued).map_err(|_| Refused::WriterGone),
            false => self.tx.try_send(queued).map_err(|err| match err {
                TrySendError::Full(_) => Refused::QueueFull,
                TrySendError::Disconnected(_) => Refused::WriterGone,
            }),
        };
        sent.inspect_err(|_| {
            counter.fetch_sub(1, Relaxed);
            self.queued_bytes.fetch_sub(len, Relaxed);
        })
    }
}

/// A written request, waiting for v1's response.
#[derive(Debug)]
struct Written {
    id: String,
    /// When the request was complete (monotonic ns): the response's
    /// latency runs from it.
    complete_ns: u64,
}

/// Connections whose responses are paired at once.
const MAX_CONNECTIONS: usize = 65_536;

type Pairs = Arc<Mutex<InOrder<Option<Written>>>>;

fn lock(pairs: &Pairs) -> MutexGuard<'_, InOrder<Option<Written>>> {
    pairs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a written request whose response will not be written.
fn unanswered(stats: &RecordStats) -> impl FnMut(Option<Written>, Unanswered) + '_ {
    move |written, why| {
        if written.is_some() {
            stats.drop_response(match why {
                Unanswered::Unpaired => ResponseDrop::Unpaired,
                Unanswered::NoResponse => ResponseDrop::NoResponse,
            });
        }
    }
}

/// The request sink of a recording (see the module documentation).
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
    /// The requests waiting for their responses, once
    /// [`Recorder::responses`] asked for them.
    pairs: Option<Pairs>,
}

/// The response sink of a recording: v1's responses, each written as a
/// type 2 payload with its request's id.
pub struct ResponseRecorder {
    queue: Queue,
    pairs: Pairs,
    wall_offset_ns: i64,
    stats: Arc<RecordStats>,
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
                let _ended = Ended(Arc::clone(&queued_bytes));
                write_loop(&mut writer, &rx, &stats, &queued_bytes).and(writer.finish().map(drop))
            })?
    };
    let router = Router::new(Arc::new(Plan::new(route)));
    let recorder = Recorder {
        router,
        verdicts: Vec::new(),
        queue: Queue {
            tx,
            queued_bytes,
            stats: Arc::clone(&stats),
            waits: false,
        },
        ids: Ids::new(),
        wall_offset_ns,
        stats: Arc::clone(&stats),
        encoded: Vec::new(),
        pairs: None,
    };
    Ok((recorder, Recording { writer, stats }))
}

/// Zeroes the queued bytes when the writer ends, however it ends, so that
/// a queue waiting for room finds the writer gone instead of waiting on.
struct Ended(Arc<AtomicUsize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(0, Relaxed);
    }
}

fn write_loop(
    writer: &mut RotatingWriter,
    rx: &Receiver<Queued>,
    stats: &RecordStats,
    queued_bytes: &AtomicUsize,
) -> std::io::Result<()> {
    let mut failed: Option<std::io::Error> = None;
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(Queued { response, bytes }) => {
                queued_bytes.fetch_sub(bytes.len(), Relaxed);
                let result = match &failed {
                    Some(_) => Err(()),
                    None => writer.write_encoded(&bytes).map_err(|err| {
                        error!("cannot write the recording: {err}; what follows is dropped");
                        failed = Some(err);
                    }),
                };
                let (written, queued) = if response {
                    (&stats.responses_written, &stats.responses_queued)
                } else {
                    (&stats.written, &stats.queued)
                };
                match (result, response) {
                    (Ok(()), _) => {
                        written.fetch_add(1, Relaxed);
                    }
                    (Err(()), false) => stats.drop_one(RecordDrop::WriteFailed),
                    (Err(()), true) => stats.drop_response(ResponseDrop::WriteFailed),
                }
                queued.fetch_sub(1, Relaxed);
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

    /// Waits for the writer when its queue is full instead of dropping:
    /// for a file read as fast as it can be (a packet capture), where
    /// waiting delays nothing. Before [`Recorder::responses`].
    pub fn wait_when_full(&mut self) {
        self.queue.waits = true;
    }

    /// Also records v1's responses: the sink for their framing (one per
    /// recording).
    pub fn responses(&mut self) -> ResponseRecorder {
        let pairs: Pairs = Arc::new(Mutex::new(InOrder::new(MAX_CONNECTIONS)));
        self.pairs = Some(Arc::clone(&pairs));
        ResponseRecorder {
            queue: self.queue.clone(),
            pairs,
            wall_offset_ns: self.wall_offset_ns,
            stats: Arc::clone(&self.stats),
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

impl RequestSink for Recorder {
    fn on_request(&mut self, request: Request) {
        self.stats.captured.fetch_add(1, Relaxed);
        self.router.route(&request, &mut self.verdicts);
        let id = match self.verdicts.pop() {
            Some(Verdict::Send(prepared)) => {
                let bytes = prepared.to_vec();
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
        if let Some(pairs) = &self.pairs {
            let written = id.map(|id| Written {
                id,
                complete_ns: request.complete_ns,
            });
            let answers = Answers::to(&request);
            lock(pairs).push(request.flow.key, written, answers, unanswered(&self.stats));
        }
    }

    fn on_requests_lost(&mut self, flow: &FlowId) {
        if let Some(pairs) = &self.pairs {
            lock(pairs).break_connection(flow.key, unanswered(&self.stats));
        }
    }
}

impl ResponseRecorder {
    /// The recording ends: requests still waiting get no response.
    pub fn end_all(&mut self) {
        lock(&self.pairs).end_all(unanswered(&self.stats));
    }
}

impl ResponseSink for ResponseRecorder {
    fn next_request(&mut self, flow: &FlowId) -> Option<Answers> {
        lock(&self.pairs).peek(&flow.key)
    }

    fn on_response(&mut self, flow: &FlowId, response: CapturedResponse) {
        let popped = lock(&self.pairs).pop(flow.key, unanswered(&self.stats));
        let Some(Some(written)) = popped else {
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
        let mut encoded = Vec::with_capacity(raw.len() + 64);
        if gor::encode(&meta, &raw, &mut encoded).is_err() {
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

    fn on_lost(&mut self, flow: &FlowId, reason: ResponseLoss) {
        let mut pairs = lock(&self.pairs);
        if reason.ends_stream() {
            pairs.break_connection(flow.key, unanswered(&self.stats));
        } else {
            pairs.lose_one(flow.key, unanswered(&self.stats));
        }
    }

    fn on_end(&mut self, flow: &FlowId) {
        lock(&self.pairs).end(&flow.key, unanswered(&self.stats));
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
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n\x00\r\n\xff\n\
DELETE /c HTTP/1.1\r\nHost: h\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n";
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
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n\x00\r\n\xff\n"
        );
        assert_eq!(read[0].meta.kind, PayloadKind::Request);
        assert_eq!(read[0].meta.id.len(), 24);
        assert_ne!(read[0].meta.id, read[1].meta.id);
        assert_eq!(read[0].meta.timestamp_ns, 1_000, "timestamp 0 + the offset");
        assert_eq!(
            read[2].data, b"GET /d HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n",
            "recorded as sent: no marker, no loop guard"
        );
        assert_eq!(
            counts.to_string(),
            "captured=4 written=3 filtered=1 (method=1) dropped=0"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_drops_when_live_and_waits_for_the_writer_when_reading_a_file() {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut queue = Queue {
            tx,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            stats: Arc::new(RecordStats::default()),
            waits: false,
        };
        queue.offer(false, vec![1; 10]).unwrap();
        assert!(matches!(
            queue.offer(false, vec![2; 10]),
            Err(Refused::QueueFull)
        ));
        queue.waits = true;
        let waiting = std::thread::spawn({
            let queue = queue.clone();
            move || queue.offer(false, vec![3; 10])
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished(), "a waiting queue does not drop");
        // The writer takes one: the waiting payload goes in after it.
        assert_eq!(rx.recv().unwrap().bytes, [1; 10]);
        waiting.join().unwrap().unwrap();
        assert_eq!(rx.recv().unwrap().bytes, [3; 10]);
        assert_eq!(queue.stats.queued.load(Relaxed), 2, "none was taken back");
        // A writer gone ends the wait with an error, not a hang.
        queue.queued_bytes.store(MAX_QUEUED_BYTES, Relaxed);
        let gone = std::thread::spawn({
            let queue = queue.clone();
            move || queue.offer(false, vec![4; 10])
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        drop(Ended(Arc::clone(&queue.queued_bytes)));
        assert!(matches!(gone.join().unwrap(), Err(Refused::WriterGone)));
    }

    fn response(raw: Option<&[u8]>, first_byte_ns: u64) -> CapturedResponse {
        CapturedResponse {
            answer: crate::http::Answer {
                status: 200,
                headers: Vec::new(),
                body: crate::http::Body::default(),
            },
            first_byte_ns,
            complete_ns: first_byte_ns,
            raw: raw.map(bytes::Bytes::copy_from_slice),
        }
    }

    #[test]
    fn responses_are_written_as_type_2_with_their_requests_id_and_every_miss_is_counted() {
        let dir = std::env::temp_dir().join(format!("mirror-rec-resp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.gor");
        let stream = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
DELETE /b HTTP/1.1\r\nHost: h\r\n\r\n\
GET /c HTTP/1.1\r\nHost: h\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\n\r\n\
GET /e HTTP/1.1\r\nHost: h\r\n\r\n";
        let requests = frame(stream);
        let flow = requests[0].flow;
        let completes: Vec<u64> = requests.iter().map(|r| r.complete_ns).collect();
        let mut route = RouteConfig::default();
        route.rules.methods = vec!["GET".into()];
        let (mut recorder, recording) = record(&path, route, 1_000).unwrap();
        let mut responses = recorder.responses();
        for r in requests {
            recorder.on_request(r);
        }
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        responses.on_response(&flow, response(Some(ok), completes[0] + 500));
        // The filtered DELETE's response: not written, nothing to count.
        responses.on_response(&flow, response(Some(b"HTTP/1.1 405 No\r\n\r\n"), 0));
        responses.on_response(&flow, response(None, 0));
        responses.on_lost(&flow, ResponseLoss::BodyGap);
        responses.end_all();
        drop((recorder, responses));
        let counts = recording.finish().unwrap();
        assert!(counts.balances(), "{counts}");
        assert_eq!((counts.written, counts.responses_written), (4, 1));
        assert_eq!(
            counts.responses_line(),
            "responses_written=1 responses_dropped=3 (no_response=2 too_large=1)"
        );
        let read: Vec<_> = PayloadReader::open(&path, 1 << 20)
            .unwrap()
            .map(|i| i.unwrap().unwrap())
            .collect();
        let kinds: Vec<_> = read.iter().map(|p| p.meta.kind).collect();
        use PayloadKind::{Request as Q, Response as A};
        assert_eq!(kinds, [Q, Q, Q, Q, A]);
        let answer = &read[4];
        assert_eq!(answer.meta.id, read[0].meta.id, "the response of GET /a");
        assert_eq!(answer.data, ok);
        assert_eq!(answer.meta.latency_ns, 500);
        assert_eq!(
            answer.meta.timestamp_ns,
            (completes[0] + 500) as i64 + 1_000
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
