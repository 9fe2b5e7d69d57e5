//! The opt-in sampled request log (`--log-requests`): a share of the
//! requests is logged at debug level (target [`REQUEST_TARGET`]) with
//! method, path and what each target did with it: `queued`,
//! `filtered:<reason>` or `dropped:<reason>`, as the dispatcher returned it.
//! (Whether a queued request was then answered is in the metrics, not in
//! this line.)
//!
//! Off (share 0), a request costs one relaxed atomic load more.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mirror_common::SAMPLE_ALL;
use tracing::debug;

use super::logging::REQUEST_TARGET;
use crate::http::Request;
use crate::route::path_of;
use crate::shadow::{Outcome, Target};

/// Says what became of a share of the requests.
pub struct RequestLog {
    /// Basis points of requests logged; changed by a reload.
    share: Arc<AtomicU32>,
    /// Adds the share per request; a request is logged each time it passes
    /// 10 000 (exactly the share, evenly spread).
    credit: u32,
}

impl RequestLog {
    pub fn new(share: Arc<AtomicU32>) -> Self {
        Self { share, credit: 0 }
    }

    fn sampled(&mut self) -> bool {
        let share = self.share.load(Ordering::Relaxed);
        if share == 0 {
            return false;
        }
        self.credit += share.min(SAMPLE_ALL);
        if self.credit >= SAMPLE_ALL {
            self.credit -= SAMPLE_ALL;
            return true;
        }
        false
    }

    /// `request` was dispatched to `targets` with `outcomes` (in the same
    /// order): logged if it is in the share.
    pub fn dispatched(&mut self, request: &Request, targets: &[Arc<Target>], outcomes: &[Outcome]) {
        if !self.sampled() {
            return;
        }
        debug!(
            target: REQUEST_TARGET,
            method = %String::from_utf8_lossy(request.method()),
            path = %String::from_utf8_lossy(path_of(request.target())),
            targets = %described(targets, outcomes).join(" "),
            "request"
        );
    }
}

/// `target=outcome` for every target.
fn described(targets: &[Arc<Target>], outcomes: &[Outcome]) -> Vec<String> {
    targets
        .iter()
        .zip(outcomes)
        .map(|(target, outcome)| format!("{}={outcome}", target.name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::testing::frame_one;
    use crate::route::{RouteConfig, RouteTarget, Router};
    use crate::shadow::{ShadowConfig, Shadows};

    #[tokio::test]
    async fn a_sampled_request_says_what_each_target_did_with_it() {
        let mut posts_only = RouteTarget::named("b", "http://127.0.0.1:2");
        posts_only.rules.methods = vec!["POST".to_owned()];
        let config = ShadowConfig {
            route: RouteConfig {
                targets: vec![RouteTarget::named("a", "http://127.0.0.1:1"), posts_only],
                ..RouteConfig::default()
            },
            settings: Vec::new(),
        };
        let shadows = Shadows::start(config).await;
        let mut dispatcher = shadows.dispatcher();
        let mut router = Router::new(dispatcher.plan());
        let mut dispatch_described = |request| {
            let mut verdicts = Vec::new();
            router.route(request, &mut verdicts);
            let outcomes = dispatcher.send(&request.flow, verdicts, None).to_vec();
            described(dispatcher.targets(), &outcomes)
        };
        let get = frame_one(b"GET /x?secret=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(dispatch_described(&get), ["a=queued", "b=filtered:method"]);
        shadows.shutdown(Duration::ZERO).await;
        assert_eq!(
            dispatch_described(&get),
            ["a=dropped:shutdown", "b=filtered:method"]
        );
    }

    #[test]
    fn the_share_of_sampled_requests_is_exact_and_zero_is_off() {
        let share = Arc::new(AtomicU32::new(2500));
        let mut log = RequestLog::new(Arc::clone(&share));
        assert_eq!((0..100).filter(|_| log.sampled()).count(), 25);
        share.store(0, Ordering::Relaxed);
        assert_eq!((0..100).filter(|_| log.sampled()).count(), 0);
        share.store(SAMPLE_ALL, Ordering::Relaxed);
        assert_eq!((0..100).filter(|_| log.sampled()).count(), 100);
    }
}
