//! The diff log: one JSON line per differing exchange, for the person who
//! wants to see the actual values, not only the counts.
//!
//! Sampled (an exact share, evenly spread) and rate limited (per second),
//! so a candidate that differs on everything cannot fill a disk; what the
//! limit held back is counted for the agent to report. Credentials never
//! reach it (invariant 8): the values are redacted upstream (markers, by
//! the policy of [`crate::redact`]), and again here for credential headers
//! and for the request target's credential query values.
//! A failing writer never stops the comparison: errors are counted, the
//! first one kept for the caller to log once.

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::rules::{REDACTED, is_credential_header};
use super::verdict::{Difference, Kind};
use crate::clock::UtcTime;
use crate::redact;

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
    /// 0 when the target answered nothing (a difference of kind
    /// `failed`, whose `target` value says how it failed).
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

    /// Writes to `out` from now on (the file opened again on SIGHUP), the
    /// sampling and rate limit carrying on.
    pub fn set_output(&mut self, out: Box<dyn Write + Send>) {
        let _ = self.out.flush();
        self.out = out;
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

    /// Flushes the destination (each line is flushed as written; this is
    /// for the exit).
    pub fn flush(&mut self) {
        if self.out.flush().is_err() {
            self.write_errors += 1;
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
                    // A marker (or `<absent>`) says nothing of the value.
                    let shown = |v: &'a str| {
                        if credential && !redact::is_placeholder(v) {
                            REDACTED
                        } else {
                            v
                        }
                    };
                    LineDifference {
                        kind: d.kind.as_str(),
                        path: &d.path,
                        v1: shown(&d.left),
                        target: shown(&d.right),
                        noise: d.noise,
                    }
                })
                .collect(),
        }
    }
}

/// `/x?token=abc&page=2` → `/x?token=<redacted:3fa2c1d0>&page=2`: keys
/// kept, the values of credential keys replaced by their markers, by the
/// process's redaction policy ([`crate::redact`]).
pub fn redact_query(path: &str) -> String {
    redact::current().redact_target(path).into_owned()
}

