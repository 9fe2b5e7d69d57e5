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
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::netns::{Netns, Process, veth};

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
/// Agent start under TCG: a debug build, the verifier's walk.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Subcommands of `xtask vm-guest`.
pub enum Guest<'a> {
    /// The whole test; `agent` is the binary to test.
    Test { agent: &'a Path },
    /// A tiny HTTP server that logs every request (`serve NAME ADDR`).
    Serve { name: &'a str, addr: &'a str },
}

pub fn run(what: Guest<'_>) -> Result<()> {
    match what {
        Guest::Test { agent } => {
            let result = test(agent);
            match &result {
                Ok(()) => say(STATUS, "pass"),
                Err(err) => say(STATUS, &format!("fail: {err:#}")),
            }
            result
        }
        Guest::Serve { name, addr } => serve(name, addr),
    }
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
    std::fs::write("/tmp/body", pseudo_random(BODY_BYTES))?;
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
    let client = Netns::new("client")?;
    let v1 = Netns::new("v1")?;
    veth(&client, "vc", &v1, "vv")?;
    client.address("vc", &format!("{CLIENT_ADDR}/24"))?;
    v1.address("vv", &format!("{V1_ADDR}/24"))?;
    Ok(Hosts { client, v1 })
}

fn xtask() -> Result<String> {
    Ok(std::env::current_exe()?.display().to_string())
}

fn start_server(netns: &Netns, name: &str, addr: &str) -> Result<Process> {
    let server = Process::spawn(netns, name, &xtask()?, &["vm-guest", "serve", name, addr])?;
    server.wait_for("listening", false, Duration::from_secs(20))?;
    Ok(server)
}

