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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::NotCompared;
use super::engine::{Engine, RequestMeta, V1Response, cut_target};
use crate::capture::{FlowId, FlowKey};
use crate::http::{Answers, CapturedResponse, Request, RequestSink, ResponseLoss, ResponseSink};
use crate::shadow::{AnswerSink, Dispatcher, Outcome, Target};

/// Connections whose pairing is tracked at once; beyond it the oldest
/// entries go (their exchanges count as `unpaired`).
const MAX_CONNECTIONS: usize = 65_536;

/// One request waiting for its response.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    /// The exchange, if the request is compared.
    tag: Option<u64>,
    answers: Answers,
}

#[derive(Default)]
struct Connection {
    waiting: VecDeque<Waiting>,
    /// The order was lost: nothing more is paired on this connection.
    broken: bool,
    /// Insertion order, for eviction.
    born: u64,
}

/// The per-connection queues, shared by the two sides (both on the capture
/// task: the lock is never contended).
#[derive(Default)]
pub struct Pairing {
    connections: HashMap<FlowKey, Connection>,
    born: u64,
    /// Responses that came with no request waiting.
    pub unpaired_responses: u64,
}

type Shared = Arc<Mutex<Pairing>>;

fn lock(pairing: &Shared) -> MutexGuard<'_, Pairing> {
    pairing.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pairing {
    pub fn shared() -> Arc<Mutex<Pairing>> {
        Arc::default()
    }

    fn connection(&mut self, key: FlowKey, engine: &Engine) -> &mut Connection {
        if !self.connections.contains_key(&key) && self.connections.len() >= MAX_CONNECTIONS {
            self.evict_oldest(engine);
        }
        self.born += 1;
        let born = self.born;
        self.connections.entry(key).or_insert_with(|| Connection {
            born,
            ..Connection::default()
        })
    }

    fn evict_oldest(&mut self, engine: &Engine) {
        let Some(oldest) = self
            .connections
            .iter()
            .min_by_key(|(_, c)| c.born)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(connection) = self.connections.remove(&oldest) {
            fail(connection.waiting, engine, NotCompared::Unpaired);
        }
    }

    /// The connection's order is lost: what waits, and what comes, is
    /// unpaired.
    fn break_connection(&mut self, key: FlowKey, engine: &Engine) {
        let connection = self.connection(key, engine);
        connection.broken = true;
        let waiting = std::mem::take(&mut connection.waiting);
        fail(waiting, engine, NotCompared::Unpaired);
    }
}

fn fail(waiting: VecDeque<Waiting>, engine: &Engine, reason: NotCompared) {
    for tag in waiting.into_iter().filter_map(|w| w.tag) {
        engine.v1(tag, Err(reason));
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
    /// the comparison is on and some target keeps its answers.
    pub fn dispatch(&mut self, request: &Request) -> &[Outcome] {
        let Some(parts) = &mut self.parts else {
            return self.dispatcher.dispatch(request);
        };
        let answers = Answers {
            head: request.method() == b"HEAD",
            connect: request.method() == b"CONNECT",
        };
        let key = request.flow.key;
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
        let mut pairing = lock(&parts.pairing);
        let connection = pairing.connection(key, &parts.engine);
        if connection.broken {
            drop(pairing);
            if let Some(tag) = tag {
                parts.engine.v1(tag, Err(NotCompared::Unpaired));
            }
        } else {
            connection.waiting.push_back(Waiting { tag, answers });
        }
        self.dispatcher.outcomes()
    }
}

impl RequestSink for Comparing {
    fn on_request(&mut self, request: Request) {
        self.dispatch(&request);
    }

    fn on_requests_lost(&mut self, flow: &FlowId) {
        if let Some(parts) = &self.parts {
            lock(&parts.pairing).break_connection(flow.key, &parts.engine);
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
        let pairing = lock(&self.pairing);
        let connection = pairing.connections.get(&flow.key)?;
        connection.waiting.front().map(|w| w.answers)
    }

    fn on_response(&mut self, flow: &FlowId, response: CapturedResponse) {
        let mut pairing = lock(&self.pairing);
        let engine = self.engine.clone();
        let connection = pairing.connection(flow.key, &engine);
        if connection.broken {
            return;
        }
        match connection.waiting.pop_front() {
            Some(Waiting { tag: Some(tag), .. }) => {
                drop(pairing);
                engine.v1(
                    tag,
                    Ok(V1Response {
                        answer: response.answer,
                        first_byte_ns: response.first_byte_ns,
                    }),
                );
            }
            Some(Waiting { tag: None, .. }) => {}
            None => {
                // A response to a request never seen (lost, or still held
                // by the request side's reassembly): the order is unknown.
                pairing.unpaired_responses += 1;
                pairing.break_connection(flow.key, &engine);
            }
        }
    }

    fn on_lost(&mut self, flow: &FlowId, reason: ResponseLoss) {
        let mut pairing = lock(&self.pairing);
        if reason.ends_stream() {
            pairing.break_connection(flow.key, &self.engine);
            return;
        }
        // One response, its body partly lost: its request is not compared,
        // the next ones are.
        let engine = self.engine.clone();
        let connection = pairing.connection(flow.key, &engine);
        if connection.broken {
            return;
        }
        match connection.waiting.pop_front() {
            Some(Waiting { tag: Some(tag), .. }) => {
                drop(pairing);
                engine.v1(tag, Err(NotCompared::NoV1Response));
            }
            Some(_) => {}
            None => pairing.break_connection(flow.key, &engine),
        }
    }

    fn on_end(&mut self, flow: &FlowId) {
        let mut pairing = lock(&self.pairing);
        if let Some(connection) = pairing.connections.remove(&flow.key) {
            fail(connection.waiting, &self.engine, NotCompared::NoV1Response);
        }
    }
}
