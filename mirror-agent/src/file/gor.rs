//! goreplay's file format (`.gor`), both ways.
//!
//! A file is a sequence of payloads, each
//!
//! ```text
//! TYPE ID TIMESTAMP LATENCY\n      payload header line
//! <payload bytes>                  the request or response exactly as sent
//! \n🐵🙈🙉\n                        the separator
//! ```
//!
//! `TYPE` is `1` (request), `2` (the service's response) or `3` (a
//! replayed response); `ID` pairs a request with its responses (goreplay
//! writes 24 hex digits); `TIMESTAMP` is the Unix time of the request in
//! nanoseconds; `LATENCY` is the response time in nanoseconds (`-1` for a
//! request). Older goreplay versions wrote no `LATENCY`, and some forks add
//! fields after it: both are read.
//!
//! The format has no length field: a payload ends at the first separator,
//! so a payload that contains the separator cannot be written (the writer
//! refuses it, counted by the caller), as goreplay's own reader would cut
//! it there. The reader streams: it holds one payload at a time, and a
//! payload that does not parse is reported with its byte offset and line,
//! skipped, and reading goes on with the next one.
//!
//! Names ending in `.gz` are gzip-compressed both ways.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::private_file;

/// Ends every payload.
pub const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();

/// What a payload holds: goreplay's type digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// `1`: a request as the client sent it.
    Request,
    /// `2`: the service's response to the request of the same id.
    Response,
    /// `3`: a replayed target's response to the request of the same id.
    ReplayedResponse,
}

impl PayloadKind {
    pub fn digit(self) -> u8 {
        match self {
            PayloadKind::Request => b'1',
            PayloadKind::Response => b'2',
            PayloadKind::ReplayedResponse => b'3',
        }
    }

    pub fn from_digit(digit: &[u8]) -> Option<Self> {
        match digit {
            b"1" => Some(PayloadKind::Request),
            b"2" => Some(PayloadKind::Response),
            b"3" => Some(PayloadKind::ReplayedResponse),
            _ => None,
        }
    }
}

/// A payload's header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadMeta {
    pub kind: PayloadKind,
    /// Pairs a request with its responses (ASCII, no spaces).
    pub id: String,
    /// Unix time in nanoseconds: when the request started (for a response,
    /// goreplay writes its own time here).
    pub timestamp_ns: i64,
    /// Response time in nanoseconds; -1 for a request (and when absent).
    pub latency_ns: i64,
}

/// One payload read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub meta: PayloadMeta,
    pub data: Vec<u8>,
    /// Where its header line starts.
    pub at: Position,
}

/// A place in a file (in its decompressed bytes for a `.gz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    /// Bytes before it.
    pub offset: u64,
    /// Its line, from 1.
    pub line: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {} (line {})", self.offset, self.line)
    }
}

/// A payload that could not be read; reading goes on after it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed payload at {at}: {reason}")]
pub struct Malformed {
    pub at: Position,
    pub reason: String,
}

/// What the reader finds next.
pub type Item = Result<Payload, Malformed>;

/// A file whose start is not a payload header line: another format, random
/// bytes, or a `.gor` whose line ends were converted to CRLF (then no
/// separator matches, and the whole file would read as one cut payload).
/// Carried as the [`io::Error`] of the first read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a goreplay file: {0}")]
pub struct NotGor(pub String);

/// The first payload header line is looked for in this many bytes
/// (goreplay's are about 60).
const FIRST_LINE_MAX: usize = 4096;

/// Reads payloads one at a time from any byte stream.
pub struct PayloadReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
    /// The separator is not in `buf[start..scanned]`.
    scanned: usize,
    /// Position of `buf[start]`.
    at: Position,
    eof: bool,
    /// A payload longer than this is skipped (it would have to be held).
    max_payload: usize,
    /// Bytes taken from the file itself (compressed for a `.gz`), when
    /// opened from a path: a replay's progress.
    file_bytes: Option<Arc<AtomicU64>>,
    /// The file's start was found to be a payload header line.
    checked: bool,
}

/// How much is read from the file at a time.
const READ_SIZE: usize = 256 * 1024;

impl PayloadReader<Box<dyn Read + Send>> {
    /// Opens `path`, decompressing when its name ends in `.gz`.
    pub fn open(path: &Path, max_payload: usize) -> io::Result<Self> {
        let file_bytes = Arc::new(AtomicU64::new(0));
        let file = CountingReader {
            inner: File::open(path)?,
            bytes: Arc::clone(&file_bytes),
        };
        if !is_gzip(path) {
            // The payloads' own offset is the file's, and exact (the read
            // ahead of one buffer would show a small file mostly read).
            return Ok(Self::new(Box::new(file), max_payload));
        }
        let inner: Box<dyn Read + Send> = Box::new(MultiGzDecoder::new(io::BufReader::new(file)));
        let mut reader = Self::new(inner, max_payload);
        reader.file_bytes = Some(file_bytes);
        Ok(reader)
    }
}

