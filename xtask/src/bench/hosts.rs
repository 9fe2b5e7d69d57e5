//! The bench's hosts: network namespaces for the client, the primary (v1,
//! where mirror-agent, the nginx mirror proxy or goreplay run beside it)
//! and two shadows, each an nginx with its own access log, everything
//! removed on drop.
//!
//! ```text
//! client 10.200.20.1 ──eth0── primary 10.200.20.2  nginx :80 (v1), proxy :8080 (nginx mirror mode)
//!                               ├─ to-s1 10.200.21.1 ── shadow1 10.200.21.2  nginx :8080
//!                               └─ to-s2 10.200.22.1 ── shadow2 10.200.22.2  nginx :8080
//! ```

use std::{
    fs,
    io::{BufRead as _, BufReader, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{Link, Netns, Process, ScratchDir, command, veth};

pub const CLIENT_NS: &str = "mirror-bench-client";
pub const PRIMARY_NS: &str = "mirror-bench-primary";
pub const SHADOW_NS: [&str; 2] = ["mirror-bench-shadow1", "mirror-bench-shadow2"];

pub const CLIENT_ADDR: &str = "10.200.20.1";
pub const PRIMARY_ADDR: &str = "10.200.20.2";
pub const PRIMARY_PORT: u16 = 80;
/// The nginx mirror proxy, on the primary's host.
pub const PROXY_PORT: u16 = 8080;
pub const SHADOW_ADDR: [&str; 2] = ["10.200.21.2", "10.200.22.2"];
pub const SHADOW_PORT: u16 = 8080;
/// The interface of the primary the client's requests arrive on.
pub const PRIMARY_IFACE: &str = "eth0";

/// CPU pinning: the load generator and the shadows (other hosts) on one
/// CPU, the primary's host (nginx v1 and whatever mirrors beside it) on
/// the other. See the report's method section.
pub const CLIENT_CPU: usize = 0;
pub const PRIMARY_CPU: usize = 1;
pub const SHADOW_CPU: usize = 0;

/// The primary's response body: a small one.
pub const PRIMARY_BODY: &str = "v1 ok\n";

pub fn shadow_url(i: usize) -> String {
    format!("http://{}:{SHADOW_PORT}", SHADOW_ADDR[i])
}

/// Each shadow nginx also serves https here (`replay-tls`).
pub const SHADOW_TLS_PORT: u16 = 8443;

pub fn shadow_tls_url(i: usize) -> String {
    format!("https://{}:{SHADOW_TLS_PORT}", SHADOW_ADDR[i])
}

/// The CA that signs the shadows' certificates (made by
/// [`Nginx::shadow`]), for the agent's `--ca-file`.
pub fn shadow_ca_file(hosts: &Hosts) -> PathBuf {
    hosts.scratch.path().join("shadow-ca.pem")
}

/// A CA (once) and a certificate it signs for shadow `i`'s address, made
/// with the `openssl` CLI (P-256); returns the certificate's and key's
/// paths.
fn shadow_certificate(hosts: &Hosts, i: usize) -> Result<(PathBuf, PathBuf)> {
    let dir = hosts.scratch.path();
    let ca = shadow_ca_file(hosts);
    let ca_key = dir.join("shadow-ca.key");
    let openssl = |args: &[&str]| -> Result<()> {
        command::run(Command::new("openssl").args(args)).map(drop)
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
    ];
    if !ca.exists() {
        let (ca, ca_key) = (ca.display().to_string(), ca_key.display().to_string());
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-subj",
            "/CN=mirror bench CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ]);
        openssl(&args)?;
    }
    let cert = dir.join(format!("shadow{}.pem", i + 1));
    let key = dir.join(format!("shadow{}.key", i + 1));
    let (ca, ca_key) = (ca.display().to_string(), ca_key.display().to_string());
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let subject = format!("/CN=shadow{}", i + 1);
    let san = format!("subjectAltName=IP:{}", SHADOW_ADDR[i]);
    let mut args = vec!["req", "-x509", "-CA", &ca, "-CAkey", &ca_key];
    args.extend(ec);
    args.extend([
        "-subj",
        &subject,
        "-addext",
        &san,
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        &key_arg,
        "-out",
        &cert_arg,
    ]);
    openssl(&args)?;
    Ok((cert, key))
}

/// Namespaces and links, and a scratch directory for the servers' files.
/// Fields drop in order: the scratch directory last.
pub struct Hosts {
    pub client: Netns,
    pub primary: Netns,
    pub shadows: [Netns; 2],
    pub scratch: ScratchDir,
}

impl Hosts {
    pub fn build() -> Result<Self> {
        let scratch = ScratchDir::new("bench")?;
        let client = Netns::named(CLIENT_NS)?;
        let primary = Netns::named(PRIMARY_NS)?;
        let shadows = [Netns::named(SHADOW_NS[0])?, Netns::named(SHADOW_NS[1])?];
        veth(&client, "eth0", &primary, PRIMARY_IFACE)?;
        Link::new(&client, "eth0").up_with_address(&format!("{CLIENT_ADDR}/24"))?;
        Link::new(&primary, PRIMARY_IFACE).up_with_address(&format!("{PRIMARY_ADDR}/24"))?;
        for (i, shadow) in shadows.iter().enumerate() {
            let link = format!("to-s{}", i + 1);
            veth(&primary, &link, shadow, "eth0")?;
            Link::new(&primary, &link).up_with_address(&format!("10.200.{}.1/24", 21 + i))?;
            Link::new(shadow, "eth0").up_with_address(&format!("{}/24", SHADOW_ADDR[i]))?;
        }
        // Each host receives on its own CPU (RPS): a veth delivers a packet
        // in the sender's softirq, which would charge v1's receive work and
        // the capture program to the client's CPU, and the shadows' receive
        // work to the agent. Steered, v1's CPU pays for what v1's host
        // receives, as with a NIC.
        rps(&client, "eth0", CLIENT_CPU)?;
        rps(&primary, PRIMARY_IFACE, PRIMARY_CPU)?;
        for (i, shadow) in shadows.iter().enumerate() {
            rps(&primary, &format!("to-s{}", i + 1), PRIMARY_CPU)?;
            rps(shadow, "eth0", SHADOW_CPU)?;
        }
        // 10,000 connections: listen backlogs, SYN backlog, ports on the
        // client side (and the ports of the previous runs in TIME_WAIT).
        for ns in [&client, &primary, &shadows[0], &shadows[1]] {
            sysctl(ns, "net.core.somaxconn", "65535")?;
            sysctl(ns, "net.ipv4.tcp_max_syn_backlog", "65535")?;
            sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65535")?;
            // The agents' metrics ports: never handed out to a connection
            // (an nginx-mirror run's 10,000 upstream connections took one).
            sysctl(
                ns,
                "net.ipv4.ip_local_reserved_ports",
                &format!("{}-{}", METRICS_PORTS.start, METRICS_PORTS.end - 1),
            )?;
            sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")?;
        }
        Ok(Self {
            client,
            primary,
            shadows,
            scratch,
        })
    }
}

/// Receive Packet Steering of `iface`'s queue to `cpu` (`ip netns exec`
/// mounts the namespace's own /sys).
fn rps(ns: &Netns, iface: &str, cpu: usize) -> Result<()> {
    let mask = format!("{:x}", 1u64 << cpu);
    command::run(ns.command("sh").args([
        "-c",
        &format!("echo {mask} > /sys/class/net/{iface}/queues/rx-0/rps_cpus"),
    ]))
    .map(drop)
}

/// Ports the agents' metrics listeners take, one per run.
pub const METRICS_PORTS: std::ops::Range<u16> = 19_400..19_900;

fn sysctl(ns: &Netns, key: &str, value: &str) -> Result<()> {
    command::run(
        ns.command("sysctl")
            .args(["-q", "-w"])
            .arg(format!("{key}={value}")),
    )
    .map(drop)
}

/// Each of 10,000 connections is a file (client, primary, proxy): raises
/// this process's soft limit to its hard limit (raising the hard limit
/// needs CAP_SYS_RESOURCE, which a container may not have); every child
/// inherits it. Returns the limit.
pub fn raise_nofile() -> Result<u64> {
    let limit = raise_nofile_inner()?;
    NOFILE.store(limit, std::sync::atomic::Ordering::Relaxed);
    Ok(limit)
}

/// The open-file limit children get (for nginx's worker_rlimit_nofile).
static NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(20_000);

fn raise_nofile_inner() -> Result<u64> {
    let limit = mirror_testkit::process::raise_open_files(1 << 20)?;
    ensure!(
        limit >= 12_000,
        "RLIMIT_NOFILE is {limit}: 10,000 connections need more; raise it (ulimit -Hn)"
    );
    Ok(limit)
}

/// Starts `program args` in `ns`, pinned to `cpu` (taskset execs it: the
/// child's pid is the program's).
pub fn spawn_pinned(
    ns: &Netns,
    cpu: usize,
    label: &str,
    program: &str,
    args: &[&str],
) -> Result<Process> {
    Process::spawn(label, &mut pinned(ns, cpu, program, args))
}

/// `taskset -c CPU PROGRAM ARGS...` in `ns` (taskset execs the program).
pub fn pinned(ns: &Netns, cpu: usize, program: &str, args: &[&str]) -> Command {
    let mut command = ns.command("taskset");
    command.args(["-c", &cpu.to_string(), program]).args(args);
    command
}

/// One nginx (a single process: `master_process off`, so its pid is the
/// one serving, and a kill ends it) with a log line per request.
pub struct Nginx {
    pub process: Process,
    pub log: AccessLog,
}

/// The parts of nginx.conf every instance shares: one process, many
/// connections, large bodies accepted, a one-field access log (the status)
/// flushed every 200 ms.
fn nginx_conf(dir: &Path, name: &str, servers: &str) -> String {
    let d = dir.display();
    let nofile = NOFILE.load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {d}/{name}.pid;\nerror_log {d}/{name}.err warn;\n\
         worker_rlimit_nofile {nofile};\n\
         events {{ worker_connections {nofile}; multi_accept on; }}\n\
         http {{\n\
         \x20 log_format status_only \"$status\";\n\
         \x20 access_log {d}/{name}.log status_only buffer=64k flush=200ms;\n\
         \x20 keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
         \x20 client_max_body_size 64m;\n  client_body_buffer_size 16m;\n\
         \x20 client_body_temp_path {d}/{name}-body;\n  proxy_temp_path {d}/{name}-proxy;\n\
         \x20 fastcgi_temp_path {d}/{name}-fcgi;\n  uwsgi_temp_path {d}/{name}-uwsgi;\n\
         \x20 scgi_temp_path {d}/{name}-scgi;\n\
         {servers}}}\n"
    )
}

impl Nginx {
    fn start(ns: &Netns, cpu: usize, dir: &Path, name: &str, servers: &str) -> Result<Self> {
        let conf = dir.join(format!("{name}.conf"));
        fs::write(&conf, nginx_conf(dir, name, servers))?;
        let log = dir.join(format!("{name}.log"));
        fs::write(&log, "")?;
        let conf_arg = conf.display().to_string();
        let prefix = dir.display().to_string();
        let process = spawn_pinned(
            ns,
            cpu,
            name,
            "nginx",
            &["-p", &prefix, "-c", &conf_arg, "-e", "stderr"],
        )?;
        Ok(Self {
            process,
            log: AccessLog::new(log),
        })
    }

    /// v1: a small fixed response to any method. A POST's body is read to
    /// its end before the response goes out (a `mirror` subrequest with
    /// `mirror_request_body on` waits for it): answered early, as `return`
    /// alone would do, wrk takes the response for the end of the exchange
    /// and, still sending the body, never sends the next request.
    pub fn primary(hosts: &Hosts) -> Result<Self> {
        let body = PRIMARY_BODY.escape_default();
        let www = hosts.scratch.path().join("www");
        fs::create_dir_all(&www)?;
        // `/p6/` (bodies.rs): uploads of any size, answered at once and
        // the body discarded as it comes (nginx reads it off after the
        // response, for at most `lingering_time`, 30 s by default: a 1 GB
        // upload beside 19 others takes longer).
        let servers = format!(
            "  map $request_method:$uri $bench_read_body {{ \"~^POST:/p6/\" 0; \
             \"~^POST:\" 1; default 0; }}\n\
             \x20 server {{\n    listen {PRIMARY_PORT} backlog=65535;\n    root {};\n    \
             log_not_found off;\n    \
             if ($bench_read_body) {{ rewrite ^ /_post last; }}\n    \
             location / {{ return 200 \"{body}\"; }}\n    \
             location /p6/ {{ client_max_body_size 0; lingering_time 1h; \
             lingering_timeout 60s; return 200 \"{body}\"; }}\n    \
             location = /_post {{ internal; mirror /_read; mirror_request_body on; \
             error_page 404 405 =200 @ok; }}\n    \
             location = /_read {{ internal; return 204; }}\n    \
             location @ok {{ return 200 \"{body}\"; }}\n  }}\n",
            www.display()
        );
        let nginx = Self::start(
            &hosts.primary,
            PRIMARY_CPU,
            hosts.scratch.path(),
            "primary",
            &servers,
        )?;
        wait_listening(&hosts.client, PRIMARY_ADDR, PRIMARY_PORT)?;
        Ok(nginx)
    }

    /// A shadow: answers everything 200, whatever the body size; over
    /// http on [`SHADOW_PORT`] and https on [`SHADOW_TLS_PORT`] (one access
    /// log for both).
    pub fn shadow(hosts: &Hosts, i: usize) -> Result<Self> {
        let (cert, key) = shadow_certificate(hosts, i)?;
        let servers = format!(
            "  server {{\n    listen {SHADOW_PORT} backlog=65535;\n    \
             listen {SHADOW_TLS_PORT} ssl backlog=65535;\n    \
             ssl_certificate {};\n    ssl_certificate_key {};\n    \
             location / {{ return 200 \"shadow {}\\n\"; }}\n  }}\n",
            cert.display(),
            key.display(),
            i + 1
        );
        let name = format!("shadow{}", i + 1);
        let nginx = Self::start(
            &hosts.shadows[i],
            SHADOW_CPU,
            hosts.scratch.path(),
            &name,
            &servers,
        )?;
        wait_listening(&hosts.primary, SHADOW_ADDR[i], SHADOW_PORT)?;
        Ok(nginx)
    }

    /// nginx as an inline proxy on the primary's host: every request
    /// proxied to v1 and copied to each shadow by `mirror` subrequests.
    pub fn mirror_proxy(hosts: &Hosts, shadows: usize) -> Result<Self> {
        let mut servers =
            format!("  upstream v1 {{ server 127.0.0.1:{PRIMARY_PORT}; keepalive 256; }}\n");
        for (i, addr) in SHADOW_ADDR.iter().enumerate().take(shadows) {
            servers += &format!(
                "  upstream shadow{n} {{ server {addr}:{SHADOW_PORT}; keepalive 256; }}\n",
                n = i + 1
            );
        }
        servers += &format!("  server {{\n    listen {PROXY_PORT} backlog=65535;\n");
        servers += "    location / {\n";
        for i in 0..shadows {
            servers += &format!("      mirror /mirror{};\n", i + 1);
        }
        servers += "      mirror_request_body on;\n      proxy_pass http://v1;\n      \
                    proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n";
        for i in 0..shadows {
            servers += &format!(
                "    location = /mirror{n} {{\n      internal;\n      \
                 proxy_pass http://shadow{n}$request_uri;\n      proxy_http_version 1.1;\n      \
                 proxy_set_header Connection \"\";\n    }}\n",
                n = i + 1
            );
        }
        servers += "  }\n";
        let nginx = Self::start(
            &hosts.primary,
            PRIMARY_CPU,
            hosts.scratch.path(),
            "mirror-proxy",
            &servers,
        )?;
        wait_listening(&hosts.client, PRIMARY_ADDR, PROXY_PORT)?;
        Ok(nginx)
    }
}

/// Polls until `addr:port` accepts a TCP connection from `from`.
fn wait_listening(from: &Netns, addr: &str, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = from
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "nothing listens on {addr}:{port} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An nginx access log with one status per line: requests counted since
/// the last look.
pub struct AccessLog {
    path: PathBuf,
    offset: u64,
}

/// Requests logged in a stretch of an access log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Logged {
    pub requests: u64,
    /// Of those, answered 2xx.
    pub ok: u64,
}

impl AccessLog {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// Skips what is logged so far.
    pub fn mark(&mut self) -> Result<()> {
        self.offset = fs::metadata(&self.path)?.len();
        Ok(())
    }

    /// Lines logged since the last mark (or take), and marks.
    pub fn take(&mut self) -> Result<Logged> {
        let mut file = fs::File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut logged = Logged::default();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::with_capacity(8);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // a line still being written is counted next time
            }
            self.offset += n as u64;
            logged.requests += 1;
            logged.ok += line.starts_with(b"2") as u64;
        }
        Ok(logged)
    }
}

/// Everything a host runs to be nginx: `nginx -t` of a trivial config, so
/// a missing or broken nginx is reported before any namespace exists.
pub fn check_tools(goreplay: Option<&Path>) -> Result<()> {
    for (tool, package) in [
        ("nginx", "nginx"),
        ("wrk", "wrk"),
        ("bpftool", "bpftool"),
        ("taskset", "util-linux"),
        ("curl", "curl"),
        ("openssl", "openssl"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        ensure!(
            found,
            "`{tool}` is missing (Debian package {package}); `cargo xtask setup` installs it"
        );
    }
    if let Some(gor) = goreplay {
        ensure!(gor.is_file(), "--goreplay {}: no such file", gor.display());
    }
    Ok(())
}
