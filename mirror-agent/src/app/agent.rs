//! The agent's stages assembled from the configuration, in this one place;
//! live mirroring, `record` and `replay` take them from here and differ
//! only in their source and their sink.
//!
//! ```text
//! source ─▶ flow ─▶ http (requests; v1's responses paired) ─┬─▶ sink
//!   live capture  (Traffic, fed by the capture)            │   route → shadow → compare
//!   pcap file     (Traffic, fed by the file's packets)     │   (Mirroring: live, replay)
//!   .gor files    (one payload framed at a time)           │   or the recorder (record)
//! ```
//!
//! `--compare` is the one value [`Config::compares`] turned on here in each
//! stage: the capture's egress program, the response framing (with the
//! protocol's pairing) and the exchanges the comparison opens.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use anyhow::Context as _;

use super::Pipeline;
use crate::capture::{CaptureOptions, NoFilter, PayloadFilter};
use crate::compare::{DEFAULT_BODY_CAP, Engine, Exchanges, RecordedAnswers, V1Responses};
use crate::config::Config;
use crate::file::{self, OutputPlan, Source};
use crate::http::{
    HttpConfig, Request, RequestStage, Requests, ResponseConfig, ResponseFraming, Responses,
    StreamLimits, Traffic, paired,
};
use crate::route::{RouteConfig, Router, Verdict};
use crate::shadow::{Dispatcher, Shadows, Target};
use crate::telemetry::{
    self, BuildInfo, PipelineStats, ReloadStats, Sources, endpoint::Readiness,
    request_log::RequestLog,
};

/// Whether v1's answers are compared with the targets'.
fn compares(config: &Config) -> bool {
    config.live.compare.enabled()
}

/// The capture's options: v1's responses (egress) are captured only when
/// they are wanted (the comparison, a recording of them).
pub(super) fn capture_options(config: &Config, responses: bool) -> anyhow::Result<CaptureOptions> {
    let mut options = config.startup.capture.options()?;
    options.responses = responses;
    Ok(options)
}

/// The response framing's limits: the request side's head limits, and
/// either the largest body cap of the compared targets (`raw_cap` 0), or
/// for a recording the raw bytes up to `raw_cap` and no body besides.
pub(super) fn response_config(config: &Config, raw_cap: usize) -> ResponseConfig {
    let http = &config.startup.http;
    let body_cap = match raw_cap {
        0 => config
            .live
            .compare
            .targets
            .iter()
            .map(|t| t.body_cap)
            .max()
            .unwrap_or(DEFAULT_BODY_CAP),
        // The raw bytes are what is written; no body is kept besides.
        _ => 0,
    };
    ResponseConfig {
        max_head_bytes: http.max_head_bytes,
        max_headers: http.max_headers,
        body_cap,
        raw_cap,
    }
}

/// The capture's payload filter, if it has one.
pub(super) fn filter_of(filter: Option<crate::capture::KernelFilter>) -> Box<dyn PayloadFilter> {
    match filter {
        Some(filter) => Box::new(filter),
        None => Box::new(NoFilter),
    }
}

/// The mirroring side: route → shadow (→ compare), started from the
/// configuration; live mirroring and replays send through it.
pub(super) struct Mirroring {
    pub shadows: Shadows,
    /// The comparison, when `--compare` is on.
    pub engine: Option<Engine>,
}

/// The live chain: requests (and v1's answers, paired by the protocol)
/// through the sampled request log to routing, the shadows and the
/// comparison.
pub(super) type LiveTraffic = Traffic<Requests<Chain>, Responses<Option<u64>, V1Responses>>;

/// A request's way after framing, in order: routing decides (sampling,
/// rules, rewrites), the shadows send (a queue per target), the comparison
/// learns what was sent where (the exchange its answers go to), and the
/// request log says what became of it.
pub struct Chain {
    router: Router,
    verdicts: Vec<Verdict>,
    dispatcher: Dispatcher,
    exchanges: Option<Exchanges>,
    log: Option<RequestLog>,
}

impl Chain {
    /// Routing and the shadows alone.
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self {
            router: Router::new(dispatcher.plan()),
            verdicts: Vec::new(),
            dispatcher,
            exchanges: None,
            log: None,
        }
    }

    /// The targets that keep their answers compare them with v1's.
    fn comparing(mut self, engine: Option<&Engine>) -> Self {
        self.exchanges = engine.map(|e| Exchanges::new(e.clone()));
        self
    }

    /// A share of the requests is logged.
    fn logging(mut self, log: RequestLog) -> Self {
        self.log = Some(log);
        self
    }

    /// The targets requests go to now.
    pub fn targets(&self) -> &[Arc<Target>] {
        self.dispatcher.targets()
    }

    /// Sends `request` down the chain; its exchange if it is compared (the
    /// tag v1's answer is to be given to).
    pub fn send(&mut self, request: &Request) -> Option<u64> {
        // A reload: the routing follows the targets the shadows now have.
        if let Some(plan) = self.dispatcher.refresh() {
            self.router.set_plan(plan);
        }
        self.router.route(request, &mut self.verdicts);
        let compared = self.exchanges.is_some() && self.dispatcher.compares();
        // An opened exchange keeps the heads the targets are sent.
        let tag = self.exchanges.as_mut().filter(|_| compared).and_then(|x| {
            let tag = x.open(request)?;
            x.copies(request, &self.verdicts);
            Some(tag)
        });
        let reply = tag.zip(self.exchanges.as_ref().map(|x| x.answer_sink()));
        self.dispatcher
            .send(&request.flow, self.verdicts.drain(..), reply);
        if let Some(exchanges) = &mut self.exchanges {
            let (targets, outcomes) = (self.dispatcher.targets(), self.dispatcher.outcomes());
            exchanges.sent(compared, tag, targets, outcomes);
        }
        if let Some(log) = &mut self.log {
            log.dispatched(
                request,
                self.dispatcher.targets(),
                self.dispatcher.outcomes(),
            );
        }
        tag
    }
}

