//! Where a replay's requests come from: `.gor` files (each type 1 payload
//! framed by the same HTTP framer as live traffic) or a packet capture
//! (packets → the same [`Traffic`] as the live capture: reassembly,
//! framing, and with v1's answers asked for, the protocol's pairing of
//! each answer with its request, in memory). Both stream: one payload, or
//! what one packet completes, at a time.
//!
//! Every payload ends in one count of [`SourceStats`]: replayed (a
//! request), a response (types 2 and 3: not replayed), malformed (a
//! payload the reader could not parse, or one that is not exactly a
//! complete request), each malformed one logged with its position.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing::warn;

use super::gor::{PayloadKind, PayloadReader};
use super::packets::{PacketReader, Segments};
use super::recorder::ResponseDrop;
use crate::capture::{EventSink, FlowId, FlowKey};
use crate::flow::{Budget, FlowConfig, WriteEdges};
use crate::http::{
    Answer, AnswerStage, CapturedResponse, FramerCtx, HttpConfig, HttpStats, Request,
    RequestFramer, RequestStage, Requests, ResponseConfig, ResponseFraming, Responses, SkipReason,
    Traffic, Unanswered, paired,
};

/// A request to replay and when it was recorded.
#[derive(Debug)]
pub struct Recorded {
    pub request: Request,
    /// Unix nanoseconds (the file's clock), for the pacing.
    pub timestamp_ns: i64,
    /// The payload's id (a `.gor` payload holding one request), which its
    /// recorded response carries too.
    pub id: Option<String>,
}

/// v1's recorded response (a type 2 payload).
#[derive(Debug)]
pub struct RecordedResponse {
    /// The id of the request it answers.
    pub id: String,
    /// Nanoseconds from the request to the response, as recorded
    /// (negative: unknown).
    pub latency_ns: i64,
    pub data: Vec<u8>,
}

/// v1's answer to a request of a packet capture, paired with it by the
/// protocol, already framed (or why there is none).
#[derive(Debug)]
pub struct PairedAnswer {
    /// The [`Recorded::id`] of the request it answers.
    pub id: String,
    /// Nanoseconds from the request (complete) to the answer's first byte,
    /// as captured.
    pub latency_ns: i64,
    pub answer: Result<Answer, Unanswered>,
}

/// What a source gives, in file order.
// Requests are most items: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Item {
    Request(Recorded),
    /// Only from a `.gor` source asked for them ([`Source::with_responses`]).
    Response(RecordedResponse),
    /// Only from a packet capture asked for them ([`Source::pcap`]).
    Answer(PairedAnswer),
}

/// The exchange of a captured request: its number and when it was
/// complete.
type Exchange = (u64, u64);

/// The request stage of a packet capture: each request waits to be taken,
/// numbered so that its answer finds it.
#[derive(Default)]
pub struct Framed {
    pending: VecDeque<(u64, Request)>,
    next: u64,
}

impl RequestStage for Framed {
    type Exchange = Exchange;

    fn on_request(&mut self, request: Request) -> Exchange {
        self.next += 1;
        let exchange = (self.next, request.complete_ns);
        self.pending.push_back((self.next, request));
        exchange
    }
}

/// The answer stage of a packet capture: v1's answers wait to be taken.
#[derive(Default)]
pub struct Answered {
    pending: VecDeque<PairedAnswer>,
    /// Requests whose answer was paired with them.
    pub answered: u64,
    /// Requests that got none, by why.
    pub unpaired: u64,
    pub no_response: u64,
}

impl Answered {
    /// `responses_written=N responses_dropped=N (unpaired=N no_response=N)`:
    /// the keys of `record --responses`' line, for answers handed on in
    /// memory instead of written (zero reasons left out).
    pub fn counts_line(&self) -> String {
        let reasons: Vec<String> = [
            (ResponseDrop::Unpaired, self.unpaired),
            (ResponseDrop::NoResponse, self.no_response),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
        let mut line = format!(
            "responses_written={} responses_dropped={}",
            self.answered,
            self.unpaired + self.no_response
        );
        if !reasons.is_empty() {
            line += &format!(" ({})", reasons.join(" "));
        }
        line
    }
}

impl AnswerStage<Exchange> for Answered {
    fn answered(&mut self, (n, complete_ns): Exchange, response: CapturedResponse) {
        self.answered += 1;
        self.pending.push_back(PairedAnswer {
            id: n.to_string(),
            latency_ns: response.first_byte_ns.saturating_sub(complete_ns) as i64,
            answer: Ok(response.answer),
        });
    }

