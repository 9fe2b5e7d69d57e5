//! The files of a recording: one `--output` name, which may hold time
//! patterns, and new files by size (`--rotate-size`) or age
//! (`--rotate-age`), as goreplay's `--output-file` chunks.
//!
//! * Time patterns (`%Y %m %d %H %M %S %NS`, `%%` for a `%`) are expanded
//!   in UTC when a file is opened. When the expanded name changes (the
//!   hour passes for `%H`), the file is closed; `%NS` (nanoseconds) only
//!   makes a name unique and starts no file by itself.
//! * A name already taken (by a file of this recording, or an earlier one
//!   on disk) gets a counter before its extensions: `req_1.gor.gz`,
//!   `req_2.gor.gz`... An existing file is never replaced then; a plain
//!   name without patterns or rotation is replaced, as always.
//! * A payload is never split: a file is closed before the payload that
//!   would take it past the size, so it stays within it unless one
//!   payload is larger. The size is of the payloads as written, before
//!   gzip (as goreplay counts): a plain file's size, a `.gz`'s content
//!   (a compressor holds what it has not put out yet, so its output is
//!   no measure until the file is complete).
//! * Every closed file is complete (flushed, gzip trailer, synced) and
//!   readable on its own. The next file is opened by the next payload, so
//!   a quiet hour leaves no empty file.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info};

use super::gor::PayloadWriter;
use crate::clock::UtcTime;
use crate::private_file;

/// Where a recording goes and when it moves to a new file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPlan {
    /// The `--output` name, time patterns unexpanded.
    pub pattern: PathBuf,
    /// A new file before the current one would pass this many bytes.
    pub max_bytes: Option<u64>,
    /// A new file when the current one is this old.
    pub max_age: Option<Duration>,
}

impl OutputPlan {
    /// One file of that name, no rotation.
    pub fn single(path: &Path) -> Self {
        Self {
            pattern: path.to_owned(),
            max_bytes: None,
            max_age: None,
        }
    }
}

impl From<&Path> for OutputPlan {
    fn from(path: &Path) -> Self {
        Self::single(path)
    }
}

impl From<&PathBuf> for OutputPlan {
    fn from(path: &PathBuf) -> Self {
        Self::single(path)
    }
}

/// The time a file is opened at (a fixed one in tests).
pub trait Clock: Send {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// One piece of a name pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Nanos,
}

/// A file name with time patterns, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    parts: Vec<Part>,
    /// The directory part holds a pattern: it is created when missing.
    dynamic_dir: bool,
}

/// The patterns `--output` takes, for the help and the errors.
pub const PATTERNS: &str = "%Y year, %m month, %d day, %H hour, %M minute, %S second, \
                            %NS nanoseconds, %% a %";

impl NamePattern {
    pub fn parse(path: &Path) -> Result<Self, String> {
        let bytes = path.as_os_str().as_bytes();
        let mut parts = Vec::new();
        let mut text = Vec::new();
        let mut dynamic_dir = false;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                text.push(bytes[i]);
                i += 1;
                continue;
            }
            let rest = &bytes[i + 1..];
            let (part, len) = if rest.starts_with(b"NS") {
                (Part::Nanos, 2)
            } else {
                match rest.first() {
                    Some(b'%') => {
                        text.push(b'%');
                        i += 2;
                        continue;
                    }
                    Some(b'Y') => (Part::Year, 1),
                    Some(b'm') => (Part::Month, 1),
                    Some(b'd') => (Part::Day, 1),
                    Some(b'H') => (Part::Hour, 1),
                    Some(b'M') => (Part::Minute, 1),
                    Some(b'S') => (Part::Second, 1),
                    _ => {
                        let shown = String::from_utf8_lossy(&rest[..rest.len().min(1)]);
                        return Err(format!(
                            "`%{shown}` in `{}` is not a time pattern; use {PATTERNS}",
                            path.display()
                        ));
                    }
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            i += 1 + len;
            // A separator after a pattern: the pattern is in a directory.
            if bytes[i..].contains(&b'/') {
                dynamic_dir = true;
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        let name = Path::new(OsStr::from_bytes(bytes));
        if bytes.is_empty() || bytes.ends_with(b"/") || name.file_name().is_none() {
            return Err(format!("`{}` is not a file name", path.display()));
        }
        Ok(Self { parts, dynamic_dir })
    }

    /// Whether the name holds a time pattern.
    pub fn has_time(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Text(_)))
    }

