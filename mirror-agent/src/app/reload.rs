//! SIGHUP: the configuration file is read again; what a reload may change
//! ([`Live`](crate::config::Live)) is applied without detaching, what needs
//! a restart ([`Startup`](crate::config::Startup)) keeps running as it
//! started and is named in a warning.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::signal::unix::Signal;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{Cli, Config};
use crate::shadow::Shadows;
use crate::telemetry::{Logging, ReloadStats, Sources, summary};

/// What a reload runs: the new live settings on the old startup ones, and
/// the keys that changed but need a restart.
#[derive(Debug, PartialEq)]
pub(super) struct Reload {
    pub running: Config,
    pub restart_needed: Vec<String>,
}

impl Reload {
    pub(super) fn plan(old: &Config, new: Config) -> Reload {
        Reload {
            restart_needed: old.startup.changed_keys(&new.startup),
            running: Config {
                startup: old.startup.clone(),
                live: new.live,
            },
        }
    }
}

/// Applies a new configuration on SIGHUP.
pub(super) struct Reloader {
    pub cli: Cli,
    /// What runs now.
    pub running: Mutex<Config>,
    pub shadows: Shadows,
    pub logging: Logging,
    /// `--log-requests`, read by the request log on every request.
    pub log_share: Arc<AtomicU32>,
    pub reloads: Arc<ReloadStats>,
    pub sources: Sources,
    /// The periodic summary, restarted when its interval changes.
    pub summary: Mutex<JoinHandle<()>>,
}

impl Reloader {
    pub(super) fn running(&self) -> Config {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn summary_task(&self) -> MutexGuard<'_, JoinHandle<()>> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn listen(self: Arc<Self>, mut hup: Signal) {
        while hup.recv().await.is_some() {
            self.reload().await;
        }
    }

    async fn reload(&self) {
        // Whatever the configuration says, SIGHUP is also how a log
        // rotation tells the agent its diff log was moved.
        if let Some(engine) = &self.sources.compare {
            engine.reopen_diff_log();
        }
        let Some(file) = &self.cli.config else {
            warn!("SIGHUP received, but there is no --config file to read again");
            return;
        };
        info!(file = %file.display(), "SIGHUP received, reading the configuration again");
        let new = match self
            .cli
            .load()
            .and_then(|c| c.startup.capture.options().map(|_| c))
        {
            Ok(new) => new,
            Err(err) => {
                for line in err.0.lines() {
                    error!("{line}");
                }
                self.reloads.rejected.fetch_add(1, Ordering::Relaxed);
                error!(
                    file = %file.display(),
                    "configuration rejected; the running configuration stays"
                );
                return;
            }
        };
        let old = self.running();
        let reload = Reload::plan(&old, new);
        if !reload.restart_needed.is_empty() {
            let keys = reload.restart_needed.join(", ");
            warn!(
                keys = %keys,
                "these settings changed but need a restart (the capture stays attached \
                 as it is): {keys}"
            );
        }
        self.apply(&old, &reload.running, file).await;
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = reload.running;
        self.reloads.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Brings the running agent from `old` to `new` (live settings only).
    async fn apply(&self, old: &Config, new: &Config, file: &Path) {
        let (old, new) = (&old.live, &new.live);
        if new.shadows != old.shadows {
            self.shadows.reload(new.shadows.clone()).await;
        }
        if new.compare.redaction != old.compare.redaction {
            super::install_redaction(&new.compare.redaction);
        }
        if new.compare != old.compare {
            match &self.sources.compare {
                Some(engine) => engine.reconfigure(&new.compare),
                None if new.compare.enabled() => warn!(
                    "the comparison cannot start on a reload: v1's responses are captured only \
                     when it is on at start (restart the agent)"
                ),
                None => {}
            }
        }
        let requests = new.log_requests.basis_points();
        let level_changed = new.log_level != old.log_level
            || (requests > 0) != (old.log_requests.basis_points() > 0);
        if level_changed && let Err(err) = self.logging.set_level(&new.log_level, requests > 0) {
            warn!("the log level cannot change: {err}");
        }
        self.log_share.store(requests, Ordering::Relaxed);
        if new.stats_interval != old.stats_interval {
            let mut task = self.summary_task();
            task.abort();
            *task = tokio::spawn(summary::run(self.sources.clone(), new.stats_interval));
        }
        info!(
            file = %file.display(),
            targets = new.shadows.route.targets.len(),
            "configuration reloaded"
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["mirror-agent", "--iface", "lo", "--port", "80"];
        all.extend_from_slice(args);
        Cli::parse_from(all).load().unwrap()
    }

    #[test]
    fn a_reload_keeps_every_startup_setting_nice_included_and_names_them() {
        let old = config(&["--nice", "10", "--log-level", "info"]);
        let new = config(&[
            "--nice",
            "3",
            "--max-flows",
            "7",
            "--log-level",
            "debug",
            "--shadow",
            "http://v2:1",
        ]);
        let reload = Reload::plan(&old, new.clone());
        assert_eq!(reload.restart_needed, ["max_flows", "nice"]);
        assert_eq!(reload.running.startup, old.startup, "nice stays 10");
        assert_eq!(reload.running.startup.nice, 10);
        assert_eq!(reload.running.live, new.live, "the rest is applied");
    }

    #[test]
    fn a_reload_that_changes_only_live_settings_needs_no_restart() {
        let old = config(&[]);
        let new = config(&["--stats-interval", "1s", "--share", "5"]);
        let reload = Reload::plan(&old, new);
        assert!(reload.restart_needed.is_empty());
    }
}