    fn unanswered(&mut self, (n, _): Exchange, why: Unanswered) {
        match why {
            Unanswered::Unpaired => self.unpaired += 1,
            Unanswered::NoResponse => self.no_response += 1,
        }
        self.pending.push_back(PairedAnswer {
            id: n.to_string(),
            latency_ns: -1,
            answer: Err(why),
        });
    }
}

/// A packet capture's connections, framed (and paired).
type PcapTraffic = Traffic<Requests<Framed>, Responses<Exchange, Answered>>;

/// What a source read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Payloads (gor) or packets (pcap) read.
    pub read: u64,
    /// Requests handed on.
    pub requests: u64,
    /// Response payloads (types 2 and 3), not replayed (type 2: v1's
    /// answers, for an offline comparison).
    pub responses: u64,
    /// Payloads that could not be parsed or framed.
    pub malformed: u64,
}

/// One file's requests, one at a time.
pub enum Source {
    Gor {
        path: PathBuf,
        reader: PayloadReader<Box<dyn Read + Send>>,
        http: HttpConfig,
        pending: VecDeque<Recorded>,
        stats: SourceStats,
        /// Type 2 payloads are handed on too.
        responses: bool,
    },
    Pcap {
        path: PathBuf,
        reader: PacketReader<BufReader<File>>,
        segments: Segments,
        /// Boxed: the tables are much larger than a file reader.
        traffic: Box<PcapTraffic>,
        ended: bool,
        stats: SourceStats,
    },
}

/// The flow every request of a `.gor` file seems to come from (the format
/// keeps no addresses).
fn file_flow(generation: u64) -> FlowId {
    FlowId {
        key: FlowKey {
            client: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            server: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        },
        generation,
    }
}

/// Frames one payload: the requests in it, or why there is none.
pub fn frame_payload(
    data: &[u8],
    http: &HttpConfig,
    generation: u64,
) -> Result<Vec<Request>, String> {
    let mut stats = HttpStats::default();
    let mut budget = Budget::new(usize::MAX);
    let mut requests = Vec::new();
    let mut framer = RequestFramer::new(file_flow(generation));
    let mut cx = FramerCtx {
        config: http,
        stats: &mut stats,
        budget: &mut budget,
        sink: &mut requests,
    };
    framer.feed(data, WriteEdges::WHOLE, 0, &mut cx);
    framer.finish(SkipReason::Incomplete, &mut cx);
    if let Some((reason, _)) = stats.dropped.iter().find(|(_, n)| *n > 0) {
        return Err(format!("not a complete HTTP request ({reason})"));
    }
    if requests.is_empty() {
        return Err("no HTTP request in it".into());
    }
    Ok(requests)
}

