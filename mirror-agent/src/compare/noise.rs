//! Noise by rate (Diffy's idea, done passively). A target in the baseline
//! role runs v1's own version: how often its answers differ from v1's on a
//! field of an endpoint is how noisy v1 itself is there. Per endpoint and
//! field, this counts the exchanges compared and how many differed on the
//! field, for the baselines (pooled) and for each target, and tells
//! whether a candidate's difference is noise:
//!
//! * with enough samples (at least [`MIN_SAMPLES`] compared exchanges on
//!   the endpoint, for the baselines and for the candidate), the rates
//!   decide: noise iff the baseline differed there at least once and
//!   `candidate_rate <= baseline_rate * (1 + RELATIVE) + ABSOLUTE`. A
//!   field the baseline never differs on is never noise: there is no
//!   evidence v1 varies there, and a rare regression must not hide under
//!   the absolute slack;
//! * before that, only direct evidence counts: the difference is noise iff
//!   a baseline differed on the same field in the same exchange.
//!
//! The decision is taken again at every exchange with the counts of that
//! moment (the exchange counted first): an exchange's verdict is final
//! once counted, while the report's flag on a field is the decision at
//! snapshot time ([`Noise::rates`]). A field seen once on the baseline is
//! therefore no longer hidden for the rest of the run: if the candidate
//! differs there far more often, its differences are real.
//!
//! Bounded as the comparison is: [`MAX_NOISY_ENDPOINTS`] endpoints and
//! [`MAX_NOISY_FIELDS`] fields per endpoint are counted; beyond them, only
//! the direct evidence decides and the report shows no rate.

use std::collections::HashMap;
use std::sync::Arc;

use super::verdict::Role;

/// Compared exchanges on an endpoint a baseline (all baselines together)
/// and the candidate each need before their rates decide. Ten keeps the
/// warm-up short while a single early observation moves a rate by at
/// most 10 points.
pub const MIN_SAMPLES: u64 = 10;
/// How much higher than the baseline's rate, relatively, a candidate's may
/// be and still be noise (Diffy's default, 20 %).
pub const RELATIVE: f64 = 0.2;
/// And absolutely, as a share of the exchanges (3 points): the sampling
/// slack of two rates measured on the same few exchanges.
pub const ABSOLUTE: f64 = 0.03;
/// Endpoints whose rates are counted.
pub const MAX_NOISY_ENDPOINTS: usize = 1_000;
/// Fields counted per endpoint.
pub const MAX_NOISY_FIELDS: usize = 256;

/// One field of one target's endpoint as the report shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldRates {
    /// The share of the target's compared exchanges on the endpoint that
    /// differed on the field.
    pub rate: f64,
    /// The same for the baselines together; `None` without any baseline
    /// exchange on the endpoint.
    pub baseline_rate: Option<f64>,
    /// Whether the rates make the field noise now; `None` when they cannot
    /// decide (too few samples, or the target is a baseline: all its
    /// differences are noise by definition).
    pub noise: Option<bool>,
}

/// Exchanges compared and, of them, how many differed on a field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub differed: u64,
    pub exchanges: u64,
}

impl Sample {
    fn rate(self) -> Option<f64> {
        (self.exchanges > 0).then(|| self.differed as f64 / self.exchanges as f64)
    }
}

/// The rule: is a candidate's difference noise, given the baselines' and
/// the candidate's samples on the field? `None` when there are too few
/// samples for the rates to decide.
pub fn by_rate(baseline: Sample, candidate: Sample) -> Option<bool> {
    if baseline.exchanges < MIN_SAMPLES || candidate.exchanges < MIN_SAMPLES {
        return None;
    }
    if baseline.differed == 0 {
        return Some(false);
    }
    let (b, c) = (baseline.rate()?, candidate.rate()?);
    Some(c <= b * (1.0 + RELATIVE) + ABSOLUTE)
}

