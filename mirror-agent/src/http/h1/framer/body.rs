//! The request framer's bodies: Content-Length bodies kept or skipped as
//! they stream past, chunked bodies through the [`ChunkedDecoder`].

use bytes::Bytes;

#[cfg(doc)]
use super::super::chunked::ChunkedDecoder;
use super::super::chunked::Step;
use super::{FramerCtx, RequestFramer, State};
use crate::http::request::{RequestSink, SkipReason};

/// Most body bytes reserved up front from a Content-Length: a client that
/// announces a large body and sends nothing gets no large allocation.
const MAX_BODY_RESERVE: u64 = 1 << 20;

impl RequestFramer {
    pub(super) fn on_body<S: RequestSink>(
        &mut self,
        data: &[u8],
        remaining: u64,
        mut keep: bool,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        let n = (data.len() as u64).min(remaining) as usize;
        let chunk = &data[..n];
        let remaining = remaining - n as u64;
        if keep && self.streaming.is_some() {
            // Delivered at its head: the bytes go on, none is held here.
            keep = self.stream_piece(chunk, cx);
            if remaining == 0 && keep {
                self.end_stream(Bytes::new(), cx);
                return n;
            }
            if !keep {
                cx.stats.skipped_bytes += n as u64;
                if remaining == 0 {
                    self.skipped_request_done(n == data.len(), cx);
                    return n;
                }
            }
            self.state = State::Body { remaining, keep };
            return n;
        }
        if keep {
            if remaining == 0 && self.body.is_empty() {
                // The whole body is in this slice: one copy, into the request.
                let body = Bytes::copy_from_slice(chunk);
                self.deliver(body, Bytes::new(), n == data.len(), ts_ns, cx);
                return n;
            }
            if cx.budget.has_room(n) {
                if self.body.is_empty() {
                    let total = remaining + n as u64;
                    self.body.reserve(total.min(MAX_BODY_RESERVE) as usize);
                }
                self.body.extend_from_slice(chunk);
                self.sync(cx);
            } else {
                cx.stats.dropped.add(SkipReason::BufferCap);
                self.losses += 1;
                keep = false;
                cx.stats.skipped_bytes += self.body.len() as u64;
                self.body = Vec::new();
                self.sync(cx);
            }
        }
        if !keep {
            cx.stats.skipped_bytes += n as u64;
        }
        if remaining > 0 {
            self.state = State::Body { remaining, keep };
        } else if keep {
            let body = Bytes::from(std::mem::take(&mut self.body));
            self.sync(cx);
            self.deliver(body, Bytes::new(), n == data.len(), ts_ns, cx);
        } else {
            self.skipped_request_done(n == data.len(), cx);
        }
        n
    }

    pub(super) fn on_chunked<S: RequestSink>(
        &mut self,
        data: &[u8],
        mut keep: bool,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> usize {
        let trailers = if keep { Some(&mut self.trailers) } else { None };
        let (n, step) = self.chunked.step(data, trailers, cx.config.max_head_bytes);
        let n = n.min(data.len());
        match step {
            Step::Progress => {
                // Trailer lines may have been kept.
                if keep
                    && self.held() > self.charged
                    && !cx.budget.has_room(self.held() - self.charged)
                {
                    keep = self.drop_body(SkipReason::BufferCap, cx);
                }
                self.sync(cx);
                self.state = State::Chunked { keep };
            }
            Step::Data if keep && self.streaming.is_some() => {
                let len = self.streaming.as_ref().map_or(0, |s| s.len);
                if len + n as u64 > cx.config.max_body_bytes {
                    keep = self.drop_body(SkipReason::BodyTooLarge, cx);
                    cx.stats.skipped_bytes += n as u64;
                } else if !self.stream_piece(&data[..n], cx) {
                    // Nobody reads it any more: the rest is skipped.
                    keep = false;
                    cx.stats.skipped_bytes += n as u64;
                }
                self.state = State::Chunked { keep };
            }
            Step::Data => {
                let len = (self.body.len() + n) as u64;
                if keep && len <= cx.config.max_body_bytes && self.streams(len, cx) {
                    // Over the window: delivered now, what was gathered
                    // and this chunk streaming first.
                    let gathered = std::mem::take(&mut self.body);
                    self.sync(cx);
                    keep = self.start_stream(ts_ns, cx)
                        && self.stream_piece(&gathered, cx)
                        && self.stream_piece(&data[..n], cx);
                    if !keep {
                        self.streaming = None;
                        cx.stats.skipped_bytes += (gathered.len() + n) as u64;
                    }
                    self.state = State::Chunked { keep };
                    return n;
                }
                if keep {
                    if (self.body.len() + n) as u64 > cx.config.max_body_bytes {
                        keep = self.drop_body(SkipReason::BodyTooLarge, cx);
                    } else if !cx.budget.has_room(n) {
                        keep = self.drop_body(SkipReason::BufferCap, cx);
                    } else {
                        self.body.extend_from_slice(&data[..n]);
                        self.sync(cx);
                    }
                }
                if !keep {
                    cx.stats.skipped_bytes += n as u64;
                }
                self.state = State::Chunked { keep };
            }
            Step::Done if keep && self.streaming.is_some() => {
                let trailers = Bytes::from(std::mem::take(&mut self.trailers));
                self.sync(cx);
                self.end_stream(trailers, cx);
            }
            Step::Done => {
                if keep {
                    let body = Bytes::from(std::mem::take(&mut self.body));
                    let trailers = Bytes::from(std::mem::take(&mut self.trailers));
                    self.sync(cx);
                    self.deliver(body, trailers, n == data.len(), ts_ns, cx);
                } else {
                    self.skipped_request_done(n == data.len(), cx);
                }
            }
            // A request already dropped: only the framing goes.
            Step::Invalid if !keep => self.refuse_counted(n, cx),
            Step::TrailersTooLarge if !keep => self.desync(cx),
            Step::Invalid => self.refuse(SkipReason::InvalidFraming, n, cx),
            Step::TrailersTooLarge => self.over_limit(SkipReason::TrailersTooLarge, n, cx),
        }
        n
    }

    /// Stops keeping the chunked body in progress (counted with `reason`);
    /// its remaining chunks are skipped. Returns the new `keep` (false).
    fn drop_body<S>(&mut self, reason: SkipReason, cx: &mut FramerCtx<'_, S>) -> bool {
        cx.stats.dropped.add(reason);
        self.losses += 1;
        cx.stats.skipped_bytes += self.body.len() as u64;
        self.body = Vec::new();
        self.trailers = Vec::new();
        self.streaming = None;
        self.sync(cx);
        false
    }
}
