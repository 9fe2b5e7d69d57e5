//! Rewrites byte for byte and each rule kind, on requests framed by the
//! real http stage.

use super::*;
use crate::http::testing::frame_one as one;

fn url(s: &str) -> TargetUrl {
    TargetUrl::parse(s).unwrap()
}

fn rewrite(
    global: &Rewrites,
    target: &Rewrites,
    marker: Option<&HeaderLine>,
    u: &str,
    stream: &[u8],
) -> Vec<u8> {
    RewriteSet::new(global, target, marker, &url(u))
        .apply(&one(stream))
        .to_vec()
}

/// [`rewrite`]'s output as text, for requests that are text.
fn rewritten(
    global: &Rewrites,
    target: &Rewrites,
    marker: Option<&HeaderLine>,
    u: &str,
    stream: &[u8],
) -> String {
    String::from_utf8(rewrite(global, target, marker, u, stream)).unwrap()
}

fn plain(stream: &[u8]) -> Vec<u8> {
    rewrite(
        &Rewrites::default(),
        &Rewrites::default(),
        None,
        "http://t:1",
        stream,
    )
}

fn line(s: &str) -> HeaderLine {
    s.parse().unwrap()
}

#[test]
fn without_rewrites_the_bytes_are_the_clients() {
    let get = b"GET /a?b=c HTTP/1.1\r\nhost: Example.COM\r\nX-MiXed:  v1 \r\nAccept: */*\r\nX-MiXed: v2\r\n\r\n";
    assert_eq!(plain(get), get);
    let post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world";
    assert_eq!(plain(post), post);
}

#[test]
fn a_chunked_body_is_sent_as_one_chunk_with_the_trailers() {
    let stream = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n";
    let expected = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\nX-Checksum: 42\r\n\r\n";
    assert_eq!(plain(stream), expected);
}

#[test]
fn stripped_headers_leave_every_line_of_that_name_and_nothing_else() {
    let stream = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nA: 1\r\ncookie: a=1\r\nB: 2\r\nCookie: b=2\r\n\r\n";
    let strip = Rewrites {
        strip: vec!["Authorization".into(), "Cookie".into()],
        ..Rewrites::default()
    };
    assert_eq!(
        rewrite(&strip, &Rewrites::default(), None, "http://t:1", stream),
        b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"
    );
}

#[test]
fn set_headers_replace_the_clients_and_come_before_the_marker() {
    let stream = b"GET / HTTP/1.1\r\nX-Env: prod\r\nHost: x\r\nx-env: also\r\n\r\n";
    let global = Rewrites {
        set: vec![line("X-Env: shadow"), line("X-Team: a")],
        ..Rewrites::default()
    };
    let target = Rewrites {
        set: vec![line("x-team: b")],
        ..Rewrites::default()
    };
    let marker = default_marker();
    assert_eq!(
        rewrite(&global, &target, Some(&marker), "http://t:1", stream),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Env: shadow\r\nx-team: b\r\nX-Mirrored-By: mirror\r\n\r\n"
    );
}

#[test]
fn host_modes_keep_replace_in_place_or_add() {
    let stream = b"GET / HTTP/1.1\r\nA: 1\r\nhOsT:  app.example \r\nB: 2\r\n\r\n";
    let none = Rewrites::default();
    let host = |h: HostHeader| Rewrites {
        host: Some(h),
        ..Rewrites::default()
    };
    assert_eq!(
        rewrite(
            &host(HostHeader::Original),
            &none,
            None,
            "http://t:1",
            stream
        ),
        stream
    );
    assert_eq!(
        rewrite(
            &host(HostHeader::Target),
            &none,
            None,
            "http://[::1]:9000/x",
            stream
        ),
        b"GET /x/ HTTP/1.1\r\nA: 1\r\nhOsT:  [::1]:9000 \r\nB: 2\r\n\r\n"
    );
    // The target's own setting wins over the global one.
    assert_eq!(
        rewrite(
            &host(HostHeader::Target),
            &host(HostHeader::Value("v2.internal".into())),
            None,
            "http://t:1",
            stream
        ),
        b"GET / HTTP/1.1\r\nA: 1\r\nhOsT:  v2.internal \r\nB: 2\r\n\r\n"
    );
    // An HTTP/1.0 request without Host gets one.
    assert_eq!(
        rewrite(
            &host(HostHeader::Target),
            &none,
            None,
            "http://shadow:8080",
            b"GET / HTTP/1.0\r\n\r\n"
        ),
        b"GET / HTTP/1.0\r\nHost: shadow:8080\r\n\r\n"
    );
}