/// The counts, every endpoint.
#[derive(Default)]
pub struct Noise {
    endpoints: HashMap<Arc<str>, EndpointCounts>,
    /// Target indices that counted as baselines.
    baselines: Vec<usize>,
}

/// One endpoint: the fields that differed somewhere, each a column of the
/// per-target counts (the name kept once, however many targets).
#[derive(Default)]
struct EndpointCounts {
    columns: HashMap<String, usize>,
    /// All baselines together.
    baseline: Counts,
    /// By target index (baselines included, for their own rates).
    targets: Vec<Counts>,
}

#[derive(Default)]
struct Counts {
    exchanges: u64,
    /// By column.
    differed: Vec<u64>,
}

impl Counts {
    fn add(&mut self, columns: &[usize]) {
        self.exchanges += 1;
        for &column in columns {
            if self.differed.len() <= column {
                self.differed.resize(column + 1, 0);
            }
            self.differed[column] += 1;
        }
    }

    fn sample(&self, column: Option<usize>) -> Sample {
        Sample {
            differed: column
                .and_then(|c| self.differed.get(c).copied())
                .unwrap_or(0),
            exchanges: self.exchanges,
        }
    }
}

impl Noise {
    /// Counts one compared exchange of `target` (its index) on `endpoint`,
    /// with the fields it differed on (each counted once, however often
    /// it appears).
    pub fn count(&mut self, endpoint: &Arc<str>, target: usize, role: Role, fields: &[String]) {
        if role == Role::Baseline && !self.baselines.contains(&target) {
            self.baselines.push(target);
        }
        if !self.endpoints.contains_key(endpoint) && self.endpoints.len() >= MAX_NOISY_ENDPOINTS {
            return;
        }
        let counts = self.endpoints.entry(endpoint.clone()).or_default();
        let mut columns: Vec<usize> = Vec::with_capacity(fields.len());
        for field in fields {
            let next = counts.columns.len();
            let column = match counts.columns.get(field) {
                Some(&column) => column,
                None if next < MAX_NOISY_FIELDS => {
                    counts.columns.insert(field.clone(), next);
                    next
                }
                None => continue,
            };
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
        if counts.targets.len() <= target {
            counts.targets.resize_with(target + 1, Counts::default);
        }
        counts.targets[target].add(&columns);
        if role == Role::Baseline {
            counts.baseline.add(&columns);
        }
    }

    /// Whether a candidate's difference on `field`, in an exchange already
    /// [`count`](Noise::count)ed, is noise: the rates if they decide, else
    /// `baseline_differs_here` (a baseline differed on the same field in
    /// the same exchange).
    pub fn is_noise(
        &self,
        endpoint: &str,
        target: usize,
        field: &str,
        baseline_differs_here: bool,
    ) -> bool {
        self.samples(endpoint, target, field)
            .and_then(|(baseline, candidate)| by_rate(baseline, candidate))
            .unwrap_or(baseline_differs_here)
    }

    /// The rates of `field` for `target` on `endpoint` now; `None` where
    /// they are not counted (past the bounds, or never compared).
    pub fn rates(&self, target: usize, endpoint: &str, field: &str) -> Option<FieldRates> {
        let (baseline, own) = self.samples(endpoint, target, field)?;
        let noise = if self.baselines.contains(&target) {
            None
        } else {
            by_rate(baseline, own)
        };
        Some(FieldRates {
            rate: own.rate()?,
            baseline_rate: baseline.rate(),
            noise,
        })
    }

    /// (the baselines', the target's) samples on the field; `None` if the
    /// endpoint or the field is not counted, or the target never was.
    fn samples(&self, endpoint: &str, target: usize, field: &str) -> Option<(Sample, Sample)> {
        let counts = self.endpoints.get(endpoint)?;
        let column = counts.columns.get(field).copied()?;
        let own = counts.targets.get(target)?.sample(Some(column));
        Some((counts.baseline.sample(Some(column)), own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASELINE: usize = 0;
    const CANDIDATE: usize = 1;

    fn sample(differed: u64, exchanges: u64) -> Sample {
        Sample {
            differed,
            exchanges,
        }
    }

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn the_rates_decide_only_with_enough_samples_on_both_sides() {
        assert_eq!(by_rate(sample(9, 9), sample(9, 9)), None);
        assert_eq!(by_rate(sample(10, 10), sample(9, 9)), None);
        assert_eq!(by_rate(sample(10, 10), sample(10, 10)), Some(true));
    }

    #[test]
    fn a_candidate_rate_close_to_the_baselines_is_noise_and_a_far_higher_one_is_not() {
        // A per-answer timestamp: both always differ.
        assert_eq!(by_rate(sample(100, 100), sample(100, 100)), Some(true));
        // Within 20 % relative plus 3 points: 50 % → up to 63 %.
        assert_eq!(by_rate(sample(50, 100), sample(63, 100)), Some(true));
        assert_eq!(by_rate(sample(50, 100), sample(64, 100)), Some(false));
        // Lower than the baseline's is noise.
        assert_eq!(by_rate(sample(50, 100), sample(10, 100)), Some(true));
        // Once on the baseline (1 %), 30 % on the candidate: real.
        assert_eq!(by_rate(sample(1, 100), sample(30, 100)), Some(false));
        // ... and 4 % is within the slack of 1 % (4.2 %).
        assert_eq!(by_rate(sample(1, 100), sample(4, 100)), Some(true));
    }

    #[test]
    fn a_field_the_baseline_never_differs_on_is_never_noise_however_rare() {
        assert_eq!(by_rate(sample(0, 1000), sample(1, 1000)), Some(false));
        assert_eq!(by_rate(sample(0, 10), sample(10, 10)), Some(false));
    }

    #[test]
    fn before_enough_samples_only_a_difference_in_the_same_exchange_is_noise() {
        let endpoint: Arc<str> = Arc::from("GET /a");
        let mut noise = Noise::default();
        noise.count(&endpoint, BASELINE, Role::Baseline, &fields(&["$.ts"]));
        noise.count(&endpoint, CANDIDATE, Role::Candidate, &fields(&["$.ts"]));
        assert!(noise.is_noise(&endpoint, CANDIDATE, "$.ts", true));
        assert!(!noise.is_noise(&endpoint, CANDIDATE, "$.ts", false));
        // A field nobody counted, an endpoint nobody counted: the same.
        assert!(noise.is_noise(&endpoint, CANDIDATE, "$.other", true));
        assert!(!noise.is_noise("GET /b", CANDIDATE, "$.ts", false));
    }

    /// The old rule hid a field for the rest of the run once the baseline
    /// differed on it: here the baseline differs once (exchange 5) and the
    /// candidate on 30 % of the exchanges; every one of the candidate's
    /// differences is real, and the field's flag says so.
    #[test]
    fn one_baseline_difference_does_not_hide_a_field_the_candidate_differs_on_far_more_often() {
        let endpoint: Arc<str> = Arc::from("GET /items/{id}");
        let mut noise = Noise::default();
        let mut real = 0;
        for n in 1..=100u64 {
            let baseline = if n == 5 { fields(&["$.name"]) } else { vec![] };
            noise.count(&endpoint, BASELINE, Role::Baseline, &baseline);
            if n % 10 < 3 {
                noise.count(&endpoint, CANDIDATE, Role::Candidate, &fields(&["$.name"]));
                real += u64::from(!noise.is_noise(&endpoint, CANDIDATE, "$.name", n == 5));
            } else {
                noise.count(&endpoint, CANDIDATE, Role::Candidate, &[]);
            }
        }
        assert_eq!(real, 30);
        let rates = noise.rates(CANDIDATE, &endpoint, "$.name").unwrap();
        assert_eq!(
            rates,
            FieldRates {
                rate: 0.3,
                baseline_rate: Some(0.01),
                noise: Some(false),
            }
        );
    }

    /// A field v1 varies on as often as the candidate does: real while
    /// only direct evidence counts (the two differ in other exchanges),
    /// noise once both have enough samples, and the flag follows.
    #[test]
    fn the_decision_is_taken_again_as_the_counts_grow() {
        let endpoint: Arc<str> = Arc::from("GET /a");
        let mut noise = Noise::default();
        let mut verdicts = Vec::new();
        for n in 0..20u64 {
            let odd = if n % 2 == 1 { fields(&["$.x"]) } else { vec![] };
            let even = if n % 2 == 0 { fields(&["$.x"]) } else { vec![] };
            noise.count(&endpoint, BASELINE, Role::Baseline, &odd);
            noise.count(&endpoint, CANDIDATE, Role::Candidate, &even);
            if !even.is_empty() {
                verdicts.push(noise.is_noise(&endpoint, CANDIDATE, "$.x", false));
            }
        }
        // Exchanges 0..8 before the tenth sample, 10..18 after.
        assert_eq!(
            verdicts,
            [
                false, false, false, false, false, true, true, true, true, true
            ]
        );
        let rates = noise.rates(CANDIDATE, &endpoint, "$.x").unwrap();
        assert_eq!((rates.rate, rates.baseline_rate), (0.5, Some(0.5)));
        assert_eq!(rates.noise, Some(true));
    }

    #[test]
    fn baselines_are_pooled_and_their_own_rows_are_not_decided() {
        let endpoint: Arc<str> = Arc::from("GET /a");
        let mut noise = Noise::default();
        for n in 0..10u64 {
            let ts = fields(&["$.ts"]);
            noise.count(&endpoint, 0, Role::Baseline, &ts);
            let second = if n < 4 { ts.clone() } else { vec![] };
            noise.count(&endpoint, 2, Role::Baseline, &second);
            noise.count(&endpoint, 1, Role::Candidate, &ts);
        }
        let candidate = noise.rates(1, &endpoint, "$.ts").unwrap();
        assert_eq!(candidate.baseline_rate, Some(0.7));
        // 100 % against 70 % × 1.2 + 3 % = 87 %: real.
        assert_eq!(candidate.noise, Some(false));
        let second = noise.rates(2, &endpoint, "$.ts").unwrap();
        assert_eq!((second.rate, second.noise), (0.4, None));
        // A target with no baseline exchange at all: no baseline rate.
        let mut alone = Noise::default();
        alone.count(&endpoint, 1, Role::Candidate, &fields(&["$.ts"]));
        let rates = alone.rates(1, &endpoint, "$.ts").unwrap();
        assert_eq!((rates.rate, rates.baseline_rate), (1.0, None));
    }

    #[test]
    fn fields_in_one_exchange_count_once_and_memory_stays_bounded() {
        let endpoint: Arc<str> = Arc::from("GET /a");
        let mut noise = Noise::default();
        noise.count(&endpoint, 1, Role::Candidate, &fields(&["$.a", "$.a"]));
        assert_eq!(noise.rates(1, &endpoint, "$.a").unwrap().rate, 1.0);

        let many: Vec<String> = (0..MAX_NOISY_FIELDS + 5)
            .map(|i| format!("$.f{i}"))
            .collect();
        noise.count(&endpoint, 1, Role::Candidate, &many);
        assert_eq!(noise.endpoints[&endpoint].columns.len(), MAX_NOISY_FIELDS);
        assert!(
            noise
                .rates(1, &endpoint, &many[MAX_NOISY_FIELDS + 1])
                .is_none()
        );

        for i in 0..MAX_NOISY_ENDPOINTS + 5 {
            noise.count(&Arc::from(format!("GET /{i}")), 1, Role::Candidate, &[]);
        }
        assert_eq!(noise.endpoints.len(), MAX_NOISY_ENDPOINTS);
    }
}