/// Counts the bytes read through it, for a reader's progress in its file
/// while a decompressor sits on top.
struct CountingReader<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

impl<R: Read> PayloadReader<R> {
    pub fn new(inner: R, max_payload: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            at: Position { offset: 0, line: 1 },
            eof: false,
            max_payload: max_payload.max(1),
            file_bytes: None,
            checked: false,
        }
    }

    /// How far into its file the reader is: for a `.gz`, the compressed
    /// bytes read from the file (ahead of the payloads handed out by up to
    /// one read); otherwise the payloads' own offset.
    pub fn file_bytes_read(&self) -> u64 {
        match &self.file_bytes {
            Some(bytes) => bytes.load(Relaxed),
            None => self.at.offset,
        }
    }

    /// The position of the next payload (bytes consumed so far).
    pub fn position(&self) -> Position {
        self.at
    }

    /// The next payload, or why the next one could not be read; `None` at
    /// the end of the file. An I/O error (or a corrupt gzip stream) ends
    /// the file.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        if !self.checked {
            self.check_start()?;
            self.checked = true;
        }
        let mut skipping: Option<Position> = None;
        loop {
            let from = self.scanned.max(self.start);
            if let Some(i) = memchr::memmem::find(&self.buf[from..], SEPARATOR) {
                let end = from + i;
                let (begin, at) = (self.start, self.at);
                self.consume(end + SEPARATOR.len());
                if let Some(at) = skipping {
                    return Ok(Some(Err(self.too_large(at))));
                }
                return Ok(Some(parse(&self.buf[begin..end], at)));
            }
            // Keep the separator's length minus one: it may straddle reads.
            self.scanned = self.buf.len().saturating_sub(SEPARATOR.len() - 1);
            if self.eof {
                if self.start == self.buf.len() {
                    return Ok(skipping.map(|at| Err(self.too_large(at))));
                }
                let at = self.at;
                let end = self.buf.len();
                self.consume(end);
                if let Some(at) = skipping {
                    return Ok(Some(Err(self.too_large(at))));
                }
                return Ok(Some(Err(Malformed {
                    at,
                    reason: "the file ends inside this payload (no separator after it): \
                             the file was cut"
                        .into(),
                })));
            }
            if self.buf.len() - self.start > self.max_payload {
                // Too long to hold: forget what we have, keep looking for
                // the end of it.
                skipping.get_or_insert(self.at);
                let keep = self.scanned.max(self.start);
                self.consume(keep);
            }
            self.fill()?;
        }
    }

    /// Refuses a file that does not start with a payload header line
    /// ([`NotGor`]); an empty file is a recording of nothing.
    fn check_start(&mut self) -> io::Result<()> {
        let not_gor = |reason: String| io::Error::new(io::ErrorKind::InvalidData, NotGor(reason));
        loop {
            let unread = &self.buf[self.start..];
            if let Some(nl) = memchr::memchr(b'\n', unread) {
                let line = &unread[..nl];
                // A header line but for the CR before its LF.
                let crlf = line
                    .strip_suffix(b"\r")
                    .is_some_and(|bare| parse(&[bare, b"\n"].concat(), self.at).is_ok());
                if crlf {
                    return Err(not_gor(
                        "its lines end in CRLF (converted by a text editor, an FTP transfer \
                         or git's autocrlf?), so goreplay's separator is not found; \
                         convert them back (dos2unix) or record again"
                            .into(),
                    ));
                }
                return match parse(&unread[..=nl], self.at) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(not_gor(format!(
                        "its first line `{}` is not a payload header (`1 ID TIMESTAMP LATENCY`)",
                        shown(line)
                    ))),
                };
            }
            if self.eof {
                if unread.is_empty() {
                    return Ok(());
                }
                return Err(not_gor(format!(
                    "its {} bytes hold no payload header line (`1 ID TIMESTAMP LATENCY`)",
                    unread.len()
                )));
            }
            if unread.len() > FIRST_LINE_MAX {
                return Err(not_gor(format!(
                    "its first {FIRST_LINE_MAX} bytes hold no payload header line \
                     (`1 ID TIMESTAMP LATENCY`), they start `{}`",
                    shown(unread)
                )));
            }
            self.fill()?;
        }
    }

    fn too_large(&self, at: Position) -> Malformed {
        Malformed {
            at,
            reason: format!("payload longer than {} bytes: skipped", self.max_payload),
        }
    }

    /// Marks `buf[start..end]` read.
    fn consume(&mut self, end: usize) {
        let bytes = &self.buf[self.start..end];
        self.at.offset += bytes.len() as u64;
        self.at.line += memchr::memchr_iter(b'\n', bytes).count() as u64;
        self.start = end;
    }

    /// Reads more, dropping what was consumed first.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned = self.scanned.saturating_sub(self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_SIZE, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    self.buf.truncate(len);
                    return Err(err);
                }
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }
}

