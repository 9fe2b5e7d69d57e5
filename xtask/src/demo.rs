//! `cargo xtask demo`: the shadow exercise of the course this project grew
//! from ("build v3 and shadow v1 to v2 and v3", done there with goreplay as
//! a sidecar), on this machine, with mirror-agent instead.
//!
//! Four network namespaces stand for four hosts: a client, v1 (the primary,
//! where mirror-agent captures on eth0), and the shadows v2 and v3, known to
//! the agent by name (myapp-v2, myapp-v3) through v1's /etc/hosts. Each
//! version is a tiny Python HTTP server that answers with its version and
//! logs every request. The client sends several kinds of requests to v1;
//! then v3 is stopped and a last batch goes out. The summary shows what v1
//! served, what v2 and v3 received, and what the agent counted.
//!
//! Everything (processes, namespaces, the hosts file) is removed on the way
//! out, on error and on Ctrl-C too.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::netns::{self, Netns, Process, RemoveOnDrop, effective_uid, veth};

const CLIENT_NS: &str = "mirror-demo-client";
const V1_NS: &str = "mirror-demo-v1";
const V2_NS: &str = "mirror-demo-v2";
const V3_NS: &str = "mirror-demo-v3";

const CLIENT_ADDR: &str = "10.200.100.1";
const V1_ADDR: &str = "10.200.100.2";
const V2_ADDR: &str = "10.200.102.2";
const V3_ADDR: &str = "10.200.103.2";
const V1_PORT: u16 = 80;
const SHADOW_PORT: u16 = 9000;

/// Where the agent serves metrics inside v1's namespace (its default).
const METRICS_URL: &str = "http://127.0.0.1:9464/metrics";

/// One version of the service: answers `VERSION\n` to any method, reads
/// Content-Length and chunked bodies, and prints one line per request:
/// `VERSION METHOD PATH BODY_BYTES chunked|plain`.
const SERVER: &str = r#"
import sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

VERSION, HOST, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
LOG = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data, "chunked"
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0)), "plain"

    def answer(self):
        data, framing = self.body()
        reply = (VERSION + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("X-Version", VERSION)
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)
        with LOG:
            print(VERSION, self.command, self.path, len(data), framing, flush=True)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True
    allow_reuse_address = True

server = Server((HOST, PORT), Handler)
print("listening", flush=True)
server.serve_forever()
"#;

// ---------------------------------------------------------------------------
// Ctrl-C
// ---------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

