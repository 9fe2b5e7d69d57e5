//! The Prometheus exposition: every family with its labels, read at
//! scrape time from the [`Sources`], in the classic text format.

use std::sync::atomic::Ordering;

use mirror_common::Counter;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tracing::warn;

use super::{Sources, TargetSnapshot};
use crate::capture::{CounterReader, KernelCounters};
use crate::compare::endpoint::OTHER;
use crate::compare::report::RESULTS;
use crate::compare::{Kind, NotCompared, UNKNOWN_ENDPOINT};
use crate::flow::FlowEndReason;
use crate::http::SkipReason;
use crate::route::FilterReason;
use crate::shadow::{DropReason, LatencySnapshot, StatusClass};

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_kernel(&mut encoder)?;
        self.encode_pipeline(&mut encoder)?;
        self.encode_targets(&mut encoder)?;
        self.encode_compare(&mut encoder)?;
        counter_family(
            &mut encoder,
            "mirror_config_reloads",
            "Configuration reloads (SIGHUP) by outcome: applied, or rejected (bad file; \
             the running configuration stays).",
            "outcome",
            [
                ("applied", self.reloads.applied.load(Ordering::Relaxed)),
                ("rejected", self.reloads.rejected.load(Ordering::Relaxed)),
            ],
        )?;
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

/// One program's packets by outcome, ring records by outcome and payload
/// bytes: the same families for the ingress and the egress program, under
/// `names` (packets, records, bytes) with `helps`.
fn encode_program(
    encoder: &mut DescriptorEncoder,
    counters: &KernelCounters,
    names: [&str; 3],
    helps: [&str; 3],
) -> Result<(), std::fmt::Error> {
    // Every packet has exactly one (`seen` is their sum, not one of them).
    let packets = Counter::PACKET_OUTCOMES.map(|outcome| (outcome.as_str(), counters.get(outcome)));
    counter_family(encoder, names[0], helps[0], "outcome", packets)?;
    let records = [
        ("matched", Counter::RecordsMatched),
        ("emitted", Counter::RecordsEmitted),
        ("lost", Counter::RecordsLost),
    ]
    .map(|(outcome, counter)| (outcome, counters.get(counter)));
    counter_family(encoder, names[1], helps[1], "outcome", records)?;
    counter(
        encoder,
        names[2],
        helps[2],
        counters.get(Counter::PayloadBytes),
    )
}

impl Sources {
    /// The comparison's verdicts per target, and per target and endpoint
    /// (bounded: `--compare-max-endpoints` names and `other`); no
    /// per-field label (their number is the traffic's to choose).
    fn encode_compare(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(engine) = &self.compare else {
            return Ok(());
        };
        let report = engine.report();
        let mut total = encoder.encode_descriptor(
            "mirror_compare",
            "Compared (request, target) pairs by result: match, differ, or why the pair \
             could not be compared (no_v1_response, target_failed, timeout, body_over_cap, \
             undecodable, overflow, unpaired).",
            None,
            MetricType::Counter,
        )?;
        for target in &report.targets {
            let results = [
                ("match", target.pairs.matched),
                ("differ", target.pairs.differ),
            ]
            .into_iter()
            .chain(NotCompared::ALL.iter().map(|reason| {
                let count = target.pairs.not_compared.get(reason.as_str()).copied();
                (reason.as_str(), count.unwrap_or(0))
            }));
            for (result, count) in results {
                let labels = [("target", target.target.as_str()), ("result", result)];
                ConstCounter::new(count).encode(total.encode_family(&labels)?)?;
            }
        }
        let mut differences = encoder.encode_descriptor(
            "mirror_compare_differences",
            "Differing pairs by what differs (a pair differing in status and body counts \
             once under each kind); noise excluded.",
            None,
            MetricType::Counter,
        )?;
        for target in &report.targets {
            for kind in Kind::ALL {
                let labels = [("target", target.target.as_str()), ("kind", kind.as_str())];
                ConstCounter::new(target.pairs.kinds.get(kind))
                    .encode(differences.encode_family(&labels)?)?;
            }
        }
        let mut exchanges = encoder.encode_descriptor(
            "mirror_compare_exchanges",
            "Compared exchanges per target and endpoint, each once by result: match, noise \
             (differed in noise only), or the most severe kind it differs in (failed, status, \
             undecodable, body, header). endpoint is a template (GET /items/{id}) for the \
             first --compare-max-endpoints the agent compared, the rest `other`; summed over \
             agents, the fleet's verdict.",
            None,
            MetricType::Counter,
        )?;
        for target in &report.targets {
            let endpoints = target
                .endpoints
                .iter()
                .filter(|e| e.endpoint != UNKNOWN_ENDPOINT)
                .map(|e| (e.endpoint.as_str(), e.pairs.results()));
            // `other` always, so that a sum per target is never empty.
            let other = (!target.endpoints.iter().any(|e| e.endpoint == OTHER))
                .then(|| (OTHER, RESULTS.map(|result| (result, 0))));
            for (endpoint, results) in endpoints.chain(other) {
                for (result, count) in results {
                    let labels = [
                        ("target", target.target.as_str()),
                        ("endpoint", endpoint),
                        ("result", result),
                    ];
                    ConstCounter::new(count).encode(exchanges.encode_family(&labels)?)?;
                }
            }
        }
        let mut durations = encoder.encode_descriptor(
            "mirror_compare_duration_seconds",
            "Latency on the compared exchanges, per target: side=v1 is v1's (the captured \
             request's end to its response's first byte), side=shadow the target's (request \
             sent to response read).",
            None,
            MetricType::Histogram,
        )?;
        for target in engine.durations() {
            for (side, histogram) in [("v1", &target.v1), ("shadow", &target.shadow)] {
                encode_histogram(
                    &mut durations,
                    &[("target", target.target.as_str()), ("side", side)],
                    histogram,
                )?;
            }
        }
        Ok(())
    }

