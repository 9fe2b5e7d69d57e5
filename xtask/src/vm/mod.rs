//! `cargo xtask vm-test`: the capture program on the kernels our users run,
//! each booted in QEMU with a small initramfs that holds the agent and what
//! the guest test needs ([`guest`]).
//!
//! QEMU runs under TCG (software emulation) by default: this machine kind's
//! /dev/kvm is a nested software virtualisation that cannot boot a stock
//! Debian kernel. `--accel kvm` uses real KVM where a runner has it.

mod apt;
mod cpio;
pub mod guest;
mod kernel;

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use mirror_testkit::command::run as run_checked;

/// Where kernels, initramfs images and the test-only agent build live.
const CACHE: &str = "target/vm-test";
/// A guest that has not finished by then is killed: boot ~6 s, each attach
/// mode 15-30 s under TCG.
const VM_TIMEOUT: Duration = Duration::from_secs(300);
const BUSYBOX: &str = "/bin/busybox";
const QEMU: &str = "qemu-system-x86_64";

pub struct Options {
    /// `5.10`, `6.1`, `6.12`, `7.x` or `all`, as given (repeatable).
    pub kernels: Vec<String>,
    /// Build the program without the copy length's bounds check (a test
    /// of the test: the 6.1 verifier must reject it).
    pub broken_bounds_check: bool,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// Every line of the guest's console, live.
    pub verbose: bool,
    /// Guests run at once; None: one per CPU.
    pub jobs: Option<usize>,
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    let lines = kernel_lines(&options.kernels)?;
    ensure!(
        matches!(options.accel.as_str(), "tcg" | "kvm"),
        "--accel takes tcg or kvm, not `{}`",
        options.accel
    );
    let cache = root.join(CACHE);
    fs::create_dir_all(cache.join("kernels"))?;
    check_host_tools()?;

    let agent = build_agent(root, options.broken_bounds_check, options.verbose)?;
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let (agent, xtask) = (
        without_debug_info(&agent, &cache)?,
        without_debug_info(&xtask, &cache)?,
    );
    let apt = apt::Apt::new(&cache.join("apt"))?;
    if let Err(err) = apt.refresh() {
        // Offline: the lists of an earlier run, or the cached kernels.
        println!("    warning: {err:#}");
    }
    let mut prepared = Vec::new();
    for line in lines {
        println!("==> kernel {}: {}", line.name, line.origin);
        let kernel = kernel::prepare(line, &apt, &cache.join("kernels"))?;
        let image = cache.join(format!("initramfs-{}.cpio", kernel.package));
        build_initramfs(&image, &agent, &xtask, &kernel)?;
        prepared.push((kernel, image));
    }
    let jobs = jobs(options.jobs, prepared.len());
    println!(
        "==> booting {} kernel(s), {jobs} at a time (--jobs)",
        prepared.len()
    );
    let reports = boot_all(&prepared, options, jobs)?;

    println!("==> vm-test summary");
    let mut failed = Vec::new();
    for report in &reports {
        let verdict = if report.passed { "pass" } else { "FAIL" };
        println!(
            "  {} ({}): {verdict}, boot + test {:.0} s",
            report.release, report.package, report.seconds
        );
        for result in &report.results {
            println!("    {result}");
        }
        if !report.passed {
            failed.push(report.release.clone());
        }
    }
    ensure!(failed.is_empty(), "vm-test failed on {}", failed.join(", "));
    Ok(())
}

/// A TCG guest keeps one host CPU busy (one emulation thread), so one
/// guest per CPU roughly divides the matrix's time by the CPUs; never more
/// than the kernels, never less than one.
fn jobs(asked: Option<usize>, kernels: usize) -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    asked.unwrap_or(cpus).min(kernels).max(1)
}

