//! The target's queue of copies to send, bounded in count and in bytes,
//! and sequenced per captured client connection.
//!
//! A client on a keep-alive connection sends a request once v1 answered
//! the one before, and a service that keeps state depends on that order
//! (PUT, then GET, then DELETE). The copies keep it: a job of a flow
//! ([`FlowTag`], the captured connection) is handed to a worker only when
//! no job of its flow is out (taken and not yet [`done`](Queue::done)).
//! Until then it waits in its flow's line, out of the workers' way: other
//! connections' jobs go past it, so a slow connection holds back only its
//! own requests. Jobs without a flow are taken as they come.
//!
//! ```text
//! push ─▶ its flow has a job ready or out? ─no──▶ ready (FIFO) ─▶ pop: a worker sends it
//!                  │ yes                             ▲                       │
//!                  ▼                                 │                 done(flow)
//!           the flow's line ─── its next job, once the one out ended ◀───────┘
//! ```
//!
//! Nothing is ever reordered: a job that cannot wait for its turn is
//! refused at the push (`queue_full`) or, taken too late, dropped by the
//! worker (`expired`), and its flow moves on to the next one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};

use tokio::sync::Notify;

use super::super::reply::Reply;
use crate::capture::FlowId;
use crate::http::BodyReader;
use crate::route::PreparedRequest;

/// The captured client connection a copy belongs to, as a key: a keyed
/// hash of its [`FlowId`], made once per request by the dispatcher so the
/// queue hashes nothing. Two connections with the same tag are merely
/// sequenced together; the key is the process's own random one, so a
/// client cannot choose addresses that collide on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTag(NonZeroU64);

impl FlowTag {
    pub fn of(flow: &FlowId) -> Self {
        static KEYS: LazyLock<std::collections::hash_map::RandomState> =
            LazyLock::new(Default::default);
        Self(NonZeroU64::new(KEYS.hash_one(flow)).unwrap_or(NonZeroU64::MIN))
    }
}

/// The tags are hashes already: the flows' table uses them as they are.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (a tag is one u64); folded all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The target's bounded queue: many workers take from it, each push wakes
/// at most one of them (none when the job must wait for its flow). (A
/// receiver shared behind an async mutex woke a second worker per
/// request, the next in line for the lock.)
pub(super) struct Queue {
    items: std::sync::Mutex<Queued>,
    capacity: usize,
    ready: Notify,
    closed: AtomicBool,
}

/// Why [`Queue::push`] refused a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PushError {
    Full,
    Closed,
}

/// A copy to send, where its answer goes if it is compared, and the
/// connection whose order it keeps (`None`: sent as it comes).
#[derive(Debug)]
pub(super) struct Job {
    pub request: Arc<PreparedRequest>,
    /// This target's reader of a streamed body.
    pub body: Option<BodyReader>,
    pub reply: Option<Reply>,
    pub flow: Option<FlowTag>,
}

/// No slot: the end of a line or of the free list.
const NIL: usize = usize::MAX;

/// What a queue holds. Every container here only grows to the bounds
/// (`capacity` jobs, and flows with a job ready or out), then is reused:
/// a request allocates nothing once the queue has been that full.
#[derive(Default)]
struct Queued {
    /// Jobs a worker may take now, in the order they became takeable.
    ready: VecDeque<Job>,
    /// Every flow with a job ready or out, and its line of jobs waiting
    /// for that one to end.
    flows: HashMap<FlowTag, Line, BuildHasherDefault<TagHasher>>,
    /// The waiting jobs, each linked to the next of its flow; free slots
    /// linked from `free`.
    slots: Vec<Slot>,
    free: usize,
    /// Jobs held, ready and waiting, and their bytes: the bounds.
    len: usize,
    bytes: usize,
}

/// A flow's waiting jobs, oldest first: slot indices, [`NIL`] if none.
#[derive(Clone, Copy)]
struct Line {
    head: usize,
    tail: usize,
}

impl Line {
    const EMPTY: Line = Line {
        head: NIL,
        tail: NIL,
    };
}

enum Slot {
    Waiting { job: Job, next: usize },
    Free { next: usize },
}

/// Bytes of requests one target's queue holds at most, beside its count
/// (`queue_size`): 1024 queued 10 MB bodies would be 10 GB. One request
/// larger than this is still taken when the queue is empty.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

impl Queued {
    fn fits(&self, capacity: usize, len: usize) -> bool {
        self.len < capacity && (self.len == 0 || self.bytes + len <= MAX_QUEUED_BYTES)
    }

    /// Adds `job` where it belongs; whether a worker may take it now.
    fn add(&mut self, job: Job) -> bool {
        self.len += 1;
        self.bytes += job.request.len();
        let Some(tag) = job.flow else {
            self.ready.push_back(job);
            return true;
        };
        match self.flows.entry(tag) {
            Entry::Vacant(idle) => {
                idle.insert(Line::EMPTY);
                self.ready.push_back(job);
                true
            }
            Entry::Occupied(mut busy) => {
                let line = busy.get_mut();
                let slot = Slot::Waiting { job, next: NIL };
                let index = if self.free == NIL {
                    self.slots.push(slot);
                    self.slots.len() - 1
                } else {
                    let index = self.free;
                    let Slot::Free { next } = std::mem::replace(&mut self.slots[index], slot)
                    else {
                        unreachable!("the free list links free slots only");
                    };
                    self.free = next;
                    index
                };
                if line.tail == NIL {
                    line.head = index;
                } else if let Slot::Waiting { next, .. } = &mut self.slots[line.tail] {
                    *next = index;
                }
                line.tail = index;
                false
            }
        }
    }

