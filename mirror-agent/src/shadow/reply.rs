//! A compared request's way back: the target's answer (or why there is
//! none) goes to an [`AnswerSink`], exactly once per queued copy.
//!
//! The comparison comes after this stage, so it hands the sink in rather
//! than being called by name. A [`Reply`] that is dropped unsent — a queue
//! emptied at shutdown, a worker aborted — still reports, as `shutdown`:
//! the comparison never waits for an answer that cannot come.

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

/// Receives the targets' answers to compared requests; called from the
/// targets' workers (and from the dispatcher when a copy is dropped before
/// it is queued). Must not block.
pub trait AnswerSink: Send + Sync {
    fn answered(&self, tag: u64, target: &str, result: Result<Answered, DropReason>);
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

    pub fn send(mut self, result: Result<Answered, DropReason>) {
        self.sent = true;
        self.sink.answered(self.tag, &self.target, result);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.sink
                .answered(self.tag, &self.target, Err(DropReason::Shutdown));
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reply({} to {})", self.tag, self.target)
    }
}
