//! What a pooled connection carries requests over: the socket itself
//! (`http://`), or TLS over it (`https://`). Both keep the socket's clock
//! behaviour (`stream`): TLS reads and writes go through the same
//! [`ShadowStream`], so a response is still read on the tick.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;

use super::stream::ShadowStream;

pub(crate) enum Transport {
    Plain(ShadowStream),
    /// Boxed: rustls' connection state is large, and most targets are
    /// plain.
    Tls(Box<TlsStream<ShadowStream>>),
}

impl Transport {
    fn socket(&self) -> &ShadowStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.get_ref().0,
        }
    }

    /// Reads the socket's raw bytes without waiting (`WouldBlock` if none):
    /// the probe of an idle connection, which is dropped if anything came
    /// (for TLS too: a close_notify, or anything else out of turn).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket().try_read(buf)
    }

    /// See [`ShadowStream::set_prompt`].
    pub fn set_prompt(&mut self, prompt: bool) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.set_prompt(prompt),
            Transport::Tls(s) => s.get_mut().0.set_prompt(prompt),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
