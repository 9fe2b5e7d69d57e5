//! The signals the agent answers: SIGTERM and SIGINT stop it (a second one
//! skips the drain), SIGHUP reloads the configuration file. Registered
//! before anything is attached: from then on no signal ends the process
//! without a detach.

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

pub(super) fn listen(kind: SignalKind) -> anyhow::Result<Signal> {
    signal(kind).context("cannot listen for signals")
}

/// SIGTERM and SIGINT.
pub(super) struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    /// Resolves on SIGTERM or SIGINT; returns its name.
    pub(super) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
