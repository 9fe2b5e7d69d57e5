//! nginx in a namespace: a real server, for the tests where what matters
//! is how production software frames, refuses or normalises what a client
//! sends (a request smuggling trick, a path like `/%61dmin`). Its access
//! log has one `STATUS REQUEST-LINE` line per request it answered, refused
//! ones included, written as each one ends; [`NginxConfig`] chooses another
//! line format (nginx's variables, for a test that compares nginx's parse
//! of each request with another's) and adds `http`-level text such as a
//! second `server`.

use std::{
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};

use crate::{netns::Netns, process::Process, scratch::ScratchDir, wait::wait_until};

/// How long nginx may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One running nginx; dropping it kills it and removes its files.
pub struct Nginx {
    addr: SocketAddr,
    log: PathBuf,
    process: Process,
    _scratch: ScratchDir,
}

/// What [`Nginx::start_with`] runs.
#[derive(Clone, Debug)]
pub struct NginxConfig<'a> {
    /// The body of the `server` block after `listen` (locations, in nginx
    /// syntax).
    pub server: &'a str,
    /// The access log's `log_format` after its name (`escape=json '...'`,
    /// nginx syntax); [`Nginx::answered`] reads only [`DEFAULT_LOG_FORMAT`].
    pub log_format: &'a str,
    /// More text in the `http` block (another `server`, `proxy_*` settings).
    pub http: &'a str,
}

/// `STATUS REQUEST-LINE`, what [`Nginx::answered`] reads.
pub const DEFAULT_LOG_FORMAT: &str = "\"$status $request\"";

/// A line of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    pub status: u16,
    /// The request line as nginx read it (empty when it read none).
    pub request: String,
}

impl Nginx {
    /// Listens on `addr` inside `netns`; `server` is the body of the
    /// `server` block after `listen` (locations, in nginx syntax). A
    /// keep-alive connection is never closed after a number of requests
    /// (nginx's default closes it after 1,000: a steady test client that
    /// keeps one connection would find it closed).
    pub fn start(netns: &Netns, addr: SocketAddr, server: &str) -> Result<Self> {
        Self::start_with(
            netns,
            addr,
            &NginxConfig {
                server,
                log_format: DEFAULT_LOG_FORMAT,
                http: "",
            },
        )
    }

    /// [`Nginx::start`] with a log format and `http`-level text of the
    /// test's choosing.
    pub fn start_with(netns: &Netns, addr: SocketAddr, config: &NginxConfig<'_>) -> Result<Self> {
        let NginxConfig {
            server,
            log_format,
            http,
        } = config;
        let scratch = ScratchDir::new("nginx")?;
        let dir = scratch.path().display().to_string();
        let listen = match addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {dir}/nginx.pid;\nerror_log stderr info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20 log_format line {log_format};\n\
             \x20 access_log {dir}/access.log line;\n\
             \x20 client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
             \x20 fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n\
             \x20 scgi_temp_path {dir}/scgi;\n\
             \x20 client_max_body_size 64m;\n\
             \x20 keepalive_requests 100000000;\n\
             {http}\n\
             \x20 server {{\n    listen {listen};\n{server}\n  }}\n}}\n"
        );
        let conf = scratch.write("nginx.conf", conf)?;
        let log = scratch.write("access.log", "")?;
        let process = Process::spawn(
            "nginx",
            netns.command("nginx").args([
                "-p".as_ref(),
                scratch.path().as_os_str(),
                "-c".as_ref(),
                conf.as_os_str(),
                "-e".as_ref(),
                "stderr".as_ref(),
            ]),
        )?;
        let listening = wait_until(START_TIMEOUT, || {
            netns
                .run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)))
                .is_ok()
        });
        ensure!(
            listening,
            "nginx does not listen on {addr} after {START_TIMEOUT:?}: {:?}",
            process.stderr_lines()
        );
        Ok(Self {
            addr,
            log,
            process,
            _scratch: scratch,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, in order. The probe connection of
    /// [`Nginx::start`] sent nothing and left no line.
    pub fn answered(&self) -> Result<Vec<Answered>> {
        let text = std::fs::read_to_string(&self.log)
            .with_context(|| format!("cannot read {}", self.log.display()))?;
        text.lines()
            .map(|line| {
                let (status, request) = line.split_once(' ').unwrap_or((line, ""));
                Ok(Answered {
                    status: status
                        .parse()
                        .with_context(|| format!("access log line {line:?}"))?,
                    request: request.to_owned(),
                })
            })
            .collect()
    }

    /// The access log's lines so far, as written (in the format of
    /// [`NginxConfig::log_format`]).
    pub fn log_lines(&self) -> Result<Vec<String>> {
        let text = std::fs::read(&self.log)
            .with_context(|| format!("cannot read {}", self.log.display()))?;
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// nginx's own messages (why it refused a request, at `info`).
    pub fn messages(&self) -> Vec<String> {
        self.process.stderr_lines()
    }
}
