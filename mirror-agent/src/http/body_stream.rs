//! A request body that goes on as it arrives: the framer writes each piece
//! of it once ([`BodyWriter`]), every target that sends the request reads
//! it at its own pace ([`BodyReader`], one cursor each), and a piece is
//! freed once every reader is past it.
//!
//! The capture never waits for a reader. A reader that falls more than
//! [`StreamLimits::lag`] bytes behind the client (a shadow that reads
//! slowly, a copy still queued behind its connection's earlier requests)
//! is cut: it gets [`StreamError::Behind`] and its request is dropped for
//! that target, never half sent and then reused. All the streams together
//! hold at most [`StreamBudget`] bytes of pieces: a piece that would go
//! over it cuts the readers of its own stream that still need it, so the
//! agent's memory is bounded by the budget, not by uploads.
//!
//! A body whose rest the capture loses (a gap, a reset, an idle client)
//! is aborted: every reader gets [`StreamError::Lost`] and closes its
//! connection mid-body.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use bytes::Bytes;

/// Bytes of pieces all streams hold at once, at most (see the module docs).
#[derive(Debug)]
pub struct StreamBudget {
    held: AtomicUsize,
    max: usize,
}

impl StreamBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }
}

/// When a body streams, how far a reader may fall behind, and the budget
/// the streams share.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    /// A body up to this many bytes is gathered whole (most requests: one
    /// piece, no stream); a larger one streams. Also each connection's
    /// most held body bytes.
    pub after: u64,
    pub lag: usize,
    pub budget: Arc<StreamBudget>,
}

/// Bodies over 64 KiB stream; a reader may be 1 MiB behind; 32 MiB of
/// pieces in all.
impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            after: 64 << 10,
            lag: 8 << 20,
            budget: StreamBudget::new(32 << 20),
        }
    }
}

/// Equal limits (the same sizes; the budget's use is not configuration).
impl PartialEq for StreamLimits {
    fn eq(&self, other: &Self) -> bool {
        (self.after, self.lag, self.budget.max) == (other.after, other.lag, other.budget.max)
    }
}

impl Eq for StreamLimits {}

/// Why a reader gets no more of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// This reader fell too far behind the client (or the budget ran out
    /// while it still needed the piece): cut.
    Behind,
    /// The capture lost the rest of the body: nobody gets it.
    Lost,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamError::Behind => "the body's reader fell behind the client",
            StreamError::Lost => "the capture lost the rest of the body",
        })
    }
}

impl std::error::Error for StreamError {}

/// What a read returns.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The next pieces, in order (at least one).
    Data(Vec<Bytes>),
    /// The body ended; its raw trailer lines (chunked; empty otherwise).
    End(Bytes),
}

/// Most bytes one read hands out (one vectored write's worth).
const MAX_READ: usize = 256 << 10;

#[derive(Debug)]
struct Slot {
    cursor: u64,
    /// Cut for being behind; dropped readers are cut too.
    cut: bool,
    waker: Option<Waker>,
}

#[derive(Debug)]
enum Ending {
    Open,
    Finished(Bytes),
    Aborted,
}

struct State {
    /// Each piece with its offset in the body.
    pieces: VecDeque<(u64, Bytes)>,
    /// Bytes written so far.
    end: u64,
    /// Bytes of `pieces`.
    held: usize,
    readers: Vec<Slot>,
    ending: Ending,
    /// Called once the body ended or was lost (see [`BodyStream::on_end`]).
    on_end: Vec<Box<dyn FnOnce() + Send>>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("end", &self.end)
            .field("held", &self.held)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    limits: StreamLimits,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let held = self.state.get_mut().map_or(0, |s| s.held);
        self.limits.budget.held.fetch_sub(held, Relaxed);
    }
}

impl State {
    fn live(&self) -> impl Iterator<Item = &Slot> {
        self.readers.iter().filter(|r| !r.cut)
    }

    /// Frees the pieces every live reader is past; returns the wakers of
    /// readers to wake.
    fn trim(&mut self, budget: &StreamBudget) {
        let floor = self.live().map(|r| r.cursor).min().unwrap_or(self.end);
        let mut freed = 0;
        while let Some((at, piece)) = self.pieces.front() {
            if at + piece.len() as u64 > floor {
                break;
            }
            freed += piece.len();
            self.pieces.pop_front();
        }
        self.held -= freed;
        budget.held.fetch_sub(freed, Relaxed);
    }

