//! The test that runs inside each VM, as `xtask vm-guest` started by the
//! initramfs's /init: for every attach mode the kernel has, a client
//! namespace sends real HTTP (curl) over a veth pair to v1 in a second
//! namespace, where mirror-agent captures it and mirrors it to a shadow;
//! the shadow must receive what v1 received and the counters must add up.
//!
//! Everything it has to say goes to stdout as lines starting with
//! [`LINE_PREFIX`], which the host picks out of the serial console.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{
    Agent, Link, Netns, Received, Server, Signal, agent::ATTACHED, command, pseudo_random, veth,
    wait_until,
};

/// Every line meant for the host starts with this.
pub const LINE_PREFIX: &str = "vm-test:";
/// The guest's last line: `vm-test: status pass` or `... status fail: WHY`.
pub const STATUS: &str = "status";
/// One line per attach mode: `vm-test: result mode=... attached=... ...`.
pub const RESULT: &str = "result";

const CLIENT_ADDR: &str = "10.200.0.2";
const V1_ADDR: &str = "10.200.0.1";
const V1_PORT: u16 = 8080;
const SHADOW: &str = "127.0.0.1:9000";
/// The body of the POST requests: several ring records per segment, and
/// segments merged by GRO.
const BODY_BYTES: usize = 100 << 10;
const BODY_SEED: u64 = 0xb0d7;
/// Agent start under TCG: a debug build, the verifier's walk.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `xtask vm-guest test AGENT`: the whole test against the agent binary
/// `agent`; its last line says pass or fail.
pub fn run(agent: &Path) -> Result<()> {
    let result = test(agent);
    match &result {
        Ok(()) => say(STATUS, "pass"),
        Err(err) => say(STATUS, &format!("fail: {err:#}")),
    }
    result
}

fn say(kind: &str, text: &str) {
    println!("{LINE_PREFIX} {kind} {text}");
}

/// (major, minor) of the running kernel.
fn kernel_version() -> Result<(String, (u32, u32))> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_owned();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    Ok((release, version))
}

fn test(agent: &Path) -> Result<()> {
    let (release, version) = kernel_version()?;
    let has_tcx = version >= (6, 6);
    say("kernel", &release);
    std::fs::write("/tmp/body", pseudo_random(BODY_BYTES, BODY_SEED))?;
    let mut modes = vec!["auto", "netlink"];
    if has_tcx {
        modes.push("tcx");
    }
    let mut failures = Vec::new();
    for mode in modes {
        match mirror_through(agent, mode) {
            Ok(line) => say(RESULT, &line),
            Err(err) => {
                say(RESULT, &format!("mode={mode} FAILED: {err:#}"));
                failures.push(mode);
            }
        }
    }
    if !has_tcx {
        match tcx_refused(agent) {
            Ok(hint) => say(RESULT, &format!("mode=tcx refused as expected: {hint}")),
            Err(err) => {
                say(RESULT, &format!("mode=tcx FAILED: {err:#}"));
                failures.push("tcx");
            }
        }
    }
    ensure!(failures.is_empty(), "failed modes: {}", failures.join(", "));
    Ok(())
}

/// Client and v1 (with the agent and the shadow) in their own namespaces.
struct Hosts {
    client: Netns,
    v1: Netns,
}

fn hosts() -> Result<Hosts> {
    let client = Netns::named("client")?;
    let v1 = Netns::named("v1")?;
    veth(&client, "vc", &v1, "vv")?;
    Link::new(&client, "vc").up_with_address(&format!("{CLIENT_ADDR}/24"))?;
    Link::new(&v1, "vv").up_with_address(&format!("{V1_ADDR}/24"))?;
    Ok(Hosts { client, v1 })
}

