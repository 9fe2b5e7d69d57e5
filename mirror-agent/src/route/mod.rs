//! Routing: which captured request goes to which target, with which
//! rewrites. Pure decisions: the routing stage knows targets by name and
//! URL only; the shadow stage, which runs them, acts on the [`Verdict`]s.
//!
//! For each request, on the capture task and without waiting:
//! 1. loop guard: a request that carries the marker header is itself a
//!    mirrored copy and goes nowhere (filtered `loop`);
//! 2. the global [`Rules`] (one share draw for all targets, or the stable
//!    share by key: see `rules`), then each target's own rules;
//! 3. `--dry-run`: routed, then filtered `dry_run`;
//! 4. the request is rewritten once per distinct [`RewriteSet`] (targets
//!    with equal rewrites share the bytes): a [`PreparedRequest`]. Its
//!    request target is always in origin form (`/path?query`): nothing a
//!    client sends names where the agent connects, only the configured
//!    target URLs do.
//!
//! [`Plan`] is a configuration compiled for routing; a [`Router`] follows
//! one plan at a time and keeps the per-target share generators.

mod prepared;
mod request_target;
mod rewrite;
mod rules;
mod url;

use std::sync::Arc;

use crate::http::Request;

pub(crate) use prepared::write_hex_line;
pub use prepared::{BodyFraming, PreparedRequest, StreamedBody};
pub use request_target::{HeaderRewrite, PathRewrite, QueryParam, query_name};
pub(crate) use rewrite::RewriteSet;
pub use rewrite::{
    FORWARDED_FOR, ForwardedFor, HeaderLine, HostHeader, Rewrites, default_marker, header_name,
    header_value,
};
pub use rules::{
    HeaderMatch, HeaderTest, PathRule, Pattern, Rng, Rules, Share, ShareKey, fnv1a64, key_in_share,
    normalized_path, path_of, query_param,
};
pub use url::TargetUrl;

mirror_common::labelled! {
    /// Why the routing rules kept a request from a target. Not a loss: the
    /// configuration asked for it.
    pub enum FilterReason {
        /// Left out by the share (per-request sampling), global or per target.
        Share => "share",
        /// A header match did not hold.
        Header => "header",
        /// The method is not in the allow-list.
        Method => "method",
        /// The path is not allowed, or is denied.
        Path => "path",
        /// The request carries the marker header: it is itself a mirrored copy.
        Loop => "loop",
        /// `--dry-run`: routed, then not sent.
        DryRun => "dry_run",
        /// A share by key (`--share-by`) and the request has no such key
        /// (the header or query parameter is absent or empty).
        NoShareKey => "no_share_key",
    }
}

/// The routing side of one target: its name (the label in logs and
/// metrics, and the seed of its share), its URL (for the rewrites) and its
/// own rules and rewrites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTarget {
    pub name: String,
    pub url: TargetUrl,
    pub rules: Rules,
    pub rewrites: Rewrites,
}

impl RouteTarget {
    /// A target named after its URL, without rules or rewrites.
    pub fn new(url: TargetUrl) -> Self {
        Self {
            name: url.to_string(),
            url,
            rules: Rules::default(),
            rewrites: Rewrites::default(),
        }
    }
}

#[cfg(test)]
impl RouteTarget {
    /// A test's target called `name` at `url`, without rules or rewrites.
    pub(crate) fn named(name: &str, url: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::new(TargetUrl::parse(url).unwrap())
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

/// What routing decided for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send these bytes.
    Send(Arc<PreparedRequest>),
    /// Not for this target.
    Filtered(FilterReason),
}

struct PlanTarget {
    name: String,
    rules: Rules,
    /// Index into [`Plan::rewrites`].
    rewrite: usize,
}

/// A routing configuration compiled for routing: each target's rules and
/// the distinct rewrite sets. Targets keep their configuration order.
pub struct Plan {
    config: RouteConfig,
    targets: Vec<PlanTarget>,
    rewrites: Vec<RewriteSet>,
}

impl Plan {
    pub fn new(config: RouteConfig) -> Plan {
        let mut rewrites: Vec<RewriteSet> = Vec::new();
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let set = RewriteSet::new(
                    &config.rewrites,
                    &t.rewrites,
                    config.marker.as_ref(),
                    &t.url,
                );
                let rewrite = match rewrites.iter().position(|s| *s == set) {
                    Some(i) => i,
                    None => {
                        rewrites.push(set);
                        rewrites.len() - 1
                    }
                };
                PlanTarget {
                    name: t.name.clone(),
                    rules: t.rules.clone(),
                    rewrite,
                }
            })
            .collect();
        Plan {
            config,
            targets,
            rewrites,
        }
    }

    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// Number of targets (and of verdicts per request).
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Routes requests following one [`Plan`]; one per capture task. Holds the
/// share generators and a scratch list, so a request costs no lock and no
/// allocation besides the prepared bytes.
pub struct Router {
    plan: Arc<Plan>,
    global_rng: Rng,
    /// One per target, seeded from its name.
    rngs: Vec<Rng>,
    /// One slot per rewrite set, filled while a request is routed.
    prepared: Vec<Option<Arc<PreparedRequest>>>,
}

impl Router {
    pub fn new(plan: Arc<Plan>) -> Router {
        let mut router = Router {
            plan,
            global_rng: Rng::from_name(""),
            rngs: Vec::new(),
            prepared: Vec::new(),
        };
        router.reset_scratch();
        router
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Follows `plan` from the next request on (a reload). The share
    /// generators start again from their seeds.
    pub fn set_plan(&mut self, plan: Arc<Plan>) {
        self.plan = plan;
        self.reset_scratch();
    }

    fn reset_scratch(&mut self) {
        self.rngs = self
            .plan
            .targets
            .iter()
            .map(|t| Rng::from_name(&t.name))
            .collect();
        self.prepared = vec![None; self.plan.rewrites.len()];
    }

    /// Decides for every target of the plan, in its order: `verdicts` is
    /// cleared and then holds one [`Verdict`] per target.
    pub fn route(&mut self, request: &Request, verdicts: &mut Vec<Verdict>) {
        verdicts.clear();
        let plan = &*self.plan;
        let config = &plan.config;
        let path = normalized_path(request.target());

        let global = match &config.marker {
            Some(marker) if request.header(&marker.name).is_some() => Err(FilterReason::Loop),
            _ => config.rules.check(request, &path, &mut self.global_rng),
        };

        for (i, t) in plan.targets.iter().enumerate() {
            let verdict = global.and_then(|()| t.rules.check(request, &path, &mut self.rngs[i]));
            verdicts.push(match verdict {
                Err(reason) => Verdict::Filtered(reason),
                Ok(()) if config.dry_run => Verdict::Filtered(FilterReason::DryRun),
                Ok(()) => Verdict::Send(
                    self.prepared[t.rewrite]
                        .get_or_insert_with(|| Arc::new(plan.rewrites[t.rewrite].apply(request)))
                        .clone(),
                ),
            });
        }
        for slot in &mut self.prepared {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests;
