//! The exchanges waiting for their answers, and the thread that judges
//! them once complete.
//!
//! An exchange is one compared request: opened by the capture task before
//! the request is dispatched, it collects v1's response (from the capture's
//! response framing) and one answer, or the reason there is none, from
//! every target that was sent a copy (see `shadow::Reply`). Complete, or
//! past its timeout, it goes to the compare thread, whose `judge` does the
//! diff, the noise, the report, the diff log. The capture task and the
//! shadows' workers only
//! take a short lock here; decoding and diffing happen on the compare
//! thread, which sleeps while nothing waits (no periodic wakeup).
//!
//! Memory is bounded twice: at most [`MAX_PENDING`] exchanges wait, and
//! the answers they hold stay under [`MAX_HELD_BYTES`]. What does not fit
//! is counted (`overflow`), never queued without bound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

use super::config::{CompareConfig, DEFAULT_TIMEOUT};
use super::exchange::{Exchange, Missing, RequestMeta, V1Response};
use super::judge::Judge;
use super::report::{CompareReport, Durations};
use super::verdict::NotCompared;
use crate::clock::monotonic_ns;
use crate::shadow::{AnswerSink, Answered, NoAnswer};

/// Most exchanges waiting for their answers at once.
pub const MAX_PENDING: usize = 65_536;
/// Most bytes of answers the waiting exchanges hold together.
pub const MAX_HELD_BYTES: usize = 256 << 20;
/// How often the compare thread looks for complete exchanges while some
/// are pending: judging waits up to this long, and costs at most 1/TICK
/// wakeups a second, not one per exchange.
const TICK: Duration = Duration::from_millis(20);

/// The comparison; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The compare thread waits here for complete exchanges.
    wake: Condvar,
    judge: Mutex<Judge>,
}

#[derive(Default)]
struct State {
    next_tag: u64,
    pending: HashMap<u64, Exchange>,
    /// (deadline, tag) in the order opened (one timeout for all).
    deadlines: VecDeque<(u64, u64)>,
    held_bytes: usize,
    /// Complete exchanges for the compare thread.
    done: Vec<Exchange>,
    timeout_ns: u64,
    stopping: bool,
    /// The compare thread waits without a timeout (nothing pending): only
    /// then does it need a notification. Otherwise it looks every [`TICK`]
    /// on its own, so a busy agent pays no wakeup per exchange.
    asleep: bool,
    /// Compared requests that found no room, per target, for the compare
    /// thread to count (the capture task never waits for the report).
    overflowed: HashMap<Arc<str>, u64>,
}