/// One attach mode, end to end; the result line on success.
fn mirror_through(agent: &Path, mode: &str) -> Result<String> {
    let hosts = hosts()?;
    let v1_addr: SocketAddr = format!("{V1_ADDR}:{V1_PORT}").parse()?;
    let v1 = Server::start(&hosts.v1, v1_addr)?;
    let shadow = Server::start(&hosts.v1, SHADOW.parse()?)?;
    let port = V1_PORT.to_string();
    let target = format!("http://{SHADOW}");
    let args = [
        "--iface",
        "vv",
        "--port",
        &port,
        "--shadow",
        &target,
        "--attach",
        mode,
        // The egress program too: v1's responses, compared with the
        // shadow's answers (it proves the egress program on this kernel).
        "--compare",
        "--log-format",
        "json",
        "--nice",
        "0",
    ];
    let started = Instant::now();
    let agent = Agent::start(&hosts.v1, agent, &args)?;
    let attached = match agent.wait_for_log(ATTACHED, START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let stderr = agent
                .stop(Signal::KILL, Duration::from_secs(5))
                .map(|exit| exit.stderr_lines())
                .unwrap_or_default();
            let errors = agent_errors(&stderr);
            show_once(&errors);
            let first = errors
                .first()
                .and_then(|e| e.lines().next())
                .unwrap_or("no error logged");
            bail!("mirror-agent did not attach: {first}");
        }
    };
    let attach_mode = json_string(&attached, "attach_mode").unwrap_or_default();
    let load_seconds = started.elapsed().as_secs_f64();

    let sent = send_requests(&hosts.client)?;
    let settled = wait_until(SETTLE_TIMEOUT, || shadow.request_count() >= sent);
    let exit = agent.stop(Signal::TERM, Duration::from_secs(30))?;
    let (v1_log, shadow_log) = (log_of(&v1.stop()?), log_of(&shadow.stop()?));
    ensure!(
        v1_log.len() == sent,
        "v1 logged {} requests, the client sent {sent}",
        v1_log.len()
    );
    let status = exit.status;
    ensure!(status.success(), "mirror-agent exited with {status}");
    let kernel = exit.kernel_counters()?;
    let counts = exit
        .final_counts()?
        .into_values()
        .next()
        .context("mirror-agent logged no final counts")?;
    let get = |map: &BTreeMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
    let (matched, emitted, lost) = (
        get(&kernel, "records_matched"),
        get(&kernel, "records_emitted"),
        get(&kernel, "records_lost"),
    );
    let (captured, mirrored) = (counts.get("captured"), counts.get("sent"));
    // `final counts: comparison: URL (candidate): 100.0 % match of N
    // compared, ...` (or `nothing compared`): the number before ` compared`.
    let compared = exit
        .stderr_lines()
        .iter()
        .find_map(|l| {
            let verdict = l.split("final counts: comparison: ").nth(1)?;
            let before = &verdict[..verdict.find(" compared")?];
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    let line = format!(
        "mode={mode} attached={attach_mode} load+attach={load_seconds:.1}s sent={sent} \
         captured={captured} mirrored={mirrored} shadow_received={} ring_records={matched} \
         emitted={emitted} lost={lost} compared={compared}",
        shadow_log.len()
    );
    ensure!(settled, "the shadow did not get every request: {line}");
    ensure!(
        matched > 0 && matched == emitted + lost && lost == 0,
        "kernel counters do not add up: {line}"
    );
    ensure!(
        captured == sent as u64 && mirrored == sent as u64,
        "agent counts: {line}"
    );
    ensure!(
        compared == sent as u64,
        "the comparison (v1's responses from the egress program) did not judge every request: {line}"
    );
    let (mut a, mut b) = (v1_log, shadow_log);
    a.sort();
    b.sort();
    ensure!(
        a == b,
        "the shadow received other requests than v1: v1 {a:?}, shadow {b:?}"
    );
    let expected_mode = match mode {
        "auto" if kernel_version()?.1 >= (6, 6) => "tcx",
        "auto" => "netlink",
        other => other,
    };
    ensure!(
        attach_mode == expected_mode,
        "attached via {attach_mode}, expected {expected_mode}: {line}"
    );
    Ok(line)
}

/// Below 6.6, `--attach tcx` must fail with one clear line that points to
/// netlink.
fn tcx_refused(agent: &Path) -> Result<String> {
    let hosts = hosts()?;
    let args = [
        "--iface",
        "vv",
        "--port",
        "8080",
        "--attach",
        "tcx",
        "--log-format",
        "json",
    ];
    let exit = Agent::start(&hosts.v1, agent, &args)?.wait(START_TIMEOUT)?;
    ensure!(!exit.status.success(), "--attach tcx succeeded below 6.6");
    let errors = agent_errors(&exit.stderr_lines());
    match errors
        .iter()
        .find(|e| e.contains("netlink") && e.contains("6.6"))
    {
        Some(hint) => Ok(hint.clone()),
        None => {
            show_once(&errors);
            let first = errors
                .first()
                .and_then(|e| e.lines().next())
                .unwrap_or("no error logged");
            bail!("no hint to use netlink; the agent said: {first}")
        }
    }
}

/// curl from the client: keep-alive GETs, a POST with a body, a chunked
/// upload, and an HTTP/1.0 request on a connection of its own.
fn send_requests(client: &Netns) -> Result<usize> {
    let url = |path: &str| format!("http://{V1_ADDR}:{V1_PORT}{path}");
    let gets: Vec<String> = (1..=8).map(|i| url(&format!("/vm/get/{i}"))).collect();
    let curl = |args: &[&str]| -> Result<()> {
        let mut command = client.command("curl");
        command.args(["-sS", "--fail", "-o", "/dev/null"]);
        command.args(args);
        command::run(&mut command).map(drop)
    };
    let mut get_args: Vec<&str> = Vec::new();
    for get in &gets {
        get_args.extend(["-o", "/dev/null", get]);
    }
    let mut command = client.command("curl");
    command.args(["-sS", "--fail"]).args(&get_args);
    command::run(&mut command)?;
    curl(&[
        "-H",
        "Expect:",
        "--data-binary",
        "@/tmp/body",
        &url("/vm/post"),
    ])?;
    curl(&[
        "-H",
        "Expect:",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "@/tmp/body",
        &url("/vm/chunked"),
    ])?;
    curl(&["--http1.0", &url("/vm/http10")])?;
    Ok(gets.len() + 3)
}

/// `METHOD PATH BYTES FRAMING` of every request a server received.
fn log_of(received: &Received) -> Vec<String> {
    received
        .requests()
        .map(|request| {
            let head = String::from_utf8_lossy(&request.head);
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let framing = if request.chunked { "chunked" } else { "plain" };
            format!("{method} {path} {} {framing}", request.body.len())
        })
        .collect()
}

/// The messages of the agent's ERROR lines (JSON logs), unescaped: a
/// verifier log comes out as the kernel wrote it.
fn agent_errors(stderr: &[String]) -> Vec<String> {
    stderr
        .iter()
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            (value["level"] == "ERROR").then_some(())?;
            let message = value["fields"]["message"]
                .as_str()
                .or_else(|| value["message"].as_str())?;
            Some(message.to_owned())
        })
        .collect()
}

