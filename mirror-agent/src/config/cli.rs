//! The command line: every section's flags, the flags that have no key of
//! their own (`--shadow`, `--match-header`, the marker), and the flags
//! written over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::file::{FileConfig, TargetFile};
use super::sections::{AgentSection, CaptureSection, LimitSection, RuleSection};
use super::values::{
    ByteSize, HumanDuration, Marker, RotateAge, RotateSize, parse_match_header,
    parse_match_header_regex,
};
use super::{Config, InvalidConfig};
use crate::compare::Role;
use crate::route::{HeaderLine, HeaderMatch, TargetUrl};

const EXAMPLES: &str = "\
Examples:
  Capture HTTP on port 80 of eth0 (debug shows each connection):
    sudo mirror-agent --iface eth0 --port 80 --log-level debug
  Two service ports, a quarter of the connections, netlink attach:
    sudo mirror-agent --iface ens5 --port 80 --port 8080 --sample 25 --attach netlink
  A bigger ring for bursty traffic, JSON logs:
    sudo mirror-agent --iface eth0 --port 80 --ring-size 256M --log-format json
  Mirror port 80 to two shadows, without credentials, a tenth of the requests:
    sudo mirror-agent --iface eth0 --port 80 --shadow http://myapp-v2:9000 \\
      --shadow http://10.0.0.7:9001/prefix --share 10 \\
      --strip-header Authorization --strip-header Cookie
  Only GET requests under /api that carry X-Canary: 1, Host rewritten:
    sudo mirror-agent --iface eth0 --port 8080 --shadow http://v2:8080 --method GET \\
      --path-prefix /api --match-header X-Canary:1 --host-header target
  Everything from a file, one flag on top; check the file first:
    mirror-agent check-config /etc/mirror.toml
    sudo mirror-agent --config /etc/mirror.toml --dry-run
  Compare v2's and v3's answers with v1's, a baseline (another v1) to tell noise:
    sudo mirror-agent --iface eth0 --port 80 --shadow http://myapp-v2:9000 \\
      --shadow http://myapp-v3:9000 --baseline http://myapp-v1-b:9000 --compare \\
      --compare-ignore-field '$.served_at' --diff-log /var/log/mirror-diff.jsonl
    mirror-agent compare-report --metrics-addr 127.0.0.1:9464
  Log one request in a hundred (method, path, what each target did):
    sudo mirror-agent --config /etc/mirror.toml --log-requests 1

Signals: SIGTERM or SIGINT detach, drain the shadow queues (--drain-timeout),
log the final counts and exit 0; a second one skips the drain. SIGHUP reads
the --config file again and applies its targets and rules without detaching
(a bad file is refused and the running configuration stays).";

/// Mirror the HTTP requests a service receives to shadow targets.
///
/// A TC ingress eBPF program copies the TCP payload arriving on the service
/// ports; production packets pass untouched. Every flag can also be given
/// in the --config file (flags win).
#[derive(Debug, Parser)]
#[command(
    name = "mirror-agent",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub capture: CaptureSection,

    /// TOML file with any of the settings of these flags, targets and
    /// per-target rules (`mirror-agent check-config FILE` validates it and
    /// `check-config --help` shows every key). Flags override the file's
    /// top-level keys; SIGHUP reads it again. Example: --config /etc/mirror.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub mirror: MirrorFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print the effective configuration
    /// (every default spelled out). Every error is reported with its line.
    #[command(after_long_help = concat!("A file with every key:\n\n", include_str!("example.toml")))]
    CheckConfig {
        /// The TOML file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the comparison's verdict of a running agent (its `/compare`
    /// report) in the terminal: per target, the match rate of what was
    /// compared and how much was not, the fields that differ across
    /// endpoints with the flag that ignores each, then the endpoints, the
    /// most severe first, with every field that differs and how often.
    #[command(
        after_help = "Examples:\n  mirror-agent compare-report --metrics-addr 127.0.0.1:9464\n  \
                            mirror-agent compare-report --json | jq '.targets[].summary'"
    )]
    CompareReport(CompareReportArgs),
    /// The promotion gate: does a shadow target answer like v1? Asks one
    /// agent (--metrics-addr, its `/verdict`) or the fleet's counts in
    /// Prometheus (--prometheus: every agent's, summed over --window), and
    /// applies the rule: pass when at least --min-compared exchanges were
    /// compared and at most --max-differ of them differ (noise excluded,
    /// failures included), and no endpoint with --min-endpoint-compared
    /// exchanges differs over --max-endpoint-differ. Prints one line; exit
    /// status 0 pass, 1 fail, 2 inconclusive (too few exchanges), 3 cannot
    /// tell (unreachable, unknown target, bad flags).
    #[command(after_help = VERDICT_EXAMPLES)]
    Verdict(VerdictArgs),
    /// Record the captured requests to a file in goreplay's format (from
    /// the live capture, or from a pcap/pcapng file without root).
    #[command(after_help = RECORD_EXAMPLES)]
    Record(Box<RecordArgs>),
    /// Replay requests recorded in goreplay's format (or in a pcap/pcapng
    /// file) to shadow targets, with the routing, rewrites, queues and
    /// accounting of live mirroring.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(Box<ReplayArgs>),
}