impl Engine {
    /// Starts the compare thread.
    pub fn start(config: CompareConfig) -> std::io::Result<Engine> {
        let judge = Judge::new(&config)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                timeout_ns: timeout_ns(&config),
                ..State::default()
            }),
            wake: Condvar::new(),
            judge: Mutex::new(judge),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("mirror-compare".into())
            .spawn(move || run(&thread_shared))?;
        Ok(Engine { shared })
    }

    /// A new configuration (SIGHUP): targets, roles, rules.
    pub fn reconfigure(&self, config: &CompareConfig) {
        self.shared.state().timeout_ns = timeout_ns(config);
        let mut judge = self.shared.judge();
        if let Err(error) = judge.reconfigure(config) {
            warn!(%error, "the diff log cannot be opened; it keeps its old destination");
        }
    }

    /// SIGHUP: the diff log's file is opened again by its path (after a
    /// `mv`, a new file), with or without a new configuration.
    pub fn reopen_diff_log(&self) {
        if let Err(error) = self.shared.judge().reopen_log() {
            warn!(%error, "the diff log cannot be opened again; it keeps its old file");
        }
    }

    /// Where the targets' answers go.
    pub fn answer_sink(&self) -> Arc<dyn AnswerSink> {
        self.shared.clone()
    }

    /// Opens an exchange for a request about to be dispatched; `None` when
    /// too many wait (the caller counts it with [`Engine::overflowed`]).
    /// Its answers are waited for `compare_timeout` from now.
    pub fn open(&self, meta: RequestMeta) -> Option<u64> {
        let tag = self.open_unarmed(meta)?;
        self.arm(tag);
        Some(tag)
    }

    /// [`Engine::open`] for a request whose body is still arriving (it
    /// streams): its answers cannot come before the body's end, so the
    /// timeout starts at [`Engine::arm`], called then.
    pub fn open_unarmed(&self, meta: RequestMeta) -> Option<u64> {
        let mut state = self.shared.state();
        if state.pending.len() >= MAX_PENDING || state.held_bytes >= MAX_HELD_BYTES {
            return None;
        }
        state.next_tag += 1;
        let tag = state.next_tag;
        // v1's request head is held until judged (the additions are read
        // from it): counted like the answers.
        let mut exchange = Exchange::new(meta);
        exchange.held = exchange.meta.head.len();
        state.held_bytes += exchange.held;
        state.pending.insert(tag, exchange);
        Some(tag)
    }

    /// The answers of exchange `tag` are waited for `compare_timeout` from
    /// now (one timeout for all, so the deadlines stay in order).
    pub fn arm(&self, tag: u64) {
        let mut state = self.shared.state();
        if !state.pending.contains_key(&tag) {
            return;
        }
        let deadline = monotonic_ns() + state.timeout_ns;
        state.deadlines.push_back((deadline, tag));
        // Asleep, the compare thread must learn of this deadline.
        self.shared.wake_if_asleep(&state);
    }

    /// The targets that were sent a copy of exchange `tag` (each answers
    /// through the sink), and the heads they were sent where mirror
    /// rewrote them. None: nothing to compare, the exchange is closed.
    pub fn expect(&self, tag: u64, targets: Vec<Arc<str>>, sent_heads: Vec<(Arc<str>, Bytes)>) {
        let mut state = self.shared.state();
        if targets.is_empty() {
            if let Some(p) = state.pending.remove(&tag) {
                state.held_bytes -= p.held;
            }
            return;
        }
        let held: usize = sent_heads.iter().map(|(_, head)| head.len()).sum();
        let Some(p) = state.pending.get_mut(&tag) else {
            return;
        };
        p.expected = Some(targets);
        p.sent_heads = sent_heads;
        p.held += held;
        state.held_bytes += held;
        self.shared.finish_if_complete(&mut state, tag);
    }

    /// v1's response to exchange `tag`, or why it will not come.
    pub fn v1(&self, tag: u64, response: Result<V1Response, NotCompared>) {
        let mut state = self.shared.state();
        let held = response.as_ref().map_or(0, |r| r.answer.held_bytes());
        let over = state.held_bytes + held > MAX_HELD_BYTES;
        let Some(p) = state.pending.get_mut(&tag) else {
            return;
        };
        if p.v1.is_some() {
            return;
        }
        p.v1 = Some(if over {
            Err(NotCompared::Overflow)
        } else {
            p.held += held;
            response
        });
        if !over {
            state.held_bytes += held;
        }
        self.shared.finish_if_complete(&mut state, tag);
    }

    /// A compared request that found no room: counted for each target that
    /// was sent a copy.
    pub fn overflowed(&self, targets: &[Arc<str>]) {
        let mut state = self.shared.state();
        for target in targets {
            *state.overflowed.entry(target.clone()).or_default() += 1;
        }
        self.shared.wake_if_asleep(&state);
    }

    /// The report now.
    pub fn report(&self) -> CompareReport {
        self.shared.judge().report()
    }

    /// Per target, the latency histograms of the compared pairs.
    pub fn durations(&self) -> Vec<Durations> {
        self.shared.judge().durations()
    }

    /// One line per compared target: the verdict so far.
    pub fn verdict_lines(&self) -> Vec<String> {
        self.shared.judge().verdict_lines()
    }

    /// Differing exchanges the diff log left out (sampling, rate limit).
    pub fn diff_log_suppressed(&self) -> u64 {
        self.shared.judge().diff_log_suppressed()
    }

    /// At exit: the exchanges still waiting are judged with what they have
    /// (a missing answer counts as `timeout`), and the thread ends.
    pub fn finish(&self) {
        let mut state = self.shared.state();
        let tags: Vec<u64> = state.pending.keys().copied().collect();
        for tag in tags {
            if let Some(p) = state.pending.remove(&tag) {
                state.held_bytes -= p.held;
                state.done.push(p);
            }
        }
        state.deadlines.clear();
        state.stopping = true;
        drop(state);
        self.shared.wake.notify_all();
        // Judge what is left here, so the final counts include it.
        let batch = {
            let mut state = self.shared.state();
            (
                std::mem::take(&mut state.done),
                std::mem::take(&mut state.overflowed),
            )
        };
        judge_batch(&self.shared, batch);
        self.shared.judge().flush();
    }
}

