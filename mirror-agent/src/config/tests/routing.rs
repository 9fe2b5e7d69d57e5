//! The routing flags and keys: targets, rules, rewrites, rates.

use super::*;

#[test]
fn every_routing_flag_lands_in_the_configuration() {
    let shadows = loaded(&[
        "--shadow",
        "http://a:1",
        "--shadow",
        "http://[::1]:2/p",
        "--share",
        "12.5",
        "--match-header",
        "X-Canary:1",
        "--match-header",
        "X-Debug",
        "--match-header-regex",
        "User-Agent:^curl/",
        "--method",
        "GET",
        "--path-prefix",
        "/api",
        "--path-regex",
        "^/v[0-9]",
        "--deny-path-prefix",
        "/api/admin",
        "--deny-path-regex",
        "secret",
        "--set-header",
        "X-Env: shadow",
        "--strip-header",
        "Authorization",
        "--host-header",
        "target",
        "--marker-header",
        "X-Copy: yes",
        "--max-in-flight",
        "4",
        "--connect-timeout",
        "250ms",
        "--request-timeout",
        "3s",
        "--resolve-interval",
        "1m",
        "--idle-timeout",
        "5s",
    ])
    .live
    .shadows;
    let (c, settings) = (&shadows.route, &shadows.settings);
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.rules.share.unwrap().basis_points(), 1250);
    assert_eq!(c.rules.headers.len(), 3);
    assert_eq!(c.rules.headers[1].test, HeaderTest::Present);
    assert_eq!(c.rules.allow_paths.len(), 2);
    assert_eq!(c.rules.deny_paths.len(), 2);
    assert_eq!(c.rewrites.set[0].to_string(), "X-Env: shadow");
    assert_eq!(c.rewrites.host, Some(HostHeader::Target));
    assert_eq!(c.marker.as_ref().unwrap().name, "X-Copy");
    let s = &settings[1];
    assert_eq!(s.max_in_flight, 4);
    assert_eq!(s.connect_timeout, Duration::from_millis(250));
    assert_eq!(s.request_timeout, Duration::from_secs(3));
    assert_eq!(s.resolve_interval, Duration::from_secs(60));
    assert_eq!(s.idle_timeout, Duration::from_secs(5));
    assert_eq!(s.queue_size, 1024);
    assert_eq!(c.targets[1].url.authority, "[::1]:2");
}

#[test]
fn without_routing_flags_the_defaults_hold() {
    let c = route(&[]);
    assert_eq!(c, RouteConfig::default());
    assert_eq!(c.marker.unwrap().to_string(), "X-Mirrored-By: mirror");
}

#[test]
fn routing_keys_of_the_file_give_global_and_per_target_rules_rewrites_and_rates() {
    let shadows = resolved(EXAMPLE).live.shadows;
    let c = &shadows.route;
    assert_eq!(c.rules.share_by, None);
    assert_eq!(c.rules.deny_headers.len(), 1);
    assert_eq!(c.rewrites.paths[0].to_string(), "^/v1/(.*)=>/v2/$1");
    assert_eq!(c.rewrites.headers[0].name, "X-Tenant");
    assert_eq!(c.rewrites.set_query[0].to_string(), "shadow=1");
    assert_eq!(c.rewrites.remove_query, ["token"]);
    assert_eq!(
        c.rewrites.forwarded_for,
        Some(ForwardedFor::Header("X-Forwarded-For".into()))
    );
    let v2 = &c.targets[0];
    assert_eq!(
        v2.rules.share_by,
        Some(ShareKey::Header("X-User-Id".into()))
    );
    assert_eq!(
        v2.rewrites.forwarded_for,
        Some(ForwardedFor::Header("X-Real-Client".into()))
    );
    assert_eq!(shadows.settings[0].rate_limit, Some(100), "its own");
    assert_eq!(shadows.settings[1].rate_limit, Some(500), "the top level's");
}

#[test]
fn every_new_routing_flag_lands_in_the_configuration() {
    let shadows = loaded(&[
        "--shadow",
        "http://a:1",
        "--share",
        "25",
        "--share-by",
        "query:user",
        "--rate-limit",
        "100",
        "--rewrite-path",
        "^/v1/(.*)=>/v2/$1",
        "--rewrite-path",
        "^/old=>/new",
        "--rewrite-header",
        "Host:^(.*)$=>shadow-$1",
        "--set-query",
        "shadow=1",
        "--remove-query",
        "token",
        "--deny-header-regex",
        "User-Agent:bot",
        "--forwarded-for",
    ])
    .live
    .shadows;
    let c = &shadows.route;
    assert_eq!(c.rules.share_by, Some(ShareKey::Query("user".into())));
    assert_eq!(shadows.settings[0].rate_limit, Some(100));
    assert_eq!(c.rewrites.paths.len(), 2);
    assert_eq!(c.rewrites.headers[0].to_string(), "Host:^(.*)$=>shadow-$1");
    assert_eq!(c.rewrites.set_query[0].name, "shadow");
    assert_eq!(c.rewrites.remove_query, ["token"]);
    assert_eq!(c.rules.deny_headers[0].name, "User-Agent");
    assert_eq!(
        c.rewrites.forwarded_for,
        Some(ForwardedFor::Header("X-Forwarded-For".into()))
    );
    let named = route(&["--shadow", "http://a:1", "--forwarded-for=X-Client"]);
    assert_eq!(
        named.rewrites.forwarded_for,
        Some(ForwardedFor::Header("X-Client".into()))
    );
    // --forwarded-for takes no value but with `=`: what follows is a flag.
    let next = route(&["--forwarded-for", "--shadow", "http://a:1"]);
    assert_eq!(next.targets.len(), 1);
    let none = route(&["--shadow", "http://a:1"]);
    assert_eq!(none.rewrites.forwarded_for, None);
}

#[test]
fn a_share_key_without_a_share_is_refused_naming_the_key_and_the_flag() {
    let alone = refused(&["--shadow", "http://a:1", "--share-by", "client-ip"]);
    assert!(
        alone.contains("key `share_by`") && alone.contains("--share"),
        "{alone}"
    );
}
