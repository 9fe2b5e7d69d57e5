//! Routing end to end (issue 14): real clients talk to v1, the real
//! `mirror-agent` binary captures on v1's interface and replays to shadow
//! hosts with the routing a migration from goreplay relies on: a share
//! chosen by a user header (the same users on every run), a rate limit per
//! target, rewrites of the path, a header and the query, deny rules on
//! headers, the client's address for the shadow, and absolute-form request
//! targets that cannot send the agent anywhere but its targets.
//!
//! ```text
//!  client ──▶ v1 (Server; mirror-agent on veth-s) ──veth-sh0──▶ v2
//!                                                     └─veth-sh1──▶ v3
//! ```
//!
//! Needs the binary built: run as root
//! `cargo build -p mirror-agent --bins && cargo test -p mirror-tests --test routing`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_agent::route::{Share, key_in_share};
use mirror_testkit::Received;
use mirror_tests::{
    Load, MachineShare, ReplayRig,
    agent::{self, expect_counts, stop_clean},
    or_skip,
    rig::shadow_url,
};

/// The rate-limit test judges a rate: the other tests of this file wait
/// while it runs, so that a busy neighbour does not stretch its seconds.
static LOAD: MachineShare = MachineShare::new();

/// The heads a server received, as text, sorted: the agent sends over
/// several pooled connections, so the arrival order is not the client's.
fn heads(received: &Received) -> Vec<String> {
    let mut heads: Vec<String> = received
        .requests()
        .map(|r| String::from_utf8_lossy(&r.head).into_owned())
        .collect();
    heads.sort();
    heads
}

/// `expected`, sorted as [`heads`] are.
fn sorted<const N: usize>(mut expected: [String; N]) -> [String; N] {
    expected.sort();
    expected
}

/// A config file: `head` (top-level keys), then `[[target]]` tables named
/// v2 and v3 (shadows 0 and 1) with their extra lines; `None` leaves one out.
fn config(head: &str, v2: Option<&str>, v3: Option<&str>) -> String {
    let mut text = head.to_owned();
    for (index, name, extra) in [(0, "v2", v2), (1, "v3", v3)] {
        if let Some(extra) = extra {
            text.push_str(&format!(
                "\n[[target]]\nurl = \"{}\"\nname = \"{name}\"\n{extra}\n",
                shadow_url(index)
            ));
        }
    }
    text
}

// ---------------------------------------------------------------------------
// a stable set of users
// ---------------------------------------------------------------------------

const USERS: usize = 400;
const REQUESTS_PER_USER: usize = 3;
const WITHOUT_KEY: usize = 20;

/// Every user's requests (`X-User-Id: user-N`), `run` in a header of
/// their own, and some requests without the key; in a different order on
/// each run.
fn user_requests(run: u32) -> Vec<Vec<u8>> {
    let mut requests = Vec::new();
    for round in 0..REQUESTS_PER_USER {
        for u in 0..USERS {
            let u = if run.is_multiple_of(2) {
                USERS - 1 - u
            } else {
                u
            };
            requests.push(
                format!(
                    "GET /cart/{round}?item={u} HTTP/1.1\r\nHost: shop\r\n\
                     X-User-Id: user-{u}\r\nX-Run: {run}\r\n\r\n"
                )
                .into_bytes(),
            );
        }
    }
    for i in 0..WITHOUT_KEY {
        requests.push(
            format!("GET /anon/{i} HTTP/1.1\r\nHost: shop\r\nX-Run: {run}\r\n\r\n").into_bytes(),
        );
    }
    requests
}

/// The users whose requests v2 received in `run`, with their count.
fn users_of_run(received: &Received, run: u32) -> BTreeMap<String, usize> {
    let mut users = BTreeMap::new();
    for r in received
        .requests()
        .filter(|r| r.header_str("X-Run") == Some(&run.to_string()))
    {
        let user = r.header_str("X-User-Id").unwrap_or("(none)").to_owned();
        *users.entry(user).or_default() += 1;
    }
    users
}

