//! `cargo xtask deploy-check`: everything CI checks of the deployment files
//! (Vagrantfile, deploy/), on a machine like CI's: root, Debian 12, no
//! systemd as PID 1, no VM.
//!
//! 1. tools: ruby, systemd-analyze, setpriv, ... (apt-get, only what is
//!    missing) and yamllint + kubernetes-validate (pip, in a venv under
//!    target/deploy-check, only when missing);
//! 2. static checks: `ruby -c Vagrantfile`, `bash -n` of the provisioning
//!    script, yamllint and kubernetes-validate (--strict) of deploy/k8s, and
//!    that the capabilities, the Dockerfile's toolchain and packages agree
//!    with the rest of the repository;
//! 3. the provisioning script's phases that need no VM, into the real system
//!    paths (idempotent): packages, toolchain, build (the debug build, which
//!    `cargo xtask test` has made already), install, demo;
//! 4. `systemd-analyze verify` of the installed units, and `mirror-agent
//!    check-config` of the configurations shipped for the VM and for
//!    Kubernetes (the ConfigMap's file);
//! 5. the demo, started the way the script starts it without systemd, inside
//!    a network namespace of its own: v1, v2 and v3 answer with their
//!    version, a request to v1 reaches v2 and v3 through the agent (as user
//!    `mirror` with the unit's capabilities), /metrics answers; then
//!    everything is stopped and the namespace deleted.

use std::{
    collections::BTreeSet,
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{setup, toolchain};

/// The capabilities the agent runs with, everywhere: the systemd unit, the
/// provisioning script's background mode, the Kubernetes sidecar.
const AGENT_CAPS: [&str; 3] = ["BPF", "NET_ADMIN", "PERFMON"];
/// Schemas the manifests are validated against: the oldest Kubernetes the
/// manifests are meant for.
const KUBERNETES_VERSION: &str = "1.30.0";
/// Python tools, pinned, installed into the venv.
const PIP_PACKAGES: &[&str] = &["yamllint==1.38.0", "kubernetes-validate==1.37.0"];
/// yamllint's rules: the defaults, with lines up to 100 characters.
const YAMLLINT_CONFIG: &str = "{extends: default, rules: {line-length: {max: 100}}}";
/// Commands the check runs, and the Debian package of each.
const COMMANDS: &[(&str, &str)] = &[
    ("ruby", "ruby"),
    ("systemd-analyze", "systemd"),
    ("setpriv", "util-linux"),
    ("prlimit", "util-linux"),
    ("ip", "iproute2"),
    ("curl", "curl"),
    ("python3", "python3"),
];
const UNIT_DIR: &str = "/etc/systemd/system";

/// Runs every check; fails at the first that fails.
pub fn check(root: &Path) -> Result<()> {
    let started = Instant::now();
    println!("==> deploy-check");
    ensure!(
        mirror_testkit::is_root(),
        "deploy-check needs root: it installs into /usr/local and /etc and \
         creates a network namespace (run it as CI does, as root)"
    );
    let work = root.join("target/deploy-check");
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    step("[1/5] tools");
    let venv = tools(&work)?;
    step("[2/5] static checks");
    static_checks(root, &venv)?;
    step("[3/5] deploy/provision.sh: packages toolchain build install demo");
    // The debug build: the one `cargo xtask test` has just made, so this
    // step costs no compilation there (the VM builds --profile release).
    // --force-config: the configuration of the repository is the one checked.
    run(Command::new(root.join("deploy/provision.sh"))
        .args(["--profile", "debug", "--force-config"])
        .args(["packages", "toolchain", "build", "install", "demo"])
        .current_dir(root))?;
    step("[4/5] systemd-analyze verify, mirror-agent check-config");
    verify_units(&work)?;
    check_configs(root, &work)?;
    step("[5/5] the demo in a network namespace");
    demo(root, &work)?;

    println!(
        "==> deploy-check passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(name: &str) {
    println!("==> deploy-check {name}");
}

// ---------------------------------------------------------------------------
// 1. tools
// ---------------------------------------------------------------------------

/// Installs what is missing; returns the venv holding the Python tools.
fn tools(work: &Path) -> Result<PathBuf> {
    let mut missing: BTreeSet<&str> = COMMANDS
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    let venv = work.join("venv");
    let has_venv = |venv: &Path| {
        ["yamllint", "kubernetes-validate"]
            .iter()
            .all(|tool| venv.join("bin").join(tool).is_file())
    };
    // `python3 -m venv` needs ensurepip, which Debian ships apart.
    let needs_venv_module = !has_venv(&venv) && !python_has_venv();
    if needs_venv_module {
        missing.insert("python3-venv");
    }
    if missing.is_empty() {
        println!("    ok: {}", command_names());
    } else {
        let list: Vec<&str> = missing.into_iter().collect();
        println!("    installing Debian packages: {}", list.join(" "));
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&list)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    if has_venv(&venv) {
        println!("    ok: {} in {}", PIP_PACKAGES.join(" "), venv.display());
        return Ok(venv);
    }
    println!(
        "    installing {} into {}",
        PIP_PACKAGES.join(" "),
        venv.display()
    );
    // A stale or half-made venv is made anew.
    let _ = fs::remove_dir_all(&venv);
    let python = if needs_venv_module {
        // The Debian python3 that python3-venv completes.
        "/usr/bin/python3"
    } else {
        "python3"
    };
    run(Command::new(python).arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PIP_PACKAGES))?;
    ensure!(
        has_venv(&venv),
        "pip installed {} but the tools are not in {}",
        PIP_PACKAGES.join(" "),
        venv.join("bin").display()
    );
    Ok(venv)
}

fn command_names() -> String {
    COMMANDS
        .iter()
        .map(|(command, _)| *command)
        .collect::<Vec<_>>()
        .join(" ")
}

fn python_has_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path)
            .any(|dir| fs::metadata(dir.join(program)).is_ok_and(|meta| meta.is_file()))
    })
}

