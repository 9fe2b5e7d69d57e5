//! Flags and their values.

use super::*;

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

#[test]
fn compare_flags_turn_the_comparison_on_and_add_baselines() {
    let config = loaded(&[
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
    ]);
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

    let off = loaded(&["--shadow", "http://v2:9000"]);
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
    let dup = refused(&["--shadow", "http://a:1", "--shadow", "http://a:1"]);
    assert_eq!(dup, "--shadow: `http://a:1` is given twice");
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

#[test]
fn compare_report_takes_metrics_addr_like_every_command_and_still_url() {
    let url = |args: &[&str]| {
        let mut all = vec!["mirror-agent", "compare-report"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map(|cli| cli.command) {
            Ok(Some(Command::CompareReport(args))) => Ok(args.base_url()),
            Ok(other) => panic!("not compare-report: {other:?}"),
            Err(err) => Err(err.kind()),
        }
    };
    assert_eq!(url(&[]), Ok("http://127.0.0.1:9464".to_owned()));
    assert_eq!(
        url(&["--metrics-addr", "10.0.0.5:9500"]),
        Ok("http://10.0.0.5:9500".to_owned())
    );
    assert_eq!(
        url(&["--metrics-addr", "[::1]:9464"]),
        Ok("http://[::1]:9464".to_owned())
    );
    assert_eq!(
        url(&["--url", "http://agent:9464/mirror"]),
        Ok("http://agent:9464/mirror".to_owned())
    );
    assert_eq!(
        url(&["--metrics-addr", "localhost"]),
        Err(clap::error::ErrorKind::ValueValidation)
    );
    assert_eq!(
        url(&["--metrics-addr", "127.0.0.1:1", "--url", "http://a:2"]),
        Err(clap::error::ErrorKind::ArgumentConflict)
    );
}

#[test]
fn redaction_flags_add_names_drop_the_defaults_and_read_back_from_the_file() {
    let config = loaded(&[
        "--redact-field",
        "pin",
        "--redact-field",
        "*SSN*",
        "--redact-header",
        "X-Tenant",
        "--redact-query",
        "ticket",
    ]);
    let policy = &config.live.compare.redaction;
    assert!(policy.has_defaults());
    assert!(policy.secret_field("PIN") && policy.secret_field("user_ssn"));
    assert!(policy.secret_field("access_token"), "the defaults stay");
    assert!(policy.secret_header("x-tenant") && policy.secret_query("Ticket", "/"));
    // check-config writes it back, and the file reads the same policy.
    let text = crate::config::render_config(&config).unwrap();
    assert!(
        text.contains("redact_fields = [\"pin\", \"*ssn*\"]"),
        "{text}"
    );
    assert_eq!(&resolved(&text).live.compare.redaction, policy);

    let none = loaded(&["--no-default-redaction"]).live.compare.redaction;
    assert!(!none.has_defaults() && !none.secret_field("access_token"));
    assert!(loaded(&[]).live.compare.redaction.has_defaults());
    flag_errors(&[(&["--redact-field", "*-*"], "not a name to redact")]);
}

#[test]
fn verdict_takes_the_rule_as_flags_named_like_its_query_parameters() {
    use crate::compare::gate::Rule;
    let parse = |args: &[&str]| {
        let mut all = vec!["mirror-agent", "verdict", "--target", "http://v2:9000"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map(|cli| cli.command) {
            Ok(Some(Command::Verdict(args))) => Ok(args),
            Ok(other) => panic!("not verdict: {other:?}"),
            Err(err) => Err(err.kind()),
        }
    };
    assert_eq!(parse(&[]).unwrap().rule(), Rule::default());
    let args = parse(&[
        "--metrics-addr",
        "127.0.0.1:9464",
        "--max-differ",
        "0.5%",
        "--min-compared",
        "2000",
        "--max-endpoint-differ",
        "off",
        "--min-endpoint-compared",
        "50",
    ])
    .unwrap();
    assert_eq!(
        args.rule(),
        Rule {
            max_differ: 0.5,
            min_compared: 2000,
            max_endpoint_differ: None,
            min_endpoint_compared: 50,
        }
    );
    let args = parse(&["--prometheus", "http://p:9090", "--window", "30m"]).unwrap();
    assert_eq!(args.prometheus.as_deref(), Some("http://p:9090"));
    assert_eq!(args.window.as_deref(), Some("30m"));
    // One source at a time; a window only for Prometheus; a percentage.
    let conflict = clap::error::ErrorKind::ArgumentConflict;
    assert_eq!(
        parse(&["--metrics-addr", "a:1", "--prometheus", "http://p"]).unwrap_err(),
        conflict
    );
    assert!(parse(&["--window", "10m"]).is_err());
    assert!(parse(&["--max-differ", "lots"]).is_err());
    assert!(parse(&["--max-differ", "101%"]).is_err());
}
