//! Prometheus metrics and health endpoints.
//!
//! Nothing here is on the capture path: every value is read at scrape time
//! from where its stage keeps it (the kernel's per-CPU map, the snapshot the
//! capture task publishes, the shadow targets' atomics), so a scrape costs
//! the pipeline nothing and the numbers are as fresh as the scrape.
//!
//! Served on `--metrics-addr` (loopback by default): `/metrics` in the
//! Prometheus text format (via prometheus-client), `/healthz` (the process
//! answers) and `/readyz` (program attached, ring being drained, config
//! loaded).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use mirror_common::Counter;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::{
    capture::CounterReader,
    flow::{FlowEndReason, Stats},
    http::DropReason,
    route::RouterHandle,
    shadow::{self, FilterReason, StatusClass},
};

/// The flow and http stages' counters, published by the capture task (it
/// owns the flow table) and read by scrapes and the periodic summary.
#[derive(Default)]
pub struct PipelineStats {
    snapshot: Mutex<Stats>,
}

impl PipelineStats {
    pub fn publish(&self, stats: Stats) {
        if let Ok(mut snapshot) = self.snapshot.lock() {
            *snapshot = stats;
        }
    }

    pub fn get(&self) -> Stats {
        self.snapshot.lock().map(|s| *s).unwrap_or_default()
    }
}

/// What `/readyz` checks. The capture task sets `attached` after attaching
/// and bumps `last_drain_ns` each time it drains the ring.
#[derive(Default)]
pub struct Readiness {
    pub attached: AtomicBool,
    pub config_loaded: AtomicBool,
    pub last_drain_ns: AtomicU64,
}

impl Readiness {
    /// Ready when attached, configured, and the ring was drained within the
    /// last 5 s (the drain loop runs every millisecond).
    fn check(&self) -> Result<(), &'static str> {
        if !self.config_loaded.load(Ordering::Relaxed) {
            return Err("config not loaded");
        }
        if !self.attached.load(Ordering::Relaxed) {
            return Err("capture program not attached");
        }
        let last = self.last_drain_ns.load(Ordering::Relaxed);
        let now = crate::capture::monotonic_ns();
        if last == 0 || now.saturating_sub(last) > 5_000_000_000 {
            return Err("ring buffer not drained in the last 5 s");
        }
        Ok(())
    }
}

/// One latency histogram as exported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound in seconds, count of that bucket alone)`, ascending;
    /// +Inf last. The exposition makes them cumulative.
    pub buckets: Vec<(f64, u64)>,
}

/// One shadow target's numbers at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetSnapshot {
    /// The target's label value (its name: the URL unless configured).
    pub name: String,
    /// Requests the router looked at for this target since it started:
    /// `captured = sent + filtered + dropped + queued + in flight`.
    pub captured: u64,
    /// `(outcome, count)`: response status classes (`2xx`, ...) for sent
    /// requests, filter and drop reasons otherwise.
    pub outcomes: Vec<(&'static str, u64)>,
    pub queue_depth: i64,
    pub in_flight: i64,
    pub latency: HistogramSnapshot,
    /// Capture → written to the shadow socket.
    pub send_delay: HistogramSnapshot,
}

/// Supplies the targets' snapshots at scrape time.
pub type TargetSource = Arc<dyn Fn() -> Vec<TargetSnapshot> + Send + Sync>;

/// Reads the running targets' atomics at scrape time.
pub fn target_source(shadows: RouterHandle) -> TargetSource {
    Arc::new(move || {
        shadows
            .targets()
            .iter()
            .map(|target| target_snapshot(target.name(), &target.stats().snapshot()))
            .collect()
    })
}

/// One target's counters in the shape of the exposition.
pub fn target_snapshot(name: &str, s: &shadow::StatsSnapshot) -> TargetSnapshot {
    let mut outcomes =
        Vec::with_capacity(StatusClass::COUNT + FilterReason::COUNT + shadow::DropReason::COUNT);
    for class in StatusClass::ALL {
        outcomes.push((class.as_str(), s.sent_by(*class)));
    }
    for reason in FilterReason::ALL {
        outcomes.push((reason.as_str(), s.filtered_by(*reason)));
    }
    for reason in shadow::DropReason::ALL {
        outcomes.push((reason.as_str(), s.dropped_by(*reason)));
    }
    let histogram = |h: &shadow::LatencySnapshot| HistogramSnapshot {
        sum_seconds: h.sum_seconds,
        count: h.count,
        buckets: h.per_bucket().collect(),
    };
    TargetSnapshot {
        name: name.to_owned(),
        captured: s.captured,
        outcomes,
        queue_depth: i64::try_from(s.queue_depth).unwrap_or(i64::MAX),
        in_flight: i64::try_from(s.in_flight).unwrap_or(i64::MAX),
        latency: histogram(&s.latency),
        send_delay: histogram(&s.send_delay),
    }
}

