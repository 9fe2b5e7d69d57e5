//! Debian's nginx as v1 with the agent attached and a strict shadow
//! behind it (a [`Server`] that keeps what it cannot frame,
//! [`refuse_unframeable`](mirror_testkit::server::Builder::refuse_unframeable)), for tests that hold what the shadow got against what v1
//! parsed, one client connection at a time.
//!
//! ```text
//!  client ──▶ nginx :8080 (mirror-agent on veth-s) ──▶ strict shadow 10.200.10.2:8080
//!               └─▶ nginx 127.0.0.1:8081 (return 200)
//! ```
//!
//! nginx proxies every request to a second server of its own on loopback
//! (not captured): so it reads every body, and its access log's
//! `$content_length` is the body's length as nginx decoded it, chunked
//! ones too. Each access log line is nginx's parse of one request
//! ([`Parsed`]), found by the client's port. Every [`NginxStage::exchange`]
//! ends with a barrier request on a connection of its own that must reach
//! the shadow, with everything the agent captured accounted for: the
//! shadow's arrivals and the agent's skip counters between two barriers
//! belong to the exchange between them.

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read as _, Write as _},
    net::Shutdown,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use mirror_testkit::{
    Agent, HttpClient, Metrics, Nginx, NginxConfig, Server, Signal, metrics,
    server::{Arrival, Reply},
    tcp, wait_until,
};

use crate::{
    ReplayRig,
    agent::{self, Stopped},
};

/// The skip counter, by `reason`.
pub const SKIPPED: &str = "mirror_requests_skipped_total";
/// Where the barrier requests go (a prefix no test case uses).
pub const BARRIER_PREFIX: &str = "/barrier/";
/// How long the agent may take to account for an exchange.
const SETTLE: Duration = Duration::from_secs(15);
/// How long a client waits for nginx to close.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two parts of one exchange.
const PART_GAP: Duration = Duration::from_millis(30);

/// nginx's parse of one request, from its access log.
const LOG_FORMAT: &str = "escape=json '{\"status\":\"$status\",\"method\":\"$request_method\",\
     \"uri\":\"$request_uri\",\"protocol\":\"$server_protocol\",\"length\":\"$content_length\",\
     \"port\":\"$remote_port\",\"request\":\"$request\"}'";
const UPSTREAM: &str = "127.0.0.1:8081";

/// One access log line: a request nginx answered (or refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub status: u16,
    /// Empty when nginx refused the request line.
    pub method: String,
    /// `$request_uri`: the target as sent, origin form (an absolute-form
    /// target's path and query).
    pub uri: String,
    pub protocol: String,
    /// The body's length as nginx read it (decoded), 0 without one.
    pub body_len: u64,
    /// The client's port: which connection it came on.
    pub port: u16,
    /// The request line as nginx logged it.
    pub request: String,
}

impl Parsed {
    fn from_line(line: &str) -> Result<Self> {
        let fields: BTreeMap<String, String> =
            serde_json::from_str(line).with_context(|| format!("access log line {line:?}"))?;
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let number = |name: &str| -> Result<u64> {
            let text = field(name);
            if text.is_empty() {
                return Ok(0);
            }
            text.parse()
                .with_context(|| format!("{name} {text:?} in {line:?}"))
        };
        Ok(Self {
            status: u16::try_from(number("status")?)?,
            method: field("method"),
            uri: field("uri"),
            protocol: field("protocol"),
            // A refused request may have an unparsable one: 0 then.
            body_len: number("length").unwrap_or(0),
            port: u16::try_from(number("port")?)?,
            request: field("request"),
        })
    }

    /// nginx served it (2xx): the request it parsed is a request.
    pub fn served(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How a client ends its side of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Closes its sending side after the last part, then reads until nginx
    /// closes: nginx answers everything it read, the agent sees the FIN.
    HalfClose,
    /// Reads nginx's first final response (or until nginx closes) and
    /// keeps its side open until the barrier went through: what the agent
    /// counted by then ([`Exchange::skipped`]), it counted without the
    /// client's FIN. Then it closes ([`Exchange::skipped_at_close`]).
    KeepOpen,
}

/// What one client connection brought about.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The client's port.
    pub port: u16,
    /// What nginx sent back.
    pub answer: Vec<u8>,
    /// nginx's access log lines for this connection, in order.
    pub nginx: Vec<Parsed>,
    /// What reached the shadow meanwhile (the barrier left out).
    pub shadow: Vec<Arrival>,
    /// How much each skip reason rose (by the barrier: before the client's
    /// FIN for [`Ending::KeepOpen`]).
    pub skipped: BTreeMap<String, u64>,
    /// [`Ending::KeepOpen`]: how much each rose once the client closed.
    pub skipped_at_close: BTreeMap<String, u64>,
}

