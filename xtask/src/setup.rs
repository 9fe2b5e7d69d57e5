//! `cargo xtask setup`: installs what building and testing mirror needs, and
//! only what is missing. Each item ends as "ok", "installed", or the exact
//! command the user has to run (not root, no network, not Debian, ...).

use std::{
    env, fmt, fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Result, bail};

use crate::toolchain;

/// Needed to build bpf-linker against LLVM 22.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];
/// Used by the tests, the demo and the benches: `ip`, `ethtool`, `curl`,
/// `ab`, `python3`, `bpftool` (bpf_stats), `prometheus` and `promtool` (the
/// metrics test), `nginx` and `wrk` (the benches), `chromium` (the
/// comparison page checked in a headless browser), `tcpdump` (pcap input);
/// QEMU, a static busybox, xz, objcopy (binutils) and Debian's archive keys
/// for the kernel matrix (`cargo xtask vm-test`, which reaches the suites
/// of its kernels through apt lists of its own, not the host's sources).
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "curl",
    "apache2-utils",
    "python3",
    "bpftool",
    "prometheus",
    // The load balancer in front of the fleet's replicas (the fleet test,
    // `cargo xtask demo fleet`), as in the second seed's exercise.
    "haproxy",
    "nginx",
    "wrk",
    "chromium",
    "tcpdump",
    // The bench shadows' certificates (https, `replay-tls`).
    "openssl",
    "qemu-system-x86",
    "busybox-static",
    "xz-utils",
    "binutils",
    "debian-archive-keyring",
];

/// Where Debian's llvm-22 puts `llvm-config`, which bpf-linker's build looks for.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const LLVM_MAJOR: &str = "22";

/// Components the eBPF toolchain needs: `-Z build-std=core` and the eBPF clippy step.
const EBPF_COMPONENTS: &[&str] = &["rust-src", "clippy"];
/// Components the default toolchain needs for `cargo fmt` and `cargo clippy`.
const HOST_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

const BPF_LINKER_INSTALL: &str = "PATH=/usr/lib/llvm-22/bin:$PATH cargo install bpf-linker \
     --no-default-features --features llvm-22 --locked --force";

/// How one item ended.
enum Outcome {
    Ok(String),
    Installed(String),
    /// Could not be done here: why, and what the user should run.
    Todo {
        why: String,
        command: String,
    },
}