/// `mirror_build_info` labels.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub version: &'static str,
    pub kernel: String,
    pub attach_mode: &'static str,
}

/// Configuration reloads (SIGHUP), by outcome.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
}

/// Everything a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub kernel: Option<Arc<CounterReader>>,
    pub pipeline: Arc<PipelineStats>,
    pub targets: TargetSource,
    pub reloads: Arc<ReloadStats>,
    pub build: BuildInfo,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}

/// Kernel packet outcomes exported as `mirror_kernel_packets_total{outcome}`:
/// every packet the program ran on has exactly one (`seen` is their sum, so
/// it is not one of them).
const PACKET_OUTCOMES: [Counter; 6] = [
    Counter::NotIp,
    Counter::NotTcp,
    Counter::Malformed,
    Counter::PortNotMatched,
    Counter::NotSampled,
    Counter::Matched,
];

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_kernel(&mut encoder)?;
        self.encode_pipeline(&mut encoder)?;
        self.encode_targets(&mut encoder)?;
        let mut reloads = encoder.encode_descriptor(
            "mirror_config_reloads",
            "Configuration reloads (SIGHUP) by outcome: applied, or rejected (bad file; \
             the running configuration stays).",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in [
            ("applied", &self.reloads.applied),
            ("rejected", &self.reloads.rejected),
        ] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(count.load(Ordering::Relaxed))
                .encode(reloads.encode_family(&labels)?)?;
        }
        let mut info = encoder.encode_descriptor(
            "mirror_build_info",
            "Version of the agent, kernel release and how the program is attached.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("version", self.build.version.to_owned()),
            ("kernel", self.build.kernel.clone()),
            ("attach_mode", self.build.attach_mode.to_owned()),
        ];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        Ok(())
    }
}