// ---------------------------------------------------------------------------
// 2. static checks
// ---------------------------------------------------------------------------

fn static_checks(root: &Path, venv: &Path) -> Result<()> {
    run(Command::new("ruby")
        .args(["-c", "Vagrantfile"])
        .current_dir(root))?;
    run(Command::new("bash")
        .args(["-n", "deploy/provision.sh"])
        .current_dir(root))?;

    let manifests = manifests(root)?;
    run(Command::new(venv.join("bin/yamllint"))
        .args(["--strict", "-d", YAMLLINT_CONFIG])
        .args(&manifests)
        .current_dir(root))?;
    run(Command::new(venv.join("bin/kubernetes-validate"))
        .args([
            "--kubernetes-version",
            KUBERNETES_VERSION,
            "--strict",
            "--quiet",
        ])
        .args(&manifests)
        .current_dir(root))?;
    println!(
        "    ok: {} manifests valid for Kubernetes {KUBERNETES_VERSION}",
        manifests.len()
    );

    check_capabilities(root)?;
    check_dockerfile(root)?;
    Ok(())
}

/// deploy/k8s/*.yaml, relative to the root, sorted.
fn manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("deploy/k8s");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter_map(|path| path.strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no manifests in {}", dir.display());
    Ok(files)
}

fn read(root: &Path, file: &str) -> Result<String> {
    fs::read_to_string(root.join(file)).with_context(|| format!("cannot read {file}"))
}

/// The unit, the script's background mode and the sidecar grant the same
/// capabilities: the three, and only them.
fn check_capabilities(root: &Path) -> Result<()> {
    let expected: BTreeSet<String> = AGENT_CAPS.iter().map(|cap| cap.to_string()).collect();
    let normalize = |caps: &mut dyn Iterator<Item = &str>| -> BTreeSet<String> {
        caps.map(|cap| {
            cap.trim()
                .trim_start_matches("CAP_")
                .trim_start_matches('+')
                .to_uppercase()
        })
        .filter(|cap| !cap.is_empty())
        .collect()
    };

    let unit = read(root, "deploy/systemd/mirror-agent.service")?;
    for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
        let value = unit
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .with_context(|| format!("the unit has no {key}"))?;
        let caps = normalize(&mut value.split_whitespace());
        ensure!(
            caps == expected,
            "mirror-agent.service {key}{value}: expected {expected:?}"
        );
    }

    let script = read(root, "deploy/provision.sh")?;
    let value = script
        .lines()
        .find_map(|line| line.strip_prefix("AGENT_CAPS="))
        .context("deploy/provision.sh has no AGENT_CAPS=")?;
    let caps = normalize(&mut value.split(','));
    ensure!(
        caps == expected,
        "deploy/provision.sh AGENT_CAPS={value}: expected {expected:?}"
    );

    let manifest = read(root, "deploy/k8s/myapp.yaml")?;
    let adds: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("add: ["))
        .collect();
    ensure!(
        adds.len() == 1,
        "deploy/k8s/myapp.yaml: expected one `add: [...]` (the sidecar), found {}",
        adds.len()
    );
    let caps = normalize(&mut adds[0].trim_end_matches(']').split(','));
    ensure!(
        caps == expected,
        "deploy/k8s/myapp.yaml adds {caps:?}: expected {expected:?}"
    );
    println!(
        "    ok: unit, provision.sh and the sidecar grant {}",
        AGENT_CAPS.join(" ")
    );
    Ok(())
}