fn timeout_ns(config: &CompareConfig) -> u64 {
    let longest = config
        .targets
        .iter()
        .map(|t| t.timeout)
        .max()
        .unwrap_or(DEFAULT_TIMEOUT);
    u64::try_from(longest.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn judge(&self) -> MutexGuard<'_, Judge> {
        self.judge.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish_if_complete(&self, state: &mut State, tag: u64) {
        if state.pending.get(&tag).is_some_and(Exchange::complete)
            && let Some(p) = state.pending.remove(&tag)
        {
            state.held_bytes -= p.held;
            state.done.push(p);
            self.wake_if_asleep(state);
        }
    }

    fn wake_if_asleep(&self, state: &State) {
        if state.asleep {
            self.wake.notify_one();
        }
    }
}

impl AnswerSink for Shared {
    fn answered(&self, tag: u64, target: &str, result: Result<Answered, NoAnswer>) {
        let mut state = self.state();
        let held = result.as_ref().map_or(0, |a| a.answer.held_bytes());
        let over = state.held_bytes + held > MAX_HELD_BYTES;
        let Some(p) = state.pending.get_mut(&tag) else {
            return;
        };
        let result = match result {
            Ok(_) if over => Err(Missing::NotCompared(NotCompared::Overflow)),
            Ok(answered) => {
                p.held += held;
                Ok(answered)
            }
            // Sent, then failed: the target's verdict (invariant 9).
            Err(NoAnswer {
                failure: Some(failure),
                ..
            }) => Err(Missing::Failed(failure)),
            // Never reached the target: nothing to judge it on.
            Err(NoAnswer { failure: None, .. }) => {
                Err(Missing::NotCompared(NotCompared::TargetFailed))
            }
        };
        let added = if result.is_ok() { held } else { 0 };
        p.answers.push((target.into(), result));
        state.held_bytes += added;
        self.finish_if_complete(&mut state, tag);
    }
}

/// The compare thread: judges complete exchanges, and those past their
/// deadline with what they have.
fn run(shared: &Shared) {
    loop {
        let batch = {
            let mut state = shared.state();
            loop {
                expire(&mut state);
                if !state.done.is_empty() || !state.overflowed.is_empty() || state.stopping {
                    break;
                }
                state = match state.deadlines.front() {
                    None => {
                        state.asleep = true;
                        let mut state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                        state.asleep = false;
                        state
                    }
                    Some(&(deadline, _)) => {
                        let wait = Duration::from_nanos(deadline.saturating_sub(monotonic_ns()));
                        shared
                            .wake
                            .wait_timeout(state, wait.min(TICK))
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
            if state.stopping {
                return;
            }
            (
                std::mem::take(&mut state.done),
                std::mem::take(&mut state.overflowed),
            )
        };
        judge_batch(shared, batch);
    }
}

fn judge_batch(shared: &Shared, (done, overflowed): (Vec<Exchange>, HashMap<Arc<str>, u64>)) {
    let mut judge = shared.judge();
    for (target, count) in overflowed {
        for _ in 0..count {
            judge.record_unjudged(&target, NotCompared::Overflow);
        }
    }
    for exchange in done {
        judge.judge(exchange);
    }
}

/// Moves the exchanges past their deadline to `done`.
fn expire(state: &mut State) {
    let now = monotonic_ns();
    while let Some(&(deadline, tag)) = state.deadlines.front() {
        if deadline > now {
            break;
        }
        state.deadlines.pop_front();
        if let Some(p) = state.pending.remove(&tag) {
            state.held_bytes -= p.held;
            state.done.push(p);
        }
    }
    // Tags judged already leave stale deadlines behind; keep the queue
    // from growing with them.
    if state.deadlines.len() > 2 * state.pending.len() + 1024 {
        let pending = &state.pending;
        state.deadlines.retain(|(_, tag)| pending.contains_key(tag));
    }
}

#[cfg(test)]
mod tests;
