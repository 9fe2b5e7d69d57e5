//! The agent's clock ([`monotonic_ns`], the kernel program's clock) and its
//! one periodic wakeup. The capture loop drains the ring on
//! every tick (`capture::DRAIN_INTERVAL`) and then calls [`tick`], which
//! also services the shadow connections waiting for a response
//! (`shadow::stream`): responses that arrived during the last period are
//! all read in the same pass.
//!
//! Why: a thread's wakeup costs tens of microseconds of CPU on a VM, and
//! with every shadow socket in epoll each response woke the agent once; on
//! the tick the agent wakes 1000 times a second whatever the rate (figures
//! in docs/design-notes.md).
//!
//! While no [`Driver`] exists (the capture sleeps or is not running: unit
//! tests, the shutdown drain) there are no ticks, and the streams use
//! ordinary readiness instead; dropping the last driver wakes every waiter
//! so that none waits for a tick that will not come.

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

struct State {
    drivers: usize,
    waiters: Vec<Waker>,
}

static STATE: Mutex<State> = Mutex::new(State {
    drivers: 0,
    waiters: Vec::new(),
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether something ticks.
pub fn is_driven() -> bool {
    state().drivers > 0
}

/// Whether a connection waits for the next tick (the capture then keeps
/// ticking).
pub fn has_waiters() -> bool {
    !state().waiters.is_empty()
}

/// Parks `waker` until the next tick; `false` (nothing parked) when no
/// driver ticks.
pub fn wait_for_tick(waker: &Waker) -> bool {
    let mut state = state();
    if state.drivers == 0 {
        return false;
    }
    state.waiters.push(waker.clone());
    true
}

/// Wakes everything parked since the last tick.
pub fn tick() {
    let mut state = state();
    // Waking only schedules the task (it never polls it here), so the lock
    // is not taken again underneath; `drain` keeps the allocation.
    for waker in state.waiters.drain(..) {
        waker.wake();
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Held by whoever calls [`tick`] periodically.
pub struct Driver(());

impl Driver {
    pub fn new() -> Self {
        state().drivers += 1;
        Driver(())
    }
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut state = state();
        state.drivers -= 1;
        if state.drivers == 0 {
            for waker in state.waiters.drain(..) {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    // One test for the whole module: the state is process-wide.
    #[test]
    fn waiters_are_woken_by_a_tick_and_by_the_last_driver_leaving() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let driver = Driver::new();
        assert!(is_driven());
        assert!(wait_for_tick(&waker));
        tick();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        tick();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once per wait");
        assert!(wait_for_tick(&waker));
        drop(driver);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "the last driver wakes all"
        );
        if !is_driven() {
            assert!(!wait_for_tick(&waker), "nothing parks without a driver");
        }
    }
}

/// A UTC calendar time, for the names and timestamps the agent writes
/// (no time zone database needed).
#[derive(Debug, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

impl UtcTime {
    /// The calendar time `since_epoch` after 1970-01-01 00:00:00 UTC.
    pub fn of(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let of_day = secs % 86_400;
        Self {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
        }
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01: days are
/// shifted to a calendar that starts on March 1st of year 0, so that the
/// leap day ends each 4-, 100- and 400-year cycle.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097); // 400-year cycles
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}