/// Docker cannot run here: check what the Dockerfile takes from the rest of
/// the repository (the Rust version, the eBPF nightly, the Debian packages
/// of `cargo xtask setup`).
fn check_dockerfile(root: &Path) -> Result<()> {
    let dockerfile = read(root, "deploy/Dockerfile")?;
    let workspace = read(root, "Cargo.toml")?;
    let rust_version = workspace
        .lines()
        .find_map(|line| line.trim().strip_prefix("rust-version = "))
        .map(|value| value.trim_matches('"').to_string())
        .context("Cargo.toml has no rust-version")?;
    let builder = format!("FROM rust:{rust_version}-bookworm AS build");
    ensure!(
        dockerfile.lines().any(|line| line.trim() == builder),
        "deploy/Dockerfile: expected the builder `{builder}` (rust-version of Cargo.toml)"
    );
    let nightly = format!("ARG EBPF_TOOLCHAIN={}", toolchain::PINNED_NIGHTLY);
    ensure!(
        dockerfile.lines().any(|line| line.trim() == nightly),
        "deploy/Dockerfile: expected `{nightly}` (xtask/src/toolchain.rs)"
    );
    for package in setup_build_packages(root)? {
        ensure!(
            dockerfile.split_whitespace().any(|word| word == package),
            "deploy/Dockerfile does not install {package}, which `cargo xtask setup` \
             installs to build (xtask/src/setup.rs, BUILD_PACKAGES)"
        );
    }
    let froms = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .count();
    ensure!(
        froms == 2,
        "deploy/Dockerfile: expected two stages (builder, runtime), found {froms}"
    );
    let ignore = read(root, "deploy/Dockerfile.dockerignore")?;
    ensure!(
        ignore.lines().any(|line| line.trim() == "target"),
        "deploy/Dockerfile.dockerignore must leave target/ out of the build context"
    );
    println!(
        "    ok: Dockerfile builds with rust {rust_version}, {} (docker itself cannot run here)",
        toolchain::PINNED_NIGHTLY
    );
    Ok(())
}

/// The `BUILD_PACKAGES` list of xtask/src/setup.rs, read from its source
/// (the constant is private to setup).
fn setup_build_packages(root: &Path) -> Result<Vec<String>> {
    let source = read(root, "xtask/src/setup.rs")?;
    let list = source
        .split_once("const BUILD_PACKAGES")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map(|(list, _)| list)
        .context("xtask/src/setup.rs has no BUILD_PACKAGES list")?;
    let packages: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    ensure!(!packages.is_empty(), "BUILD_PACKAGES of setup.rs is empty");
    Ok(packages)
}

// ---------------------------------------------------------------------------
// 4. systemd-analyze verify
// ---------------------------------------------------------------------------

/// Verifies the installed units. A template is verified through an instance:
/// a copy named myapp@v1.service in a scratch directory.
fn verify_units(work: &Path) -> Result<()> {
    let unit = Path::new(UNIT_DIR).join("mirror-agent.service");
    run(Command::new("systemd-analyze").arg("verify").arg(&unit))?;
    let scratch = work.join("units");
    fs::create_dir_all(&scratch)?;
    let instance = scratch.join("myapp@v1.service");
    fs::copy(Path::new(UNIT_DIR).join("myapp@.service"), &instance)
        .context("copying the installed myapp@.service")?;
    run(Command::new("systemd-analyze").arg("verify").arg(&instance))?;
    println!("    ok: {} and myapp@.service", unit.display());
    Ok(())
}

