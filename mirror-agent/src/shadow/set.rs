//! All the running targets and the routing plan they are deployed with:
//! [`Shadows`] starts them, replaces the configuration on a reload and
//! drains them at shutdown; a [`Dispatcher`] (one per capture task) acts on
//! the routing's verdicts for each request (queues it, or counts why not).
//! Routing itself is the stage before: the dispatcher hands it the plan of
//! the deployment it follows, so that verdicts and targets always match.
//!
//! Every target counts every request: `captured`, then exactly one of
//! filtered (reason), dropped (reason) or, once answered, sent.
//!
//! Each request is queued with its captured client connection
//! ([`FlowTag`]): a target sends the copies of one connection in the
//! order they were dispatched, one at a time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::info;

use super::endpoints::{Resolve, SystemResolver};
use super::reply::{AnswerSink, Reply};
use super::stats::{DropReason, StatsSnapshot, TargetStats};
use super::target::{FlowTag, Target, TargetConfig, TargetSettings};
use crate::capture::FlowId;
use crate::route::{FilterReason, Plan, RouteConfig, Verdict};

/// The mirroring side's configuration: the routing (with every target's
/// name, URL, rules and rewrites) and how each target is sent to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShadowConfig {
    pub route: RouteConfig,
    /// `settings[i]` belongs to `route.targets[i]`; a missing entry is the
    /// default.
    pub settings: Vec<TargetSettings>,
}

impl ShadowConfig {
    /// What each target is: name, URL and settings, in routing order.
    pub fn targets(&self) -> Vec<TargetConfig> {
        self.route
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| TargetConfig {
                name: t.name.clone(),
                url: t.url.clone(),
                settings: self.settings.get(i).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

/// What became of a request at one target, as it was dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In the target's queue.
    Queued,
    Filtered(FilterReason),
    Dropped(DropReason),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Queued => f.write_str("queued"),
            Outcome::Filtered(reason) => write!(f, "filtered:{reason}"),
            Outcome::Dropped(reason) => write!(f, "dropped:{reason}"),
        }
    }
}

/// A configuration with its running targets, in the same order.
struct Deployment {
    config: ShadowConfig,
    plan: Arc<Plan>,
    targets: Vec<Arc<Target>>,
}

struct Shared {
    current: Mutex<Arc<Deployment>>,
    /// The counters of targets a reload removed, by name: one added back
    /// counts on from them.
    retired: Mutex<HashMap<String, Arc<TargetStats>>>,
    /// Bumped on every reload; dispatchers pick the new deployment up on
    /// their next request.
    generation: AtomicU64,
    resolver: Arc<dyn Resolve>,
    reload: tokio::sync::Mutex<()>,
}

impl Shared {
    fn current(&self) -> Arc<Deployment> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Owns the running targets; cheap to clone.
#[derive(Clone)]
pub struct Shadows {
    shared: Arc<Shared>,
}

/// How long targets dropped by a reload get to send what they queued.
const RELOAD_DRAIN: Duration = Duration::from_secs(5);

impl Shadows {
    /// Starts every target of `config` (resolving their names) on the
    /// current tokio runtime.
    pub async fn start(config: ShadowConfig) -> Shadows {
        Self::start_with_resolver(config, Arc::new(SystemResolver)).await
    }