impl Source {
    pub fn gor(path: &Path, http: HttpConfig) -> anyhow::Result<Source> {
        // A payload holds one request: its head, its body and the chunked
        // framing around it.
        let max =
            http.max_head_bytes * 2 + usize::try_from(http.max_body_bytes).unwrap_or(usize::MAX);
        let reader = PayloadReader::open(path, max.saturating_add(64 * 1024))
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Source::Gor {
            path: path.to_owned(),
            reader,
            http,
            pending: VecDeque::new(),
            stats: SourceStats::default(),
            responses: false,
        })
    }

    /// Also hands on v1's recorded responses (type 2 payloads of a `.gor`
    /// file; a packet capture's are not read).
    pub fn with_responses(mut self) -> Self {
        if let Source::Gor { responses, .. } = &mut self {
            *responses = true;
        }
        self
    }

    /// The requests of a packet capture, and with `answers` v1's answers
    /// to them, framed with those limits.
    pub fn pcap(
        path: &Path,
        ports: Vec<u16>,
        flow: FlowConfig,
        http: HttpConfig,
        answers: Option<ResponseConfig>,
    ) -> anyhow::Result<Source> {
        let reader =
            PacketReader::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let responses = answers.is_some();
        let traffic = match answers {
            Some(limits) => {
                let (requests, responses) = paired(Framed::default(), Answered::default());
                let responses = ResponseFraming::new(limits, responses);
                Traffic::both(flow, http, requests, Some(responses))
            }
            None => Traffic::both(flow, http, Requests::unpaired(Framed::default()), None),
        };
        Ok(Source::Pcap {
            path: path.to_owned(),
            reader,
            segments: Segments::new(ports, responses),
            traffic: Box::new(traffic),
            ended: false,
            stats: SourceStats::default(),
        })
    }

    /// What became of the requests' answers of a packet capture read with
    /// them.
    pub fn answers<T>(&mut self, f: impl FnOnce(&Answered) -> T) -> Option<T> {
        match self {
            Source::Pcap { traffic, .. } => traffic
                .response_sink_mut()
                .map(|responses| responses.with_stage(|answered| f(answered))),
            Source::Gor { .. } => None,
        }
    }

    pub fn stats(&self) -> SourceStats {
        match self {
            Source::Gor { stats, .. } | Source::Pcap { stats, .. } => *stats,
        }
    }

    /// How far into its file the source has read, in bytes of the file
    /// (compressed for a `.gz`): a replay's progress.
    pub fn bytes_read(&self) -> u64 {
        match self {
            Source::Gor { reader, .. } => reader.file_bytes_read(),
            Source::Pcap { reader, .. } => reader.offset(),
        }
    }

    /// The framing counters of a packet capture (requests lost in
    /// reassembly or framing, by reason).
    pub fn http_stats(&self) -> Option<HttpStats> {
        match self {
            Source::Pcap { traffic, .. } => Some(traffic.http_stats()),
            Source::Gor { .. } => None,
        }
    }

    /// The next request; `None` at the end of the file.
    pub fn next_request(&mut self) -> anyhow::Result<Option<Recorded>> {
        loop {
            match self.next_item()? {
                Some(Item::Request(recorded)) => return Ok(Some(recorded)),
                Some(Item::Response(_) | Item::Answer(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next request or recorded response; `None` at the end of the
    /// file.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        match self {
            Source::Gor {
                path,
                reader,
                http,
                pending,
                stats,
                responses,
            } => loop {
                if let Some(next) = pending.pop_front() {
                    return Ok(Some(Item::Request(next)));
                }
                let Some(item) = reader
                    .next_item()
                    .with_context(|| format!("cannot read {}", path.display()))?
                else {
                    return Ok(None);
                };
                stats.read += 1;
                let payload = match item {
                    Ok(payload) => payload,
                    Err(bad) => {
                        stats.malformed += 1;
                        warn!("{}: {bad}", path.display());
                        continue;
                    }
                };
                if payload.meta.kind != PayloadKind::Request {
                    stats.responses += 1;
                    if *responses && payload.meta.kind == PayloadKind::Response {
                        return Ok(Some(Item::Response(RecordedResponse {
                            id: payload.meta.id,
                            latency_ns: payload.meta.latency_ns,
                            data: payload.data,
                        })));
                    }
                    continue;
                }
                match frame_payload(&payload.data, http, stats.read) {
                    Ok(requests) => {
                        stats.requests += requests.len() as u64;
                        // Several requests in one payload: which one the
                        // response answers is not known.
                        let id = (requests.len() == 1).then_some(payload.meta.id);
                        pending.extend(requests.into_iter().map(|request| Recorded {
                            request,
                            timestamp_ns: payload.meta.timestamp_ns,
                            id: id.clone(),
                        }));
                    }
                    Err(reason) => {
                        stats.malformed += 1;
                        warn!(
                            "{}: malformed payload at {} (id {}): {reason}",
                            path.display(),
                            payload.at,
                            payload.meta.id
                        );
                    }
                }
            },
            Source::Pcap {
                path,
                reader,
                segments,
                traffic,
                ended,
                stats,
            } => loop {
                // A request before the answers its packet completed: an
                // answer always comes after its request.
                let next = traffic.request_sink_mut().stage_mut().pending.pop_front();
                if let Some((n, request)) = next {
                    stats.requests += 1;
                    let paired = traffic.response_sink_mut().is_some();
                    return Ok(Some(Item::Request(Recorded {
                        timestamp_ns: request.first_byte_ns as i64,
                        request,
                        id: paired.then(|| n.to_string()),
                    })));
                }
                let answer = traffic
                    .response_sink_mut()
                    .and_then(|r| r.with_stage(|answered| answered.pending.pop_front()));
                if let Some(answer) = answer {
                    if answer.answer.is_ok() {
                        stats.responses += 1;
                    }
                    return Ok(Some(Item::Answer(answer)));
                }
                if *ended {
                    return Ok(None);
                }
                match reader
                    .next_packet()
                    .with_context(|| format!("cannot read {}", path.display()))?
                {
                    Some(packet) => {
                        stats.read += 1;
                        segments.emit(&packet, traffic.as_mut());
                        traffic.on_batch_end(packet.timestamp_ns);
                    }
                    None => {
                        // Connections still open at the end of the capture:
                        // their requests in progress are counted, and so
                        // are the answers still awaited.
                        traffic.end_all();
                        if let Some(responses) = traffic.response_sink_mut() {
                            responses.end_all();
                        }
                        *ended = true;
                        for note in segments.notes(reader) {
                            warn!("{}: {note}", path.display());
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_frames_to_its_request_and_a_cut_one_is_refused() {
        let http = HttpConfig::default();
        let ok = frame_payload(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            &http,
            1,
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(&ok[0].body[..], b"abc");
        let cut = frame_payload(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\nabc",
            &http,
            2,
        )
        .unwrap_err();
        assert!(cut.contains("incomplete"), "{cut}");
        let junk = frame_payload(b"\x16\x03\x01 hello", &http, 3).unwrap_err();
        assert!(junk.contains("not a complete HTTP request"), "{junk}");
        let empty = frame_payload(b"", &http, 4).unwrap_err();
        assert!(empty.contains("no HTTP request"), "{empty}");
    }
}
