//! Noise by rate (issue 23, item 3), end to end with known truth: v1, a
//! candidate and a baseline (v1's own version) are app servers whose
//! answers differ on chosen requests only, one client asks for items
//! 1..=100 in order, and the real agent's `/compare` must tell the noise
//! (a per-answer timestamp: as often on the baseline as on the candidate)
//! from a regression on a field the baseline differed on once.
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent && cargo test -p mirror-tests --test compare_noise`.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use mirror_tests::app::Behaviour;
use mirror_tests::app_client::ClientRequest;
use mirror_tests::compare_rig::{
    AppRig, endpoint, field, fields, kinds, serial, stop, target, verdict,
};
use mirror_tests::{or_skip, rig::shadow_url};
use serde_json::Value;

/// Items asked for, one after the other on one connection: the exchanges
/// reach the judge in this order, so the rates at each are known.
const ITEMS: u64 = 100;
const ITEMS_ENDPOINT: &str = "GET /items/{id}";

/// The items the candidate renames: 30 % of them (n % 10 in 0, 1, 2).
fn regressed() -> Vec<u64> {
    (1..=ITEMS).filter(|n| n % 10 < 3).collect()
}

/// The one item the baseline renames, early and where the candidate does
/// not: the old rule ("the baseline differed once, the field is noise for
/// the rest of the run") hid 28 of the candidate's 30 differences after it.
const BASELINE_RENAMES: u64 = 5;

fn send_items(rig: &AppRig) -> Result<()> {
    let mut client = rig.client()?;
    for n in 1..=ITEMS {
        let response = client.exchange(&ClientRequest::new("GET", &format!("/items/{n}"), &[]))?;
        ensure!(
            response.status == 200,
            "GET /items/{n}: v1 answered {}",
            response.status
        );
    }
    client.close()
}

/// `(rate, baseline_rate)` of a field (`None` for `null`).
fn rates(field: &Value) -> (Option<f64>, Option<f64>) {
    (field["rate"].as_f64(), field["baseline_rate"].as_f64())
}

/// Fails if the candidate's `$.name`, renamed on 30 % of the items while
/// the baseline renamed one (item 5), is counted as noise anywhere (it
/// must be 30 real differences, the field not flagged), if the per-answer
/// `served_at`, differing on every answer of both, is not noise on every
/// exchange, if the rates shown are not the exact shares, or if without a
/// baseline the report does not say noise was not measured.
#[test]
fn a_field_the_candidate_differs_on_far_more_often_than_the_baseline_is_real_and_the_timestamp_noise()
-> Result<()> {
    let _machine = or_skip!(serial());
    let v1 = Behaviour {
        served_at: true,
        ..Behaviour::v1("v1")
    };
    let candidate = Behaviour {
        served_at: true,
        renamed_items: regressed(),
        ..Behaviour::v1("v2")
    };
    let baseline = Behaviour {
        served_at: true,
        renamed_items: vec![BASELINE_RENAMES],
        ..Behaviour::v1("v1-b")
    };
    let rig = AppRig::new(v1, vec![Some(candidate), Some(baseline)])?;
    let (v2, v1_b) = (shadow_url(0), shadow_url(1));

    let agent = rig.agent(&["--shadow", &v2, "--baseline", &v1_b], 2)?;
    send_items(&rig)?;
    let report = rig.judged(&[&v2, &v1_b], ITEMS)?;

    let v2_report = target(&report, &v2)?;
    ensure!(
        verdict(v2_report)? == (100, 70, 30) && kinds(v2_report)? == [0, 0, 30],
        "v2 (compared, match, differ) = {:?}, kinds {:?}; expected (100, 70, 30), body 30: \
         {report:#}",
        verdict(v2_report)?,
        kinds(v2_report)?
    );
    ensure!(
        v2_report["noise_measured"] == true,
        "with a baseline, noise_measured {}",
        v2_report["noise_measured"]
    );
    let items = endpoint(v2_report, ITEMS_ENDPOINT)?;
    let expected = BTreeMap::from([
        ("$.name".to_owned(), (30, false)),
        ("$.served_at".to_owned(), (100, true)),
    ]);
    ensure!(
        fields(items) == expected,
        "v2's {ITEMS_ENDPOINT} fields (count, noise) {:?}, expected {expected:?}: {items:#}",
        fields(items)
    );
    let name = field(items, "$.name")?;
    ensure!(
        name["noise_count"] == 0 && rates(name) == (Some(0.3), Some(0.01)),
        "v2's $.name: noise_count {}, (rate, baseline_rate) {:?}, expected 0 and (0.3, 0.01)",
        name["noise_count"],
        rates(name)
    );
    let served_at = field(items, "$.served_at")?;
    ensure!(
        served_at["noise_count"] == 100 && rates(served_at) == (Some(1.0), Some(1.0)),
        "v2's $.served_at: noise_count {}, (rate, baseline_rate) {:?}, expected 100 and (1, 1)",
        served_at["noise_count"],
        rates(served_at)
    );

    // The baseline measures noise: every difference of its own is noise.
    let b_report = target(&report, &v1_b)?;
    let b_items = endpoint(b_report, ITEMS_ENDPOINT)?;
    let expected = BTreeMap::from([
        ("$.name".to_owned(), (1, true)),
        ("$.served_at".to_owned(), (100, true)),
    ]);
    ensure!(
        verdict(b_report)? == (100, 0, 100) && fields(b_items) == expected,
        "the baseline: {:?}, fields {:?}, expected (100, 0, 100) and {expected:?}",
        verdict(b_report)?,
        fields(b_items)
    );
    ensure!(
        rates(field(b_items, "$.name")?) == (Some(0.01), Some(0.01)),
        "the baseline's $.name rates {:?}",
        rates(field(b_items, "$.name")?)
    );
    stop(agent)?;

    // Without a baseline nothing is noise, and the report says why.
    let agent = rig.agent(&["--shadow", &v2, "--compare"], 1)?;
    send_items(&rig)?;
    let report = rig.judged(&[&v2], ITEMS)?;
    let v2_report = target(&report, &v2)?;
    ensure!(
        verdict(v2_report)? == (100, 0, 100) && v2_report["noise_measured"] == false,
        "without a baseline: {:?}, noise_measured {}; expected (100, 0, 100), false",
        verdict(v2_report)?,
        v2_report["noise_measured"]
    );
    let items = endpoint(v2_report, ITEMS_ENDPOINT)?;
    let expected = BTreeMap::from([
        ("$.name".to_owned(), (30, false)),
        ("$.served_at".to_owned(), (100, false)),
    ]);
    ensure!(
        fields(items) == expected,
        "without a baseline, fields {:?}, expected {expected:?}",
        fields(items)
    );
    ensure!(
        rates(field(items, "$.name")?) == (Some(0.3), None),
        "without a baseline, $.name rates {:?}",
        rates(field(items, "$.name")?)
    );
    stop(agent)?;
    Ok(())
}
