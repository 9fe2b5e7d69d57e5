//! Requests and v1's responses paired up, per connection, in order — on the
//! capture task.
//!
//! HTTP/1.x answers the requests of a connection in the order they came
//! (pipelining included), so the n-th final response answers the n-th
//! request. [`Comparing`] (the request side, wrapping the dispatcher)
//! opens an exchange per request and queues it on its connection;
//! [`V1Responses`] (the response framing's sink) takes them off in order.
//! Once a request of a connection is lost (a gap, a skipped request, a join
//! in the middle) or a response cannot be framed, the order is no longer
//! known: every exchange of that connection from then on is `unpaired`,
//! never paired with the wrong response.

use std::sync::{Arc, Mutex, MutexGuard};

use super::engine::Engine;
use super::exchange::{RequestMeta, V1Response, cut_target};
use super::verdict::NotCompared;
use crate::capture::FlowId;
use crate::http::{
    Answers, CapturedResponse, InOrder, Request, RequestSink, ResponseLoss, ResponseSink,
    Unanswered,
};
use crate::shadow::{AnswerSink, Dispatcher, Outcome, Target};

/// Connections whose pairing is tracked at once; beyond it the oldest
/// entries go (their exchanges count as `unpaired`).
const MAX_CONNECTIONS: usize = 65_536;

/// The per-connection queues, shared by the two sides (both on the capture
/// task: the lock is never contended). Each request leaves its exchange
/// (`None`: not compared).
pub type Pairing = InOrder<Option<u64>>;

type Shared = Arc<Mutex<Pairing>>;

fn lock(pairing: &Shared) -> MutexGuard<'_, Pairing> {
    pairing.lock().unwrap_or_else(|e| e.into_inner())
}

/// New shared queues for [`Comparing`] and [`V1Responses`].
pub fn shared_pairing() -> Shared {
    Arc::new(Mutex::new(InOrder::new(MAX_CONNECTIONS)))
}

/// Gives up an exchange whose request gets no response of v1.
fn unanswered(engine: &Engine) -> impl FnMut(Option<u64>, Unanswered) + '_ {
    move |tag, why| {
        if let Some(tag) = tag {
            let reason = match why {
                Unanswered::Unpaired => NotCompared::Unpaired,
                Unanswered::NoResponse => NotCompared::NoV1Response,
            };
            engine.v1(tag, Err(reason));
        }
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
    pairing: Shared,
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

    pub fn new(dispatcher: Dispatcher, engine: Engine, pairing: Shared) -> Self {
        Self {
            dispatcher,
            parts: Some(Parts {
                sink: engine.answer_sink(),
                engine,
                pairing,
                sent_to: Vec::new(),
            }),
        }
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        self.dispatcher.targets()
    }

    /// Dispatches `request` (see [`Dispatcher::dispatch`]), compared if
    /// the comparison is on and some target keeps its answers; v1's
    /// response comes from the capture, paired on the request's connection.
    pub fn dispatch(&mut self, request: &Request) -> &[Outcome] {
        let tag = self.send(request);
        if let Some(parts) = &self.parts {
            let answers = Answers::to(request);
            lock(&parts.pairing).push(request.flow.key, tag, answers, unanswered(&parts.engine));
        }
        self.dispatcher.outcomes()
    }

    /// Dispatches `request` and opens its exchange if it is compared: the
    /// tag v1's response is to be given to ([`Engine::v1`]). For a replay,
    /// whose v1 responses come from the file.
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

impl RequestSink for Comparing {
    fn on_request(&mut self, request: Request) {
        self.dispatch(&request);
    }

    fn on_requests_lost(&mut self, flow: &FlowId) {
        if let Some(parts) = &self.parts {
            lock(&parts.pairing).break_connection(flow.key, unanswered(&parts.engine));
        }
    }
}

/// The response side: v1's responses, framed from the capture, handed to
/// the exchange they answer.
pub struct V1Responses {
    engine: Engine,
    pairing: Shared,
}

impl V1Responses {
    pub fn new(engine: Engine, pairing: Shared) -> Self {
        Self { engine, pairing }
    }
}

impl ResponseSink for V1Responses {
    fn next_request(&mut self, flow: &FlowId) -> Option<Answers> {
        lock(&self.pairing).peek(&flow.key)
    }

    fn on_response(&mut self, flow: &FlowId, response: CapturedResponse) {
        let tag = lock(&self.pairing).pop(flow.key, unanswered(&self.engine));
        if let Some(Some(tag)) = tag {
            self.engine.v1(
                tag,
                Ok(V1Response {
                    answer: response.answer,
                    first_byte_ns: response.first_byte_ns,
                }),
            );
        }
    }

    fn on_lost(&mut self, flow: &FlowId, reason: ResponseLoss) {
        let mut pairing = lock(&self.pairing);
        if reason.ends_stream() {
            pairing.break_connection(flow.key, unanswered(&self.engine));
        } else {
            // One response, its body partly lost: its request is not
            // compared, the next ones are.
            pairing.lose_one(flow.key, unanswered(&self.engine));
        }
    }

    fn on_end(&mut self, flow: &FlowId) {
        lock(&self.pairing).end(&flow.key, unanswered(&self.engine));
    }
}