/// `2026-11-30T19:56:19.123Z`: RFC 3339, UTC, milliseconds. A time before
/// 1970 (a clock gone wrong) reads as the epoch.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let t = UtcTime::of(since_epoch);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().unwrap();
            String::from_utf8(bytes.clone())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const EXCHANGE: Exchange<'static> = Exchange {
        target: "v2",
        method: "GET",
        path: "/orders/7?page=2&access_token=abc123&apiKey=k9&Password=hunter2&flag",
        endpoint: "GET /orders/{id}",
        v1_status: 200,
        target_status: 500,
    };

    fn status() -> Vec<Difference> {
        vec![Difference::new(Kind::Status, "status", "200", "500")]
    }

    #[test]
    fn a_line_holds_the_exchange_and_its_differences() {
        let out = Shared::default();
        let mut log = DiffLog::new(Box::new(out.clone()), 100, 0);
        let mut differences = status();
        differences.push(Difference {
            noise: true,
            ..Difference::new(Kind::Body, "$.ts", "1", "2")
        });
        assert!(log.log(&EXCHANGE, &differences, Instant::now()));
        let lines = out.lines();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["target"], "v2");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["endpoint"], "GET /orders/{id}");
        assert_eq!(
            (line["v1_status"].as_u64(), line["target_status"].as_u64()),
            (Some(200), Some(500))
        );
        let ts = line["ts"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
        assert_eq!(
            line["differences"],
            serde_json::json!([
                {"kind": "status", "path": "status", "v1": "200", "target": "500", "noise": false},
                {"kind": "body", "path": "$.ts", "v1": "1", "target": "2", "noise": true},
            ])
        );
        assert_eq!(log.written(), 1);
    }

    #[test]
    fn credential_headers_and_query_secrets_are_never_written() {
        let out = Shared::default();
        let mut log = DiffLog::new(Box::new(out.clone()), 100, 0);
        let differences = vec![
            Difference::new(Kind::Header, "Authorization", "Bearer abc", "Bearer def"),
            Difference::new(Kind::Header, "cookie", "sid=1", "sid=2"),
            Difference::new(Kind::Header, "x-csrf-token", "csrf-one", "csrf-two"),
            Difference::new(Kind::Header, "etag", "\"a\"", "\"b\""),
            // A body field named like a header is not a header.
            Difference::new(Kind::Body, "authorization", "x", "y"),
        ];
        assert!(log.log(&EXCHANGE, &differences, Instant::now()));
        let raw = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        for secret in [
            "Bearer", "sid=", "csrf-one", "csrf-two", "abc123", "k9", "hunter2",
        ] {
            assert!(!raw.contains(secret), "{secret} leaked: {raw}");
        }
        let line = &out.lines()[0];
        let values: Vec<(&str, &str)> = line["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["v1"].as_str().unwrap(), d["target"].as_str().unwrap()))
            .collect();
        assert_eq!(
            values,
            [
                (REDACTED, REDACTED),
                (REDACTED, REDACTED),
                (REDACTED, REDACTED),
                ("\"a\"", "\"b\""),
                ("x", "y"),
            ]
        );
        let m = |v: &str| redact::marker(v.as_bytes());
        assert_eq!(
            line["path"].as_str().unwrap(),
            format!(
                "/orders/7?page=2&access_token={}&apiKey={}&Password={}&flag",
                m("abc123"),
                m("k9"),
                m("hunter2")
            )
        );
    }

    #[test]
    fn markers_from_upstream_are_kept_so_a_reader_sees_the_sides_differed() {
        let out = Shared::default();
        let mut log = DiffLog::new(Box::new(out.clone()), 100, 0);
        let (one, two) = (redact::marker(b"one"), redact::marker(b"two"));
        let differences = vec![Difference::new(Kind::Header, "x-auth-token", &one, &two)];
        assert!(log.log(&EXCHANGE, &differences, Instant::now()));
        let line = &out.lines()[0];
        assert_eq!(line["differences"][0]["v1"].as_str(), Some(one.as_str()));
        assert_eq!(
            line["differences"][0]["target"].as_str(),
            Some(two.as_str())
        );
    }

    #[test]
    fn a_path_without_query_or_secrets_is_kept_as_is() {
        assert_eq!(redact_query("/a/b"), "/a/b");
        assert_eq!(redact_query("/a?x=1&y=2"), "/a?x=1&y=2");
        assert_eq!(
            redact_query("/a?auth=1&="),
            format!("/a?auth={}&=", redact::marker(b"1"))
        );
    }

    #[test]
    fn the_sampled_share_is_exact_and_evenly_spread() {
        let out = Shared::default();
        let mut log = DiffLog::new(Box::new(out.clone()), 25, 0);
        let now = Instant::now();
        let written: Vec<bool> = (0..100)
            .map(|_| log.log(&EXCHANGE, &status(), now))
            .collect();
        assert_eq!(written.iter().filter(|w| **w).count(), 25);
        assert_eq!(
            &written[..8],
            [false, false, false, true, false, false, false, true]
        );
        assert_eq!(
            (log.written(), log.sampled_out(), log.suppressed()),
            (25, 75, 0)
        );
        assert_eq!(out.lines().len(), 25);

        let mut none = DiffLog::new(Box::new(Shared::default()), 0, 0);
        assert!(!none.log(&EXCHANGE, &status(), now));
        assert_eq!(none.sampled_out(), 1);
    }

    #[test]
    fn the_rate_limit_holds_back_and_counts_what_exceeds_a_second() {
        let out = Shared::default();
        let mut log = DiffLog::new(Box::new(out.clone()), 100, 3);
        let start = Instant::now();
        let first: usize = (0..10)
            .filter(|_| log.log(&EXCHANGE, &status(), start))
            .count();
        assert_eq!((first, log.suppressed()), (3, 7));
        // Still the same window.
        assert!(!log.log(&EXCHANGE, &status(), start + Duration::from_millis(999)));
        // A new one.
        let later = start + Duration::from_secs(1);
        let second = (0..5)
            .filter(|_| log.log(&EXCHANGE, &status(), later))
            .count();
        assert_eq!((second, log.suppressed(), log.written()), (3, 10, 6));
        assert_eq!(out.lines().len(), 6);
    }

    #[test]
    fn an_exchange_without_differences_writes_nothing() {
        let out = Shared::default();
        let mut log = DiffLog::new(Box::new(out.clone()), 100, 0);
        assert!(!log.log(&EXCHANGE, &[], Instant::now()));
        assert_eq!((log.written(), log.sampled_out()), (0, 0));
        assert!(out.lines().is_empty());
    }

    #[test]
    fn write_errors_are_counted_and_the_first_one_kept_once() {
        let mut log = DiffLog::new(Box::new(Broken), 100, 0);
        let now = Instant::now();
        assert!(!log.log(&EXCHANGE, &status(), now));
        assert!(!log.log(&EXCHANGE, &status(), now));
        assert_eq!((log.write_errors(), log.written()), (2, 0));
        let first = log.take_first_error().expect("the first error");
        assert_eq!(first.to_string(), "disk full");
        assert!(log.take_first_error().is_none());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |seconds: u64, millis: u64| {
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_210_096, 500), "2024-02-29T12:34:56.500Z");
        assert_eq!(at(1_795_982_179, 7), "2026-11-29T19:56:19.007Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
