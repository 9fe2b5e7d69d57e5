//! The writer thread of a recording and the bounded queue that feeds it:
//! the capture task never waits on the disk (a full queue drops, counted),
//! except when reading a file, where waiting delays nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::error;

use super::stats::{RecordDrop, RecordStats, ResponseDrop};
use crate::file::rotation::RotatingWriter;

/// Payloads waiting for the writer at most (beside [`MAX_QUEUED_BYTES`]).
pub const QUEUE_PAYLOADS: usize = 4096;
/// Bytes of payloads waiting for the writer at most; one larger payload is
/// still taken when the queue is empty.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// The writer pushes what it buffered to the file at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What the writer thread is handed: an encoded payload.
pub(super) struct Queued {
    pub(super) response: bool,
    pub(super) bytes: Vec<u8>,
}

/// The capture task's end of the queue to the writer, shared by the
/// request and the response sides.
#[derive(Clone)]
pub(super) struct Queue {
    pub(super) tx: SyncSender<Queued>,
    pub(super) queued_bytes: Arc<AtomicUsize>,
    pub(super) stats: Arc<RecordStats>,
    /// Wait for the writer instead of dropping ([`super::Recorder::wait_when_full`]).
    pub(super) waits: bool,
}

/// Why a payload did not go into the queue.
#[derive(Clone, Copy, Debug)]
pub(super) enum Refused {
    QueueFull,
    WriterGone,
}

impl Queue {
    /// Queues an encoded payload: dropped when the writer is behind, or
    /// once it has room when the queue waits.
    pub(super) fn offer(&self, response: bool, bytes: Vec<u8>) -> Result<(), Refused> {
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

/// Starts the writer thread on `writer`: the queue that feeds it (dropping
/// when full) and its handle, which returns once the queue is closed and
/// the file complete.
pub(super) fn start(
    mut writer: RotatingWriter,
    stats: &Arc<RecordStats>,
) -> std::io::Result<(Queue, JoinHandle<std::io::Result<()>>)> {
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::sync_channel(QUEUE_PAYLOADS);
    let thread = {
        let stats = Arc::clone(stats);
        let queued_bytes = Arc::clone(&queued_bytes);
        std::thread::Builder::new()
            .name("mirror-record".into())
            .spawn(move || {
                let _ended = Ended(Arc::clone(&queued_bytes));
                write_loop(&mut writer, &rx, &stats, &queued_bytes).and(writer.finish().map(drop))
            })?
    };
    let queue = Queue {
        tx,
        queued_bytes,
        stats: Arc::clone(stats),
        waits: false,
    };
    Ok((queue, thread))
}

/// Zeroes the queued bytes when the writer ends, however it ends, so that
/// a queue waiting for room finds the writer gone instead of waiting on.
pub(super) struct Ended(pub(super) Arc<AtomicUsize>);

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
