//! The capabilities of the systemd unit (deploy/systemd/mirror-agent.service):
//! CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, as a non-root user.
//!
//! - With exactly those three, ambient, as uid 65534, the agent attaches and
//!   a request to the primary reaches both shadows.
//! - Without any one of them it exits with one line that names it.
//! - A non-root process given the three without the ambient set (what
//!   Kubernetes does for a non-root container) has none of them.
//! - The kernel itself refuses the step each one is for, so none of them is
//!   only the agent's preflight asking: a probe (this test binary run again
//!   as uid 65534) loads and attaches the agent's own eBPF object step by
//!   step: without CAP_BPF the maps are refused (EPERM), without
//!   CAP_NET_ADMIN the TC programs (EPERM), and without CAP_PERFMON the
//!   verifier rejects the payload copier.
//! - Nothing else is needed: RLIMIT_MEMLOCK at 0 changes nothing on Linux
//!   5.11+ (BPF memory is charged to the memory cgroup), so no
//!   CAP_SYS_RESOURCE.
//!
//! Needs root and the agent binary: `cargo build -p mirror-agent &&
//! cargo test -p mirror-tests --test capabilities`.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{Agent, Netns, Server, Signal, process::status_field, wait_until};
use mirror_tests::{
    Family, Topology,
    agent::{ATTACH_TIMEOUT, binary as agent_binary, refusal},
    require_kernel,
    topology::{SERVER_IF, SERVER_V4},
};

/// The unit's capabilities, in setpriv's spelling, with their numbers
/// (linux/capability.h).
const CAPS: [(&str, u32); 3] = [("bpf", 39), ("net_admin", 12), ("perfmon", 38)];
/// The user the agent runs as here: nobody.
const UID: &str = "65534";
const PRIMARY_PORT: u16 = 8080;
const SHADOW_PORTS: [u16; 2] = [9000, 9001];
/// Environment of the probe process (see `capability_probe_child`).
const PROBE_OBJECT_ENV: &str = "MIRROR_CAPS_PROBE_OBJECT";
const PROBE_IFACE_ENV: &str = "MIRROR_CAPS_PROBE_IFACE";
const PROBE_TEST: &str = "capability_probe_child";

// ---------------------------------------------------------------------------
// Running a program as uid 65534 with given capabilities
// ---------------------------------------------------------------------------

/// How the capabilities reach the program.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Inheritable, ambient and bounding set: what systemd's
    /// AmbientCapabilities= + CapabilityBoundingSet= do.
    Ambient,
    /// Inheritable and bounding set only, no ambient: what a container
    /// runtime gives a non-root container (capabilities.add).
    NoAmbient,
}

/// `setpriv` arguments: uid/gid 65534, no groups, no new privileges and
/// exactly `caps`.
fn setpriv_args(caps: &[&str], grant: Grant) -> Vec<String> {
    let set: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|cap| format!("+{cap}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".to_owned(),
        "--no-new-privs".to_owned(),
        format!("--inh-caps={set}"),
        format!("--bounding-set={set}"),
    ];
    if grant == Grant::Ambient {
        args.push(format!("--ambient-caps={set}"));
    }
    args
}

/// `ip netns exec NETNS [prlimit --memlock=0:0] setpriv ... PROGRAM`.
fn command_as(
    netns: &Netns,
    caps: &[&str],
    grant: Grant,
    no_memlock: bool,
    program: &Path,
) -> Command {
    let mut command = if no_memlock {
        let mut command = netns.command("prlimit");
        command.args(["--memlock=0:0", "setpriv"]);
        command
    } else {
        netns.command("setpriv")
    };
    command
        .args(setpriv_args(caps, grant))
        .arg(program)
        .stdin(Stdio::null());
    command
}

fn all_caps() -> Vec<&'static str> {
    CAPS.iter().map(|(name, _)| *name).collect()
}

fn caps_without(missing: &str) -> Vec<&'static str> {
    CAPS.iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != missing)
        .collect()
}

fn cap_name(cap: &str) -> String {
    format!("CAP_{}", cap.to_uppercase())
}

/// Linux 5.11 and later charge BPF memory to the memory cgroup, not to
/// RLIMIT_MEMLOCK.
fn kernel_charges_memcg() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (5, 11)
}

fn cap_mask(caps: &[&str]) -> u64 {
    CAPS.iter()
        .filter(|(name, _)| caps.contains(name))
        .fold(0, |mask, (_, bit)| mask | 1 << bit)
}

