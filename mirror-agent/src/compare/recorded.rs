//! The comparison offline: v1's answers come from a recording (goreplay's
//! type 2 payloads, written by `record --responses` or by goreplay's
//! `--input-raw-track-response`), paired with the replayed request by the
//! payload id, or from a packet capture, paired by the protocol as live
//! and numbered by the source.
//!
//! A replay reads a file in order: a request's response follows it, often
//! with others in between. Each compared request waits here, by id, for
//! its response; one whose response never comes (not recorded, cut off,
//! beyond [`MAX_WAITING`]) is counted as `no_v1_response`, and so is a
//! recorded response that cannot be framed.

use std::collections::{HashMap, VecDeque};

use super::engine::Engine;
use super::exchange::V1Response;
use super::pairing::not_compared;
use super::verdict::NotCompared;
use crate::http::{Answer, Answers, Request, ResponseConfig, Unanswered, frame_whole};

/// Compared requests waiting for their recorded response at most; beyond
/// it the oldest give up.
pub const MAX_WAITING: usize = 65_536;

/// A replayed request waiting for v1's recorded answer.
struct Waiting {
    tag: u64,
    answers: Answers,
    /// When the replayed request was complete (monotonic ns): v1's
    /// recorded latency is laid from it.
    complete_ns: u64,
}

/// v1's answers from a recording, handed to the exchanges they answer.
pub struct RecordedAnswers {
    engine: Engine,
    config: ResponseConfig,
    waiting: HashMap<String, Waiting>,
    /// Ids in the order they came, for giving up the oldest.
    order: VecDeque<String>,
    /// Responses read, whether or not a request waited for them.
    pub responses: u64,
    /// Recorded responses that could not be framed.
    pub malformed: u64,
}

impl RecordedAnswers {
    pub fn new(engine: Engine, config: ResponseConfig) -> Self {
        Self {
            engine,
            config,
            waiting: HashMap::new(),
            order: VecDeque::new(),
            responses: 0,
            malformed: 0,
        }
    }

    /// `request`, recorded with `id`, was replayed as exchange `tag`.
    pub fn sent(&mut self, id: &str, tag: u64, request: &Request) {
        if self.order.len() >= MAX_WAITING {
            self.give_up_oldest();
        }
        let waiting = Waiting {
            tag,
            answers: Answers::to(request),
            complete_ns: request.complete_ns,
        };
        if let Some(replaced) = self.waiting.insert(id.to_owned(), waiting) {
            // The same id twice: the first one's answer cannot be told apart.
            self.engine.v1(replaced.tag, Err(NotCompared::Unpaired));
        }
        self.order.push_back(id.to_owned());
    }

    /// A replayed request (exchange `tag`) that has no id to find its
    /// recorded response by (a payload of several requests).
    pub fn unpaired(&self, tag: u64) {
        self.engine.v1(tag, Err(NotCompared::Unpaired));
    }

    fn give_up_oldest(&mut self) {
        while let Some(id) = self.order.pop_front() {
            if let Some(gone) = self.waiting.remove(&id) {
                self.engine.v1(gone.tag, Err(NotCompared::NoV1Response));
                return;
            }
        }
    }

    /// v1's response to the request recorded with `id`, `latency_ns` after
    /// it (as recorded; negative: unknown).
    pub fn answer(&mut self, id: &str, latency_ns: i64, data: &[u8]) {
        self.responses += 1;
        let Some(waiting) = self.waiting.remove(id) else {
            return;
        };
        let answer = frame_whole(data, waiting.answers, &self.config).map_err(|_| {
            self.malformed += 1;
            NotCompared::NoV1Response
        });
        self.give(waiting, latency_ns, answer);
    }

    /// v1's answer to the request captured with `id`, framed already (a
    /// packet capture's, paired with its request by the protocol), or why
    /// there is none; `latency_ns` after the request as captured.
    pub fn framed(&mut self, id: &str, latency_ns: i64, answer: Result<Answer, Unanswered>) {
        if answer.is_ok() {
            self.responses += 1;
        }
        if let Some(waiting) = self.waiting.remove(id) {
            self.give(waiting, latency_ns, answer.map_err(not_compared));
        }
    }

    /// v1's answer, laid `latency_ns` after the replayed request.
    fn give(&self, waiting: Waiting, latency_ns: i64, answer: Result<Answer, NotCompared>) {
        let v1 = answer.map(|answer| V1Response {
            answer,
            first_byte_ns: waiting.complete_ns + latency_ns.max(0) as u64,
        });
        self.engine.v1(waiting.tag, v1);
    }

    /// The end of a file: what still waits has no recorded answer.
    pub fn end(&mut self) {
        self.order.clear();
        for (_, gone) in self.waiting.drain() {
            self.engine.v1(gone.tag, Err(NotCompared::NoV1Response));
        }
    }
}