impl Outcome {
    fn todo(why: impl Into<String>, command: impl Into<String>) -> Self {
        Self::Todo {
            why: why.into(),
            command: command.into(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok(detail) => write!(f, "ok: {detail}"),
            Self::Installed(detail) => write!(f, "installed: {detail}"),
            Self::Todo { why, command } => write!(f, "MISSING ({why}); run: {command}"),
        }
    }
}

/// Runs every setup step, prints one line per item, and returns the eBPF
/// toolchain to use. Fails if anything is left for the user to do.
pub fn run() -> Result<String> {
    println!("==> setup");
    let mut items = vec![("debian packages", debian_packages())];
    let ebpf = ebpf_toolchain();
    let ebpf_ready = !matches!(ebpf, Outcome::Todo { .. });
    items.push(("eBPF toolchain", ebpf));
    let toolchain = toolchain::ebpf_toolchain();
    if ebpf_ready {
        items.push((
            "eBPF components",
            components(Some(&toolchain), EBPF_COMPONENTS),
        ));
    }
    // Without rustup, the toolchain line already says what to install first.
    if find_on_path("rustup").is_some() {
        items.push(("host components", components(None, HOST_COMPONENTS)));
    }
    items.push(("bpf-linker", bpf_linker()));

    println!("setup summary:");
    for (name, outcome) in &items {
        println!("  {name:<16} {outcome}");
    }
    if items
        .iter()
        .any(|(_, outcome)| matches!(outcome, Outcome::Todo { .. }))
    {
        bail!("setup is incomplete: run the command(s) above, then `cargo xtask setup` again");
    }
    Ok(toolchain)
}

/// (a) The Debian packages, checked with dpkg-query, installed with apt-get.
fn debian_packages() -> Outcome {
    let wanted: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(TEST_PACKAGES)
        .copied()
        .collect();
    if find_on_path("dpkg-query").is_none() || find_on_path("apt-get").is_none() {
        return Outcome::todo(
            "no dpkg/apt-get: automatic setup needs a Debian-like system",
            format!(
                "install the equivalents of: {} (then use `cargo xtask test --no-setup`)",
                wanted.join(" ")
            ),
        );
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|package| !dpkg_installed(package))
        .collect();
    if missing.is_empty() {
        return Outcome::Ok(wanted.join(" "));
    }
    let list = missing.join(" ");
    if !mirror_testkit::is_root() {
        return Outcome::todo(
            format!("not root, missing {list}"),
            format!(
                "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {list}"
            ),
        );
    }
    let command = format!("apt-get update && apt-get install -y --no-install-recommends {list}");
    println!("setup: installing Debian packages: {list}");
    // nginx, haproxy and prometheus are tools for the tests, not services
    // of this machine: Debian's policy-rc.d hook keeps their postinst from
    // starting daemons on ports 80 and 9090.
    let _no_daemons = NoServiceStarts::install();
    let installed = run_visible(Command::new("apt-get").arg("update"))
        && run_visible(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    let still_missing: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|package| !dpkg_installed(package))
        .collect();
    if installed && still_missing.is_empty() {
        Outcome::Installed(list)
    } else {
        Outcome::todo(
            format!(
                "apt-get failed (no network?), still missing {}",
                still_missing.join(" ")
            ),
            command,
        )
    }
}

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while it
/// lives, unless the machine already has one of its own.
struct NoServiceStarts(Option<&'static str>);

impl NoServiceStarts {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn install() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        if std::path::Path::new(Self::PATH).exists() {
            return Self(None);
        }
        let written = std::fs::write(Self::PATH, "#!/bin/sh\nexit 101\n").and_then(|()| {
            std::fs::set_permissions(Self::PATH, std::fs::Permissions::from_mode(0o755))
        });
        Self(written.is_ok().then_some(Self::PATH))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn dpkg_installed(package: &str) -> bool {
    capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.ends_with(" ok installed"))
}

/// (b) The toolchain that builds the eBPF crate (see `toolchain::ebpf_toolchain`).
fn ebpf_toolchain() -> Outcome {
    if find_on_path("rustup").is_none() {
        return Outcome::todo(
            "rustup not found",
            "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh",
        );
    }
    if let Some(name) = toolchain::env_override() {
        let source = format!("from {}", toolchain::TOOLCHAIN_ENV);
        if toolchain::is_installed(&name) {
            return Outcome::Ok(format!("{name} ({source}): {}", describe(&name)));
        }
        return match install_toolchain(&name) {
            Ok(()) => Outcome::Installed(format!("{name} ({source}): {}", describe(&name))),
            Err(command) => Outcome::todo(format!("{name} ({source}) is not installed"), command),
        };
    }

    let pinned = toolchain::PINNED_NIGHTLY;
    if toolchain::is_installed(pinned) {
        return Outcome::Ok(format!("{pinned}: {}", describe(pinned)));
    }
    let nightly = toolchain::FALLBACK_TOOLCHAIN;
    let nightly_info = toolchain::is_installed(nightly)
        .then(|| rustc_info(nightly))
        .flatten();
    // The same compiler under its moving name: nothing to install.
    if let Some(info) = nightly_info
        .as_ref()
        .filter(|info| info.commit_hash == toolchain::PINNED_RUSTC_COMMIT)
    {
        return Outcome::Ok(format!("{nightly} (the same compiler as {pinned}): {info}"));
    }
    match install_toolchain(pinned) {
        Ok(()) => Outcome::Installed(format!("{pinned}: {}", describe(pinned))),
        Err(command) => match nightly_info {
            Some(info) if info.llvm_major() == Some(LLVM_MAJOR) => Outcome::Ok(format!(
                "{nightly}: {info} ({pinned} could not be installed; LLVM {LLVM_MAJOR} matches bpf-linker)"
            )),
            Some(info) => Outcome::todo(
                format!(
                    "{pinned} could not be installed, and `{nightly}` is {info}, not LLVM {LLVM_MAJOR}"
                ),
                format!(
                    "{command}  (or set {}=<a nightly with LLVM {LLVM_MAJOR}>)",
                    toolchain::TOOLCHAIN_ENV
                ),
            ),
            None => Outcome::todo(
                format!("neither {pinned} nor `{nightly}` is installed"),
                command,
            ),
        },
    }
}

/// `rustup toolchain install NAME --profile minimal`; on failure, the command.
fn install_toolchain(name: &str) -> Result<(), String> {
    let command = format!("rustup toolchain install {name} --profile minimal");
    println!("setup: installing toolchain {name}");
    if run_visible(Command::new("rustup").args([
        "toolchain",
        "install",
        name,
        "--profile",
        "minimal",
    ])) {
        Ok(())
    } else {
        Err(command)
    }
}

/// Rustup components of `toolchain` (None: the default one, as cargo picks it here).
fn components(toolchain: Option<&str>, wanted: &[&str]) -> Outcome {
    let mut list = Command::new("rustup");
    list.args(["component", "list", "--installed"]);
    let mut add = Command::new("rustup");
    add.args(["component", "add"]);
    let mut command = "rustup component add".to_string();
    for component in wanted {
        command.push(' ');
        command.push_str(component);
    }
    add.args(wanted);
    if let Some(toolchain) = toolchain {
        list.args(["--toolchain", toolchain]);
        add.args(["--toolchain", toolchain]);
        command.push_str(&format!(" --toolchain {toolchain}"));
    }
    let target = toolchain.unwrap_or("default toolchain");
    let has_all = |list: &mut Command| {
        let installed = capture(list).unwrap_or_default();
        wanted.iter().all(|component| {
            installed.lines().any(|line| {
                line == *component
                    || line
                        .strip_prefix(component)
                        .is_some_and(|rest| rest.starts_with('-'))
            })
        })
    };
    if has_all(&mut list) {
        return Outcome::Ok(format!("{} ({target})", wanted.join(" ")));
    }
    println!("setup: adding {} to the {target}", wanted.join(" "));
    if run_visible(&mut add) && has_all(&mut list) {
        Outcome::Installed(format!("{} ({target})", wanted.join(" ")))
    } else {
        Outcome::todo(format!("cannot add components to the {target}"), command)
    }
}

/// (c) bpf-linker on PATH, built against LLVM 22 like our nightly.
fn bpf_linker() -> Outcome {
    let why = match check_bpf_linker() {
        Ok(detail) => return Outcome::Ok(detail),
        Err(why) => why,
    };
    if !Path::new(LLVM_BIN).join("llvm-config").exists() {
        return Outcome::todo(
            format!("{why}; building it needs llvm-22-dev (see debian packages)"),
            BPF_LINKER_INSTALL,
        );
    }
    if find_on_path("cargo").is_none() {
        return Outcome::todo(format!("{why}; cargo is not on PATH"), BPF_LINKER_INSTALL);
    }
    println!("setup: {why}; building bpf-linker against LLVM {LLVM_MAJOR} (about 80 s)");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut llvm_first = vec![PathBuf::from(LLVM_BIN)];
    llvm_first.extend(env::split_paths(&path));
    let installed = match env::join_paths(llvm_first) {
        Ok(llvm_path) => run_visible(
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                    "--locked",
                    "--force",
                ])
                .env("PATH", llvm_path),
        ),
        Err(_) => false,
    };
    if !installed {
        return Outcome::todo(format!("{why}; cargo install failed"), BPF_LINKER_INSTALL);
    }
    match check_bpf_linker() {
        Ok(detail) => Outcome::Installed(detail),
        Err(why) => Outcome::todo(
            format!("installed into {}, but {why}", cargo_bin().display()),
            format!("export PATH={}:$PATH", cargo_bin().display()),
        ),
    }
}