    fn encode_kernel(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(reader) = &self.kernel else {
            return Ok(());
        };
        let Some(counters) = read_or_warn(reader.read(), "the kernel counters") else {
            return Ok(());
        };
        encode_program(
            encoder,
            &counters,
            [
                "mirror_kernel_packets",
                "mirror_kernel_records",
                "mirror_kernel_bytes",
            ],
            [
                "Packets the kernel program ran on, by outcome (one each).",
                "Ring records by outcome: matched = emitted + lost.",
                "Payload bytes the kernel program copied to the ring.",
            ],
        )?;
        for (name, help, value) in [
            (
                "mirror_kernel_records_lost",
                "Ring records lost because the ring was full: requests they carried are dropped as gaps.",
                Counter::RecordsLost,
            ),
            (
                "mirror_kernel_ignored_bytes",
                "Payload bytes not copied because the agent said it no longer needs them \
                 (the rest of a body it skips, a connection it gave up).",
                Counter::IgnoredBytes,
            ),
            (
                "mirror_kernel_truncated_bytes",
                "Payload bytes of super-packets beyond what one program run copies.",
                Counter::TruncatedBytes,
            ),
        ] {
            counter(encoder, name, help, counters.get(value))?;
        }
        if self.compare.is_some() {
            self.encode_kernel_responses(encoder, reader)?;
        }
        Ok(())
    }

