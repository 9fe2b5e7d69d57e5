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
use super::exchange::{Exchange, V1Response};
use super::log_file::{self, LogFile};
use super::render::verdict_line;
use super::report::{CompareReport, Report};
use super::rules::{self, FieldPattern, Rules};
use super::verdict::{Difference, NotCompared, Role, Verdict};
use crate::shadow::Answered;

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
        let new_log = self.log.is_none()
            || config.diff_log != self.config.diff_log
            || config.diff_log_sample != self.config.diff_log_sample
            || config.diff_log_rate != self.config.diff_log_rate;
        match (&mut self.log, &config.diff_log) {
            (_, None) => self.log = None,
            (_, Some(to)) if new_log => {
                self.log = Some(DiffLog::new(
                    open_log(to, config)?,
                    config.diff_log_sample,
                    config.diff_log_rate,
                ));
            }
            (Some(log), Some(to @ DiffLogTo::File(_))) => {
                // SIGHUP: the path is opened again, so that after an
                // outside `mv` (logrotate) the lines go to a new file.
                log.set_output(open_log(to, config)?);
            }
            _ => {}
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
        // A target sent a copy that had not answered by the deadline.
        for target in expected.unwrap_or_default() {
            if !answers.iter().any(|(t, _)| *t == target) {
                answers.push((target, Err(NotCompared::Timeout)));
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
                (Err(reason), _) | (_, Err(reason)) => Verdict::NotCompared(*reason),
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
        rules::redact(&self.config.redaction, &mut differences);
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

fn open_log(to: &DiffLogTo, config: &CompareConfig) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match to {
        DiffLogTo::Stderr => Box::new(std::io::stderr()),
        DiffLogTo::File(path) => {
            let max_size = match config.diff_log_max_size {
                0 => log_file::DEFAULT_MAX_SIZE,
                size => size,
            };
            let keep = config.diff_log_keep.unwrap_or(log_file::DEFAULT_KEEP);
            // Whole lines to the file, so that it rotates between lines.
            Box::new(std::io::LineWriter::new(LogFile::open(
                path, max_size, keep,
            )?))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::compare::config::TargetCompare;
    use crate::compare::exchange::RequestMeta;
    use crate::http::{Answer, BodyCollector};

    fn answer(body: &str) -> Answer {
        let mut collector = BodyCollector::new(1024);
        collector.push(body.as_bytes());
        Answer {
            status: 200,
            headers: Vec::new(),
            body: collector.finish(),
        }
    }

    /// One exchange on which v2 answers otherwise than v1.
    fn differing() -> Exchange {
        let mut exchange = Exchange::new(RequestMeta {
            method: "GET".into(),
            target: "/a".into(),
            complete_ns: 1,
        });
        exchange.v1 = Some(Ok(V1Response {
            answer: answer("one"),
            first_byte_ns: 2,
        }));
        exchange.expected = Some(vec!["v2".into()]);
        exchange.answers.push((
            "v2".into(),
            Ok(Answered {
                answer: answer("two"),
                latency: Duration::from_millis(1),
            }),
        ));
        exchange
    }

    #[test]
    fn a_reload_opens_the_diff_log_again_so_a_moved_file_is_let_go() {
        let dir = std::env::temp_dir().join(format!("mirror-judge-hup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("diff.jsonl");
        let config = CompareConfig {
            targets: vec![TargetCompare {
                name: "v2".into(),
                role: Role::Candidate,
                ignore_headers: Vec::new(),
                ignore_fields: Vec::new(),
                body_cap: 1024,
                timeout: Duration::from_secs(1),
            }],
            diff_log: Some(DiffLogTo::File(path.clone())),
            diff_log_sample: 100,
            diff_log_rate: 0,
            ..CompareConfig::default()
        };
        let mut judge = Judge::new(&config).unwrap();
        judge.judge(differing());
        let moved = dir.join("diff.jsonl.old");
        std::fs::rename(&path, &moved).unwrap();
        judge.reconfigure(&config).unwrap(); // SIGHUP, same settings
        judge.judge(differing());
        judge.flush();
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!((lines(&moved), lines(&path)), (1, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