impl Exchange {
    /// The requests nginx served.
    pub fn served(&self) -> Vec<&Parsed> {
        self.nginx.iter().filter(|p| p.served()).collect()
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// `reason=n` for each reason that rose.
    pub fn skips(&self) -> String {
        let parts: Vec<String> = self
            .skipped
            .iter()
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        parts.join(",")
    }
}

/// See the [module](self).
pub struct NginxStage {
    pub rig: ReplayRig,
    nginx: Nginx,
    pub shadow: Server,
    agent: Option<Agent>,
    barriers: usize,
    /// Skip counters at the last barrier.
    skipped: BTreeMap<String, u64>,
}

impl NginxStage {
    /// Hosts, nginx, the shadow, then the agent mirroring to the shadow
    /// with `args` added; attached when this returns.
    pub fn start(args: &[&str]) -> Result<Self> {
        let rig = ReplayRig::builder(1)
            .own_primary()
            .serve(&[])
            .mirror_to(&[0])
            .args(args)
            .build()?;
        let location = format!(
            "    location / {{ proxy_pass http://{UPSTREAM}; proxy_ignore_client_abort on; }}"
        );
        let upstream = format!(
            "  server {{ listen {UPSTREAM}; access_log off; \
             location / {{ return 200 \"ok\"; }} }}"
        );
        let nginx = Nginx::start_with(
            rig.primary(),
            rig.primary_addr(),
            &NginxConfig {
                server: &location,
                log_format: LOG_FORMAT,
                http: &upstream,
            },
        )?;
        let shadow = Server::builder()
            .refuse_unframeable()
            .answer(|request| {
                let mut reply = Reply::ok(request);
                if request.method() == "HEAD" {
                    // The same head, without the body `ok`.
                    reply.bytes.truncate(reply.bytes.len() - 2);
                }
                reply
            })
            .start(rig.shadow(0), rig.shadow_addr(0))?;
        let agent = rig.start_agent()?;
        Ok(Self {
            rig,
            nginx,
            shadow,
            agent: Some(agent),
            barriers: 0,
            skipped: BTreeMap::new(),
        })
    }

    /// The shadow's URL, the agent's name for it in metrics.
    pub fn target(&self) -> String {
        self.rig.url(0)
    }

