use std::time::Instant;

use super::*;
use crate::compare::config::{DiffLogTo, TargetCompare};
use crate::compare::report::TargetReport;
use crate::compare::verdict::Role;
use crate::http::{Answer, BodyCollector};
use crate::shadow::{AnswerFailure, DropReason};

fn answer(status: u16, body: &str) -> Answer {
    let mut collector = BodyCollector::new(1024);
    collector.push(body.as_bytes());
    Answer {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: collector.finish(),
    }
}

fn engine(timeout: Duration) -> Engine {
    let target = |name: &str| TargetCompare {
        name: name.into(),
        role: Role::Candidate,
        ignore_headers: Vec::new(),
        ignore_fields: Vec::new(),
        body_cap: 1024,
        timeout,
    };
    Engine::start(CompareConfig {
        targets: vec![target("v2"), target("v3")],
        ..CompareConfig::default()
    })
    .unwrap()
}

/// An engine comparing v2 and v3, and one exchange sent to both.
fn sent_to_v2_and_v3(timeout: Duration) -> (Engine, Arc<dyn AnswerSink>, u64) {
    let engine = engine(timeout);
    let tag = engine
        .open(RequestMeta {
            method: "GET".into(),
            target: "/items/7".into(),
            head: bytes::Bytes::new(),
            complete_ns: 1,
        })
        .unwrap();
    engine.expect(tag, vec!["v2".into(), "v3".into()], Vec::new());
    let sink = engine.answer_sink();
    (engine, sink, tag)
}

/// v1's response to exchange `tag`: a 200 with `body`.
fn v1_answers(engine: &Engine, tag: u64, body: &str) {
    let answer = answer(200, body);
    engine.v1(
        tag,
        Ok(V1Response {
            answer,
            first_byte_ns: 2,
        }),
    );
}

fn counts(engine: &Engine, target: &str) -> (u64, u64, u64) {
    let report = engine.report();
    let t = report.targets.iter().find(|t| t.target == target).unwrap();
    (
        t.pairs.matched,
        t.pairs.differ,
        t.pairs.not_compared_total(),
    )
}

