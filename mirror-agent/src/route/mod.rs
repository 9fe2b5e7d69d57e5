//! Routing: which captured request goes to which shadow target, with which
//! rewrites. [`Router`] is the [`RequestSink`] of the http stage.
//!
//! For each request, on the capture task and without waiting:
//! 1. loop guard: a request that carries the marker header is itself a
//!    mirrored copy and goes nowhere (filtered `loop`);
//! 2. the global [`Rules`] (one share draw for all targets), then each
//!    target's own rules;
//! 3. the request is rewritten once per distinct [`RewriteSet`] (targets
//!    with equal rewrites share the bytes) and queued on each target with
//!    [`Target::try_send`]: a full queue drops and counts, never blocks.
//!
//! Every target counts every request: `captured`, then exactly one of
//! filtered (reason), dropped (reason) or, once answered, sent.
//!
//! [`RouterHandle`] owns the running targets: it hands out routers, lists
//! targets and their stats, replaces the configuration
//! ([`RouterHandle::reload`]) and drains everything at shutdown.

mod rewrite;
mod rules;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::info;

use crate::http::{Request, RequestSink};
use crate::shadow::{
    FilterReason, PreparedRequest, Resolve, StatsSnapshot, SystemResolver, Target, TargetConfig,
};

pub(crate) use rewrite::RewriteSet;
pub use rewrite::{HeaderLine, HostHeader, Rewrites, default_marker, header_name, header_value};
pub use rules::{HeaderMatch, HeaderTest, PathRule, Pattern, Rng, Rules, Share, path_of};

/// One target with its own rules and rewrites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTarget {
    pub shadow: TargetConfig,
    pub rules: Rules,
    pub rewrites: Rewrites,
}

impl RouteTarget {
    pub fn new(shadow: TargetConfig) -> Self {
        Self {
            shadow,
            rules: Rules::default(),
            rewrites: Rewrites::default(),
        }
    }
}

/// The validated routing configuration (built by `config` from flags and
/// the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// Route and count, send nothing (filtered `dry_run`).
    pub dry_run: bool,
    /// Added to every mirrored request; a captured request that carries a
    /// header of this name is never mirrored. `None` turns both off.
    pub marker: Option<HeaderLine>,
    /// Rules for every target.
    pub rules: Rules,
    /// Rewrites for every target (a target's own add to them and win).
    pub rewrites: Rewrites,
    pub targets: Vec<RouteTarget>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            marker: Some(default_marker()),
            rules: Rules::default(),
            rewrites: Rewrites::default(),
            targets: Vec::new(),
        }
    }
}

struct PlanTarget {
    target: Arc<Target>,
    rules: Rules,
    /// Index into [`Plan::rewrites`].
    rewrite: usize,
}

/// A configuration with its running targets: what a router follows.
struct Plan {
    config: RouteConfig,
    targets: Vec<PlanTarget>,
    rewrites: Vec<RewriteSet>,
}

/// The distinct rewrite sets of a configuration, and each target's index
/// into them.
fn rewrite_sets(config: &RouteConfig) -> (Vec<RewriteSet>, Vec<usize>) {
    let mut sets: Vec<RewriteSet> = Vec::new();
    let index = config
        .targets
        .iter()
        .map(|t| {
            let set = RewriteSet::new(
                &config.rewrites,
                &t.rewrites,
                config.marker.as_ref(),
                &t.shadow.url,
            );
            match sets.iter().position(|s| *s == set) {
                Some(i) => i,
                None => {
                    sets.push(set);
                    sets.len() - 1
                }
            }
        })
        .collect();
    (sets, index)
}

impl Plan {
    fn new(config: RouteConfig, running: Vec<Arc<Target>>) -> Plan {
        let (rewrites, index) = rewrite_sets(&config);
        let targets = config
            .targets
            .iter()
            .zip(running)
            .zip(index)
            .map(|((t, target), rewrite)| PlanTarget {
                target,
                rules: t.rules.clone(),
                rewrite,
            })
            .collect();
        Plan {
            config,
            targets,
            rewrites,
        }
    }
}

struct Shared {
    plan: Mutex<Arc<Plan>>,
    /// Bumped on every reload; routers pick the new plan up on their next
    /// request.
    generation: AtomicU64,
    resolver: Arc<dyn Resolve>,
    reload: tokio::sync::Mutex<()>,
}

impl Shared {
    fn plan(&self) -> Arc<Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Owns the running targets; cheap to clone.
#[derive(Clone)]
pub struct RouterHandle {
    shared: Arc<Shared>,
}

/// How long targets dropped by a reload get to send what they queued.
const RELOAD_DRAIN: Duration = Duration::from_secs(5);

impl RouterHandle {
    /// Starts every target of `config` (resolving their names) on the
    /// current tokio runtime.
    pub async fn start(config: RouteConfig) -> RouterHandle {
        Self::start_with_resolver(config, Arc::new(SystemResolver)).await
    }

