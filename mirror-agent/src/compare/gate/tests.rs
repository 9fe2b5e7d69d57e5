use super::*;

fn results(matched: u64, noise: u64, body: u64, failed: u64) -> Results {
    Results {
        matched,
        noise,
        body,
        failed,
        ..Results::default()
    }
}

#[test]
fn too_few_exchanges_are_inconclusive_whatever_they_say() {
    let total = results(0, 0, 0, 100);
    let verdict = decide("v3", "agent", total, &[], &Rule::default());
    assert_eq!(verdict.verdict, Decision::Inconclusive);
    assert_eq!(
        verdict.why,
        "100 compared, the rule needs 500 (100 differ so far)"
    );
    assert_eq!(
        (verdict.verdict.exit_code(), verdict.verdict.http_status()),
        (2, 503)
    );
}

#[test]
fn the_share_that_differs_decides_noise_excluded_failures_included() {
    let rule = Rule {
        max_endpoint_differ: None,
        ..Rule::default()
    };
    // 10 of 1000 differ (5 failed, 5 body): exactly 1 %, passes.
    let at_limit = results(900, 90, 5, 5);
    let verdict = decide("v2", "agent", at_limit, &[], &rule);
    assert_eq!(verdict.verdict, Decision::Pass, "{}", verdict.why);
    assert_eq!(
        (verdict.compared, verdict.differ, verdict.matched),
        (1000, 10, 990)
    );
    assert_eq!(verdict.why, "10 of 1000 compared differ (1 %), at most 1 %");
    // One more failure: over.
    let over = results(899, 90, 5, 6);
    let verdict = decide("v3", "agent", over, &[], &rule);
    assert_eq!(verdict.verdict, Decision::Fail);
    assert_eq!(
        verdict.line(),
        "fail: v3: 11 of 1000 compared differ (1.1 %), over 1 %"
    );
    // Noise alone never fails.
    let noisy = results(0, 1000, 0, 0);
    assert_eq!(
        decide("v2", "agent", noisy, &[], &rule).verdict,
        Decision::Pass
    );
}

#[test]
fn one_endpoint_over_its_limit_fails_a_target_whose_total_passes() {
    let endpoints = vec![
        ("GET /items/{id}".to_owned(), results(180, 0, 20, 0)),
        ("GET /health".to_owned(), results(9000, 0, 0, 0)),
        // Too few to be judged alone, however bad.
        ("POST /orders".to_owned(), results(0, 0, 50, 0)),
    ];
    let total = results(9180, 0, 70, 0);
    let verdict = decide("v3", "agent", total, &endpoints, &Rule::default());
    assert_eq!(verdict.verdict, Decision::Fail);
    assert_eq!(
        verdict.why,
        "endpoint GET /items/{id}: 20 of 200 (10 %), over 5 % per endpoint; \
         70 of 9250 compared differ (0.76 %)"
    );
    let names: Vec<&str> = verdict
        .endpoints
        .iter()
        .map(|e| e.endpoint.as_str())
        .collect();
    assert_eq!(names, ["GET /items/{id}", "POST /orders", "GET /health"]);
    assert!(verdict.endpoints[0].over_limit && verdict.endpoints[0].judged);
    assert!(!verdict.endpoints[1].judged && !verdict.endpoints[1].over_limit);
    // Without the per-endpoint part, the total decides: pass.
    let rule = Rule {
        max_endpoint_differ: None,
        ..Rule::default()
    };
    assert_eq!(
        decide("v3", "agent", total, &endpoints, &rule).verdict,
        Decision::Pass
    );
}

#[test]
fn the_query_names_the_parameters_like_the_flags() {
    let (target, rule) = Rule::from_query(
        "target=http://myapp-v2:9000&max-differ=2.5%&min-compared=50&max-endpoint-differ=off",
    )
    .unwrap();
    assert_eq!(target, "http://myapp-v2:9000");
    assert_eq!(rule.max_differ, 2.5);
    assert_eq!(rule.min_compared, 50);
    assert_eq!(rule.max_endpoint_differ, None);
    assert_eq!(rule.min_endpoint_compared, 100);
    // Encoded the same.
    let (target, rule) =
        Rule::from_query("target=http%3A%2F%2Fmyapp-v2%3A9000&max-differ=1%25").unwrap();
    assert_eq!(
        (target.as_str(), rule.max_differ),
        ("http://myapp-v2:9000", 1.0)
    );
    // What the command sends reads back as itself.
    let sent = Rule {
        max_differ: 0.5,
        min_compared: 7,
        max_endpoint_differ: Some(3.0),
        min_endpoint_compared: 2,
    };
    let (_, read) = Rule::from_query(&format!("target=x&{}", sent.to_query())).unwrap();
    assert_eq!(read, sent);
}

#[test]
fn bad_parameters_say_what_is_wrong() {
    let err = |q: &str| Rule::from_query(q).unwrap_err();
    assert!(err("max-differ=1%").contains("target is missing"));
    assert!(err("target=x&max-differ=abc").contains("max-differ: `abc` is not a percentage"));
    assert!(err("target=x&max-differ=150%").contains("not a percentage"));
    assert!(err("target=x&min-compared=-1").contains("min-compared"));
    assert!(err("target=x&maxdiffer=1").contains("unknown parameter `maxdiffer`"));
}

#[test]
fn the_body_keeps_its_keys() {
    let verdict = decide("v2", "agent", results(600, 0, 0, 0), &[], &Rule::default());
    let json = serde_json::to_value(&verdict).unwrap();
    for key in [
        "target",
        "verdict",
        "why",
        "source",
        "compared",
        "match",
        "noise",
        "differ",
        "differ_percent",
        "results",
        "rule",
        "endpoints",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert_eq!(json["verdict"], "pass");
    assert_eq!(json["rule"]["max_differ_percent"], 1.0);
    assert_eq!(json["results"]["match"], 600);
    let back: GateVerdict = serde_json::from_value(json).unwrap();
    assert_eq!(back, verdict);
}