impl Sources {
    fn encode_kernel(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(reader) = &self.kernel else {
            return Ok(());
        };
        let counters = match reader.read() {
            Ok(c) => c,
            Err(err) => {
                warn!(error = %err, "reading the kernel counters failed");
                return Ok(());
            }
        };
        let mut packets = encoder.encode_descriptor(
            "mirror_kernel_packets",
            "Packets the kernel program ran on, by outcome (one each).",
            None,
            MetricType::Counter,
        )?;
        for outcome in PACKET_OUTCOMES {
            let labels = [("outcome", outcome.name())];
            ConstCounter::new(counters.get(outcome)).encode(packets.encode_family(&labels)?)?;
        }
        counter(
            encoder,
            "mirror_kernel_bytes",
            "Payload bytes the kernel program copied to the ring.",
            counters.get(Counter::PayloadBytes),
        )?;
        let mut records = encoder.encode_descriptor(
            "mirror_kernel_records",
            "Ring records by outcome: matched = emitted + lost.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, counter) in [
            ("matched", Counter::RecordsMatched),
            ("emitted", Counter::RecordsEmitted),
            ("lost", Counter::RecordsLost),
        ] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(counters.get(counter)).encode(records.encode_family(&labels)?)?;
        }
        counter(
            encoder,
            "mirror_kernel_records_lost",
            "Ring records lost because the ring was full: requests they carried are dropped as gaps.",
            counters.get(Counter::RecordsLost),
        )?;
        counter(
            encoder,
            "mirror_kernel_truncated_bytes",
            "Payload bytes of super-packets beyond what one program run copies.",
            counters.get(Counter::TruncatedBytes),
        )
    }

    fn encode_pipeline(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.pipeline.get();
        let active = encoder.encode_descriptor(
            "mirror_flows_active",
            "TCP connections being reassembled now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(stats.flow.flows_active as i64).encode(active)?;
        let mut ended = encoder.encode_descriptor(
            "mirror_flows",
            "TCP connections that ended, by how (fin, rst, idle, evicted, superseded).",
            None,
            MetricType::Counter,
        )?;
        for reason in FlowEndReason::ALL {
            let labels = [("end", reason.as_str())];
            ConstCounter::new(stats.flow.ended(reason)).encode(ended.encode_family(&labels)?)?;
        }
        counter(
            encoder,
            "mirror_requests_captured",
            "HTTP requests reassembled from captured traffic.",
            stats.http.requests,
        )?;
        let mut skipped = encoder.encode_descriptor(
            "mirror_requests_skipped",
            "Requests (or stretches of a connection) not reassembled, by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in DropReason::ALL {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(stats.http.dropped.get(*reason))
                .encode(skipped.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn encode_targets(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let targets = (self.targets)();
        if targets.is_empty() {
            return Ok(());
        }
        let mut requests = encoder.encode_descriptor(
            "mirror_shadow_requests",
            "Requests per shadow target by outcome: the response's status class when sent, \
             else the filter or drop reason. captured = sent + filtered + dropped.",
            None,
            MetricType::Counter,
        )?;
        for target in &targets {
            for (outcome, count) in &target.outcomes {
                let labels = [("target", target.name.as_str()), ("outcome", outcome)];
                ConstCounter::new(*count).encode(requests.encode_family(&labels)?)?;
            }
        }
        let mut captured = encoder.encode_descriptor(
            "mirror_shadow_captured",
            "Requests the router looked at for a target since the target started: \
             captured = sent + filtered + dropped + queued + in flight.",
            None,
            MetricType::Counter,
        )?;
        for target in &targets {
            let labels = [("target", target.name.as_str())];
            ConstCounter::new(target.captured).encode(captured.encode_family(&labels)?)?;
        }
        let mut in_flight = encoder.encode_descriptor(
            "mirror_shadow_in_flight",
            "Requests being sent to a shadow target or waiting for its response.",
            None,
            MetricType::Gauge,
        )?;
        for target in &targets {
            let labels = [("target", target.name.as_str())];
            ConstGauge::new(target.in_flight).encode(in_flight.encode_family(&labels)?)?;
        }
        let mut depth = encoder.encode_descriptor(
            "mirror_shadow_queue_depth",
            "Requests waiting in a shadow target's queue.",
            None,
            MetricType::Gauge,
        )?;
        for target in &targets {
            let labels = [("target", target.name.as_str())];
            ConstGauge::new(target.queue_depth).encode(depth.encode_family(&labels)?)?;
        }
        for (name, help, histogram) in [
            (
                "mirror_shadow_request_duration_seconds",
                "Time from sending a request to a shadow to the end of its response (responses \
                 are read on the agent's 1 ms tick).",
                (|t: &TargetSnapshot| &t.latency) as fn(&TargetSnapshot) -> &HistogramSnapshot,
            ),
            (
                "mirror_shadow_send_delay_seconds",
                "Time from the capture of a request's last segment (kernel timestamp) to \
                 the request written to the shadow's socket.",
                |t: &TargetSnapshot| &t.send_delay,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for target in &targets {
                let labels = [("target", target.name.as_str())];
                let h = histogram(target);
                family
                    .encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum_seconds,
                        h.count,
                        &h.buckets,
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// Renders the whole exposition in the Prometheus text format (0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(8 * 1024);
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        text.clear();
    }
    openmetrics_to_prometheus(&text)
}

/// prometheus-client writes OpenMetrics, where a counter family `x` has
/// samples `x_total`. The classic text format (what `promtool check metrics`
/// and every Prometheus version read) wants HELP and TYPE on `x_total`, and
/// no `# EOF` or `# UNIT` lines.
fn openmetrics_to_prometheus(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len() + 256);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line == "# EOF" || line.starts_with("# UNIT ") {
            i += 1;
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, rest) = help.split_once(' ').unwrap_or((help, ""));
            let is_counter = lines
                .get(i + 1)
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            if is_counter {
                out.push_str(&format!(
                    "# HELP {name}_total {rest}\n# TYPE {name}_total counter\n"
                ));
                i += 2;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(listener: TcpListener, sources: Sources, readiness: Arc<Readiness>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    let registry = Arc::new(registry);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        let readiness = Arc::clone(&readiness);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(request.uri().path(), &registry, &readiness);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %err, "metrics connection ended");
            }
        });
    }
}

fn respond(path: &str, registry: &Registry, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(registry),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => match readiness.check() {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Binds the endpoint; binding a non-loopback address is the operator's
/// explicit choice (`--metrics-addr 0.0.0.0:9464`), logged as such.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    if addr.ip().is_loopback() {
        info!(%addr, "metrics endpoint listening");
    } else {
        warn!(%addr, "metrics endpoint listening beyond loopback");
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(targets: Vec<TargetSnapshot>) -> Sources {
        let pipeline = Arc::new(PipelineStats::default());
        let mut stats = Stats::default();
        stats.http.requests = 42;
        stats.flow.flows_active = 3;
        pipeline.publish(stats);
        Sources {
            kernel: None,
            pipeline,
            targets: Arc::new(move || targets.clone()),
            reloads: Arc::new(ReloadStats::default()),
            build: BuildInfo {
                version: "0.1.0",
                kernel: "6.18.0".into(),
                attach_mode: "tcx",
            },
        }
    }

    #[test]
    fn the_exposition_names_every_family_with_its_labels() {
        let target = TargetSnapshot {
            name: "http://v2:9000".into(),
            captured: 48,
            outcomes: vec![("2xx", 40), ("queue_full", 2)],
            queue_depth: 5,
            in_flight: 1,
            latency: HistogramSnapshot {
                sum_seconds: 0.5,
                count: 40,
                buckets: vec![(0.01, 30), (0.1, 10), (f64::INFINITY, 0)],
            },
            send_delay: HistogramSnapshot {
                sum_seconds: 0.02,
                count: 40,
                buckets: vec![(0.001, 38), (0.002, 1), (f64::INFINITY, 1)],
            },
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(sources(vec![target])));
        let text = render(&registry);
        for line in [
            "mirror_requests_captured_total 42",
            "mirror_flows_active 3",
            "mirror_flows_total{end=\"fin\"} 0",
            "mirror_requests_skipped_total{reason=\"gap\"} 0",
            "mirror_shadow_requests_total{target=\"http://v2:9000\",outcome=\"2xx\"} 40",
            "mirror_shadow_requests_total{target=\"http://v2:9000\",outcome=\"queue_full\"} 2",
            "mirror_shadow_queue_depth{target=\"http://v2:9000\"} 5",
            "mirror_shadow_request_duration_seconds_count{target=\"http://v2:9000\"} 40",
            "mirror_shadow_request_duration_seconds_bucket{le=\"0.01\",target=\"http://v2:9000\"} 30",
            "mirror_shadow_request_duration_seconds_bucket{le=\"0.1\",target=\"http://v2:9000\"} 40",
            "mirror_shadow_request_duration_seconds_bucket{le=\"+Inf\",target=\"http://v2:9000\"} 40",
            "mirror_shadow_send_delay_seconds_bucket{le=\"0.001\",target=\"http://v2:9000\"} 38",
            "mirror_shadow_send_delay_seconds_bucket{le=\"0.002\",target=\"http://v2:9000\"} 39",
            "mirror_shadow_send_delay_seconds_count{target=\"http://v2:9000\"} 40",
            "mirror_shadow_captured_total{target=\"http://v2:9000\"} 48",
            "mirror_shadow_in_flight{target=\"http://v2:9000\"} 1",
            "mirror_config_reloads_total{outcome=\"rejected\"} 0",
            "mirror_build_info{version=\"0.1.0\",kernel=\"6.18.0\",attach_mode=\"tcx\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(text.contains("# TYPE mirror_requests_captured_total counter\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn latency_buckets_are_cumulated_once() {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = shadow::TargetStats::default();
        for ms in [1, 1, 30, 30, 30] {
            stats.captured.fetch_add(1, Relaxed);
            stats.sent_one(StatusClass::Success, Duration::from_millis(ms));
        }
        let target = target_snapshot("v2", &stats.snapshot());
        assert_eq!(target.captured, 5);
        assert!(target.outcomes.contains(&("2xx", 5)));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(sources(vec![target])));
        let text = render(&registry);
        for line in [
            "mirror_shadow_request_duration_seconds_bucket{le=\"0.001\",target=\"v2\"} 2",
            "mirror_shadow_request_duration_seconds_bucket{le=\"0.025\",target=\"v2\"} 2",
            "mirror_shadow_request_duration_seconds_bucket{le=\"0.05\",target=\"v2\"} 5",
            "mirror_shadow_request_duration_seconds_bucket{le=\"10.0\",target=\"v2\"} 5",
            "mirror_shadow_request_duration_seconds_bucket{le=\"+Inf\",target=\"v2\"} 5",
            "mirror_shadow_request_duration_seconds_count{target=\"v2\"} 5",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn readiness_needs_attach_config_and_a_recent_drain() {
        let ready = Readiness::default();
        assert_eq!(ready.check(), Err("config not loaded"));
        ready.config_loaded.store(true, Ordering::Relaxed);
        assert_eq!(ready.check(), Err("capture program not attached"));
        ready.attached.store(true, Ordering::Relaxed);
        assert!(ready.check().is_err());
        ready
            .last_drain_ns
            .store(crate::capture::monotonic_ns(), Ordering::Relaxed);
        assert_eq!(ready.check(), Ok(()));
    }
}
