//! The file: its keys, its errors with their positions, flags over it.

use super::*;

#[test]
fn the_documented_example_file_is_valid() {
    let config = resolved(EXAMPLE_FILE);
    assert_eq!(config.live.shadows.route.targets.len(), 2);
    assert_eq!(config.live.shadows.route.targets[0].name, "v2");
    assert_eq!(config.startup.capture.iface.as_deref(), Some("eth0"));
    assert_eq!(config.startup.capture.ports, [80, 8080]);
    let compare = &config.live.compare;
    assert_eq!(compare.targets.len(), 2, "both compared: {compare:?}");
    assert_eq!(compare.targets[1].role, crate::compare::Role::Baseline);
    assert_eq!(
        compare.targets[0].ignore_fields,
        ["$.served_at", "$.items[*].id"]
    );
    assert!(
        compare.targets[0]
            .ignore_headers
            .contains(&"x-backend".to_owned())
    );
}

#[test]
fn a_file_gives_global_and_per_target_rules_and_settings() {
    let shadows = resolved(EXAMPLE).live.shadows;
    let config = &shadows.route;
    assert_eq!(
        config.marker.as_ref().unwrap().to_string(),
        "X-Shadow-Copy: 1"
    );
    assert_eq!(config.rules.share.unwrap().basis_points(), 5000);
    assert_eq!(config.rules.methods, ["GET", "POST"]);
    assert_eq!(config.rules.allow_paths.len(), 2);
    assert_eq!(
        config.rules.deny_paths,
        [PathRule::Prefix("/api/admin".into())]
    );
    assert_eq!(config.rewrites.strip, ["Authorization", "Cookie"]);
    assert_eq!(config.rewrites.host, None);
    assert!(matches!(config.rules.headers[0].test, HeaderTest::Regex(_)));

    let [v2, other] = &config.targets[..] else {
        panic!("two targets")
    };
    let [v2_settings, other_settings] = &shadows.settings[..] else {
        panic!("two targets' settings")
    };
    assert_eq!(v2.name, "v2");
    assert_eq!(v2.rules.share.unwrap().basis_points(), 1000);
    assert_eq!(v2.rewrites.host, Some(HostHeader::Target));
    assert_eq!(
        v2.rules.headers,
        [HeaderMatch {
            name: "X-Canary".into(),
            test: HeaderTest::Equals("1".into())
        }]
    );
    assert_eq!(v2_settings.queue_size, 7, "the target's own value");
    assert_eq!(other_settings.queue_size, 100, "the top-level default");
    assert_eq!(other_settings.request_timeout, Duration::from_secs(2));
    assert_eq!(other_settings.max_in_flight, 32, "built-in default");
    assert_eq!(other.name, "http://10.0.0.7:9001/prefix");
    assert_eq!(other.url.path_prefix, "/prefix");
}