    /// The name at `time` (UTC).
    pub fn expand(&self, time: SystemTime) -> PathBuf {
        PathBuf::from(OsString::from_vec(self.render(time, true)))
    }

    /// The name at `time` without its nanoseconds: when it changes, a new
    /// file starts.
    fn period(&self, time: SystemTime) -> Vec<u8> {
        self.render(time, false)
    }

    fn render(&self, time: SystemTime, nanos: bool) -> Vec<u8> {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let t = UtcTime::of(since);
        let mut out = Vec::new();
        for part in &self.parts {
            let field = match part {
                Part::Text(text) => {
                    out.extend_from_slice(text);
                    continue;
                }
                Part::Year => format!("{:04}", t.year),
                Part::Month => format!("{:02}", t.month),
                Part::Day => format!("{:02}", t.day),
                Part::Hour => format!("{:02}", t.hour),
                Part::Minute => format!("{:02}", t.minute),
                Part::Second => format!("{:02}", t.second),
                Part::Nanos if nanos => format!("{:09}", since.subsec_nanos()),
                Part::Nanos => continue,
            };
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// `name` with `_N` before its extensions: the last one, and one more
/// when the last is `.gz` (`req.gor.gz` → `req_2.gor.gz`).
pub fn with_counter(path: &Path, n: u32) -> PathBuf {
    let name = path.file_name().map_or(&[][..], OsStr::as_bytes);
    let ext_at = |name: &[u8]| match name.iter().rposition(|b| *b == b'.') {
        Some(0) | None => name.len(),
        Some(i) => i,
    };
    let mut cut = ext_at(name);
    if &name[cut..] == b".gz" {
        cut = ext_at(&name[..cut]);
    }
    let mut renamed = name[..cut].to_vec();
    renamed.extend_from_slice(format!("_{n}").as_bytes());
    renamed.extend_from_slice(&name[cut..]);
    path.with_file_name(OsString::from_vec(renamed))
}

/// Why a file was closed, for its log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    Size,
    Age,
    Period,
    End,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Size => "rotate-size reached",
            Closed::Age => "rotate-age reached",
            Closed::Period => "the time pattern moved on",
            Closed::End => "end of the recording",
        }
    }
}

/// The file being written.
struct Current {
    writer: PayloadWriter,
    path: PathBuf,
    period: Vec<u8>,
    /// The Unix second at which `period` was last found current: the
    /// name is expanded again only when the second changes.
    period_checked: u64,
    opened_at: SystemTime,
    payloads: u64,
    /// Bytes of payloads written, before compression.
    bytes: u64,
}

/// How many counters are tried for one name before giving up.
const MAX_COUNTER: u32 = 100_000;

/// Writes encoded payloads to the files of an [`OutputPlan`].
pub struct RotatingWriter {
    plan: OutputPlan,
    name: NamePattern,
    clock: Box<dyn Clock>,
    current: Option<Current>,
    /// The next counter to try for each expanded name.
    next_counter: HashMap<PathBuf, u32>,
    /// Patterns or limits: never replace a file, counters on collisions.
    rotates: bool,
    /// Files completed.
    completed: u64,
}

impl RotatingWriter {
    /// Opens the first file (so that a bad directory shows at once).
    pub fn create(plan: OutputPlan) -> io::Result<Self> {
        Self::with_clock(plan, Box::new(SystemClock))
    }

    pub fn with_clock(plan: OutputPlan, clock: Box<dyn Clock>) -> io::Result<Self> {
        let name = NamePattern::parse(&plan.pattern).map_err(io::Error::other)?;
        let rotates = name.has_time() || plan.max_bytes.is_some() || plan.max_age.is_some();
        let mut writer = Self {
            plan,
            name,
            clock,
            current: None,
            next_counter: HashMap::new(),
            rotates,
            completed: 0,
        };
        let now = writer.clock.now();
        writer.current = Some(writer.open(now)?);
        Ok(writer)
    }

