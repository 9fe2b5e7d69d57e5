//! The comparison's counts: per target and per endpoint, how many pairs
//! matched, differed (and in what: status, headers, body, which fields), or
//! could not be compared (and why), with v1's and the target's latencies.
//!
//! One compare thread [`Report::record`]s each verdict; scrapes take a
//! [`Report::snapshot`], a plain serde value: `/compare` serves it as JSON,
//! [`render_html`](super::render_html) and
//! [`render_text`](super::render_text) draw it, and `compare-report` reads
//! it back. Its JSON keys are a contract with outside scripts: add keys,
//! never rename or drop one.
//!
//! Memory is bounded by the configuration, not by the traffic: endpoints
//! past `max_endpoints` are pooled under [`OTHER_ENDPOINT`], fields past
//! [`FIELDS_PER_ENDPOINT`] under [`OTHER_FIELDS`], and latencies go into
//! fixed log-bucketed histograms.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diff_log::is_credential_header;
use super::{Difference, Kind, NotCompared, Role, Verdict};

/// Where the endpoints past the report's bound are counted.
pub const OTHER_ENDPOINT: &str = "(other)";
/// Where the fields past [`FIELDS_PER_ENDPOINT`] are counted.
pub const OTHER_FIELDS: &str = "(other fields)";
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
                .map(|(name, role)| TargetTally {
                    name,
                    role,
                    counts: Counts::default(),
                    endpoints: HashMap::new(),
                })
                .collect(),
            max_endpoints,
        }
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
            debug_assert!(false, "verdict for unknown target {target}");
            return;
        };
        tally.counts.record(verdict, v1_latency, target_latency);
        let key = if tally.endpoints.contains_key(endpoint) || tally.endpoints.len() < max_endpoints
        {
            endpoint
        } else {
            OTHER_ENDPOINT
        };
        let endpoint = tally.endpoints.entry(key.to_owned()).or_default();
        endpoint.counts.record(verdict, v1_latency, target_latency);
        endpoint.fields.record(verdict);
    }

    /// The counts as they stand, sorted for reading: endpoints by how
    /// often they differ, fields by how often they appear.
    pub fn snapshot(&self) -> CompareReport {
        CompareReport {
            targets: self.targets.iter().map(TargetTally::snapshot).collect(),
        }
    }
}

struct TargetTally {
    name: String,
    role: Role,
    counts: Counts,
    endpoints: HashMap<String, EndpointTally>,
}

impl TargetTally {
    fn snapshot(&self) -> TargetReport {
        let mut endpoints: Vec<EndpointReport> = self
            .endpoints
            .iter()
            .map(|(name, tally)| EndpointReport {
                endpoint: name.clone(),
                compared: tally.counts.compared(),
                matched: tally.counts.matched,
                differ: tally.counts.differ,
                match_percent: percent(tally.counts.matched, tally.counts.compared()),
                kinds: tally.counts.kinds,
                not_compared: tally.counts.not_compared_map(),
                latency_ms: tally.counts.latency(),
                fields: tally.fields.snapshot(),
            })
            .collect();
        endpoints.sort_by(|a, b| {
            by_differ_rate(a.differ, a.compared, b.differ, b.compared)
                .then_with(|| b.compared.cmp(&a.compared))
                .then_with(|| a.endpoint.cmp(&b.endpoint))
        });
        TargetReport {
            target: self.name.clone(),
            role: self.role,
            compared: self.counts.compared(),
            matched: self.counts.matched,
            differ: self.counts.differ,
            match_percent: percent(self.counts.matched, self.counts.compared()),
            kinds: self.counts.kinds,
            not_compared: self.counts.not_compared_map(),
            latency_ms: self.counts.latency(),
            endpoints,
        }
    }
}

