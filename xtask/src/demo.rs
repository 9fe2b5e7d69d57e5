//! `cargo xtask demo`: the shadow exercise of the course this project grew
//! from ("build v3 and shadow v1 to v2 and v3", done there with goreplay as
//! a sidecar), on this machine, with mirror-agent instead.
//!
//! Four network namespaces stand for four hosts: a client, v1 (the primary,
//! where mirror-agent captures on eth0), and the shadows v2 and v3, known to
//! the agent by name (myapp-v2, myapp-v3) through v1's /etc/hosts. Each
//! version is the demo service the VM runs, deploy/demo/myapp.py: a small
//! JSON API that logs every request. v3 carries planted regressions
//! (`--regression`); every version stamps some answers with the time
//! (`served_at`), and a second v1 (myapp-v1b, the baseline) exposes that
//! as noise. The client sends several kinds of requests to v1; then v3 is
//! stopped and a last batch goes out. The summary shows what v1 served,
//! what v2 and v3 received, what the agent counted, and its verdict: how
//! v2's and v3's answers compare with v1's, per endpoint.
//!
//! Everything (processes, namespaces, the hosts file) is removed on the way
//! out, on error and on Ctrl-C too.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use mirror_testkit::{
    Agent, EtcHosts, Link, Metrics, Netns, Process, ScratchDir, Signal, ab,
    agent::report::final_counts_texts,
    command, is_root,
    metrics::{self, REQUESTS_CAPTURED, SHADOW_REQUESTS},
    pseudo_random, veth,
};

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
/// The baseline (a second v1) listens on v2's host, on this port.
const BASELINE_PORT: u16 = 9002;
/// Where the demo leaves the comparison's page for a browser.
const PAGE: &str = "target/demo/compare.html";

/// The demo service's command (deploy/provision.sh installs it for the VM).
const MYAPP: &str = "deploy/demo/myapp.py";
/// Seed of the chunked upload's bytes.
const UPLOAD_SEED: u64 = 0x0de0;

// ---------------------------------------------------------------------------
// Ctrl-C
// ---------------------------------------------------------------------------

pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGHUP, SIGINT and SIGTERM only raise a flag: the demo stops at its next
/// step and its guards remove everything. The child processes, in the same
/// process group, get the terminal's Ctrl-C themselves and end.
fn catch_interrupts() {
    for signum in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(
                signum,
                on_signal as extern "C" fn(i32) as libc::sighandler_t,
            );
        }
    }
}