/// One attach mode, end to end; the result line on success.
fn mirror_through(agent: &Path, mode: &str) -> Result<String> {
    let hosts = hosts()?;
    let v1 = start_server(&hosts.v1, "v1", &format!("{V1_ADDR}:{V1_PORT}"))?;
    let shadow = start_server(&hosts.v1, "shadow", SHADOW)?;
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
        "--log-format",
        "json",
        "--nice",
        "0",
    ];
    let started = Instant::now();
    let mut agent = spawn_agent(&hosts.v1, agent, &args)?;
    let attached = match agent.wait_for("capture attached", true, START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = agent.stop("KILL", Duration::from_secs(5));
            let errors = agent_errors(&agent.stderr_lines());
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
    let settled = wait_until(SETTLE_TIMEOUT, || shadow.stdout_lines().len() >= sent);
    let status = agent.stop("TERM", Duration::from_secs(30))?;
    let (v1_log, shadow_log) = (log_of(&v1), log_of(&shadow));
    ensure!(
        v1_log.len() == sent,
        "v1 logged {} requests, the client sent {sent}",
        v1_log.len()
    );
    ensure!(status.success(), "mirror-agent exited with {status}");
    let kernel = kernel_counters(&agent.stdout_lines())?;
    let counts = final_counts(&agent.stderr_lines())?;
    let get = |map: &BTreeMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
    let (matched, emitted, lost) = (
        get(&kernel, "records_matched"),
        get(&kernel, "records_emitted"),
        get(&kernel, "records_lost"),
    );
    let (captured, mirrored) = (get(&counts, "captured"), get(&counts, "sent"));
    let line = format!(
        "mode={mode} attached={attach_mode} load+attach={load_seconds:.1}s sent={sent} \
         captured={captured} mirrored={mirrored} shadow_received={} ring_records={matched} \
         emitted={emitted} lost={lost}",
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

fn spawn_agent(netns: &Netns, agent: &Path, args: &[&str]) -> Result<Process> {
    Process::spawn(netns, "mirror-agent", &agent.display().to_string(), args)
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
    let mut agent = spawn_agent(&hosts.v1, agent, &args)?;
    let status = agent.wait(START_TIMEOUT)?;
    ensure!(!status.success(), "--attach tcx succeeded below 6.6");
    let errors = agent_errors(&agent.stderr_lines());
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
        crate::netns::run(&mut command).map(drop)
    };
    let mut get_args: Vec<&str> = Vec::new();
    for get in &gets {
        get_args.extend(["-o", "/dev/null", get]);
    }
    let mut command = client.command("curl");
    command.args(["-sS", "--fail"]).args(&get_args);
    crate::netns::run(&mut command)?;
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

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// `METHOD PATH BYTES FRAMING` of every request a server logged.
fn log_of(server: &Process) -> Vec<String> {
    server
        .stdout_lines()
        .into_iter()
        .filter(|l| !l.starts_with("listening"))
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

/// `kernel counters: name=N ...` from the agent's stdout.
fn kernel_counters(stdout: &[String]) -> Result<BTreeMap<String, u64>> {
    let line = stdout
        .iter()
        .find_map(|l| l.strip_prefix("kernel counters: "))
        .context("mirror-agent printed no kernel counters")?;
    Ok(pairs(line))
}

/// `captured=N sent=N ...` of the agent's JSON `final counts` line.
fn final_counts(stderr: &[String]) -> Result<BTreeMap<String, u64>> {
    let counts = stderr
        .iter()
        .find_map(|line| {
            let rest = line.split("\"message\":\"final counts: ").nth(1)?;
            let counts = rest.split('"').next()?;
            counts.starts_with("captured=").then(|| counts.to_owned())
        })
        .context("mirror-agent logged no final counts")?;
    Ok(pairs(&counts))
}

fn pairs(text: &str) -> BTreeMap<String, u64> {
    text.split_whitespace()
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn json_string(line: &str, key: &str) -> Option<String> {
    let rest = line.split(&format!("\"{key}\":\"")).nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The guest's HTTP server: enough HTTP/1.x for curl (keep-alive,
// Content-Length and chunked bodies, HTTP/1.0), one line per request.

fn serve(name: &str, addr: &str) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("{name}: bind {addr}"))?;
    println!("listening {name} {addr}");
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || {
            if let Err(err) = serve_connection(stream) {
                eprintln!("connection: {err:#}");
            }
        });
    }
    Ok(())
}

fn serve_connection(stream: TcpStream) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut words = request_line.split_whitespace();
        let (method, path, version) = (
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            ensure!(reader.read_line(&mut line)? > 0, "head cut short");
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let body_bytes = if chunked {
            read_chunked(&mut reader)?
        } else {
            let length: usize = header("content-length").map_or(Ok(0), |v| v.parse())?;
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            length
        };
        let framing = if chunked { "chunked" } else { "plain" };
        println!("{method} {path} {body_bytes} {framing}");
        let close = version == "HTTP/1.0" || header("connection").is_some_and(|v| v == "close");
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: {connection}\r\n\r\nok"
        )?;
        if close {
            return Ok(());
        }
    }
}

fn read_chunked(reader: &mut impl std::io::BufRead) -> Result<usize> {
    let mut total = 0;
    loop {
        let mut size_line = String::new();
        ensure!(
            reader.read_line(&mut size_line)? > 0,
            "chunk size cut short"
        );
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(total);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        total += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines_are_read() {
        let stdout = vec!["kernel counters: seen=5 records_matched=3 records_lost=0".to_owned()];
        let kernel = kernel_counters(&stdout).unwrap();
        assert_eq!(kernel["records_matched"], 3);
        let stderr = vec![
            r#"{"level":"INFO","fields":{"message":"final counts: capture","kernel":"seen=3"}}"#
                .to_owned(),
            r#"{"level":"INFO","fields":{"message":"final counts: captured=11 sent=11 filtered=0 dropped=0","target":"http://x"}}"#
                .to_owned(),
        ];
        let counts = final_counts(&stderr).unwrap();
        assert_eq!((counts["captured"], counts["sent"]), (11, 11));
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
    fn chunked_bodies_are_measured() {
        let mut input: &[u8] = b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(read_chunked(&mut input).unwrap(), 8);
    }

    #[test]
    fn a_missing_log_line_is_an_error() {
        assert!(final_counts(&[]).is_err());
        assert!(kernel_counters(&[]).is_err());
    }
}
