//! The compare thread's judging: each complete exchange diffed under its
//! target's rules, its differences marked as noise where a baseline shows
//! them too, then counted in the report and written to the diff log.
//! Only the compare thread holds it: nothing here waits for the capture.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{CompareConfig, DEFAULT_BODY_CAP, DiffLogTo};
use super::diff::diff;
use super::diff_log::{DiffLog, Exchange as LoggedExchange};
use super::endpoint::{Endpoints, template};
use super::exchange::{Exchange, Missing, V1Response};
use super::render::verdict_line;
use super::report::{CompareReport, Report};
use super::rules::{FieldPattern, Rules};
use super::verdict::{Difference, Kind, NotCompared, Role, Verdict};
use crate::shadow::{AnswerFailure, Answered};

/// Most endpoints tracked; the rest are pooled under `(other)`.
pub const MAX_ENDPOINTS: usize = 200;
/// Endpoints whose noise (fields the baseline differs in) is remembered.
const MAX_NOISY_ENDPOINTS: usize = 1_000;
/// Noisy fields remembered per endpoint.
const MAX_NOISY_FIELDS: usize = 256;
/// Where pairs that were never opened (no room) count in the report.
const UNKNOWN_ENDPOINT: &str = "(not tracked: overflow)";

/// The compare thread's side: rules, noise, the report, the diff log.
pub struct Judge {
    config: CompareConfig,
    rules: HashMap<String, Rules>,
    /// For a target without rules of its own.
    default_rules: Rules,
    targets: HashMap<String, usize>,
    report: Report,
    endpoints: Endpoints,
    /// Per endpoint, the fields a baseline showed differing.
    noise: HashMap<Arc<str>, HashSet<String>>,
    log: Option<DiffLog>,
}

impl Judge {
    pub fn new(config: &CompareConfig) -> std::io::Result<Judge> {
        let mut judge = Judge {
            config: CompareConfig::default(),
            rules: HashMap::new(),
            default_rules: Rules::default(),
            targets: HashMap::new(),
            report: Report::new(Vec::new(), MAX_ENDPOINTS),
            endpoints: Endpoints::new(MAX_ENDPOINTS),
            noise: HashMap::new(),
            log: None,
        };
        judge.reconfigure(config)?;
        Ok(judge)
    }

    pub fn reconfigure(&mut self, config: &CompareConfig) -> std::io::Result<()> {
        self.rules = config
            .targets
            .iter()
            .map(|t| {
                let fields: Vec<FieldPattern> = t
                    .ignore_fields
                    .iter()
                    .filter_map(|f| FieldPattern::parse(f).ok())
                    .collect();
                (t.name.clone(), Rules::new(&t.ignore_headers, &fields))
            })
            .collect();
        for t in &config.targets {
            if !self.targets.contains_key(&t.name) {
                let index = self.report.add_target(t.name.clone(), t.role);
                self.targets.insert(t.name.clone(), index);
            }
        }
        if config.diff_log != self.config.diff_log
            || config.diff_log_sample != self.config.diff_log_sample
            || config.diff_log_rate != self.config.diff_log_rate
        {
            self.log = match &config.diff_log {
                None => None,
                Some(to) => Some(DiffLog::new(
                    open_log(to)?,
                    config.diff_log_sample,
                    config.diff_log_rate,
                )),
            };
        }
        self.config = config.clone();
        Ok(())
    }

    pub fn record_unjudged(&mut self, target: &str, reason: NotCompared) {
        if let Some(&index) = self.targets.get(target) {
            self.report.record(
                index,
                UNKNOWN_ENDPOINT,
                &Verdict::NotCompared(reason),
                None,
                None,
            );
        }
    }

