//! The comparison's two entrances on the capture task: [`Comparing`]
//! (around the dispatcher) opens an exchange for each compared request
//! before it is sent, and [`V1Responses`] takes v1's answer (or why there
//! is none) for it. Which response answers which request is the
//! protocol's business ([`crate::http::paired`]): here an exchange is only
//! a tag, answered or given up (`unpaired`, `no_v1_response`).

use std::sync::Arc;

use super::NotCompared;
use super::engine::{Engine, RequestMeta, V1Response, cut_target};
use crate::http::{AnswerStage, CapturedResponse, Request, RequestStage, Unanswered};
use crate::shadow::{AnswerSink, Dispatcher, Outcome, Target};

/// Why an exchange is not compared, from why its request got no response.
fn not_compared(why: Unanswered) -> NotCompared {
    match why {
        Unanswered::Unpaired => NotCompared::Unpaired,
        Unanswered::NoResponse => NotCompared::NoV1Response,
    }
}

/// The request side, around the dispatcher: with the comparison on,
/// every request is queued on its connection, and the compared ones get an
/// exchange before they are dispatched. Off, it is the dispatcher alone.
pub struct Comparing {
    dispatcher: Dispatcher,
    parts: Option<Parts>,
}

struct Parts {
    engine: Engine,
    sink: Arc<dyn AnswerSink>,
    /// Scratch: the compared targets a request was sent to.
    sent_to: Vec<Arc<str>>,
}

impl Comparing {
    /// No comparison.
    pub fn off(dispatcher: Dispatcher) -> Self {
        Self {
            dispatcher,
            parts: None,
        }
    }

    pub fn new(dispatcher: Dispatcher, engine: Engine) -> Self {
        Self {
            dispatcher,
            parts: Some(Parts {
                sink: engine.answer_sink(),
                engine,
                sent_to: Vec::new(),
            }),
        }
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        self.dispatcher.targets()
    }

    /// What the last dispatch did at each target.
    pub fn outcomes(&self) -> &[Outcome] {
        self.dispatcher.outcomes()
    }

    /// Dispatches `request` (see [`Dispatcher::dispatch`]) and opens its
    /// exchange if the comparison is on and some target keeps its answers:
    /// the tag v1's response is to be given to ([`Engine::v1`]).
    pub fn send(&mut self, request: &Request) -> Option<u64> {
        let Some(parts) = &mut self.parts else {
            self.dispatcher.dispatch(request);
            return None;
        };
        let compared = self.dispatcher.compares();
        let tag = if compared {
            parts.engine.open(RequestMeta {
                method: String::from_utf8_lossy(request.method()).into_owned(),
                target: cut_target(request.target()),
                complete_ns: request.complete_ns,
            })
        } else {
            None
        };
        self.dispatcher
            .dispatch_replying(request, tag.map(|t| (t, &parts.sink)));
        parts.sent_to.clear();
        let sent = self
            .dispatcher
            .targets()
            .iter()
            .zip(self.dispatcher.outcomes());
        for (target, outcome) in sent {
            if target.keeps_answers() && !matches!(outcome, Outcome::Filtered(_)) {
                parts.sent_to.push(target.name_arc());
            }
        }
        match tag {
            Some(tag) => parts.engine.expect(tag, std::mem::take(&mut parts.sent_to)),
            None if compared && !parts.sent_to.is_empty() => {
                parts.engine.overflowed(&parts.sent_to);
            }
            None => {}
        }
        tag
    }
}

/// The exchange of a request is its comparison's tag (`None`: not
/// compared); v1's response comes from the protocol's pairing.
impl RequestStage for Comparing {
    type Exchange = Option<u64>;

    fn on_request(&mut self, request: Request) -> Option<u64> {
        self.send(&request)
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
