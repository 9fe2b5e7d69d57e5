//! Which Rust toolchain builds the eBPF crate.
//!
//! std only: mirror-agent's build.rs includes this file with
//! `#[path = "../xtask/src/toolchain.rs"] mod toolchain;`, so it must not
//! depend on anything xtask depends on.
#![allow(dead_code)]

use std::process::Command;

/// The nightly the eBPF crate is known to build with: rustc 1.97.0-nightly
/// (e50aa6fba 2026-05-19), LLVM 22.1.4, which matches bpf-linker's `llvm-22`.
/// Nightlies are published the day after their commit: `nightly-2026-05-19`
/// is the previous compiler (9eb3be26b 2026-05-18).
pub const PINNED_NIGHTLY: &str = "nightly-2026-05-20";

/// The commit of the pinned nightly's rustc (`rustc -vV`, commit-hash): a
/// `nightly` built from it is the same compiler under its moving name.
pub const PINNED_RUSTC_COMMIT: &str = "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a";

/// The name users elsewhere are told to install (the and
/// TOOLCHAIN.md's): one day older, also LLVM 22, accepted when installed.
pub const ALTERNATE_NIGHTLY: &str = "nightly-2026-05-19";

/// Overrides the choice below, e.g. `MIRROR_EBPF_TOOLCHAIN=nightly-2026-05-19`.
pub const TOOLCHAIN_ENV: &str = "MIRROR_EBPF_TOOLCHAIN";

/// Used when the pinned nightly is not installed. On machines where the dated
/// release cannot be installed, `nightly` is the same compiler.
pub const FALLBACK_TOOLCHAIN: &str = "nightly";

/// The toolchain to build the eBPF crate with: `$MIRROR_EBPF_TOOLCHAIN` if set,
/// else the pinned nightly if rustup has it, else `nightly-2026-05-19` if
/// rustup has it, else `nightly`.
pub fn ebpf_toolchain() -> String {
    if let Some(name) = env_override() {
        return name;
    }
    [PINNED_NIGHTLY, ALTERNATE_NIGHTLY]
        .into_iter()
        .find(|name| is_installed(name))
        .unwrap_or(FALLBACK_TOOLCHAIN)
        .to_string()
}

/// `$MIRROR_EBPF_TOOLCHAIN`, unless unset or blank.
pub fn env_override() -> Option<String> {
    std::env::var(TOOLCHAIN_ENV)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Whether `rustup toolchain list` shows `name` (with or without the host
/// triple rustup appends). False when rustup is missing.
pub fn is_installed(name: &str) -> bool {
    installed_toolchains()
        .iter()
        .any(|listed| names_toolchain(listed, name))
}

/// The toolchains rustup lists, e.g. `nightly-x86_64-unknown-linux-gnu`.
pub fn installed_toolchains() -> Vec<String> {
    let Ok(output) = Command::new("rustup").args(["toolchain", "list"]).output() else {
        return Vec::new();
    };
    if !output.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `listed` is `name` itself or `name-<host triple>`. A date is not a triple:
/// `nightly-2026-05-19-x86_64-unknown-linux-gnu` is not `nightly`.
fn names_toolchain(listed: &str, name: &str) -> bool {
    match listed.strip_prefix(name) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .and_then(|triple| triple.chars().next())
            .is_some_and(|first| first.is_ascii_alphabetic()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::names_toolchain;

    #[test]
    fn a_listed_toolchain_matches_its_channel_with_or_without_the_host_triple() {
        assert!(names_toolchain(
            "nightly-x86_64-unknown-linux-gnu",
            "nightly"
        ));
        assert!(names_toolchain("nightly", "nightly"));
        assert!(names_toolchain(
            "nightly-2026-05-19-x86_64-unknown-linux-gnu",
            "nightly-2026-05-19"
        ));
    }

    #[test]
    fn a_dated_nightly_is_not_the_moving_nightly_and_vice_versa() {
        assert!(!names_toolchain(
            "nightly-2026-05-19-x86_64-unknown-linux-gnu",
            "nightly"
        ));
        assert!(!names_toolchain(
            "nightly-x86_64-unknown-linux-gnu",
            "nightly-2026-05-19"
        ));
        assert!(!names_toolchain(
            "stable-x86_64-unknown-linux-gnu",
            "nightly"
        ));
    }
}