/// Waits (5 s at most) until `judged`: the compare thread judges in its
/// own time.
fn wait_until(judged: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !judged() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_exchange_is_judged_once_v1_and_every_target_answered() {
    let (engine, sink, tag) = sent_to_v2_and_v3(Duration::from_secs(60));
    let answered = |a| {
        Ok(Answered {
            answer: a,
            latency: Duration::from_millis(1),
        })
    };
    // Answers may come before v1's response.
    sink.answered(tag, "v2", answered(answer(200, r#"{"a":1}"#)));
    sink.answered(tag, "v3", answered(answer(200, r#"{"a":2}"#)));
    v1_answers(&engine, tag, r#"{"a": 1}"#);
    wait_until(|| counts(&engine, "v2") != (0, 0, 0) && counts(&engine, "v3") != (0, 0, 0));
    assert_eq!(counts(&engine, "v2"), (1, 0, 0));
    assert_eq!(counts(&engine, "v3"), (0, 1, 0));
}

#[test]
fn a_target_silent_past_the_deadline_is_a_timeout_and_one_never_sent_is_not_a_difference() {
    let (engine, sink, tag) = sent_to_v2_and_v3(Duration::from_millis(50));
    sink.answered(tag, "v3", Err(DropReason::QueueFull.into()));
    v1_answers(&engine, tag, "{}");
    // Nothing else happens: the deadline alone must get it judged.
    wait_until(|| counts(&engine, "v2") != (0, 0, 0));
    let report = engine.report();
    let v2 = report.targets.iter().find(|t| t.target == "v2").unwrap();
    let v3 = report.targets.iter().find(|t| t.target == "v3").unwrap();
    assert_eq!(v2.pairs.not_compared.get("timeout"), Some(&1), "{v2:?}");
    assert_eq!(
        v3.pairs.not_compared.get("target_failed"),
        Some(&1),
        "{v3:?}"
    );
    assert_eq!((v2.pairs.differ, v3.pairs.differ), (0, 0));
}

#[test]
fn a_streamed_requests_answers_are_waited_for_from_its_bodys_end() {
    let engine = engine(Duration::from_millis(50));
    let tag = engine
        .open_unarmed(RequestMeta {
            method: "POST".into(),
            target: "/upload".into(),
            head: bytes::Bytes::new(),
            complete_ns: 1,
        })
        .unwrap();
    engine.expect(tag, vec!["v2".into()], Vec::new());
    // Five timeouts go by while the body arrives: nothing is judged.
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(counts(&engine, "v2"), (0, 0, 0));
    engine.arm(tag);
    v1_answers(&engine, tag, "{}");
    engine.answer_sink().answered(tag, "v2", answered("{}"));
    wait_until(|| counts(&engine, "v2") != (0, 0, 0));
    assert_eq!(
        counts(&engine, "v2"),
        (1, 0, 0),
        "answered in time: matched"
    );
}

/// An engine comparing `targets` (name, role), with the diff log to
/// `log` if given; one exchange (`GET /items/7`) sent to all of them,
/// and v1's 200 to it.
fn one_exchange(
    targets: &[(&str, Role)],
    log: Option<&std::path::Path>,
) -> (Engine, Arc<dyn AnswerSink>, u64) {
    let engine = Engine::start(CompareConfig {
        targets: targets
            .iter()
            .map(|(name, role)| TargetCompare {
                name: (*name).into(),
                role: *role,
                ignore_headers: Vec::new(),
                ignore_fields: Vec::new(),
                body_cap: 1024,
                timeout: Duration::from_secs(60),
            })
            .collect(),
        diff_log: log.map(|path| DiffLogTo::File(path.to_owned())),
        diff_log_sample: 100,
        diff_log_rate: 0,
        ..CompareConfig::default()
    })
    .unwrap();
    let tag = engine
        .open(RequestMeta {
            method: "GET".into(),
            target: "/items/7".into(),
            complete_ns: 1,
            head: bytes::Bytes::new(),
        })
        .unwrap();
    engine.expect(
        tag,
        targets.iter().map(|(name, _)| (*name).into()).collect(),
        Vec::new(),
    );
    v1_answers(&engine, tag, r#"{"a":1}"#);
    let sink = engine.answer_sink();
    (engine, sink, tag)
}

fn answered(body: &str) -> Result<Answered, NoAnswer> {
    Ok(Answered {
        answer: answer(200, body),
        latency: Duration::from_millis(1),
    })
}

fn sent_then(failure: AnswerFailure) -> Result<Answered, NoAnswer> {
    Err(NoAnswer::after_sending(DropReason::IoError, failure))
}

/// The report of `target` once it judged `pairs` pairs.
fn judged(engine: &Engine, target: &str, pairs: u64) -> TargetReport {
    let report = || {
        let report = engine.report();
        report
            .targets
            .into_iter()
            .find(|t| t.target == target)
            .unwrap()
    };
    let total = |t: &TargetReport| t.pairs.compared + t.pairs.not_compared_total();
    wait_until(|| total(&report()) >= pairs);
    let t = report();
    assert_eq!(total(&t), pairs, "{t:?}");
    t
}

#[test]
fn a_target_that_failed_after_the_request_was_sent_differs_with_kind_failed() {
    let (engine, sink, tag) = one_exchange(&[("v2", Role::Candidate)], None);
    sink.answered(tag, "v2", sent_then(AnswerFailure::Reset));
    let v2 = judged(&engine, "v2", 1);
    assert_eq!(
        (v2.pairs.compared, v2.pairs.differ, v2.pairs.kinds.failed),
        (1, 1, 1),
        "{v2:?}"
    );
    assert_eq!(v2.pairs.match_percent, Some(0.0));
    assert_eq!(v2.pairs.not_compared_total(), 0, "{v2:?}");
    let endpoint = &v2.endpoints[0];
    assert_eq!(endpoint.endpoint, "GET /items/{id}");
    assert_eq!(endpoint.pairs.kinds.failed, 1);
    let field = &endpoint.fields[0];
    assert_eq!(
        (field.path.as_str(), field.count, field.noise),
        ("failed", 1, false)
    );
    assert_eq!(
        (field.example.v1.as_str(), field.example.target.as_str()),
        ("200", "reset")
    );
}

#[test]
fn a_target_that_never_got_the_request_is_not_compared() {
    let dropped = [
        DropReason::ConnectRefused,
        DropReason::ConnectTimeout,
        DropReason::Unreachable,
        DropReason::QueueFull,
        DropReason::RateLimited,
        DropReason::Expired,
        DropReason::Shutdown,
        DropReason::TlsHandshake,
        // Before the request was out, the shadow's `io_error` and
        // `timeout` are not the target's answer either.
        DropReason::IoError,
        DropReason::Timeout,
    ];
    for reason in dropped {
        let (engine, sink, tag) = one_exchange(&[("v2", Role::Candidate)], None);
        sink.answered(tag, "v2", Err(reason.into()));
        let v2 = judged(&engine, "v2", 1);
        assert_eq!(v2.pairs.compared, 0, "{reason}: {v2:?}");
        assert_eq!(v2.pairs.kinds.failed, 0, "{reason}: {v2:?}");
        assert_eq!(
            v2.pairs.not_compared.get("target_failed"),
            Some(&1),
            "{reason}: {v2:?}"
        );
    }
}

#[test]
fn without_v1s_answer_a_failed_target_is_not_compared() {
    let engine = engine(Duration::from_secs(60));
    let tag = engine
        .open(RequestMeta {
            method: "GET".into(),
            target: "/items/7".into(),
            complete_ns: 1,
            head: bytes::Bytes::new(),
        })
        .unwrap();
    engine.expect(tag, vec!["v2".into(), "v3".into()], Vec::new());
    engine.v1(tag, Err(NotCompared::NoV1Response));
    let sink = engine.answer_sink();
    sink.answered(tag, "v2", sent_then(AnswerFailure::Closed));
    sink.answered(tag, "v3", answered("{}"));
    let v2 = judged(&engine, "v2", 1);
    assert_eq!(v2.pairs.compared, 0, "{v2:?}");
    assert_eq!(v2.pairs.not_compared.get("no_v1_response"), Some(&1));
}

#[test]
fn a_baseline_failing_counts_in_its_row_and_makes_no_candidate_failure_noise() {
    let targets = [
        ("base", Role::Baseline),
        ("v2", Role::Candidate),
        ("v3", Role::Candidate),
    ];
    let (engine, sink, tag) = one_exchange(&targets, None);
    sink.answered(tag, "base", sent_then(AnswerFailure::Timeout));
    sink.answered(tag, "v2", sent_then(AnswerFailure::Timeout));
    sink.answered(tag, "v3", answered(r#"{"a":1}"#));
    let base = judged(&engine, "base", 1);
    assert_eq!(
        (base.pairs.differ, base.pairs.kinds.failed),
        (1, 1),
        "{base:?}"
    );
    let v2 = judged(&engine, "v2", 1);
    assert_eq!((v2.pairs.differ, v2.pairs.kinds.failed), (1, 1), "{v2:?}");
    assert!(!v2.endpoints[0].fields[0].noise, "{v2:?}");
    let v3 = judged(&engine, "v3", 1);
    assert_eq!(v3.pairs.matched, 1, "{v3:?}");

    // Later exchanges: what the baseline showed is not learned as
    // noise either.
    let tag = engine
        .open(RequestMeta {
            method: "GET".into(),
            target: "/items/8".into(),
            complete_ns: 1,
            head: bytes::Bytes::new(),
        })
        .unwrap();
    engine.expect(tag, vec!["base".into(), "v2".into()], Vec::new());
    v1_answers(&engine, tag, r#"{"a":1}"#);
    sink.answered(tag, "base", answered(r#"{"a":1}"#));
    sink.answered(tag, "v2", sent_then(AnswerFailure::Reset));
    let v2 = judged(&engine, "v2", 2);
    assert_eq!((v2.pairs.differ, v2.pairs.kinds.failed), (2, 2), "{v2:?}");
    let failed = &v2.endpoints[0].fields[0];
    assert_eq!((failed.count, failed.noise_count), (2, 0), "{v2:?}");
}

#[test]
fn a_failed_pair_is_written_to_the_diff_log_with_target_status_0() {
    let path =
        std::env::temp_dir().join(format!("mirror-engine-failed-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (engine, sink, tag) = one_exchange(&[("v2", Role::Candidate)], Some(&path));
    sink.answered(tag, "v2", sent_then(AnswerFailure::Malformed));
    judged(&engine, "v2", 1);
    engine.finish();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert_eq!(
        (line["v1_status"].as_u64(), line["target_status"].as_u64()),
        (Some(200), Some(0))
    );
    assert_eq!(
        line["differences"],
        serde_json::json!([
            {"kind": "failed", "path": "failed", "v1": "200", "target": "malformed", "noise": false},
        ])
    );
}