/// The exchange of a request is its comparison's tag (`None`: not
/// compared); v1's response comes from the protocol's pairing.
impl RequestStage for Chain {
    type Exchange = Option<u64>;

    fn on_request(&mut self, request: Request) -> Option<u64> {
        self.send(&request)
    }
}

impl Mirroring {
    /// Whether v1's responses are captured (egress) for it: only for the
    /// comparison.
    pub fn wants_responses(config: &Config) -> bool {
        compares(config)
    }

    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let engine = match compares(config) {
            true => Some(
                Engine::start(config.live.compare.clone())
                    .context("cannot start the comparison")?,
            ),
            false => None,
        };
        let shadows = Shadows::start(config.live.shadows.clone()).await;
        Ok(Self { shadows, engine })
    }

    /// The stage after framing: routing, the shadows' queues, and the
    /// exchanges the comparison opens.
    pub fn requests(&self) -> Chain {
        Chain::new(self.shadows.dispatcher()).comparing(self.engine.as_ref())
    }

    /// v1's answers read from a recording or a packet capture (a replay's).
    pub fn recorded_answers(&self, config: &Config) -> Option<RecordedAnswers> {
        let engine = self.engine.as_ref()?;
        Some(RecordedAnswers::new(
            engine.clone(),
            response_config(config, 0),
        ))
    }

    /// Captured traffic (the live capture) through the mirroring side.
    pub fn traffic(
        &self,
        config: &Config,
        filter: Box<dyn PayloadFilter>,
        log_share: &Arc<AtomicU32>,
    ) -> LiveTraffic {
        let flow = config.startup.flow.clone();
        // Live, a large body goes on to the shadows as it arrives.
        let http = HttpConfig {
            stream: Some(StreamLimits::default()),
            ..config.startup.http.clone()
        };
        let log = self
            .requests()
            .logging(RequestLog::new(Arc::clone(log_share)));
        let traffic = match &self.engine {
            Some(engine) => {
                let (requests, answers) = paired(log, V1Responses::new(engine.clone()));
                let framing = ResponseFraming::new(response_config(config, 0), answers);
                Traffic::both(flow, http, requests, Some(framing))
            }
            None => Traffic::both(flow, http, Requests::unpaired(log), None),
        };
        traffic.with_filter(filter)
    }

    /// What the metrics endpoint and the summary read.
    pub fn sources(
        &self,
        kernel: Option<Arc<crate::capture::CounterReader>>,
        pipeline: Arc<PipelineStats>,
        reloads: Arc<ReloadStats>,
        attach_mode: &'static str,
    ) -> Sources {
        Sources {
            kernel,
            pipeline,
            targets: telemetry::target_source(self.shadows.clone()),
            reloads,
            build: BuildInfo {
                version: env!("CARGO_PKG_VERSION"),
                kernel: crate::capture::kernel_release(),
                attach_mode,
            },
            compare: self.engine.clone(),
        }
    }
}

/// A replay's source: a `.gor` file (with its recorded answers when
/// comparing) or a packet capture (with v1's answers paired in memory when
/// comparing).
pub(super) fn replay_source(
    config: &Config,
    path: &std::path::Path,
    pcap: bool,
) -> anyhow::Result<Source> {
    let http = config.startup.http.clone();
    if pcap {
        let answers = compares(config).then(|| response_config(config, 0));
        return Source::pcap(
            path,
            config.startup.capture.ports.clone(),
            config.startup.flow.clone(),
            http,
            answers,
        );
    }
    let source = Source::gor(path, http)?;
    Ok(match compares(config) {
        true => source.with_responses(),
        false => source,
    })
}

/// What a recording writes: the file(s), the rules and rewrites applied
/// first, and with `Some(largest)` v1's responses too.
pub(super) struct Destination {
    pub output: OutputPlan,
    pub route: RouteConfig,
    pub responses: Option<usize>,
}

/// The recording's pipeline: flow → http → the recorder, and with
/// `--responses` v1's responses, paired by the protocol, → the response
/// recorder.
pub(super) type Recording =
    Pipeline<Requests<file::Recorder>, Responses<Option<file::Written>, file::ResponseRecorder>>;

/// Captured traffic into a recording (`record`, live or from a packet
/// capture).
pub(super) fn recording(
    destination: Destination,
    config: &Config,
    wall_offset_ns: i64,
    filter: Box<dyn PayloadFilter>,
    from_file: bool,
) -> anyhow::Result<(Recording, file::Recording)> {
    let Destination {
        output,
        route,
        responses,
    } = destination;
    let path = output.pattern.clone();
    let (mut recorder, recording) = file::record(output, route, wall_offset_ns)
        .with_context(|| format!("cannot write {}", path.display()))?;
    recorder.redact_with(config.live.compare.redaction.clone());
    if from_file {
        // Nothing is lost by reading the file more slowly.
        recorder.wait_when_full();
    }
    let (requests, responses) = match responses {
        Some(raw_cap) => {
            let answers = recorder.responses();
            let (requests, answers) = paired(recorder, answers);
            let framing = ResponseFraming::new(response_config(config, raw_cap), answers);
            (requests, Some(framing))
        }
        None => (Requests::unpaired(recorder), None),
    };
    let traffic = Traffic::both(
        config.startup.flow.clone(),
        config.startup.http.clone(),
        requests,
        responses,
    )
    .with_filter(filter);
    let pipeline = Pipeline::new(
        traffic,
        Arc::new(PipelineStats::default()),
        Arc::new(Readiness::default()),
    );
    Ok((pipeline, recording))
}