/// Higher differ rate first, compared exactly (no float rounding).
fn by_differ_rate(a_differ: u64, a_compared: u64, b_differ: u64, b_compared: u64) -> Ordering {
    let a = u128::from(a_differ) * u128::from(b_compared.max(1));
    let b = u128::from(b_differ) * u128::from(a_compared.max(1));
    b.cmp(&a)
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
    kinds: Kinds,
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
            Verdict::Match(_) => self.matched += 1,
            Verdict::Differ(differences) => {
                self.differ += 1;
                for kind in Kind::ALL {
                    if differences.iter().any(|d| d.kind == kind && !d.noise) {
                        *self.kinds.get_mut(kind) += 1;
                    }
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

    fn compared(&self) -> u64 {
        self.matched + self.differ
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
            example: Example::of(difference),
            example_is_noise: difference.noise,
        }
    }

    fn add(&mut self, difference: &Difference) {
        self.count += 1;
        if difference.noise {
            self.noise_count += 1;
        } else if self.example_is_noise {
            // A real difference shows more than noise does.
            self.example = Example::of(difference);
            self.example_is_noise = false;
        }
    }

    fn snapshot(&self, path: &str) -> FieldReport {
        FieldReport {
            path: path.to_owned(),
            count: self.count,
            noise: self.count > 0 && self.noise_count == self.count,
            noise_count: self.noise_count,
            example: self.example.clone(),
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
        let paths: Vec<String> = differences.iter().map(field_path).collect();
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

    /// By count, then path; the pooled rest last.
    fn snapshot(&self) -> Vec<FieldReport> {
        let mut fields: Vec<FieldReport> = self
            .kept
            .iter()
            .map(|(path, tally)| tally.snapshot(path))
            .collect();
        fields.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        fields.extend(self.other.as_ref().map(|t| t.snapshot(OTHER_FIELDS)));
        fields
    }
}

/// The report's name of a difference's place: `status`,
/// `header:<name>`, or the body path with array indices grouped
/// (`$.items[3].price` → `$.items[*].price`).
pub fn field_path(difference: &Difference) -> String {
    match difference.kind {
        Kind::Status => "status".to_owned(),
        Kind::Header => format!("header:{}", difference.path),
        Kind::Body => group_array_indices(&difference.path),
    }
}

/// `[<digits>]` → `[*]`, everything else kept.
fn group_array_indices(path: &str) -> String {
    let mut grouped = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        grouped.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after.as_bytes().get(digits) == Some(&b']') {
            grouped.push_str("[*]");
            rest = &after[digits + 1..];
        } else {
            grouped.push('[');
            rest = after;
        }
    }
    grouped.push_str(rest);
    grouped
}

/// A fixed-memory latency histogram: exact below 16 µs, then 8 buckets
/// per power of two (each at most 12.5 % wide, so a percentile read at a
/// bucket's middle is within ~6.25 %), up to [`LatencyHistogram::MAX_MICROS`].
#[derive(Clone)]
struct LatencyHistogram {
    buckets: [u32; LatencyHistogram::BUCKETS],
    count: u64,
    min: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; Self::BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl LatencyHistogram {
    const SUB_BITS: u32 = 3;
    const SUB: u64 = 1 << Self::SUB_BITS;
    /// Largest exponent kept: up to 2^28 µs (about 268 s); slower is
    /// counted as that.
    const MAX_EXP: u32 = 27;
    const MAX_MICROS: u64 = (1 << (Self::MAX_EXP + 1)) - 1;
    const BUCKETS: usize = (2 * Self::SUB
        + (Self::MAX_EXP as u64 + 1 - (Self::SUB_BITS + 1) as u64) * Self::SUB)
        as usize;

    fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .min(Self::MAX_MICROS);
        let bucket = &mut self.buckets[Self::index(micros)];
        *bucket = bucket.saturating_add(1);
        self.count += 1;
        self.min = self.min.min(micros);
        self.max = self.max.max(micros);
    }

    fn index(micros: u64) -> usize {
        if micros < 2 * Self::SUB {
            return micros as usize;
        }
        let exp = 63 - micros.leading_zeros();
        let sub = (micros >> (exp - Self::SUB_BITS)) & (Self::SUB - 1);
        (2 * Self::SUB + u64::from(exp - Self::SUB_BITS - 1) * Self::SUB + sub) as usize
    }

    /// The middle of bucket `index`, in µs.
    fn middle(index: usize) -> f64 {
        let index = index as u64;
        if index < 2 * Self::SUB {
            return index as f64;
        }
        let exp = (index - 2 * Self::SUB) / Self::SUB + u64::from(Self::SUB_BITS) + 1;
        let sub = (index - 2 * Self::SUB) % Self::SUB;
        let width = 1u64 << (exp - u64::from(Self::SUB_BITS));
        let low = (Self::SUB + sub) * width;
        low as f64 + (width as f64 - 1.0) / 2.0
    }

    /// The latency under which a share `q` of the samples fall, in ms.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                let micros = Self::middle(index).clamp(self.min as f64, self.max as f64);
                return Some(micros.round() / 1000.0);
            }
        }
        Some(self.max as f64 / 1000.0)
    }

    fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count,
            p50: self.quantile_ms(0.50),
            p99: self.quantile_ms(0.99),
        }
    }
}

/// The whole report: `GET /compare`'s JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub targets: Vec<TargetReport>,
}

/// One target's counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The target's name or URL.
    pub target: String,
    #[serde(with = "role_name")]
    pub role: Role,
    /// `match` + `differ`.
    pub compared: u64,
    #[serde(rename = "match")]
    pub matched: u64,
    pub differ: u64,
    /// `null` when nothing was compared.
    pub match_percent: Option<f64>,
    /// Differing pairs per kind of difference (a pair may count in
    /// several).
    pub kinds: Kinds,
    /// Pairs not compared, per reason (every reason listed).
    pub not_compared: BTreeMap<String, u64>,
    pub latency_ms: LatencyReport,
    /// Most often differing first.
    pub endpoints: Vec<EndpointReport>,
}