#[test]
fn the_effective_configuration_loads_back_to_the_same() {
    let config = resolved(EXAMPLE);
    let text = render_config(&config).unwrap();
    let again = FileConfig::parse(&text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
        .resolve()
        .unwrap();
    assert_eq!(again, config, "{text}");
    assert!(text.contains("[[target.match]]"), "{text}");

    let path = write_temp("ok.toml", EXAMPLE);
    let printed = check_config(&path).unwrap();
    assert!(printed.starts_with(&format!("# {}: valid.", path.display())));
    assert!(printed.contains("name = \"v2\""), "{printed}");
}

#[test]
fn file_errors_name_file_line_column_and_key() {
    let cases = [
        (
            "share = 150\n",
            ":1:9: key `share`: 150 is outside 0 to 100",
        ),
        (
            "[[target]]\nurl = \"http://a\"\nshare = -5\n",
            ":3:9: key `target.share`: -5 is outside 0 to 100",
        ),
        (
            "[[target]]\nurl = \"ftp://a\"\n",
            ":2:7: key `target.url`: `ftp://a`: the scheme must be http or https, not `ftp`",
        ),
        (
            "[[target]]\nurl = \"http://a\"\n  shar = 2\n",
            ":3:3: key `target.shar`: unknown key `shar`: did you mean `share`?",
        ),
        (
            "[[target]]\nurl = \"http://a\"\n  colour = 2\n",
            ":3:3: key `target.colour`: unknown key `colour`, expected one of: url, name, share,",
        ),
        (
            "[[match]]\nheader = \"X\"\nregex = \"a(\"\n",
            ":3:9: key `match.regex`: bad regex `a(`",
        ),
        (
            "[[match]]\nheader = \"X Y\"\n",
            ":2:10: key `match.header`: `X Y` is not a header name",
        ),
        (
            "strip_headers = [\"Cookie\", \"Bad:Name\"]\n",
            ":1:28: key `strip_headers`: `Bad:Name` is not a header name",
        ),
        (
            "connect_timeout = 5\n",
            ":1:19: key `connect_timeout`: invalid type: integer `5`, expected a duration",
        ),
        (
            "[[target]]\nname = \"x\"\n",
            ":1:1: key `target`: a [[target]] needs a `url`",
        ),
        (
            "[[target]]\nurl = \"http://a:1\"\n[[target]]\nurl = \"http://b:1\"\nname = \"http://a:1\"\n",
            ":5:8: key `target.name`: two targets are named `http://a:1`",
        ),
        // Agent values.
        ("ports = []\n", ":1:9: key `ports`: between 1 and 16 ports"),
        ("ports = [80, 0]\n", ":1:9: key `ports`: 0 is not a port"),
        (
            "ring_size = \"3M\"\n",
            ":1:13: key `ring_size`: 3M must be a power of two",
        ),
        (
            "attach = \"xdp\"\n",
            ":1:10: key `attach`: `xdp` is not an attach mode",
        ),
        (
            "log_level = \"inof\"\n",
            ":1:13: key `log_level`: `inof` is not a log level",
        ),
        (
            "log_format = \"yaml\"\n",
            ":1:14: key `log_format`: `yaml` is not a log format",
        ),
        (
            "metrics_addr = \"localhost\"\n",
            ":1:16: key `metrics_addr`: invalid socket address",
        ),
        (
            "max_headers = 1000\n",
            ":1:15: key `max_headers`: `1000` is not a number from 1 to 256",
        ),
        (
            "sample = 120\n",
            ":1:10: key `sample`: 120 is outside 0 to 100",
        ),
        // Routing values.
        (
            "share_by = \"client-ip\"\n",
            ": key `share_by`: `share_by` (--share-by) needs `share`",
        ),
        (
            "[[target]]\nurl = \"http://a\"\nshare_by = \"header:X-User\"\n",
            ":2:7: key `target.share_by`: `share_by` (--share-by) needs `share`",
        ),
        (
            "rewrite_paths = ['^/(a)=>/$1b']\n",
            ":1:26: key `rewrite_paths`: `/$1b` refers to group `1b`",
        ),
        (
            "[[target]]\nurl = \"http://a\"\nset_queries = [\"x\"]\n",
            ":3:16: key `target.set_queries`: `x` is not NAME=VALUE",
        ),
        (
            "forwarded_for = 1\n",
            ":1:17: key `forwarded_for`: invalid type: integer `1`, expected true, false or a header name",
        ),
        (
            "deny_header_regexes = [\"NoColon\"]\n",
            ":1:24: key `deny_header_regexes`: `NoColon` is not NAME:REGEX",
        ),
        (
            "rate_limit = 0\n",
            ":1:14: key `rate_limit`: `0` is not a number",
        ),
    ];
    for (text, expected) in cases {
        let err = file_error("bad.toml", text, expected);
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn every_error_of_a_file_is_reported_with_its_line() {
    let text = "\
ifcae = \"eth0\"
ports = [8080]
path_regexes = ['^/ok', '^/v[0-9+/']

[[target]]
url = \"hxxps://v2:9000\"

[[target]]
url = \"http://v3:9000\"
queue_sise = 10
";
    let path = write_temp("three.toml", text);
    let err = check_config(&path).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    let p = path.display();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{p}:1:1: key `ifcae`: unknown key `ifcae`: did you mean `iface`?"
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{p}:3:25: key `path_regexes`: bad regex")),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{p}:6:7: key `target.url`: `hxxps://v2:9000`: the scheme must be http or https"
        )),
        "{err}"
    );
    assert!(
        lines[3].starts_with(&format!(
            "{p}:10:1: key `target.queue_sise`: unknown key `queue_sise`: did you mean `queue_size`?"
        )),
        "{err}"
    );
}