/// `mirror-agent compare-report`: where the agent serves its report.
#[derive(Debug, Args)]
pub struct CompareReportArgs {
    /// The agent's metrics address, as given to its --metrics-addr.
    /// Default 127.0.0.1:9464. Example: --metrics-addr 127.0.0.1:9464
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "url")]
    pub metrics_addr: Option<SocketAddr>,

    /// The same as a URL, a path prefix allowed (an agent behind a
    /// proxy): http://HOST:PORT[/PREFIX]. The flag's first spelling, kept.
    /// Example: --url http://127.0.0.1:9464
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Print the JSON report as it is served.
    #[arg(long)]
    pub json: bool,
}

impl CompareReportArgs {
    /// The agent's base URL: --url as given, else --metrics-addr's (or
    /// the default's) address.
    pub fn base_url(&self) -> String {
        match (&self.url, self.metrics_addr) {
            (Some(url), _) => url.clone(),
            (None, Some(addr)) => format!("http://{addr}"),
            (None, None) => format!("http://{}", super::DEFAULT_METRICS_ADDR),
        }
    }
}

/// `mirror-agent verdict`: where the counts come from, the target and the
/// rule.
#[derive(Debug, Args)]
pub struct VerdictArgs {
    /// The shadow target, as the agents name it (its URL unless named).
    /// Example: --target http://myapp-v2:9000
    #[arg(long, value_name = "URL")]
    pub target: String,

    /// One agent's metrics address (its --metrics-addr), asked for its
    /// `/verdict`: that agent's counts only. Default 127.0.0.1:9464.
    /// Example: --metrics-addr 127.0.0.1:9464
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "prometheus")]
    pub metrics_addr: Option<String>,

    /// A Prometheus (or Thanos, Mimir: its HTTP API) scraping every agent:
    /// the fleet's counts, the increase of mirror_compare_exchanges_total
    /// over --window summed over the agents. Example: --prometheus http://prometheus:9090
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,

    /// With --prometheus: how far back to count (s, m, h, d). Default 10m.
    /// Example: --window 1h
    #[arg(long, value_name = "DURATION", requires = "prometheus")]
    pub window: Option<String>,

    /// With --prometheus: label matchers that pick the agents' series.
    /// Example: --selector 'job="mirror",namespace="shop"'
    #[arg(long, value_name = "MATCHERS", requires = "prometheus")]
    pub selector: Option<String>,

    /// Largest share of the compared exchanges that may differ. Default 1%.
    /// Example: --max-differ 0.5%
    #[arg(long, value_name = "PERCENT", value_parser = crate::compare::gate::parse_percent)]
    pub max_differ: Option<f64>,

    /// Fewest compared exchanges for a pass or a fail; fewer is
    /// inconclusive. Default 500. Example: --min-compared 1000
    #[arg(long, value_name = "N")]
    pub min_compared: Option<u64>,

    /// Largest share differing on any one endpoint with enough exchanges
    /// (`off`: endpoints are not judged apart). Default 5%.
    /// Example: --max-endpoint-differ 10%
    #[arg(long, value_name = "PERCENT|off")]
    pub max_endpoint_differ: Option<crate::compare::gate::Limit>,

    /// Fewest exchanges for an endpoint to be judged apart. Default 100.
    /// Example: --min-endpoint-compared 50
    #[arg(long, value_name = "N")]
    pub min_endpoint_compared: Option<u64>,

    /// Print the verdict as JSON (the body of /verdict).
    #[arg(long)]
    pub json: bool,
}

