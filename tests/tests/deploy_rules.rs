//! The Prometheus rules users install (deploy/prometheus/mirror-rules.yml)
//! are judged by the tool Prometheus itself ships: `promtool check rules`
//! (the file loads, every expression parses, names are valid) and `promtool
//! test rules` on its unit tests (mirror-rules.test.yml: input series,
//! the recorded values and the alerts that fire or stay silent).
//!
//! No kernel needed. promtool is Debian's `prometheus` package, installed
//! by `cargo xtask setup`: without it these tests fail, they do not skip,
//! so that CI never passes without having judged the rules.

use std::{path::PathBuf, process::Command};

fn prometheus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// `promtool ARGS` in deploy/prometheus/: panics with everything it said
/// unless it exits 0.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (`cargo xtask setup` does)"
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{said}",
        args.join(" "),
        output.status
    );
    said
}

#[test]
fn promtool_checks_the_rules_file() {
    let said = promtool(&["check", "rules", "mirror-rules.yml"]);
    // A file whose groups were all dropped would load too: count them.
    assert!(said.contains("SUCCESS: 19 rules found"), "{said}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let said = promtool(&["test", "rules", "mirror-rules.test.yml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}
