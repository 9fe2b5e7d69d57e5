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
use super::verdict::{Difference, Kind, NotCompared, Role, Verdict};

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

    /// A target added after the start (a reload); its index.
    pub fn add_target(&mut self, name: String, role: Role) -> usize {
        self.targets.push(TargetTally {
            name,
            role,
            counts: Counts::default(),
            endpoints: HashMap::new(),
        });
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

    use crate::compare::verdict::Role;

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
        if target.differ > 0 && target.role == Role::Baseline {
            // A baseline is v1's own version: what it differs in is noise,
            // kept out of the candidates' verdicts.
            let mut noisy: Vec<&str> = Vec::new();
            for field in target.endpoints.iter().flat_map(|e| &e.fields) {
                if !noisy.contains(&field.path.as_str()) && noisy.len() < 3 {
                    noisy.push(&field.path);
                }
            }
            let _ = write!(
                line,
                " (noise, kept out of the verdicts: {})",
                noisy.join(", ")
            );
        } else if target.differ > 0 {
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn diff(kind: Kind, path: &str, left: &str, right: &str) -> Difference {
        Difference {
            kind,
            path: path.to_owned(),
            left: left.to_owned(),
            right: right.to_owned(),
            noise: false,
        }
    }

    fn noise(kind: Kind, path: &str, left: &str, right: &str) -> Difference {
        Difference {
            noise: true,
            ..diff(kind, path, left, right)
        }
    }

    const ORDERS: &str = "GET /orders/{id}";

    /// Six compared pairs and two timeouts on one endpoint of `v3`.
    fn known_report() -> Report {
        let mut report = Report::new(vec![("v3".to_owned(), Role::Candidate)], 100);
        let verdicts = [
            Verdict::Match(vec![]),
            Verdict::Match(vec![]),
            Verdict::Match(vec![noise(Kind::Body, "$.ts", "1", "2")]),
            Verdict::Differ(vec![
                diff(Kind::Status, "status", "200", "500"),
                diff(Kind::Body, "$.items[0].price", "1.5", "1.50"),
                diff(Kind::Body, "$.items[3].price", "2", "3"),
            ]),
            Verdict::Differ(vec![
                diff(Kind::Body, "$.name", "\"a\"", "\"b\""),
                noise(Kind::Body, "$.ts", "3", "4"),
            ]),
            Verdict::Differ(vec![diff(Kind::Header, "etag", "x", "y")]),
            Verdict::NotCompared(NotCompared::Timeout),
            Verdict::NotCompared(NotCompared::Timeout),
        ];
        for verdict in &verdicts {
            report.record(0, ORDERS, verdict, None, None);
        }
        report
    }

    fn field<'a>(endpoint: &'a EndpointReport, path: &str) -> &'a FieldReport {
        endpoint
            .fields
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no field {path} in {:?}", endpoint.fields))
    }

    #[test]
    fn verdicts_are_counted_per_target_endpoint_kind_and_field() {
        let snapshot = known_report().snapshot();
        let target = &snapshot.targets[0];
        assert_eq!((target.compared, target.matched, target.differ), (6, 3, 3));
        assert_eq!(target.not_compared["timeout"], 2);
        assert_eq!(target.not_compared_total(), 2);
        assert_eq!(target.match_percent, Some(50.0));
        let endpoint = &target.endpoints[0];
        assert_eq!(endpoint.endpoint, ORDERS);
        assert_eq!(
            (endpoint.compared, endpoint.matched, endpoint.differ),
            (6, 3, 3)
        );
        assert_eq!(
            endpoint.kinds,
            Kinds {
                status: 1,
                header: 1,
                // Two pairs differ in their body; the one with two prices
                // counts once, the one whose `$.ts` is noise counts for `$.name`.
                body: 2,
            }
        );
        assert_eq!(target.kinds, endpoint.kinds);

        let price = field(endpoint, "$.items[*].price");
        assert_eq!((price.count, price.noise), (1, false), "once per pair");
        assert_eq!(
            price.example.path, "$.items[0].price",
            "the concrete path kept"
        );
        assert_eq!(
            (price.example.v1.as_str(), price.example.target.as_str()),
            ("1.5", "1.50")
        );
        let ts = field(endpoint, "$.ts");
        assert_eq!((ts.count, ts.noise, ts.noise_count), (2, true, 2));
        assert_eq!(
            (
                field(endpoint, "status").count,
                field(endpoint, "header:etag").count
            ),
            (1, 1)
        );
        assert_eq!(field(endpoint, "$.name").count, 1);
        assert_eq!(endpoint.fields.len(), 5);
        assert_eq!(endpoint.fields[0].path, "$.ts", "the most frequent first");
    }

    #[test]
    fn a_kind_that_only_shows_noise_does_not_count_the_pair_as_differing_in_it() {
        let mut report = Report::new(vec![("v3".to_owned(), Role::Candidate)], 10);
        let verdict = Verdict::Differ(vec![
            diff(Kind::Status, "status", "200", "404"),
            noise(Kind::Body, "$.ts", "1", "2"),
            noise(Kind::Header, "date", "a", "b"),
        ]);
        report.record(0, ORDERS, &verdict, None, None);
        let snapshot = report.snapshot();
        let endpoint = &snapshot.targets[0].endpoints[0];
        assert_eq!(
            endpoint.kinds,
            Kinds {
                status: 1,
                header: 0,
                body: 0
            }
        );
        assert!(field(endpoint, "$.ts").noise && field(endpoint, "header:date").noise);
    }

    #[test]
    fn a_field_that_once_differs_for_real_is_no_longer_noise_and_shows_the_real_example() {
        let mut report = known_report();
        let real = Verdict::Differ(vec![diff(Kind::Body, "$.ts", "5", "6")]);
        report.record(0, ORDERS, &real, None, None);
        let snapshot = report.snapshot();
        let ts = field(&snapshot.targets[0].endpoints[0], "$.ts");
        assert_eq!((ts.count, ts.noise, ts.noise_count), (3, false, 2));
        assert_eq!(
            (ts.example.v1.as_str(), ts.example.target.as_str()),
            ("5", "6")
        );
    }

    #[test]
    fn endpoints_past_the_bound_are_pooled_and_known_ones_keep_counting() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 2);
        let matched = Verdict::Match(vec![]);
        for endpoint in ["GET /a", "GET /b", "GET /c", "GET /d", "GET /a"] {
            report.record(0, endpoint, &matched, None, None);
        }
        let snapshot = report.snapshot();
        let counts: BTreeMap<&str, u64> = snapshot.targets[0]
            .endpoints
            .iter()
            .map(|e| (e.endpoint.as_str(), e.compared))
            .collect();
        assert_eq!(
            counts,
            BTreeMap::from([("GET /a", 2), ("GET /b", 1), (OTHER_ENDPOINT, 2)])
        );
        assert_eq!(snapshot.targets[0].compared, 5);
    }

    #[test]
    fn fields_past_the_bound_are_pooled_last() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        for i in 0..FIELDS_PER_ENDPOINT + 8 {
            let path = format!("$.f{i}");
            let verdict = Verdict::Differ(vec![diff(Kind::Body, &path, "1", "2")]);
            report.record(0, "GET /a", &verdict, None, None);
        }
        // A kept field keeps counting after the bound is reached.
        report.record(
            0,
            "GET /a",
            &Verdict::Differ(vec![diff(Kind::Body, "$.f0", "1", "2")]),
            None,
            None,
        );
        let snapshot = report.snapshot();
        let fields = &snapshot.targets[0].endpoints[0].fields;
        assert_eq!(fields.len(), FIELDS_PER_ENDPOINT + 1);
        let other = fields.last().unwrap();
        assert_eq!((other.path.as_str(), other.count), (OTHER_FIELDS, 8));
        assert_eq!((fields[0].path.as_str(), fields[0].count), ("$.f0", 2));
    }

    #[test]
    fn array_indices_are_grouped_and_other_brackets_kept() {
        assert_eq!(group_array_indices("$.items[3].price"), "$.items[*].price");
        assert_eq!(group_array_indices("$[0][12].a"), "$[*][*].a");
        assert_eq!(group_array_indices("$[\"k\"].b[x]"), "$[\"k\"].b[x]");
        assert_eq!(group_array_indices("$.a[1"), "$.a[1");
        assert_eq!(group_array_indices("$.é[2]"), "$.é[*]");
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        let matched = Verdict::Match(vec![]);
        for ms in 1..=1000u64 {
            let v1 = Duration::from_millis(ms);
            report.record(0, "GET /a", &matched, Some(v1), Some(v1 * 2));
        }
        let snapshot = report.snapshot();
        let latency = &snapshot.targets[0].endpoints[0].latency_ms;
        let near = |got: Option<f64>, want: f64| {
            let got = got.expect("a percentile");
            assert!(
                (got - want).abs() <= want * 0.0625,
                "{got} is not within 6.25 % of {want}"
            );
        };
        near(latency.v1.p50, 500.0);
        near(latency.v1.p99, 990.0);
        near(latency.target.p50, 1000.0);
        near(latency.target.p99, 1980.0);
        assert_eq!(latency.v1.count, 1000);
        assert_eq!(snapshot.targets[0].latency_ms, *latency);
    }

    #[test]
    fn latency_percentiles_are_null_without_samples_and_exact_for_one() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.percentiles().p50, None);
        histogram.record(Duration::from_micros(350));
        assert_eq!(histogram.quantile_ms(0.5), Some(0.35));
        assert_eq!(histogram.quantile_ms(0.99), Some(0.35));
        // Beyond the range: counted at the top, not lost.
        histogram.record(Duration::from_secs(3600));
        assert_eq!(histogram.count, 2);
        assert!(histogram.quantile_ms(0.99).unwrap() > 250_000.0);
    }

    #[test]
    fn every_value_lands_in_a_bucket_whose_middle_is_close() {
        let mut micros = 0u64;
        while micros <= LatencyHistogram::MAX_MICROS {
            let index = LatencyHistogram::index(micros);
            assert!(index < LatencyHistogram::BUCKETS, "{micros} µs → {index}");
            let middle = LatencyHistogram::middle(index);
            assert!(
                (middle - micros as f64).abs() <= micros as f64 * 0.0625,
                "{micros} µs read as {middle}"
            );
            micros = micros * 9 / 8 + 1;
        }
        assert_eq!(
            LatencyHistogram::index(LatencyHistogram::MAX_MICROS),
            LatencyHistogram::BUCKETS - 1
        );
    }

    #[test]
    fn endpoints_are_sorted_by_differ_rate_then_by_volume() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        let matched = Verdict::Match(vec![]);
        let differ = Verdict::Differ(vec![diff(Kind::Status, "status", "200", "500")]);
        // /half: 1 of 2; /third: 1 of 3; /quarter_big: 2 of 8; /quarter: 1 of 4; /none: 0 of 5.
        let plan: [(&str, u64, u64); 5] = [
            ("GET /none", 0, 5),
            ("GET /quarter", 1, 3),
            ("GET /half", 1, 1),
            ("GET /quarter_big", 2, 6),
            ("GET /third", 1, 2),
        ];
        for (endpoint, differing, matching) in plan {
            for _ in 0..differing {
                report.record(0, endpoint, &differ, None, None);
            }
            for _ in 0..matching {
                report.record(0, endpoint, &matched, None, None);
            }
        }
        let order: Vec<String> = report.snapshot().targets[0]
            .endpoints
            .iter()
            .map(|e| e.endpoint.clone())
            .collect();
        assert_eq!(
            order,
            [
                "GET /half",
                "GET /third",
                "GET /quarter_big",
                "GET /quarter",
                "GET /none"
            ]
        );
    }

    #[test]
    fn the_json_keeps_the_contract_keys_and_reads_back() {
        let mut report = known_report();
        report.record(
            0,
            ORDERS,
            &Verdict::Match(vec![]),
            Some(Duration::from_millis(3)),
            None,
        );
        let snapshot = report.snapshot();
        let json = serde_json::to_string(&snapshot).unwrap();
        let value: Value = serde_json::from_str(&json).unwrap();
        let target = &value["targets"][0];
        assert_eq!(target["target"], "v3");
        assert_eq!(target["role"], "candidate");
        assert_eq!(
            (
                target["compared"].as_u64(),
                target["match"].as_u64(),
                target["differ"].as_u64()
            ),
            (Some(7), Some(4), Some(3))
        );
        assert!(target["match_percent"].is_f64());
        assert_eq!(target["not_compared"]["timeout"], 2);
        assert_eq!(
            target["not_compared"].as_object().unwrap().len(),
            NotCompared::ALL.len()
        );
        assert_eq!(target["latency_ms"]["v1"]["p50"], 3.0);
        assert!(target["latency_ms"]["target"]["p99"].is_null());
        let endpoint = &target["endpoints"][0];
        assert_eq!(endpoint["endpoint"], ORDERS);
        assert_eq!(
            (
                endpoint["compared"].as_u64(),
                endpoint["match"].as_u64(),
                endpoint["differ"].as_u64()
            ),
            (Some(7), Some(4), Some(3))
        );
        let kinds = endpoint["kinds"].as_object().unwrap();
        assert_eq!(
            kinds.keys().collect::<Vec<_>>(),
            ["body", "header", "status"]
        );
        assert_eq!(
            (
                kinds["status"].as_u64(),
                kinds["header"].as_u64(),
                kinds["body"].as_u64()
            ),
            (Some(1), Some(1), Some(2))
        );
        assert!(endpoint["match_percent"].is_f64());
        assert!(endpoint["not_compared"].is_object() && endpoint["latency_ms"].is_object());
        let first = &endpoint["fields"][0];
        assert_eq!(first["path"], "$.ts");
        assert_eq!(first["count"], 2);
        assert_eq!(first["noise"], true);
        assert!(first["example"]["v1"].is_string() && first["example"]["target"].is_string());

        let back: CompareReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        assert!(
            serde_json::from_str::<CompareReport>(&json.replace("candidate", "nobody")).is_err()
        );
    }

    #[test]
    fn nothing_compared_reads_as_null_percent_with_every_kind_present() {
        let report = Report::new(
            vec![("http://10.0.0.9:8080".to_owned(), Role::Baseline)],
            10,
        );
        let value = serde_json::to_value(report.snapshot()).unwrap();
        assert!(value["targets"][0]["match_percent"].is_null());
        assert_eq!(value["targets"][0]["role"], "baseline");
        assert_eq!(value["targets"][0]["kinds"]["header"], 0);
        assert_eq!(value["targets"][0]["endpoints"], Value::Array(vec![]));
    }

    #[test]
    fn a_verdict_for_an_unknown_target_is_ignored() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        report.record(7, "GET /a", &Verdict::Match(vec![]), None, None);
        assert_eq!(report.snapshot().targets[0].compared, 0);
    }

    #[test]
    fn credential_headers_are_redacted_in_examples_even_if_upstream_missed_them() {
        let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
        let verdict = Verdict::Differ(vec![diff(Kind::Header, "set-cookie", "sid=abc", "sid=def")]);
        report.record(0, "GET /a", &verdict, None, None);
        let snapshot = report.snapshot();
        let example = &snapshot.targets[0].endpoints[0].fields[0].example;
        assert_eq!(
            (example.v1.as_str(), example.target.as_str()),
            ("<redacted>", "<redacted>")
        );
    }

    #[test]
    fn the_verdict_line_says_counts_kinds_reasons_and_the_worst_endpoint() {
        let mut report = known_report();
        let differ = Verdict::Differ(vec![diff(Kind::Status, "status", "200", "500")]);
        report.record(0, "POST /orders/{id}", &differ, None, None);
        let line = verdict_line(&report.snapshot().targets[0]);
        assert_eq!(
            line,
            "v3 (candidate): 7 compared, 42.9 % match, 4 differ (status 2, header 1, body 2), \
             2 not compared (timeout 2); most differing: POST /orders/{id} 100.0 % of 1"
        );
        let empty = Report::new(vec![("v4".to_owned(), Role::Candidate)], 10);
        assert_eq!(
            verdict_line(&empty.snapshot().targets[0]),
            "v4 (candidate): nothing compared yet"
        );
    }

    #[test]
    fn a_percentage_is_never_rounded_to_a_clean_verdict_it_did_not_earn() {
        assert_eq!(percent_text(9_999, 10_000), "99.9");
        assert_eq!(percent_text(1, 10_000), "0.1");
        assert_eq!(percent_text(10_000, 10_000), "100.0");
        assert_eq!(percent_text(0, 10_000), "0.0");
        assert_eq!(percent_text(741, 1000), "74.1");
        assert_eq!(percent_text(0, 0), "-");
    }
}