pub(crate) fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Polls `condition` until it holds; fails after `timeout` or on Ctrl-C.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let held = mirror_testkit::wait_until(timeout, || {
        INTERRUPTED.load(Ordering::SeqCst) || condition()
    });
    check_interrupt()?;
    ensure!(held, "{what}: not within {timeout:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// the demo
// ---------------------------------------------------------------------------

/// What every demo does first: root checked (`command` names it in the
/// error), Ctrl-C caught, the agent built in release; its path.
pub(crate) fn prepare(root: &Path, verbose: bool, command: &str) -> Result<PathBuf> {
    ensure!(
        is_root(),
        "{command} needs root (network namespaces, loading a BPF program): \
         run it with sudo, e.g. `sudo -E env \"PATH=$PATH\" {command}`"
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
    Ok(root.join("target/release/mirror-agent"))
}

pub fn run(root: &Path, verbose: bool) -> Result<()> {
    let agent = prepare(root, verbose, "cargo xtask demo")?;

    let started = Instant::now();
    let page = root.join(PAGE);
    let result = demo(&agent, &root.join(MYAPP), &page);
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

/// Hosts and their links. Fields drop in order: namespaces last.
struct Hosts {
    _hosts_file: EtcHosts,
    client: Netns,
    v1: Netns,
    v2: Netns,
    v3: Netns,
}

fn build_hosts() -> Result<Hosts> {
    let client = Netns::named(CLIENT_NS)?;
    let v1 = Netns::named(V1_NS)?;
    let v2 = Netns::named(V2_NS)?;
    let v3 = Netns::named(V3_NS)?;
    // `ip netns exec mirror-demo-v1 ...` sees this file as /etc/hosts: the
    // agent resolves the shadows' names with the system resolver, as it
    // would resolve service names in a cluster.
    let hosts_file = EtcHosts::create(
        &v1,
        &[
            (V2_ADDR.parse::<IpAddr>()?, "myapp-v2"),
            (V3_ADDR.parse::<IpAddr>()?, "myapp-v3"),
            (V2_ADDR.parse::<IpAddr>()?, "myapp-v1b"),
        ],
    )?;
    let hosts = Hosts {
        _hosts_file: hosts_file,
        client,
        v1,
        v2,
        v3,
    };
    veth(&hosts.client, "eth0", &hosts.v1, "eth0")?;
    Link::new(&hosts.client, "eth0").up_with_address(&format!("{CLIENT_ADDR}/24"))?;
    Link::new(&hosts.v1, "eth0").up_with_address(&format!("{V1_ADDR}/24"))?;
    for (shadow, link, net) in [(&hosts.v2, "to-v2", 102), (&hosts.v3, "to-v3", 103)] {
        veth(&hosts.v1, link, shadow, "eth0")?;
        Link::new(&hosts.v1, link).up_with_address(&format!("10.200.{net}.1/24"))?;
        Link::new(shadow, "eth0").up_with_address(&format!("10.200.{net}.2/24"))?;
    }
    Ok(hosts)
}

/// `myapp.py --name VERSION --port PORT [EXTRA]` in `netns`, listening
/// when this returns.
fn start_server(
    netns: &Netns,
    myapp: &Path,
    version: &str,
    port: u16,
    extra: &[&str],
) -> Result<Process> {
    let server = Process::spawn(
        version,
        netns
            .command("python3")
            .arg(myapp)
            .args(["--name", version, "--port", &port.to_string()])
            .args(extra),
    )?;
    server.wait_for_stdout("listening", Duration::from_secs(10))?;
    Ok(server)
}

/// One kind of traffic the client sent.
struct Batch {
    what: &'static str,
    requests: u64,
    note: String,
}

fn demo(agent_path: &Path, myapp: &Path, page: &Path) -> Result<String> {
    let hosts = build_hosts()?;
    let scratch = ScratchDir::new("demo")?;
    let mut v1 = start_server(&hosts.v1, myapp, "v1", V1_PORT, &[])?;
    let mut v2 = start_server(&hosts.v2, myapp, "v2", SHADOW_PORT, &[])?;
    let mut v3 = start_server(&hosts.v3, myapp, "v3", SHADOW_PORT, &["--regression"])?;
    let mut v1b = start_server(&hosts.v2, myapp, "v1b", BASELINE_PORT, &[])?;

    let shadows = [
        format!("http://myapp-v2:{SHADOW_PORT}"),
        format!("http://myapp-v3:{SHADOW_PORT}"),
    ];
    let baseline = format!("http://myapp-v1b:{BASELINE_PORT}");
    let diff_log = scratch.path().join("diff.jsonl");
    let diff_log_arg = diff_log.display().to_string();
    let port = V1_PORT.to_string();
    let mut args = vec!["--iface", "eth0", "--port", &port];
    for shadow in &shadows {
        args.extend(["--shadow", shadow]);
    }
    args.extend([
        "--compare",
        "--baseline",
        &baseline,
        "--compare-ignore-field",
        "$.version",
        "--compare-ignore-header",
        "X-App-Version",
        "--diff-log",
        &diff_log_arg,
    ]);
    args.extend(["--log-format", "json"]);
    let agent = Agent::start(&hosts.v1, agent_path, &args)?.attached(Duration::from_secs(30))?;
    agent.wait_for_targets(shadows.len() + 1, Duration::from_secs(10))?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n==> demo: v1 serves the client; mirror-agent copies every request to v2 and v3,\n\
         \x20   and compares their answers with v1's own (a second v1 tells noise)\n\n\
         \x20 client {CLIENT_ADDR} ──▶ v1 {V1_ADDR}:{V1_PORT}   mirror-agent captures on v1's eth0\n\
         \x20                             ├─ copy ─▶ myapp-v2  = {V2_ADDR}:{SHADOW_PORT}\n\
         \x20                             ├─ copy ─▶ myapp-v3  = {V3_ADDR}:{SHADOW_PORT}  (planted regressions)\n\
         \x20                             └─ copy ─▶ myapp-v1b = {V2_ADDR}:{BASELINE_PORT}  (baseline: v1 again)\n\n\
         \x20 on v1: mirror-agent {}\n",
        args[..args.len() - 2].join(" ")
    );

    // Phase 1: several kinds of requests, both shadows up.
    let url = |path: &str| format!("http://{V1_ADDR}{path}");
    let mut batches = Vec::new();
    let mut answers = BTreeMap::<String, u64>::new();
    for _ in 0..3 {
        let body = command::run(hosts.client.command("curl").args(["-sS", &url("/")]))?;
        // myapp answers {"app": "myapp", "version": "v1"}: the version is
        // what tells.
        let version = body
            .split("\"version\": \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or(body.trim());
        *answers.entry(format!("myapp {version}")).or_default() += 1;
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
    let order = scratch.write(
        "order.json",
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
    // Items 1 to 70: v3 answers 500 for the ten multiples of 7.
    let mut items = 0;
    for id in 1..=70 {
        check_interrupt()?;
        let code = status_code(&hosts, &[&url(&format!("/items/{id}"))])?;
        ensure!(code == "200", "GET /items/{id}: HTTP {code}");
        items += 1;
    }
    batches.push(Batch {
        what: "curl GET /items/1..70",
        requests: items,
        note: "a connection each".into(),
    });
    let upload = scratch.write("upload.bin", pseudo_random(64 << 10, UPLOAD_SEED))?;
    let upload_arg = format!("@{}", upload.display());
    for i in 0..10 {
        check_interrupt()?;
        let code = status_code(
            &hosts,
            &[
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &upload_arg,
                &url(&format!("/upload/{i}")),
            ],
        )?;
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
        || {
            parse_log(&v2.stdout_lines()).len() as u64 >= phase1
                && parse_log(&v3.stdout_lines()).len() as u64 >= phase1
        },
    )?;

    // The verdict as an operator reads it on the host, and the page.
    wait_until(
        "the comparison judging every answer",
        Duration::from_secs(20),
        || shadows.iter().all(|s| compared(&hosts.v1, s) >= phase1),
    )?;
    let report = command::run(hosts.v1.command(agent_path).args([
        "compare-report",
        "--url",
        &format!("http://{}", metrics::DEFAULT_ADDR),
    ]))?;
    let html = command::run(hosts.v1.command("curl").args([
        "-sS",
        &format!("http://{}/compare.html", metrics::DEFAULT_ADDR),
    ]))?;
    if let Some(dir) = page.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(page, html).with_context(|| format!("cannot write {}", page.display()))?;

    // Phase 2: v3 goes away; v1 and v2 do not notice.
    v3.stop(Signal::TERM, Duration::from_secs(5))?;
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

    let exit = agent
        .stop(Signal::INT, Duration::from_secs(15))?
        .success()?;
    v1.stop(Signal::TERM, Duration::from_secs(5))?;
    v2.stop(Signal::TERM, Duration::from_secs(5))?;
    v1b.stop(Signal::TERM, Duration::from_secs(5))?;

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
    for (label, (_, log)) in ["v1", "v2", "v3"].iter().zip(&logs) {
        for logged in &log[log.len().saturating_sub(2)..] {
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
    let stderr = exit.stderr_lines();
    let finals = final_counts_texts(&stderr)?;
    for shadow in &shadows {
        let counts = finals
            .get(shadow)
            .with_context(|| format!("no final counts for {shadow}"))?;
        let _ = writeln!(out, "  {shadow:<22} {counts}");
    }
    let kernel = exit.kernel_counters()?;
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

    let _ = writeln!(
        out,
        "==> the verdict: v2's and v3's answers against v1's (`mirror-agent compare-report`,\n\
         \x20   before v3 was stopped)\n"
    );
    for line in report.lines() {
        let _ = writeln!(out, "  {line}");
    }
    let verdicts: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("final counts: comparison: "))
        .collect();
    let _ = writeln!(
        out,
        "\n==> the final verdict at exit (v3 stopped for the last batch)"
    );
    for line in verdicts {
        let text = line
            .split("final counts: comparison: ")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or(line);
        let _ = writeln!(out, "  {text}");
    }
    let logged = std::fs::read_to_string(&diff_log).unwrap_or_default();
    let _ = writeln!(
        out,
        "\n==> the diff log ({} lines, one per differing exchange; the first):",
        logged.lines().count()
    );
    if let Some(first) = logged.lines().next() {
        let _ = writeln!(out, "  {first}");
    }
    let _ = writeln!(
        out,
        "\n  The page a person reads: {} (it was served at /compare.html on the\n  \
         agent's metrics address)\n",
        page.display()
    );
    Ok(out)
}

/// Pairs the comparison has counted for `target` so far (any result).
fn compared(v1: &Netns, target: &str) -> u64 {
    let Ok(metrics) = Metrics::scrape(v1, metrics::DEFAULT_ADDR) else {
        return 0;
    };
    metrics.sum("mirror_compare_total", &[("target", target)]) as u64
}

/// `curl ARGS` from the client: the HTTP status of the answer (the body
/// is dropped; curl's own failures fail the step).
fn status_code(hosts: &Hosts, args: &[&str]) -> Result<String> {
    command::run(
        hosts
            .client
            .command("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args),
    )
}

/// `ab ARGS URL` from the client: every request must succeed.
fn ab(hosts: &Hosts, what: &'static str, args: &[&str], url: &str, note: &str) -> Result<Batch> {
    check_interrupt()?;
    let report = ab::run(&hosts.client, args, url)?;
    ensure!(
        report.failed == 0 && report.non_2xx == 0,
        "{what}: {} failed, {} not 2xx:\n{}",
        report.failed,
        report.non_2xx,
        report.text
    );
    Ok(Batch {
        what,
        requests: report.complete,
        note: format!("{note}; slowest {} ms", report.longest_ms),
    })
}

/// Whether the agent reassembled `total` requests and every shadow target
/// accounted for all of them (nothing queued or in flight).
fn settled(v1: &Netns, shadows: &[String], total: u64) -> bool {
    let Ok(metrics) = Metrics::scrape(v1, metrics::DEFAULT_ADDR) else {
        return false;
    };
    metrics.get(REQUESTS_CAPTURED, &[]) == Some(total as f64)
        && shadows
            .iter()
            .all(|shadow| metrics.sum(SHADOW_REQUESTS, &[("target", shadow)]) as u64 == total)
}

/// One request line of a server's log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Logged {
    method: String,
    path: String,
    body_bytes: u64,
    chunked: bool,
}

/// myapp's request lines, `NAME: METHOD PATH host=H from=A status=S
/// [body=N [chunked]] (ORIGIN)` (the `listening` line and anything else
/// left out).
fn parse_log(lines: &[String]) -> Vec<Logged> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (_name, method, path) = (words.next()?, words.next()?, words.next()?);
            let mut logged = Logged {
                method: method.to_owned(),
                path: path.to_owned(),
                body_bytes: 0,
                chunked: false,
            };
            let mut status = false;
            for word in words {
                if let Some(bytes) = word.strip_prefix("body=") {
                    logged.body_bytes = bytes.parse().ok()?;
                }
                logged.chunked |= word == "chunked";
                status |= word.starts_with("status=");
            }
            status.then_some(logged)
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

/// A number field of a JSON log line.
fn json_number(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(&format!("\"{key}\":")).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_logs_are_read() {
        let log = parse_log(&[
            "v2: listening on port 9000".into(),
            "v2: POST /upload/1 host=myapp-v2:9000 from=10.200.102.1 status=200 body=65536 \
             chunked (mirrored by mirror)"
                .into(),
            "v2: GET /catalog?page=1 host=10.200.100.2 from=10.200.102.1 status=200 (direct)"
                .into(),
        ]);
        assert_eq!(log.len(), 2);
        assert!(log[0].chunked && log[0].body_bytes == 65536);
        assert_eq!(
            (log[1].method.as_str(), log[1].path.as_str()),
            ("GET", "/catalog?page=1")
        );
        assert!(!log[1].chunked && log[1].body_bytes == 0);
        assert!(same_requests(&log, &[log[1].clone(), log[0].clone()]));
        assert!(!same_requests(&log, &log[..1]));

        let capture = r#"{"message":"final counts: capture","requests_captured":563,"flows":41,"target":"mirror_agent"}"#;
        assert_eq!(json_number(capture, "flows"), Some(41));
    }
}
