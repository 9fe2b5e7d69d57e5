//! One compared request, as it waits for its answers: what the capture
//! said of the request, v1's response, and the answer (or why there is
//! none) of every target that was sent a copy. The engine collects it,
//! the judge reads it once complete.

use std::sync::Arc;

use bytes::Bytes;

use super::verdict::NotCompared;
use crate::http::Answer;
use crate::shadow::{AnswerFailure, Answered};

/// Longest request target kept for the diff log.
const MAX_PATH_CHARS: usize = 512;

/// v1's response to a compared request, as the capture framed it.
#[derive(Debug)]
pub struct V1Response {
    pub answer: Answer,
    /// Monotonic ns of the segment with its first byte.
    pub first_byte_ns: u64,
}

/// What the capture task tells about a compared request.
#[derive(Debug)]
pub struct RequestMeta {
    pub method: String,
    pub target: String,
    /// v1's request head as the client sent it (shared, not copied): what
    /// the heads the targets were sent are compared with, to recognise
    /// mirror's rewrites echoed back.
    pub head: Bytes,
    /// Monotonic ns of the segment that completed the request.
    pub complete_ns: u64,
}

/// Why a target's answer is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The target got the request and failed it: a verdict (`failed`).
    Failed(AnswerFailure),
    /// The target never got the request (dropped, refused before
    /// sending), or never told (the comparison's deadline), or the answer
    /// found no room: not compared, for this reason.
    NotCompared(NotCompared),
}

/// One compared request and what came back for it so far.
pub struct Exchange {
    pub meta: RequestMeta,
    pub v1: Option<Result<V1Response, NotCompared>>,
    /// `None` until the dispatch said which targets got a copy.
    pub expected: Option<Vec<Arc<str>>>,
    pub answers: Vec<(Arc<str>, Result<Answered, Missing>)>,
    /// The head each target was sent, where it differs from v1's request
    /// (mirror's rewrites: marker, forwarded-for, set headers, paths).
    pub sent_heads: Vec<(Arc<str>, Bytes)>,
    /// Bytes of answers (and sent heads) it holds (counted against the engine's bound).
    pub held: usize,
}

impl Exchange {
    pub fn new(meta: RequestMeta) -> Exchange {
        Exchange {
            meta,
            v1: None,
            expected: None,
            answers: Vec::new(),
            sent_heads: Vec::new(),
            held: 0,
        }
    }

    /// v1 answered (or will not), and so did every target sent a copy.
    pub fn complete(&self) -> bool {
        self.v1.is_some()
            && self
                .expected
                .as_ref()
                .is_some_and(|e| e.iter().all(|t| self.answers.iter().any(|(a, _)| a == t)))
    }
}

/// Keeps the request target readable in the diff log.
pub fn cut_target(target: &[u8]) -> String {
    let text = String::from_utf8_lossy(target);
    match text.char_indices().nth(MAX_PATH_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}
