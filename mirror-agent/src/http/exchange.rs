//! Requests and v1's responses paired into exchanges: the protocol's job,
//! since only the protocol knows which response answers which request.
//!
//! HTTP/1.x answers the requests of a connection in the order they came
//! ([`InOrder`]); HTTP/2 will pair by stream id in its own module, behind
//! the same two stage traits. The stage after request framing
//! ([`RequestStage`]) takes each request and returns an opaque token for
//! its exchange (the comparison's tag, a recording's payload id, `()`);
//! the request side keeps it with what the request changes in its
//! response's framing ([`Answers`]: `HEAD`, `CONNECT`), and the response
//! side hands each of v1's responses, with the token of the request it
//! answers, to the [`AnswerStage`]. A request whose response will not come
//! (or can no longer be told apart) is handed back as unanswered, with why.
//!
//! The two sides are two flow tables' consumers on the same capture task:
//! they share the queues behind a lock that is never contended.

use std::sync::{Arc, Mutex, MutexGuard};

use super::h1::in_order::InOrder;
use super::request::{Request, RequestSink};
use super::response::{Answers, CapturedResponse, ResponseLoss, ResponseSink, Unanswered};
use crate::capture::{FlowId, FlowKey};

/// Connections whose exchanges are tracked at once; beyond it the oldest
/// go (their requests are unanswered, `Unpaired`).
pub const MAX_CONNECTIONS: usize = 65_536;

/// The stage after request framing: takes each complete request (in stream
/// order per connection) and names its exchange.
///
/// Called on the capture task: an implementation must not block.
pub trait RequestStage {
    /// What v1's response to the request is handed back with (`()` when
    /// nothing waits for it).
    type Exchange: Send + 'static;

    fn on_request(&mut self, request: Request) -> Self::Exchange;
}

/// Where v1's responses go, each with the exchange of the request it
/// answers.
pub trait AnswerStage<X>: Send {
    /// v1's final response to the request of `exchange`.
    fn answered(&mut self, exchange: X, response: CapturedResponse);

    /// The request of `exchange` gets no response: `why`.
    fn unanswered(&mut self, exchange: X, why: Unanswered);
}

/// The queues and the stage that waits for the answers, shared by the two
/// sides.
struct Pairs<X, A> {
    order: InOrder<X>,
    stage: A,
}

/// The request side's view of [`Pairs`] (the answer stage's type hidden).
trait Order<X>: Send {
    fn push(&mut self, key: FlowKey, exchange: X, answers: Answers);
    fn break_connection(&mut self, key: FlowKey);
}

impl<X: Send, A: AnswerStage<X>> Order<X> for Pairs<X, A> {
    fn push(&mut self, key: FlowKey, exchange: X, answers: Answers) {
        let stage = &mut self.stage;
        self.order
            .push(key, exchange, answers, |x, why| stage.unanswered(x, why));
    }

    fn break_connection(&mut self, key: FlowKey) {
        let stage = &mut self.stage;
        self.order
            .break_connection(key, |x, why| stage.unanswered(x, why));
    }
}

fn lock<T: ?Sized>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The request framing's sink: hands each request to the next stage and,
/// when v1's responses are paired, queues its exchange on its connection.
pub struct Requests<S: RequestStage> {
    stage: S,
    pairs: Option<Arc<Mutex<dyn Order<S::Exchange>>>>,
}

impl<S: RequestStage> Requests<S> {
    /// No response is awaited: the exchanges are dropped.
    pub fn unpaired(stage: S) -> Self {
        Self { stage, pairs: None }
    }

    pub fn stage(&self) -> &S {
        &self.stage
    }

    pub fn stage_mut(&mut self) -> &mut S {
        &mut self.stage
    }
}

/// The two sides of the pairing: the request framing's sink (around
/// `stage`) and the response framing's (around `answers`).
pub fn paired<S, A>(stage: S, answers: A) -> (Requests<S>, Responses<S::Exchange, A>)
where
    S: RequestStage,
    A: AnswerStage<S::Exchange> + 'static,
{
    let pairs = Arc::new(Mutex::new(Pairs {
        order: InOrder::new(MAX_CONNECTIONS),
        stage: answers,
    }));
    let requests = Requests {
        stage,
        pairs: Some(pairs.clone() as Arc<Mutex<dyn Order<S::Exchange>>>),
    };
    (requests, Responses { pairs })
}

impl<S: RequestStage> RequestSink for Requests<S> {
    fn on_request(&mut self, request: Request) {
        let key = request.flow.key;
        let answers = Answers::to(&request);
        let exchange = self.stage.on_request(request);
        if let Some(pairs) = &self.pairs {
            lock(pairs).push(key, exchange, answers);
        }
    }

