//! Waiting for a condition that settles shortly after the event waited for.

use std::time::{Duration, Instant};

/// Polls `condition` every few milliseconds until it holds or `timeout`
/// passed; returns whether it held. For state that settles shortly after
/// the event a caller waited for (a packet still in a softirq, a link
/// released at process exit, a request log line still to be written).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_says_whether_the_condition_came_to_hold() {
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert!(!wait_until(Duration::from_millis(20), || false));
    }
}