#[test]
fn capture_agent_and_limit_keys_come_from_the_file_and_flags_win() {
    let text = "\
iface = \"veth0\"
ports = [80, 8080]
sample = 12.5
ring_size = \"8M\"
attach = \"netlink\"
log_format = \"text\"
log_level = \"debug\"
log_requests = 1
metrics_addr = \"127.0.0.1:9999\"
stats_interval = \"2s\"
drain_timeout = \"500ms\"
max_flows = 1000
max_flow_buffer = \"2M\"
max_buffered = 1048576
flow_idle_timeout = \"5m\"
hole_timeout = \"1s\"
max_head_size = \"16K\"
max_headers = 50
max_body_size = \"1M\"
";
    let config = resolved(text);
    let (startup, live) = (&config.startup, &config.live);
    let capture = &startup.capture;
    assert_eq!(capture.iface.as_deref(), Some("veth0"));
    assert_eq!(capture.ports, [80, 8080]);
    assert_eq!(capture.sample.basis_points(), 1250);
    assert_eq!(capture.ring_bytes, 8 << 20);
    assert_eq!(capture.attach, crate::capture::AttachMode::Netlink);
    assert_eq!(startup.log_format, Some(LogFormat::Text));
    assert_eq!(live.log_level, "debug");
    assert_eq!(live.log_requests.basis_points(), 100);
    assert_eq!(startup.metrics_addr.port(), 9999);
    assert_eq!(live.stats_interval, Duration::from_secs(2));
    assert_eq!(live.drain_timeout, Duration::from_millis(500));
    let f = &startup.flow;
    assert_eq!(f.max_flows, 1000);
    assert_eq!(f.max_ooo_bytes_per_flow, 2 << 20);
    assert_eq!(f.max_buffered_bytes, 1 << 20);
    assert_eq!(f.idle_timeout_ns, 300_000_000_000);
    assert_eq!(f.hole_timeout_ns, 1_000_000_000);
    let h = &startup.http;
    assert_eq!(h.max_head_bytes, 16 << 10);
    assert_eq!(h.max_headers, 50);
    assert_eq!(h.max_body_bytes, 1 << 20);
    let options = capture.options().unwrap();
    assert_eq!((options.iface.as_str(), options.sample_bp), ("veth0", 1250));

    // The effective configuration loads back to the same.
    let rendered = render_config(&config).unwrap();
    let again = resolved(&rendered);
    assert_eq!(again, config, "{rendered}");

    let path = write_temp("agent.toml", text);
    let path = path.to_str().unwrap();
    let flags = Cli::try_parse_from([
        "mirror-agent",
        "--config",
        path,
        "--iface",
        "eth1",
        "--port",
        "9000",
        "--max-flows",
        "7",
        "--log-level",
        "warn,mirror_agent=info",
        "--stats-interval",
        "1s",
        "--nice",
        "3",
    ])
    .unwrap()
    .load()
    .unwrap();
    assert_eq!(flags.startup.capture.iface.as_deref(), Some("eth1"));
    assert_eq!(flags.startup.capture.ports, [9000]);
    assert_eq!(flags.startup.flow.max_flows, 7);
    assert_eq!(flags.startup.nice, 3);
    assert_eq!(flags.live.log_level, "warn,mirror_agent=info");
    assert_eq!(flags.live.stats_interval, Duration::from_secs(1));
    assert_eq!(flags.startup.capture.ring_bytes, 8 << 20, "from the file");
    assert_eq!(
        config.startup.changed_keys(&flags.startup),
        ["iface", "max_flows", "nice", "ports"],
        "what SIGHUP cannot apply (the live settings changed too)"
    );
}

#[test]
fn check_config_says_what_the_agent_still_needs() {
    let path = write_temp("routing-only.toml", "[[target]]\nurl = \"http://v2:1\"\n");
    let printed = check_config(&path).unwrap();
    assert!(printed.contains("# No `iface`"), "{printed}");
    assert!(printed.contains("# No `ports`"), "{printed}");
    assert!(
        printed.contains("metrics_addr = \"127.0.0.1:9464\""),
        "{printed}"
    );
    assert!(printed.contains("max_body_size = \"16G\""), "{printed}");
    let err = check_config(Path::new("/nonexistent/mirror.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot read the configuration file /nonexistent/mirror.toml"));
}

#[test]
fn flags_override_the_file_top_level_and_shadow_replaces_its_targets() {
    let path = write_temp("flags.toml", EXAMPLE);
    let path = path.to_str().unwrap();
    let c = route(&[
        "--config",
        path,
        "--share",
        "20",
        "--method",
        "PUT",
        "--no-marker",
    ]);
    assert_eq!(c.rules.share.unwrap().basis_points(), 2000);
    assert_eq!(c.rules.methods, ["PUT"]);
    assert_eq!(c.marker, None);
    assert_eq!(c.targets.len(), 2, "targets from the file");
    assert_eq!(
        c.targets[0].rules.share.unwrap().basis_points(),
        1000,
        "per target kept"
    );
    assert_eq!(
        c.rewrites.strip,
        ["Authorization", "Cookie"],
        "not overridden"
    );

    let shadows = loaded(&[
        "--config",
        path,
        "--shadow",
        "http://v3:1",
        "--queue-size",
        "9",
        "--dry-run",
    ])
    .live
    .shadows;
    let c = &shadows.route;
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].name, "http://v3:1");
    assert_eq!(shadows.settings[0].queue_size, 9);
    assert!(c.dry_run);
}