#[test]
fn a_share_by_user_header_mirrors_the_same_quarter_of_users_on_two_runs() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let total = (USERS * REQUESTS_PER_USER + WITHOUT_KEY) as u64;
    let mut rig = ReplayRig::builder(1)
        .config(config(
            "queue_size = 4096\n",
            Some("share = 25\nshare_by = \"header:X-User-Id\""),
            None,
        ))
        .build()?;
    let mut finals = Vec::new();
    for run in 1..=2 {
        let agent = rig.start_agent()?;
        rig.send_all(&user_requests(run), 4)?;
        rig.settle(&["v2"], total)?;
        finals.push(stop_clean(agent)?.target("v2")?.clone());
    }
    let served = rig.stop_servers()?;
    let v2 = served.shadow(0);

    // The documented choice: FNV-1a 64 of the value, mod 10000 < 2500.
    let quarter = Share::from_percent(25.0).map_err(anyhow::Error::msg)?;
    let predicted: BTreeSet<String> = (0..USERS)
        .map(|u| format!("user-{u}"))
        .filter(|key| key_in_share(key.as_bytes(), quarter))
        .collect();
    let mut chosen_per_run = Vec::new();
    for (run, counts) in (1..=2).zip(&finals) {
        let users = users_of_run(v2, run);
        let chosen: BTreeSet<String> = users.keys().cloned().collect();
        ensure!(
            (75..=125).contains(&chosen.len()),
            "run {run}: {} of {USERS} users mirrored at 25 % (100 ± 25 expected)",
            chosen.len()
        );
        for (user, n) in &users {
            ensure!(
                *n == REQUESTS_PER_USER,
                "run {run}: {user} had {n} of its {REQUESTS_PER_USER} requests mirrored"
            );
        }
        ensure!(
            chosen == predicted,
            "run {run}: not the documented hash's users"
        );
        let sent = (chosen.len() * REQUESTS_PER_USER) as u64;
        expect_counts(
            "v2",
            counts,
            &[
                ("captured", total),
                ("2xx", sent),
                ("share", total - sent - WITHOUT_KEY as u64),
                ("no_share_key", WITHOUT_KEY as u64),
                ("dropped", 0),
            ],
        )?;
        chosen_per_run.push(chosen);
    }
    ensure!(
        chosen_per_run[0] == chosen_per_run[1],
        "the two runs mirrored different users"
    );
    eprintln!(
        "share by X-User-Id: {} of {USERS} users on both runs",
        chosen_per_run[0].len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// a rate limit per target
// ---------------------------------------------------------------------------

#[test]
fn a_rate_limit_of_100_a_second_under_2000_offered_passes_500_in_5_seconds() -> Result<()> {
    let _load = or_skip!(LOAD.exclusive());
    // One target: an unlimited one would be under test too, at a rate
    // the debug agent on a shared machine need not keep up with.
    let (mut rig, agent) = ReplayRig::builder(1)
        .config(config(
            "queue_size = 4096\n",
            Some("rate_limit = 100"),
            None,
        ))
        .start()?;
    let load = Load::paced(rig.client(), rig.primary_addr(), 40, 2000)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    load.check_running()?;
    let offered = load.stop()?;
    let elapsed = started.elapsed();
    rig.settle(&["v2"], offered)?;
    let stopped = stop_clean(agent)?;
    let served = rig.stop_servers()?;

    let received = served.shadow(0).request_count() as u64;
    eprintln!(
        "rate limit 100/s: {offered} offered in {elapsed:?} ({:.0}/s), v2 received {received}",
        offered as f64 / elapsed.as_secs_f64()
    );
    ensure!(
        offered >= 5_000,
        "only {offered} requests offered in {elapsed:?}: not enough above the limit to judge it"
    );
    ensure!(
        (450..=550).contains(&received),
        "v2 received {received} under a 100/s limit for 5 s (500 ± 10 % expected)"
    );
    expect_counts(
        "v2",
        stopped.target("v2")?,
        &[
            ("captured", offered),
            ("2xx", received),
            ("rate_limited", offered - received),
            ("dropped", offered - received),
            ("filtered", 0),
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// rewrites, deny by header, forwarded-for
// ---------------------------------------------------------------------------

#[test]
fn path_header_and_query_rewrites_deny_rules_and_forwarded_for_on_real_requests() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (mut rig, agent) = ReplayRig::builder(2)
        .config(config(
            "",
            Some(
                "rewrite_paths = ['^/v1/(.*)=>/v2/$1']\n\
                 rewrite_headers = ['X-Tenant:^(\\w+)-prod$=>$1-shadow']\n\
                 set_queries = [\"shadow=1\"]\n\
                 remove_queries = [\"token\"]\n\
                 deny_header_regexes = [\"User-Agent:(?i)bot\"]\n\
                 forwarded_for = true",
            ),
            Some(""),
        ))
        .start()?;
    let requests: Vec<Vec<u8>> = vec![
        b"GET /v1/users/7?token=s3cret&id=7 HTTP/1.1\r\nHost: shop\r\nX-Tenant: acme-prod\r\n\r\n"
            .to_vec(),
        b"POST /v1/orders HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Length: 5\r\n\r\nhello"
            .to_vec(),
        b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: shop\r\nX-Tenant: beta-test\r\n\r\n".to_vec(),
        b"GET /v1/users/8 HTTP/1.1\r\nHost: shop\r\nUser-Agent: Googlebot/2.1\r\n\r\n".to_vec(),
        b"GET /v1/users/9 HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8\r\nuser-agent: SomeBOT\r\n\r\n"
            .to_vec(),
    ];
    rig.send_all(&requests, 1)?;
    rig.settle(&["v2", "v3"], 5)?;
    let stopped = stop_clean(agent)?;
    let served = rig.stop_servers()?;
    expect_counts(
        "v2",
        stopped.target("v2")?,
        &[("captured", 5), ("2xx", 3), ("header", 2), ("dropped", 0)],
    )?;
    expect_counts("v3", stopped.target("v3")?, &[("captured", 5), ("2xx", 5)])?;

    // The client's address as the capture saw it: v1's view of the client.
    let client = served.v1.connections[0].client.ip();
    let expected = sorted([
        format!(
            "GET /v2/users/7?id=7&shadow=1 HTTP/1.1\r\nHost: shop\r\nX-Tenant: acme-shadow\r\n\
             X-Forwarded-For: {client}\r\nX-Mirrored-By: mirror\r\n\r\n"
        ),
        format!(
            "POST /v2/orders?shadow=1 HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 192.0.2.1, {client}\r\n\
             Content-Length: 5\r\nX-Mirrored-By: mirror\r\n\r\n"
        ),
        format!(
            "GET /static/app.js?v=3&shadow=1 HTTP/1.1\r\nHost: shop\r\nX-Tenant: beta-test\r\n\
             X-Forwarded-For: {client}\r\nX-Mirrored-By: mirror\r\n\r\n"
        ),
    ]);
    let got = heads(served.shadow(0));
    ensure!(
        got == expected,
        "v2 received:\n{got:#?}\nexpected:\n{expected:#?}"
    );
    let bodies: Vec<&[u8]> = served
        .shadow(0)
        .requests()
        .map(|r| r.body.as_slice())
        .collect();
    ensure!(bodies[1] == b"hello", "the body: {bodies:?}");

    // v3 has no rewrites: the client's bytes and the marker.
    let mut plain: Vec<String> = requests
        .iter()
        .map(|sent| {
            let sent = String::from_utf8_lossy(sent);
            let head = sent.split("\r\n\r\n").next().unwrap_or_default();
            format!("{head}\r\nX-Mirrored-By: mirror\r\n\r\n")
        })
        .collect();
    plain.sort();
    let v3 = heads(served.shadow(1));
    ensure!(v3 == plain, "v3 received:\n{v3:#?}\nexpected:\n{plain:#?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// absolute-form request targets
// ---------------------------------------------------------------------------

#[test]
fn absolute_form_requests_reach_only_the_configured_target_in_origin_form() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    // v2 is the only target; v3 listens, and the clients name it (and the
    // agent's own metrics address) in their request targets.
    let (mut rig, agent) = ReplayRig::builder(2)
        .config(config(
            "",
            Some("rewrite_paths = ['^/old/(.*)=>/new/$1']"),
            None,
        ))
        .start()?;
    let v3 = rig.shadow_addr(1);
    let requests: Vec<Vec<u8>> = vec![
        format!("GET http://{v3}/steal?x=1 HTTP/1.1\r\nHost: {v3}\r\n\r\n").into_bytes(),
        b"GET http://127.0.0.1:9464/metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\n\r\n".to_vec(),
        format!("POST https://{v3}/old/a HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi")
            .into_bytes(),
        b"GET http://shop HTTP/1.1\r\nHost: shop\r\n\r\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nHost: shop\r\n\r\n".to_vec(),
    ];
    rig.send_all(&requests, 1)?;
    rig.settle(&["v2"], 5)?;
    let stopped = stop_clean(agent)?;
    let served = rig.stop_servers()?;
    expect_counts("v2", stopped.target("v2")?, &[("captured", 5), ("2xx", 5)])?;
    ensure!(
        served.shadow(1).request_count() == 0,
        "v3, named by the clients, received {:?}",
        heads(served.shadow(1))
    );
    let expected = sorted([
        format!("GET /steal?x=1 HTTP/1.1\r\nHost: {v3}\r\nX-Mirrored-By: mirror\r\n\r\n"),
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nX-Mirrored-By: mirror\r\n\r\n".to_owned(),
        "POST /new/a HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nX-Mirrored-By: mirror\r\n\r\n"
            .to_owned(),
        "GET / HTTP/1.1\r\nHost: shop\r\nX-Mirrored-By: mirror\r\n\r\n".to_owned(),
        "OPTIONS * HTTP/1.1\r\nHost: shop\r\nX-Mirrored-By: mirror\r\n\r\n".to_owned(),
    ]);
    let got = heads(served.shadow(0));
    ensure!(
        got == expected,
        "v2 received:\n{got:#?}\nexpected:\n{expected:#?}"
    );
    let v1 = heads(&served.v1);
    ensure!(
        v1.len() == 5
            && v1
                .iter()
                .any(|h| h.starts_with(&format!("GET http://{v3}/steal"))),
        "v1 got the client's bytes: {v1:#?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// the flags, as the scripts outside the tests spell them
// ---------------------------------------------------------------------------

#[test]
fn the_routing_flags_work_on_the_command_line() -> Result<()> {
    let _load = or_skip!(LOAD.shared());
    let (mut rig, agent) = ReplayRig::builder(1)
        .mirror_to(&[0])
        .args(&[
            "--share",
            "100",
            "--share-by",
            "query:user",
            "--rate-limit",
            "1000",
            "--rewrite-path",
            "^/v1/(.*)=>/v2/$1",
            "--rewrite-header",
            "X-Env:prod=>shadow",
            "--set-query",
            "shadow=1",
            "--remove-query",
            "token",
            "--deny-header-regex",
            "X-Debug:.",
            "--forwarded-for",
        ])
        .start()?;
    let target = rig.url(0);
    let requests: Vec<Vec<u8>> = vec![
        b"GET /v1/a?user=u1&token=t HTTP/1.1\r\nHost: shop\r\nX-Env: prod\r\n\r\n".to_vec(),
        b"GET /v1/b HTTP/1.1\r\nHost: shop\r\n\r\n".to_vec(),
        b"GET /v1/c?user=u2 HTTP/1.1\r\nHost: shop\r\nX-Debug: 1\r\n\r\n".to_vec(),
    ];
    rig.send_all(&requests, 1)?;
    rig.settle(&[&target], 3)?;
    let stopped = stop_clean(agent)?;
    let served = rig.stop_servers()?;
    expect_counts(
        &target,
        stopped.target(&target)?,
        &[
            ("captured", 3),
            ("2xx", 1),
            ("no_share_key", 1),
            ("header", 1),
        ],
    )?;
    let client = served.v1.connections[0].client.ip();
    let got = heads(served.shadow(0));
    let expected = sorted([format!(
        "GET /v2/a?user=u1&shadow=1 HTTP/1.1\r\nHost: shop\r\nX-Env: shadow\r\n\
         X-Forwarded-For: {client}\r\nX-Mirrored-By: mirror\r\n\r\n"
    )]);
    ensure!(
        got == expected,
        "received:\n{got:#?}\nexpected:\n{expected:#?}"
    );
    Ok(())
}

/// `check-config` names a rewrite that refers to a group its regex does
/// not have and a zero rate, with their lines; and a share key without
/// its share.
#[test]
fn check_config_reports_routing_mistakes_with_their_lines() -> Result<()> {
    let dir = mirror_testkit::ScratchDir::new("routing-check")?;
    let check = |name: &str, text: &str, needles: &[&str]| -> Result<()> {
        let path = dir.write(name, text)?;
        let output = std::process::Command::new(agent::binary()?)
            .arg("check-config")
            .arg(&path)
            .output()
            .context("running check-config")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(!output.status.success(), "{name} accepted: {stderr}");
        for needle in needles {
            ensure!(stderr.contains(needle), "`{needle}` not in {stderr}");
        }
        Ok(())
    };
    check(
        "values.toml",
        "[[target]]\nurl = \"http://10.200.10.2:8080\"\n\
         rewrite_paths = ['^/v1/(.*)=>/v2/$2']\nrate_limit = 0\n",
        &[
            ":3:",
            "target.rewrite_paths",
            "group `2`",
            ":4:",
            "target.rate_limit",
        ],
    )?;
    check(
        "share.toml",
        "[[target]]\nurl = \"http://10.200.10.2:8080\"\nshare_by = \"header:X-User-Id\"\n",
        &[":2:", "target.share_by", "needs `share`"],
    )
}