/// The per-target `mirror_shadow_requests_total{...,outcome="2xx"}` values
/// the agent serves on its metrics endpoint (curl inside `netns`).
fn answered_by_targets(netns: &Netns) -> Vec<u64> {
    let Ok(text) = netns.exec(
        "curl",
        ["-fsS", "--max-time", "2", "http://127.0.0.1:9464/metrics"],
    ) else {
        return Vec::new();
    };
    text.lines()
        .filter(|line| {
            line.starts_with("mirror_shadow_requests_total{") && line.contains("outcome=\"2xx\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .collect()
}

// ---------------------------------------------------------------------------
// The agent with the unit's capabilities
// ---------------------------------------------------------------------------

#[test]
fn a_non_root_agent_with_bpf_net_admin_perfmon_attaches_and_mirrors() -> Result<()> {
    require_kernel!();
    let topology = Topology::new()?;
    let primary = Server::start(
        &topology.server,
        topology.server_addr(Family::V4, PRIMARY_PORT),
    )?;
    let shadows = SHADOW_PORTS
        .iter()
        .map(|port| {
            Server::start(
                &topology.server,
                SocketAddr::new(IpAddr::V4(SERVER_V4), *port),
            )
        })
        .collect::<Result<Vec<_>>>()?;

    let caps = all_caps();
    let mut command = command_as(
        &topology.server,
        &caps,
        Grant::Ambient,
        // Also without RLIMIT_MEMLOCK, where the kernel does not charge it:
        // the agent cannot raise it (no CAP_SYS_RESOURCE) and needs not.
        kernel_charges_memcg(),
        &agent_binary()?,
    );
    command.args(["--iface", SERVER_IF, "--port", &PRIMARY_PORT.to_string()]);
    for port in SHADOW_PORTS {
        command.args(["--shadow", &format!("http://{SERVER_V4}:{port}")]);
    }
    let agent = Agent::spawn(&mut command)?.attached(ATTACH_TIMEOUT)?;

    // The process is uid 65534 with exactly the three capabilities.
    let pid = agent.pid();
    let uids = status_field(pid, "Uid")?;
    ensure!(
        uids.split_whitespace().all(|uid| uid == UID),
        "uids: {uids}"
    );
    let expected = format!("{:016x}", cap_mask(&caps));
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        let value = status_field(pid, set)?;
        ensure!(value == expected, "{set} {value}, expected {expected}");
    }

    // A request to the primary reaches both shadows.
    let url = format!(
        "http://{}/capabilities-check",
        topology.server_addr(Family::V4, PRIMARY_PORT)
    );
    let answer = topology.client.exec("curl", ["-fsS", &url])?;
    ensure!(answer == "ok", "the primary answered {answer:?}");
    let answered = wait_until(Duration::from_secs(10), || {
        let counts = answered_by_targets(&topology.server);
        counts.len() == SHADOW_PORTS.len() && counts.iter().all(|n| *n >= 1)
    });
    let status = agent.stop(Signal::TERM, Duration::from_secs(10))?.status;
    ensure!(
        answered,
        "the shadows did not answer the copy within 10 s; metrics: {:?}",
        answered_by_targets(&topology.server)
    );
    ensure!(status.success(), "the agent exited with {status}");

    ensure!(primary.stop()?.request_count() == 1);
    for (port, shadow) in SHADOW_PORTS.iter().zip(shadows) {
        let received = shadow.stop()?;
        let heads: Vec<String> = received
            .requests()
            .map(|r| String::from_utf8_lossy(&r.head).into_owned())
            .collect();
        ensure!(
            heads.len() == 1
                && heads[0].starts_with("GET /capabilities-check HTTP/1.1\r\n")
                && heads[0].contains("X-Mirrored-By: mirror"),
            "shadow :{port} received {heads:?}"
        );
    }
    Ok(())
}

/// Runs the agent to completion with `caps`; returns its output.
fn run_agent_with(netns: &Netns, caps: &[&str], grant: Grant) -> Result<Output> {
    let mut command = command_as(netns, caps, grant, false, &agent_binary()?);
    command.args(["--iface", "lo", "--port", "80"]);
    Ok(command.output()?)
}

/// The capabilities after "missing capabilities:" in the agent's message,
/// up to the end of that sentence.
fn missing_list(line: &str) -> Vec<String> {
    line.split_once("missing capabilities:")
        .map(|(_, rest)| rest.split('.').next().unwrap_or_default())
        .unwrap_or_default()
        .split(',')
        .map(|cap| cap.trim().to_owned())
        .filter(|cap| !cap.is_empty())
        .collect()
}

#[test]
fn without_any_one_of_the_three_the_agent_names_it_in_one_line() -> Result<()> {
    require_kernel!();
    // Its own namespace: should the agent attach, it is to this lo.
    let netns = Netns::new("caps")?;
    for (missing, _) in CAPS {
        let output = run_agent_with(&netns, &caps_without(missing), Grant::Ambient)?;
        let line = refusal(&output).with_context(|| format!("without {}", cap_name(missing)))?;
        ensure!(
            line.contains(&cap_name(missing)),
            "{} not named: {line}",
            cap_name(missing)
        );
        // The line goes on with a hint that names all three.
        let named = missing_list(&line);
        ensure!(
            named == [cap_name(missing)],
            "without {}, the agent says these are missing: {named:?}",
            cap_name(missing)
        );
    }
    Ok(())
}

#[test]
fn without_the_ambient_set_a_non_root_agent_has_none_of_them() -> Result<()> {
    require_kernel!();
    // A non-root container with capabilities.add gets them in its bounding
    // and inheritable sets, not the ambient one: execve drops them all.
    let netns = Netns::new("noamb")?;
    let output = run_agent_with(&netns, &all_caps(), Grant::NoAmbient)?;
    let line = refusal(&output)?;
    let named = missing_list(&line);
    for (cap, _) in CAPS {
        ensure!(
            named.contains(&cap_name(cap)),
            "{} not among the missing: {line}",
            cap_name(cap)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The kernel's own answer, without the agent's preflight
// ---------------------------------------------------------------------------

/// The eBPF object the agent binary embeds: its build script's output,
/// which cargo lists among the binary's sources (`mirror-agent.d`).
fn ebpf_object() -> Result<PathBuf> {
    let binary = agent_binary()?;
    let dep_info = binary.with_extension("d");
    let text = std::fs::read_to_string(&dep_info)
        .with_context(|| format!("cannot read {}", dep_info.display()))?;
    text.split_whitespace()
        .map(PathBuf::from)
        .find(|path| path.ends_with("out/mirror") && path.is_file())
        .with_context(|| format!("{} lists no eBPF object (…/out/mirror)", dep_info.display()))
}

/// How far the probe got: the step it failed at and the kernel's errno.
#[derive(Debug, PartialEq, Eq)]
enum ProbeResult {
    Attached,
    Failed {
        step: String,
        errno: Option<i32>,
        detail: String,
    },
}

/// Runs this test binary again, as uid 65534 with `caps`, inside `netns`,
/// to run only `capability_probe_child`.
fn probe(netns: &Netns, object: &Path, caps: &[&str], no_memlock: bool) -> Result<ProbeResult> {
    let exe = std::env::current_exe()?;
    let output = command_as(netns, caps, Grant::Ambient, no_memlock, &exe)
        .args([PROBE_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(PROBE_OBJECT_ENV, object)
        .env(PROBE_IFACE_ENV, "lo")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        // libtest prints "test NAME ... " on the same line first.
        .find_map(|line| line.split_once("probe-result ").map(|(_, result)| result))
        .with_context(|| {
            format!(
                "the probe printed no result ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    if result == "attached" {
        return Ok(ProbeResult::Attached);
    }
    // `failed STEP ERRNO DETAIL...`
    let mut words = result.splitn(4, ' ');
    ensure!(words.next() == Some("failed"), "probe result {result:?}");
    let step = words.next().unwrap_or_default().to_owned();
    let errno = words.next().and_then(|e| e.parse().ok());
    let detail = words.next().unwrap_or_default().to_owned();
    Ok(ProbeResult::Failed {
        step,
        errno,
        detail,
    })
}

#[test]
fn the_kernel_refuses_each_step_without_its_capability() -> Result<()> {
    require_kernel!();
    let object = ebpf_object()?;
    let netns = Netns::new("probe")?;

    let with_all = probe(&netns, &object, &all_caps(), kernel_charges_memcg())?;
    ensure!(
        with_all == ProbeResult::Attached,
        "with the three capabilities: {with_all:?}"
    );

    // (capability, the step that must fail, the errno, or None: any
    // refusal of the verifier but EPERM)
    let expectations = [
        ("bpf", "maps", Some(libc::EPERM)),
        ("net_admin", "load", Some(libc::EPERM)),
        ("perfmon", "load", None),
    ];
    for (missing, expected_step, expected_errno) in expectations {
        let result = probe(&netns, &object, &caps_without(missing), false)?;
        let ProbeResult::Failed {
            step,
            errno,
            detail,
        } = &result
        else {
            bail!(
                "the kernel accepted everything without {}: the unit, the \
                 manifests and the agent's preflight could drop it",
                cap_name(missing)
            );
        };
        let errno_matches = match expected_errno {
            Some(expected) => *errno == Some(expected),
            None => errno.is_some() && *errno != Some(libc::EPERM),
        };
        ensure!(
            step == expected_step && errno_matches,
            "without {}: expected step {expected_step} to fail with {expected_errno:?}, \
             got {result:?}",
            cap_name(missing)
        );
        eprintln!(
            "without {}: {step} refused, errno {errno:?}: {detail}",
            cap_name(missing)
        );
    }
    Ok(())
}

/// Not a test of its own: the process `probe` starts. Without its
/// environment (a normal test run) it does nothing.
///
/// Loads and attaches the agent's eBPF object the way the agent does,
/// without its preflight, and prints `probe-result attached` or
/// `probe-result failed STEP ERRNO DETAIL`.
#[test]
fn capability_probe_child() {
    let (Some(object), Some(iface)) = (
        std::env::var_os(PROBE_OBJECT_ENV),
        std::env::var(PROBE_IFACE_ENV).ok(),
    ) else {
        return;
    };
    let result = match probe_steps(Path::new(&object), &iface) {
        Ok(()) => "attached".to_owned(),
        Err((step, error)) => {
            let errno = errno_of(&*error).map_or_else(|| "-".to_owned(), |e| e.to_string());
            format!("failed {step} {errno} {}", summary(&*error))
        }
    };
    println!("\nprobe-result {result}");
}

type StepError = (&'static str, Box<dyn std::error::Error>);

fn probe_steps(object: &Path, iface: &str) -> Result<(), StepError> {
    use aya::{
        EbpfLoader,
        maps::ProgramArray,
        programs::{
            LinkOrder, SchedClassifier, TcAttachType,
            tc::{self, NlOptions, TcAttachOptions},
        },
        util::KernelVersion,
    };
    use mirror_common::{COPY_PROGRAM_NAME, JUMP_COPY, MAP_EVENTS, MAP_JUMP, PROGRAM_NAME};

    let step = |name: &'static str| move |e: Box<dyn std::error::Error>| (name, e);
    let bytes = std::fs::read(object).map_err(|e| step("read")(e.into()))?;
    // Creates the maps (and loads BTF).
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_EVENTS, 1 << 20)
        .load(&bytes)
        .map_err(|e| step("maps")(e.into()))?;
    // Loads program `name` of the object (the verifier runs here).
    let load = |ebpf: &mut aya::Ebpf, name: &str| -> Result<(), StepError> {
        let program: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| step("load")(format!("no program {name}").into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| step("load")(e.into()))?;
        program.load().map_err(|e| step("load")(e.into()))
    };
    // The copier first, as the agent does: the classifier tail-calls it.
    load(&mut ebpf, COPY_PROGRAM_NAME)?;
    let copier: &SchedClassifier = ebpf
        .program(COPY_PROGRAM_NAME)
        .expect("loaded above")
        .try_into()
        .expect("a classifier");
    let copier_fd = copier
        .fd()
        .map_err(|e| step("load")(e.into()))?
        .try_clone()
        .map_err(|e| step("load")(e.into()))?;
    let mut jump: ProgramArray<_> = ebpf
        .map_mut(MAP_JUMP)
        .ok_or_else(|| step("maps")("no jump table".into()))?
        .try_into()
        .map_err(|e: aya::maps::MapError| step("maps")(e.into()))?;
    jump.set(JUMP_COPY, &copier_fd, 0)
        .map_err(|e| step("maps")(e.into()))?;
    load(&mut ebpf, PROGRAM_NAME)?;
    let classifier: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("loaded above")
        .try_into()
        .expect("a classifier");
    let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
    let options = if tcx {
        TcAttachOptions::TcxOrder(LinkOrder::first())
    } else {
        tc::qdisc_add_clsact(iface).map_err(|e| step("attach")(e.into()))?;
        TcAttachOptions::Netlink(NlOptions::default())
    };
    classifier
        .attach_with_options(iface, TcAttachType::Ingress, options)
        .map_err(|e| step("attach")(e.into()))?;
    // Dropping `ebpf` detaches and unloads everything.
    Ok(())
}

/// The OS error at the bottom of an error chain, if any.
fn errno_of(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(errno) = io.raw_os_error()
        {
            return Some(errno);
        }
        current = error.source();
    }
    // Some errors carry it only in their text: "... (os error 28)".
    let text = error.to_string();
    let (_, rest) = text.rsplit_once("os error ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// One line about an error: its message, and the verifier's last words
/// when it has a log (they say why it refused).
fn summary(error: &(dyn std::error::Error + 'static)) -> String {
    let text = error.to_string();
    let (message, log) = text
        .split_once("Verifier output:")
        .unwrap_or((text.as_str(), ""));
    let message: String = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches('.')
        .chars()
        .take(160)
        .collect();
    let verdict = log.lines().map(str::trim).rev().find(|line| {
        !line.is_empty()
            && !line.starts_with("verification time")
            && !line.starts_with("stack depth")
            && !line.starts_with("processed ")
    });
    match verdict {
        Some(verdict) => format!("{message}; the verifier: {verdict}"),
        None => message,
    }
}
