//! The compare thread's judging: each complete exchange diffed under its
//! target's rules, its differences marked as noise where the baseline's
//! rate on the field is close to the target's (`noise`), then counted in
//! the report and written to the diff log.
//! Only the compare thread holds it: nothing here waits for the capture.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{CompareConfig, DEFAULT_BODY_CAP, DEFAULT_MAX_ENDPOINTS, DiffLogTo};
use super::diff::{Additions, Sent, diff};
use super::diff_log::{DiffLog, Exchange as LoggedExchange};
use super::endpoint::{Endpoints, template};
use super::exchange::{Exchange, Missing, V1Response};
use super::log_file::{self, LogFile};
use super::noise::Noise;
use super::render::verdict_lines;
use super::report::{CompareReport, Durations, Report};
use super::rules::{self, FieldPattern, Rules};
use super::verdict::{Difference, Kind, NotCompared, Role, Verdict};
use crate::shadow::{AnswerFailure, Answered};

/// Where pairs that were never opened (no room) count in the report: not
/// an endpoint (their requests were never read), never a metric label.
pub const UNKNOWN_ENDPOINT: &str = "(not tracked: overflow)";

/// The compare thread's side: rules, noise, the report, the diff log.
pub struct Judge {
    config: CompareConfig,
    rules: HashMap<String, Rules>,
    /// For a target without rules of its own.
    default_rules: Rules,
    targets: HashMap<String, usize>,
    report: Report,
    endpoints: Endpoints,
    /// Per endpoint and field, how often each target and the baselines
    /// differ: what decides noise.
    noise: Noise,
    log: Option<DiffLog>,
}

impl Judge {
    pub fn new(config: &CompareConfig) -> std::io::Result<Judge> {
        let mut judge = Judge {
            config: CompareConfig::default(),
            rules: HashMap::new(),
            default_rules: Rules::default(),
            targets: HashMap::new(),
            report: Report::new(Vec::new(), DEFAULT_MAX_ENDPOINTS),
            endpoints: Endpoints::new(DEFAULT_MAX_ENDPOINTS),
            noise: Noise::default(),
            log: None,
        };
        judge.reconfigure(config)?;
        Ok(judge)
    }

    pub fn reconfigure(&mut self, config: &CompareConfig) -> std::io::Result<()> {
        // A configuration built by hand has 0: the default. A reload may
        // raise the bound; lowering it keeps the names already given (a
        // metric label that vanished would lose its counts).
        let max_endpoints = match config.max_endpoints {
            0 => DEFAULT_MAX_ENDPOINTS,
            n => n,
        };
        self.endpoints.set_max(max_endpoints);
        // The report's rows: the names, `other`, and the overflow row.
        self.report.set_max_endpoints(max_endpoints + 2);
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

    /// SIGHUP, whatever else it changes: the diff log's path is opened
    /// again, so that after an outside `mv` (logrotate) the lines go to a
    /// new file there.
    pub fn reopen_log(&mut self) -> std::io::Result<()> {
        if let (Some(log), Some(to @ DiffLogTo::File(_))) = (&mut self.log, &self.config.diff_log) {
            log.set_output(open_log(to, &self.config)?);
        }
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
            sent_heads,
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
                    let sent = Sent {
                        method: meta.method.as_bytes(),
                        additions: match sent_heads.iter().find(|(t, _)| *t == target) {
                            Some((_, head)) => Additions::between(&meta.head, head),
                            None => Additions::none(),
                        },
                    };
                    let diffed = self.diff(&target, v1, answered, &sent);
                    self.compare(role, &target, diffed, &endpoint, &mut noise_now)
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

    /// The differences of one target's answer with v1's, under the
    /// target's rules.
    fn diff(
        &self,
        target: &str,
        v1: &V1Response,
        answered: &Answered,
        sent: &Sent<'_>,
    ) -> Result<Vec<Difference>, NotCompared> {
        let rules = self.rules.get(target).unwrap_or(&self.default_rules);
        let cap = self
            .config
            .target(target)
            .map_or(DEFAULT_BODY_CAP, |t| t.body_cap);
        let max_decoded = cap.saturating_mul(16).min(256 << 20);
        diff(&v1.answer, &answered.answer, sent, rules, max_decoded)
    }

    /// The verdict on one target's answer, v1's being there: its
    /// differences, each marked as noise or not (`learn_noise`). A
    /// baseline's own differences are all noise, and measure the
    /// endpoint's.
    fn compare(
        &mut self,
        role: Role,
        target: &str,
        diffed: Result<Vec<Difference>, NotCompared>,
        endpoint: &Arc<str>,
        noise_now: &mut HashSet<String>,
    ) -> Verdict {
        let mut differences = match diffed {
            Err(reason) => return Verdict::NotCompared(reason),
            Ok(differences) => differences,
        };
        rules::redact(&self.config.redaction, &mut differences);
        self.learn_noise(role, target, endpoint, &mut differences, noise_now);
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

    /// Counts the exchange's differences in the noise statistics and marks
    /// each one noise or not: a baseline's all (they are what noise is
    /// measured by, and this exchange's direct evidence for the
    /// candidates, kept in `noise_now`), a candidate's where the rates
    /// (or, before enough samples, the baseline in this same exchange)
    /// say so. Baselines are judged first, so their counts include it.
    fn learn_noise(
        &mut self,
        role: Role,
        target: &str,
        endpoint: &Arc<str>,
        differences: &mut [Difference],
        noise_now: &mut HashSet<String>,
    ) {
        let Some(&index) = self.targets.get(target) else {
            return;
        };
        let fields: Vec<String> = differences.iter().map(Difference::field).collect();
        self.noise.count(endpoint, index, role, &fields);
        for (d, field) in differences.iter_mut().zip(fields) {
            d.noise = match role {
                Role::Baseline => true,
                Role::Candidate => {
                    self.noise
                        .is_noise(endpoint, index, &field, noise_now.contains(&field))
                }
            };
            if role == Role::Baseline {
                noise_now.insert(field);
            }
        }
    }

    /// The report now, each field's noise flag and rates as the counts
    /// stand.
    pub fn report(&self) -> CompareReport {
        self.report
            .snapshot_with(&|target, endpoint, field| self.noise.rates(target, endpoint, field))
    }

    /// Per target, the latency histograms of the compared pairs.
    pub fn durations(&self) -> Vec<Durations> {
        self.report.durations()
    }

    /// Differing exchanges the diff log left out (sampling, rate limit).
    pub fn diff_log_suppressed(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.suppressed())
    }

    pub fn verdict_lines(&self) -> Vec<String> {
        verdict_lines(&self.report())
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
            head: bytes::Bytes::from_static(b"GET /a HTTP/1.1\r\n\r\n"),
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
