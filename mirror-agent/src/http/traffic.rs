//! Both directions of the captured connections framed: client → server
//! into requests ([`Framing`]), and, when v1's answers are wanted, server
//! → client into responses ([`ResponseFraming`]), each direction with a
//! flow table of its own (the same reassembly). Every source of packets
//! feeds one: the live capture, a packet capture file.

use super::h1::framing::{Framing, ResponseFraming};
use super::request::{HttpConfig, HttpStats, RequestSink};
use super::response::{Answers, CapturedResponse, ResponseLoss, ResponseSink};
use crate::capture::{Direction, Event, EventSink, FlowId, PayloadFilter};
use crate::flow::{FlowConfig, FlowStats, FlowTable};

/// The response sink of traffic whose responses are not framed.
pub struct NoResponses;

impl ResponseSink for NoResponses {
    fn next_request(&mut self, _: &FlowId) -> Option<Answers> {
        None
    }
    fn on_response(&mut self, _: &FlowId, _: CapturedResponse) {}
    fn on_lost(&mut self, _: &FlowId, _: ResponseLoss) {}
}

/// The connections of a capture, framed (see the module documentation).
pub struct Traffic<S: RequestSink, R: ResponseSink = NoResponses> {
    requests: FlowTable<Framing<S>>,
    responses: Option<FlowTable<ResponseFraming<R>>>,
}

impl<S: RequestSink> Traffic<S> {
    /// Requests only.
    pub fn new(flow: FlowConfig, http: HttpConfig, sink: S) -> Self {
        Self {
            requests: FlowTable::new(flow, Framing::new(http, sink)),
            responses: None,
        }
    }
}

impl<S: RequestSink, R: ResponseSink> Traffic<S, R> {
    /// Requests, and v1's responses framed into `responses` when it is
    /// `Some` (the capture attached at egress too).
    pub fn both(
        flow: FlowConfig,
        http: HttpConfig,
        sink: S,
        responses: Option<ResponseFraming<R>>,
    ) -> Self {
        Self {
            requests: FlowTable::new(flow.clone(), Framing::new(http, sink)),
            responses: responses.map(|framing| FlowTable::new(flow, framing)),
        }
    }

    /// Payloads the capture's filter let through only in part are
    /// reassembled with its help (see [`PayloadFilter`]).
    pub fn with_filter(mut self, filter: Box<dyn PayloadFilter>) -> Self {
        self.requests = self.requests.with_filter(filter);
        self
    }

    pub fn request_sink_mut(&mut self) -> &mut S {
        self.requests.consumer_mut().sink_mut()
    }

    /// The response side's sink, if responses are framed.
    pub fn response_sink_mut(&mut self) -> Option<&mut R> {
        self.responses.as_mut().map(|t| t.consumer_mut().sink_mut())
    }

    /// Ends every connection (shutdown, the end of a file): requests in
    /// progress are counted, not lost silently.
    pub fn end_all(&mut self) {
        self.requests.end_all();
        if let Some(responses) = &mut self.responses {
            responses.end_all();
        }
    }

    /// The reassembly's counters (the requests' direction).
    pub fn flow_stats(&self) -> FlowStats {
        self.requests.stats()
    }

    /// The request framing's counters.
    pub fn http_stats(&self) -> HttpStats {
        *self.requests.consumer().stats()
    }
}

impl<S: RequestSink, R: ResponseSink> EventSink for Traffic<S, R> {
    fn on_event(&mut self, event: &Event<'_>) {
        match event.direction {
            Direction::ToServer => self.requests.on_event(event),
            Direction::ToClient => {
                if let Some(responses) = &mut self.responses {
                    responses.on_event(event);
                }
            }
        }
    }

    fn on_batch_end(&mut self, now_ns: u64) {
        self.requests.on_batch_end(now_ns);
        if let Some(responses) = &mut self.responses {
            responses.on_batch_end(now_ns);
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let responses = self.responses.as_ref().and_then(|r| r.next_deadline());
        match (self.requests.next_deadline(), responses) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