/// Boots every prepared kernel, `jobs` at a time; the reports in the
/// kernels' order. Each guest's lines carry its kernel's tag, so
/// interleaved output stays readable.
fn boot_all(
    prepared: &[(kernel::Kernel, PathBuf)],
    options: &Options,
    jobs: usize,
) -> Result<Vec<Report>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Report>>>> =
        prepared.iter().map(|_| Default::default()).collect();
    thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((kernel, image)) = prepared.get(index) else {
                        break;
                    };
                    let report = boot(kernel, image, options);
                    *results[index].lock().expect("lock") = Some(report);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("lock")
                .expect("every kernel was booted")
        })
        .collect()
}

fn kernel_lines(names: &[String]) -> Result<Vec<kernel::Line>> {
    let names: Vec<&str> = if names.is_empty() {
        vec!["all"]
    } else {
        names.iter().map(String::as_str).collect()
    };
    let mut lines: Vec<kernel::Line> = Vec::new();
    for name in names {
        let named = if name == "all" {
            kernel::LINES.to_vec()
        } else {
            vec![kernel::line(name)?]
        };
        // Each kernel once, in the order first asked.
        for line in named {
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

fn check_host_tools() -> Result<()> {
    let missing: Vec<&str> = [(QEMU, "qemu-system-x86"), (BUSYBOX, "busybox-static")]
        .into_iter()
        .filter(|(program, _)| {
            Command::new(program)
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .map(|(_, package)| package)
        .collect();
    ensure!(
        missing.is_empty(),
        "cannot start a VM: Debian package(s) {} missing; `cargo xtask setup` installs them",
        missing.join(", ")
    );
    let linked = Command::new("ldd").arg(BUSYBOX).output()?;
    ensure!(
        !linked.status.success(),
        "{BUSYBOX} is dynamically linked: the guest needs busybox-static"
    );
    Ok(())
}

/// The agent as `cargo build` makes it (debug, as the kernel tests use it);
/// the broken variant in a target directory of its own so that it never
/// replaces the real one.
fn build_agent(root: &Path, broken: bool, verbose: bool) -> Result<PathBuf> {
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["build", "-p", "mirror-agent", "--bin", "mirror-agent"])
        .current_dir(root);
    let target_dir = if broken {
        let dir = root.join(CACHE).join("broken-agent");
        command
            .args(["--features", "broken-bounds-check", "--target-dir"])
            .arg(&dir);
        dir
    } else {
        root.join("target")
    };
    let what = if broken {
        "mirror-agent with the copy length's bounds check removed (test-only feature)"
    } else {
        "mirror-agent"
    };
    crate::steps::quiet_cargo(&format!("building {what}"), &mut command, verbose)?;
    Ok(target_dir.join("debug/mirror-agent"))
}

/// A copy of `binary` without its debug sections (symbols stay, so a
/// backtrace still names functions): the debug agent is ~140 MB, ~35 MB
/// without them, and every byte of the initramfs is copied, unpacked and
/// held in memory by each emulated guest.
fn without_debug_info(binary: &Path, cache: &Path) -> Result<PathBuf> {
    let name = binary.file_name().context("a binary has a file name")?;
    let out = cache.join("bin").join(name);
    fs::create_dir_all(cache.join("bin"))?;
    run_checked(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(binary)
            .arg(&out),
    )
    .context("objcopy (package binutils) could not strip the guest's binaries")?;
    Ok(out)
}

/// /init: mounts, modules, then the guest test; powers off whatever happens.
fn init_script(modules: &[String]) -> String {
    let mut script = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/usr/sbin:/usr/bin:/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t tmpfs tmpfs /run\n\
         mount -t tmpfs tmpfs /tmp\n\
         mount -t bpf bpf /sys/fs/bpf\n",
    );
    for module in modules {
        script.push_str(&format!(
            "insmod /lib/modules/vm/{module} || echo 'vm-test: status fail: insmod {module}'\n"
        ));
    }
    script.push_str(
        "ip link set lo up\n\
         /usr/bin/xtask vm-guest test /usr/bin/mirror-agent\n\
         echo \"vm-test: exit $?\"\n\
         poweroff -f\n",
    );
    script
}

fn build_initramfs(
    image: &Path,
    agent: &Path,
    xtask: &Path,
    kernel: &kernel::Kernel,
) -> Result<()> {
    let mut archive = cpio::Archive::default();
    let mut dirs = BTreeSet::new();
    let mut add_dirs = |archive: &mut cpio::Archive, path: &str| {
        let mut prefix = String::new();
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if dirs.insert(prefix.clone()) {
                archive.dir(&prefix);
            }
        }
    };
    for dir in [
        "/proc", "/sys", "/dev", "/run", "/tmp", "/etc", "/var", "/bin",
    ] {
        add_dirs(&mut archive, &format!("{dir}/x"));
    }
    // iproute2 keeps named namespaces under /var/run/netns.
    archive.symlink("/var/run", "../run");

    let mut binaries = vec![
        (PathBuf::from(BUSYBOX), "/bin/busybox".to_owned()),
        (agent.to_path_buf(), "/usr/bin/mirror-agent".to_owned()),
        (xtask.to_path_buf(), "/usr/bin/xtask".to_owned()),
    ];
    for tool in ["ip", "curl"] {
        let path = which(tool).with_context(|| format!("{tool} is not installed on the host"))?;
        binaries.push((path, format!("/usr/bin/{tool}")));
    }
    let mut libraries = BTreeSet::new();
    for (from, to) in &binaries {
        add_dirs(&mut archive, to);
        let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        archive.file(to, 0o755, &bytes);
        if to != "/bin/busybox" {
            libraries.extend(shared_libraries(from)?);
        }
    }
    for library in libraries {
        add_dirs(&mut archive, &library);
        // fs::read follows the symlinks the loader would.
        archive.file(&library, 0o755, &fs::read(&library)?);
    }
    let mut module_names = Vec::new();
    for module in &kernel.modules {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .context("module file name")?
            .to_owned();
        let path = format!("/lib/modules/vm/{name}");
        add_dirs(&mut archive, &path);
        archive.file(&path, 0o644, &fs::read(module)?);
        module_names.push(name);
    }
    archive.file("/init", 0o755, init_script(&module_names).as_bytes());
    let mut out = std::io::BufWriter::new(fs::File::create(image)?);
    archive.finish(&mut out)?;
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// The absolute paths `ldd` resolves for a dynamic binary (the loader too).
fn shared_libraries(binary: &Path) -> Result<Vec<String>> {
    let output = run_checked(Command::new("ldd").arg(binary))?;
    Ok(output
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect())
}

/// What one kernel's VM said.
struct Report {
    release: String,
    package: String,
    passed: bool,
    results: Vec<String>,
    seconds: f64,
}

fn boot(kernel: &kernel::Kernel, image: &Path, options: &Options) -> Result<Report> {
    let accel = if options.accel == "kvm" {
        "kvm".to_owned()
    } else {
        // One emulation thread: multi-threaded TCG once crashed 6.12 at boot.
        "tcg,thread=single".to_owned()
    };
    let mut command = Command::new(QEMU);
    command
        .args(["-accel", &accel, "-cpu", "max", "-machine", "q35"])
        .args(["-m", "1024", "-smp", "2"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel.bzimage)
        .arg("-initrd")
        .arg(image)
        .args([
            "-append",
            // panic=-1: a guest whose init dies reboots, and -no-reboot ends QEMU.
            "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .context("cannot start a VM: running qemu-system-x86_64 failed")?;
    let (sender, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().expect("piped");
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });

    let tag = format!("[{}]", kernel.line.name);
    let mut console = Vec::new();
    let mut release = kernel.line.name.to_owned();
    let mut results = Vec::new();
    let mut status = None;
    let deadline = started + VM_TIMEOUT;
    let timed_out = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(raw) => {
                // The serial console ends lines with CR LF and the firmware
                // draws with escape sequences.
                let line = raw.trim_end_matches('\r').to_owned();
                if options.verbose {
                    println!("  {tag} {line}");
                }
                if let Some(rest) = line.strip_prefix(guest::LINE_PREFIX) {
                    let rest = rest.trim_start();
                    if !options.verbose {
                        println!("  {tag} {rest}");
                    }
                    if let Some(text) = rest.strip_prefix("kernel ") {
                        release = text.to_owned();
                    } else if let Some(text) = rest.strip_prefix(guest::RESULT) {
                        results.push(text.trim().to_owned());
                    } else if let Some(text) = rest.strip_prefix(guest::STATUS) {
                        status.get_or_insert(text.trim().to_owned());
                    }
                }
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break false,
            Err(mpsc::RecvTimeoutError::Timeout) => break true,
        }
    };
    if timed_out {
        let _ = child.kill();
    }
    let exit = child.wait()?;
    let seconds = started.elapsed().as_secs_f64();
    let qemu_errors = stderr.join().unwrap_or_default();

    let passed = status.as_deref() == Some("pass");
    if !passed {
        let why = match (&status, timed_out) {
            (Some(status), _) => status.clone(),
            (None, true) => format!(
                "no result within {} s: the guest was killed",
                VM_TIMEOUT.as_secs()
            ),
            (None, false) if !console.iter().any(|l| l.starts_with(guest::LINE_PREFIX)) => {
                format!(
                    "the VM did not start the test (QEMU {exit}): {}",
                    qemu_errors.trim()
                )
            }
            (None, false) => format!("the guest ended without a result (QEMU {exit})"),
        };
        println!("  {tag} FAILED: {why}");
        if !options.verbose {
            // Everything after boot: the agent's errors, the verifier log.
            let from = console
                .iter()
                .position(|l| l.starts_with(guest::LINE_PREFIX))
                .unwrap_or(0);
            println!("  {tag} guest console from the test's start:");
            for line in &console[from..] {
                println!("  {tag} | {line}");
            }
        }
    }
    if passed && !exit.success() {
        bail!(
            "QEMU exited with {exit} after the guest passed: {}",
            qemu_errors.trim()
        );
    }
    Ok(Report {
        release,
        package: kernel.package.clone(),
        passed,
        results,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_expand() {
        let names = |list: &[&str]| -> Vec<&str> {
            kernel_lines(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .iter()
                .map(|l| l.name)
                .collect()
        };
        let every = ["5.10", "6.1", "6.12", "7.x"];
        assert_eq!(names(&[]), every);
        assert_eq!(names(&["all"]), every);
        assert_eq!(names(&["6.12"]), ["6.12"]);
        assert_eq!(names(&["7.x", "5.10"]), ["7.x", "5.10"]);
        assert_eq!(names(&["6.1", "all"]), ["6.1", "5.10", "6.12", "7.x"]);
        assert!(kernel_lines(&["4.19".to_owned()]).is_err());
    }

    #[test]
    fn guests_run_at_most_one_per_kernel() {
        assert_eq!(jobs(Some(8), 4), 4);
        assert_eq!(jobs(Some(2), 4), 2);
        assert_eq!(jobs(Some(0), 4), 1);
        let default = jobs(None, 64);
        assert!((1..=64).contains(&default));
        assert_eq!(jobs(None, 1), 1);
    }

    #[test]
    fn init_loads_every_module_then_runs_the_guest() {
        let script = init_script(&["veth.ko".to_owned(), "cls_bpf.ko".to_owned()]);
        let veth = script.find("insmod /lib/modules/vm/veth.ko").unwrap();
        let guest = script.find("xtask vm-guest test").unwrap();
        assert!(veth < guest);
        assert!(script.trim_end().ends_with("poweroff -f"));
    }

    #[test]
    fn ldd_output_is_read() {
        let libs = shared_libraries(Path::new("/bin/sh")).unwrap();
        assert!(libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");
    }
}
