//! From the file (with the flags written over it) to the typed, validated
//! [`Config`], defaults filled in; and back, every key spelled out
//! (`check-config`, and the reload's list of changed keys).

use std::time::Duration;

use mirror_common::MAX_PORTS;
use toml::Spanned;

use super::error::ConfigError;
use super::file::{FileConfig, TargetFile};
use super::sections::{AgentSection, CaptureSection, LimitSection, RuleSection};
use super::values::{
    ByteSize, CaFile, Count, FieldPath, FlowCount, HeaderCount, HeaderName, HeaderRegex,
    HumanDuration, LogLevel, Marker, Method, Niceness, PathPrefix, QueryName, RedactName, RingSize,
};
use super::{CaptureSettings, Config, Live, Startup};
use crate::compare::{
    CompareConfig, DEFAULT_BODY_CAP, DEFAULT_DIFF_LOG_RATE, DEFAULT_MAX_ENDPOINTS, DEFAULT_TIMEOUT,
    Role, TargetCompare,
};
use crate::flow::FlowConfig;
use crate::http::HttpConfig;
use crate::redact::Policy;
use crate::route::{
    HostHeader, PathRule, Pattern, Rewrites, RouteConfig, RouteTarget, Rules, Share, default_marker,
};
use crate::shadow::{ShadowConfig, TargetSettings, TlsRoots, TlsSettings};

fn nanos(d: HumanDuration) -> u64 {
    u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX)
}

fn bytes(b: ByteSize) -> usize {
    usize::try_from(b.0).unwrap_or(usize::MAX)
}