    /// [`start`](Self::start) with another name resolver (tests).
    pub async fn start_with_resolver(
        config: RouteConfig,
        resolver: Arc<dyn Resolve>,
    ) -> RouterHandle {
        let mut running = Vec::with_capacity(config.targets.len());
        for t in &config.targets {
            running.push(Target::start(t.shadow.clone(), resolver.clone()).await);
        }
        let plan = Plan::new(config, running);
        if plan.config.dry_run {
            info!(
                targets = plan.targets.len(),
                "dry run: requests are routed and counted, not sent"
            );
        }
        RouterHandle {
            shared: Arc::new(Shared {
                plan: Mutex::new(Arc::new(plan)),
                generation: AtomicU64::new(0),
                resolver,
                reload: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A request sink for one capture task. Any number can run at once.
    pub fn router(&self) -> Router {
        let plan = self.shared.plan();
        let generation = self.shared.generation.load(Relaxed);
        let mut router = Router {
            shared: self.shared.clone(),
            plan,
            generation,
            global_rng: Rng::from_name(""),
            rngs: Vec::new(),
            prepared: Vec::new(),
        };
        router.reset_scratch();
        router
    }

    /// The running targets, in configuration order.
    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.shared
            .plan()
            .targets
            .iter()
            .map(|t| t.target.clone())
            .collect()
    }

    /// The configuration in force.
    pub fn config(&self) -> RouteConfig {
        self.shared.plan().config.clone()
    }

    /// Name and counters of every target.
    pub fn stats(&self) -> Vec<(String, StatsSnapshot)> {
        self.targets()
            .iter()
            .map(|t| (t.name().to_string(), t.stats().snapshot()))
            .collect()
    }

    /// Names of the targets that resolve to one of `services` (the captured
    /// interface addresses with the service ports): their mirrored requests
    /// would be captured again. Only the marker header stops such a loop;
    /// the caller may refuse to start, or warn.
    pub fn targets_pointing_at(&self, services: &[std::net::SocketAddr]) -> Vec<String> {
        self.targets()
            .iter()
            .filter(|t| t.addresses().iter().any(|a| services.contains(&a.addr)))
            .map(|t| t.name().to_string())
            .collect()
    }

    /// Replaces the configuration. A target whose name and transport
    /// settings are unchanged keeps running (queue, connections, counters);
    /// new ones start; dropped ones drain in the background for a few
    /// seconds. Rules and rewrites apply from the routers' next request.
    pub async fn reload(&self, config: RouteConfig) {
        let _one_at_a_time = self.shared.reload.lock().await;
        let old = self.shared.plan();
        let mut running = Vec::with_capacity(config.targets.len());
        for t in &config.targets {
            let kept = old
                .targets
                .iter()
                .find(|p| *p.target.config() == t.shadow)
                .map(|p| p.target.clone());
            running.push(match kept {
                Some(target) => target,
                None => Target::start(t.shadow.clone(), self.shared.resolver.clone()).await,
            });
        }
        for gone in old
            .targets
            .iter()
            .filter(|p| !running.iter().any(|r| Arc::ptr_eq(r, &p.target)))
        {
            let target = gone.target.clone();
            info!(target_name = %target.name(), "shadow target removed by reload");
            tokio::spawn(async move {
                target
                    .shutdown(tokio::time::Instant::now() + RELOAD_DRAIN)
                    .await
            });
        }
        let plan = Arc::new(Plan::new(config, running));
        *self.shared.plan.lock().unwrap_or_else(|e| e.into_inner()) = plan;
        self.shared.generation.fetch_add(1, Relaxed);
    }

    /// Stops every target: nothing new is queued (late requests count as
    /// dropped `shutdown`), queues drain until `grace` has passed, then what
    /// is left is dropped (`shutdown`). Returns the final counters.
    pub async fn shutdown(&self, grace: Duration) -> Vec<(String, StatsSnapshot)> {
        let deadline = tokio::time::Instant::now() + grace;
        let targets = self.targets();
        let tasks: Vec<_> = targets
            .iter()
            .map(|t| {
                let t = t.clone();
                tokio::spawn(async move { t.shutdown(deadline).await })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        self.stats()
    }
}

/// Routes requests to the targets; one per capture task. Holds the plan it
/// follows, the share generators and a scratch list, so a request costs no
/// lock and no allocation besides the prepared bytes.
pub struct Router {
    shared: Arc<Shared>,
    plan: Arc<Plan>,
    generation: u64,
    global_rng: Rng,
    /// One per target, seeded from its name.
    rngs: Vec<Rng>,
    /// One slot per rewrite set, filled while a request is routed.
    prepared: Vec<Option<Arc<PreparedRequest>>>,
}

impl Router {
    fn reset_scratch(&mut self) {
        self.rngs = self
            .plan
            .targets
            .iter()
            .map(|t| Rng::from_name(t.target.name()))
            .collect();
        self.prepared = vec![None; self.plan.rewrites.len()];
    }

    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Relaxed);
        if generation != self.generation {
            self.generation = generation;
            self.plan = self.shared.plan();
            self.reset_scratch();
        }
    }

    /// Routes one request (what [`RequestSink::on_request`] does).
    pub fn route(&mut self, request: &Request) {
        self.refresh();
        let plan = &*self.plan;
        let config = &plan.config;
        let path = path_of(request.target());

        let global = match &config.marker {
            Some(marker) if request.header(&marker.name).is_some() => Err(FilterReason::Loop),
            _ => config.rules.check(request, path, &mut self.global_rng),
        };

        for (i, t) in plan.targets.iter().enumerate() {
            let stats = t.target.stats();
            stats.captured.fetch_add(1, Relaxed);
            let verdict = global.and_then(|()| t.rules.check(request, path, &mut self.rngs[i]));
            if let Err(reason) = verdict {
                stats.filter(reason);
                continue;
            }
            if config.dry_run {
                stats.filter(FilterReason::DryRun);
                continue;
            }
            let prepared = self.prepared[t.rewrite]
                .get_or_insert_with(|| Arc::new(plan.rewrites[t.rewrite].apply(request)));
            t.target.try_send(prepared.clone());
        }
        for slot in &mut self.prepared {
            *slot = None;
        }
    }
}

impl RequestSink for Router {
    fn on_request(&mut self, request: Request) {
        self.route(&request);
    }
}

#[cfg(test)]
mod tests;