/// Describes a usable bpf-linker, or says why the one on PATH is not.
fn check_bpf_linker() -> Result<String, String> {
    let path = find_on_path("bpf-linker").ok_or("bpf-linker is not on PATH")?;
    let version = capture(Command::new(&path).arg("--version"))
        .ok_or_else(|| format!("`{} --version` fails", path.display()))?;
    if linked_llvm_major(&path, &version).as_deref() == Some(LLVM_MAJOR) {
        Ok(format!(
            "{version} (LLVM {LLVM_MAJOR}) at {}",
            path.display()
        ))
    } else {
        Err(format!(
            "{} is not known to be built against LLVM {LLVM_MAJOR}",
            path.display()
        ))
    }
}

/// The LLVM major version bpf-linker was built with. `--version` does not say
/// (0.13 prints only "bpf-linker 0.13.0"), so ask the dynamic loader which
/// libLLVM it links, and else cargo's record of the features it was installed with.
fn linked_llvm_major(path: &Path, version: &str) -> Option<String> {
    if let Some(major) = version
        .split("LLVM ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
    {
        return Some(major.trim().to_string());
    }
    let libraries = capture(Command::new("ldd").arg(path)).unwrap_or_default();
    if let Some(major) = libraries
        .split("libLLVM.so.")
        .nth(1)
        .or_else(|| libraries.split("libLLVM-").nth(1))
        .and_then(|rest| rest.split(['.', ' ']).next())
    {
        return Some(major.to_string());
    }
    if path.parent() != Some(cargo_bin().as_path()) {
        return None;
    }
    // Each installed crate is one flat object keyed "name version (source)".
    let installs = fs::read_to_string(install_root().join(".crates2.json")).ok()?;
    let entry = installs.split("\"bpf-linker ").nth(1)?.split('}').next()?;
    let features = entry.split("\"features\":[").nth(1)?.split(']').next()?;
    features
        .split(',')
        .filter_map(|feature| feature.trim().trim_matches('"').strip_prefix("llvm-"))
        .next()
        .map(str::to_string)
}

/// What `rustc -vV` of a toolchain says that matters here.
struct RustcInfo {
    release: String,
    commit_hash: String,
    commit_date: String,
    llvm: String,
}

impl RustcInfo {
    fn llvm_major(&self) -> Option<&str> {
        self.llvm.split('.').next()
    }
}

impl fmt::Display for RustcInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rustc {} ({}), LLVM {}",
            self.release, self.commit_date, self.llvm
        )
    }
}

