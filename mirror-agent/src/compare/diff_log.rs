//! The diff log: one JSON line per differing exchange, for the person who
//! wants to see the actual values, not only the counts.
//!
//! Sampled (an exact share, evenly spread) and rate limited (per second),
//! so a candidate that differs on everything cannot fill a disk; what the
//! limit held back is counted for the agent to report. Credentials never
//! reach it (invariant 8): the values are redacted upstream, and again
//! here for credential headers and for secret-looking query parameters.
//! A failing writer never stops the comparison: errors are counted, the
//! first one kept for the caller to log once.

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Difference, Kind};

/// What replaces a credential.
pub const REDACTED: &str = "<redacted>";

/// The exchange a line is about.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    pub target: &'a str,
    pub method: &'a str,
    /// The request target as sent (query included; its secrets are
    /// redacted in the line).
    pub path: &'a str,
    /// The endpoint it counts under (`GET /orders/{id}`).
    pub endpoint: &'a str,
    pub v1_status: u16,
    pub target_status: u16,
}

/// The sampled, rate-limited JSON-lines writer.
pub struct DiffLog {
    out: Box<dyn Write + Send>,
    sample_percent: u32,
    /// Adds the share per exchange; one is written each time it passes
    /// 100 (exactly the share, evenly spread).
    credit: u32,
    max_per_second: u32,
    window_start: Option<Instant>,
    written_in_window: u32,
    written: u64,
    sampled_out: u64,
    suppressed: u64,
    write_errors: u64,
    first_error: Option<io::Error>,
}

impl DiffLog {
    /// Writes `sample_percent` % of the differing exchanges (0 = none, 100
    /// = all; more is all), at most `max_per_second` lines a second (0 =
    /// no limit), to `out` (a file or stderr).
    pub fn new(out: Box<dyn Write + Send>, sample_percent: u8, max_per_second: u32) -> Self {
        Self {
            out,
            sample_percent: u32::from(sample_percent.min(100)),
            credit: 0,
            max_per_second,
            window_start: None,
            written_in_window: 0,
            written: 0,
            sampled_out: 0,
            suppressed: 0,
            write_errors: 0,
            first_error: None,
        }
    }

    /// Logs one differing exchange, if the sampling picks it and the rate
    /// limit lets it through; true if a line was written. An exchange
    /// without differences is not a differing one: nothing is written.
    pub fn log(
        &mut self,
        exchange: &Exchange<'_>,
        differences: &[Difference],
        now: Instant,
    ) -> bool {
        if differences.is_empty() {
            return false;
        }
        if !self.sampled() {
            self.sampled_out += 1;
            return false;
        }
        if !self.within_rate(now) {
            self.suppressed += 1;
            return false;
        }
        let mut line =
            match serde_json::to_vec(&Line::new(exchange, differences, SystemTime::now())) {
                Ok(line) => line,
                Err(error) => {
                    self.failed(io::Error::other(error));
                    return false;
                }
            };
        line.push(b'\n');
        // Flushed per line: `tail -f` sees it, and a crash loses none.
        match self.out.write_all(&line).and_then(|()| self.out.flush()) {
            Ok(()) => {
                self.written += 1;
                true
            }
            Err(error) => {
                self.failed(error);
                false
            }
        }
    }

    fn sampled(&mut self) -> bool {
        if self.sample_percent == 0 {
            return false;
        }
        self.credit += self.sample_percent;
        if self.credit >= 100 {
            self.credit -= 100;
            return true;
        }
        false
    }

    /// A new one-second window opens at the first line a second or more
    /// after the current window's start.
    fn within_rate(&mut self, now: Instant) -> bool {
        if self.max_per_second == 0 {
            return true;
        }
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if expired {
            self.window_start = Some(now);
            self.written_in_window = 0;
        }
        if self.written_in_window >= self.max_per_second {
            return false;
        }
        self.written_in_window += 1;
        true
    }

    fn failed(&mut self, error: io::Error) {
        self.write_errors += 1;
        if self.write_errors == 1 {
            self.first_error = Some(error);
        }
    }

    /// Lines written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Exchanges the sampling left out (by design, not a loss).
    pub fn sampled_out(&self) -> u64 {
        self.sampled_out
    }

    /// Sampled exchanges the rate limit held back.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Lines that could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// The first write error, once: the caller logs it, the later ones
    /// are only counted.
    pub fn take_first_error(&mut self) -> Option<io::Error> {
        self.first_error.take()
    }
}

/// One line of the log.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    target: &'a str,
    method: &'a str,
    path: String,
    endpoint: &'a str,
    v1_status: u16,
    target_status: u16,
    differences: Vec<LineDifference<'a>>,
}

#[derive(Serialize)]
struct LineDifference<'a> {
    kind: &'static str,
    path: &'a str,
    v1: &'a str,
    target: &'a str,
    noise: bool,
}

impl<'a> Line<'a> {
    fn new(exchange: &Exchange<'a>, differences: &'a [Difference], now: SystemTime) -> Self {
        Self {
            ts: rfc3339_utc(now),
            target: exchange.target,
            method: exchange.method,
            path: redact_query(exchange.path),
            endpoint: exchange.endpoint,
            v1_status: exchange.v1_status,
            target_status: exchange.target_status,
            differences: differences
                .iter()
                .map(|d| {
                    let credential = d.kind == Kind::Header && is_credential_header(&d.path);
                    LineDifference {
                        kind: d.kind.as_str(),
                        path: &d.path,
                        v1: if credential { REDACTED } else { &d.left },
                        target: if credential { REDACTED } else { &d.right },
                        noise: d.noise,
                    }
                })
                .collect(),
        }
    }
}

/// A header whose values are credentials, whatever they look like
/// (case-insensitive).
pub fn is_credential_header(name: &str) -> bool {
    const NAMES: [&str; 6] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
    ];
    const PARTS: [&str; 3] = ["token", "secret", "password"];
    let name = name.to_ascii_lowercase();
    NAMES.contains(&name.as_str()) || PARTS.iter().any(|part| name.contains(part))
}

/// A query parameter whose value may be a credential.
fn is_secret_parameter(key: &str) -> bool {
    const PARTS: [&str; 5] = ["token", "key", "secret", "password", "auth"];
    let key = key.to_ascii_lowercase();
    PARTS.iter().any(|part| key.contains(part))
}

/// `/x?token=abc&page=2` → `/x?token=<redacted>&page=2`: keys kept, the
/// values of secret-looking keys replaced.
pub fn redact_query(path: &str) -> String {
    let Some((before, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if is_secret_parameter(key) => format!("{key}={REDACTED}"),
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{before}?{}", parameters.join("&"))
}

/// `2026-11-30T19:56:19.123Z`: RFC 3339, UTC, milliseconds. A time before
/// 1970 (a clock gone wrong) reads as the epoch.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        since_epoch.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: counted in
/// 400-year eras (146 097 days), years starting on 1 March so that the
/// leap day ends a year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468; // 0000-03-01 to 1970-01-01
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}
