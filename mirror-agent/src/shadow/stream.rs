//! A connection to a shadow, serviced on the agent's clock.
//!
//! While the clock is driven (the capture runs), the socket is not in the
//! runtime's epoll set: a read that would block parks the task until the
//! next tick (`crate::clock`), so a response never wakes the agent by
//! itself, and the first read after a request is not even tried before the
//! tick (the response cannot be there yet). Without a driver the socket
//! moves to the runtime's reactor and behaves as a plain tokio stream.
//!
//! A tick-driven connection carries one request per tick: under a backlog
//! (more requests queued than the target has connections) the worker asks
//! for prompt reads ([`ShadowStream::set_prompt`]) and the socket joins the
//! reactor until the backlog is gone. The agent is busy then anyway, so the
//! wakeups the ticks save would cost little.
//!
//! TLS (`tls`, `transport`) runs over this stream: its records are read and
//! written here like plain bytes. Its handshake runs on the reactor
//! ([`ShadowStream::prompt`]), each of its round trips answered at once.

use std::io::{self, IoSlice, Write as _};
use std::net::Shutdown;
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::clock;

enum Io {
    /// Non-blocking and outside the reactor: woken by ticks.
    Ticked(std::net::TcpStream),
    Reactor(TcpStream),
    /// Moving to the reactor failed; every operation fails.
    Broken,
}

pub(crate) struct ShadowStream {
    io: Io,
    /// A request was written since the last read: the response is read on
    /// the next tick at the earliest.
    awaiting: bool,
}

impl ShadowStream {
    /// A connected stream, taken out of the reactor when ticks drive it.
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let io = if clock::is_driven() {
            Io::Ticked(stream.into_std()?)
        } else {
            Io::Reactor(stream)
        };
        Ok(Self {
            io,
            awaiting: false,
        })
    }

    /// A connected stream on the reactor whatever the clock: for a TLS
    /// handshake, whose round trips would each wait for a tick otherwise.
    /// The first [`set_prompt`](Self::set_prompt)`(false)` puts it on the
    /// clock.
    pub fn prompt(stream: TcpStream) -> Self {
        Self {
            io: Io::Reactor(stream),
            awaiting: false,
        }
    }

    /// Reads what is there without waiting (`WouldBlock` if nothing).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.io {
            Io::Ticked(s) => io::Read::read(&mut &*s, buf),
            Io::Reactor(s) => s.try_read(buf),
            Io::Broken => Err(broken()),
        }
    }

    /// Prompt: readiness from the reactor; otherwise (when the clock is
    /// driven) reads wait for the next tick. Switching costs one
    /// epoll_ctl(2); it happens only when the backlog starts or ends.
    pub fn set_prompt(&mut self, prompt: bool) -> io::Result<()> {
        match (&self.io, prompt) {
            (Io::Ticked(_), true) => self.move_to_reactor(),
            (Io::Reactor(_), false) if clock::is_driven() => {
                if let Io::Reactor(s) = std::mem::replace(&mut self.io, Io::Broken) {
                    self.io = Io::Ticked(s.into_std()?);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn move_to_reactor(&mut self) -> io::Result<()> {
        if let Io::Ticked(s) = std::mem::replace(&mut self.io, Io::Broken) {
            self.io = Io::Reactor(TcpStream::from_std(s)?);
        }
        Ok(())
    }

    /// Handles `WouldBlock` on a ticked socket: park until the next tick,
    /// or (no driver) move to the reactor and retry there.
    fn wait(&mut self, cx: &Context<'_>) -> io::Result<bool> {
        if clock::wait_for_tick(cx.waker()) {
            return Ok(true);
        }
        self.move_to_reactor()?;
        Ok(false)
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "shadow connection lost")
}

fn would_block(result: &io::Result<usize>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl AsyncRead for ShadowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let result = match &mut this.io {
                Io::Reactor(s) => return Pin::new(s).poll_read(cx, buf),
                Io::Broken => return Poll::Ready(Err(broken())),
                Io::Ticked(_) if std::mem::take(&mut this.awaiting) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Io::Ticked(s) => {
                    // SAFETY: recv(2) writes at most `unfilled.len()` bytes
                    // into the unfilled (possibly uninitialised) part of the
                    // buffer; exactly the bytes it reports are then marked
                    // initialised and filled.
                    unsafe {
                        let unfilled = buf.unfilled_mut();
                        let n = libc::recv(
                            s.as_raw_fd(),
                            unfilled.as_mut_ptr().cast(),
                            unfilled.len(),
                            0,
                        );
                        if n >= 0 {
                            buf.assume_init(n as usize);
                            buf.advance(n as usize);
                            Ok(n as usize)
                        } else {
                            Err(io::Error::last_os_error())
                        }
                    }
                }
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if this.wait(cx)? {
                        return Poll::Pending;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
                Ok(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for ShadowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let result = match &mut this.io {
                Io::Reactor(s) => return Pin::new(s).poll_write_vectored(cx, bufs),
                Io::Broken => return Poll::Ready(Err(broken())),
                Io::Ticked(s) => s.write_vectored(bufs),
            };
            if would_block(&result) {
                if this.wait(cx)? {
                    return Poll::Pending;
                }
                continue;
            }
            if matches!(result, Ok(n) if n > 0) {
                this.awaiting = true;
            }
            return Poll::Ready(result);
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Reactor(s) => Pin::new(s).poll_flush(cx),
            // Nothing is buffered here: writes go straight to the socket.
            Io::Ticked(_) | Io::Broken => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Reactor(s) => Pin::new(s).poll_shutdown(cx),
            Io::Ticked(s) => Poll::Ready(s.shutdown(Shutdown::Write)),
            Io::Broken => Poll::Ready(Err(broken())),
        }
    }
}
