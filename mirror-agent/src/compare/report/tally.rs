//! The running counts: one compare thread [`Report::record`]s each
//! verdict, per target and per endpoint, and a scrape takes a
//! [`Report::snapshot`]. Memory is bounded by the configuration, not by
//! the traffic: endpoints past `max_endpoints` are pooled under
//! [`OTHER_ENDPOINT`], fields past [`FIELDS_PER_ENDPOINT`] under
//! [`OTHER_FIELDS`](super::OTHER_FIELDS), and latencies go into fixed log-bucketed histograms.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::latency::LatencyHistogram;
use super::snapshot::{
    CompareReport, EndpointReport, Example, FieldReport, Kinds, LatencyReport, OTHER_FIELDS,
    PairCounts, TargetReport,
};
use super::summary::summarize;
use crate::compare::noise::FieldRates;
use crate::compare::rules::{REDACTED, is_credential_header};
use crate::compare::verdict::{Difference, Kind, NotCompared, Role, Verdict};
use crate::redact;
use crate::shadow::{LatencyHistogram as Buckets, LatencySnapshot};

/// Where the endpoints past the report's bound are counted.
pub const OTHER_ENDPOINT: &str = crate::compare::endpoint::OTHER;
/// Distinct differing fields kept per endpoint (and target).
pub const FIELDS_PER_ENDPOINT: usize = 32;

/// The running counts of the comparison, every target.
pub struct Report {
    targets: Vec<TargetTally>,
    max_endpoints: usize,
}

impl Report {
    /// `targets` in the order the verdicts name them by index (a name or
    /// URL, and the role); at most `max_endpoints` distinct endpoints per
    /// target, the others pooled under [`OTHER_ENDPOINT`].
    pub fn new(targets: Vec<(String, Role)>, max_endpoints: usize) -> Self {
        Self {
            targets: targets
                .into_iter()
                .map(|(name, role)| TargetTally::new(name, role))
                .collect(),
            max_endpoints,
        }
    }

    /// Endpoints counted apart from now on (a reload); those counted
    /// already stay.
    pub fn set_max_endpoints(&mut self, max_endpoints: usize) {
        self.max_endpoints = max_endpoints;
    }

    /// A target added after the start (a reload); its index.
    pub fn add_target(&mut self, name: String, role: Role) -> usize {
        self.targets.push(TargetTally::new(name, role));
        self.targets.len() - 1
    }

    /// Counts one verdict on the pair (a request to `endpoint`, target
    /// number `target`), with the latencies that were measured. A target
    /// number the report was not built with is ignored (a caller's bug,
    /// not the traffic's: nothing to count it against).
    pub fn record(
        &mut self,
        target: usize,
        endpoint: &str,
        verdict: &Verdict,
        v1_latency: Option<Duration>,
        target_latency: Option<Duration>,
    ) {
        let max_endpoints = self.max_endpoints;
        let Some(tally) = self.targets.get_mut(target) else {
            return;
        };
        tally.counts.record(verdict, v1_latency, target_latency);
        tally.durations.record(v1_latency, target_latency);
        let key = if tally.endpoints.contains_key(endpoint) || tally.endpoints.len() < max_endpoints
        {
            endpoint
        } else {
            OTHER_ENDPOINT
        };
        // A known endpoint (nearly every call) costs no allocation.
        if !tally.endpoints.contains_key(key) {
            tally
                .endpoints
                .insert(key.to_owned(), EndpointTally::default());
        }
        let Some(endpoint) = tally.endpoints.get_mut(key) else {
            return;
        };
        endpoint.counts.record(verdict, v1_latency, target_latency);
        endpoint.fields.record(verdict);
    }

    /// The counts as they stand, sorted for reading: endpoints the most
    /// severe first, fields by how often they appear; per target, the
    /// summary across its endpoints.
    pub fn snapshot(&self) -> CompareReport {
        self.snapshot_with(&|_, _, _| None)
    }

    /// The same, with each field's rates (target index, endpoint, field →
    /// its [`FieldRates`], if counted): a field's noise flag is then the
    /// rates' decision now, where they can decide.
    pub fn snapshot_with(&self, rates: &Rates<'_>) -> CompareReport {
        // Noise is measured when some baseline compared an exchange.
        let noise_measured = self
            .targets
            .iter()
            .any(|t| t.role == Role::Baseline && t.counts.matched + t.counts.differ > 0);
        CompareReport {
            targets: self
                .targets
                .iter()
                .enumerate()
                .map(|(index, tally)| {
                    let field_rates = |endpoint: &str, field: &str| rates(index, endpoint, field);
                    tally.snapshot(&field_rates, noise_measured)
                })
                .collect(),
        }
    }
}

