//! Capture stage: loads the kernel program, attaches it to the interface's
//! ingress, drains the ring buffer and decodes every record into an
//! [`Event`] for the next stage (an [`EventSink`]).

mod counters;
mod drain;
mod event;
mod filter;
mod preflight;

use std::{os::fd::AsRawFd as _, sync::Arc, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, ProgramArray, RingBuf},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
};
pub use counters::{CounterReader, KernelCounters};
pub use drain::IDLE_TICKS;
pub use event::{DecodeError, Direction, Event, EventKind, EventSink, FlowId, FlowKey, decode};
pub use filter::{KernelFilter, NoFilter, PayloadFilter, conn_key};
use mirror_common::{
    COPY_PROGRAM_NAME, CaptureConfig, JUMP_COPY, MAP_CONFIG, MAP_COUNTERS, MAP_EVENTS, MAP_IGNORE,
    MAP_JUMP, MAP_WAKE, MAX_PORTS, PROGRAM_NAME, RESPONSE_PROGRAM_NAME, SAMPLE_ALL,
};
pub use preflight::{PreflightError, check_interface, check_privileges};
use tracing::{debug, info, warn};

/// The kernel program, built by build.rs for the BPF target.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mirror"));

/// Default ring size: room for a burst of 16 MiB of payload while the agent
/// is descheduled, and no more: the ring's pages count twice in the agent's
/// RSS (the data area is mapped twice for wrap-around reads). The figures:
/// docs/design-notes.md.
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;

/// The kernel wakes the agent each time the data waiting in the ring
/// crosses another 1/16 of it; below that the agent drains on its own timer
/// every [`DRAIN_INTERVAL`], which bounds how long a record waits.
const WAKEUP_FRACTION: u32 = 16;
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(1);

/// How the program is attached to the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AttachMode {
    /// TCX on kernels >= 6.6, netlink clsact below.
    #[default]
    Auto,
    /// TCX link (Linux >= 6.6): vanishes with the process, even on SIGKILL.
    Tcx,
    /// Netlink clsact filter (older kernels): leftovers of a crashed run are
    /// removed at start.
    Netlink,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Tcx => "tcx",
            AttachMode::Netlink => "netlink",
        }
    }
}

/// What the capture stage needs to know.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub iface: String,
    /// Destination ports to capture (1 to 16).
    pub ports: Vec<u16>,
    /// Share of connections captured, in basis points (0..=10_000).
    pub sample_bp: u32,
    pub sample_seed: u32,
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_bytes: u32,
    pub attach: AttachMode,
    /// Also capture v1's responses (an egress program on the same
    /// interface), for comparing answers.
    pub responses: bool,
}

impl CaptureOptions {
    pub fn new(iface: impl Into<String>, ports: Vec<u16>) -> Self {
        Self {
            iface: iface.into(),
            ports,
            sample_bp: SAMPLE_ALL,
            sample_seed: 0,
            ring_bytes: DEFAULT_RING_BYTES,
            attach: AttachMode::Auto,
            responses: false,
        }
    }
}

/// Why the capture could not start. Each message names what failed; the
/// cause follows in the error's source chain (`{err:#}` with anyhow), never
/// twice.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("invalid capture options: {0}")]
    Options(String),
    #[error("loading the eBPF object failed")]
    Load(#[source] aya::EbpfError),
    /// The verifier refused a program: its log, once, after the reason.
    #[error(
        "the kernel's verifier rejected the program {program} (Linux {kernel}): {reason}\n\
         verifier log:\n{log}"
    )]
    Rejected {
        program: &'static str,
        kernel: String,
        reason: std::io::Error,
        log: String,
    },
    #[error("loading the program {program} failed")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching to {iface} {direction} via {mode} failed{hint}")]
    Attach {
        iface: String,
        direction: &'static str,
        mode: &'static str,
        /// What to do about it, when we know (TCX below 6.6).
        hint: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("the eBPF object lacks {0}")]
    MissingItem(&'static str),
    #[error("eBPF map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("waiting on the ring buffer failed")]
    Io(#[from] std::io::Error),
}

impl CaptureError {
    /// A failed operation on the map `name`.
    fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map { name, source }
    }

    /// A failed `load()` of `program`: the verifier's refusal with its log,
    /// or whatever else went wrong.
    fn program(program: &'static str, source: aya::programs::ProgramError) -> Self {
        match source {
            aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            } => Self::Rejected {
                program,
                kernel: kernel_release(),
                reason: io_error,
                log: verifier_log.to_string().trim_end().to_owned(),
            },
            source => Self::Program {
                program,
                source: Box::new(source),
            },
        }
    }
}