impl<R: Read> Iterator for PayloadReader<R> {
    type Item = io::Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// The start of `bytes` for a message: at most 40, escaped (a file of
/// random bytes must not write control characters to the terminal).
fn shown(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &b in &bytes[..bytes.len().min(40)] {
        match b {
            b' '..=b'~' => text.push(char::from(b)),
            _ => text.extend(std::ascii::escape_default(b).map(char::from)),
        }
    }
    if bytes.len() > 40 {
        text.push_str("...");
    }
    text
}

/// Parses one payload (header line and data, without the separator).
pub fn parse(chunk: &[u8], at: Position) -> Item {
    let bad = |reason: String| Malformed { at, reason };
    let Some(nl) = memchr::memchr(b'\n', chunk) else {
        return Err(bad("no payload header line".into()));
    };
    let line = &chunk[..nl];
    let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let shown = || String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    let kind = fields
        .next()
        .and_then(PayloadKind::from_digit)
        .ok_or_else(|| {
            bad(format!(
                "header line `{}`: the type is not 1, 2 or 3",
                shown()
            ))
        })?;
    let id = fields
        .next()
        .and_then(|f| std::str::from_utf8(f).ok())
        .ok_or_else(|| bad(format!("header line `{}`: no id", shown())))?
        .to_owned();
    let number =
        |field: Option<&[u8]>| -> Option<i64> { std::str::from_utf8(field?).ok()?.parse().ok() };
    let timestamp_ns = number(fields.next()).ok_or_else(|| {
        bad(format!(
            "header line `{}`: the timestamp is not a number of nanoseconds",
            shown()
        ))
    })?;
    let latency_ns = match fields.next() {
        None => -1,
        Some(field) => number(Some(field)).ok_or_else(|| {
            bad(format!(
                "header line `{}`: the latency is not a number",
                shown()
            ))
        })?,
    };
    Ok(Payload {
        meta: PayloadMeta {
            kind,
            id,
            timestamp_ns,
            latency_ns,
        },
        data: chunk[nl + 1..].to_vec(),
        at,
    })
}

/// Why a payload was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// goreplay's format cannot hold it: it would end at the separator.
    #[error("the payload contains goreplay's separator")]
    ContainsSeparator,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Appends one payload (header line, data, separator) to `out`. Refuses
/// data that contains the separator, leaving `out` as it was.
pub fn encode(meta: &PayloadMeta, data: &[u8], out: &mut Vec<u8>) -> Result<(), WriteError> {
    if memchr::memmem::find(data, SEPARATOR).is_some() {
        return Err(WriteError::ContainsSeparator);
    }
    out.reserve(data.len() + meta.id.len() + 48);
    out.push(meta.kind.digit());
    out.push(b' ');
    out.extend_from_slice(meta.id.as_bytes());
    // Writing to a Vec does not fail.
    let _ = writeln!(out, " {} {}", meta.timestamp_ns, meta.latency_ns);
    out.extend_from_slice(data);
    out.extend_from_slice(SEPARATOR);
    Ok(())
}

/// A file being written: buffered, gzip-compressed when its name ends in
/// `.gz`. [`finish`](Self::finish) flushes and completes it (the gzip
/// trailer): a file is only complete after it.
pub struct PayloadWriter {
    out: Output,
}

enum Output {
    Plain(BufWriter<CountingWriter>),
    Gzip(GzEncoder<BufWriter<CountingWriter>>),
}

/// The file under the buffer, counting what reaches it.
struct CountingWriter {
    file: File,
    bytes: u64,
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl PayloadWriter {
    /// Creates `path`, replacing a file of that name.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self::new(private_file::create(path)?, is_gzip(path)))
    }

    /// Writes to a file already created (gzip-compressed or not).
    pub fn new(file: File, gzip: bool) -> Self {
        let file = BufWriter::with_capacity(256 * 1024, CountingWriter { file, bytes: 0 });
        let out = if gzip {
            Output::Gzip(GzEncoder::new(file, Compression::default()))
        } else {
            Output::Plain(file)
        };
        Self { out }
    }

    /// Writes encoded payloads (see [`encode`]) as they are.
    pub fn write_encoded(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Output::Plain(w) => w.write_all(bytes),
            Output::Gzip(w) => w.write_all(bytes),
        }
    }

    /// Pushes what is buffered to the file (for gzip, what is complete so
    /// far can then be decompressed).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Output::Plain(w) => w.flush(),
            Output::Gzip(w) => w.flush(),
        }
    }

    /// Flushes and completes the file, its data synced to the disk; the
    /// file's size.
    pub fn finish(self) -> io::Result<u64> {
        let mut file = match self.out {
            Output::Plain(w) => w,
            Output::Gzip(w) => w.finish()?,
        };
        file.flush()?;
        let file = file.get_ref();
        file.file.sync_data()?;
        Ok(file.bytes)
    }
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "gz")
}

#[cfg(test)]
mod tests;