impl Report {
    /// Per target, v1's latencies and its own on the pairs compared, in
    /// the fixed buckets of the Prometheus histograms.
    pub fn durations(&self) -> Vec<Durations> {
        self.targets
            .iter()
            .map(|tally| Durations {
                target: tally.name.clone(),
                v1: tally.durations.v1.snapshot(),
                shadow: tally.durations.shadow.snapshot(),
            })
            .collect()
    }
}

/// One target's latency histograms: v1's and the target's, on the same
/// pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct Durations {
    pub target: String,
    pub v1: LatencySnapshot,
    pub shadow: LatencySnapshot,
}

#[derive(Default)]
struct DurationHistograms {
    v1: Buckets,
    shadow: Buckets,
}

impl DurationHistograms {
    fn record(&self, v1: Option<Duration>, shadow: Option<Duration>) {
        if let Some(latency) = v1 {
            self.v1.record(latency);
        }
        if let Some(latency) = shadow {
            self.shadow.record(latency);
        }
    }
}

/// Target index, endpoint, field → the field's rates, if counted.
pub type Rates<'a> = dyn Fn(usize, &str, &str) -> Option<FieldRates> + 'a;

struct TargetTally {
    name: String,
    role: Role,
    counts: Counts,
    durations: DurationHistograms,
    endpoints: HashMap<String, EndpointTally>,
}

impl TargetTally {
    fn new(name: String, role: Role) -> Self {
        Self {
            name,
            role,
            counts: Counts::default(),
            durations: DurationHistograms::default(),
            endpoints: HashMap::new(),
        }
    }

    fn snapshot(
        &self,
        rates: &dyn Fn(&str, &str) -> Option<FieldRates>,
        noise_measured: bool,
    ) -> TargetReport {
        let mut endpoints: Vec<EndpointReport> = self
            .endpoints
            .iter()
            .map(|(name, tally)| EndpointReport {
                endpoint: name.clone(),
                pairs: tally.counts.snapshot(),
                fields: tally.fields.snapshot(&|field| rates(name, field)),
            })
            .collect();
        // The important difference first: an endpoint that fails or
        // answers another status reads before one whose headers differ on
        // every answer, whatever their shares.
        endpoints.sort_by(|a, b| {
            severity(&a.pairs)
                .cmp(&severity(&b.pairs))
                .then_with(|| by_differ_rate(&a.pairs, &b.pairs))
                .then_with(|| b.pairs.compared.cmp(&a.pairs.compared))
                .then_with(|| a.endpoint.cmp(&b.endpoint))
        });
        let pairs = self.counts.snapshot();
        TargetReport {
            target: self.name.clone(),
            role: self.role,
            summary: summarize(&endpoints, pairs.compared),
            pairs,
            endpoints,
            noise_measured,
        }
    }
}

/// The rank of the most severe kind in which some pair differed (noise
/// left out: `kinds` counts none); past every kind when none did.
fn severity(pairs: &PairCounts) -> usize {
    Kind::ALL
        .iter()
        .position(|kind| pairs.kinds.get(*kind) > 0)
        .unwrap_or(Kind::ALL.len())
}