impl TargetReport {
    pub fn not_compared_total(&self) -> u64 {
        self.not_compared.values().sum()
    }
}

/// One endpoint of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// `GET /orders/{id}`, or [`OTHER_ENDPOINT`].
    pub endpoint: String,
    pub compared: u64,
    #[serde(rename = "match")]
    pub matched: u64,
    pub differ: u64,
    pub match_percent: Option<f64>,
    pub kinds: Kinds,
    pub not_compared: BTreeMap<String, u64>,
    pub latency_ms: LatencyReport,
    /// Most often differing first, [`OTHER_FIELDS`] last.
    pub fields: Vec<FieldReport>,
}

/// Differing pairs per kind: a pair whose status and two body fields
/// differ counts once in `status` and once in `body`. Noise is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kinds {
    pub status: u64,
    pub header: u64,
    pub body: u64,
}

impl Kinds {
    pub fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Status => self.status,
            Kind::Header => self.header,
            Kind::Body => self.body,
        }
    }

    fn get_mut(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Status => &mut self.status,
            Kind::Header => &mut self.header,
            Kind::Body => &mut self.body,
        }
    }

    /// `status 120, body 90` (kinds with a count only).
    pub fn describe(&self) -> String {
        Kind::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| format!("{k} {}", self.get(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One differing place of an endpoint's answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldReport {
    /// `status`, `header:<name>`, a body path with `[*]` for array
    /// indices, or [`OTHER_FIELDS`].
    pub path: String,
    /// Pairs in which it differed (noise included).
    pub count: u64,
    /// Every one of those differences was noise.
    pub noise: bool,
    /// Of `count`, the differences that were noise.
    pub noise_count: u64,
    pub example: Example,
}

/// One difference as seen: the concrete path and both values (cut and
/// redacted upstream; credential headers redacted here again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub path: String,
    pub v1: String,
    pub target: String,
}

impl Example {
    fn of(difference: &Difference) -> Self {
        let credential = difference.kind == Kind::Header && is_credential_header(&difference.path);
        let value = |v: &str| {
            if credential {
                "<redacted>".to_owned()
            } else {
                v.to_owned()
            }
        };
        Self {
            path: difference.path.clone(),
            v1: value(&difference.left),
            target: value(&difference.right),
        }
    }
}

/// v1's latency and the target's, for the same pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    pub v1: Percentiles,
    pub target: Percentiles,
}

/// Milliseconds; `null` without samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The role as the report spells it, `candidate` or `baseline`.
mod role_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::compare::Role;

    pub fn serialize<S: Serializer>(role: &Role, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(role.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
        let name = String::deserialize(deserializer)?;
        [Role::Candidate, Role::Baseline]
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown role {name:?}")))
    }
}

/// `matches v1`, `differs`, or `nothing compared`.
pub fn verdict_word(target: &TargetReport) -> &'static str {
    if target.compared == 0 {
        "nothing compared"
    } else if target.differ == 0 {
        "matches v1"
    } else {
        "differs"
    }
}

/// `part` of `whole` as a percentage with one decimal, never rounded to
/// 0 or 100 unless it is: 1 differ in 10 000 reads `99.9`, not `100.0`.
pub fn percent_text(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    let tenths = (part as f64 * 1000.0 / whole as f64).round() as u64;
    let tenths = if part > 0 && part < whole {
        tenths.clamp(1, 999)
    } else {
        tenths
    };
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// One line per target, for the periodic summary and the final counts:
/// `v3 (candidate): 812 compared, 74.1 % match, 210 differ (status 120,
/// body 90), 3 not compared (timeout 3); most differing: POST
/// /orders/{id} 40.0 % of 100`.
pub fn verdict_line(target: &TargetReport) -> String {
    let mut line = format!("{} ({}): ", target.target, target.role.as_str());
    if target.compared == 0 {
        line.push_str("nothing compared yet");
    } else {
        let _ = write!(
            line,
            "{} compared, {} % match, {} differ",
            target.compared,
            percent_text(target.matched, target.compared),
            target.differ
        );
        if target.differ > 0 {
            let _ = write!(line, " ({})", target.kinds.describe());
        }
    }
    let not_compared = target.not_compared_total();
    if not_compared > 0 {
        let reasons: Vec<String> = target
            .not_compared
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let _ = write!(
            line,
            ", {not_compared} not compared ({})",
            reasons.join(", ")
        );
    }
    if let Some(top) = target.endpoints.iter().find(|e| e.differ > 0) {
        let _ = write!(
            line,
            "; most differing: {} {} % of {}",
            top.endpoint,
            percent_text(top.differ, top.compared),
            top.compared
        );
    }
    line
}
