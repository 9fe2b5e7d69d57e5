use std::path::Path;
use std::time::Duration;

use clap::Parser as _;

use super::*;
use crate::route::{
    ForwardedFor, HeaderMatch, HeaderTest, HostHeader, PathRule, RouteConfig, ShareKey,
};
use crate::shadow::{TlsRoots, TlsSettings};
use crate::telemetry::LogFormat;

/// The routing part of a command line's configuration.
fn route(cli: Cli) -> Result<RouteConfig, InvalidConfig> {
    Ok(cli.load()?.live.shadows.route)
}

#[test]
fn percent_becomes_basis_points() {
    let cli = Cli::parse_from([
        "mirror-agent",
        "--iface",
        "lo",
        "--port",
        "80",
        "--sample",
        "12.5",
    ]);
    assert_eq!(
        cli.load().unwrap().startup.capture.sample.basis_points(),
        1250
    );
    assert!("101".parse::<Share>().is_err());
    assert!("-1".parse::<Share>().is_err());
}

#[test]
fn port_zero_is_rejected_and_a_missing_port_or_interface_named() {
    assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "0"]).is_err());
    assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "70000"]).is_err());
    let config = Cli::try_parse_from(["mirror-agent", "--iface", "lo"])
        .unwrap()
        .load()
        .unwrap();
    let err = config.startup.capture.options().unwrap_err().to_string();
    assert_eq!(err, "no port: give --port or `ports` in the config file");
    let config = Cli::try_parse_from(["mirror-agent", "--port", "80"])
        .unwrap()
        .load()
        .unwrap();
    let err = config.startup.capture.options().unwrap_err().to_string();
    assert_eq!(
        err,
        "no interface: give --iface or `iface` in the config file"
    );
}

const EXAMPLE: &str = r#"
dry_run = false
marker = "X-Shadow-Copy: 1"
share = 50
methods = ["GET", "POST"]
path_prefixes = ["/api"]
path_regexes = ['^/v[0-9]+/']
deny_path_prefixes = ["/api/admin"]
strip_headers = ["Authorization", "Cookie"]
set_headers = ["X-Env: shadow"]
queue_size = 100
request_timeout = "2s"
rate_limit = 500
deny_header_regexes = ["User-Agent:(?i)bot"]
rewrite_paths = ['^/v1/(.*)=>/v2/$1']
rewrite_headers = ['X-Tenant:-prod$=>-shadow']
set_queries = ["shadow=1"]
remove_queries = ["token"]
forwarded_for = true

[[match]]
header = "User-Agent"
regex = "^curl/"

[[target]]
url = "http://myapp-v2:9000"
name = "v2"
share = 10
share_by = "header:X-User-Id"
host_header = "target"
queue_size = 7
rate_limit = 100
forwarded_for = "X-Real-Client"
[[target.match]]
header = "X-Canary"
equals = "1"

[[target]]
url = "http://10.0.0.7:9001/prefix"
"#;

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mirror-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// check-config's error for a file holding `text`: it must start with the
/// file's path and then `expected`.
fn file_error(name: &str, text: &str, expected: &str) -> String {
    let path = write_temp(name, text);
    let err = check_config(&path).unwrap_err().to_string();
    let expected = format!("{}{expected}", path.display());
    assert!(
        err.starts_with(&expected),
        "\n got: {err}\nwant: {expected}"
    );
    err
}

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    let mut all = vec!["mirror-agent", "--iface", "lo", "--port", "80"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all)
}

