//! The report as it stands, a plain serde value: `GET /compare`'s JSON,
//! what the page and the terminal draw, and what `compare-report` reads
//! back. Its keys are a contract with outside scripts: add keys, never
//! rename or drop one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compare::verdict::{Kind, Role};

/// Where an endpoint's fields past its bound are counted together: a
/// name in the report, not a field.
pub const OTHER_FIELDS: &str = "(other fields)";

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
    /// Its pairs, every endpoint together.
    #[serde(flatten)]
    pub pairs: PairCounts,
    /// The fields that differ across its endpoints (on two or more, or on
    /// a large share of its pairs), the most severe first, each with the
    /// flag that leaves it out when there is one. Added after the first
    /// release: a report from an older agent has none.
    #[serde(default)]
    pub summary: Vec<FieldSummary>,
    /// The most severe first: an endpoint with a `failed` difference, then
    /// `status`, `undecodable`, `body`, `header` (its most severe kind
    /// decides); then the larger share differing, then the more pairs
    /// compared; endpoints without a difference last.
    pub endpoints: Vec<EndpointReport>,
    /// Some baseline compared an exchange, so noise was measured; without
    /// one, no difference can be told noise and the report says so. A
    /// report from an older agent has no such key: read as measured, so
    /// nothing is claimed about it.
    #[serde(default = "measured")]
    pub noise_measured: bool,
}

fn measured() -> bool {
    true
}

/// One field as it differs across a target's endpoints: `x-powered-by`
/// differs on 480 of 480 pairs, on 15 endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSummary {
    /// The field as the endpoints name it: `status`, `header:<name>`, a
    /// body path with `[*]` for array indices.
    pub path: String,
    /// What part of the answer it is.
    #[serde(with = "kind_name")]
    pub kind: Kind,
    /// Pairs in which it differed, every endpoint together (noise
    /// included, as an endpoint's field counts).
    pub count: u64,
    /// Of `count`, the differences that were noise.
    pub noise_count: u64,
    /// Every one of those differences was noise.
    pub noise: bool,
    /// Endpoints on which it differed.
    pub endpoints: u64,
    /// Pairs compared on those endpoints: `count` is a share of these.
    pub compared: u64,
    /// The flag that leaves it out of the comparison
    /// (`--compare-ignore-header X-Powered-By`), `null` when none does
    /// (status, failures, a whole body).
    pub hint: Option<String>,
}

/// One endpoint of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// `GET /orders/{id}`, or `other` (the endpoints past the bound).
    pub endpoint: String,
    /// Its pairs.
    #[serde(flatten)]
    pub pairs: PairCounts,
    /// Most often differing first, `(other fields)` last.
    pub fields: Vec<FieldReport>,
}

/// The counts a target and each of its endpoints share, written inline in
/// their JSON objects (`"compared": 7, "match": 4, ...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairCounts {
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
    /// Of `match`, the pairs that differed only in noise. Added with the
    /// gate: a report from an older agent has none (zero).
    #[serde(default)]
    pub noise_only: u64,
    /// Differing pairs by their most severe kind, each pair once (`kinds`
    /// counts a pair under every kind it differs in): these add up to
    /// `differ`. Added with the gate.
    #[serde(default)]
    pub worst: Kinds,
}

impl PairCounts {
    pub fn not_compared_total(&self) -> u64 {
        self.not_compared.values().sum()
    }

    /// Every compared pair once, by result: `match` (no difference),
    /// `noise` (differed in noise only), then the differing ones by their
    /// most severe kind; they add up to `compared`.
    pub fn results(&self) -> [(&'static str, u64); RESULTS.len()] {
        let mut out = [("", 0); RESULTS.len()];
        for (slot, name) in out.iter_mut().zip(RESULTS) {
            let count = match name {
                "match" => self.matched.saturating_sub(self.noise_only),
                "noise" => self.noise_only,
                kind => Kind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == kind)
                    .map_or(0, |k| self.worst.get(k)),
            };
            *slot = (name, count);
        }
        out
    }
}

/// The results a compared pair can have, each pair exactly one: a match,
/// noise only, or a difference of its most severe kind (severity order).
pub const RESULTS: [&str; 7] = [
    "match",
    "noise",
    "failed",
    "status",
    "undecodable",
    "body",
    "header",
];

/// Differing pairs per kind: a pair whose status and two body fields
/// differ counts once in `status` and once in `body`. Noise is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kinds {
    pub status: u64,
    pub header: u64,
    pub body: u64,
    /// Added after the first release: a report from an older agent has
    /// none (zero).
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub undecodable: u64,
}

impl Kinds {
    pub fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Failed => self.failed,
            Kind::Status => self.status,
            Kind::Undecodable => self.undecodable,
            Kind::Header => self.header,
            Kind::Body => self.body,
        }
    }

    pub(super) fn get_mut(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Failed => &mut self.failed,
            Kind::Status => &mut self.status,
            Kind::Undecodable => &mut self.undecodable,
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
    /// indices, or `(other fields)`.
    pub path: String,
    /// Pairs in which it differed (noise included).
    pub count: u64,
    /// The field is noise: the baseline's rate on it is close to this
    /// target's now (`compare::noise`), or, before enough samples to
    /// tell, every one of its differences was judged noise. A baseline's
    /// fields are all noise.
    pub noise: bool,
    /// Of `count`, the differences judged noise when they were counted
    /// (each with the rates of that moment).
    pub noise_count: u64,
    pub example: Example,
    /// The share (0 to 1) of this target's compared exchanges on the
    /// endpoint that differed on the field; `null` where not counted
    /// (`(other fields)`, past the noise statistics' bounds) and in an
    /// older agent's report.
    #[serde(default)]
    pub rate: Option<f64>,
    /// The same share for the baselines together; `null` without a
    /// baseline exchange on the endpoint.
    #[serde(default)]
    pub baseline_rate: Option<f64>,
}

/// One difference as seen: the concrete path and both values (cut and
/// redacted upstream; credential headers redacted here again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub path: String,
    pub v1: String,
    pub target: String,
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

/// The kind as the report spells it, `status`, `header`, ...
mod kind_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::compare::verdict::Kind;

    pub fn serialize<S: Serializer>(kind: &Kind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        let name = String::deserialize(deserializer)?;
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown kind {name:?}")))
    }
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
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| D::Error::custom(format!("unknown role {name:?}")))
    }
}