/// Prints the agent's errors for the host to show, unless an error with the
/// same first line was already printed (each attach mode fails alike on a
/// rejected program; only the map addresses in the verifier log differ).
fn show_once(errors: &[String]) {
    static SHOWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut shown = SHOWN.lock().expect("lock");
    for error in errors {
        let first = error.lines().next().unwrap_or_default().to_owned();
        if shown.contains(&first) {
            println!("mirror-agent error (as above): {first}");
        } else {
            println!("mirror-agent error:\n{error}");
            shown.push(first);
        }
    }
}

fn json_string(line: &str, key: &str) -> Option<String> {
    let rest = line.split(&format!("\"{key}\":\"")).nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines_are_read() {
        assert_eq!(
            json_string(r#"{"attach_mode":"netlink","x":1}"#, "attach_mode").as_deref(),
            Some("netlink")
        );
        let errors = agent_errors(&[
            r#"{"level":"ERROR","fields":{"message":"rejected\nlog line"}}"#.to_owned(),
            r#"{"level":"INFO","fields":{"message":"fine"}}"#.to_owned(),
            "not json".to_owned(),
        ]);
        assert_eq!(errors, ["rejected\nlog line"]);
    }

    #[test]
    fn a_server_log_line_is_method_path_size_framing() {
        let received = Received {
            connections: vec![mirror_testkit::server::ServerConnection {
                client: "10.200.0.2:40000".parse().unwrap(),
                requests: vec![mirror_testkit::ReceivedRequest {
                    head: b"POST /vm/chunked HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                    body: vec![0; 8],
                    chunked: true,
                    trailers: Vec::new(),
                }],
            }],
        };
        assert_eq!(log_of(&received), ["POST /vm/chunked 8 chunked"]);
    }
}
