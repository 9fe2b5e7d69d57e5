//! The comparison's two entrances on the capture task: [`Exchanges`]
//! opens an exchange for each compared request before the shadows send it
//! and learns where it went, and [`V1Responses`] takes v1's answer (or why
//! there is none) for it. Which response answers which request is the
//! protocol's business ([`crate::http::paired`]): here an exchange is only
//! a tag, answered or given up (`unpaired`, `no_v1_response`).

use std::sync::Arc;

use bytes::Bytes;

use super::engine::Engine;
use super::exchange::{RequestMeta, V1Response, cut_target};
use super::verdict::NotCompared;
use crate::http::{AnswerStage, CapturedResponse, Request, Unanswered};
use crate::route::Verdict;
use crate::shadow::{AnswerSink, Outcome, Target};

/// Why an exchange is not compared, from why its request got no response.
pub(super) fn not_compared(why: Unanswered) -> NotCompared {
    match why {
        Unanswered::Unpaired => NotCompared::Unpaired,
        Unanswered::NoResponse => NotCompared::NoV1Response,
    }
}

/// The request side: opens an exchange for each compared request before it
/// is sent, and tells the engine which targets it went to.
pub struct Exchanges {
    engine: Engine,
    sink: Arc<dyn AnswerSink>,
    /// Scratch: the compared targets a request was sent to.
    sent_to: Vec<Arc<str>>,
    /// Scratch: per target, the head its copy goes out with where mirror
    /// rewrote it (see [`Exchanges::copies`]).
    heads: Vec<Option<Bytes>>,
}

impl Exchanges {
    pub fn new(engine: Engine) -> Self {
        Self {
            sink: engine.answer_sink(),
            engine,
            sent_to: Vec::new(),
            heads: Vec::new(),
        }
    }

    /// Opens the exchange of `request`: the tag v1's answer and the
    /// targets' answers are to be given to; `None` when too many wait. A
    /// streamed request's answers are waited for from its body's end.
    pub fn open(&self, request: &Request) -> Option<u64> {
        let meta = RequestMeta {
            method: String::from_utf8_lossy(request.method()).into_owned(),
            target: cut_target(request.target()),
            head: request.head.clone(),
            complete_ns: request.complete_ns,
        };
        let Some(body) = &request.stream else {
            return self.engine.open(meta);
        };
        let tag = self.engine.open_unarmed(meta)?;
        let engine = self.engine.clone();
        body.on_end(Box::new(move || engine.arm(tag)));
        Some(tag)
    }

    /// The copies of an opened exchange's request, as routing prepared
    /// them (one verdict per target, before they are dispatched): the
    /// heads that mirror rewrote are kept, so that a target echoing the
    /// rewrites back is not judged different. Only for compared requests;
    /// targets sharing a copy share its head.
    pub fn copies(&mut self, request: &Request, verdicts: &[Verdict]) {
        self.heads.clear();
        let mut last: Option<(&Arc<_>, Bytes)> = None;
        for verdict in verdicts {
            let head = match verdict {
                Verdict::Send(prepared) if prepared.head() != &request.head[..] => match &last {
                    Some((seen, head)) if Arc::ptr_eq(seen, prepared) => Some(head.clone()),
                    _ => {
                        let head = Bytes::copy_from_slice(prepared.head());
                        last = Some((prepared, head.clone()));
                        Some(head)
                    }
                },
                _ => None,
            };
            self.heads.push(head);
        }
    }

    /// Where the targets' answers go.
    pub fn answer_sink(&self) -> &Arc<dyn AnswerSink> {
        &self.sink
    }

    /// The request of exchange `tag` (`None`: not opened) was sent: the
    /// targets that keep their answers and did not filter it are waited
    /// for; without an exchange (`compared` but too many waiting) they
    /// count as overflowed.
    pub fn sent(
        &mut self,
        compared: bool,
        tag: Option<u64>,
        targets: &[Arc<Target>],
        outcomes: &[Outcome],
    ) {
        self.sent_to.clear();
        let mut sent_heads = Vec::new();
        for (index, (target, outcome)) in targets.iter().zip(outcomes).enumerate() {
            if target.keeps_answers() && !matches!(outcome, Outcome::Filtered(_)) {
                self.sent_to.push(target.name_arc());
                if let (Some(_), Some(Some(head))) = (tag, self.heads.get(index)) {
                    sent_heads.push((target.name_arc(), head.clone()));
                }
            }
        }
        self.heads.clear();
        match tag {
            Some(tag) => {
                self.engine
                    .expect(tag, std::mem::take(&mut self.sent_to), sent_heads);
            }
            None if compared && !self.sent_to.is_empty() => {
                self.engine.overflowed(&self.sent_to);
            }
            None => {}
        }
    }
}

/// v1's answers, framed from the capture and paired by the protocol,
/// handed to the exchanges they answer.
pub struct V1Responses {
    engine: Engine,
}

impl V1Responses {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

impl AnswerStage<Option<u64>> for V1Responses {
    fn answered(&mut self, tag: Option<u64>, response: CapturedResponse) {
        if let Some(tag) = tag {
            self.engine.v1(
                tag,
                Ok(V1Response {
                    answer: response.answer,
                    first_byte_ns: response.first_byte_ns,
                }),
            );
        }
    }

    fn unanswered(&mut self, tag: Option<u64>, why: Unanswered) {
        if let Some(tag) = tag {
            self.engine.v1(tag, Err(not_compared(why)));
        }
    }
}
