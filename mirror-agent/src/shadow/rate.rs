//! `--rate-limit`: at most N requests a second accepted for one target, a
//! token bucket checked where the request is accepted, before it is
//! queued; the excess is dropped (`rate_limited`). The bucket holds a tenth
//! of a second's worth (at least one request), so a burst passes only that
//! far above the rate, and an idle target does not save up for later.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` held.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    /// Tokens held and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// `per_second` requests a second (at least 1), a burst of a tenth of
    /// that (at least 1); the bucket starts full.
    pub fn new(per_second: u32) -> RateLimit {
        let rate = f64::from(per_second.max(1));
        let burst = (rate / 10.0).max(1.0);
        RateLimit {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token if there is one: the request may go.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        // A clock read before another thread's (`now` < `last`) adds nothing.
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = (*last).max(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate() {
        let limit = RateLimit::new(100);
        let start = Instant::now();
        let burst = (0..50).filter(|_| limit.try_take_at(start)).count();
        assert_eq!(burst, 10, "a tenth of a second's worth at once");
        // 2,000 offered a second for 5 s, 1 every 0.5 ms.
        let passed = (1..=10_000)
            .filter(|i| limit.try_take_at(start + Duration::from_micros(500 * i)))
            .count();
        assert!((499..=501).contains(&passed), "{passed} in 5 s at 100/s");
    }

    #[test]
    fn an_idle_target_saves_up_no_more_than_the_burst() {
        let limit = RateLimit::new(20);
        let start = Instant::now();
        assert!(limit.try_take_at(start));
        assert!(limit.try_take_at(start));
        assert!(!limit.try_take_at(start), "a burst of 2");
        let later = start + Duration::from_secs(60);
        let after_idle = (0..10).filter(|_| limit.try_take_at(later)).count();
        assert_eq!(after_idle, 2);
        let one = RateLimit::new(1);
        let start = Instant::now();
        assert!(one.try_take_at(start) && !one.try_take_at(start));
        assert!(!one.try_take_at(start + Duration::from_millis(900)));
        assert!(one.try_take_at(start + Duration::from_secs(1)));
    }
}