impl VerdictArgs {
    /// The rule: the defaults, with the flags given over them.
    pub fn rule(&self) -> crate::compare::gate::Rule {
        let mut rule = crate::compare::gate::Rule::default();
        if let Some(max) = self.max_differ {
            rule.max_differ = max;
        }
        if let Some(min) = self.min_compared {
            rule.min_compared = min;
        }
        if let Some(max) = self.max_endpoint_differ {
            rule.max_endpoint_differ = max.0;
        }
        if let Some(min) = self.min_endpoint_compared {
            rule.min_endpoint_compared = min;
        }
        rule
    }
}

const VERDICT_EXAMPLES: &str = "\
Examples:
  One agent (its own traffic), the default rule:
    mirror-agent verdict --metrics-addr 127.0.0.1:9464 --target http://myapp-v2:9000
  The fleet, from Prometheus, over the last 30 minutes, stricter:
    mirror-agent verdict --prometheus http://prometheus:9090 --window 30m \\
      --target http://myapp-v2:9000 --max-differ 0.5% --min-compared 2000
  In a CI job: exit 0 pass, 1 fail, 2 inconclusive (retry later), 3 cannot tell.";

const RECORD_EXAMPLES: &str = "\
Examples:
  Record port 80 of eth0 to a file (goreplay's --output-file):
    sudo mirror-agent record --iface eth0 --port 80 --output requests.gor
  Compressed, a tenth of the connections, GET requests under /api only:
    sudo mirror-agent record --iface eth0 --port 80 --sample 10 --method GET \\
      --path-prefix /api --output requests.gor.gz
  From a packet capture taken by tcpdump (no root needed):
    mirror-agent record --input-pcap incident.pcap --port 8080 --output incident.gor
  One file an hour (UTC), a new one past 256 MiB before gzip
  (req-2025-06-01-13.gor.gz, req-2025-06-01-13_1.gor.gz, ...):
    sudo mirror-agent record --iface eth0 --port 80 \\
      --output '/var/lib/mirror/req-%Y-%m-%d-%H.gor.gz' --rotate-size 256M
  A file every 10 minutes, in a directory per day:
    sudo mirror-agent record --iface eth0 --port 80 --output 'rec/%Y%m%d/%H%M.gor' --rotate-age 10m
  With v1's responses (type 2 payloads, the request's id), to compare a
  new version offline later with `replay --compare`:
    sudo mirror-agent record --iface eth0 --port 80 --responses --output v1.gor

The file is complete when the command ends: SIGTERM or SIGINT stop the
capture, the queued requests are written, the file is flushed, and the
final counts are printed: captured = written + filtered + dropped(reason).
With rotation, every file is complete (flushed, gzip trailer, synced) when
the next one starts, and readable on its own; each file opened and
completed is logged (path, payloads, bytes).

With --input-pcap, an empty file is refused in one sentence; a capture cut
inside its last packet is read up to it (a warning, exit 0); a capture with
no packets, none of --port, or payloads cut by a small snap length (named
with it: capture with -s 0) is each said in a warning.";

