//! Plain TCP endpoints inside namespaces: a server that keeps what each
//! connection sent, and clients that send given bytes.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::netns::Netns;

/// How long a server waits for its next connection, or a connection for its
/// next bytes, before the test fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A server that accepts a given number of connections, reads each to its
/// end on a thread of its own and keeps the bytes.
pub struct TcpSink {
    addr: SocketAddr,
    thread: JoinHandle<Result<BTreeMap<SocketAddr, Vec<u8>>>>,
}

impl TcpSink {
    /// Listens on `addr` inside `netns` (listening when this returns) and
    /// accepts `connections` connections.
    pub fn start(netns: &Netns, addr: SocketAddr, connections: usize) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        let thread = std::thread::spawn(move || accept_and_read(listener, connections));
        Ok(Self { addr, thread })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until every connection ended; returns the bytes each client
    /// (by its address) sent.
    pub fn join(self) -> Result<BTreeMap<SocketAddr, Vec<u8>>> {
        match self.thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn accept_and_read(
    listener: TcpListener,
    connections: usize,
) -> Result<BTreeMap<SocketAddr, Vec<u8>>> {
    let mut readers = Vec::with_capacity(connections);
    for accepted in 0..connections {
        wait_readable_within(&listener, IO_TIMEOUT).with_context(|| {
            format!("accepted {accepted} of {connections} connections, then none came")
        })?;
        let (stream, peer) = listener.accept()?;
        readers.push(std::thread::spawn(
            move || -> Result<(SocketAddr, Vec<u8>)> {
                Ok((
                    peer,
                    read_to_end(stream).with_context(|| format!("reading from {peer}"))?,
                ))
            },
        ));
    }
    let mut received = BTreeMap::new();
    for reader in readers {
        let (peer, bytes) = match reader.join() {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        received.insert(peer, bytes);
    }
    Ok(received)
}

/// Reads until the peer's FIN, then closes (which ends the client's wait in
/// [`send`]).
fn read_to_end(mut stream: TcpStream) -> Result<Vec<u8>> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn wait_readable_within(listener: &TcpListener, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out after {timeout:?}");
        }
        if wait_readable(listener, left)? {
            return Ok(());
        }
    }
}

/// Waits at most `timeout` (a minute at most) for `listener` to have a
/// connection to accept; false if none came (or a signal came first).
pub(crate) fn wait_readable(listener: &TcpListener, timeout: Duration) -> Result<bool> {
    let timeout = Timespec::try_from(timeout.min(Duration::from_secs(60)))?;
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(err) => Err(std::io::Error::from(err)).context("poll on the listener"),
    }
}

/// Opens a connection from inside `netns`. The socket works from any thread.
pub fn connect(netns: &Netns, addr: SocketAddr) -> Result<TcpStream> {
    let stream = netns
        .run(|| TcpStream::connect_timeout(&addr, IO_TIMEOUT))
        .with_context(|| format!("cannot connect to {addr} from {}", netns.name()))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends `data` over an open connection, closes its sending side and waits
/// for the server to close: when this returns, the server has read every
/// byte and the FIN. Returns the client's address.
pub fn finish(stream: &mut TcpStream, data: &[u8]) -> Result<SocketAddr> {
    let local = stream.local_addr()?;
    stream.write_all(data)?;
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .with_context(|| format!("waiting for the server to close {local}"))?;
    if !rest.is_empty() {
        bail!("the server sent {} unexpected bytes", rest.len());
    }
    Ok(local)
}

/// One connection from `netns` to `addr` carrying `data`; see [`finish`].
pub fn send(netns: &Netns, addr: SocketAddr, data: &[u8]) -> Result<SocketAddr> {
    finish(&mut connect(netns, addr)?, data)
}

/// Segments this socket has sent so far, retransmissions, SYN, ACKs and
/// FIN included (`tcpi_segs_out`). With TSO and GSO off each is one packet.
pub fn segments_sent(stream: &TcpStream) -> Result<u32> {
    // SAFETY: tcp_info is plain integers; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid socket, buffer and length.
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(TCP_INFO)");
    }
    Ok(info.tcpi_segs_out)
}
