//! An https shadow for the kernel tests: a TLS terminator (rustls) in a
//! shadow's namespace that hands the decrypted bytes, unchanged, to a rig
//! [`Server`](mirror_testkit::Server) behind it, one backend
//! connection per TLS connection. What that server received is what the
//! agent sent inside TLS, byte for byte.
//!
//! [`TestPki`] makes the certificates at run time (rcgen): a CA, and leaf
//! certificates it signs for the names a test chooses.
//!
//! ```text
//!  agent ──TLS──▶ TlsFront :8443 ──plain──▶ Server :8080   (shadow host)
//! ```

use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use mirror_testkit::{Netns, ScratchDir};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::{
    ServerConfig, ServerConnection,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

/// How often the acceptor looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// A connection quiet for this long is given up (a stuck test).
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// A certificate authority made for one test.
pub struct TestPki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A leaf certificate and its key, as the server needs them.
pub struct LeafCert {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TestPki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM, for `--ca-file`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate into `scratch`; returns its path.
    pub fn write_ca(&self, scratch: &ScratchDir, file: &str) -> Result<String> {
        Ok(scratch.write(file, &self.ca_pem)?.display().to_string())
    }

    /// A certificate for these DNS names and IP addresses, signed by this CA.
    pub fn leaf(&self, dns: &[&str], ips: &[IpAddr]) -> Result<LeafCert> {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(LeafCert {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

impl LeafCert {
    /// A server configuration presenting this certificate (TLS 1.2 and 1.3,
    /// the ring provider).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        Ok(Arc::new(config))
    }
}

/// See the [module](self). Dropped without [`TlsFront::stop`] it stops
/// accepting; connection threads end with their connections.
pub struct TlsFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<Result<()>>>,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    handshakes: AtomicUsize,
}

impl TlsFront {
    /// Listens on `addr` in `netns` (listening when this returns) and
    /// forwards every TLS connection's plaintext to `backend`.
    pub fn start(
        netns: &Netns,
        addr: SocketAddr,
        backend: SocketAddr,
        config: Arc<ServerConfig>,
    ) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr} in {}", netns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (thread_stop, thread_counts) = (Arc::clone(&stop), Arc::clone(&counts));
        // Connection threads are spawned from this one: they are in the
        // namespace too, and reach the backend.
        let thread = netns
            .spawn(move || accept_loop(listener, backend, &config, &thread_stop, &thread_counts));
        Ok(Self {
            addr,
            stop,
            counts,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::Acquire)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.counts.handshakes.load(Ordering::Acquire)
    }

    /// Stops accepting and waits until every connection ended (stop the
    /// agent first: its pooled connections are closed then).
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().expect("stopped once").join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn accept_loop(
    listener: TcpListener,
    backend: SocketAddr,
    config: &Arc<ServerConfig>,
    stop: &AtomicBool,
    counts: &Arc<Counts>,
) -> Result<()> {
    let mut threads = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    counts.accepted.fetch_add(1, Ordering::AcqRel);
                    let (config, counts) = (Arc::clone(config), Arc::clone(counts));
                    threads.push(std::thread::spawn(move || {
                        relay(stream, backend, config, &counts)
                    }));
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context("accept"),
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(ACCEPT_POLL);
    }
    drop(listener);
    for thread in threads {
        match thread.join() {
            // A client that gave up on the handshake (a refused
            // certificate) is not the front's failure.
            Ok(_) => {}
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    Ok(())
}

/// Waits until `a` or `b` is readable; (a readable, b readable).
fn poll_both(a: &TcpStream, b: Option<&TcpStream>) -> Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.map_or(-1, |b| b.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let timeout = IDLE_LIMIT.as_millis() as libc::c_int;
    // SAFETY: `fds` is a valid array of two pollfd for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(err).context("poll");
    }
    if n == 0 {
        bail!("a connection was idle for {IDLE_LIMIT:?}");
    }
    let ready =
        |fd: &libc::pollfd| fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}

/// One TLS connection: the handshake, then plaintext both ways until both
/// sides closed.
fn relay(
    mut tcp: TcpStream,
    backend: SocketAddr,
    config: Arc<ServerConfig>,
    counts: &Counts,
) -> Result<()> {
    tcp.set_nonblocking(false)?;
    let mut tls = ServerConnection::new(config)?;
    let mut upstream: Option<TcpStream> = None;
    let mut client_done = false;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // Whatever rustls has to say (handshake, records) goes out first.
        while tls.wants_write() {
            tls.write_tls(&mut tcp)?;
        }
        if client_done && upstream.is_none() {
            return Ok(());
        }
        let (client_ready, backend_ready) = poll_both(&tcp, upstream.as_ref())?;
        if client_ready && !client_done {
            let n = tls.read_tls(&mut tcp)?;
            let state = tls.process_new_packets();
            let state = match state {
                Ok(state) => state,
                Err(err) => {
                    // The alert for the client, then the end.
                    let _ = tls.write_tls(&mut tcp);
                    return Err(err).context("TLS from the client");
                }
            };
            if !tls.is_handshaking() && upstream.is_none() && !client_done {
                counts.handshakes.fetch_add(1, Ordering::AcqRel);
                let stream = TcpStream::connect(backend)
                    .with_context(|| format!("connecting to the backend {backend}"))?;
                stream.set_nodelay(true)?;
                upstream = Some(stream);
            }
            let plain = state.plaintext_bytes_to_read();
            if plain > 0 {
                let mut data = vec![0u8; plain];
                tls.reader().read_exact(&mut data)?;
                upstream
                    .as_mut()
                    .context("plaintext before the handshake ended")?
                    .write_all(&data)?;
            }
            if n == 0 || state.peer_has_closed() {
                client_done = true;
                match &upstream {
                    Some(up) => up.shutdown(std::net::Shutdown::Write)?,
                    None => return Ok(()),
                }
            }
        }
        if backend_ready && let Some(up) = upstream.as_mut() {
            let n = match up.read(&mut buf) {
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).context("reading from the backend"),
            };
            if n == 0 {
                // The backend closed (after the client, or after a response
                // that closes): so does TLS, flushed at the loop's top.
                tls.send_close_notify();
                upstream = None;
            } else {
                tls.writer().write_all(&buf[..n])?;
            }
        }
    }
}