    /// The egress program's counters (v1's responses, for the comparison):
    /// the same outcomes and identities as the ingress program's.
    fn encode_kernel_responses(
        &self,
        encoder: &mut DescriptorEncoder,
        reader: &CounterReader,
    ) -> Result<(), std::fmt::Error> {
        let Some(counters) = read_or_warn(reader.read_responses(), "the egress program's counters")
        else {
            return Ok(());
        };
        encode_program(
            encoder,
            &counters,
            [
                "mirror_kernel_response_packets",
                "mirror_kernel_response_records",
                "mirror_kernel_response_bytes",
            ],
            [
                "Packets leaving the service ports (v1's responses) the egress program ran on, \
                 by outcome (one each).",
                "Ring records of v1's responses by outcome: matched = emitted + lost.",
                "Payload bytes of v1's responses copied to the ring.",
            ],
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
        counter_family(
            encoder,
            "mirror_flows",
            "TCP connections that ended, by how (fin, rst, idle, evicted, superseded).",
            "end",
            FlowEndReason::ALL.map(|reason| (reason.as_str(), stats.flow.ended(reason))),
        )?;
        for (name, help, value) in [
            (
                "mirror_stream_gap_bytes",
                "Client stream bytes never captured (truncations, lost records, holes given up).",
                stats.flow.gap_bytes,
            ),
            (
                "mirror_connection_desyncs",
                "Times a connection's request framing was lost (a gap, a head over our limits): \
                 its bytes are skipped, never searched, until a request proves where it starts.",
                stats.http.desyncs,
            ),
            (
                "mirror_connection_resyncs",
                "Times a desynced or joined connection proved itself again: a valid request \
                 that starts and ends with the client's writes.",
                stats.http.resyncs,
            ),
            (
                "mirror_requests_captured",
                "HTTP requests reassembled from captured traffic.",
                stats.http.requests,
            ),
            (
                "mirror_requests_streamed",
                "Of the captured requests, those whose body (over 64 KiB) went on to the \
                 shadows as it arrived, the request sent at its head.",
                stats.http.streamed_requests,
            ),
        ] {
            counter(encoder, name, help, value)?;
        }
        counter_family(
            encoder,
            "mirror_requests_skipped",
            "Requests (or stretches of a connection) not reassembled, by reason.",
            "reason",
            SkipReason::ALL.map(|reason| (reason.as_str(), stats.http.dropped.get(reason))),
        )
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
            let s = &target.stats;
            let outcomes = StatusClass::ALL
                .iter()
                .map(|c| (c.as_str(), s.sent_by(*c)))
                .chain(
                    FilterReason::ALL
                        .iter()
                        .map(|r| (r.as_str(), s.filtered_by(*r))),
                )
                .chain(
                    DropReason::ALL
                        .iter()
                        .map(|r| (r.as_str(), s.dropped_by(*r))),
                );
            for (outcome, count) in outcomes {
                let labels = [("target", target.name.as_str()), ("outcome", outcome)];
                ConstCounter::new(count).encode(requests.encode_family(&labels)?)?;
            }
        }
        counter_family(
            encoder,
            "mirror_shadow_captured",
            "Requests the router looked at for a target since the target started: \
             captured = sent + filtered + dropped + queued + in flight.",
            "target",
            targets.iter().map(|t| (t.name.as_str(), t.stats.captured)),
        )?;
        for (name, help, value) in [
            (
                "mirror_shadow_in_flight",
                "Requests being sent to a shadow target or waiting for its response.",
                (|t: &TargetSnapshot| t.stats.in_flight) as fn(&TargetSnapshot) -> u64,
            ),
            (
                "mirror_shadow_queue_depth",
                "Requests waiting in a shadow target's queue.",
                |t: &TargetSnapshot| t.stats.queue_depth,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for target in &targets {
                let labels = [("target", target.name.as_str())];
                ConstGauge::new(gauge(value(target))).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, histogram) in [
            (
                "mirror_shadow_request_duration_seconds",
                "Time from sending a request to a shadow to the end of its response (responses \
                 are read on the agent's 1 ms tick).",
                (|t: &TargetSnapshot| &t.stats.latency) as fn(&TargetSnapshot) -> &LatencySnapshot,
            ),
            (
                "mirror_shadow_send_delay_seconds",
                "Time from the capture of a request's last segment (kernel timestamp) to \
                 the request written to the shadow's socket.",
                |t: &TargetSnapshot| &t.stats.send_delay,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for target in &targets {
                encode_histogram(
                    &mut family,
                    &[("target", target.name.as_str())],
                    histogram(target),
                )?;
            }
        }
        Ok(())
    }
}

/// A kernel counter read, or `None` after a warning: a failed read leaves
/// those families out of this scrape rather than failing the whole scrape.
fn read_or_warn<E: std::fmt::Display>(
    read: Result<KernelCounters, E>,
    what: &str,
) -> Option<KernelCounters> {
    read.inspect_err(|err| warn!(error = %err, "reading {what} failed"))
        .ok()
}

/// One histogram of a family, with its labels.
fn encode_histogram(
    family: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &[(&str, &str)],
    histogram: &LatencySnapshot,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = histogram.per_bucket().collect();
    family
        .encode_family(&labels)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            histogram.sum_seconds,
            histogram.count,
            &buckets,
            None,
        )
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A counter family `name` with one sample per `(value, count)`, `value`
/// the family's one label `label`.
fn counter_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in samples {
        ConstCounter::new(count).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use super::*;
    use crate::shadow::TargetStats;
    use crate::telemetry::{BuildInfo, PipelineStats, ReloadStats, Stats};

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
            compare: None,
        }
    }

    /// The metrics text of an agent with one target, `name`, counting `stats`.
    fn render_target(name: &str, stats: &TargetStats) -> String {
        let target = TargetSnapshot {
            name: name.into(),
            stats: stats.snapshot(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(sources(vec![target])));
        render(&registry)
    }

    #[test]
    fn the_exposition_names_every_family_with_its_labels() {
        let stats = TargetStats::default();
        stats.captured.fetch_add(48, Relaxed);
        for i in 0..40 {
            let ms = if i < 30 { 5 } else { 50 };
            stats.sent_one(StatusClass::Success, Duration::from_millis(ms));
            let delay_us = match i {
                0..38 => 500,
                38 => 1500,
                _ => 5000,
            };
            stats.send_delay.record_ns(delay_us * 1000);
        }
        stats.drop_one(DropReason::QueueFull);
        stats.drop_one(DropReason::QueueFull);
        stats.queue_depth.store(5, Relaxed);
        stats.in_flight.store(1, Relaxed);
        let text = render_target("http://v2:9000", &stats);
        for line in [
            "mirror_requests_captured_total 42",
            "mirror_flows_active 3",
            "mirror_flows_total{end=\"fin\"} 0",
            "mirror_requests_skipped_total{reason=\"gap\"} 0",
            "mirror_stream_gap_bytes_total 0",
            "mirror_connection_desyncs_total 0",
            "mirror_connection_resyncs_total 0",
            "mirror_requests_streamed_total 0",
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
        let stats = TargetStats::default();
        for ms in [1, 1, 30, 30, 30] {
            stats.captured.fetch_add(1, Relaxed);
            stats.sent_one(StatusClass::Success, Duration::from_millis(ms));
        }
        let text = render_target("v2", &stats);
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
}