    fn cut(slot: &mut Slot, wake: &mut Vec<Waker>) {
        slot.cut = true;
        wake.extend(slot.waker.take());
    }
}

/// The body of one request, as the stages after framing see it: a handle
/// to make readers from (cheap to clone).
#[derive(Clone)]
pub struct BodyStream {
    shared: Arc<Shared>,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyStream")
    }
}

/// Two handles are equal when they are the same stream.
impl PartialEq for BodyStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for BodyStream {}

impl BodyStream {
    /// A new stream: the framer's writer and the handle it delivers.
    pub fn new(limits: StreamLimits) -> (BodyWriter, BodyStream) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pieces: VecDeque::new(),
                end: 0,
                held: 0,
                readers: Vec::new(),
                ending: Ending::Open,
                on_end: Vec::new(),
            }),
            limits,
        });
        (
            BodyWriter {
                shared: shared.clone(),
            },
            BodyStream { shared },
        )
    }

    /// Calls `f` once the body ended or was lost (at once if it has): what
    /// waits for the request's end, e.g. the comparison's timeout.
    pub fn on_end(&self, f: Box<dyn FnOnce() + Send>) {
        let mut state = self.shared.lock();
        if matches!(state.ending, Ending::Open) {
            state.on_end.push(f);
        } else {
            drop(state);
            f();
        }
    }

    /// A reader from the body's first byte. Made before any piece is
    /// written (when the request is routed); a reader made later than the
    /// first piece's release is cut from the start.
    pub fn reader(&self) -> BodyReader {
        let mut state = self.shared.lock();
        let cut = state.pieces.front().map_or(state.end, |(at, _)| *at) > 0;
        state.readers.push(Slot {
            cursor: 0,
            cut,
            waker: None,
        });
        BodyReader {
            shared: self.shared.clone(),
            id: state.readers.len() - 1,
        }
    }
}

/// The framer's end of a stream. Dropped before [`finish`](Self::finish),
/// the body is lost for every reader.
#[derive(Debug)]
pub struct BodyWriter {
    shared: Arc<Shared>,
}

impl BodyWriter {
    /// Whether a reader still wants the body (if not, the rest can be
    /// skipped without copying).
    pub fn wanted(&self) -> bool {
        self.shared.lock().live().next().is_some()
    }

    /// The next bytes of the body. Copied once, shared by every reader;
    /// readers too far behind are cut. Returns [`Self::wanted`].
    pub fn push(&mut self, data: &[u8]) -> bool {
        let mut wake = Vec::new();
        let wanted = {
            let limits = &self.shared.limits;
            let mut state = self.shared.lock();
            state.end += data.len() as u64;
            if state.live().next().is_none() || data.is_empty() {
                return state.live().next().is_some();
            }
            let at = state.end - data.len() as u64;
            state.pieces.push_back((at, Bytes::copy_from_slice(data)));
            state.held += data.len();
            let over =
                limits.budget.held.fetch_add(data.len(), Relaxed) + data.len() > limits.budget.max;
            let end = state.end;
            for slot in state.readers.iter_mut().filter(|r| !r.cut) {
                let behind = end - slot.cursor;
                if behind > limits.lag as u64 || over {
                    State::cut(slot, &mut wake);
                } else {
                    wake.extend(slot.waker.take());
                }
            }
            state.trim(&limits.budget);
            state.live().next().is_some()
        };
        wake.into_iter().for_each(Waker::wake);
        wanted
    }

    /// The body is complete; `trailers` are its raw trailer lines.
    pub fn finish(self, trailers: Bytes) {
        self.end(Ending::Finished(trailers));
    }

    /// The rest of the body is lost.
    pub fn abort(self) {
        // Dropping does it.
    }

    fn end(&self, ending: Ending) {
        let (wake, on_end): (Vec<Waker>, _) = {
            let mut state = self.shared.lock();
            if !matches!(state.ending, Ending::Open) {
                return;
            }
            if matches!(ending, Ending::Aborted) {
                let freed = std::mem::take(&mut state.held);
                state.pieces.clear();
                self.shared.limits.budget.held.fetch_sub(freed, Relaxed);
            }
            state.ending = ending;
            let wake = state
                .readers
                .iter_mut()
                .filter_map(|r| r.waker.take())
                .collect();
            (wake, std::mem::take(&mut state.on_end))
        };
        wake.into_iter().for_each(Waker::wake);
        on_end.into_iter().for_each(|f| f());
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        self.end(Ending::Aborted);
    }
}