/// `uname -r`: error messages, `mirror_build_info`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Statistics of the agent's side of the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Records read from the ring.
    pub records: u64,
    /// Records that did not decode (counted, never passed on).
    pub decode_errors: u64,
}

/// A loaded and attached capture program with its ring.
pub struct Capture {
    ebpf: Ebpf,
    /// The attached programs (ingress, then egress if any), by name.
    links: Vec<(&'static str, SchedClassifierLinkId)>,
    ring: RingBuf<MapData>,
    /// [`MAP_WAKE`]: whether the agent sleeps (see `drain`).
    wake_flag: Array<MapData, u32>,
    counters: Arc<CounterReader>,
    /// [`MAP_IGNORE`], until the flow stage takes it ([`Capture::take_filter`]).
    filter: Option<KernelFilter>,
    iface: String,
    mode: AttachMode,
    stats: DrainStats,
}

impl Capture {
    /// Loads the program, fills its config and attaches it to the ingress of
    /// `options.iface` in the calling thread's network namespace.
    pub fn start(options: &CaptureOptions) -> Result<Self, CaptureError> {
        validate(options)?;
        check_privileges()?;
        check_interface(&options.iface)?;
        raise_memlock_limit();

        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_EVENTS, options.ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(CaptureError::Load)?;

        let mut config_map: Array<_, CaptureConfig> = ebpf
            .map_mut(MAP_CONFIG)
            .ok_or(CaptureError::MissingItem(MAP_CONFIG))?
            .try_into()
            .map_err(CaptureError::map(MAP_CONFIG))?;
        config_map
            .set(0, capture_config(options), 0)
            .map_err(CaptureError::map(MAP_CONFIG))?;

        let ring = take_map(&mut ebpf, MAP_EVENTS)?;
        let wake_flag = take_map(&mut ebpf, MAP_WAKE)?;
        let filter = take_map(&mut ebpf, MAP_IGNORE)?;
        let counters = take_map(&mut ebpf, MAP_COUNTERS)?;

        // The copier first: the classifier tail-calls it through the jump
        // table, so it must be loaded and in place before anything attaches.
        let copier = load_classifier(&mut ebpf, COPY_PROGRAM_NAME)?;
        let copier_fd = copier
            .fd()
            .map_err(|err| CaptureError::program(COPY_PROGRAM_NAME, err))?
            .try_clone()
            .map_err(CaptureError::Io)?;
        let mut jump: ProgramArray<_> = ebpf
            .map_mut(MAP_JUMP)
            .ok_or(CaptureError::MissingItem(MAP_JUMP))?
            .try_into()
            .map_err(CaptureError::map(MAP_JUMP))?;
        jump.set(JUMP_COPY, &copier_fd, 0)
            .map_err(CaptureError::map(MAP_JUMP))?;

        let mode = resolve_mode(options.attach);
        // A netlink filter survives its process (even SIGKILL): remove what a
        // crashed run of ours left before adding our own. TCX links vanish
        // with their process, so there is nothing to clean in that mode.
        remove_netlink_leftovers(&options.iface);
        if mode != AttachMode::Tcx
            && let Err(err) = tc::qdisc_add_clsact(&options.iface)
        {
            // Usually "already exists"; the attach below tells if not.
            debug!(iface = %options.iface, error = %err, "clsact qdisc not added");
        }
        let mut links = vec![(
            PROGRAM_NAME,
            attach(
                &mut ebpf,
                PROGRAM_NAME,
                TcAttachType::Ingress,
                options,
                mode,
            )?,
        )];
        if options.responses {
            links.push((
                RESPONSE_PROGRAM_NAME,
                attach(
                    &mut ebpf,
                    RESPONSE_PROGRAM_NAME,
                    TcAttachType::Egress,
                    options,
                    mode,
                )?,
            ));
        }
        info!(
            iface = %options.iface,
            attach_mode = mode.as_str(),
            ports = ?options.ports,
            sample_percent = options.sample_bp as f64 / 100.0,
            ring_bytes = options.ring_bytes,
            responses = options.responses,
            "capture attached"
        );
        Ok(Self {
            ebpf,
            links,
            ring,
            wake_flag,
            counters: Arc::new(CounterReader::new(counters)),
            filter: Some(KernelFilter::new(filter)),
            iface: options.iface.clone(),
            mode,
            stats: DrainStats::default(),
        })
    }