impl FileConfig {
    /// Validates and builds the configuration; every error found.
    pub fn resolve(&self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let (shadows, compare) = self.resolve_shadows(&mut errors);
        let ports = self.capture.ports.clone();
        // The file's list was checked as it was read: a list this long came
        // from the flags.
        if ports.len() > MAX_PORTS {
            errors.push(ConfigError::flag(
                "--port",
                format!(
                    "at most {MAX_PORTS} ports can be captured, got {}",
                    ports.len()
                ),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let defaults = Config::default();
        let (ds, dl) = (&defaults.startup, &defaults.live);
        let (c, a, l) = (&self.capture, &self.agent, &self.limits);
        let (df, dh) = (&ds.flow, &ds.http);
        Ok(Config {
            startup: Startup {
                capture: CaptureSettings {
                    iface: c.iface.clone(),
                    ports,
                    sample: c.sample.unwrap_or(ds.capture.sample),
                    ring_bytes: c.ring_size.map_or(ds.capture.ring_bytes, |r| r.0),
                    attach: c.attach.unwrap_or(ds.capture.attach),
                },
                nice: a.nice.map_or(ds.nice, |n| n.0 as i32),
                log_format: a.log_format,
                metrics_addr: a.metrics_addr.unwrap_or(ds.metrics_addr),
                flow: FlowConfig {
                    max_flows: l.max_flows.map_or(df.max_flows, |n| n.0),
                    max_ooo_bytes_per_flow: l
                        .max_flow_buffer
                        .map_or(df.max_ooo_bytes_per_flow, bytes),
                    max_buffered_bytes: l.max_buffered.map_or(df.max_buffered_bytes, bytes),
                    idle_timeout_ns: l.flow_idle_timeout.map_or(df.idle_timeout_ns, nanos),
                    hole_timeout_ns: l.hole_timeout.map_or(df.hole_timeout_ns, nanos),
                },
                http: HttpConfig {
                    max_head_bytes: l.max_head_size.map_or(dh.max_head_bytes, bytes),
                    max_headers: l.max_headers.map_or(dh.max_headers, |n| n.0),
                    max_body_bytes: l.max_body_size.map_or(dh.max_body_bytes, |b| b.0),
                    // Live mirroring turns it on (app::agent).
                    stream: None,
                },
            },
            live: Live {
                log_level: a
                    .log_level
                    .clone()
                    .map_or(dl.log_level.clone(), |level| level.0),
                log_requests: a.log_requests.unwrap_or(dl.log_requests),
                stats_interval: a.stats_interval.map_or(dl.stats_interval, |d| d.0),
                drain_timeout: a.drain_timeout.map_or(dl.drain_timeout, |d| d.0),
                shadows,
                compare: CompareConfig {
                    diff_log: a.diff_log.clone(),
                    diff_log_sample: a.diff_log_sample.map_or(100, |s| {
                        u8::try_from(s.basis_points().div_ceil(100)).unwrap_or(100)
                    }),
                    diff_log_rate: a
                        .diff_log_rate
                        .map_or(DEFAULT_DIFF_LOG_RATE, |n| n.0 as u32),
                    diff_log_max_size: a.diff_log_max_size.map_or(0, |size| size.0),
                    diff_log_keep: a.diff_log_keep.map(|n| n.0),
                    max_endpoints: a
                        .compare_max_endpoints
                        .map_or(DEFAULT_MAX_ENDPOINTS, |n| n.0),
                    redaction: a.redaction(),
                    ..compare
                },
            },
        })
    }

    /// The targets, routing and transport; their errors go to `errors`.
    fn resolve_shadows(&self, errors: &mut Vec<ConfigError>) -> (ShadowConfig, CompareConfig) {
        let mut targets: Vec<RouteTarget> = Vec::with_capacity(self.targets.len());
        let mut settings = Vec::with_capacity(self.targets.len());
        let mut compare = CompareConfig::default();
        // The top level's CA file, read once for the https targets without
        // one of their own.
        let top_roots = self.rules.ca_file.as_ref().map(|file| {
            TlsRoots::from_ca_file(&file.0).inspect_err(|message| {
                errors.push(ConfigError::key(
                    "ca_file",
                    format!("{message} (--ca-file)"),
                ));
            })
        });
        for t in &self.targets {
            let url = t.url.get_ref().clone();
            let name = match &t.name {
                Some(n) => n.get_ref().clone(),
                None => url.to_string(),
            };
            let (span, key) = match &t.name {
                Some(n) => (n.span(), "target.name"),
                None => (t.url.span(), "target.url"),
            };
            if name.trim().is_empty() {
                errors.push(ConfigError::at(span, key, "a target name cannot be empty"));
                continue;
            }
            if targets.iter().any(|other| other.name == name) {
                let message =
                    format!("two targets are named `{name}` (give each a distinct `name`)");
                errors.push(if span.is_empty() {
                    ConfigError::flag("--shadow", format!("`{name}` is given twice"))
                } else {
                    ConfigError::at(span, key, message)
                });
                continue;
            }
            if let Some(message) = t.rules.share_by_without_share() {
                errors.push(ConfigError::at(t.url.span(), "target.share_by", message));
            }
            let compared = t.rules.compare(&self.rules, &name);
            let mut transport = t.rules.settings(&self.rules);
            match t.rules.tls(&url, &self.rules, top_roots.as_ref()) {
                Ok(tls) => transport.tls = tls,
                Err((key, message)) => errors.push(ConfigError::at(t.url.span(), key, message)),
            }
            transport.keep_answer = compared.as_ref().map(|c| c.body_cap);
            compare.targets.extend(compared);
            settings.push(transport);
            targets.push(RouteTarget {
                name,
                url,
                rules: t.rules.rules(),
                rewrites: t.rules.rewrites(),
            });
        }
        if let Some(message) = self.rules.share_by_without_share() {
            errors.push(ConfigError::key("share_by", message));
        }
        let any_https = self.targets.iter().any(|t| t.url.get_ref().tls);
        if !self.targets.is_empty() && !any_https {
            if self.rules.ca_file.is_some() {
                errors.push(ConfigError::key(
                    "ca_file",
                    "`ca_file` (--ca-file) is for https targets, and no target is https",
                ));
            }
            if self.rules.insecure_skip_verify == Some(true) {
                errors.push(ConfigError::key(
                    "insecure_skip_verify",
                    "`insecure_skip_verify` (--insecure-skip-verify) is for https targets, \
                     and no target is https",
                ));
            }
        }
        let route = RouteConfig {
            dry_run: self.dry_run.unwrap_or(false),
            marker: match &self.marker {
                None => Some(default_marker()),
                Some(Marker::Off) => None,
                Some(Marker::Header(h)) => Some(h.clone()),
            },
            rules: self.rules.rules(),
            rewrites: {
                let mut global = self.rules.rewrites();
                // Nothing to inherit from: `original` is the default.
                if global.host == Some(HostHeader::Original) {
                    global.host = None;
                }
                global
            },
            targets,
        };
        (ShadowConfig { route, settings }, compare)
    }

    /// The file that gives `config`, every key and target spelled out.
    pub fn from_config(config: &Config) -> FileConfig {
        let (startup, live) = (&config.startup, &config.live);
        let route = &live.shadows.route;
        let mut top = RuleSection::from_rules(&route.rules, &route.rewrites);
        top.host_header = Some(route.rewrites.host.clone().unwrap_or_default());
        let (capture, flow, http) = (&startup.capture, &startup.flow, &startup.http);
        let duration = |ns: u64| Some(HumanDuration(Duration::from_nanos(ns)));
        FileConfig {
            capture: CaptureSection {
                iface: capture.iface.clone(),
                ports: capture.ports.clone(),
                sample: Some(capture.sample),
                ring_size: Some(RingSize(capture.ring_bytes)),
                attach: Some(capture.attach),
            },
            agent: AgentSection {
                nice: Some(Niceness(startup.nice as usize)),
                log_format: startup.log_format,
                log_level: Some(LogLevel(live.log_level.clone())),
                log_requests: Some(live.log_requests),
                metrics_addr: Some(startup.metrics_addr),
                stats_interval: Some(HumanDuration(live.stats_interval)),
                drain_timeout: Some(HumanDuration(live.drain_timeout)),
                diff_log: live.compare.diff_log.clone(),
                diff_log_sample: live.compare.diff_log.as_ref().map(|_| {
                    Share::from_percent(f64::from(live.compare.diff_log_sample))
                        .unwrap_or(Share::ALL)
                }),
                diff_log_rate: live
                    .compare
                    .diff_log
                    .as_ref()
                    .map(|_| Count(live.compare.diff_log_rate as usize)),
                diff_log_max_size: (live.compare.diff_log_max_size > 0)
                    .then_some(ByteSize(live.compare.diff_log_max_size)),
                diff_log_keep: live.compare.diff_log_keep.map(Count),
                compare_max_endpoints: Some(Count(live.compare.max_endpoints)),
                redact_fields: redact_names(live.compare.redaction.field_names()),
                redact_headers: redact_names(live.compare.redaction.header_names()),
                redact_queries: redact_names(live.compare.redaction.query_names()),
                no_default_redaction: Some(!live.compare.redaction.has_defaults()),
            },
            limits: LimitSection {
                max_flows: Some(FlowCount(flow.max_flows)),
                max_flow_buffer: Some(ByteSize(flow.max_ooo_bytes_per_flow as u64)),
                max_buffered: Some(ByteSize(flow.max_buffered_bytes as u64)),
                flow_idle_timeout: duration(flow.idle_timeout_ns),
                hole_timeout: duration(flow.hole_timeout_ns),
                max_head_size: Some(ByteSize(http.max_head_bytes as u64)),
                max_headers: Some(HeaderCount(http.max_headers)),
                max_body_size: Some(ByteSize(http.max_body_bytes)),
            },
            dry_run: Some(route.dry_run),
            marker: Some(match &route.marker {
                None => Marker::Off,
                Some(h) => Marker::Header(h.clone()),
            }),
            rules: top,
            targets: route
                .targets
                .iter()
                .zip(live.shadows.targets())
                .map(|(t, shadow)| {
                    let mut rules = RuleSection::from_rules(&t.rules, &t.rewrites);
                    rules.set_settings(&shadow.settings);
                    rules.set_compare(live.compare.target(&t.name));
                    let mut file = TargetFile::new(t.url.clone());
                    file.name = Some(Spanned::new(0..0, t.name.clone()));
                    file.rules = rules;
                    file
                })
                .collect(),
            ..FileConfig::default()
        }
    }
}

impl AgentSection {
    /// The redaction policy: the built-in names unless dropped, and the
    /// user's.
    fn redaction(&self) -> Policy {
        let names = |list: &[RedactName]| list.iter().map(|n| n.0.clone()).collect::<Vec<_>>();
        Policy::new(self.no_default_redaction != Some(true))
            .with_fields(&names(&self.redact_fields))
            .with_headers(&names(&self.redact_headers))
            .with_queries(&names(&self.redact_queries))
    }
}

/// A policy's names as the file writes them.
fn redact_names(names: Vec<String>) -> Vec<RedactName> {
    names.into_iter().map(RedactName).collect()
}

impl RuleSection {
    pub(super) fn rules(&self) -> Rules {
        let paths = |prefixes: &[PathPrefix], regexes: &[Pattern]| -> Vec<PathRule> {
            prefixes
                .iter()
                .map(|p| PathRule::Prefix(p.0.clone()))
                .chain(regexes.iter().map(|r| PathRule::Regex(r.clone())))
                .collect()
        };
        Rules {
            share: self.share,
            share_by: self.share_by.clone(),
            headers: self.matches.clone(),
            deny_headers: self
                .deny_header_regexes
                .iter()
                .map(|h| h.0.clone())
                .collect(),
            methods: self.methods.iter().map(|m| m.0.clone()).collect(),
            allow_paths: paths(&self.path_prefixes, &self.path_regexes),
            deny_paths: paths(&self.deny_path_prefixes, &self.deny_path_regexes),
        }
    }

    pub(super) fn rewrites(&self) -> Rewrites {
        Rewrites {
            host: self.host_header.clone(),
            set: self.set_headers.clone(),
            strip: self.strip_headers.iter().map(|h| h.0.clone()).collect(),
            paths: self.rewrite_paths.clone(),
            headers: self.rewrite_headers.clone(),
            remove_query: self.remove_queries.iter().map(|q| q.0.clone()).collect(),
            set_query: self.set_queries.clone(),
            forwarded_for: self.forwarded_for.clone(),
        }
    }

    /// A share by key needs the share it chooses: `share_by` alone at a
    /// level would mirror everything, which is surely not what was meant.
    fn share_by_without_share(&self) -> Option<String> {
        (self.share_by.is_some() && self.share.is_none()).then(|| {
            "`share_by` (--share-by) needs `share` (--share) at the same level: \
             the percentage of keys mirrored"
                .to_owned()
        })
    }

    /// A target's transport settings: its own keys, else the top level's,
    /// else the defaults.
    fn settings(&self, top: &RuleSection) -> TargetSettings {
        let defaults = TargetSettings::default();
        let pick = |own: Option<HumanDuration>, top: Option<HumanDuration>, default| {
            own.or(top).map_or(default, |d| d.0)
        };
        let count =
            |own: Option<Count>, top: Option<Count>, default| own.or(top).map_or(default, |c| c.0);
        TargetSettings {
            queue_size: count(self.queue_size, top.queue_size, defaults.queue_size),
            max_in_flight: count(
                self.max_in_flight,
                top.max_in_flight,
                defaults.max_in_flight,
            ),
            connect_timeout: pick(
                self.connect_timeout,
                top.connect_timeout,
                defaults.connect_timeout,
            ),
            request_timeout: pick(
                self.request_timeout,
                top.request_timeout,
                defaults.request_timeout,
            ),
            resolve_interval: pick(
                self.resolve_interval,
                top.resolve_interval,
                defaults.resolve_interval,
            ),
            idle_timeout: pick(self.idle_timeout, top.idle_timeout, defaults.idle_timeout),
            max_age: pick(self.max_queue_age, top.max_queue_age, defaults.max_age),
            // Set with the target's comparison.
            keep_answer: None,
            rate_limit: self
                .rate_limit
                .or(top.rate_limit)
                .map(|c| u32::try_from(c.0).unwrap_or(u32::MAX)),
            // Set with the target's URL (`tls`).
            tls: None,
        }
    }

    /// A target's TLS settings: for an https target its own `ca_file` (read
    /// here), else the top level's (`top_roots`, read once), else the
    /// system's roots; `insecure_skip_verify` its own, else the top
    /// level's. An http target has none, and its own TLS keys are errors
    /// (the top level's apply to the https targets only).
    fn tls(
        &self,
        url: &crate::route::TargetUrl,
        top: &RuleSection,
        top_roots: Option<&Result<TlsRoots, String>>,
    ) -> Result<Option<TlsSettings>, (&'static str, String)> {
        if !url.tls {
            let not_https = |key: &'static str| {
                let message = format!("`{url}` is not https: `{key}` is for https targets");
                Err((
                    if key == "ca_file" {
                        "target.ca_file"
                    } else {
                        "target.insecure_skip_verify"
                    },
                    message,
                ))
            };
            if self.ca_file.is_some() {
                return not_https("ca_file");
            }
            if self.insecure_skip_verify.is_some() {
                return not_https("insecure_skip_verify");
            }
            return Ok(None);
        }
        let roots = match (&self.ca_file, top_roots) {
            (Some(file), _) => {
                TlsRoots::from_ca_file(&file.0).map_err(|message| ("target.ca_file", message))?
            }
            (None, Some(Ok(roots))) => roots.clone(),
            // The top level's error is reported once, by the caller.
            (None, Some(Err(_)) | None) => TlsRoots::System,
        };
        let skip = self
            .insecure_skip_verify
            .or(top.insecure_skip_verify)
            .unwrap_or(false);
        Ok(Some(TlsSettings {
            roots,
            verify: !skip,
        }))
    }

    /// The target's comparison, if it is compared: its own keys, else the
    /// top level's, else the defaults. A baseline is always compared.
    fn compare(&self, top: &RuleSection, name: &str) -> Option<TargetCompare> {
        let role = self.role.or(top.role).unwrap_or(Role::Candidate);
        let on = self.compare.or(top.compare).unwrap_or(false) || role == Role::Baseline;
        if !on {
            return None;
        }
        let list = |own: &[HeaderName], top: &[HeaderName]| -> Vec<String> {
            own.iter()
                .chain(top)
                .map(|h| h.0.to_ascii_lowercase())
                .collect()
        };
        Some(TargetCompare {
            name: name.to_owned(),
            role,
            ignore_headers: list(&self.compare_ignore_headers, &top.compare_ignore_headers),
            ignore_fields: self
                .compare_ignore_fields
                .iter()
                .chain(&top.compare_ignore_fields)
                .map(|f| f.0.clone())
                .collect(),
            body_cap: self
                .compare_body_cap
                .or(top.compare_body_cap)
                .map_or(DEFAULT_BODY_CAP, bytes),
            timeout: self
                .compare_timeout
                .or(top.compare_timeout)
                .map_or(DEFAULT_TIMEOUT, |d| d.0),
        })
    }

    /// Writes a target's comparison back as its own keys.
    fn set_compare(&mut self, compare: Option<&TargetCompare>) {
        self.compare = Some(compare.is_some());
        let Some(c) = compare else { return };
        self.role = Some(c.role);
        self.compare_ignore_headers = c.ignore_headers.iter().cloned().map(HeaderName).collect();
        self.compare_ignore_fields = c.ignore_fields.iter().cloned().map(FieldPath).collect();
        self.compare_body_cap = Some(ByteSize(c.body_cap as u64));
        self.compare_timeout = Some(HumanDuration(c.timeout));
    }

    fn set_settings(&mut self, s: &TargetSettings) {
        self.queue_size = Some(Count(s.queue_size));
        self.max_in_flight = Some(Count(s.max_in_flight));
        self.connect_timeout = Some(HumanDuration(s.connect_timeout));
        self.request_timeout = Some(HumanDuration(s.request_timeout));
        self.resolve_interval = Some(HumanDuration(s.resolve_interval));
        self.idle_timeout = Some(HumanDuration(s.idle_timeout));
        self.max_queue_age = Some(HumanDuration(s.max_age));
        self.rate_limit = s.rate_limit.map(|r| Count(r as usize));
        if let Some(tls) = &s.tls {
            self.ca_file = match &tls.roots {
                TlsRoots::System => None,
                TlsRoots::CaFile { path, .. } => Some(CaFile(path.clone())),
            };
            self.insecure_skip_verify = Some(!tls.verify);
        }
    }

    fn from_rules(rules: &Rules, rewrites: &Rewrites) -> RuleSection {
        let split = |list: &[PathRule]| {
            let mut prefixes = Vec::new();
            let mut regexes = Vec::new();
            for rule in list {
                match rule {
                    PathRule::Prefix(p) => prefixes.push(PathPrefix(p.clone())),
                    PathRule::Regex(r) => regexes.push(r.clone()),
                }
            }
            (prefixes, regexes)
        };
        let (path_prefixes, path_regexes) = split(&rules.allow_paths);
        let (deny_path_prefixes, deny_path_regexes) = split(&rules.deny_paths);
        RuleSection {
            share: rules.share,
            methods: rules.methods.iter().map(|m| Method(m.clone())).collect(),
            path_prefixes,
            path_regexes,
            deny_path_prefixes,
            deny_path_regexes,
            share_by: rules.share_by.clone(),
            deny_header_regexes: rules
                .deny_headers
                .iter()
                .map(|h| HeaderRegex(h.clone()))
                .collect(),
            host_header: rewrites.host.clone(),
            set_headers: rewrites.set.clone(),
            rewrite_paths: rewrites.paths.clone(),
            rewrite_headers: rewrites.headers.clone(),
            set_queries: rewrites.set_query.clone(),
            remove_queries: rewrites
                .remove_query
                .iter()
                .map(|q| QueryName(q.clone()))
                .collect(),
            forwarded_for: rewrites.forwarded_for.clone(),
            strip_headers: rewrites
                .strip
                .iter()
                .map(|h| HeaderName(h.clone()))
                .collect(),
            matches: rules.headers.clone(),
            ..RuleSection::default()
        }
    }
}