    /// Writes one encoded payload, in a new file when the current one is
    /// due to close.
    pub fn write_encoded(&mut self, bytes: &[u8]) -> io::Result<()> {
        let now = self.clock.now();
        if let Some(reason) = self.due(now, bytes.len() as u64) {
            self.close(reason)?;
        }
        let current = match self.current.take() {
            Some(current) => current,
            None => self.open(now)?,
        };
        let current = self.current.insert(current);
        current.writer.write_encoded(bytes)?;
        current.payloads += 1;
        current.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Pushes what is buffered to the file; closes it when its age or its
    /// time pattern says so (the next payload opens the next one).
    pub fn flush(&mut self) -> io::Result<()> {
        let now = self.clock.now();
        if let Some(reason) = self.due(now, 0) {
            return self.close(reason);
        }
        match &mut self.current {
            Some(current) => current.writer.flush(),
            None => Ok(()),
        }
    }

    /// Completes the last file; how many files were written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.close(Closed::End)?;
        Ok(self.completed)
    }

    /// Why the current file must close before `incoming` more bytes.
    fn due(&mut self, now: SystemTime, incoming: u64) -> Option<Closed> {
        let current = self.current.as_mut()?;
        if let Some(max) = self.plan.max_bytes
            && current.payloads > 0
            && current.bytes + incoming > max
        {
            return Some(Closed::Size);
        }
        if let Some(max) = self.plan.max_age
            && now.duration_since(current.opened_at).unwrap_or_default() >= max
        {
            return Some(Closed::Age);
        }
        let second = unix_second(now);
        if self.name.has_time() && second != current.period_checked {
            if self.name.period(now) != current.period {
                return Some(Closed::Period);
            }
            current.period_checked = second;
        }
        None
    }

    fn open(&mut self, now: SystemTime) -> io::Result<Current> {
        let base = self.name.expand(now);
        if self.name.dynamic_dir
            && let Some(dir) = base.parent()
        {
            private_file::create_dir_all(dir).map_err(|e| with_path("cannot create", dir, e))?;
        }
        let (path, file) = if self.rotates {
            self.claim(&base)?
        } else {
            let file =
                private_file::create(&base).map_err(|e| with_path("cannot create", &base, e))?;
            (base, file)
        };
        info!(path = %path.display(), "recording to a new file");
        let gzip = path.extension().is_some_and(|ext| ext == "gz");
        Ok(Current {
            writer: PayloadWriter::new(file, gzip),
            period: self.name.period(now),
            period_checked: unix_second(now),
            opened_at: now,
            payloads: 0,
            bytes: 0,
            path,
        })
    }

    /// Creates the first free name of `base`, `base_1`, `base_2`...
    fn claim(&mut self, base: &Path) -> io::Result<(PathBuf, File)> {
        let next = self.next_counter.entry(base.to_owned()).or_insert(0);
        while *next < MAX_COUNTER {
            let n = *next;
            *next += 1;
            let path = if n == 0 {
                base.to_owned()
            } else {
                with_counter(base, n)
            };
            match private_file::create_new(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(with_path("cannot create", &path, e)),
            }
        }
        Err(io::Error::other(format!(
            "cannot create {}: {MAX_COUNTER} files of that name exist",
            base.display()
        )))
    }

    fn close(&mut self, reason: Closed) -> io::Result<()> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        let file_bytes = current
            .writer
            .finish()
            .map_err(|e| with_path("cannot complete", &current.path, e))?;
        // The file's name is durable too, not only its data.
        if let Some(dir) = current.path.parent()
            && let Err(err) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .and_then(|d| d.sync_all())
        {
            debug!(dir = %dir.display(), "cannot sync the directory: {err}");
        }
        info!(
            path = %current.path.display(),
            payloads = current.payloads,
            bytes = file_bytes,
            payload_bytes = current.bytes,
            reason = reason.as_str(),
            "recording file complete"
        );
        self.completed += 1;
        Ok(())
    }
}

fn unix_second(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn with_path(what: &str, path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests;
