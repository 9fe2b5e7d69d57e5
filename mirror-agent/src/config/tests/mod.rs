//! The configuration's tests, by concern: flags and their values, the
//! file (and flags over it), routing, TLS. The helpers below build a
//! command line or a file and load it.

use std::path::Path;
use std::time::Duration;

use clap::Parser as _;

use super::*;
use crate::route::{
    ForwardedFor, HeaderMatch, HeaderTest, HostHeader, PathRule, RouteConfig, ShareKey,
};
use crate::shadow::{TlsRoots, TlsSettings};
use crate::telemetry::LogFormat;

mod file;
mod flags;
mod routing;
mod tls;

/// A file with global and per-target rules and settings, two targets.
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

/// The agent's command line `--iface lo --port 80` and `args`, parsed.
fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    let mut all = vec!["mirror-agent", "--iface", "lo", "--port", "80"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all)
}

/// The configuration of such a command line.
fn loaded(args: &[&str]) -> Config {
    cli(args).unwrap().load().unwrap()
}

/// The routing part of such a command line's configuration.
fn route(args: &[&str]) -> RouteConfig {
    loaded(args).live.shadows.route
}

/// Why the configuration of such a command line is refused.
fn refused(args: &[&str]) -> String {
    cli(args).unwrap().load().unwrap_err().to_string()
}

/// The configuration of a file holding `text`.
fn resolved(text: &str) -> Config {
    FileConfig::parse(text).unwrap().resolve().unwrap()
}

/// Each set of flags is refused with an error that contains the text
/// beside it.
fn flag_errors(cases: &[(&[&str], &str)]) {
    for (args, expected) in cases {
        let err = cli(args).unwrap_err().to_string();
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
