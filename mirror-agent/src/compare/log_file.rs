//! The diff log's file: bounded in size and rotated like logrotate would
//! (`FILE` → `FILE.1` → ... → `FILE.N`, the oldest removed), so that the
//! log of a service that differs on every request stays within
//! `(N + 1) × max_size` however long the agent runs. Reopened by path on
//! each SIGHUP (the judge makes a new one), so an outside `mv` + SIGHUP
//! moves the writing to a new file at the configured path.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::private_file;

/// Default of `diff_log_max_size`.
pub const DEFAULT_MAX_SIZE: u64 = 100 << 20;
/// Default of `diff_log_keep`.
pub const DEFAULT_KEEP: usize = 5;

/// An append-only file that rotates past `max_size`. Writers hand it whole
/// lines (the judge wraps it in a `LineWriter`): it rotates between writes,
/// so a line is never split across two files.
pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens `path` to append (created 0600), counting what it already
    /// holds against `max_size`.
    pub fn open(path: &Path, max_size: u64, keep: usize) -> io::Result<LogFile> {
        let file = private_file::append(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_owned(),
            max_size: max_size.max(1),
            keep,
            file,
            size,
        })
    }

    /// `FILE.n`.
    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts the kept files up by one and starts the file again.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(not_found_is_fine)?;
        } else {
            std::fs::remove_file(self.numbered(self.keep)).or_else(not_found_is_fine)?;
            for n in (1..self.keep).rev() {
                std::fs::rename(self.numbered(n), self.numbered(n + 1))
                    .or_else(not_found_is_fine)?;
            }
            std::fs::rename(&self.path, self.numbered(1)).or_else(not_found_is_fine)?;
        }
        self.file = private_file::create(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn not_found_is_fine(error: io::Error) -> io::Result<()> {
    if error.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(error)
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Writing on past the cap beats losing the lines; the next write
        // tries to rotate again.
        if self.size > 0
            && self.size.saturating_add(buf.len() as u64) > self.max_size
            && let Err(error) = self.rotate()
        {
            warn!(path = %self.path.display(), %error, "the diff log cannot be rotated");
        }
        let written = self.file.write(buf)?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::LineWriter;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mirror-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn past_its_size_the_file_rotates_and_keeps_n_whole_files() {
        let dir = scratch("rotate");
        let path = dir.join("diff.jsonl");
        let mut log = LineWriter::new(LogFile::open(&path, 25, 2).unwrap());
        for i in 0..10 {
            writeln!(log, "line {i:02} of ten").unwrap(); // 16 bytes each
        }
        log.flush().unwrap();
        // One line per file fits under 25 bytes: the newest in FILE, the
        // two before in FILE.1 and FILE.2, the rest removed.
        assert_eq!(read(&path), "line 09 of ten\n");
        assert_eq!(read(&dir.join("diff.jsonl.1")), "line 08 of ten\n");
        assert_eq!(read(&dir.join("diff.jsonl.2")), "line 07 of ten\n");
        assert!(!dir.join("diff.jsonl.3").exists());
        let total: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 3 * 25, "{total}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_file_counts_and_keep_zero_only_restarts_it() {
        let dir = scratch("keep0");
        let path = dir.join("diff.jsonl");
        std::fs::write(&path, "x".repeat(20)).unwrap();
        let mut log = LineWriter::new(LogFile::open(&path, 25, 0).unwrap());
        writeln!(log, "a line of 15 b").unwrap();
        log.flush().unwrap();
        assert_eq!(read(&path), "a line of 15 b\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_longer_than_the_cap_is_written_whole() {
        let dir = scratch("long");
        let path = dir.join("diff.jsonl");
        let mut log = LineWriter::new(LogFile::open(&path, 4, 1).unwrap());
        writeln!(log, "longer than four").unwrap();
        writeln!(log, "and another").unwrap();
        log.flush().unwrap();
        assert_eq!(read(&path), "and another\n");
        assert_eq!(read(&dir.join("diff.jsonl.1")), "longer than four\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