/// One target's cursor in a body.
#[derive(Debug)]
pub struct BodyReader {
    shared: Arc<Shared>,
    id: usize,
}

impl BodyReader {
    /// The next pieces, or the end; an error once this reader is cut or
    /// the body is lost. Waits while the client has sent nothing more.
    ///
    /// The pieces stay this reader's (held, counted against its lag and
    /// the budget) until it says it wrote them ([`Self::advance`]): a
    /// reader stuck writing to a slow target is behind, not done. The next
    /// read starts where the last `advance` left off.
    pub async fn read(&mut self) -> Result<Read, StreamError> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            let state = &mut *state;
            let slot = &mut state.readers[self.id];
            if slot.cut {
                return Poll::Ready(Err(StreamError::Behind));
            }
            if matches!(state.ending, Ending::Aborted) {
                return Poll::Ready(Err(StreamError::Lost));
            }
            if slot.cursor < state.end {
                let first = state.pieces.partition_point(|(at, _)| *at < slot.cursor);
                let mut out = Vec::new();
                let mut taken = 0;
                for (at, piece) in state.pieces.range(first..) {
                    if taken >= MAX_READ {
                        break;
                    }
                    debug_assert_eq!(*at, slot.cursor + taken as u64);
                    taken += piece.len();
                    out.push(piece.clone());
                }
                return Poll::Ready(Ok(Read::Data(out)));
            }
            match &state.ending {
                Ending::Finished(trailers) => Poll::Ready(Ok(Read::End(trailers.clone()))),
                _ => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The `n` bytes last read are written: they may be freed.
    pub fn advance(&mut self, n: usize) {
        let mut state = self.shared.lock();
        let state = &mut *state;
        let slot = &mut state.readers[self.id];
        slot.cursor = (slot.cursor + n as u64).min(state.end);
        state.trim(&self.shared.limits.budget);
    }

    /// Why this reader gets no more of the body, if it does not.
    pub fn status(&self) -> Option<StreamError> {
        let state = self.shared.lock();
        if state.readers[self.id].cut {
            Some(StreamError::Behind)
        } else if matches!(state.ending, Ending::Aborted) {
            Some(StreamError::Lost)
        } else {
            None
        }
    }

    /// Resolves when this reader is cut or the body lost (to stop a write
    /// that a slow target keeps waiting).
    pub async fn dropped(&mut self) -> StreamError {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            let aborted = matches!(state.ending, Ending::Aborted);
            let slot = &mut state.readers[self.id];
            if slot.cut {
                return Poll::Ready(StreamError::Behind);
            }
            if aborted {
                return Poll::Ready(StreamError::Lost);
            }
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let state = &mut *state;
        state.readers[self.id].cut = true;
        state.readers[self.id].waker = None;
        state.trim(&self.shared.limits.budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(lag: usize, budget: usize) -> StreamLimits {
        StreamLimits {
            after: 0,
            lag,
            budget: StreamBudget::new(budget),
        }
    }

    fn now<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    /// What one read gave, written (advanced past).
    fn take(reader: &mut BodyReader) -> Vec<u8> {
        match now(reader.read()) {
            Some(Ok(Read::Data(pieces))) => {
                let bytes = pieces.concat();
                reader.advance(bytes.len());
                bytes
            }
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn every_reader_gets_every_byte_and_pieces_are_freed_behind_the_last() {
        let l = limits(1 << 20, 1 << 20);
        let (mut w, body) = BodyStream::new(l.clone());
        let (mut a, mut b) = (body.reader(), body.reader());
        assert!(now(a.read()).is_none(), "nothing written yet: waits");
        assert!(w.push(b"hello "));
        assert!(w.push(b"world"));
        assert_eq!(take(&mut a), b"hello world");
        assert_eq!(l.budget.held(), 11, "b still needs them");
        assert_eq!(take(&mut b), b"hello world");
        assert_eq!(l.budget.held(), 0);
        w.finish(Bytes::from_static(b"X-Sum: 1\r\n"));
        assert_eq!(
            now(a.read()),
            Some(Ok(Read::End(Bytes::from_static(b"X-Sum: 1\r\n"))))
        );
        assert_eq!(
            now(b.read()),
            Some(Ok(Read::End(Bytes::from_static(b"X-Sum: 1\r\n"))))
        );
    }

    #[test]
    fn a_reader_too_far_behind_is_cut_and_the_others_go_on() {
        let l = limits(10, 1 << 20);
        let (mut w, body) = BodyStream::new(l.clone());
        let (mut fast, mut slow) = (body.reader(), body.reader());
        w.push(b"0123456");
        assert_eq!(take(&mut fast), b"0123456");
        w.push(b"789ab");
        assert_eq!(now(slow.read()), Some(Err(StreamError::Behind)));
        assert_eq!(now(slow.dropped()), Some(StreamError::Behind));
        assert_eq!(take(&mut fast), b"789ab");
        assert_eq!(l.budget.held(), 0, "nothing kept for a cut reader");
        drop(fast);
        assert!(!w.push(b"more"), "nobody reads any more");
        assert_eq!(l.budget.held(), 0);
    }

    #[test]
    fn the_budget_cuts_the_readers_that_still_need_the_piece() {
        let l = limits(1 << 20, 8);
        let (mut w1, s1) = BodyStream::new(l.clone());
        let (mut w2, s2) = BodyStream::new(l.clone());
        let (mut r1, mut r2) = (s1.reader(), s2.reader());
        w1.push(b"12345");
        assert!(!w2.push(b"67890"), "over the budget: its reader is cut");
        assert_eq!(now(r2.read()), Some(Err(StreamError::Behind)));
        assert_eq!(l.budget.held(), 5);
        assert_eq!(take(&mut r1), b"12345");
        assert_eq!(l.budget.held(), 0);
        drop((w1, w2));
    }

    #[test]
    fn a_lost_body_ends_every_reader_and_frees_its_pieces() {
        let l = limits(1 << 20, 1 << 20);
        let (mut w, body) = BodyStream::new(l.clone());
        let mut r = body.reader();
        w.push(b"abc");
        w.abort();
        assert_eq!(now(r.read()), Some(Err(StreamError::Lost)));
        assert_eq!(l.budget.held(), 0);
        let late = body.reader();
        drop(late);
        drop(body);
        drop(r);
    }

    #[test]
    fn a_reader_made_after_pieces_were_freed_starts_cut() {
        let l = limits(1 << 20, 1 << 20);
        let (mut w, body) = BodyStream::new(l.clone());
        let mut first = body.reader();
        w.push(b"abc");
        assert_eq!(take(&mut first), b"abc");
        let mut late = body.reader();
        assert_eq!(now(late.read()), Some(Err(StreamError::Behind)));
    }

    #[test]
    fn what_waits_for_the_end_is_called_once_whether_it_ends_or_is_lost() {
        use std::sync::atomic::AtomicU32;
        let calls = Arc::new(AtomicU32::new(0));
        let count = |calls: &Arc<AtomicU32>| {
            let calls = calls.clone();
            Box::new(move || {
                calls.fetch_add(1, Relaxed);
            })
        };
        let (w, body) = BodyStream::new(limits(1 << 20, 1 << 20));
        body.on_end(count(&calls));
        assert_eq!(calls.load(Relaxed), 0);
        w.finish(Bytes::new());
        assert_eq!(calls.load(Relaxed), 1);
        body.on_end(count(&calls));
        assert_eq!(calls.load(Relaxed), 2, "after the end: at once");
        let (w, body) = BodyStream::new(limits(1 << 20, 1 << 20));
        body.on_end(count(&calls));
        drop(w);
        assert_eq!(calls.load(Relaxed), 3, "a lost body ends too");
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_when_the_client_sends_more() {
        let (mut w, body) = BodyStream::new(limits(1 << 20, 1 << 20));
        let mut r = body.reader();
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match r.read().await.unwrap() {
                    Read::Data(p) => {
                        let bytes = p.concat();
                        r.advance(bytes.len());
                        got.extend(bytes);
                    }
                    Read::End(_) => return got,
                }
            }
        });
        for piece in [&b"ab"[..], b"cd", b"ef"] {
            tokio::task::yield_now().await;
            w.push(piece);
        }
        w.finish(Bytes::new());
        assert_eq!(reading.await.unwrap(), b"abcdef");
    }
}