    fn take_ready(&mut self) -> Option<Job> {
        let job = self.ready.pop_front()?;
        self.len -= 1;
        self.bytes -= job.request.len();
        Some(job)
    }

    /// `flow`'s job out ended: its next one, if any, becomes ready.
    fn next_of(&mut self, flow: FlowTag) {
        let Some(line) = self.flows.get_mut(&flow) else {
            return;
        };
        let index = line.head;
        if index == NIL {
            self.flows.remove(&flow);
            return;
        }
        let freed = Slot::Free { next: self.free };
        self.free = index;
        let Slot::Waiting { job, next } = std::mem::replace(&mut self.slots[index], freed) else {
            unreachable!("a line links waiting slots only");
        };
        line.head = next;
        if next == NIL {
            line.tail = NIL;
        }
        self.ready.push_back(job);
    }
}

impl Queue {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            items: std::sync::Mutex::new(Queued {
                free: NIL,
                ..Queued::default()
            }),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`, or gives it back with why not. Wakes one worker if
    /// the job may be taken now; one that waits for its flow wakes none
    /// (the worker that ends its flow's job takes the queue's next).
    pub(super) fn push(&self, job: Job) -> Result<(), (PushError, Job)> {
        let takeable = {
            let mut items = self.lock();
            if self.closed.load(Relaxed) {
                return Err((PushError::Closed, job));
            }
            if !items.fits(self.capacity, job.request.len()) {
                return Err((PushError::Full, job));
            }
            items.add(job)
        };
        if takeable {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Like [`push`](Self::push), for a job that runs in a task of its own
    /// (a streamed body): if it may go now (its flow has no job out), it is
    /// handed back to be run at once, its flow out until [`done`](Self::done);
    /// otherwise it waits in its flow's line like any job. A burst of
    /// uploads thus never fills the queue: only copies that must wait for
    /// their connection's earlier ones are held.
    pub(super) fn push_or_take(&self, job: Job) -> Result<Option<Job>, (PushError, Job)> {
        let mut items = self.lock();
        if self.closed.load(Relaxed) {
            return Err((PushError::Closed, job));
        }
        let Some(tag) = job.flow else {
            return Ok(Some(job));
        };
        if let Entry::Vacant(idle) = items.flows.entry(tag) {
            idle.insert(Line::EMPTY);
            return Ok(Some(job));
        }
        if !items.fits(self.capacity, job.request.len()) {
            return Err((PushError::Full, job));
        }
        let takeable = items.add(job);
        debug_assert!(!takeable, "its flow has a job out");
        Ok(None)
    }

    /// Whether [`push`](Self::push) would take a request of `len` bytes
    /// now: the count and the bytes bound it checks.
    pub(super) fn has_room_for(&self, len: usize) -> bool {
        self.lock().fits(self.capacity, len)
    }

    /// The oldest job a worker may take now. A job of a flow is out from
    /// here until [`done`](Self::done) is called with its flow.
    pub(super) fn try_pop(&self) -> Option<Job> {
        self.lock().take_ready()
    }

    /// The next job to send; `None` once the queue is closed and nothing
    /// is ready. Jobs still waiting for their flow then are taken by the
    /// workers whose jobs they wait for (each takes from the queue again
    /// after [`done`](Self::done)), or given up by [`drain`](Self::drain).
    pub(super) async fn pop(&self) -> Option<Job> {
        loop {
            // Registered before looking, so a push in between is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = self.try_pop() {
                return Some(job);
            }
            if self.closed.load(Relaxed) {
                return None;
            }
            notified.await;
        }
    }

    /// The job of `flow` that was out ended (answered, failed, dropped or
    /// expired): the flow's next job, if any, may be taken. Wakes no one:
    /// the caller, a worker, takes from the queue next (this job or an
    /// older ready one, whose own push woke a worker for it).
    pub(super) fn done(&self, flow: FlowTag) {
        self.lock().next_of(flow);
    }

    /// [`done`](Self::done) from outside the workers (a streamed request's
    /// task): the flow's next job, if one became ready, wakes a worker.
    pub(super) fn done_elsewhere(&self, flow: FlowTag) {
        let woke = {
            let mut items = self.lock();
            let before = items.ready.len();
            items.next_of(flow);
            items.ready.len() > before
        };
        if woke {
            self.ready.notify_one();
        }
    }

    /// Takes every job still held, ready or waiting (a shutdown gives them
    /// up); the flows start afresh.
    pub(super) fn drain(&self) -> Vec<Job> {
        let mut items = self.lock();
        let mut jobs: Vec<Job> = items.ready.drain(..).collect();
        let slots = std::mem::take(&mut items.slots);
        jobs.extend(slots.into_iter().filter_map(|slot| match slot {
            Slot::Waiting { job, .. } => Some(job),
            Slot::Free { .. } => None,
        }));
        items.flows.clear();
        items.free = NIL;
        items.len = 0;
        items.bytes = 0;
        jobs
    }

    /// No more pushes; workers take what is left, then end.
    pub(super) fn close(&self) {
        let _items = self.lock();
        self.closed.store(true, Relaxed);
        self.ready.notify_waiters();
    }
}