fn rustc_info(toolchain: &str) -> Option<RustcInfo> {
    let output = capture(Command::new("rustup").args(["run", toolchain, "rustc", "-vV"]))?;
    let field = |name: &str| {
        output
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_string())
            .unwrap_or_default()
    };
    Some(RustcInfo {
        release: field("release:"),
        commit_hash: field("commit-hash:"),
        commit_date: field("commit-date:"),
        llvm: field("LLVM version:"),
    })
}

fn describe(toolchain: &str) -> String {
    rustc_info(toolchain).map_or_else(|| "rustc -vV fails".to_string(), |info| info.to_string())
}

/// Runs a command with its output shown; true if it succeeded.
fn run_visible(command: &mut Command) -> bool {
    println!("$ {}", show(command));
    command
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Stdout of a successful command, trimmed.
fn capture(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A command as a user would type it (environment changes left out).
pub fn show(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Where `cargo install` puts binaries and its record of them: like cargo,
/// `$CARGO_INSTALL_ROOT`, else `$CARGO_HOME`, else `~/.cargo`.
fn install_root() -> PathBuf {
    env::var_os("CARGO_INSTALL_ROOT")
        .or_else(|| env::var_os("CARGO_HOME"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

fn cargo_bin() -> PathBuf {
    install_root().join("bin")
}
