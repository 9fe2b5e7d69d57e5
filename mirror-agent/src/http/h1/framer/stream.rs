//! The request framer's streamed bodies: a body over the streaming window
//! is delivered at its head ([`RequestFramer::start_stream`]), its bytes
//! then go on through a [`BodyWriter`] as they arrive.

use bytes::Bytes;

use super::super::head::BodyKind;
use super::{FramerCtx, RequestFramer, State};
use crate::http::body_stream::{BodyStream, BodyWriter};
use crate::http::request::{Request, RequestSink, SkipReason};

/// The request in progress was delivered at its head: its body goes on
/// through `writer` as it arrives.
#[derive(Debug)]
pub(super) struct Streaming {
    pub(super) writer: BodyWriter,
    /// Decoded body bytes so far (for the chunked size limit).
    pub(super) len: u64,
}

impl RequestFramer {
    /// Whether a body of `len` bytes (so far) streams: streaming is on, the
    /// body is over its window, and the request is not on probation (a
    /// candidate proves itself only at its end, so it is gathered whole).
    pub(super) fn streams<S>(&self, len: u64, cx: &FramerCtx<'_, S>) -> bool {
        !self.probation
            && cx
                .config
                .stream
                .as_ref()
                .is_some_and(|limits| len > limits.after)
    }

    /// Delivers the request in progress at its head, its body to follow
    /// as it arrives. Returns whether anyone reads the body (if not, the
    /// rest is skipped without a loss: no target wants the request).
    pub(super) fn start_stream<S: RequestSink>(
        &mut self,
        ts_ns: u64,
        cx: &mut FramerCtx<'_, S>,
    ) -> bool {
        let (Some(limits), Some(current)) = (&cx.config.stream, &self.current) else {
            return false;
        };
        let (writer, stream) = BodyStream::new(limits.clone());
        let parsed = &current.parsed;
        let chunked = parsed.body == BodyKind::Chunked;
        cx.stats.requests += 1;
        cx.stats.streamed_requests += 1;
        if chunked {
            cx.stats.chunked_requests += 1;
        }
        cx.sink.on_request(Request {
            flow: self.flow,
            head: current.head.clone(),
            body: Bytes::new(),
            chunked,
            trailers: Bytes::new(),
            stream: Some(stream),
            version: parsed.version,
            method: parsed.method,
            target: parsed.target,
            headers: parsed.headers.clone(),
            expect_continue: parsed.expect_continue,
            upgrade: parsed.upgrade,
            first_byte_ns: current.first_byte_ns,
            complete_ns: ts_ns,
        });
        let wanted = writer.wanted();
        if wanted {
            self.streaming = Some(Streaming { writer, len: 0 });
        }
        wanted
    }

    /// The streamed body's next bytes. Returns whether anyone still reads
    /// it (if not, the rest is skipped).
    pub(super) fn stream_piece<S>(&mut self, data: &[u8], cx: &mut FramerCtx<'_, S>) -> bool {
        let Some(streaming) = &mut self.streaming else {
            return false;
        };
        cx.stats.body_bytes += data.len() as u64;
        streaming.len += data.len() as u64;
        if streaming.writer.push(data) {
            return true;
        }
        self.streaming = None;
        false
    }

    /// The streamed body ended (`trailers`, chunked): its readers finish;
    /// on to what follows the request, as after a delivered one.
    pub(super) fn end_stream<S>(&mut self, trailers: Bytes, cx: &mut FramerCtx<'_, S>) {
        if let Some(streaming) = self.streaming.take() {
            streaming.writer.finish(trailers);
        }
        self.state = match self.current.take() {
            Some(c) if c.parsed.upgrade => {
                cx.stats.dropped.add(SkipReason::Upgraded);
                self.losses += 1;
                State::Stopped
            }
            Some(c) if c.parsed.close => State::Closed,
            _ => State::Head,
        };
    }
}