    /// [`start`](Self::start) with another name resolver (tests).
    pub async fn start_with_resolver(config: ShadowConfig, resolver: Arc<dyn Resolve>) -> Shadows {
        let mut targets = Vec::with_capacity(config.route.targets.len());
        for target in config.targets() {
            targets.push(Target::start(target, resolver.clone()).await);
        }
        if config.route.dry_run {
            info!(
                targets = targets.len(),
                "dry run: requests are routed and counted, not sent"
            );
        }
        let deployment = Deployment {
            plan: Arc::new(Plan::new(config.route.clone())),
            config,
            targets,
        };
        Shadows {
            shared: Arc::new(Shared {
                current: Mutex::new(Arc::new(deployment)),
                retired: Mutex::default(),
                generation: AtomicU64::new(0),
                resolver,
                reload: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A request sink for one capture task. Any number can run at once.
    pub fn dispatcher(&self) -> Dispatcher {
        let deployment = self.shared.current();
        Dispatcher {
            shared: self.shared.clone(),
            generation: self.shared.generation.load(Relaxed),
            deployment,
            outcomes: Vec::new(),
        }
    }

    /// The running targets, in configuration order.
    pub fn targets(&self) -> Vec<Arc<Target>> {
        self.shared.current().targets.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> ShadowConfig {
        self.shared.current().config.clone()
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
    pub fn targets_pointing_at(&self, services: &[SocketAddr]) -> Vec<String> {
        self.targets()
            .iter()
            .filter(|t| t.addresses().iter().any(|a| services.contains(&a.addr)))
            .map(|t| t.name().to_string())
            .collect()
    }

    /// Replaces the configuration. A target whose name and transport
    /// settings are unchanged keeps running (queue, connections, counters);
    /// new ones start, counting on from the counters of an earlier target
    /// of the same name (metric series only go up); dropped ones drain in
    /// the background for a few seconds. Rules and rewrites apply from the
    /// dispatchers' next request.
    pub async fn reload(&self, config: ShadowConfig) {
        let _one_at_a_time = self.shared.reload.lock().await;
        let old = self.shared.current();
        let mut targets = Vec::with_capacity(config.route.targets.len());
        for wanted in config.targets() {
            let kept = old.targets.iter().find(|t| *t.config() == wanted).cloned();
            let target = match kept {
                Some(target) => target,
                None => {
                    let earlier = old
                        .targets
                        .iter()
                        .find(|t| t.name() == wanted.name)
                        .map(|t| t.shared_stats())
                        .or_else(|| self.retired().remove(&wanted.name))
                        .unwrap_or_default();
                    let resolver = self.shared.resolver.clone();
                    Target::start_counting_into(wanted, resolver, earlier).await
                }
            };
            targets.push(target);
        }
        for gone in old
            .targets
            .iter()
            .filter(|t| !targets.iter().any(|kept| Arc::ptr_eq(kept, t)))
        {
            let target = gone.clone();
            if !targets.iter().any(|t| t.name() == target.name()) {
                self.retired()
                    .insert(target.name().to_owned(), target.shared_stats());
            }
            info!(target_name = %target.name(), "shadow target removed by reload");
            tokio::spawn(async move {
                target
                    .shutdown(tokio::time::Instant::now() + RELOAD_DRAIN)
                    .await
            });
        }
        let deployment = Arc::new(Deployment {
            plan: Arc::new(Plan::new(config.route.clone())),
            config,
            targets,
        });
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = deployment;
        self.shared.generation.fetch_add(1, Relaxed);
    }

    fn retired(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TargetStats>>> {
        self.shared
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every target at once (a second stop signal): a
    /// [`shutdown`](Self::shutdown) under way returns as soon as what was
    /// queued and in flight is counted as dropped (`shutdown`).
    pub fn stop_now(&self) {
        for target in self.targets() {
            target.stop_now();
        }
    }

    /// Stops every target: nothing new is queued (late requests count as
    /// dropped `shutdown`), queues drain until `grace` has passed, then what
    /// is left is dropped (`shutdown`). Returns the final counters.
    pub async fn shutdown(&self, grace: Duration) -> Vec<(String, StatsSnapshot)> {
        let deadline = tokio::time::Instant::now() + grace;
        let tasks: Vec<_> = self
            .targets()
            .into_iter()
            .map(|t| tokio::spawn(async move { t.shutdown(deadline).await }))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        self.stats()
    }
}

/// Hands routed requests to the targets; one per capture task. Holds the
/// deployment it follows, so a request costs no lock.
pub struct Dispatcher {
    shared: Arc<Shared>,
    deployment: Arc<Deployment>,
    generation: u64,
    outcomes: Vec<Outcome>,
}

impl Dispatcher {
    /// Follows a reload: the new deployment's routing plan if it changed
    /// since the last call (the routing stage takes it before routing the
    /// next request, so that its verdicts are for these targets).
    pub fn refresh(&mut self) -> Option<Arc<Plan>> {
        let generation = self.shared.generation.load(Relaxed);
        if generation == self.generation {
            return None;
        }
        self.generation = generation;
        self.deployment = self.shared.current();
        Some(self.deployment.plan.clone())
    }

    /// The routing plan of the deployment followed now.
    pub fn plan(&self) -> Arc<Plan> {
        self.deployment.plan.clone()
    }

    /// The targets requests go to now, in the order of the outcomes.
    pub fn targets(&self) -> &[Arc<Target>] {
        &self.deployment.targets
    }

    /// What the last dispatch did at each target.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// Any target compares its answers (the comparison then gives every
    /// request a tag before it is sent).
    pub fn compares(&self) -> bool {
        self.deployment.targets.iter().any(|t| t.keeps_answers())
    }

    /// Acts on the routing's `verdicts` for one request of the captured
    /// connection `flow`, one per target in the order of
    /// [`targets`](Self::targets): queues it where it goes (behind the
    /// connection's earlier requests) and counts it at every target. A
    /// compared request (`compared`: its tag and where answers go) is
    /// reported by each target that keeps its answers and does not filter
    /// it, exactly once (see [`Reply`]). What became of it at each target,
    /// in that order.
    pub fn send(
        &mut self,
        flow: &FlowId,
        verdicts: impl IntoIterator<Item = Verdict>,
        compared: Option<(u64, &Arc<dyn AnswerSink>)>,
    ) -> &[Outcome] {
        self.outcomes.clear();
        // Hashed once for all the targets, and only if one sends it.
        let mut flow_tag = None;
        for (target, verdict) in self.deployment.targets.iter().zip(verdicts) {
            let stats = target.stats();
            stats.captured.fetch_add(1, Relaxed);
            self.outcomes.push(match verdict {
                Verdict::Filtered(reason) => {
                    stats.filter(reason);
                    Outcome::Filtered(reason)
                }
                Verdict::Send(prepared) => {
                    let reply = compared
                        .filter(|_| target.keeps_answers())
                        .map(|(tag, sink)| Reply::new(tag, target.name_arc(), sink.clone()));
                    let flow = *flow_tag.get_or_insert_with(|| FlowTag::of(flow));
                    match target.try_send_replying(prepared, Some(flow), reply) {
                        Ok(()) => Outcome::Queued,
                        Err(reason) => Outcome::Dropped(reason),
                    }
                }
            });
        }
        &self.outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;
    use crate::http::testing::frame_one;
    use crate::route::{RouteTarget, Router};

    /// The routing stage and the dispatcher, as the assembled agent runs
    /// them.
    struct Routed {
        router: Router,
        verdicts: Vec<Verdict>,
        dispatcher: Dispatcher,
    }

    fn routed(dispatcher: Dispatcher) -> Routed {
        Routed {
            router: Router::new(dispatcher.plan()),
            verdicts: Vec::new(),
            dispatcher,
        }
    }

    impl Routed {
        fn dispatch(&mut self, request: &Request) -> &[Outcome] {
            if let Some(plan) = self.dispatcher.refresh() {
                self.router.set_plan(plan);
            }
            self.router.route(request, &mut self.verdicts);
            self.dispatcher
                .send(&request.flow, self.verdicts.drain(..), None)
        }
    }

    fn config(targets: Vec<RouteTarget>) -> ShadowConfig {
        ShadowConfig {
            route: RouteConfig {
                targets,
                ..RouteConfig::default()
            },
            settings: Vec::new(),
        }
    }

    #[tokio::test]
    async fn each_request_is_counted_once_per_target_with_what_became_of_it() {
        let mut posts_only = RouteTarget::named("b", "http://127.0.0.1:2");
        posts_only.rules.methods = vec!["POST".to_owned()];
        let shadows = Shadows::start(config(vec![
            RouteTarget::named("a", "http://127.0.0.1:1"),
            posts_only,
        ]))
        .await;
        let mut dispatcher = routed(shadows.dispatcher());
        let get = frame_one(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            dispatcher.dispatch(&get),
            [Outcome::Queued, Outcome::Filtered(FilterReason::Method)]
        );
        let looped = frame_one(b"GET / HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n");
        assert_eq!(
            dispatcher.dispatch(&looped),
            [Outcome::Filtered(FilterReason::Loop); 2]
        );
        shadows.shutdown(Duration::ZERO).await;
        assert_eq!(
            dispatcher.dispatch(&get),
            [
                Outcome::Dropped(DropReason::Shutdown),
                Outcome::Filtered(FilterReason::Method)
            ]
        );
        let stats = shadows.stats();
        assert_eq!(stats[0].1.captured, 3);
        assert_eq!(stats[0].1.filtered_by(FilterReason::Loop), 1);
        // The queued one was refused by the closed port or dropped at
        // shutdown, whichever came first.
        assert!(stats[0].1.dropped_by(DropReason::Shutdown) >= 1);
        assert!(stats[0].1.balances(), "{}", stats[0].1);
        assert_eq!(stats[1].1.captured, 3);
        assert_eq!(stats[1].1.filtered_by(FilterReason::Method), 2);
        assert_eq!(
            Outcome::Dropped(DropReason::QueueFull).to_string(),
            "dropped:queue_full"
        );
    }

    #[tokio::test]
    async fn a_reload_keeps_unchanged_targets_and_dispatchers_follow_it() {
        let shadows =
            Shadows::start(config(vec![RouteTarget::named("a", "http://127.0.0.1:1")])).await;
        let mut dispatcher = routed(shadows.dispatcher());
        let first = shadows.targets()[0].clone();
        let get = frame_one(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        dispatcher.dispatch(&get);
        let mut next = config(vec![
            RouteTarget::named("a", "http://127.0.0.1:1"),
            RouteTarget::named("b", "http://127.0.0.1:2"),
        ]);
        next.route.dry_run = true;
        shadows.reload(next).await;
        assert!(Arc::ptr_eq(&shadows.targets()[0], &first), "a kept");
        assert_eq!(
            dispatcher.dispatch(&get),
            [Outcome::Filtered(FilterReason::DryRun); 2]
        );
        assert_eq!(first.stats().snapshot().captured, 2, "a's counters go on");
        shadows.shutdown(Duration::ZERO).await;
    }

    #[tokio::test]
    async fn a_target_removed_and_added_back_counts_on_from_where_it_was() {
        let shadows =
            Shadows::start(config(vec![RouteTarget::named("a", "http://127.0.0.1:1")])).await;
        let mut dispatcher = routed(shadows.dispatcher());
        let get = frame_one(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        dispatcher.dispatch(&get);
        shadows.reload(config(Vec::new())).await;
        dispatcher.dispatch(&get);
        let mut back = RouteTarget::named("a", "http://127.0.0.1:1");
        back.rules.methods = vec!["POST".to_owned()];
        shadows.reload(config(vec![back])).await;
        dispatcher.dispatch(&get);
        let stats = shadows.stats();
        assert_eq!(stats[0].1.captured, 2, "not reset: {}", stats[0].1);
        assert_eq!(stats[0].1.filtered_by(FilterReason::Method), 1);
        shadows.shutdown(Duration::ZERO).await;
    }

    #[tokio::test]
    async fn stopping_now_ends_a_long_drain_with_every_copy_counted() {
        // A shadow that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let shadows = Shadows::start(config(vec![RouteTarget::named("slow", &url)])).await;
        let mut dispatcher = routed(shadows.dispatcher());
        let get = frame_one(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        for _ in 0..100 {
            dispatcher.dispatch(&get);
        }
        let started = tokio::time::Instant::now();
        let shutdown = shadows.shutdown(Duration::from_secs(60));
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => panic!("the silent shadow answered"),
            () = tokio::time::sleep(Duration::from_millis(100)) => shadows.stop_now(),
        }
        let stats = shutdown.await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let s = &stats[0].1;
        assert_eq!(s.captured, 100);
        assert_eq!(s.dropped_by(DropReason::Shutdown), 100, "{s}");
        assert!(
            s.balances() && s.queue_depth == 0 && s.in_flight == 0,
            "{s}"
        );
        silent.abort();
    }
}