    /// Sends `parts` on a new connection (each its own write, a moment
    /// apart), ends it as `ending` says, then waits at a barrier.
    pub fn exchange(&mut self, parts: &[&[u8]], ending: Ending) -> Result<Exchange> {
        let from = self.shadow.log().len();
        let mut stream = tcp::connect(self.rig.client(), self.rig.primary_addr())?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let port = stream.local_addr()?.port();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(PART_GAP);
            }
            // nginx may have refused and closed already: what it did not
            // read, it never got.
            if stream.write_all(part).is_err() {
                break;
            }
        }
        let (answer, skipped, skipped_at_close) = match ending {
            Ending::HalfClose => {
                let _ = stream.shutdown(Shutdown::Write);
                let answer = read_until_closed(&mut stream);
                drop(stream);
                (answer, self.skips_since_last()?, BTreeMap::new())
            }
            Ending::KeepOpen => {
                let answer = read_one_response(&mut stream);
                let skipped = self.skips_since_last()?;
                drop(stream);
                // nginx logs a request it refused once the connection is
                // gone (after its lingering close).
                wait_until(READ_TIMEOUT, || {
                    self.log(port).is_ok_and(|lines| !lines.is_empty())
                });
                (answer, skipped, self.skips_since_last()?)
            }
        };
        let nginx = self.log(port)?;
        let shadow = self
            .shadow
            .log_since(from)
            .into_iter()
            .filter(|a| !is_barrier(a))
            .collect();
        Ok(Exchange {
            port,
            answer,
            nginx,
            shadow,
            skipped,
            skipped_at_close,
        })
    }

    /// nginx's parse of each request of the connection from `port`.
    fn log(&self, port: u16) -> Result<Vec<Parsed>> {
        Ok(self
            .nginx
            .log_lines()?
            .iter()
            .map(|line| Parsed::from_line(line))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|p| p.port == port)
            .collect())
    }

    /// A barrier, then how much each skip reason rose since the last one.
    fn skips_since_last(&mut self) -> Result<BTreeMap<String, u64>> {
        let skipped = skip_counts(&self.barrier()?);
        let deltas = skipped
            .iter()
            .map(|(reason, n)| {
                let before = self.skipped.get(reason).copied().unwrap_or(0);
                (reason.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        self.skipped = skipped;
        Ok(deltas)
    }

    /// A plain request on a connection of its own; returns once it reached
    /// the shadow and the agent accounted for everything it captured.
    pub fn barrier(&mut self) -> Result<Metrics> {
        self.barriers += 1;
        let path = format!("{BARRIER_PREFIX}{}", self.barriers);
        let mut client = HttpClient::connect(self.rig.client(), self.rig.primary_addr())?;
        let response =
            client.request(format!("GET {path} HTTP/1.1\r\nHost: v1\r\n\r\n").as_bytes())?;
        ensure!(
            response.status == 200,
            "barrier {path}: nginx answered {}",
            response.status
        );
        client.close()?;
        let target = self.target();
        let deadline = Instant::now() + SETTLE;
        loop {
            let arrivals = self.shadow.log();
            let arrived = arrivals
                .iter()
                .any(|a| a.request.as_ref().is_ok_and(|r| r.target() == path));
            let metrics = Metrics::scrape(self.rig.primary(), metrics::DEFAULT_ADDR)?;
            let captured = metrics.requests_captured();
            let accounted: u64 = metrics.shadow_outcomes(&target).values().sum();
            // The capture's counters are a snapshot published now and then,
            // the targets' are live: only once the barrier is accounted for
            // (each arrival was one request sent at least) does a captured
            // count equal to it include the barrier, and with it every
            // skip of the bytes before it.
            if arrived && accounted >= arrivals.len() as u64 && captured == accounted {
                return Ok(metrics);
            }
            ensure!(
                Instant::now() < deadline,
                "barrier {path} after {SETTLE:?}: at the shadow: {arrived}; the agent \
                 captured {captured} requests and accounted for {accounted}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the agent (it must exit cleanly, its counts balanced), then
    /// the shadow; returns both (the shadow's whole log).
    pub fn stop(mut self) -> Result<(Stopped, Vec<Arrival>)> {
        let agent = self.agent.take().expect("stopped once");
        let stopped = agent::check_exit(agent.stop(Signal::TERM, Duration::from_secs(20))?)?;
        Ok((stopped, self.shadow.stop_log()?))
    }

    /// nginx's messages (why it refused what it refused).
    pub fn nginx_messages(&self) -> Vec<String> {
        self.nginx.messages()
    }
}

/// Whether an arrival is a barrier request.
pub fn is_barrier(arrival: &Arrival) -> bool {
    (arrival.request.as_ref()).is_ok_and(|r| r.target().starts_with(BARRIER_PREFIX))
}

/// The skip counters of a scrape, by reason.
pub fn skip_counts(metrics: &Metrics) -> BTreeMap<String, u64> {
    metrics
        .matching(SKIPPED, &[])
        .filter_map(|s| Some((s.label("reason")?.to_owned(), s.value as u64)))
        .collect()
}

/// Everything the peer sends until it closes, resets or goes quiet for
/// the read timeout.
fn read_until_closed(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return answer,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return answer,
        }
    }
}

/// nginx's first final response (interim ones before it included), or
/// what came before nginx closed or went quiet.
fn read_one_response(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    while !has_final_response(&answer) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    answer
}

/// Whether `answer` holds a whole final response (nginx's carry a
/// Content-Length).
fn has_final_response(answer: &[u8]) -> bool {
    let mut rest = answer;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = response.parse(rest) else {
            return false;
        };
        let code = response.code.unwrap_or(0);
        let body_len = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        if (100..200).contains(&code) {
            rest = &rest[head_len..];
            continue;
        }
        return rest.len() >= head_len + body_len;
    }
}

/// The status codes of the responses in `answer` (interim ones included).
pub fn statuses(answer: &[u8]) -> Vec<u16> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = answer[at..]
        .windows(9)
        .position(|w| w == b"HTTP/1.1 " || w == b"HTTP/1.0 ")
    {
        let start = at + offset + 9;
        if let Some(code) = answer
            .get(start..start + 3)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
        {
            found.push(code);
        }
        at = start;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_is_nginx_parse_of_one_request() {
        let line = r#"{"status":"200","method":"POST","uri":"/p?q","protocol":"HTTP/1.1","length":"5","port":"40000","request":"POST http://v1/p?q HTTP/1.1"}"#;
        let parsed = Parsed::from_line(line).unwrap();
        assert_eq!(
            (
                parsed.status,
                parsed.uri.as_str(),
                parsed.body_len,
                parsed.port
            ),
            (200, "/p?q", 5, 40000)
        );
        assert!(parsed.served());
        let refused = r#"{"status":"400","method":"","uri":"","protocol":"","length":"1000000000000000000000","port":"40001","request":"PRI * HTTP/2.0"}"#;
        let parsed = Parsed::from_line(refused).unwrap();
        assert_eq!((parsed.body_len, parsed.served()), (0, false));
    }

    #[test]
    fn answers_are_read_to_the_first_final_response() {
        let continued =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(has_final_response(continued));
        assert!(!has_final_response(&continued[..continued.len() - 1]));
        assert!(!has_final_response(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert_eq!(statuses(continued), [100, 200]);
        assert_eq!(statuses(b""), [0u16; 0]);
    }
}
