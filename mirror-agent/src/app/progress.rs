//! A replay's progress: when stderr is a terminal, one line redrawn in
//! place (bytes of the input files read of their total, requests replayed,
//! the rate, elapsed time and what is left); otherwise an info line every
//! few seconds, for logs collected by something else.
//!
//! The position is in bytes of the files as stored (compressed for a
//! `.gz`), which is what is known ahead: the number of requests in a file
//! is not. With `--loop` the bar covers one pass: its percent and the time
//! left are those of the pass, and the pass number is shown.
//!
//! Log lines written meanwhile go above the bar ([`telemetry::stderr`]).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

use crate::telemetry;

/// The log line's period when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
/// The bar is redrawn at most this often (indicatif limits it too).
const DRAW_EVERY: Duration = Duration::from_millis(100);

/// How progress is shown.
enum Display {
    Bar(ProgressBar),
    Log,
}

/// A replay's progress over its input files.
pub struct Progress {
    display: Display,
    files: Vec<PathBuf>,
    /// Bytes of the files before each one, and of all of them last.
    before: Vec<u64>,
    repeat: bool,
    started: Instant,
    pass: u64,
    pass_started: Instant,
    last_shown: Instant,
    /// Bytes read of the pass at the last update.
    done: u64,
}

impl Progress {
    /// Progress over `files` (their sizes now), shown as a bar when stderr
    /// is a terminal.
    pub fn new(files: &[&Path], repeat: bool) -> Self {
        let display = if std::io::stderr().is_terminal() {
            Display::Bar(bar())
        } else {
            Display::Log
        };
        Self::with_display(files, repeat, display)
    }

    fn with_display(files: &[&Path], repeat: bool, display: Display) -> Self {
        let mut before = vec![0];
        for file in files {
            // A file whose size cannot be read counts 0: the bar is then
            // short of it, the replay itself says why it cannot open it.
            let size = std::fs::metadata(file).map_or(0, |m| m.len());
            before.push(before.last().copied().unwrap_or(0) + size);
        }
        if let Display::Bar(bar) = &display {
            bar.set_length(before.last().copied().unwrap_or(0));
            telemetry::stderr::show_bar(Some(bar.clone()));
        }
        let now = Instant::now();
        Self {
            display,
            files: files.iter().map(|f| f.to_path_buf()).collect(),
            before,
            repeat,
            started: now,
            pass: 1,
            pass_started: now,
            last_shown: now,
            done: 0,
        }
    }

    fn total(&self) -> u64 {
        self.before.last().copied().unwrap_or(0)
    }

    /// After each request, and at the end of each file: in pass `pass`,
    /// file `index` of the list has been read up to `file_bytes`;
    /// `replayed` requests so far. Cheap when nothing is due to be shown.
    pub fn update(&mut self, pass: u64, index: usize, file_bytes: u64, replayed: u64) {
        let now = Instant::now();
        if pass != self.pass {
            self.pass = pass;
            self.pass_started = now;
        }
        let done = self.before.get(index).copied().unwrap_or(0) + file_bytes;
        self.done = done.min(self.total());
        let every = match self.display {
            Display::Bar(_) => DRAW_EVERY,
            Display::Log => LOG_EVERY,
        };
        if now.duration_since(self.last_shown) < every {
            return;
        }
        self.last_shown = now;
        let done = self.done;
        let line = self.line(now, done, replayed);
        match &self.display {
            Display::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(line);
            }
            Display::Log => {
                let file = self.files.get(index).map(|f| f.display().to_string());
                info!(
                    pass,
                    file = file.unwrap_or_default(),
                    replayed,
                    per_second = self.per_second(now, replayed).round(),
                    read_bytes = done,
                    total_bytes = self.total(),
                    "replaying"
                );
            }
        }
    }

    fn per_second(&self, now: Instant, replayed: u64) -> f64 {
        replayed as f64 / now.duration_since(self.started).as_secs_f64().max(1e-9)
    }

    /// `12.5 MiB / 40.0 MiB (31%) · 120,345 requests · 8,012/s · 0:15 · 0:33 left`
    fn line(&self, now: Instant, done: u64, replayed: u64) -> String {
        let total = self.total();
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let mut line = String::new();
        if self.repeat {
            line.push_str(&format!("pass {} · ", self.pass));
        }
        line.push_str(&format!(
            "{} / {} ({percent:.0}%) · {} requests · {}/s · {}",
            HumanBytes(done),
            HumanBytes(total),
            HumanCount(replayed),
            HumanCount(self.per_second(now, replayed).round() as u64),
            clock(now.duration_since(self.started)),
        ));
        // What is left of the pass at the pace of the pass so far.
        let pass_elapsed = now.duration_since(self.pass_started).as_secs_f64();
        if done > 0 && done < total && pass_elapsed >= 1.0 {
            let left = pass_elapsed * (total - done) as f64 / done as f64;
            let left = clock(Duration::from_secs_f64(left.min(1e7)));
            if self.repeat {
                line.push_str(&format!(" · pass ends in {left}"));
            } else {
                line.push_str(&format!(" · {left} left"));
            }
        }
        line
    }

    /// The end of the reading: the bar shows its last state and stays
    /// above what follows (the drain's log lines, the final counts).
    pub fn finish(mut self, replayed: u64) {
        if let Display::Bar(bar) = &self.display {
            let now = Instant::now();
            // Left as it is: a stop signal ends it short of the total.
            bar.set_position(self.done);
            bar.set_message(self.line(now, self.done, replayed));
            bar.abandon();
        }
        telemetry::stderr::show_bar(None);
        self.display = Display::Log;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error ends the replay early: log lines go on without the bar.
        if let Display::Bar(bar) = &self.display {
            bar.abandon();
            telemetry::stderr::show_bar(None);
        }
    }
}

fn bar() -> ProgressBar {
    let style = ProgressStyle::with_template("{wide_bar:.cyan/blue} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10)).with_style(style)
}

/// `0:07`, `12:30`, `1:02:03`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[usize]) -> (PathBuf, Vec<PathBuf>) {
        let dir = std::env::temp_dir().join(format!("mirror-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let path = dir.join(format!("{i}.gor"));
                std::fs::write(&path, vec![b'x'; *n]).unwrap();
                path
            })
            .collect();
        (dir, paths)
    }

    #[test]
    fn the_line_counts_bytes_over_all_files_and_the_time_left() {
        let (dir, paths) = files(&[1000, 3000]);
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let mut progress = Progress::with_display(&refs, false, Display::Log);
        assert_eq!(progress.total(), 4000);
        let start = progress.started;
        progress.pass_started = start;
        // The second file half read after 10 s: 2500 of 4000, 6 s left.
        let line = progress.line(start + Duration::from_secs(10), 2500, 20_000);
        assert_eq!(
            line,
            "2.44 KiB / 3.91 KiB (62%) · 20,000 requests · 2,000/s · 0:10 · 0:06 left"
        );
        assert_eq!(
            progress.before[1] + 1500,
            2500,
            "file 1 starts after file 0"
        );
        let mut looping = Progress::with_display(&refs, true, Display::Log);
        looping.pass = 3;
        looping.pass_started = looping.started;
        let line = looping.line(looping.started + Duration::from_secs(3700), 1000, 5);
        assert!(
            line.starts_with("pass 3 · ") && line.contains(" · 1:01:40 · pass ends in 3:05:00"),
            "{line}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn clock_reads_as_minutes_or_hours() {
        assert_eq!(clock(Duration::from_secs(7)), "0:07");
        assert_eq!(clock(Duration::from_secs(750)), "12:30");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }
}
