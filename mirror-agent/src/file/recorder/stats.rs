//! The recording's accounting: every captured request ends in exactly one
//! counter (`captured = written + filtered + dropped + queued`), and every
//! written request's response is written or dropped with a reason. Shared
//! by the capture task, which counts what it routes and queues, and the
//! writer thread, which counts what reached the file.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::route::FilterReason;

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
    pub(super) fn drop_one(&self, reason: RecordDrop) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    pub(super) fn drop_response(&self, reason: ResponseDrop) {
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
