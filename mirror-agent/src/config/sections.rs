//! The groups of settings. Each struct serves the command line (clap
//! flags) and the file (its keys) at once: a new setting is one field with
//! its doc line (the flag's help), its flag and its key.

use std::net::SocketAddr;

use serde::Serialize;
use toml::Spanned;
use toml::de::DeValue;

use super::values::{
    ByteSize, CaFile, Count, FieldPath, FlowCount, HeaderCount, HeaderName, HeaderRegex,
    HumanDuration, LogLevel, Method, Niceness, PathPrefix, Ports, QueryName, RedactName, RingSize,
};
use super::walk::Walk;
use crate::capture::AttachMode;
use crate::compare::{DiffLogTo, Role};
use crate::route::{
    ForwardedFor, HeaderLine, HeaderMatch, HeaderRewrite, HostHeader, PathRewrite, Pattern,
    QueryParam, Share, ShareKey,
};
use crate::telemetry::LogFormat;

/// An optional key that was not given (`skip_serializing_if`, and "the
/// flag was not given").
pub(super) trait Unset {
    fn unset(&self) -> bool;
}

impl<T> Unset for Option<T> {
    fn unset(&self) -> bool {
        self.is_none()
    }
}

impl<T> Unset for Vec<T> {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

/// A group of optional settings: the struct (clap flags and serde keys),
/// its key list, a reader that takes one key's value from the file (read
/// by hand rather than with a derived `Deserialize`, so that one bad key
/// does not hide the next), and the overlay of flags on the file.
///
/// `field "key": Type` reads the key as `Type`; `field "key" as FileType:
/// Type` reads it as `FileType` (a stricter parser) and converts.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$attr:meta])* $field:ident $key:literal $(as $file_ty:ty)? : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, clap::Args, Serialize)]
        pub struct $name {
            $(
                $(#[$attr])*
                #[serde(rename = $key, skip_serializing_if = "Unset::unset")]
                pub $field: $ty,
            )*
        }

        impl $name {
            pub(super) const KEYS: &'static [&'static str] = &[$($key),*];

            /// Reads the value of `key`, one of [`Self::KEYS`]; a bad value
            /// is recorded in `walk` under `path`.
            pub(super) fn read(
                &mut self,
                key: &str,
                path: &str,
                value: Spanned<DeValue<'_>>,
                walk: &mut Walk<'_>,
            ) {
                match key {
                    $( $key => {
                        if let Some(v) = section!(@read walk, path, value, $ty $(, $file_ty)?) {
                            self.$field = v;
                        }
                    } )*
                    _ => unreachable!("`{key}` is not a key of this section"),
                }
            }

            /// The settings given in `flags` replace these (a list as a
            /// whole).
            pub(super) fn overlay(&mut self, flags: &Self) {
                $(
                    if !Unset::unset(&flags.$field) {
                        self.$field.clone_from(&flags.$field);
                    }
                )*
            }
        }
    };
    (@read $walk:ident, $path:ident, $value:ident, $ty:ty) => {
        $walk.value::<$ty>($path, $value)
    };
    (@read $walk:ident, $path:ident, $value:ident, $ty:ty, $file_ty:ty) => {
        $walk.value::<$file_ty>($path, $value).map(<$ty>::from)
    };
}

section! {
    /// What the kernel program captures.
    pub struct CaptureSection {
        /// Interface whose ingress traffic is captured (file: `iface`).
        /// Example: --iface eth0
        #[arg(long, value_name = "IFACE")]
        iface "iface": Option<String>,

        /// Service port to capture (destination port of the requests); repeat
        /// the flag for more, up to 16 (file: `ports`). Example: --port 80 --port 8080
        #[arg(
            long = "port",
            value_name = "PORT",
            value_parser = clap::value_parser!(u16).range(1..)
        )]
        ports "ports" as Ports: Vec<u16>,

        /// Share of connections to capture, in percent (0 to 100, two decimals).
        /// A connection is captured whole or not at all. Default 100.
        /// Example: --sample 12.5
        #[arg(long, value_name = "PERCENT")]
        sample "sample": Option<Share>,

        /// Ring buffer between kernel and agent, in bytes; a power of two, with
        /// an optional K, M or G suffix. Default 16M. Example: --ring-size 256M
        #[arg(long, value_name = "BYTES")]
        ring_size "ring_size": Option<RingSize>,

        /// How to attach: tcx (Linux >= 6.6), netlink (clsact filter, older
        /// kernels) or auto (default). Example: --attach netlink
        #[arg(long, value_enum, value_name = "MODE")]
        attach "attach": Option<AttachMode>,
    }
}

