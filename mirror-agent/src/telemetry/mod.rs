//! What the agent tells its operators: Prometheus metrics and the health
//! endpoints ([`endpoint`], [`metrics`]), the periodic summary and the
//! loss events ([`summary`]), the logs ([`logging`], on a stderr shared
//! with a progress bar: [`stderr`]) and the sampled request log
//! ([`request_log`]).
//!
//! Nothing here is on the capture path: every value is read when it is
//! needed from where its stage keeps it (the kernel's per-CPU map, the
//! snapshot the capture task publishes, the shadow targets' atomics).

pub mod endpoint;
pub mod logging;
pub mod metrics;
pub mod request_log;
pub mod stderr;
pub mod summary;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub use logging::{LogFormat, Logging};

use crate::capture::CounterReader;
use crate::compare::Engine;
use crate::flow::FlowStats;
use crate::http::HttpStats;
use crate::shadow::{Shadows, StatsSnapshot};

/// Everything the flow and http stages count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub flow: FlowStats,
    pub http: HttpStats,
}

/// The flow and http stages' counters, published by the capture task (it
/// owns the flow table) and read by scrapes and the periodic summary.
#[derive(Default)]
pub struct PipelineStats {
    snapshot: Mutex<Stats>,
}

impl PipelineStats {
    pub fn publish(&self, stats: Stats) {
        if let Ok(mut snapshot) = self.snapshot.lock() {
            *snapshot = stats;
        }
    }

    pub fn get(&self) -> Stats {
        self.snapshot.lock().map(|s| *s).unwrap_or_default()
    }
}

/// One shadow target's numbers, read when needed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetSnapshot {
    /// The target's label value (its name: the URL unless configured).
    pub name: String,
    pub stats: StatsSnapshot,
}

/// Supplies the targets' snapshots.
pub type TargetSource = Arc<dyn Fn() -> Vec<TargetSnapshot> + Send + Sync>;

/// Reads the running targets' atomics when asked.
pub fn target_source(shadows: Shadows) -> TargetSource {
    Arc::new(move || {
        shadows
            .targets()
            .iter()
            .map(|target| TargetSnapshot {
                name: target.name().to_owned(),
                stats: target.stats().snapshot(),
            })
            .collect()
    })
}

/// `mirror_build_info` labels.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub version: &'static str,
    pub kernel: String,
    pub attach_mode: &'static str,
}

/// Configuration reloads (SIGHUP), by outcome.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
}

/// Everything a scrape or a summary reads.
#[derive(Clone)]
pub struct Sources {
    pub kernel: Option<Arc<CounterReader>>,
    pub pipeline: Arc<PipelineStats>,
    pub targets: TargetSource,
    pub reloads: Arc<ReloadStats>,
    pub build: BuildInfo,
    /// The comparison, when it runs.
    pub compare: Option<Engine>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("build", &self.build)
            .finish_non_exhaustive()
    }
}
