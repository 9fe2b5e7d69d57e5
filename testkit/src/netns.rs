//! Named network namespaces that delete themselves, and ways to run code and
//! programs inside them.
//!
//! A [`Netns`] is one host (client, primary, shadow, ...). Programs run
//! inside through `ip netns exec`; code of this process runs inside on a
//! thread made for it ([`Netns::run`], [`Netns::spawn`]), which enters the
//! namespace with `setns(CLONE_NEWNET)` plus a private mount namespace with
//! sysfs mounted anew, as `ip netns exec` does, so that `/sys/class/net`
//! lists the namespace's own interfaces.

use std::{
    ffi::OsStr,
    fs::File,
    os::fd::AsFd as _,
    path::PathBuf,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context as _, Result};
use rustix::{
    mount::{MountFlags, MountPropagationFlags, UnmountFlags},
    thread::{LinkNameSpaceType, UnshareFlags},
};

use crate::command::run;

/// Every namespace [`Netns::new`] makes in this process gets a distinct
/// number.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// `ip netns add` makes /run/netns a shared mount the first time it runs;
/// two of those at once can race. Creation and deletion are cheap, so all
/// of them go one at a time.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Prefix of every namespace [`Netns::new`] creates: `mt-<pid>-<n>-<role>`.
pub const NAME_PREFIX: &str = "mt-";

/// A named network namespace (`/run/netns/NAME`), deleted on drop, even
/// when the caller panics.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `mt-<pid>-<n>-<role>` with its loopback up: a name no other
    /// process or test uses. `role` is a short word such as `c`, `s` or
    /// `sh0`.
    pub fn new(role: &str) -> Result<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self::add(format!("{NAME_PREFIX}{}-{id}-{role}", std::process::id()))
    }

    /// Creates `name` as given, loopback up, for a task that shows its
    /// hosts by name (the demo, the bench); a namespace of that name left
    /// by an interrupted run is deleted first.
    pub fn named(name: &str) -> Result<Self> {
        if Self::path_of(name).exists() {
            let _serial = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            run(Command::new("ip").args(["netns", "del", name]))
                .with_context(|| format!("cannot delete the leftover namespace {name}"))?;
        }
        Self::add(name.to_owned())
    }

    fn add(name: String) -> Result<Self> {
        {
            let _serial = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            run(Command::new("ip").args(["netns", "add", &name]))
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
        Self::path_of(&self.name)
    }

    fn path_of(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// Runs `ip -n NAME ARGS...`; fails with ip's message. Returns stdout.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
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
        run(self.command(program).args(args))
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
        if let Err(err) = run(Command::new("ip").args(["netns", "del", &self.name])) {
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
    rustix::thread::move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .context("setns(CLONE_NEWNET)")?;
    // SAFETY: unshare_unsafe is unsafe only for CLONE_FILES (fds this
    // thread would no longer share); a mount namespace changes no fd.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }
        .context("unshare(CLONE_NEWNS)")?;
    // Keep mount events of this thread away from the host (MS_SLAVE).
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .context("making / a downstream (slave) mount")?;
    // Lazy: the host's sysfs may be busy; it stays mounted for others.
    let _ = rustix::mount::unmount("/sys", UnmountFlags::DETACH);
    rustix::mount::mount("sysfs", "/sys", "sysfs", MountFlags::empty(), None)
        .context("mounting sysfs on /sys")?;
    Ok(())
}