const REPLAY_EXAMPLES: &str = "\
Examples:
  Replay a recording to staging at its recorded pace:
    mirror-agent replay requests.gor --shadow http://staging:8080
  Twice as fast (goreplay's \"requests.gor|200%\"), several files in order:
    mirror-agent replay day1.gor day2.gor.gz --shadow http://staging:8080 --speed 200%
  The recorded pace, but never more than 2 s between two requests:
    mirror-agent replay requests.gor --shadow http://staging:8080 --max-wait 2s
  A load test: 500 requests a second, over and over, metrics on :9464:
    mirror-agent replay requests.gor --shadow http://staging:8080 --rate 500 --loop \\
      --metrics-addr 127.0.0.1:9464
  The requests of a packet capture, as fast as the target takes them:
    mirror-agent replay --input-pcap incident.pcap --port 8080 --shadow http://v2:8080 --speed max
  Compare v2's answers with v1's recorded ones (`record --responses`):
    mirror-agent replay v1.gor --shadow http://v2:8080 --compare --speed max
  ... or with v1's answers in a packet capture (paired first, in $TMPDIR):
    mirror-agent replay --input-pcap v1.pcap --port 8080 --shadow http://v2:8080 --compare

  The files of a rotated recording, in order (ls -v puts req_10 after req_9):
    mirror-agent replay $(ls -v rec/req-2025-06-01-*.gor.gz) --shadow http://staging:8080

Without --speed or --rate the recorded pace is kept (100%). Several files
are replayed back to back, each with its own recorded gaps (the gap between
two files is waited only with --keep-file-gaps). On a terminal a progress
line shows the bytes read of the files (compressed for .gz) of their total,
requests replayed, the rate, elapsed time and time left (with --loop, of
the current pass); otherwise it is logged every 5 s. At the end the final
counts of each target are printed: captured = sent + filtered +
dropped(reason).

Signals: SIGTERM or SIGINT end any wait at once (a recorded gap, a slow
--speed, a read that blocks such as a FIFO with no writer), the queues
drain for at most --drain-timeout, the final counts are printed and the
exit status is 0; a second signal stops the targets at once (what was
queued counts as dropped `shutdown`), the final counts still printed.

Files that are not what they should be are refused with one sentence (not a
goreplay file: ..., the file is empty: not a pcap or pcapng file). A packet
capture cut inside its last packet is read up to it, with a warning; one
taken with a small snap length is named as such (capture with -s 0).";

/// `mirror-agent record`: the capture flags (or a pcap), the filters, the
/// output file.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The file to write, in goreplay's format; gzip when the name ends in
    /// `.gz`. The name may hold time patterns, expanded in UTC when a file
    /// is opened: %Y year, %m month, %d day, %H hour, %M minute, %S second,
    /// %NS nanoseconds, %% a %; when the expanded name changes (the next
    /// hour for %H), a new file starts. With patterns or --rotate-*, an
    /// existing name gets a counter before its extensions (req_1.gor.gz)
    /// and no file is replaced; a plain name alone is replaced if it
    /// exists. A directory in the name that holds a pattern is created.
    /// Example: --output 'requests-%Y-%m-%d-%H.gor.gz'
    #[arg(long, value_name = "FILE", value_parser = parse_output)]
    pub output: PathBuf,

    /// Start a new file before the current one would pass this size, in
    /// bytes of payloads as written (before gzip for a .gz, as goreplay
    /// counts); a payload is never split. Units K, M, G, optionally with B
    /// or iB, all binary: 32M = 32MB = 32MiB = 33554432 bytes.
    /// goreplay's --output-file-size-limit. Example: --rotate-size 32M
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<RotateSize>,

    /// Start a new file when the current one is this old: s, m, h or d.
    /// Example: --rotate-age 10m
    #[arg(long, value_name = "DURATION")]
    pub rotate_age: Option<RotateAge>,

    /// Also record v1's responses: each as a type 2 payload with its
    /// request's id (goreplay's --input-raw-track-response). Live, the
    /// capture attaches at egress too; from a pcap, the server's packets
    /// in it are used. `replay --compare` then compares the replayed
    /// answers with them. Example: --responses
    #[arg(long)]
    pub responses: bool,

    /// With --responses: a response larger than this (head, framing and
    /// body as sent) is not written, counted as `too_large`. Default 1M.
    /// Example: --max-response 8M
    #[arg(long, value_name = "SIZE", requires = "responses")]
    pub max_response: Option<ByteSize>,

    /// Read packets from this pcap or pcapng file instead of capturing
    /// (no root, no kernel program); needs --port. Example: --input-pcap dump.pcap
    #[arg(long, value_name = "FILE", conflicts_with_all = ["iface", "sample", "ring_size", "attach"])]
    pub input_pcap: Option<PathBuf>,

    /// TOML file with any of the settings of these flags (see
    /// `check-config --help`); flags win. Example: --config /etc/mirror.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub capture: CaptureSection,

    #[command(flatten)]
    pub agent: AgentSection,

    #[command(flatten, next_help_heading = "Limits of reassembly and framing")]
    pub limits: LimitSection,

    /// Record only requests with this header (any value), or with this
    /// exact value. Repeat: all must hold. Example: --match-header X-Canary:1
    #[arg(long, value_name = "NAME[:VALUE]", value_parser = parse_match_header, help_heading = "Filters and rewrites of what is recorded")]
    pub match_header: Vec<HeaderMatch>,

    #[command(
        flatten,
        next_help_heading = "Filters and rewrites of what is recorded"
    )]
    pub rules: RuleSection,
}

/// The pace of a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// The recorded gaps between requests, scaled: 200% is twice as fast.
    Percent(f64),
    /// As fast as the targets take the requests.
    Max,
}

