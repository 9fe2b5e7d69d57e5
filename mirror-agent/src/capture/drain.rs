//! The capture loop: drains the ring into the sink while the agent runs,
//! and sleeps when there is nothing to do.
//!
//! * Awake: a 1 ms timer ([`DRAIN_INTERVAL`](super::DRAIN_INTERVAL)) drains
//!   the ring and services the shadow connections (`crate::clock`); the
//!   kernel wakes the agent early only when the ring fills past another
//!   1/16. Many records per wakeup at high rates.
//! * Asleep: after [`IDLE_TICKS`] ticks without a record and with no shadow
//!   connection waiting for a tick, the agent tells the kernel program it
//!   sleeps ([`MAP_WAKE`](mirror_common::MAP_WAKE)), drains once more (a
//!   record written before the kernel saw that would wake no one), stops
//!   the tick and blocks. The program wakes it for the first record it
//!   writes; the timer is armed only for the sink's next deadline (a hole
//!   or idle timeout of the flow table). An idle agent costs nothing.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

use tokio::io::{Interest, unix::AsyncFd};
use tracing::debug;

use super::{Capture, CaptureError, EventSink};
use crate::clock;

/// Ticks in a row without records before the agent sleeps. One: at 200
/// requests a second four made five wakeups per request, one makes two (the
/// record's, and the tick that reads the shadow's answer); under load every
/// tick drains something and the agent never sleeps.
pub const IDLE_TICKS: u32 = 1;

impl Capture {
    /// Drains the ring until `shutdown` completes, then detaches and drains
    /// what is left. See the [module docs](self).
    pub async fn run(
        &mut self,
        sink: &mut impl EventSink,
        shutdown: impl std::future::Future<Output = ()>,
        tick: Duration,
    ) -> Result<(), CaptureError> {
        let raw_fd = self.ring.as_raw_fd();
        // SAFETY: the fd belongs to `self.ring`, which outlives `ready`
        // (dropped at the end of this function, before self can be).
        let ready = unsafe { AsyncFd::register_with_interest(raw_fd, Interest::READABLE) }
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        let timer = Timer::new()?;
        // SAFETY: the fd belongs to `timer`, which outlives `fires`.
        let fires =
            unsafe { AsyncFd::register_with_interest(timer.0.as_raw_fd(), Interest::READABLE) }
                .map_err(|err| std::io::Error::other(err.to_string()))?;
        let mut state = State::Awake {
            _clock: clock::Driver::new(),
            idle_ticks: 0,
        };
        timer.every(tick)?;
        tokio::pin!(shutdown);
        loop {
            let drained = tokio::select! {
                () = &mut shutdown => break,
                guard = ready.readable() => {
                    let mut guard = guard?;
                    let drained = self.drain(sink);
                    guard.clear_ready();
                    if matches!(state, State::Asleep) {
                        // The program woke us (and said so in the map).
                        state = self.wake(sink, &timer, tick)?;
                        continue;
                    }
                    drained
                }
                guard = fires.readable() => {
                    let mut guard = guard?;
                    timer.acknowledge();
                    guard.clear_ready();
                    let drained = self.drain(sink);
                    if matches!(state, State::Asleep) {
                        if drained > 0 {
                            // Records came (the program may have cleared
                            // the flag for them already): awake.
                            state = self.wake(sink, &timer, tick)?;
                        } else {
                            // A deadline of the sink's: asleep still,
                            // until the next one.
                            timer.at(sink.next_deadline())?;
                        }
                        continue;
                    }
                    drained
                }
            };
            // Awake: the shadow connections are serviced on the same
            // wakeup, after the requests of the tick are queued.
            clock::tick();
            if let State::Awake { idle_ticks, .. } = &mut state {
                if drained > 0 || clock::has_waiters() {
                    *idle_ticks = 0;
                } else {
                    *idle_ticks += 1;
                }
                if *idle_ticks >= IDLE_TICKS && self.sleep(sink, &timer)? {
                    state = State::Asleep;
                }
            }
        }
        drop(state);
        drop(ready);
        drop(fires);
        // Awake for good: no record may wait for a wakeup now.
        self.set_asleep(false);
        // Production first: stop copying, then empty the ring.
        self.detach();
        self.drain(sink);
        Ok(())
    }