/// Each set of flags is refused with an error that contains the text
/// beside it.
fn flag_errors(cases: &[(&[&str], &str)]) {
    for (args, expected) in cases {
        let err = cli(args).unwrap_err().to_string();
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn the_documented_example_file_is_valid() {
    let config = FileConfig::parse(EXAMPLE_FILE).unwrap().resolve().unwrap();
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
fn compare_flags_turn_the_comparison_on_and_add_baselines() {
    let config = cli(&[
        "--shadow",
        "http://v2:9000",
        "--baseline",
        "http://v1b:9000",
        "--compare-ignore-field",
        "$.served_at",
        "--compare-ignore-header",
        "X-Backend",
        "--diff-log",
        "-",
        "--compare-timeout",
        "2s",
    ])
    .unwrap()
    .load()
    .unwrap();
    let compare = &config.live.compare;
    let roles: Vec<_> = compare.targets.iter().map(|t| t.role).collect();
    assert_eq!(
        roles,
        [
            crate::compare::Role::Candidate,
            crate::compare::Role::Baseline
        ],
        "--baseline turns the comparison on for every target"
    );
    assert_eq!(compare.targets[0].ignore_fields, ["$.served_at"]);
    assert_eq!(compare.targets[0].ignore_headers, ["x-backend"]);
    assert_eq!(
        compare.targets[0].timeout,
        std::time::Duration::from_secs(2)
    );
    assert_eq!(compare.diff_log, Some(crate::compare::DiffLogTo::Stderr));
    assert_eq!(
        config.live.shadows.settings[0].keep_answer,
        Some(crate::compare::DEFAULT_BODY_CAP),
        "a compared target keeps its answers"
    );

    let off = cli(&["--shadow", "http://v2:9000"])
        .unwrap()
        .load()
        .unwrap();
    assert!(!off.live.compare.enabled());
    assert_eq!(off.live.shadows.settings[0].keep_answer, None);

    let bad = cli(&[
        "--shadow",
        "http://v2:9000",
        "--compare-ignore-field",
        "items.id",
    ]);
    assert!(bad.is_err(), "a field path must start with $");
}

#[test]
fn a_file_gives_global_and_per_target_rules_and_settings() {
    let shadows = FileConfig::parse(EXAMPLE)
        .unwrap()
        .resolve()
        .unwrap()
        .live
        .shadows;
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
    let config = FileConfig::parse(EXAMPLE).unwrap().resolve().unwrap();
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
    let config = FileConfig::parse(text).unwrap().resolve().unwrap();
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
    let again = FileConfig::parse(&rendered).unwrap().resolve().unwrap();
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
fn bad_agent_flags_are_errors_naming_the_flag() {
    flag_errors(&[
        (&["--log-level", "verbose"], "not a log level"),
        (&["--max-headers", "300"], "--max-headers"),
        (&["--max-body-size", "12X"], "unknown size unit"),
    ]);
    let many: Vec<String> = (1..=17).map(|p| p.to_string()).collect();
    let mut args = vec!["mirror-agent", "--iface", "lo"];
    for p in &many {
        args.extend(["--port", p]);
    }
    let err = Cli::try_parse_from(args)
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert_eq!(err, "--port: at most 16 ports can be captured, got 17");
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
    assert!(printed.contains("max_body_size = \"64M\""), "{printed}");
    let err = check_config(Path::new("/nonexistent/mirror.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot read the configuration file /nonexistent/mirror.toml"));
}

#[test]
fn flags_override_the_file_top_level_and_shadow_replaces_its_targets() {
    let path = write_temp("flags.toml", EXAMPLE);
    let path = path.to_str().unwrap();
    let c = cli(&[
        "--config",
        path,
        "--share",
        "20",
        "--method",
        "PUT",
        "--no-marker",
    ])
    .unwrap()
    .load()
    .unwrap()
    .live
    .shadows
    .route;
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

    let shadows = cli(&[
        "--config",
        path,
        "--shadow",
        "http://v3:1",
        "--queue-size",
        "9",
        "--dry-run",
    ])
    .unwrap()
    .load()
    .unwrap()
    .live
    .shadows;
    let c = &shadows.route;
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].name, "http://v3:1");
    assert_eq!(shadows.settings[0].queue_size, 9);
    assert!(c.dry_run);
}

#[test]
fn every_routing_flag_lands_in_the_configuration() {
    let shadows = cli(&[
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
    .unwrap()
    .load()
    .unwrap()
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
fn bad_flags_are_errors_naming_the_flag() {
    flag_errors(&[
        (&["--shadow", "ftp://x"], "--shadow <URL>"),
        (&["--shadow", "ftp://x"], "must be http or https"),
        (&["--share", "101"], "--share <PERCENT>"),
        (&["--match-header-regex", "X:a("], "bad regex"),
        (&["--set-header", "NoColon"], "--set-header"),
        (&["--strip-header", "a b"], "not a header name"),
        (&["--queue-size", "0"], "--queue-size"),
        (&["--connect-timeout", "5"], "not a duration"),
        (&["--path-prefix", "api"], "not a path prefix"),
        (
            &["--no-marker", "--marker-header", "X: 1"],
            "cannot be used with",
        ),
        // Routing values.
        (&["--share-by", "cookie:x"], "--share-by"),
        (&["--rate-limit", "0"], "--rate-limit"),
        (&["--rewrite-path", "^/v1/(.*)=>/v2/$2"], "group `2`"),
        (&["--rewrite-path", "^/v1"], "REGEX=>REPLACEMENT"),
        (&["--rewrite-header", "Host=>x"], "--rewrite-header"),
        (&["--set-query", "a=b c"], "percent-encode"),
        (&["--remove-query", ""], "--remove-query"),
        (&["--deny-header-regex", "X:("], "bad regex"),
        (&["--forwarded-for=Bad Name"], "not a header name"),
    ]);
    let dup = route(cli(&["--shadow", "http://a:1", "--shadow", "http://a:1"]).unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(dup, "--shadow: `http://a:1` is given twice");
}

#[test]
fn without_routing_flags_the_defaults_hold() {
    let c = route(cli(&[]).unwrap()).unwrap();
    assert_eq!(c, RouteConfig::default());
    assert_eq!(c.marker.unwrap().to_string(), "X-Mirrored-By: mirror");
}

#[test]
fn routing_keys_of_the_file_give_global_and_per_target_rules_rewrites_and_rates() {
    let shadows = FileConfig::parse(EXAMPLE)
        .unwrap()
        .resolve()
        .unwrap()
        .live
        .shadows;
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
    let shadows = cli(&[
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
    .unwrap()
    .load()
    .unwrap()
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
    let named =
        route(cli(&["--shadow", "http://a:1", "--forwarded-for=X-Client"]).unwrap()).unwrap();
    assert_eq!(
        named.rewrites.forwarded_for,
        Some(ForwardedFor::Header("X-Client".into()))
    );
    // --forwarded-for takes no value but with `=`: what follows is a flag.
    let next = route(cli(&["--forwarded-for", "--shadow", "http://a:1"]).unwrap()).unwrap();
    assert_eq!(next.targets.len(), 1);
    let none = route(cli(&["--shadow", "http://a:1"]).unwrap()).unwrap();
    assert_eq!(none.rewrites.forwarded_for, None);
}

#[test]
fn a_share_key_without_a_share_is_refused_naming_the_key_and_the_flag() {
    let alone = route(cli(&["--shadow", "http://a:1", "--share-by", "client-ip"]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        alone.contains("key `share_by`") && alone.contains("--share"),
        "{alone}"
    );
}

/// A PEM CA certificate for the TLS settings' tests (a self-signed CA,
/// P-256, made once with `openssl req -x509`; its key was not kept):
/// certificates are made at run time only by the kernel tests.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATmgAwIBAgIUSMSjfQFXBPhjHjdpqiQtC4OxjKgwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTbWlycm9yIHVuaXQtdGVzdCBDQTAgFw0yNjExMzAyMDQ3Mzla
GA8yMTI2MTEwNjIwNDczOVowHjEcMBoGA1UEAwwTbWlycm9yIHVuaXQtdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPqycy8LeApWaHG9hRSsqyy2skmC
gIgZDahSlQel0KX4tO7tG0uKStk7FuvtXt7RaXlqTPETrGZ2TFj7qxeg1BOjUzBR
MB0GA1UdDgQWBBR8+mn/ZDxOfCJ5q9ZTaFn+LyuAazAfBgNVHSMEGDAWgBR8+mn/
ZDxOfCJ5q9ZTaFn+LyuAazAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA
MEQCIB1Byrf4QrpMEDpbGnZPzshF1aYwQvSvarXhVoQDUjMJAiAIJRoBZFrht7vu
ZanbaKq87hlUfHSiw9dssGs7Iwh65A==
-----END CERTIFICATE-----
";

#[test]
fn https_targets_get_their_ca_file_or_the_top_levels_or_the_system_roots() {
    let ca = write_temp("ca.pem", TEST_CA_PEM);
    let other = write_temp("other-ca.pem", TEST_CA_PEM);
    let text = format!(
        "ca_file = \"{}\"\n\
         [[target]]\nurl = \"https://v2.internal\"\n\
         [[target]]\nurl = \"https://v3.internal:8443\"\nca_file = \"{}\"\ninsecure_skip_verify = true\n\
         [[target]]\nurl = \"http://v4\"\n",
        ca.display(),
        other.display()
    );
    let config = FileConfig::parse(&text).unwrap().resolve().unwrap();
    let settings = &config.live.shadows.settings;
    let roots_path = |i: usize| match &settings[i].tls.as_ref().unwrap().roots {
        TlsRoots::CaFile { path, certs } => {
            assert_eq!(certs.len(), 1);
            path.clone()
        }
        TlsRoots::System => panic!("target {i}: system roots"),
    };
    assert_eq!(roots_path(0), ca, "the top level's");
    assert!(settings[0].tls.as_ref().unwrap().verify);
    assert_eq!(roots_path(1), other, "its own");
    assert!(!settings[1].tls.as_ref().unwrap().verify, "its own opt-out");
    assert_eq!(settings[2].tls, None, "http: no TLS");

    // Spelled out again by check-config, per target, and read back alike.
    let printed = render_config(&config).unwrap();
    assert!(printed.contains("insecure_skip_verify = true"), "{printed}");
    let again = FileConfig::parse(&printed).unwrap().resolve().unwrap();
    assert_eq!(again.live.shadows.settings, *settings);

    // Without a CA file: the system's roots, verified.
    let plain = route_settings(&["--shadow", "https://v2.internal"]);
    assert_eq!(plain[0].tls, Some(TlsSettings::default()));
}

fn route_settings(args: &[&str]) -> Vec<crate::shadow::TargetSettings> {
    cli(args).unwrap().load().unwrap().live.shadows.settings
}

#[test]
fn the_tls_flags_apply_to_the_https_targets() {
    let ca = write_temp("flag-ca.pem", TEST_CA_PEM);
    let settings = route_settings(&[
        "--shadow",
        "https://v2:8443",
        "--shadow",
        "http://v3",
        "--ca-file",
        ca.to_str().unwrap(),
        "--insecure-skip-verify",
    ]);
    let tls = settings[0].tls.as_ref().unwrap();
    assert!(matches!(&tls.roots, TlsRoots::CaFile { path, .. } if *path == ca));
    assert!(!tls.verify);
    assert_eq!(settings[1].tls, None);
    // Takes no value but with `=`: what follows is a flag.
    let next = route_settings(&["--insecure-skip-verify", "--shadow", "https://v2"]);
    assert!(!next[0].tls.as_ref().unwrap().verify);
    let off = route_settings(&["--insecure-skip-verify=false", "--shadow", "https://v2"]);
    assert!(off[0].tls.as_ref().unwrap().verify);
}

#[test]
fn bad_tls_settings_are_clear_errors() {
    let missing = cli(&["--shadow", "https://v2", "--ca-file", "/nonexistent/ca.pem"])
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("key `ca_file`")
            && missing.contains("cannot read `/nonexistent/ca.pem`")
            && missing.contains("--ca-file"),
        "{missing}"
    );
    let no_https = cli(&["--shadow", "http://v2", "--insecure-skip-verify"])
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(no_https.contains("no target is https"), "{no_https}");

    let junk = write_temp("junk.pem", "not a certificate\n");
    let bad = write_temp(
        "bad-cert.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let cases = [
        (
            format!(
                "[[target]]\nurl = \"https://a\"\nca_file = \"{}\"\n",
                junk.display()
            ),
            format!(
                ":2:7: key `target.ca_file`: `{}` holds no certificate",
                junk.display()
            ),
        ),
        (
            format!(
                "[[target]]\nurl = \"https://a\"\nca_file = \"{}\"\n",
                bad.display()
            ),
            format!(
                ":2:7: key `target.ca_file`: certificate 1 of `{}` is not a valid CA certificate",
                bad.display()
            ),
        ),
        (
            "[[target]]\nurl = \"http://a\"\ninsecure_skip_verify = true\n".to_owned(),
            ":2:7: key `target.insecure_skip_verify`: `http://a` is not https".to_owned(),
        ),
        (
            "[[target]]\nurl = \"https://a\"\ninsecure_skip_verify = \"yes\"\n".to_owned(),
            ":3:24: key `target.insecure_skip_verify`: invalid type".to_owned(),
        ),
        (
            "ca_file = \"\"\n[[target]]\nurl = \"https://a\"\n".to_owned(),
            ":1:11: key `ca_file`: a CA file needs a file name".to_owned(),
        ),
    ];
    for (text, expected) in cases {
        let err = file_error("tls.toml", &text, &expected);
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn rotation_sizes_are_binary_whatever_the_unit_and_ages_take_s_m_h_d() {
    for (text, bytes) in [
        ("4096", 4096),
        ("32M", 32 << 20),
        ("32mb", 32 << 20),
        ("32MiB", 32 << 20),
        ("512KB", 512 << 10),
        ("1g", 1 << 30),
    ] {
        assert_eq!(text.parse::<RotateSize>(), Ok(RotateSize(bytes)), "{text}");
    }
    assert_eq!(RotateSize(32 << 20).to_string(), "32M");
    for bad in ["", "M", "32XB", "1.5M", "-1", "0", "2T"] {
        assert!(bad.parse::<RotateSize>().is_err(), "{bad}");
    }
    for (text, secs) in [("30s", 30), ("10m", 600), ("1h", 3600), ("2d", 172_800)] {
        let age: RotateAge = text.parse().unwrap();
        assert_eq!(age.0, Duration::from_secs(secs), "{text}");
        assert_eq!(age.to_string(), text);
    }
    for bad in ["10", "0s", "1w", "1.5h", "400d", "m"] {
        assert!(bad.parse::<RotateAge>().is_err(), "{bad}");
    }
}
