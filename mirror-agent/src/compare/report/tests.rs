use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::*;

use crate::compare::verdict::{Difference, Kind, NotCompared, Role, Verdict};

fn diff(kind: Kind, path: &str, left: &str, right: &str) -> Difference {
    Difference::new(kind, path, left, right)
}

fn noise(kind: Kind, path: &str, left: &str, right: &str) -> Difference {
    Difference {
        noise: true,
        ..diff(kind, path, left, right)
    }
}

const ORDERS: &str = "GET /orders/{id}";

/// Six compared pairs and two timeouts on one endpoint of `v3`.
pub(crate) fn known_report() -> Report {
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
    assert_eq!(
        (
            target.pairs.compared,
            target.pairs.matched,
            target.pairs.differ
        ),
        (6, 3, 3)
    );
    assert_eq!(target.pairs.not_compared["timeout"], 2);
    assert_eq!(target.pairs.not_compared_total(), 2);
    assert_eq!(target.pairs.match_percent, Some(50.0));
    let endpoint = &target.endpoints[0];
    assert_eq!(endpoint.endpoint, ORDERS);
    assert_eq!(
        (
            endpoint.pairs.compared,
            endpoint.pairs.matched,
            endpoint.pairs.differ
        ),
        (6, 3, 3)
    );
    assert_eq!(
        endpoint.pairs.kinds,
        Kinds {
            status: 1,
            header: 1,
            // Two pairs differ in their body; the one with two prices
            // counts once, the one whose `$.ts` is noise counts for `$.name`.
            body: 2,
            ..Kinds::default()
        }
    );
    assert_eq!(target.pairs.kinds, endpoint.pairs.kinds);

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
        endpoint.pairs.kinds,
        Kinds {
            status: 1,
            header: 0,
            body: 0,
            ..Kinds::default()
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
        .map(|e| (e.endpoint.as_str(), e.pairs.compared))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([("GET /a", 2), ("GET /b", 1), (OTHER_ENDPOINT, 2)])
    );
    assert_eq!(snapshot.targets[0].pairs.compared, 5);
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
fn percentiles_are_within_a_bucket_of_the_truth() {
    let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
    let matched = Verdict::Match(vec![]);
    for ms in 1..=1000u64 {
        let v1 = Duration::from_millis(ms);
        report.record(0, "GET /a", &matched, Some(v1), Some(v1 * 2));
    }
    let snapshot = report.snapshot();
    let latency = &snapshot.targets[0].endpoints[0].pairs.latency_ms;
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
    assert_eq!(snapshot.targets[0].pairs.latency_ms, *latency);
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
    // A target's counts and an endpoint's are written the same way.
    let counts = |object: &Value| {
        (
            object["compared"].as_u64(),
            object["match"].as_u64(),
            object["differ"].as_u64(),
        )
    };
    assert_eq!(counts(target), (Some(7), Some(4), Some(3)));
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
    assert_eq!(counts(endpoint), (Some(7), Some(4), Some(3)));
    let kinds = endpoint["kinds"].as_object().unwrap();
    assert_eq!(
        kinds.keys().collect::<Vec<_>>(),
        ["body", "failed", "header", "status", "undecodable"]
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
    assert!(serde_json::from_str::<CompareReport>(&json.replace("candidate", "nobody")).is_err());
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
    assert_eq!(report.snapshot().targets[0].pairs.compared, 0);
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

/// The noise flag is the rates' decision at snapshot time where they can
/// decide (whatever the exchanges were judged when counted), the judged
/// noise otherwise; both rates shown; a baseline's fields stay noise.
#[test]
fn a_fields_noise_flag_and_rates_come_from_the_rates_now() {
    use crate::compare::noise::FieldRates;
    let mut report = Report::new(
        vec![
            ("v2".to_owned(), Role::Candidate),
            ("v1-b".to_owned(), Role::Baseline),
        ],
        10,
    );
    let candidate = Verdict::Differ(vec![
        diff(Kind::Body, "$.name", "1", "2"),
        diff(Kind::Body, "$.ts", "1", "2"),
        diff(Kind::Body, "$.early", "1", "2"),
    ]);
    report.record(0, "GET /a", &candidate, None, None);
    report.record(
        1,
        "GET /a",
        &Verdict::Match(vec![noise(Kind::Body, "$.ts", "1", "3")]),
        None,
        None,
    );
    let rates = |target: usize, _: &str, field: &str| match (target, field) {
        (0, "$.name") => Some(FieldRates {
            rate: 0.3,
            baseline_rate: Some(0.01),
            noise: Some(false),
        }),
        (0, "$.ts") => Some(FieldRates {
            rate: 1.0,
            baseline_rate: Some(1.0),
            noise: Some(true),
        }),
        (0, "$.early") => Some(FieldRates {
            rate: 1.0,
            baseline_rate: Some(0.0),
            noise: None,
        }),
        (1, "$.ts") => Some(FieldRates {
            rate: 1.0,
            baseline_rate: Some(1.0),
            noise: None,
        }),
        _ => None,
    };
    let snapshot = report.snapshot_with(&rates);
    let v2 = &snapshot.targets[0].endpoints[0];
    let ts = field(v2, "$.ts");
    assert_eq!(
        (ts.noise, ts.noise_count, ts.rate, ts.baseline_rate),
        (true, 0, Some(1.0), Some(1.0))
    );
    let name = field(v2, "$.name");
    assert_eq!(
        (name.noise, name.rate, name.baseline_rate),
        (false, Some(0.3), Some(0.01))
    );
    assert!(!field(v2, "$.early").noise, "undecided: as judged");
    let baseline = field(&snapshot.targets[1].endpoints[0], "$.ts");
    assert_eq!((baseline.noise, baseline.rate), (true, Some(1.0)));
    assert!(snapshot.targets.iter().all(|t| t.noise_measured));
    let value = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(value["targets"][0]["noise_measured"], true);
    assert_eq!(
        // By count, then path: `$.early`, `$.name`, `$.ts`.
        value["targets"][0]["endpoints"][0]["fields"][1]["baseline_rate"],
        0.01
    );
}

/// Without a baseline that compared anything, the report says noise was
/// not measured, and no rate is claimed.
#[test]
fn without_a_baseline_noise_is_not_measured() {
    let mut report = Report::new(
        vec![
            ("v2".to_owned(), Role::Candidate),
            ("v1-b".to_owned(), Role::Baseline),
        ],
        10,
    );
    report.record(
        0,
        "GET /a",
        &Verdict::Differ(vec![diff(Kind::Body, "$.x", "1", "2")]),
        None,
        None,
    );
    report.record(
        1,
        "GET /a",
        &Verdict::NotCompared(NotCompared::TargetFailed),
        None,
        None,
    );
    let value = serde_json::to_value(report.snapshot()).unwrap();
    assert_eq!(value["targets"][0]["noise_measured"], false);
    assert!(value["targets"][0]["endpoints"][0]["fields"][0]["rate"].is_null());
    report.record(1, "GET /a", &Verdict::Match(vec![]), None, None);
    assert!(report.snapshot().targets[0].noise_measured);
    // An older agent's report, without the key, is not said unmeasured.
    let mut old = value.clone();
    old["targets"][0]
        .as_object_mut()
        .unwrap()
        .remove("noise_measured");
    let back: CompareReport = serde_json::from_value(old).unwrap();
    assert!(back.targets[0].noise_measured);
}

#[test]
fn endpoints_are_ranked_by_their_most_severe_kind_then_share_then_volume() {
    let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
    let matched = Verdict::Match(vec![]);
    let header = Verdict::Differ(vec![diff(Kind::Header, "x-a", "1", "2")]);
    let body = Verdict::Differ(vec![diff(Kind::Body, "$.a", "1", "2")]);
    let status = Verdict::Differ(vec![diff(Kind::Status, "status", "200", "404")]);
    let failed = Verdict::Differ(vec![diff(Kind::Failed, "failed", "200", "reset")]);
    let undecodable = Verdict::Differ(vec![diff(Kind::Undecodable, "undecodable", "", "")]);
    let only_noise = Verdict::Match(vec![noise(Kind::Status, "status", "200", "500")]);
    // (endpoint, verdicts): shares and volumes chosen against the order.
    let plan: Vec<(&str, Vec<(&Verdict, u64)>)> = vec![
        ("GET /headers", vec![(&header, 100)]),
        ("GET /body", vec![(&body, 50), (&header, 50)]),
        ("GET /status_rare", vec![(&status, 1), (&matched, 99)]),
        ("GET /status_often", vec![(&status, 5), (&matched, 5)]),
        ("GET /status_often_big", vec![(&status, 10), (&matched, 10)]),
        ("GET /failed", vec![(&failed, 1), (&matched, 999)]),
        ("GET /undecodable", vec![(&undecodable, 1)]),
        ("GET /noise", vec![(&only_noise, 10)]),
        ("GET /fine", vec![(&matched, 1000)]),
    ];
    for (endpoint, verdicts) in &plan {
        for (verdict, n) in verdicts {
            for _ in 0..*n {
                report.record(0, endpoint, verdict, None, None);
            }
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
            "GET /failed",
            "GET /status_often_big",
            "GET /status_often",
            "GET /status_rare",
            "GET /undecodable",
            "GET /body",
            "GET /headers",
            "GET /fine",
            "GET /noise",
        ]
    );
}

#[test]
fn the_summary_names_the_fields_that_differ_across_endpoints_with_their_flags() {
    let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 100);
    // x-powered-by on all 15 endpoints (32 pairs each); $.title on two;
    // $.rare on one endpoint, 4 pairs; $.big on one endpoint, 60 pairs
    // (over a tenth of all); $.ts noise on three.
    for i in 0..15 {
        let endpoint = format!("GET /e{i}");
        for j in 0..32 {
            let mut differences = vec![diff(Kind::Header, "x-powered-by", "Express", "Koa")];
            if i < 2 {
                differences.push(diff(Kind::Body, "$.items[3].title", "\"a\"", "\"b\""));
            }
            if i == 2 && j < 4 {
                differences.push(diff(Kind::Body, "$.rare", "1", "2"));
            }
            if i == 3 && j < 30 {
                differences.push(diff(Kind::Body, "$.big", "1", "2"));
            }
            if i < 3 {
                differences.push(noise(Kind::Body, "$.ts", "1", "2"));
            }
            report.record(0, &endpoint, &Verdict::Differ(differences), None, None);
        }
        report.record(0, &endpoint, &Verdict::Match(vec![]), None, None);
    }
    for _ in 0..30 {
        let big = Verdict::Differ(vec![diff(Kind::Body, "$.big", "1", "2")]);
        report.record(0, "GET /e3", &big, None, None);
    }
    let snapshot = report.snapshot();
    let target = &snapshot.targets[0];
    assert_eq!(target.pairs.compared, 15 * 33 + 30);
    let summary: Vec<(&str, Kind, u64, u64, u64, bool)> = target
        .summary
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.kind,
                f.count,
                f.endpoints,
                f.compared,
                f.noise,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("$.items[*].title", Kind::Body, 64, 2, 66, false),
            ("$.big", Kind::Body, 60, 1, 63, false),
            ("header:x-powered-by", Kind::Header, 480, 15, 525, false),
            ("$.ts", Kind::Body, 96, 3, 99, true),
        ]
    );
    let hints: Vec<Option<&str>> = target.summary.iter().map(|f| f.hint.as_deref()).collect();
    assert_eq!(
        hints,
        [
            Some("--compare-ignore-field '$.items[*].title'"),
            Some("--compare-ignore-field '$.big'"),
            Some("--compare-ignore-header X-Powered-By"),
            Some("--compare-ignore-field '$.ts'"),
        ]
    );

    // In the JSON, a new key per target, the old ones untouched.
    let value = serde_json::to_value(&snapshot).unwrap();
    let first = &value["targets"][0]["summary"][0];
    assert_eq!(first["path"], "$.items[*].title");
    assert_eq!(first["kind"], "body");
    assert_eq!(
        (
            first["count"].as_u64(),
            first["endpoints"].as_u64(),
            first["compared"].as_u64()
        ),
        (Some(64), Some(2), Some(66))
    );
    assert_eq!(first["hint"], "--compare-ignore-field '$.items[*].title'");
    assert_eq!(first["noise"], false);
    assert_eq!(value["targets"][0]["summary"][2]["kind"], "header");
    assert!(value["targets"][0]["endpoints"].is_array());
    let back: CompareReport = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(back, snapshot);
    // A report from an agent without the key still reads.
    let mut old = value;
    old["targets"][0].as_object_mut().unwrap().remove("summary");
    let back: CompareReport = serde_json::from_value(old).unwrap();
    assert!(back.targets[0].summary.is_empty());
}

#[test]
fn the_summary_is_bounded_and_status_and_failures_have_no_flag() {
    let mut report = Report::new(vec![("v2".to_owned(), Role::Candidate)], 10);
    for endpoint in ["GET /a", "GET /b"] {
        let mut differences: Vec<Difference> = (0..30)
            .map(|i| diff(Kind::Header, &format!("x-{i:02}"), "1", "2"))
            .collect();
        differences.push(diff(Kind::Status, "status", "200", "500"));
        differences.push(diff(Kind::Failed, "failed", "200", "reset"));
        report.record(0, endpoint, &Verdict::Differ(differences), None, None);
    }
    let snapshot = report.snapshot();
    let summary = &snapshot.targets[0].summary;
    assert_eq!(summary.len(), SUMMARY_FIELDS);
    assert_eq!(
        (summary[0].path.as_str(), summary[0].hint.as_deref()),
        ("failed", None)
    );
    assert_eq!(
        (summary[1].path.as_str(), summary[1].hint.as_deref()),
        ("status", None)
    );
    assert_eq!(summary[2].path, "header:x-00");
    // The pooled rest of an endpoint is not a field.
    assert!(summary.iter().all(|f| f.path != OTHER_FIELDS));
}