section! {
    /// The agent itself: priority, logs, metrics, shutdown.
    pub struct AgentSection {
        /// CPU priority of the agent as a nice value, from 0 (the service's
        /// own) to 19 (the lowest). Default 10: when the host's CPUs are short,
        /// the service keeps its share and the agent falls behind — counted as
        /// ring losses — instead of slowing production. A higher niceness the
        /// agent was started with is kept. Example: --nice 0
        #[arg(long, value_name = "NICE")]
        nice "nice": Option<Niceness>,

        /// Log format on stderr; JSON when stderr is not a terminal unless set.
        /// Example: --log-format text
        #[arg(long, value_enum, value_name = "FORMAT")]
        log_format "log_format": Option<LogFormat>,

        /// Log level or filter (RUST_LOG syntax); RUST_LOG overrides it.
        /// Default info. Example: --log-level debug
        #[arg(long, value_name = "LEVEL")]
        log_level "log_level": Option<LogLevel>,

        /// Log this share of the captured requests, in percent, at debug level:
        /// method, path and what each target did with it (queued, filtered,
        /// dropped). Off by default; costs nothing when off. Example: --log-requests 1
        #[arg(long, value_name = "PERCENT")]
        log_requests "log_requests": Option<Share>,

        /// Where to serve /metrics, /healthz and /readyz. Default
        /// 127.0.0.1:9464 (loopback); another address is an explicit choice.
        /// Example: --metrics-addr 0.0.0.0:9464
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_addr "metrics_addr": Option<SocketAddr>,

        /// Interval of the summary log line (rates, drops by reason).
        /// Default 10s. Example: --stats-interval 30s
        #[arg(long, value_name = "DURATION")]
        stats_interval "stats_interval": Option<HumanDuration>,

        /// On SIGTERM/SIGINT: after detaching, how long the shadow queues may
        /// drain before what is left is dropped (counted). Default 5s.
        /// Example: --drain-timeout 2s
        #[arg(long, value_name = "DURATION")]
        drain_timeout "drain_timeout": Option<HumanDuration>,

        /// Write each differing exchange of the comparison as a JSON line to
        /// this file, or to stderr with `-` (sampled, rate limited;
        /// credential headers never written). Example: --diff-log /var/log/mirror-diff.jsonl
        #[arg(long, value_name = "FILE|-")]
        diff_log "diff_log": Option<DiffLogTo>,

        /// Percent of the differing exchanges the diff log writes. Default 100.
        /// Example: --diff-log-sample 10
        #[arg(long, value_name = "PERCENT")]
        diff_log_sample "diff_log_sample": Option<Share>,

        /// Most diff log lines a second (the rest are counted, not written).
        /// Default 10. Example: --diff-log-rate 100
        #[arg(long, value_name = "N")]
        diff_log_rate "diff_log_rate": Option<Count>,

        /// Largest size of the diff log file: past it the file is rotated
        /// (FILE.1 is the newest old one, see --diff-log-keep), so the log is
        /// bounded however long the agent runs. Default 100M.
        /// Example: --diff-log-max-size 1G
        #[arg(long, value_name = "BYTES")]
        diff_log_max_size "diff_log_max_size": Option<ByteSize>,

        /// Rotated diff log files kept (FILE.1 ... FILE.N, the oldest removed;
        /// 0 keeps none). Default 5. Example: --diff-log-keep 10
        #[arg(long, value_name = "N")]
        diff_log_keep "diff_log_keep": Option<Count>,

        /// Endpoint templates (`GET /items/{id}`) the comparison counts apart,
        /// in its report and as the `endpoint` label of its metrics (half as
        /// they come, half to templates seen 3 times); the rest are counted
        /// together as `other`, so a scan of random paths cannot grow the
        /// report or the label set. Default 100. Example: --compare-max-endpoints 300
        #[arg(long, value_name = "N")]
        compare_max_endpoints "compare_max_endpoints": Option<Count>,

        /// A JSON field whose values are credentials, at any depth, besides the
        /// built-in names (*token*, *secret*, *password*, passwd, api_key,
        /// *session*, *cookie*, sig, *signature* ...); any case and style (apiKey
        /// = api_key = API-KEY), `*` at either end for anything there. Its values
        /// are never shown (the comparison's report and diff log show a marker,
        /// a keyed hash that still tells whether the sides differed) nor written
        /// by `record`. Repeat for more. Example: --redact-field pin
        #[arg(long = "redact-field", value_name = "NAME")]
        redact_fields "redact_fields": Vec<RedactName>,

        /// A header whose values are credentials, besides the built-in names
        /// (Authorization, Cookie, Set-Cookie, *token*, *key ...): compared, never
        /// shown. Repeat for more. Example: --redact-header X-Tenant-Id
        #[arg(long = "redact-header", value_name = "NAME")]
        redact_headers "redact_headers": Vec<RedactName>,

        /// A query parameter (or form field) whose values are credentials,
        /// besides the built-in names (*token*, sig, *session*, *key, code on
        /// authorisation paths ...): its value never shown in the diff log's
        /// paths. Repeat for more. Example: --redact-query ticket
        #[arg(long = "redact-query", value_name = "NAME")]
        redact_queries "redact_queries": Vec<RedactName>,

        /// Drop the built-in credential names: only the --redact-* names stay
        /// hidden, so credentials may be written to the diff log, the report
        /// and recordings (warned about at start). Example: --no-default-redaction
        #[arg(
            long,
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        no_default_redaction "no_default_redaction": Option<bool>,
    }
}