    /// Tries to go to sleep: `false` (and still awake) when records came
    /// in meanwhile.
    fn sleep(&mut self, sink: &mut impl EventSink, timer: &Timer) -> Result<bool, CaptureError> {
        self.set_asleep(true);
        // Records written before the program saw the flag woke no one.
        if self.drain(sink) > 0 {
            self.set_asleep(false);
            return Ok(false);
        }
        sink.on_sleep(true);
        timer.at(sink.next_deadline())?;
        debug!("capture asleep");
        Ok(true)
    }

    /// Back to the tick after the program woke us.
    fn wake(
        &mut self,
        sink: &mut impl EventSink,
        timer: &Timer,
        tick: Duration,
    ) -> Result<State, CaptureError> {
        timer.every(tick)?;
        sink.on_sleep(false);
        let state = State::Awake {
            _clock: clock::Driver::new(),
            idle_ticks: 0,
        };
        // The requests just drained may wait for a tick already.
        clock::tick();
        Ok(state)
    }

    /// Tells the program whether the agent sleeps. Failing to say so only
    /// costs latency (the next record waits for a deadline or the 1/16
    /// mark), never data: logged, not fatal.
    pub(super) fn set_asleep(&mut self, asleep: bool) {
        let value = if asleep {
            mirror_common::AGENT_ASLEEP
        } else {
            mirror_common::AGENT_AWAKE
        };
        if let Err(err) = self.wake_flag.set(0, value, 0) {
            debug!(error = %err, "cannot update the wake flag");
        }
    }
}

enum State {
    /// The tick runs; it drives the shadow connections while the `Driver`
    /// lives (dropping it hands them to the reactor).
    Awake {
        _clock: clock::Driver,
        idle_ticks: u32,
    },
    /// Nothing runs until a record or the sink's deadline.
    Asleep,
}

/// The capture's timer: a CLOCK_MONOTONIC timerfd, periodic while awake
/// (tokio's timers round every wait up to a whole millisecond, so a 1 ms
/// interval ticked 1 to 2 ms apart; the timerfd ticks every period, hrtimer,
/// no slack), one-shot at a deadline or disarmed while asleep.
struct Timer(OwnedFd);

impl Timer {
    fn new() -> std::io::Result<Self> {
        // SAFETY: a plain syscall; the fd is owned as soon as it exists.
        unsafe {
            let fd = libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Timer(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// Every `period` from now.
    fn every(&self, period: Duration) -> std::io::Result<()> {
        let period = timespec(period.max(Duration::from_nanos(1)));
        self.set(0, period, period)
    }

    /// Once at `deadline_ns` (CLOCK_MONOTONIC), or never.
    fn at(&self, deadline_ns: Option<u64>) -> std::io::Result<()> {
        let zero = timespec(Duration::ZERO);
        match deadline_ns {
            // 0 would disarm: the earliest real instant is 1 ns.
            Some(ns) => self.set(
                libc::TFD_TIMER_ABSTIME,
                timespec(Duration::from_nanos(ns.max(1))),
                zero,
            ),
            None => self.set(0, zero, zero),
        }
    }

    fn set(
        &self,
        flags: i32,
        value: libc::timespec,
        interval: libc::timespec,
    ) -> std::io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: interval,
            it_value: value,
        };
        // SAFETY: our own timerfd and a valid itimerspec.
        if unsafe { libc::timerfd_settime(self.0.as_raw_fd(), flags, &spec, std::ptr::null_mut()) }
            != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the expiration count, so that the next expiry wakes us again.
    fn acknowledge(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a u64 from our own timerfd; EAGAIN
        // (nothing expired) is fine.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(timer: &Timer) -> bool {
        let mut fds = libc::pollfd {
            fd: timer.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut fds, 1, 50) > 0 }
    }

    #[test]
    fn the_timer_ticks_fires_once_at_a_deadline_and_disarms() {
        let timer = Timer::new().unwrap();
        timer.every(Duration::from_millis(1)).unwrap();
        assert!(pending(&timer));
        timer.acknowledge();
        assert!(pending(&timer), "periodic");
        timer.at(Some(clock::monotonic_ns() + 5_000_000)).unwrap();
        timer.acknowledge();
        assert!(pending(&timer), "the deadline came");
        timer.acknowledge();
        assert!(!pending(&timer), "once");
        timer.at(Some(1)).unwrap();
        assert!(pending(&timer), "a past deadline fires at once");
        timer.acknowledge();
        timer.at(None).unwrap();
        assert!(!pending(&timer), "disarmed");
    }
}