unsafe extern "C" {
    /// signal(2) from the C library std links anyway; the handler type is
    /// `sighandler_t`, the previous handler is returned as a plain word.
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

/// SIGHUP, SIGINT and SIGTERM only raise a flag: the demo stops at its next
/// step and its guards remove everything. The child processes, in the same
/// process group, get the terminal's Ctrl-C themselves and end.
fn catch_interrupts() {
    for signum in [1, 2, 15] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            signal(signum, on_signal);
        }
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Polls `condition` until it holds; fails after `timeout` or on Ctrl-C.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        check_interrupt()?;
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// the demo
// ---------------------------------------------------------------------------

pub fn run(root: &Path, verbose: bool) -> Result<()> {
    ensure!(
        effective_uid() == 0,
        "cargo xtask demo needs root (network namespaces, loading a BPF program): \
         run it with sudo, e.g. `sudo -E env \"PATH=$PATH\" cargo xtask demo`"
    );
    catch_interrupts();
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--release", "-p", "mirror-agent"])
        .current_dir(root);
    crate::steps::quiet_cargo(
        "building mirror-agent (release; a first build takes a few minutes)",
        &mut build,
        verbose,
    )?;
    check_interrupt()?;
    let agent = root.join("target/release/mirror-agent");

    let started = Instant::now();
    let result = demo(&agent);
    // Every guard of `demo` is dropped by now: processes ended, namespaces
    // and the hosts file removed.
    match result {
        Ok(summary) => {
            print!("{summary}");
            println!(
                "done in {:.1} s; processes stopped, namespaces {CLIENT_NS}, {V1_NS}, {V2_NS}, \
                 {V3_NS} removed",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            bail!("demo interrupted: everything it created is removed")
        }
        Err(err) => Err(err.context("the demo failed; everything it created is removed")),
    }
}

/// `/etc/netns/NAME/hosts`, removed on drop with its directory, and
/// `/etc/netns` too if this run created it.
struct EtcHosts {
    dir: PathBuf,
    created_parent: bool,
}

impl EtcHosts {
    fn create(netns: &str, text: &str) -> Result<Self> {
        let parent = Path::new("/etc/netns");
        let created_parent = !parent.exists();
        let dir = parent.join(netns);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let hosts = Self {
            dir,
            created_parent,
        };
        std::fs::write(hosts.dir.join("hosts"), text)?;
        Ok(hosts)
    }
}

impl Drop for EtcHosts {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {err}", self.dir.display());
        }
        if self.created_parent {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// Hosts and their links. Fields drop in order: namespaces last.
struct Hosts {
    _hosts_file: EtcHosts,
    client: Netns,
    v1: Netns,
    v2: Netns,
    v3: Netns,
}

fn build_hosts() -> Result<Hosts> {
    let client = Netns::new(CLIENT_NS)?;
    let v1 = Netns::new(V1_NS)?;
    let v2 = Netns::new(V2_NS)?;
    let v3 = Netns::new(V3_NS)?;
    // `ip netns exec mirror-demo-v1 ...` sees this file as /etc/hosts: the
    // agent resolves the shadows' names with the system resolver, as it
    // would resolve service names in a cluster.
    let hosts_file = EtcHosts::create(
        V1_NS,
        &format!("127.0.0.1 localhost\n{V2_ADDR} myapp-v2\n{V3_ADDR} myapp-v3\n"),
    )?;
    let hosts = Hosts {
        _hosts_file: hosts_file,
        client,
        v1,
        v2,
        v3,
    };
    veth(&hosts.client, "eth0", &hosts.v1, "eth0")?;
    hosts.client.address("eth0", &format!("{CLIENT_ADDR}/24"))?;
    hosts.v1.address("eth0", &format!("{V1_ADDR}/24"))?;
    for (shadow, link, net) in [(&hosts.v2, "to-v2", 102), (&hosts.v3, "to-v3", 103)] {
        veth(&hosts.v1, link, shadow, "eth0")?;
        hosts.v1.address(link, &format!("10.200.{net}.1/24"))?;
        shadow.address("eth0", &format!("10.200.{net}.2/24"))?;
    }
    Ok(hosts)
}

fn start_server(netns: &Netns, version: &str, addr: &str, port: u16) -> Result<Process> {
    let server = Process::spawn(
        netns,
        version,
        "python3",
        &["-c", SERVER, version, addr, &port.to_string()],
    )?;
    server.wait_for("listening", false, Duration::from_secs(10))?;
    Ok(server)
}

/// One kind of traffic the client sent.
struct Batch {
    what: &'static str,
    requests: u64,
    note: String,
}

fn demo(agent_path: &Path) -> Result<String> {
    let hosts = build_hosts()?;
    let scratch = std::env::temp_dir().join(format!("mirror-demo-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let _scratch = RemoveOnDrop(scratch.clone());
    let mut v1 = start_server(&hosts.v1, "v1", V1_ADDR, V1_PORT)?;
    let mut v2 = start_server(&hosts.v2, "v2", V2_ADDR, SHADOW_PORT)?;
    let mut v3 = start_server(&hosts.v3, "v3", V3_ADDR, SHADOW_PORT)?;

    let shadows = [
        format!("http://myapp-v2:{SHADOW_PORT}"),
        format!("http://myapp-v3:{SHADOW_PORT}"),
    ];
    let port = V1_PORT.to_string();
    let mut args = vec!["--iface", "eth0", "--port", &port];
    for shadow in &shadows {
        args.extend(["--shadow", shadow]);
    }
    args.extend(["--log-format", "json"]);
    let agent_bin = agent_path.display().to_string();
    let mut agent = Process::spawn(&hosts.v1, "mirror-agent", &agent_bin, &args)?;
    agent.wait_for("capture attached", true, Duration::from_secs(30))?;
    wait_until(
        "the agent starting both shadow targets",
        Duration::from_secs(10),
        || {
            agent
                .stderr_lines()
                .iter()
                .filter(|l| l.contains("shadow target started"))
                .count()
                == 2
        },
    )?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n==> demo: v1 serves the client; mirror-agent copies every request to v2 and v3\n\n\
         \x20 client {CLIENT_ADDR} ──▶ v1 {V1_ADDR}:{V1_PORT}   mirror-agent captures on v1's eth0\n\
         \x20                             ├─ copy ─▶ myapp-v2 = {V2_ADDR}:{SHADOW_PORT}\n\
         \x20                             └─ copy ─▶ myapp-v3 = {V3_ADDR}:{SHADOW_PORT}\n\n\
         \x20 on v1: mirror-agent {}\n",
        args[..args.len() - 2].join(" ")
    );

    // Phase 1: several kinds of requests, both shadows up.
    let url = |path: &str| format!("http://{V1_ADDR}{path}");
    let mut batches = Vec::new();
    let mut answers = BTreeMap::<String, u64>::new();
    for _ in 0..3 {
        let body = netns::run(hosts.client.command("curl").args(["-sS", &url("/")]))?;
        *answers.entry(body.trim().to_owned()).or_default() += 1;
    }
    batches.push(Batch {
        what: "curl GET /",
        requests: 3,
        note: format!(
            "the client got {}",
            answers
                .iter()
                .map(|(body, n)| format!("\"{body}\" x{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    check_interrupt()?;
    batches.push(ab(
        &hosts,
        "ab GET /catalog?page=1",
        &["-n", "200", "-c", "4"],
        &url("/catalog?page=1"),
        "a connection per request",
    )?);
    batches.push(ab(
        &hosts,
        "ab -k GET /catalog?page=2",
        &["-k", "-n", "200", "-c", "4"],
        &url("/catalog?page=2"),
        "keep-alive",
    )?);
    let order = scratch.join("order.json");
    std::fs::write(
        &order,
        r#"{"customer":"c-1042","items":[{"sku":"book-7","qty":1},{"sku":"pen-2","qty":3}],"note":"shadow me"}"#,
    )?;
    let order_path = order.display().to_string();
    batches.push(ab(
        &hosts,
        "ab POST /orders (JSON body)",
        &[
            "-n",
            "50",
            "-c",
            "2",
            "-p",
            &order_path,
            "-T",
            "application/json",
        ],
        &url("/orders"),
        "Content-Length",
    )?);
    let upload = scratch.join("upload.bin");
    std::fs::write(&upload, pseudo_random(64 << 10))?;
    let upload_arg = format!("@{}", upload.display());
    for i in 0..10 {
        check_interrupt()?;
        let code = netns::run(hosts.client.command("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &upload_arg,
            &url(&format!("/upload/{i}")),
        ]))?;
        ensure!(code == "200", "chunked upload {i}: HTTP {code}");
    }
    batches.push(Batch {
        what: "curl POST /upload/N (64 KiB)",
        requests: 10,
        note: "Transfer-Encoding: chunked".into(),
    });
    let phase1: u64 = batches.iter().map(|b| b.requests).sum();
    wait_until(
        "v2 and v3 receiving every copy",
        Duration::from_secs(15),
        || v2.stdout_lines().len() as u64 > phase1 && v3.stdout_lines().len() as u64 > phase1,
    )?;

    // Phase 2: v3 goes away; v1 and v2 do not notice.
    v3.stop("TERM", Duration::from_secs(5))?;
    batches.push(ab(
        &hosts,
        "ab GET /after-v3-stopped",
        &["-n", "100", "-c", "4"],
        &url("/after-v3-stopped"),
        "v3 is down now",
    )?);
    let total: u64 = batches.iter().map(|b| b.requests).sum();
    wait_until(
        "the agent accounting for every request",
        Duration::from_secs(15),
        || settled(&hosts.v1, &shadows, total),
    )?;

    let status = agent.stop("INT", Duration::from_secs(15))?;
    ensure!(
        status.success(),
        "mirror-agent ended with {status}: {}",
        agent.stderr_lines().join("\n")
    );
    v1.stop("TERM", Duration::from_secs(5))?;
    v2.stop("TERM", Duration::from_secs(5))?;

    let _ = writeln!(out, "==> traffic: the client talks to v1 only");
    for batch in &batches {
        let _ = writeln!(
            out,
            "  {:<32} {:>4} requests   {}",
            batch.what, batch.requests, batch.note
        );
    }
    let _ = writeln!(
        out,
        "  {:<32} {total:>4} requests, every one answered 200 by v1",
        "total"
    );

    let logs = [
        ("v1 served", parse_log(&v1.stdout_lines())),
        ("v2 received", parse_log(&v2.stdout_lines())),
        ("v3 received", parse_log(&v3.stdout_lines())),
    ];
    let _ = writeln!(
        out,
        "\n==> what each version saw (from its own request log)"
    );
    let methods: Vec<String> = {
        let mut all: Vec<String> = logs
            .iter()
            .flat_map(|(_, log)| log.iter().map(|r| r.method.clone()))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    let mut header = format!("  {:<12}", "");
    for method in &methods {
        let _ = write!(header, "{method:>6}");
    }
    let _ = writeln!(out, "{header}  total  body bytes  chunked");
    for (label, log) in &logs {
        let mut line = format!("  {label:<12}");
        for method in &methods {
            let n = log.iter().filter(|r| &r.method == method).count();
            let _ = write!(line, "{n:>6}");
        }
        let bytes: u64 = log.iter().map(|r| r.body_bytes).sum();
        let chunked = log.iter().filter(|r| r.chunked).count();
        let _ = write!(line, "  {:>5}  {bytes:>10}  {chunked:>7}", log.len());
        let verdict = if label.starts_with("v1") {
            String::new()
        } else if same_requests(&logs[0].1, log) {
            "  = v1's requests".to_owned()
        } else if label.starts_with("v3") && same_requests(&logs[0].1[..phase1 as usize], log) {
            format!("  = v1's first {phase1} (stopped for the last batch)")
        } else {
            "  DIFFERS from v1".to_owned()
        };
        let _ = writeln!(out, "{line}{verdict}");
    }

    let _ = writeln!(
        out,
        "\n==> the last lines of each request log (`kubectl logs myapp-vN` in the exercise)"
    );
    for (label, server) in [("v1", &v1), ("v2", &v2), ("v3", &v3)] {
        let lines = server.stdout_lines();
        for logged in parse_log(&lines[lines.len().saturating_sub(2)..]) {
            let _ = writeln!(
                out,
                "  {label} | {} {}  ({} body bytes{})",
                logged.method,
                logged.path,
                logged.body_bytes,
                if logged.chunked { ", chunked" } else { "" }
            );
        }
    }
    let _ = writeln!(
        out,
        "\n==> what mirror-agent counted (its final counts at exit)"
    );
    let stderr = agent.stderr_lines();
    for shadow in &shadows {
        let counts = final_counts(&stderr, shadow)
            .with_context(|| format!("no final counts for {shadow}"))?;
        let _ = writeln!(out, "  {shadow:<22} {counts}");
    }
    let kernel = kernel_counters(&agent.stdout_lines())?;
    let get = |name: &str| kernel.get(name).copied().unwrap_or(0);
    let capture = stderr
        .iter()
        .find(|l| l.contains("\"message\":\"final counts: capture\""))
        .context("no final counts of the capture")?;
    let _ = writeln!(
        out,
        "  {:<22} {} requests reassembled on {} connections\n  {:<22} {} packets matched, \
         {} ring records ({} emitted + {} lost), {} payload bytes",
        "capture",
        json_number(capture, "requests_captured").unwrap_or(0),
        json_number(capture, "flows").unwrap_or(0),
        "kernel",
        get("matched"),
        get("records_matched"),
        get("records_emitted"),
        get("records_lost"),
        get("payload_bytes"),
    );
    let _ = writeln!(
        out,
        "  captured = sent + filtered + dropped for each target; v1 never waited for a shadow\n"
    );
    Ok(out)
}

/// `ab ARGS URL` from the client: every request must succeed.
fn ab(hosts: &Hosts, what: &'static str, args: &[&str], url: &str, note: &str) -> Result<Batch> {
    check_interrupt()?;
    let report = netns::run(hosts.client.command("ab").args(args).arg(url))?;
    let field = |name: &str| -> Option<u64> {
        report
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    let complete = field("Complete requests:").context("ab printed no count")?;
    let failed = field("Failed requests:").unwrap_or(0);
    let non_2xx = field("Non-2xx responses:").unwrap_or(0);
    ensure!(
        failed == 0 && non_2xx == 0,
        "{what}: {failed} failed, {non_2xx} not 2xx:\n{report}"
    );
    let longest = field("100%").unwrap_or(0);
    Ok(Batch {
        what,
        requests: complete,
        note: format!("{note}; slowest {longest} ms"),
    })
}

/// Whether the agent reassembled `total` requests and every shadow target
/// accounted for all of them (nothing queued or in flight).
fn settled(v1: &Netns, shadows: &[String], total: u64) -> bool {
    let Ok(text) = netns::run(v1.command("curl").args(["-sS", METRICS_URL])) else {
        return false;
    };
    let value = |line: &str| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let captured = text
        .lines()
        .find(|l| l.starts_with("mirror_requests_captured_total "))
        .map(value);
    captured == Some(total)
        && shadows.iter().all(|shadow| {
            let label = format!("target=\"{shadow}\"");
            text.lines()
                .filter(|l| l.starts_with("mirror_shadow_requests_total{") && l.contains(&label))
                .map(value)
                .sum::<u64>()
                == total
        })
}

/// One request line of a server's log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Logged {
    method: String,
    path: String,
    body_bytes: u64,
    chunked: bool,
}

/// `VERSION METHOD PATH BYTES chunked|plain` lines (the `listening` line
/// and anything else left out).
fn parse_log(lines: &[String]) -> Vec<Logged> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (_version, method, path, bytes, framing) = (
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
            );
            Some(Logged {
                method: method.to_owned(),
                path: path.to_owned(),
                body_bytes: bytes.parse().ok()?,
                chunked: framing == "chunked",
            })
        })
        .collect()
}

/// The same requests (method, path, body size, framing), in any order.
fn same_requests(a: &[Logged], b: &[Logged]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// `captured=N sent=N (2xx=N) filtered=N dropped=N (reason=N)` of one
/// target, from the agent's JSON `final counts` line.
fn final_counts(stderr: &[String], target: &str) -> Option<String> {
    let needle = format!("\"target\":\"{target}\"");
    stderr.iter().find_map(|line| {
        let rest = line.split("\"message\":\"final counts: ").nth(1)?;
        let (counts, after) = rest.split_once('"')?;
        (counts.starts_with("captured=") && after.contains(&needle)).then(|| counts.to_owned())
    })
}

/// `kernel counters: name=N ...` from the agent's stdout.
fn kernel_counters(stdout: &[String]) -> Result<BTreeMap<String, u64>> {
    let line = stdout
        .iter()
        .find_map(|l| l.strip_prefix("kernel counters: "))
        .context("mirror-agent printed no kernel counters")?;
    Ok(line
        .split_whitespace()
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// A number field of a JSON log line.
fn json_number(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(&format!("\"{key}\":")).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Bytes that do not compress into anything telling (xorshift64).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_counts_are_read() {
        let log = parse_log(&[
            "listening".into(),
            "v2 POST /upload/1 65536 chunked".into(),
            "v2 GET /catalog?page=1 0 plain".into(),
        ]);
        assert_eq!(log.len(), 2);
        assert!(log[0].chunked && log[0].body_bytes == 65536);
        assert!(same_requests(&log, &[log[1].clone(), log[0].clone()]));
        assert!(!same_requests(&log, &log[..1]));

        let stderr = [
            r#"{"message":"final counts: capture","requests_captured":563,"flows":41,"target":"mirror_agent"}"#.to_owned(),
            r#"{"message":"final counts: captured=5 sent=5 (2xx=5) filtered=0 dropped=0","target":"http://myapp-v2:9000","target":"mirror_agent"}"#.to_owned(),
        ];
        assert_eq!(
            final_counts(&stderr, "http://myapp-v2:9000").as_deref(),
            Some("captured=5 sent=5 (2xx=5) filtered=0 dropped=0")
        );
        assert_eq!(final_counts(&stderr, "http://myapp-v3:9000"), None);
        assert_eq!(json_number(&stderr[0], "flows"), Some(41));
        let kernel =
            kernel_counters(&["kernel counters: matched=3 records_lost=0".into()]).unwrap();
        assert_eq!(kernel["matched"], 3);
    }
}