section! {
    /// Limits of reassembly and framing (memory caps, timeouts).
    pub struct LimitSection {
        /// Most connections tracked at once; beyond it the oldest is evicted
        /// (counted). Default 65536. Example: --max-flows 200000
        #[arg(long, value_name = "N")]
        max_flows "max_flows": Option<FlowCount>,

        /// Bytes held out of order per connection while a hole waits to be
        /// filled. Default 1M. Example: --max-flow-buffer 4M
        #[arg(long, value_name = "BYTES")]
        max_flow_buffer "max_flow_buffer": Option<ByteSize>,

        /// Bytes buffered by all connections together. Default 256M.
        /// Example: --max-buffered 1G
        #[arg(long, value_name = "BYTES")]
        max_buffered "max_buffered": Option<ByteSize>,

        /// A connection without packets for this long ends. Default 60s.
        /// Example: --flow-idle-timeout 5m
        #[arg(long, value_name = "DURATION")]
        flow_idle_timeout "flow_idle_timeout": Option<HumanDuration>,

        /// A hole in a stream not filled within this is given up (a gap).
        /// Default 3s. Example: --hole-timeout 1s
        #[arg(long, value_name = "DURATION")]
        hole_timeout "hole_timeout": Option<HumanDuration>,

        /// Largest request head (and chunked trailer section). Default 64K.
        /// Example: --max-head-size 128K
        #[arg(long, value_name = "BYTES")]
        max_head_size "max_head_size": Option<ByteSize>,

        /// Most header fields in a request, up to 256. Default 100.
        /// Example: --max-headers 200
        #[arg(long, value_name = "N")]
        max_headers "max_headers": Option<HeaderCount>,

        /// Largest body mirrored; larger requests are skipped (counted).
        /// Bodies over 64K stream to the shadows as they arrive, so memory
        /// does not grow with this. Default 16G. Example: --max-body-size 8M
        #[arg(long, value_name = "BYTES")]
        max_body_size "max_body_size": Option<ByteSize>,
    }
}