/// The installed agent validates the VM's configuration and the one the
/// Kubernetes ConfigMap carries.
fn check_configs(root: &Path, work: &Path) -> Result<()> {
    let agent = Path::new("/usr/local/bin/mirror-agent");
    let configmap = read(root, "deploy/k8s/mirror-config.yaml")?;
    let k8s_config = work.join("k8s-mirror.toml");
    fs::write(&k8s_config, block_scalar(&configmap, "mirror.toml")?)?;
    for config in [root.join("deploy/config/mirror.toml"), k8s_config] {
        let output = Command::new(agent)
            .arg("check-config")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", agent.display()))?;
        ensure!(
            output.status.success(),
            "mirror-agent check-config {}: {}",
            config.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    println!("    ok: deploy/config/mirror.toml and the ConfigMap's mirror.toml");
    Ok(())
}

/// The text of the block scalar `KEY: |` in a YAML document, unindented:
/// the lines after it that are indented deeper than the key, or blank.
fn block_scalar(yaml: &str, key: &str) -> Result<String> {
    let mut lines = yaml.lines();
    let indent = lines
        .by_ref()
        .find_map(|line| {
            let trimmed = line.trim_start();
            (trimmed == format!("{key}: |")).then(|| line.len() - trimmed.len())
        })
        .with_context(|| format!("no `{key}: |` block"))?;
    let block: Vec<&str> = lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > indent)
        .collect();
    let depth = block
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut text: String = block
        .iter()
        .map(|line| line.get(depth..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    Ok(text)
}

// ---------------------------------------------------------------------------
// 5. the demo
// ---------------------------------------------------------------------------

/// A network namespace for the demo, deleted on drop; the demo is stopped
/// first (also when a check failed).
struct DemoNetns {
    name: String,
    script: PathBuf,
    run_dir: PathBuf,
    stopped: bool,
}

impl DemoNetns {
    fn create(root: &Path, work: &Path) -> Result<Self> {
        let name = format!("mirror-deploy-{}", std::process::id());
        // A namespace of an earlier run that was killed: remove it first.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Self {
            name,
            script: root.join("deploy/provision.sh"),
            run_dir: work.join("run"),
            stopped: false,
        };
        run(Command::new("ip").args(["-n", &netns.name, "link", "set", "lo", "up"]))?;
        Ok(netns)
    }

    /// `ip netns exec NAME deploy/provision.sh --no-systemd --run-dir DIR PHASES...`
    fn provision(&self, phases: &[&str]) -> Result<()> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(&self.script)
            .arg("--no-systemd")
            .arg("--run-dir")
            .arg(&self.run_dir)
            .args(phases))
    }

    /// The pids the background mode recorded.
    fn pids(&self) -> Vec<(String, u32)> {
        let Ok(entries) = fs::read_dir(&self.run_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "pid"))
            .filter_map(|path| {
                let pid = fs::read_to_string(&path).ok()?.trim().parse().ok()?;
                let name = path.file_stem()?.to_string_lossy().into_owned();
                Some((name, pid))
            })
            .collect()
    }

    fn stop(&mut self) -> Result<()> {
        self.stopped = true;
        self.provision(&["stop"])
    }
}

impl Drop for DemoNetns {
    fn drop(&mut self) {
        if !self.stopped
            && let Err(err) = self.stop()
        {
            eprintln!("warning: stopping the demo failed: {err:#}");
        }
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|status| status.success());
        if !deleted {
            eprintln!("warning: cannot delete network namespace {}", self.name);
        }
    }
}

fn demo(root: &Path, work: &Path) -> Result<()> {
    let mut netns = DemoNetns::create(root, work)?;
    // Files of an earlier run would be taken for running processes.
    let _ = fs::remove_dir_all(&netns.run_dir);
    netns.provision(&["start", "check"])?;
    let pids = netns.pids();
    ensure!(
        pids.len() == 4,
        "expected 4 background processes (myapp v1, v2, v3, mirror-agent), found {pids:?}"
    );
    let agent_log = fs::read_to_string(netns.run_dir.join("mirror-agent.log"))?;
    ensure!(
        agent_log.contains("capture attached"),
        "the agent's log has no `capture attached`:\n{agent_log}"
    );
    netns.stop()?;
    let left: Vec<&(String, u32)> = pids.iter().filter(|(_, pid)| alive(*pid)).collect();
    ensure!(left.is_empty(), "still running after stop: {left:?}");
    ensure!(
        netns.pids().is_empty(),
        "pid files left in {}",
        netns.run_dir.display()
    );
    drop(netns);
    println!("    ok: the demo ran as the VM runs it, and nothing is left running");
    Ok(())
}

/// Whether a process runs: it exists and is not a zombie (PID 1 of a CI
/// container may not reap the orphans it inherits).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z')
    })
}

// ---------------------------------------------------------------------------

/// Runs a command with its output shown; fails unless it succeeds.
fn run(command: &mut Command) -> Result<()> {
    let shown = setup::show(command);
    println!("$ {shown}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::block_scalar;

    #[test]
    fn a_block_scalar_is_read_unindented_up_to_the_next_key() {
        let yaml = "data:\n  mirror.toml: |\n    a = 1\n\n    [t]\n      b = 2\n  other: x\n";
        assert_eq!(
            block_scalar(yaml, "mirror.toml").unwrap(),
            "a = 1\n\n[t]\n  b = 2\n"
        );
        assert!(block_scalar(yaml, "missing").is_err());
    }
}
