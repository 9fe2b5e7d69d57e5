//! A compared request's way back: the target's answer (or why there is
//! none) goes to an [`AnswerSink`], exactly once per queued copy.
//!
//! The comparison comes after this stage, so it hands the sink in rather
//! than being called by name. A [`Reply`] that is dropped unsent — a queue
//! emptied at shutdown, a worker aborted — still reports, as `shutdown`:
//! the comparison never waits for an answer that cannot come.
//!
//! A copy without an answer says whether it reached the target
//! ([`NoAnswer`]): a target that got the request and did not answer it
//! properly has given its verdict (`failed`, invariant 9); one that never
//! got it has not.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::stats::DropReason;
use crate::http::Answer;

/// What a target answered, and how long it took (first byte written to
/// the response's end).
#[derive(Debug)]
pub struct Answered {
    pub answer: Answer,
    pub latency: Duration,
}

mirror_common::labelled! {
    /// How a target failed a request it was sent: the finer reason a
    /// `failed` verdict keeps (the shadow's counters keep theirs:
    /// `io_error`, `timeout`).
    pub enum AnswerFailure {
        /// Reset (ECONNRESET, ECONNABORTED) before the answer ended.
        Reset => "reset",
        /// Closed (EOF) before the answer began or ended: a crash after
        /// the headers, a server that closes instead of answering.
        Closed => "closed",
        /// No complete answer within the target's request timeout.
        Timeout => "timeout",
        /// Not an HTTP/1 answer, or one framed wrong (bad head, bad
        /// chunks, a status outside 100..=599).
        Malformed => "malformed",
        /// TLS failed on the connection after the request was written (an
        /// alert, a bad record).
        Tls => "tls",
    }
}

impl AnswerFailure {
    /// The failure an I/O error reading the answer stands for: the wire
    /// reader's `InvalidData` is a malformed answer, its `UnexpectedEof`
    /// (and rustls' own, a close without close_notify) a closed one;
    /// rustls' errors come as `InvalidData` holding a `rustls::Error`.
    pub fn of(error: &io::Error) -> AnswerFailure {
        use io::ErrorKind::*;
        let tls = error
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>());
        match error.kind() {
            _ if tls => AnswerFailure::Tls,
            InvalidData | InvalidInput => AnswerFailure::Malformed,
            UnexpectedEof | WriteZero => AnswerFailure::Closed,
            TimedOut | WouldBlock => AnswerFailure::Timeout,
            // Reset, aborted, broken pipe, and whatever else breaks a
            // connection under an answer.
            _ => AnswerFailure::Reset,
        }
    }
}

/// Why a copy has no answer: the shadow's counter (`reason`), and, when
/// the request had been written to the target, how the target failed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoAnswer {
    /// What the target's stats count it as (unchanged by `failure`).
    pub reason: DropReason,
    /// `Some`: the request was sent, and the target failed it this way
    /// (a verdict); `None`: it never reached the target (not compared).
    pub failure: Option<AnswerFailure>,
}

impl NoAnswer {
    /// The request was written, then the answer failed.
    pub fn after_sending(reason: DropReason, failure: AnswerFailure) -> Self {
        Self {
            reason,
            failure: Some(failure),
        }
    }
}

/// Dropped before the request reached the target.
impl From<DropReason> for NoAnswer {
    fn from(reason: DropReason) -> Self {
        Self {
            reason,
            failure: None,
        }
    }
}

/// Receives the targets' answers to compared requests; called from the
/// targets' workers (and from the dispatcher when a copy is dropped before
/// it is queued). Must not block.
pub trait AnswerSink: Send + Sync {
    fn answered(&self, tag: u64, target: &str, result: Result<Answered, NoAnswer>);
}

/// The promise to report one copy's fate to the sink.
pub struct Reply {
    tag: u64,
    target: Arc<str>,
    sink: Arc<dyn AnswerSink>,
    sent: bool,
}

impl Reply {
    pub fn new(tag: u64, target: Arc<str>, sink: Arc<dyn AnswerSink>) -> Self {
        Self {
            tag,
            target,
            sink,
            sent: false,
        }
    }

    /// Reports the answer, or why there is none (a bare [`DropReason`]:
    /// the copy never reached the target).
    pub fn send(mut self, result: Result<Answered, impl Into<NoAnswer>>) {
        self.sent = true;
        self.sink
            .answered(self.tag, &self.target, result.map_err(Into::into));
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.sink
                .answered(self.tag, &self.target, Err(DropReason::Shutdown.into()));
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reply({} to {})", self.tag, self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_reading_an_answer_says_how_the_target_failed() {
        use io::ErrorKind::*;
        let of = |kind: io::ErrorKind| AnswerFailure::of(&io::Error::from(kind));
        assert_eq!(of(ConnectionReset), AnswerFailure::Reset);
        assert_eq!(of(ConnectionAborted), AnswerFailure::Reset);
        assert_eq!(of(UnexpectedEof), AnswerFailure::Closed);
        assert_eq!(of(InvalidData), AnswerFailure::Malformed);
        assert_eq!(of(TimedOut), AnswerFailure::Timeout);
        // As tokio-rustls reports a TLS error: InvalidData over rustls'.
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac);
        let tls = io::Error::new(InvalidData, alert);
        assert_eq!(AnswerFailure::of(&tls), AnswerFailure::Tls);
    }
}
