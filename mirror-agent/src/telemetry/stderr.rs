//! stderr shared by the log lines and a progress bar (`mirror-agent
//! replay` on a terminal): while a bar is shown, each log line is written
//! with the bar cleared and the bar drawn again under it, so neither
//! garbles the other.

use std::io::{self, Write};
use std::sync::RwLock;

use indicatif::ProgressBar;

/// The bar on stderr, if any.
static BAR: RwLock<Option<ProgressBar>> = RwLock::new(None);

/// Shows `bar` under the log lines from now on (`None`: no bar).
pub fn show_bar(bar: Option<ProgressBar>) {
    *BAR.write().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// The log lines' writer (a `MakeWriter` for tracing).
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// Writes to stderr around the bar.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = BAR.read().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) if !bar.is_finished() => bar.suspend(|| io::stderr().write_all(buf))?,
            _ => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