#[test]
fn a_path_prefix_goes_before_the_path() {
    let none = Rewrites::default();
    let r = |target: &str| {
        let stream = format!("OPTIONS {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = rewrite(&none, &none, None, "http://t:1/v2/", stream.as_bytes());
        let out = String::from_utf8(out).unwrap();
        out.split(' ').nth(1).unwrap().to_string()
    };
    assert_eq!(r("/api/x?y=1"), "/v2/api/x?y=1");
    assert_eq!(r("http://h:1/api?q"), "/v2/api?q", "in origin form");
    assert_eq!(r("http://h"), "/v2/");
    assert_eq!(r("*"), "*");
}

#[test]
fn connection_reuse_follows_the_request() {
    let none = Rewrites::default();
    let set = RewriteSet::new(&none, &none, None, &url("http://t:1"));
    let reusable = |request: &[u8]| set.apply(&one(request)).reusable();
    assert!(reusable(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert!(!reusable(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!reusable(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(reusable(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(!reusable(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    ));
}

#[test]
fn the_prepared_request_keeps_the_capture_time_for_the_send_delay() {
    let none = Rewrites::default();
    let set = RewriteSet::new(&none, &none, None, &url("http://t:1"));
    let mut request = one(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    request.complete_ns = 123_456_789;
    assert_eq!(set.apply(&request).captured_ns(), 123_456_789);
}

fn check(rules: &Rules, stream: &[u8]) -> Result<(), FilterReason> {
    let r = one(stream);
    rules.check(&r, &normalized_path(r.target()), &mut Rng::new(1))
}

#[test]
fn deny_rules_hold_however_the_path_is_spelled() {
    let rules = Rules {
        deny_paths: vec![PathRule::Prefix("/admin".into())],
        ..Rules::default()
    };
    for target in [
        "//admin/x",
        "/%61dmin/x",
        "/./admin/x",
        "/a/../admin/x",
        "http://other/admin/x",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            check(&rules, request.as_bytes()),
            Err(FilterReason::Path),
            "{target}"
        );
    }
    assert_eq!(
        check(&rules, b"GET /public HTTP/1.1\r\nHost: h\r\n\r\n"),
        Ok(())
    );
}

const GET_API: &[u8] =
    b"GET /api/users?id=1 HTTP/1.1\r\nHost: x\r\nX-Canary: 1\r\nUser-Agent: curl/8.0\r\n\r\n";
const POST_ADMIN: &[u8] = b"POST /admin/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";

#[test]
fn methods_are_an_allow_list() {
    let rules = Rules {
        methods: vec!["GET".into(), "HEAD".into()],
        ..Rules::default()
    };
    assert_eq!(check(&rules, GET_API), Ok(()));
    assert_eq!(check(&rules, POST_ADMIN), Err(FilterReason::Method));
    assert_eq!(
        check(&rules, b"PURGE / HTTP/1.1\r\nHost: h\r\n\r\n"),
        Err(FilterReason::Method)
    );
}

#[test]
fn paths_are_allowed_by_prefix_or_regex_and_deny_wins() {
    let allow = Rules {
        allow_paths: vec![
            PathRule::Prefix("/api".into()),
            PathRule::Regex(Pattern::new("^/v[0-9]+/").unwrap()),
        ],
        ..Rules::default()
    };
    assert_eq!(check(&allow, GET_API), Ok(()));
    assert_eq!(
        check(&allow, b"GET /v2/x HTTP/1.1\r\nHost: h\r\n\r\n"),
        Ok(())
    );
    assert_eq!(check(&allow, POST_ADMIN), Err(FilterReason::Path));
    // The query string is not part of the path.
    assert_eq!(
        check(&allow, b"GET /x?/api HTTP/1.1\r\nHost: h\r\n\r\n"),
        Err(FilterReason::Path)
    );

    let deny = Rules {
        allow_paths: vec![PathRule::Prefix("/".into())],
        deny_paths: vec![
            PathRule::Prefix("/admin".into()),
            PathRule::Regex(Pattern::new("/users$").unwrap()),
        ],
        ..Rules::default()
    };
    assert_eq!(check(&deny, POST_ADMIN), Err(FilterReason::Path));
    assert_eq!(check(&deny, GET_API), Err(FilterReason::Path));
    assert_eq!(check(&deny, b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(()));
}

#[test]
fn header_matches_test_presence_value_and_regex_and_all_must_hold() {
    let m = |name: &str, test| Rules {
        headers: vec![HeaderMatch {
            name: name.into(),
            test,
        }],
        ..Rules::default()
    };
    assert_eq!(check(&m("x-canary", HeaderTest::Present), GET_API), Ok(()));
    assert_eq!(
        check(&m("X-Other", HeaderTest::Present), GET_API),
        Err(FilterReason::Header)
    );
    assert_eq!(
        check(&m("X-Canary", HeaderTest::Equals("1".into())), GET_API),
        Ok(())
    );
    assert_eq!(
        check(&m("X-Canary", HeaderTest::Equals("2".into())), GET_API),
        Err(FilterReason::Header)
    );
    let curl = HeaderTest::Regex(Pattern::new("^curl/").unwrap());
    assert_eq!(check(&m("User-Agent", curl.clone()), GET_API), Ok(()));
    assert_eq!(
        check(&m("User-Agent", curl), POST_ADMIN),
        Err(FilterReason::Header)
    );
    // Any occurrence of a repeated header may match.
    let twice = b"GET / HTTP/1.1\r\nHost: h\r\nX-Tag: a\r\nX-Tag: b\r\n\r\n";
    assert_eq!(
        check(&m("X-Tag", HeaderTest::Equals("b".into())), twice),
        Ok(())
    );

    let both = Rules {
        headers: vec![
            HeaderMatch {
                name: "X-Canary".into(),
                test: HeaderTest::Present,
            },
            HeaderMatch {
                name: "X-Debug".into(),
                test: HeaderTest::Present,
            },
        ],
        ..Rules::default()
    };
    assert_eq!(check(&both, GET_API), Err(FilterReason::Header));
}

#[test]
fn the_first_failing_rule_names_the_reason() {
    let rules = Rules {
        share: Some(Share::from_percent(0.0).unwrap()),
        methods: vec!["GET".into()],
        allow_paths: vec![PathRule::Prefix("/api".into())],
        headers: vec![HeaderMatch {
            name: "X-Canary".into(),
            test: HeaderTest::Present,
        }],
        ..Rules::default()
    };
    assert_eq!(check(&rules, POST_ADMIN), Err(FilterReason::Method));
    assert_eq!(
        check(&rules, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"),
        Err(FilterReason::Path)
    );
    assert_eq!(
        check(&rules, b"GET /api HTTP/1.1\r\nHost: h\r\n\r\n"),
        Err(FilterReason::Header)
    );
    assert_eq!(check(&rules, GET_API), Err(FilterReason::Share));
}

#[test]
fn header_lines_and_host_modes_parse() {
    assert_eq!(line("X-Env:shadow ").to_string(), "X-Env: shadow");
    assert!("X Env: a".parse::<HeaderLine>().is_err());
    assert!("no-colon".parse::<HeaderLine>().is_err());
    assert!("X: a\r\nY: b".parse::<HeaderLine>().is_err());
    assert_eq!("target".parse::<HostHeader>(), Ok(HostHeader::Target));
    assert_eq!("original".parse::<HostHeader>(), Ok(HostHeader::Original));
    assert_eq!(
        "v2.svc".parse::<HostHeader>(),
        Ok(HostHeader::Value("v2.svc".into()))
    );
}

#[test]
fn targets_with_equal_rewrites_share_one_rewrite_set() {
    let config = |host: Option<HostHeader>| RouteConfig {
        rewrites: Rewrites {
            host,
            ..Rewrites::default()
        },
        targets: ["http://a:1", "http://b:2", "http://c:3/p"]
            .iter()
            .map(|u| RouteTarget::new(url(u)))
            .collect(),
        ..RouteConfig::default()
    };
    let index = |plan: &Plan| plan.targets.iter().map(|t| t.rewrite).collect::<Vec<_>>();
    let plan = Plan::new(config(None));
    assert_eq!(
        (plan.rewrites.len(), index(&plan)),
        (2, vec![0, 0, 1]),
        "c has a path prefix"
    );
    let plan = Plan::new(config(Some(HostHeader::Target)));
    assert_eq!(plan.rewrites.len(), 3, "each its own Host");
    let plan = Plan::new(config(Some(HostHeader::Value("x".into()))));
    assert_eq!(index(&plan), vec![0, 0, 1]);
}

#[test]
fn every_target_gets_a_verdict_and_equal_rewrites_share_the_bytes() {
    let target = |u: &str| RouteTarget::new(url(u));
    let mut posts_only = target("http://c:3");
    posts_only.rules.methods = vec!["POST".to_owned()];
    let config = RouteConfig {
        targets: vec![target("http://a:1"), target("http://b:2"), posts_only],
        ..RouteConfig::default()
    };
    let mut router = Router::new(Arc::new(Plan::new(config.clone())));
    let mut verdicts = Vec::new();
    router.route(&one(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"), &mut verdicts);
    let [
        Verdict::Send(a),
        Verdict::Send(b),
        Verdict::Filtered(FilterReason::Method),
    ] = &verdicts[..]
    else {
        panic!("{verdicts:?}");
    };
    assert!(Arc::ptr_eq(a, b), "one rewrite set, one copy of the bytes");
    assert!(a.head().ends_with(b"X-Mirrored-By: mirror\r\n\r\n"));

    router.route(
        &one(b"GET / HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n"),
        &mut verdicts,
    );
    assert_eq!(verdicts, vec![Verdict::Filtered(FilterReason::Loop); 3]);

    router.set_plan(Arc::new(Plan::new(RouteConfig {
        dry_run: true,
        ..config
    })));
    router.route(&one(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"), &mut verdicts);
    assert_eq!(verdicts, vec![Verdict::Filtered(FilterReason::DryRun); 3]);
}

#[test]
fn routers_and_plans_can_move_between_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + Clone>() {}
    send::<Router>();
    send_sync::<Arc<Plan>>();
}

#[test]
fn stripped_headers_are_left_out_of_chunked_trailers_too() {
    let stream = b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nAuthorization: secret\r\nX-Sum: 1\r\n\r\n";
    let strip = Rewrites {
        strip: vec!["authorization".into()],
        ..Rewrites::default()
    };
    let none = Rewrites::default();
    let sent = rewrite(&strip, &none, None, "http://t:1", stream);
    assert_eq!(
        String::from_utf8_lossy(&sent),
        "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n"
    );
}

// ---------------------------------------------------------------------------
// the stable share, deny rules on headers
// ---------------------------------------------------------------------------

fn share(percent: f64) -> Option<Share> {
    Some(Share::from_percent(percent).unwrap())
}

fn user_request(user: &str, n: usize) -> crate::http::Request {
    one(
        format!("GET /item/{n}?user={user}&n={n} HTTP/1.1\r\nHost: x\r\nX-User-Id: {user}\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn a_share_by_header_picks_the_same_users_every_time_and_all_their_requests() {
    let rules = Rules {
        share: share(25.0),
        share_by: Some("header:x-user-id".parse().unwrap()),
        ..Rules::default()
    };
    let chosen = |seed: u64| -> Vec<bool> {
        let mut rng = Rng::new(seed);
        (0..400)
            .map(|u| {
                let r = user_request(&format!("user-{u}"), u);
                rules.check(&r, &normalized_path(r.target()), &mut rng) == Ok(())
            })
            .collect()
    };
    let first = chosen(1);
    assert_eq!(first, chosen(99), "no randomness in it");
    let count = first.iter().filter(|c| **c).count();
    assert!((75..=125).contains(&count), "{count} of 400 users at 25 %");
    // Every request of a user gets the same answer.
    for (u, chosen) in first.iter().enumerate().take(20) {
        let user = format!("user-{u}");
        let mut rng = Rng::new(7);
        for n in 0..10 {
            let r = user_request(&user, n);
            let verdict = rules.check(&r, &normalized_path(r.target()), &mut rng);
            assert_eq!(verdict == Ok(()), *chosen, "{user} request {n}");
        }
    }
    // The hash is the documented one: FNV-1a 64 of the value's bytes.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    for (u, chosen) in first.iter().enumerate() {
        let key = format!("user-{u}");
        assert_eq!(*chosen, fnv1a64(key.as_bytes()) % 10_000 < 2_500, "{key}");
    }
    // A larger share keeps the smaller one's users.
    let half = Share::from_percent(50.0).unwrap();
    let quarter = Share::from_percent(25.0).unwrap();
    for u in 0..400 {
        let key = format!("user-{u}");
        assert!(!key_in_share(key.as_bytes(), quarter) || key_in_share(key.as_bytes(), half));
    }
}

#[test]
fn a_request_without_the_share_key_is_filtered_no_share_key() {
    let rules = Rules {
        share: share(100.0),
        share_by: Some(ShareKey::Header("X-User-Id".into())),
        ..Rules::default()
    };
    assert_eq!(
        check(&rules, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Err(FilterReason::NoShareKey)
    );
    assert_eq!(
        check(&rules, b"GET / HTTP/1.1\r\nHost: h\r\nX-User-Id:\r\n\r\n"),
        Err(FilterReason::NoShareKey),
        "an empty value is no key"
    );
    assert_eq!(
        check(&rules, b"GET / HTTP/1.1\r\nHost: h\r\nX-User-Id: 7\r\n\r\n"),
        Ok(())
    );
}

#[test]
fn a_share_by_query_parameter_or_client_address_hashes_that_value() {
    let by_query = Rules {
        share: share(50.0),
        share_by: Some("query:user".parse().unwrap()),
        ..Rules::default()
    };
    for u in 0..100 {
        let key = format!("u{u}");
        let r = format!("GET /p?a=1&user={key}&user=other HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            check(&by_query, r.as_bytes()) == Ok(()),
            key_in_share(key.as_bytes(), Share::from_percent(50.0).unwrap()),
            "{key}"
        );
    }
    assert_eq!(
        check(&by_query, b"GET /p?users=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
        Err(FilterReason::NoShareKey)
    );
    assert_eq!(query_param(b"/p?a&user=x#user=y", "user"), Some(&b"x"[..]));
    assert_eq!(query_param(b"/p#?user=y", "user"), None);

    let by_ip = Rules {
        share: share(50.0),
        share_by: Some("client-ip".parse().unwrap()),
        ..Rules::default()
    };
    let mut kept = 0;
    for host in 1..=200u8 {
        let mut r = one(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let ip = std::net::Ipv4Addr::new(10, 1, 0, host);
        r.flow.key.client = std::net::SocketAddr::from((ip, 50_000 + u16::from(host)));
        let verdict = by_ip.check(&r, b"/", &mut Rng::new(1));
        let expected = key_in_share(
            ip.to_string().as_bytes(),
            Share::from_percent(50.0).unwrap(),
        );
        assert_eq!(verdict == Ok(()), expected, "{ip}");
        kept += usize::from(expected);
    }
    assert!((70..=130).contains(&kept), "{kept} of 200 addresses");
}

#[test]
fn share_keys_parse_and_print_back() {
    for text in ["header:X-User-Id", "query:user", "client-ip"] {
        assert_eq!(text.parse::<ShareKey>().unwrap().to_string(), text);
    }
    assert!("cookie:x".parse::<ShareKey>().is_err());
    assert!("header:Bad Name".parse::<ShareKey>().is_err());
    assert!("query:a&b".parse::<ShareKey>().is_err());
    assert!("client".parse::<ShareKey>().is_err());
}

#[test]
fn a_deny_rule_on_a_header_filters_whatever_else_allows() {
    let rules = Rules {
        deny_headers: vec![HeaderMatch {
            name: "User-Agent".into(),
            test: HeaderTest::Regex(Pattern::new("(?i)bot").unwrap()),
        }],
        ..Rules::default()
    };
    assert_eq!(
        check(
            &rules,
            b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: GoogleBot/2\r\n\r\n"
        ),
        Err(FilterReason::Header)
    );
    assert_eq!(
        check(
            &rules,
            b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: curl\r\nuser-agent: a BOT\r\n\r\n"
        ),
        Err(FilterReason::Header),
        "any value of the header"
    );
    assert_eq!(
        check(
            &rules,
            b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: curl\r\n\r\n"
        ),
        Ok(())
    );
    assert_eq!(check(&rules, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(()));
}

// ---------------------------------------------------------------------------
// path, header value and query rewrites; forwarded-for; absolute form
// ---------------------------------------------------------------------------

#[test]
fn header_values_are_rewritten_in_place_by_every_rule_of_their_name() {
    let stream = b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Tenant: acme-prod\r\nx-tenant: beta-prod\r\nX-Other: prod\r\n\r\n";
    let global = Rewrites {
        headers: vec![
            "X-Tenant:-prod$=>-shadow".parse().unwrap(),
            r"Host:^(\w+)\.example\.com$=>$1.shadow.internal"
                .parse()
                .unwrap(),
        ],
        ..Rewrites::default()
    };
    let target = Rewrites {
        headers: vec!["x-tenant:^acme-=>ACME-".parse().unwrap()],
        ..Rewrites::default()
    };
    assert_eq!(
        rewritten(&global, &target, None, "http://t:1", stream),
        "GET / HTTP/1.1\r\nHost: shop.shadow.internal\r\nX-Tenant: ACME-shadow\r\nx-tenant: beta-shadow\r\nX-Other: prod\r\n\r\n"
    );
}

#[test]
fn forwarded_for_appends_the_client_address_or_adds_the_header() {
    let on = Rewrites {
        forwarded_for: Some(ForwardedFor::Header(FORWARDED_FOR.into())),
        ..Rewrites::default()
    };
    let none = Rewrites::default();
    let marker = default_marker();
    let out = |global: &Rewrites, target: &Rewrites, stream: &[u8]| {
        rewritten(global, target, Some(&marker), "http://t:1", stream)
    };
    assert_eq!(
        out(&on, &none, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.200.0.1\r\nX-Mirrored-By: mirror\r\n\r\n"
    );
    assert_eq!(
        out(
            &on,
            &none,
            b"GET / HTTP/1.1\r\nx-forwarded-for: 1.1.1.1\r\nHost: x\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nA: b\r\n\r\n"
        ),
        "GET / HTTP/1.1\r\nx-forwarded-for: 1.1.1.1\r\nHost: x\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3, 10.200.0.1\r\nA: b\r\nX-Mirrored-By: mirror\r\n\r\n",
        "appended to the last line"
    );
    let custom = Rewrites {
        forwarded_for: Some(ForwardedFor::Header("X-Real-Client".into())),
        strip: vec!["X-Real-Client".into()],
        ..Rewrites::default()
    };
    assert_eq!(
        out(
            &none,
            &custom,
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Real-Client: forged\r\n\r\n"
        ),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Real-Client: 10.200.0.1\r\nX-Mirrored-By: mirror\r\n\r\n",
        "a stripped line is not appended to"
    );
    let off = Rewrites {
        forwarded_for: Some(ForwardedFor::Off),
        ..Rewrites::default()
    };
    assert_eq!(
        out(&on, &off, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n",
        "a target turns the global one off"
    );
    let mut v6 = one(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    v6.flow.key.client = "[fd00:200::5]:4000".parse().unwrap();
    let set = RewriteSet::new(&on, &none, None, &url("http://t:1"));
    assert_eq!(
        set.apply(&v6).to_vec(),
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: fd00:200::5\r\n\r\n"
    );
}

#[test]
fn an_absolute_form_target_goes_out_in_origin_form_with_every_rewrite() {
    let global = Rewrites {
        paths: vec!["^/v1/(.*)=>/v2/$1".parse().unwrap()],
        remove_query: vec!["token".into()],
        set_query: vec!["shadow=1".parse().unwrap()],
        ..Rewrites::default()
    };
    let none = Rewrites::default();
    let stream = b"POST http://evil.example:6666/v1/orders?token=s&id=3 HTTP/1.1\r\nHost: evil.example:6666\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        rewritten(&global, &none, None, "http://t:1/base", stream),
        "POST /base/v2/orders?id=3&shadow=1 HTTP/1.1\r\nHost: evil.example:6666\r\nContent-Length: 2\r\n\r\nok"
    );
    // A target's own path rules are tried before the global ones.
    let own = Rewrites {
        paths: vec!["^/v1/orders=>/orders-v3".parse().unwrap()],
        ..Rewrites::default()
    };
    assert_eq!(
        rewritten(&global, &own, None, "http://t:1", stream),
        "POST /orders-v3?id=3&shadow=1 HTTP/1.1\r\nHost: evil.example:6666\r\nContent-Length: 2\r\n\r\nok"
    );
}
