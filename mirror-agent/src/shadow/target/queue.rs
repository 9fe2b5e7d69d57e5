//! The target's queue of copies to send, bounded in count and in bytes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::Notify;

use super::super::reply::Reply;
use crate::route::PreparedRequest;

/// The target's bounded queue: many workers take from it, each request
/// wakes at most one of them. (A receiver shared behind an async mutex
/// woke a second worker per request, the next in line for the lock.)
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

/// What a queue holds, and how many bytes of requests that is.
#[derive(Default)]
pub(super) struct Queued {
    requests: VecDeque<Job>,
    bytes: usize,
}

/// A copy to send, and where its answer goes if it is compared.
#[derive(Debug)]
pub(super) struct Job {
    pub request: Arc<PreparedRequest>,
    pub reply: Option<Reply>,
}

/// Bytes of requests one target's queue holds at most, beside its count
/// (`queue_size`): 1024 queued 10 MB bodies would be 10 GB. One request
/// larger than this is still taken when the queue is empty.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

impl Queue {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            items: std::sync::Mutex::new(Queued::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`, or gives it back with why not.
    pub(super) fn push(&self, job: Job) -> Result<(), (PushError, Job)> {
        {
            let mut items = self.lock();
            if self.closed.load(Relaxed) {
                return Err((PushError::Closed, job));
            }
            let len = job.request.len();
            if items.requests.len() >= self.capacity
                || (!items.requests.is_empty() && items.bytes + len > MAX_QUEUED_BYTES)
            {
                return Err((PushError::Full, job));
            }
            items.bytes += len;
            items.requests.push_back(job);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Whether [`push`](Self::push) would take a request of `len` bytes
    /// now: the count and the bytes bound it checks.
    pub(super) fn has_room_for(&self, len: usize) -> bool {
        let items = self.lock();
        items.requests.len() < self.capacity
            && (items.requests.is_empty() || items.bytes + len <= MAX_QUEUED_BYTES)
    }

    pub(super) fn try_pop(&self) -> Option<Job> {
        let mut items = self.lock();
        let job = items.requests.pop_front()?;
        items.bytes -= job.request.len();
        Some(job)
    }

    /// The next request; `None` once the queue is closed and empty.
    pub(super) async fn pop(&self) -> Option<Job> {
        loop {
            // Registered before looking, so a push in between is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(request) = self.try_pop() {
                return Some(request);
            }
            if self.closed.load(Relaxed) {
                return None;
            }
            notified.await;
        }
    }

    /// No more pushes; workers take what is left, then end.
    pub(super) fn close(&self) {
        let _items = self.lock();
        self.closed.store(true, Relaxed);
        self.ready.notify_waiters();
    }
}