    fn on_requests_lost(&mut self, flow: &FlowId) {
        if let Some(pairs) = &self.pairs {
            lock(pairs).break_connection(flow.key);
        }
    }
}

/// The response framing's sink: v1's responses handed to the exchanges
/// they answer.
pub struct Responses<X, A> {
    pairs: Arc<Mutex<Pairs<X, A>>>,
}

impl<X, A: AnswerStage<X>> Responses<X, A> {
    /// Every connection ends (the end of a file, shutdown): what still
    /// waits gets no response.
    pub fn end_all(&mut self) {
        let mut pairs = lock(&self.pairs);
        let Pairs { order, stage } = &mut *pairs;
        order.end_all(|x, why| stage.unanswered(x, why));
    }

    /// The answer stage, e.g. for its counts.
    pub fn with_stage<T>(&self, f: impl FnOnce(&mut A) -> T) -> T {
        f(&mut lock(&self.pairs).stage)
    }
}

impl<X, A: AnswerStage<X>> ResponseSink for Responses<X, A> {
    fn next_request(&mut self, flow: &FlowId) -> Option<Answers> {
        lock(&self.pairs).order.peek(&flow.key)
    }

    fn on_response(&mut self, flow: &FlowId, response: CapturedResponse) {
        let mut pairs = lock(&self.pairs);
        let Pairs { order, stage } = &mut *pairs;
        if let Some(exchange) = order.pop(flow.key, |x, why| stage.unanswered(x, why)) {
            stage.answered(exchange, response);
        }
    }

    fn on_lost(&mut self, flow: &FlowId, reason: ResponseLoss) {
        let mut pairs = lock(&self.pairs);
        let Pairs { order, stage } = &mut *pairs;
        let unanswered = |x, why| stage.unanswered(x, why);
        if reason.ends_stream() {
            order.break_connection(flow.key, unanswered);
        } else {
            // One response, its body partly lost: its request is not
            // answered, the next ones are.
            order.lose_one(flow.key, unanswered);
        }
    }

    fn on_end(&mut self, flow: &FlowId) {
        let mut pairs = lock(&self.pairs);
        let Pairs { order, stage } = &mut *pairs;
        order.end(&flow.key, |x, why| stage.unanswered(x, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testing::frame_one;
    use crate::http::{Answer, Body};

    /// Numbers the requests; records what each exchange got.
    #[derive(Default)]
    struct Numbered(u32);

    impl RequestStage for Numbered {
        type Exchange = u32;
        fn on_request(&mut self, _: Request) -> u32 {
            self.0 += 1;
            self.0
        }
    }

    #[derive(Default)]
    struct Got(Vec<(u32, Result<u16, Unanswered>)>);

    impl AnswerStage<u32> for Got {
        fn answered(&mut self, exchange: u32, response: CapturedResponse) {
            self.0.push((exchange, Ok(response.answer.status)));
        }
        fn unanswered(&mut self, exchange: u32, why: Unanswered) {
            self.0.push((exchange, Err(why)));
        }
    }

    fn response(status: u16) -> CapturedResponse {
        CapturedResponse {
            answer: Answer {
                status,
                headers: Vec::new(),
                body: Body::default(),
            },
            first_byte_ns: 0,
            complete_ns: 0,
            raw: None,
        }
    }

    #[test]
    fn each_response_goes_to_the_exchange_its_request_opened_and_a_head_is_told() {
        let (mut requests, mut responses) = paired(Numbered::default(), Got::default());
        let get = frame_one(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = frame_one(b"HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n");
        let flow = get.flow;
        requests.on_request(get.clone());
        requests.on_request(head);
        assert_eq!(responses.next_request(&flow), Some(Answers::default()));
        responses.on_response(&flow, response(200));
        assert_eq!(
            responses.next_request(&flow),
            Some(Answers {
                head: true,
                connect: false
            })
        );
        responses.on_lost(&flow, ResponseLoss::BodyGap);
        // A request lost on the request side: the order is gone.
        requests.on_request(get.clone());
        requests.on_requests_lost(&flow);
        requests.on_request(get);
        responses.end_all();
        let got = responses.with_stage(|got| std::mem::take(&mut got.0));
        assert_eq!(
            got,
            [
                (1, Ok(200)),
                (2, Err(Unanswered::NoResponse)),
                (3, Err(Unanswered::Unpaired)),
                (4, Err(Unanswered::Unpaired)),
            ]
        );
    }
}
