//! Named network namespaces that delete themselves, and ways to run code and
//! programs inside them.
//!
//! A [`Netns`] is one host of a test (client, primary, shadow, ...). Threads
//! enter it with `setns(CLONE_NEWNET)` plus a private mount namespace with
//! sysfs mounted anew, as `ip netns exec` does, so that `/sys/class/net`
//! lists the namespace's own interfaces.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Command, Output},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context as _, Result, bail};

/// Every namespace of this process gets a distinct number.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// `ip netns add` makes /run/netns a shared mount the first time it runs;
/// two of those at once can race. Creation and deletion are cheap, so all
/// of them go one at a time.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Prefix of every namespace the harness creates: `mt-<pid>-<n>-<role>`.
pub const NAME_PREFIX: &str = "mt-";

/// A named network namespace (`/run/netns/NAME`), deleted on drop, even
/// when the test panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `mt-<pid>-<n>-<role>` with its loopback up. `role` is a short
    /// word such as `c`, `s` or `shadow1`.
    pub fn new(role: &str) -> Result<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}-{id}-{role}", std::process::id());
        {
            let _serial = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            run_checked(Command::new("ip").args(["netns", "add", &name]))
                .with_context(|| format!("cannot create network namespace {name}"))?;
        }
        let netns = Self { name };
        netns.ip(["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n NAME ARGS...`; fails with ip's message. Returns stdout.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command.arg("-n").arg(&self.name).args(args);
        run_checked(&mut command)
    }

    /// `PROGRAM` wrapped as `ip netns exec NAME PROGRAM`: add arguments,
    /// pipes, and spawn or run it as usual. `ip netns exec` replaces itself
    /// with the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `PROGRAM ARGS...` inside the namespace; fails with its stderr
    /// when it exits non-zero. Returns stdout.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(self.command(program).args(args))
    }

    /// Runs `f` on a new thread inside the namespace and returns its result;
    /// a panic in `f` is resumed in the caller. `f` may borrow.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = self.open().unwrap_or_else(|e| panic!("{e:#}"));
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || {
                    enter(&file).unwrap_or_else(|e| panic!("{e:#}"));
                    f()
                })
                .expect("spawning a thread");
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `f` on a new thread inside the namespace. The namespace is
    /// opened before this returns, so the thread gets in even if `self` is
    /// dropped first.
    pub fn spawn<T, F>(&self, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let file = self.open().unwrap_or_else(|e| panic!("{e:#}"));
        std::thread::Builder::new()
            .name(format!("netns {}", self.name))
            .spawn(move || {
                enter(&file).unwrap_or_else(|e| panic!("{e:#}"));
                f()
            })
            .expect("spawning a thread")
    }

    fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("cannot open {}", self.path().display()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _serial = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            // Never panic in drop (it may run during a panic): say it loudly.
            eprintln!(
                "warning: cannot delete network namespace {}: {err:#}",
                self.name
            );
        }
    }
}

/// Moves the calling thread into the namespace open as `file`, with a
/// private mount namespace whose /sys belongs to it. The thread stays there:
/// use it only on threads made for the purpose.
fn enter(file: &File) -> Result<()> {
    // SAFETY: plain syscalls on a valid fd and valid C strings.
    unsafe {
        if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNS)");
        }
        let root = CString::new("/").expect("no NUL");
        let sys = CString::new("/sys").expect("no NUL");
        let sysfs = CString::new("sysfs").expect("no NUL");
        // Keep mount events of this thread away from the host.
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).context("making / a slave mount");
        }
        // Lazy: the host's sysfs may be busy; it stays mounted for others.
        libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
        if libc::mount(
            sysfs.as_ptr(),
            sys.as_ptr(),
            sysfs.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).context("mounting sysfs on /sys");
        }
    }
    Ok(())
}

/// Creates a veth pair with one end in each namespace, directly (the pair
/// never exists in the caller's namespace). Both ends stay down: see
/// [`Link`] for addresses and state.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    run_checked(Command::new("ip").args([
        "link", "add", "name", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if,
        "netns", &b.name,
    ]))
    .with_context(|| format!("cannot create veth {}:{a_if} <-> {}:{b_if}", a.name, b.name))?;
    Ok(())
}

/// One interface inside a namespace.
#[derive(Clone, Copy, Debug)]
pub struct Link<'a> {
    pub netns: &'a Netns,
    pub name: &'a str,
}

impl<'a> Link<'a> {
    pub fn new(netns: &'a Netns, name: &'a str) -> Self {
        Self { netns, name }
    }

    /// Adds an address such as `10.200.0.1/24` or `fd00:200::1/64` (IPv6
    /// without duplicate address detection, so it is usable at once).
    pub fn add_address(&self, cidr: &str) -> Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", self.name];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.netns.ip(args)?;
        Ok(())
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.netns
            .ip(["link", "set", "dev", self.name, "mtu", &mtu.to_string()])?;
        Ok(())
    }

    pub fn up(&self) -> Result<()> {
        self.netns.ip(["link", "set", "dev", self.name, "up"])?;
        Ok(())
    }

    /// `ethtool -K IF FEATURE on|off ...`.
    pub fn set_features(&self, features: &[(&str, bool)]) -> Result<()> {
        let mut args = vec!["-K", self.name];
        for (feature, on) in features {
            args.push(feature);
            args.push(if *on { "on" } else { "off" });
        }
        self.netns.exec("ethtool", args)?;
        Ok(())
    }

    /// The value of one feature as `ethtool -k` shows it (`on`, `off`,
    /// `off [fixed]`, ...).
    pub fn feature(&self, name: &str) -> Result<String> {
        let shown = self.netns.exec("ethtool", ["-k", self.name])?;
        shown
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}:")))
            .map(|value| value.trim().to_owned())
            .with_context(|| format!("ethtool -k {} shows no {name}", self.name))
    }
}

/// Runs a command to completion; non-zero exit is an error carrying stderr.
pub fn run_checked(command: &mut Command) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!(
            "{command:?} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}
