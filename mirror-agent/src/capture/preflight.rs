//! Checks made before touching the kernel, so that the common mistakes give
//! one clear sentence instead of a verifier or netlink error.

use std::fs;

/// Capability numbers from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "missing capabilities: {}. Run as root (sudo mirror-agent ...) or grant them, e.g. \
         systemd AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        .0.join(", ")
    )]
    MissingCapabilities(Vec<&'static str>),
    #[error("interface {name} not found; interfaces here: {}", .existing.join(", "))]
    InterfaceNotFound { name: String, existing: Vec<String> },
    #[error("this kernel has no BPF support (the bpf() system call is not available)")]
    NoBpf,
}

/// Checks the effective capabilities: loading needs CAP_BPF and CAP_PERFMON
/// (or CAP_SYS_ADMIN, which implies both on older kernels), attaching needs
/// CAP_NET_ADMIN. Then checks that the kernel has the bpf() system call.
pub fn check_privileges() -> Result<(), PreflightError> {
    let effective = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !missing.is_empty() {
        return Err(PreflightError::MissingCapabilities(missing));
    }
    if !kernel_has_bpf() {
        return Err(PreflightError::NoBpf);
    }
    Ok(())
}

/// The interface must exist in the calling thread's network namespace.
///
/// Both checks look at the thread's own namespace: `if_nametoindex` asks the
/// kernel, `/proc/thread-self/net/dev` is per task. (`/sys/class/net` shows
/// the namespace of whoever mounted /sys, which a thread that only did
/// `setns` does not share.)
pub fn check_interface(name: &str) -> Result<(), PreflightError> {
    let exists = std::ffi::CString::new(name)
        // SAFETY: a valid NUL-terminated string.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0)
        .unwrap_or(false);
    if exists {
        return Ok(());
    }
    Err(PreflightError::InterfaceNotFound {
        name: name.to_owned(),
        existing: interfaces(),
    })
}

/// Interface names from /proc/thread-self/net/dev ("  name: counters...").
fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = fs::read_to_string("/proc/thread-self/net/dev")
        .map(|text| {
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .map(|(name, _)| name.trim().to_owned())
                .filter(|name| !name.is_empty() && !name.contains(' '))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// CapEff from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The bpf() syscall with an invalid command answers EINVAL when BPF exists
/// and ENOSYS when the kernel was built without it.
fn kernel_has_bpf() -> bool {
    // SAFETY: an invalid command with a null attribute is rejected before
    // the kernel reads anything.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, -1i64, std::ptr::null::<u8>(), 0u32) };
    !(ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}