fn parse_speed(text: &str) -> Result<Speed, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Speed::Max);
    }
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 => Ok(Speed::Percent(p)),
        _ => Err(format!(
            "`{text}` is not a speed: a percentage above 0 (200% is twice as fast) or `max`"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{text}` is not a rate: requests a second, above 0"
        )),
    }
}

/// `mirror-agent replay`: the files (or a pcap), the pace, and the targets
/// and routing of live mirroring.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Files in goreplay's format (`.gz`: gzip), replayed one after the
    /// other. Example: requests.gor day2.gor.gz
    #[arg(value_name = "FILE", required_unless_present = "input_pcap")]
    pub files: Vec<PathBuf>,

    /// Replay the requests of this pcap or pcapng file (needs --port; with
    /// --compare, v1's answers in it too). Example: --input-pcap dump.pcap --port 8080
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "files",
        requires = "ports"
    )]
    pub input_pcap: Option<PathBuf>,

    /// With --input-pcap: the service port whose requests are replayed;
    /// repeat for more. Example: --port 8080
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,

    /// Pace: the recorded gaps between requests scaled by this percentage
    /// (200% is twice as fast, 50% half), or `max` (as fast as the targets
    /// take them). Default 100%. Example: --speed 200%
    #[arg(long, value_name = "PERCENT%|max", value_parser = parse_speed, conflicts_with = "rate")]
    pub speed: Option<Speed>,

    /// Pace: this many requests a second, whatever the recorded timing.
    /// Example: --rate 500
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// No wait between two requests is longer than this, whatever the
    /// recorded gap or the pace (goreplay's --input-file-max-wait); 500ms,
    /// 2s or 1m. Example: --max-wait 1s
    #[arg(long, value_name = "DURATION")]
    pub max_wait: Option<HumanDuration>,

    /// With several files: wait out the recorded gap between the last
    /// request of a file and the first of the next (scaled by --speed,
    /// capped by --max-wait). Without it the files are replayed back to
    /// back, each keeping its own gaps. Example: --keep-file-gaps
    #[arg(long)]
    pub keep_file_gaps: bool,

    /// Start again from the first file at the end, until stopped.
    #[arg(long = "loop")]
    pub repeat: bool,

    /// TOML file with any of the settings of these flags, targets and
    /// per-target rules; flags win. Example: --config /etc/mirror.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub mirror: MirrorFlags,
}

/// `--output`: a file name whose time patterns are known.
fn parse_output(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    crate::file::rotation::NamePattern::parse(&path)?;
    Ok(path)
}

/// The largest response `record --responses` writes by default.
pub const DEFAULT_MAX_RESPONSE: usize = 1 << 20;

impl RecordArgs {
    /// Where the recording goes: the name, its patterns and when a new
    /// file starts.
    pub fn output_plan(&self) -> crate::file::OutputPlan {
        crate::file::OutputPlan {
            pattern: self.output.clone(),
            max_bytes: self.rotate_size.map(|s| s.0),
            max_age: self.rotate_age.map(|a| a.0),
        }
    }

    /// With --responses: the largest response written, in bytes.
    pub fn max_response_bytes(&self) -> Option<usize> {
        self.responses.then(|| {
            self.max_response.map_or(DEFAULT_MAX_RESPONSE, |s| {
                s.0.min(usize::MAX as u64) as usize
            })
        })
    }

    /// The configuration, as the agent's flags would give it.
    pub fn load(&self) -> Result<Config, InvalidConfig> {
        Cli {
            command: None,
            capture: self.capture.clone(),
            config: self.config.clone(),
            mirror: MirrorFlags {
                agent: self.agent.clone(),
                limits: self.limits.clone(),
                targets: TargetFlags {
                    match_header: self.match_header.clone(),
                    ..TargetFlags::default()
                },
                rules: self.rules.clone(),
                routing: RoutingFlags::default(),
            },
        }
        .load()
    }
}

impl ReplayArgs {
    /// The configuration, as the agent's flags would give it.
    pub fn load(&self) -> Result<Config, InvalidConfig> {
        Cli {
            command: None,
            capture: CaptureSection {
                ports: self.ports.clone(),
                ..CaptureSection::default()
            },
            config: self.config.clone(),
            mirror: self.mirror.clone(),
        }
        .load()
    }
}

/// The flags of live mirroring that `replay` takes too: the agent's
/// settings, the limits, the targets and their routing. No argument group
/// of its own: the command line is the same as with the five flattened
/// into each command one by one.
#[derive(Clone, Debug, Default, Args)]
#[group(skip)]
pub struct MirrorFlags {
    #[command(flatten)]
    pub agent: AgentSection,

    #[command(flatten, next_help_heading = "Limits of reassembly and framing")]
    pub limits: LimitSection,

    #[command(flatten, next_help_heading = "Shadow targets and routing")]
    pub targets: TargetFlags,

    #[command(flatten, next_help_heading = "Shadow targets and routing")]
    pub rules: RuleSection,

    #[command(flatten, next_help_heading = "Shadow targets and routing")]
    pub routing: RoutingFlags,
}

/// The targets and the header matches: flags that write the file's
/// `[[target]]` list and `[[match]]` tables.
#[derive(Clone, Debug, Default, Args)]
pub struct TargetFlags {
    /// Shadow target, http:// or https:// (TLS verified, see --ca-file); a
    /// path is prepended to every request target. Repeat for more; replaces
    /// the file's targets.
    /// Example: --shadow http://myapp-v2:9000 --shadow https://10.0.0.7:9443/prefix
    #[arg(long, value_name = "URL")]
    pub shadow: Vec<TargetUrl>,

    /// A target running v1's own version (another replica, the same
    /// build): it gets the same copies, and the differences it shows with
    /// v1 are noise, kept out of the other targets' verdicts. Turns --compare
    /// on. Example: --baseline http://myapp-v1-b:9000
    #[arg(long, value_name = "URL")]
    pub baseline: Vec<TargetUrl>,

    /// Mirror only requests with this header (any value), or with this
    /// exact value. Repeat: all must hold. Example: --match-header X-Canary:1
    #[arg(long, value_name = "NAME[:VALUE]", value_parser = parse_match_header)]
    pub match_header: Vec<HeaderMatch>,

    /// Mirror only requests with a value of this header matching the regex
    /// (unanchored). Example: --match-header-regex 'User-Agent:^curl/'
    #[arg(long, value_name = "NAME:REGEX", value_parser = parse_match_header_regex)]
    pub match_header_regex: Vec<HeaderMatch>,
}

/// The marker header and the dry run: the file's `marker` and `dry_run`.
#[derive(Clone, Debug, Default, Args)]
pub struct RoutingFlags {
    /// Header added to every mirrored request; captured requests that carry
    /// it are never mirrored (loop guard). Default 'X-Mirrored-By: mirror'.
    #[arg(long, value_name = "'NAME: VALUE'", conflicts_with = "no_marker")]
    pub marker_header: Option<HeaderLine>,

    /// Add no marker header (and so no loop guard by header).
    #[arg(long)]
    pub no_marker: bool,

    /// Capture and route, count what would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Cli {
    /// The configuration: the `--config` file if any, the flags over it,
    /// validated. Every problem is reported, one line each.
    pub fn load(&self) -> Result<Config, InvalidConfig> {
        let mut file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        self.apply(&mut file);
        file.resolve().map_err(|errors| file.render_errors(&errors))
    }

    /// Writes the flags that were given over the file's top-level keys.
    fn apply(&self, file: &mut FileConfig) {
        file.capture.overlay(&self.capture);
        let m = &self.mirror;
        file.agent.overlay(&m.agent);
        file.limits.overlay(&m.limits);
        file.rules.overlay(&m.rules);
        let t = &m.targets;
        if !t.shadow.is_empty() {
            file.targets = t.shadow.iter().cloned().map(TargetFile::new).collect();
        }
        if !t.baseline.is_empty() {
            file.targets.extend(t.baseline.iter().cloned().map(|url| {
                let mut target = TargetFile::new(url);
                target.rules.role = Some(Role::Baseline);
                target
            }));
            // A baseline is only of use to candidates that are compared.
            file.rules.compare.get_or_insert(true);
        }
        if !t.match_header.is_empty() || !t.match_header_regex.is_empty() {
            file.rules.matches = t
                .match_header
                .iter()
                .chain(&t.match_header_regex)
                .cloned()
                .collect();
        }
        let r = &m.routing;
        if let Some(marker) = &r.marker_header {
            file.marker = Some(Marker::Header(marker.clone()));
        }
        if r.no_marker {
            file.marker = Some(Marker::Off);
        }
        if r.dry_run {
            file.dry_run = Some(true);
        }
    }
}