/// Higher differ rate first, compared exactly (no float rounding).
fn by_differ_rate(a: &PairCounts, b: &PairCounts) -> Ordering {
    let a_rate = u128::from(a.differ) * u128::from(b.compared.max(1));
    let b_rate = u128::from(b.differ) * u128::from(a.compared.max(1));
    b_rate.cmp(&a_rate)
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

#[derive(Default)]
struct EndpointTally {
    counts: Counts,
    fields: FieldTallies,
}

/// The counts shared by a target and each of its endpoints.
#[derive(Default)]
struct Counts {
    matched: u64,
    differ: u64,
    /// Of `matched`, with noise differences.
    noise_only: u64,
    kinds: Kinds,
    /// Differing pairs by their most severe kind.
    worst: Kinds,
    not_compared: [u64; NotCompared::ALL.len()],
    v1_latency: LatencyHistogram,
    target_latency: LatencyHistogram,
}

impl Counts {
    fn record(
        &mut self,
        verdict: &Verdict,
        v1_latency: Option<Duration>,
        target_latency: Option<Duration>,
    ) {
        match verdict {
            Verdict::Match(differences) => {
                self.matched += 1;
                if !differences.is_empty() {
                    self.noise_only += 1;
                }
            }
            Verdict::Differ(differences) => {
                self.differ += 1;
                let mut worst = None;
                // Kind::ALL runs by severity: the first kind found is the worst.
                for kind in Kind::ALL {
                    if differences.iter().any(|d| d.kind == kind && !d.noise) {
                        *self.kinds.get_mut(kind) += 1;
                        worst.get_or_insert(kind);
                    }
                }
                if let Some(kind) = worst {
                    *self.worst.get_mut(kind) += 1;
                }
            }
            Verdict::NotCompared(reason) => {
                if let Some(i) = NotCompared::ALL.iter().position(|r| r == reason) {
                    self.not_compared[i] += 1;
                }
            }
        }
        if let Some(latency) = v1_latency {
            self.v1_latency.record(latency);
        }
        if let Some(latency) = target_latency {
            self.target_latency.record(latency);
        }
    }

    fn snapshot(&self) -> PairCounts {
        let compared = self.matched + self.differ;
        PairCounts {
            compared,
            matched: self.matched,
            differ: self.differ,
            match_percent: percent(self.matched, compared),
            kinds: self.kinds,
            not_compared: self.not_compared_map(),
            latency_ms: self.latency(),
            noise_only: self.noise_only,
            worst: self.worst,
        }
    }

    /// Every reason, zeros included, so scripts need no default.
    fn not_compared_map(&self) -> BTreeMap<String, u64> {
        NotCompared::ALL
            .iter()
            .zip(self.not_compared)
            .map(|(reason, n)| (reason.as_str().to_owned(), n))
            .collect()
    }

    fn latency(&self) -> LatencyReport {
        LatencyReport {
            v1: self.v1_latency.percentiles(),
            target: self.target_latency.percentiles(),
        }
    }
}

/// The differing fields of one endpoint, bounded.
#[derive(Default)]
struct FieldTallies {
    kept: HashMap<String, FieldTally>,
    other: Option<FieldTally>,
}

struct FieldTally {
    /// Pairs in which this field differed.
    count: u64,
    /// Of which the difference was noise.
    noise_count: u64,
    example: Example,
    example_is_noise: bool,
}

impl FieldTally {
    fn new(difference: &Difference) -> Self {
        Self {
            count: 0,
            noise_count: 0,
            example: example(difference),
            example_is_noise: difference.noise,
        }
    }

    fn add(&mut self, difference: &Difference) {
        self.count += 1;
        if difference.noise {
            self.noise_count += 1;
        } else if self.example_is_noise {
            // A real difference shows more than noise does.
            self.example = example(difference);
            self.example_is_noise = false;
        }
    }

    /// Noise as the rates decide now if they can, else when every one of
    /// its differences was judged noise.
    fn snapshot(&self, path: &str, rates: Option<FieldRates>) -> FieldReport {
        let judged_noise = self.noise_count == self.count;
        FieldReport {
            path: path.to_owned(),
            count: self.count,
            noise: self.count > 0 && rates.and_then(|r| r.noise).unwrap_or(judged_noise),
            noise_count: self.noise_count,
            example: self.example.clone(),
            rate: rates.map(|r| r.rate),
            baseline_rate: rates.and_then(|r| r.baseline_rate),
        }
    }
}

impl FieldTallies {
    /// Each field path once per pair, even when several array elements
    /// differ there (`$.items[0].price` and `$.items[3].price`).
    fn record(&mut self, verdict: &Verdict) {
        let differences = match verdict {
            Verdict::Match(d) | Verdict::Differ(d) => d,
            Verdict::NotCompared(_) => return,
        };
        let paths: Vec<String> = differences.iter().map(Difference::field).collect();
        for (i, path) in paths.iter().enumerate() {
            if paths[..i].contains(path) {
                continue;
            }
            // Noise only if every difference there in this pair is; the
            // example a real one when there is one.
            let representative = differences
                .iter()
                .zip(&paths)
                .find(|(d, p)| *p == path && !d.noise)
                .map_or(&differences[i], |(d, _)| d);
            self.add(path, representative);
        }
    }

    fn add(&mut self, path: &str, difference: &Difference) {
        let bounded = self.kept.contains_key(path) || self.kept.len() < FIELDS_PER_ENDPOINT;
        let tally = if bounded {
            self.kept
                .entry(path.to_owned())
                .or_insert_with(|| FieldTally::new(difference))
        } else {
            self.other
                .get_or_insert_with(|| FieldTally::new(difference))
        };
        tally.add(difference);
    }

    /// By count, then path; the pooled rest last (no rates: several
    /// fields).
    fn snapshot(&self, rates: &dyn Fn(&str) -> Option<FieldRates>) -> Vec<FieldReport> {
        let mut fields: Vec<FieldReport> = self
            .kept
            .iter()
            .map(|(path, tally)| tally.snapshot(path, rates(path)))
            .collect();
        fields.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        fields.extend(self.other.as_ref().map(|t| t.snapshot(OTHER_FIELDS, None)));
        fields
    }
}

/// One difference as the report shows it; credential headers redacted
/// here again, should a caller have missed one.
fn example(difference: &Difference) -> Example {
    let credential = difference.kind == Kind::Header && is_credential_header(&difference.path);
    // A marker (or `<absent>`) says nothing of the value: kept.
    let value = |v: &str| {
        if credential && !redact::is_placeholder(v) {
            REDACTED.to_owned()
        } else {
            v.to_owned()
        }
    };
    Example {
        path: difference.path.clone(),
        v1: value(&difference.left),
        target: value(&difference.right),
    }
}