section! {
    /// Rules, rewrites and transport settings: the keys the top level (and
    /// the flags) and each `[[target]]` have in common.
    pub struct RuleSection {
        /// Share of the requests to mirror, in percent (per request, on top of
        /// --sample's per-connection sampling). Example: --share 10
        #[arg(long, value_name = "PERCENT")]
        share "share": Option<Share>,

        /// Choose the share by a key instead of at random, so the same users
        /// are always mirrored, by every agent: a header's value, a query
        /// parameter's, or the client's IP address. A request is in when
        /// 64-bit FNV-1a of the key's bytes, modulo 10000, is below the share
        /// × 100; one without the key is not mirrored (`no_share_key`). Needs
        /// --share. Example: --share 25 --share-by header:X-User-Id
        #[arg(long, value_name = "header:NAME|query:NAME|client-ip")]
        share_by "share_by": Option<ShareKey>,

        /// Mirror only these methods (case-sensitive). Repeat for more.
        /// Example: --method GET --method HEAD
        #[arg(long = "method", value_name = "METHOD")]
        methods "methods": Vec<Method>,

        /// Mirror only paths starting with one of these (the query is not part
        /// of the path). Example: --path-prefix /api
        #[arg(long = "path-prefix", value_name = "PREFIX")]
        path_prefixes "path_prefixes": Vec<PathPrefix>,

        /// Mirror only paths matching one of these regexes (unanchored).
        /// Example: --path-regex '^/v[0-9]+/'
        #[arg(long = "path-regex", value_name = "REGEX")]
        path_regexes "path_regexes": Vec<Pattern>,

        /// Never mirror paths starting with this. Example: --deny-path-prefix /admin
        #[arg(long = "deny-path-prefix", value_name = "PREFIX")]
        deny_path_prefixes "deny_path_prefixes": Vec<PathPrefix>,

        /// Never mirror paths matching this regex. Example: --deny-path-regex '/internal$'
        #[arg(long = "deny-path-regex", value_name = "REGEX")]
        deny_path_regexes "deny_path_regexes": Vec<Pattern>,

        /// Never mirror requests with a value of this header matching the
        /// regex (unanchored). Repeat for more. Example:
        /// --deny-header-regex 'User-Agent:(?i)bot'
        #[arg(long = "deny-header-regex", value_name = "NAME:REGEX")]
        deny_header_regexes "deny_header_regexes": Vec<HeaderRegex>,

        /// Host header sent: `original` (as the client sent it, default),
        /// `target` (the target URL's host:port) or a literal value.
        /// Example: --host-header target
        #[arg(long, value_name = "original|target|VALUE")]
        host_header "host_header": Option<HostHeader>,

        /// Set a header on mirrored requests (replacing the client's of that
        /// name). Example: --set-header 'X-Env: shadow'
        #[arg(long = "set-header", value_name = "'NAME: VALUE'")]
        set_headers "set_headers": Vec<HeaderLine>,

        /// Remove a header from mirrored requests. Example: --strip-header Authorization
        #[arg(long = "strip-header", value_name = "NAME")]
        strip_headers "strip_headers": Vec<HeaderName>,

        /// Rewrite the path (the query is kept) with a regex and capture
        /// groups ($1, ${name}); the first rule that matches replaces every
        /// match. Absolute-form request targets are always sent in origin
        /// form. Example: --rewrite-path '^/v1/(.*)=>/v2/$1'
        #[arg(long = "rewrite-path", value_name = "'REGEX=>REPLACEMENT'")]
        rewrite_paths "rewrite_paths": Vec<PathRewrite>,

        /// Rewrite the values of a header with a regex and capture groups;
        /// every rule for the name applies in turn.
        /// Example: --rewrite-header 'Host:^(.*)\.example\.com$=>$1.shadow.internal'
        #[arg(long = "rewrite-header", value_name = "'NAME:REGEX=>REPLACEMENT'")]
        rewrite_headers "rewrite_headers": Vec<HeaderRewrite>,

        /// Set a query parameter (replacing the client's of that name,
        /// appended last); the value goes as given (percent-encode it).
        /// Example: --set-query shadow=1
        #[arg(long = "set-query", value_name = "NAME=VALUE")]
        set_queries "set_queries": Vec<QueryParam>,

        /// Remove every query parameter of this name. Example: --remove-query token
        #[arg(long = "remove-query", value_name = "NAME")]
        remove_queries "remove_queries": Vec<QueryName>,

        /// Append the client's IP address, as the capture saw it, to
        /// X-Forwarded-For (or to the header given with =NAME), adding the
        /// header if the request has none: the shadow otherwise sees the
        /// agent's address. In the file: true, false or a header name.
        /// Example: --forwarded-for, --forwarded-for=X-Real-Client
        #[arg(
            long,
            value_name = "NAME",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "X-Forwarded-For"
        )]
        forwarded_for "forwarded_for": Option<ForwardedFor>,

        /// Requests queued per target; beyond it they are dropped and counted.
        /// Default 1024. Example: --queue-size 4096
        #[arg(long, value_name = "N")]
        queue_size "queue_size": Option<Count>,

        /// Requests in flight per target (and so connections per address).
        /// Default 32. Example: --max-in-flight 64
        #[arg(long, value_name = "N")]
        max_in_flight "max_in_flight": Option<Count>,

        /// At most N requests a second to each target (a token bucket with a
        /// burst of a tenth of a second's worth); the excess is dropped and
        /// counted `rate_limited`. Default: no limit. Example: --rate-limit 100
        #[arg(long, value_name = "N")]
        rate_limit "rate_limit": Option<Count>,

        /// CA certificates (PEM) an https target's certificate must chain to,
        /// instead of the system's root certificates. Example:
        /// --ca-file /etc/mirror/shadow-ca.pem
        #[arg(long, value_name = "FILE")]
        ca_file "ca_file": Option<CaFile>,

        /// Do not verify an https target's certificate nor its host name (test
        /// setups only: anyone on the path could read the mirrored requests);
        /// warned about at start. Example: --insecure-skip-verify
        #[arg(
            long,
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        insecure_skip_verify "insecure_skip_verify": Option<bool>,

        /// Connect timeout (ms, s or m). Default 3s (a lost SYN is resent after
        /// 1 s). Example: --connect-timeout 500ms
        #[arg(long, value_name = "DURATION")]
        connect_timeout "connect_timeout": Option<HumanDuration>,

        /// Time for a whole request and its response. Default 5s.
        /// Example: --request-timeout 2s
        #[arg(long, value_name = "DURATION")]
        request_timeout "request_timeout": Option<HumanDuration>,

        /// How often target host names are resolved again. Default 10s.
        /// Example: --resolve-interval 30s
        #[arg(long, value_name = "DURATION")]
        resolve_interval "resolve_interval": Option<HumanDuration>,

        /// How long an idle keep-alive connection is kept. Default 30s.
        #[arg(long, value_name = "DURATION")]
        idle_timeout "idle_timeout": Option<HumanDuration>,

        /// A request captured longer ago than this when its turn comes is
        /// dropped (counted `expired`) instead of sent late, e.g. after the
        /// shadow was down. Default 3s. Example: --max-queue-age 10s
        #[arg(long, value_name = "DURATION")]
        max_queue_age "max_queue_age": Option<HumanDuration>,

        /// Compare each answer of the target with v1's own response to the same
        /// request (v1's responses are captured at egress). Example: --compare
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        compare "compare": Option<bool>,

        /// The target's part in the comparison (file only; --baseline gives a
        /// baseline): `candidate` (default), or `baseline`, v1's own version
        /// elsewhere, whose differences with v1 are noise.
        #[arg(skip)]
        role "role": Option<Role>,

        /// A response header the comparison ignores, besides the default list
        /// (Date, Server, Age, ETag, request ids ...). Repeat for more.
        /// Example: --compare-ignore-header X-Backend
        #[arg(long = "compare-ignore-header", value_name = "NAME")]
        compare_ignore_headers "compare_ignore_headers": Vec<HeaderName>,

        /// A JSON field the comparison ignores, by path; `[*]` for any array
        /// index. Repeat for more. Example: --compare-ignore-field '$.items[*].id'
        #[arg(long = "compare-ignore-field", value_name = "JSONPATH")]
        compare_ignore_fields "compare_ignore_fields": Vec<FieldPath>,

        /// Bytes of each body kept for the comparison; longer bodies are
        /// compared by length and hash. Default 1M. Example: --compare-body-cap 4M
        #[arg(long, value_name = "BYTES")]
        compare_body_cap "compare_body_cap": Option<ByteSize>,

        /// How long a request waits for v1's and the targets' answers before
        /// it is counted as not compared (`timeout`); for a body that
        /// streams (over 64K), from the body's end. Default 10s.
        /// Example: --compare-timeout 30s
        #[arg(long, value_name = "DURATION")]
        compare_timeout "compare_timeout": Option<HumanDuration>,

        /// `[[match]]` tables: every one must hold (flags: --match-header,
        /// --match-header-regex).
        #[arg(skip)]
        matches "match": Vec<HeaderMatch>,
    }
}
