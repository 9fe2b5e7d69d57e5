//! Builds the eBPF crate for the BPF target and leaves the object in OUT_DIR,
//! where `capture` embeds it, so a plain `cargo build` yields a complete agent.

#[path = "../xtask/src/toolchain.rs"]
mod toolchain;

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MIRROR_EBPF_TOOLCHAIN");
    // Test-only (`cargo xtask vm-test --broken-bounds-check`): a program the
    // verifier must reject.
    let features: &[&str] = if std::env::var_os("CARGO_FEATURE_BROKEN_BOUNDS_CHECK").is_some() {
        &["broken-bounds-check"]
    } else {
        &[]
    };
    let toolchain = toolchain::ebpf_toolchain();
    // The eBPF crate sits beside this one in the workspace.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root_dir = std::path::Path::new(&manifest_dir).join("../mirror-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("the workspace path is not UTF-8"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "mirror-ebpf",
            root_dir,
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!(
            "building the eBPF program with toolchain `{toolchain}` failed; \
             `cargo xtask setup` installs bpf-linker and rust-src"
        )
    })
}