    /// How the program was attached (never `Auto`).
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The program's ignore map, for the flow stage (once; `None` after).
    pub fn take_filter(&mut self) -> Option<KernelFilter> {
        self.filter.take()
    }

    /// A handle that reads the kernel counters, usable from any thread.
    pub fn counter_reader(&self) -> Arc<CounterReader> {
        Arc::clone(&self.counters)
    }

    /// The kernel counters, summed over all CPUs.
    pub fn kernel_counters(&self) -> Result<KernelCounters, CaptureError> {
        self.counters
            .read()
            .map_err(CaptureError::map(MAP_COUNTERS))
    }

    /// The counters of v1's responses (egress): zeros unless captured.
    pub fn response_counters(&self) -> Result<KernelCounters, CaptureError> {
        self.counters
            .read_responses()
            .map_err(CaptureError::map(MAP_COUNTERS))
    }

    pub fn drain_stats(&self) -> DrainStats {
        self.stats
    }

    /// The loaded classifier, for running it on crafted packets with
    /// `BPF_PROG_TEST_RUN` (kernel tests). Its tail call reaches the copier
    /// and its records land in this capture's ring.
    pub fn classifier_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        // `start` loaded the program and keeps it loaded for as long as
        // `self` lives: neither lookup can fail afterwards.
        self.ebpf
            .program(PROGRAM_NAME)
            .expect("the classifier is part of the object")
            .fd()
            .expect("the classifier was loaded by start()")
            .as_fd()
    }

    /// Detaches the program from the interface. Production traffic stops
    /// being copied at once; records already in the ring can still be drained.
    pub fn detach(&mut self) {
        if self.links.is_empty() {
            return;
        }
        for (name, link) in self.links.drain(..) {
            let program: Option<&mut SchedClassifier> =
                self.ebpf.program_mut(name).and_then(|p| p.try_into().ok());
            match program.map(|p| p.detach(link)) {
                Some(Ok(())) => {}
                Some(Err(err)) => {
                    warn!(iface = %self.iface, program = name, error = %err, "detach failed")
                }
                None => {
                    warn!(iface = %self.iface, program = name, "detach failed: program not found")
                }
            }
        }
        info!(iface = %self.iface, "capture detached");
    }

    /// Hands every record now in the ring to `sink`, without waiting.
    pub fn drain(&mut self, sink: &mut impl EventSink) -> usize {
        let mut drained = 0;
        while let Some(item) = self.ring.next() {
            drained += 1;
            match decode(&item) {
                Ok(event) => sink.on_event(&event),
                Err(err) => {
                    self.stats.decode_errors += 1;
                    if self.stats.decode_errors.is_power_of_two() {
                        warn!(error = %err, total = self.stats.decode_errors, "undecodable ring record skipped");
                    }
                }
            }
        }
        self.stats.records += drained as u64;
        sink.on_batch_end(crate::clock::monotonic_ns());
        drained
    }

    /// Waits up to `timeout` for records, then drains them. For callers
    /// without a tokio runtime (tests, benches).
    pub fn poll(
        &mut self,
        sink: &mut impl EventSink,
        timeout: Duration,
    ) -> Result<usize, CaptureError> {
        let mut pollfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, the ring's fd lives as long as self.
        let ret = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err.into());
            }
        }
        Ok(self.drain(sink))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.detach();
    }
}

fn validate(options: &CaptureOptions) -> Result<(), CaptureError> {
    if options.ports.is_empty() || options.ports.len() > MAX_PORTS {
        return Err(CaptureError::Options(format!(
            "between 1 and {MAX_PORTS} ports are needed, got {}",
            options.ports.len()
        )));
    }
    if options.ports.contains(&0) {
        return Err(CaptureError::Options("port 0 cannot be captured".into()));
    }
    if options.sample_bp > SAMPLE_ALL {
        return Err(CaptureError::Options(format!(
            "sampling share {} basis points is above 10000 (100 %)",
            options.sample_bp
        )));
    }
    let page = page_size();
    if !options.ring_bytes.is_power_of_two() || (options.ring_bytes as usize) < page {
        return Err(CaptureError::Options(format!(
            "ring size {} must be a power of two and at least one page ({page} bytes)",
            options.ring_bytes
        )));
    }
    Ok(())
}