    pub fn judge(&mut self, exchange: Exchange) {
        let Exchange {
            meta,
            v1,
            mut answers,
            expected,
            ..
        } = exchange;
        // A target sent a copy that had not answered by the deadline: not
        // compared, as nothing says the copy reached it (it may still
        // wait in the queue). A copy that did reach it and is slower than
        // the target's own request timeout (by default shorter than the
        // comparison's) is reported `failed` (timeout) before this.
        for target in expected.unwrap_or_default() {
            if !answers.iter().any(|(t, _)| *t == target) {
                answers.push((target, Err(Missing::NotCompared(NotCompared::Timeout))));
            }
        }
        let endpoint = self
            .endpoints
            .name(template(meta.method.as_bytes(), meta.target.as_bytes()));
        let v1 = v1.unwrap_or(Err(NotCompared::NoV1Response));
        let v1_latency = v1.as_ref().ok().and_then(|r| {
            (r.first_byte_ns >= meta.complete_ns && meta.complete_ns > 0)
                .then(|| Duration::from_nanos(r.first_byte_ns - meta.complete_ns))
        });
        // Baselines first: their differences are this exchange's noise.
        let mut ordered: Vec<_> = answers
            .into_iter()
            .filter_map(|(target, answer)| {
                let role = self.config.target(&target)?.role;
                Some((role, target, answer))
            })
            .collect();
        ordered.sort_by_key(|(role, _, _)| *role != Role::Baseline);
        let mut noise_now: HashSet<String> = HashSet::new();
        for (role, target, answer) in ordered {
            let Some(&index) = self.targets.get(&*target) else {
                continue;
            };
            let target_latency = answer.as_ref().ok().map(|a| a.latency);
            let target_status = answer.as_ref().map_or(0, |a| a.answer.status);
            let verdict = match (&v1, &answer) {
                (Err(reason), _) | (Ok(_), Err(Missing::NotCompared(reason))) => {
                    Verdict::NotCompared(*reason)
                }
                // Never noise, and never teaching noise: a baseline that
                // fails is counted in its own row only.
                (Ok(v1), Err(Missing::Failed(failure))) => failed(v1, *failure),
                (Ok(v1), Ok(answered)) => {
                    self.compare(role, &target, v1, answered, &endpoint, &mut noise_now)
                }
            };
            if let (Verdict::Differ(differences), Some(log), Ok(v1)) =
                (&verdict, &mut self.log, &v1)
            {
                let logged = LoggedExchange {
                    target: &target,
                    method: &meta.method,
                    path: &meta.target,
                    endpoint: &endpoint,
                    v1_status: v1.answer.status,
                    target_status,
                };
                log.log(&logged, differences, Instant::now());
            }
            self.report
                .record(index, &endpoint, &verdict, v1_latency, target_latency);
        }
    }

    /// The verdict on one target's answer, v1's being there: the diff
    /// under the target's rules, each difference marked as noise where a
    /// baseline differs too (in this exchange, or learned before). A
    /// baseline's own differences are all noise, and teach the endpoint's.
    fn compare(
        &mut self,
        role: Role,
        target: &str,
        v1: &V1Response,
        answered: &Answered,
        endpoint: &Arc<str>,
        noise_now: &mut HashSet<String>,
    ) -> Verdict {
        let rules = self.rules.get(target).unwrap_or(&self.default_rules);
        let cap = self
            .config
            .target(target)
            .map_or(DEFAULT_BODY_CAP, |t| t.body_cap);
        let max_decoded = cap.saturating_mul(16).min(256 << 20);
        let mut differences = match diff(&v1.answer, &answered.answer, rules, max_decoded) {
            Err(reason) => return Verdict::NotCompared(reason),
            Ok(differences) => differences,
        };
        if role == Role::Baseline {
            for d in &mut differences {
                d.noise = true;
                noise_now.insert(d.field());
            }
            self.learn_noise(endpoint, &differences);
        } else {
            let learned = self.noise.get(endpoint);
            for d in &mut differences {
                let key = d.field();
                d.noise = noise_now.contains(&key) || learned.is_some_and(|l| l.contains(&key));
            }
        }
        // A baseline's differences are all noise, and still what its row
        // counts: how noisy v1 is.
        let differs = match role {
            Role::Candidate => differences.iter().any(|d| !d.noise),
            Role::Baseline => !differences.is_empty(),
        };
        if differs {
            Verdict::Differ(differences)
        } else {
            Verdict::Match(differences)
        }
    }

    fn learn_noise(&mut self, endpoint: &Arc<str>, differences: &[Difference]) {
        if differences.is_empty()
            || (!self.noise.contains_key(endpoint) && self.noise.len() >= MAX_NOISY_ENDPOINTS)
        {
            return;
        }
        let known = self.noise.entry(endpoint.clone()).or_default();
        for d in differences {
            if known.len() >= MAX_NOISY_FIELDS {
                break;
            }
            known.insert(d.field());
        }
    }

    /// The report now.
    pub fn report(&self) -> CompareReport {
        self.report.snapshot()
    }

    /// Differing exchanges the diff log left out (sampling, rate limit).
    pub fn diff_log_suppressed(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.suppressed())
    }

    pub fn verdict_lines(&self) -> Vec<String> {
        let report = self.report.snapshot();
        report.targets.iter().map(verdict_line).collect()
    }

    pub fn flush(&mut self) {
        if let Some(log) = &mut self.log {
            log.flush();
        }
    }
}

/// The verdict on a target that got the request and failed it while v1
/// answered: one difference of kind `failed`, v1's status against how the
/// target failed (`200` vs `reset`).
fn failed(v1: &V1Response, failure: AnswerFailure) -> Verdict {
    Verdict::Differ(vec![Difference::new(
        Kind::Failed,
        "failed",
        v1.answer.status.to_string(),
        failure.as_str(),
    )])
}

fn open_log(to: &DiffLogTo) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match to {
        DiffLogTo::Stderr => Box::new(std::io::stderr()),
        DiffLogTo::File(path) => Box::new(std::io::LineWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
    })
}