fn capture_config(options: &CaptureOptions) -> CaptureConfig {
    let mut config = CaptureConfig::empty();
    config.set_ports(&options.ports);
    config.sample_bp = options.sample_bp;
    config.sample_seed = options.sample_seed;
    config.wakeup_bytes = options.ring_bytes / WAKEUP_FRACTION;
    config
}

fn resolve_mode(requested: AttachMode) -> AttachMode {
    match requested {
        AttachMode::Auto if kernel_has_tcx() => AttachMode::Tcx,
        AttachMode::Auto => AttachMode::Netlink,
        other => other,
    }
}

/// TCX arrived in Linux 6.6.
/// Below 6.6 a TCX attach fails with a bare EINVAL: say why.
fn attach_hint(mode: AttachMode) -> String {
    if mode == AttachMode::Tcx && !kernel_has_tcx() {
        format!(
            " (TCX needs Linux 6.6 or later and this is {}: use --attach netlink, \
             or auto, which picks netlink here)",
            kernel_release()
        )
    } else {
        String::new()
    }
}

fn kernel_has_tcx() -> bool {
    aya::util::KernelVersion::current()
        .map(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
        .unwrap_or(false)
}

fn remove_netlink_leftovers(iface: &str) {
    // Filters are found by program name only: another agent running on
    // this host (a recording beside a mirror) owns filters of the same
    // name, live ones. Leftovers are only what no running agent holds.
    if let Some(pid) = another_agent_running() {
        debug!(
            iface,
            other_pid = pid,
            "another mirror-agent runs: its capture filters are left in place"
        );
        return;
    }
    for (direction, name) in [
        (TcAttachType::Ingress, PROGRAM_NAME),
        (TcAttachType::Egress, RESPONSE_PROGRAM_NAME),
    ] {
        match tc::qdisc_detach_program(iface, direction, name) {
            Ok(()) => warn!(
                iface,
                program = name,
                "removed a capture filter left by an earlier run"
            ),
            Err(err) => debug!(iface, program = name, error = %err, "no netlink leftovers"),
        }
    }
}

/// The pid of another mirror-agent running in this network namespace (the
/// interfaces' namespace), if any.
fn another_agent_running() -> Option<u32> {
    let me = std::process::id();
    let netns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let mine = netns("self")?;
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "mirror-agent")
                && netns(&pid.to_string()).as_ref() == Some(&mine)
        })
}

/// Takes the map `name` out of the loaded object as its typed handle.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, CaptureError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(CaptureError::MissingItem(name))?;
    T::try_from(map).map_err(CaptureError::map(name))
}

/// Loads the classifier program `name` into the kernel (the verifier's
/// refusal is an error with its log).
fn load_classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, CaptureError> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(CaptureError::MissingItem(name))?
        .try_into()
        .map_err(|err| CaptureError::program(name, err))?;
    program
        .load()
        .map_err(|err| CaptureError::program(name, err))?;
    Ok(program)
}

/// Loads the classifier `name` (the copier it tail-calls is in place) and
/// attaches it to `direction` of the interface.
fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    direction: TcAttachType,
    options: &CaptureOptions,
    mode: AttachMode,
) -> Result<SchedClassifierLinkId, CaptureError> {
    let program = load_classifier(ebpf, name)?;
    let attach_options = match mode {
        AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::first()),
        _ => TcAttachOptions::Netlink(NlOptions::default()),
    };
    program
        .attach_with_options(&options.iface, direction, attach_options)
        .map_err(|source| CaptureError::Attach {
            iface: options.iface.clone(),
            direction: match direction {
                TcAttachType::Egress => "egress",
                _ => "ingress",
            },
            mode: mode.as_str(),
            hint: attach_hint(mode),
            source: Box::new(source),
        })
}

fn raise_memlock_limit() {
    // Kernels >= 5.11 account BPF memory to the cgroup; older ones count it
    // against RLIMIT_MEMLOCK, which is often tiny.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!("could not raise RLIMIT_MEMLOCK");
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}
