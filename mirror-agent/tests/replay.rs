//! Route + shadow end to end, against HTTP servers on 127.0.0.1: client
//! bytes are framed by the http stage, routed, rewritten and replayed; each
//! test checks what the shadow servers received and what was counted.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mirror_agent::http::testing::frame;
use mirror_agent::http::{Request, RequestSink};
use mirror_agent::route::{
    FilterReason, HeaderLine, HeaderMatch, HeaderTest, HostHeader, PathRule, Rewrites, RouteConfig,
    RouteTarget, Rules, Share, TargetUrl,
};
use mirror_agent::shadow::{
    BoxFuture, Dispatcher, DropReason, Resolve, ShadowConfig, Shadows, StatsSnapshot, StatusClass,
    Target, TargetConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// A shadow server that records every request it receives, byte for byte.

#[derive(Clone, Debug)]
struct Behavior {
    status: u16,
    /// Wait before each response.
    delay: Duration,
    /// Send `100 Continue` before the response.
    interim: bool,
    /// Close the connection after each response.
    close: bool,
    /// Never respond.
    silent: bool,
    /// Respond with a chunked body.
    chunked: bool,
    /// Answer garbage and close.
    garbage: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            status: 200,
            delay: Duration::ZERO,
            interim: false,
            close: false,
            silent: false,
            chunked: false,
            garbage: false,
        }
    }
}

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(behavior: Behavior) -> Server {
        Self::start_on("127.0.0.1:0", behavior).await
    }

    async fn start_on(addr: &str, behavior: Behavior) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let requests = requests.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, SeqCst);
                    tokio::spawn(serve(stream, behavior.clone(), requests.clone()));
                }
            })
        };
        Server {
            addr,
            requests,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve(mut stream: TcpStream, behavior: Behavior, requests: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf = Vec::new();
    loop {
        let len = loop {
            if let Some(len) = request_len(&buf) {
                break len;
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let raw: Vec<u8> = buf.drain(..len).collect();
        let head_request = raw.starts_with(b"HEAD ");
        requests.lock().unwrap().push(raw);
        if behavior.silent {
            // Keep the connection open, answer nothing.
            let mut sink = [0u8; 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    return;
                }
            }
            return;
        }
        if behavior.garbage {
            let _ = stream.write_all(b"garbage, not HTTP\r\n\r\n").await;
            return;
        }
        if !behavior.delay.is_zero() {
            tokio::time::sleep(behavior.delay).await;
        }
        let mut response = Vec::new();
        if behavior.interim {
            response.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let connection = if behavior.close {
            "close"
        } else {
            "keep-alive"
        };
        if behavior.chunked {
            response.extend_from_slice(
                format!(
                    "HTTP/1.1 {} X\r\nConnection: {connection}\r\nTransfer-Encoding: chunked\r\n\r\n",
                    behavior.status
                )
                .as_bytes(),
            );
            if !head_request {
                response.extend_from_slice(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
            }
        } else {
            response.extend_from_slice(
                format!(
                    "HTTP/1.1 {} X\r\nConnection: {connection}\r\nContent-Length: 7\r\n\r\n",
                    behavior.status
                )
                .as_bytes(),
            );
            if !head_request {
                response.extend_from_slice(b"shadow!");
            }
        }
        if stream.write_all(&response).await.is_err() || behavior.close {
            return;
        }
    }
}

/// Length of the complete request at the start of `buf`, if there is one.
fn request_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut pos = head;
        loop {
            let line_end = pos + find(&buf[pos..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let end = pos + find(&buf[pos..], b"\r\n")?;
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        return Some(pos);
                    }
                }
            }
            if buf.len() < pos + size + 2 {
                return None;
            }
            pos += size + 2;
        }
    }
    let length: usize = header("content-length").map_or(0, |v| v.trim().parse().unwrap());
    (buf.len() >= head + length).then_some(head + length)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Helpers: framing client bytes, configurations, waiting.

/// A target as these tests write it: where and how to send (name, URL,
/// transport settings), with its own rules and rewrites.
#[derive(Clone)]
struct Spec {
    shadow: TargetConfig,
    rules: Rules,
    rewrites: Rewrites,
}

fn target(url: &str) -> Spec {
    let url = TargetUrl::parse(url).unwrap();
    Spec {
        shadow: TargetConfig {
            name: url.to_string(),
            url,
            settings: Default::default(),
        },
        rules: Rules::default(),
        rewrites: Rewrites::default(),
    }
}

fn named(name: &str, url: &str) -> Spec {
    let mut t = target(url);
    t.shadow.name = name.to_string();
    t
}

/// With the default marker header.
fn config(targets: Vec<Spec>) -> ShadowConfig {
    let (route, settings) = targets
        .into_iter()
        .map(|t| {
            let route = RouteTarget {
                name: t.shadow.name,
                url: t.shadow.url,
                rules: t.rules,
                rewrites: t.rewrites,
            };
            (route, t.shadow.settings)
        })
        .unzip();
    ShadowConfig {
        route: RouteConfig {
            targets: route,
            ..RouteConfig::default()
        },
        settings,
    }
}

/// Without a marker header: the bytes a shadow receives are the client's.
fn unmarked(targets: Vec<Spec>) -> ShadowConfig {
    let mut config = config(targets);
    config.route.marker = None;
    config
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The targets running, and a dispatcher to hand them requests.
fn started(handle: Shadows) -> (Shadows, Dispatcher) {
    let dispatcher = handle.dispatcher();
    (handle, dispatcher)
}

/// Routes and queues each request, as the capture task does.
fn send(dispatcher: &mut Dispatcher, requests: impl IntoIterator<Item = Request>) {
    for request in requests {
        dispatcher.on_request(request);
    }
}

/// Waits until every target has nothing queued or in flight, then returns
/// the counters (which must balance).
async fn settled(handle: &Shadows) -> Vec<(String, StatsSnapshot)> {
    wait_for("the queues to drain", Duration::from_secs(10), || {
        handle
            .stats()
            .iter()
            .all(|(_, s)| s.queue_depth == 0 && s.in_flight == 0)
    })
    .await;
    let stats = handle.stats();
    for (name, s) in &stats {
        assert!(s.balances(), "{name}: {s}");
    }
    stats
}

fn stats_of<'a>(stats: &'a [(String, StatsSnapshot)], name: &str) -> &'a StatsSnapshot {
    &stats.iter().find(|(n, _)| n == name).unwrap().1
}

const GET: &[u8] =
    b"GET /api/users?id=7 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: curl/8.5\r\n\r\n";

fn gets(n: usize) -> Vec<Request> {
    frame(&GET.repeat(n))
}

/// A name resolver for tests: fixed answers, changeable.
#[derive(Default)]
struct Names(Mutex<HashMap<String, Vec<SocketAddr>>>);

impl Names {
    fn set(&self, host: &str, addrs: Vec<SocketAddr>) {
        self.0.lock().unwrap().insert(host.to_string(), addrs);
    }
}

impl Resolve for Names {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let answer = self.0.lock().unwrap().get(host).cloned();
        Box::pin(async move { answer.ok_or_else(|| io::Error::other("unknown name")) })
    }
}

// ---------------------------------------------------------------------------
// Fidelity.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_receives_the_clients_bytes_exactly() {
    let server = Server::start(Behavior::default()).await;
    // One worker: requests arrive in capture order (several may overtake
    // each other).
    let mut t = target(&server.url());
    t.shadow.settings.max_in_flight = 1;
    let (handle, mut router) = started(Shadows::start(unmarked(vec![t])).await);

    let get = b"GET /a/b?c=d&e HTTP/1.1\r\nhost: Example.COM:8080\r\nX-MiXeD-Case:  spaced value \r\nAccept: */*\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n";
    let post = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"k\": [1, 2, 3]}\n";
    let chunked = b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n";
    let http10 = b"GET /old HTTP/1.0\r\nUser-Agent: ancient\r\n\r\n";
    let mut stream = Vec::new();
    for part in [&get[..], post, chunked, http10] {
        stream.extend_from_slice(part);
    }
    send(&mut router, frame(&stream));
    wait_for("4 requests", Duration::from_secs(5), || server.count() == 4).await;
    let received = server.received();
    assert_eq!(received[0], get);
    assert_eq!(received[1], post);
    // Chunked: same head, the body as one chunk, the trailers kept.
    assert_eq!(
        received[2],
        b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nWikipedia\r\n0\r\nX-Trailer: t\r\n\r\n"
    );
    assert_eq!(received[3], http10);
    let stats = settled(&handle).await;
    assert_eq!(stats[0].1.sent_by(StatusClass::Success), 4);
    assert_eq!(stats[0].1.latency.count, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_arrives_whole() {
    let server = Server::start(Behavior::default()).await;
    let (_handle, mut router) =
        started(Shadows::start(unmarked(vec![target(&server.url())])).await);
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut stream = format!(
        "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    stream.extend_from_slice(&body);
    let requests = frame(&stream);
    assert_eq!(requests.len(), 1);
    router.on_request(requests.into_iter().next().unwrap());
    wait_for("the big request", Duration::from_secs(10), || {
        server.count() == 1
    })
    .await;
    assert_eq!(server.received()[0], stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marker_is_added_and_host_is_kept_replaced_or_set() {
    let a = Server::start(Behavior::default()).await;
    let b = Server::start(Behavior::default()).await;
    let c = Server::start(Behavior::default()).await;
    let mut by_target = named("target", &format!("{}/v2", b.url()));
    by_target.rewrites.host = Some(HostHeader::Target);
    let mut literal = named("literal", &c.url());
    literal.rewrites.host = Some(HostHeader::Value("shadow.internal".into()));
    let (handle, mut router) = started(
        Shadows::start(config(vec![
            named("original", &a.url()),
            by_target,
            literal,
        ]))
        .await,
    );
    send(&mut router, gets(1));
    wait_for("one request each", Duration::from_secs(5), || {
        a.count() == 1 && b.count() == 1 && c.count() == 1
    })
    .await;
    assert_eq!(
        a.received()[0],
        b"GET /api/users?id=7 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: curl/8.5\r\nX-Mirrored-By: mirror\r\n\r\n"
    );
    assert_eq!(
        b.received()[0],
        format!(
            "GET /v2/api/users?id=7 HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/8.5\r\nX-Mirrored-By: mirror\r\n\r\n",
            b.addr
        )
        .as_bytes()
    );
    assert_eq!(
        c.received()[0],
        b"GET /api/users?id=7 HTTP/1.1\r\nHost: shadow.internal\r\nUser-Agent: curl/8.5\r\nX-Mirrored-By: mirror\r\n\r\n"
    );
    settled(&handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_stripped_headers_are_rewritten_per_target() {
    let a = Server::start(Behavior::default()).await;
    let b = Server::start(Behavior::default()).await;
    let mut cfg = unmarked(vec![named("a", &a.url()), named("b", &b.url())]);
    cfg.route.rewrites.strip = vec!["Authorization".into(), "cookie".into()];
    cfg.route.rewrites.set = vec!["X-Env: shadow".parse::<HeaderLine>().unwrap()];
    cfg.route.targets[1].rewrites.set = vec!["X-Env: b".parse().unwrap()];
    let (handle, mut router) = started(Shadows::start(cfg).await);
    let stream = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nX-Env: prod\r\nCookie: a=1\r\nAccept: */*\r\nCookie: b=2\r\n\r\n";
    send(&mut router, frame(stream));
    wait_for("both", Duration::from_secs(5), || {
        a.count() == 1 && b.count() == 1
    })
    .await;
    assert_eq!(
        a.received()[0],
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Env: shadow\r\n\r\n"
    );
    assert_eq!(
        b.received()[0],
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Env: b\r\n\r\n"
    );
    settled(&handle).await;
}

// ---------------------------------------------------------------------------
// Routing rules and the loop guard.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_carrying_the_marker_is_never_replayed() {
    let server = Server::start(Behavior::default()).await;
    let (handle, mut router) =
        started(Shadows::start(config(vec![named("t", &server.url())])).await);
    let looped = b"GET / HTTP/1.1\r\nHost: x\r\nx-mirrored-by: mirror\r\n\r\n";
    let mut stream = looped.repeat(3);
    stream.extend_from_slice(GET);
    send(&mut router, frame(&stream));
    wait_for("the one unmarked request", Duration::from_secs(5), || {
        server.count() == 1
    })
    .await;
    let stats = settled(&handle).await;
    let s = stats_of(&stats, "t");
    assert_eq!(s.captured, 4);
    assert_eq!(s.filtered_by(FilterReason::Loop), 3);
    assert_eq!(s.sent_total(), 1);
    assert!(!server.received()[0].starts_with(b"GET / "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_the_captured_service_itself_is_reported() {
    let service = Server::start(Behavior::default()).await;
    let other = Server::start(Behavior::default()).await;
    let handle = Shadows::start(config(vec![
        named("self", &service.url()),
        named("other", &other.url()),
    ]))
    .await;
    assert_eq!(handle.targets_pointing_at(&[service.addr]), ["self"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_kind_filters_with_its_reason() {
    let server = Server::start(Behavior::default()).await;
    let mut methods = named("methods", &server.url());
    methods.rules.methods = vec!["POST".into()];
    let mut paths = named("paths", &server.url());
    paths.rules.allow_paths = vec![PathRule::Prefix("/api".into())];
    paths.rules.deny_paths = vec![PathRule::Regex("/admin".parse().unwrap())];
    let mut headers = named("headers", &server.url());
    headers.rules.headers = vec![
        HeaderMatch {
            name: "X-Canary".into(),
            test: HeaderTest::Equals("1".into()),
        },
        HeaderMatch {
            name: "User-Agent".into(),
            test: HeaderTest::Regex("^curl/".parse().unwrap()),
        },
    ];
    let (handle, mut router) = started(
        Shadows::start(unmarked(vec![
            methods,
            paths,
            headers,
            named("all", &server.url()),
        ]))
        .await,
    );
    let stream = [
        &b"GET /api/x HTTP/1.1\r\nHost: h\r\nX-Canary: 1\r\nUser-Agent: curl/1\r\n\r\n"[..],
        b"POST /api/admin/y HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
        b"GET /web HTTP/1.1\r\nHost: h\r\nX-Canary: 2\r\nUser-Agent: curl/1\r\n\r\n",
        b"GET /api/z HTTP/1.1\r\nHost: h\r\nX-Canary: 1\r\nUser-Agent: wget\r\n\r\n",
    ]
    .concat();
    send(&mut router, frame(&stream));
    let stats = settled(&handle).await;
    wait_for("all sends", Duration::from_secs(5), || {
        server.count() == 1 + 2 + 1 + 4
    })
    .await;

    let m = stats_of(&stats, "methods");
    assert_eq!(
        (m.filtered_by(FilterReason::Method), m.sent_total()),
        (3, 1)
    );
    let p = stats_of(&stats, "paths");
    assert_eq!((p.filtered_by(FilterReason::Path), p.sent_total()), (2, 2));
    let h = stats_of(&stats, "headers");
    assert_eq!(
        (h.filtered_by(FilterReason::Header), h.sent_total()),
        (3, 1)
    );
    let all = stats_of(&stats, "all");
    assert_eq!((all.filtered_total(), all.sent_total()), (0, 4));
    for (_, s) in &stats {
        assert_eq!(s.captured, 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_percent_share_sends_about_two_hundred_of_two_thousand() {
    let server = Server::start(Behavior::default()).await;
    let mut tenth = named("tenth", &server.url());
    tenth.rules.share = Some(Share::from_percent(10.0).unwrap());
    let (handle, mut router) = started(Shadows::start(unmarked(vec![tenth])).await);
    send(&mut router, gets(2000));
    let stats = settled(&handle).await;
    let s = stats_of(&stats, "tenth");
    let sent = s.sent_total();
    assert!((140..=260).contains(&sent), "sent {sent} of 2000");
    assert_eq!(s.filtered_by(FilterReason::Share), 2000 - sent);
    assert_eq!(server.count() as u64, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_share_draws_once_for_all_targets() {
    let a = Server::start(Behavior::default()).await;
    let b = Server::start(Behavior::default()).await;
    let mut cfg = unmarked(vec![named("a", &a.url()), named("b", &b.url())]);
    cfg.route.rules.share = Some(Share::from_percent(30.0).unwrap());
    let (handle, mut router) = started(Shadows::start(cfg).await);
    let stream: Vec<u8> = (0..300)
        .flat_map(|i| format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes())
        .collect();
    send(&mut router, frame(&stream));
    settled(&handle).await;
    let (mut ra, mut rb) = (a.received(), b.received());
    ra.sort();
    rb.sort();
    assert_eq!(ra, rb, "the same requests reach both targets");
    assert!((50..=130).contains(&ra.len()), "{}", ra.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_routes_and_counts_but_sends_nothing() {
    let server = Server::start(Behavior::default()).await;
    let mut cfg = config(vec![named("t", &server.url())]);
    cfg.route.dry_run = true;
    cfg.route.rules.methods = vec!["POST".into()];
    let (handle, mut router) = started(Shadows::start(cfg).await);
    send(
        &mut router,
        frame(
            &[
                GET,
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            ]
            .concat(),
        ),
    );
    let stats = settled(&handle).await;
    let s = stats_of(&stats, "t");
    assert_eq!(s.filtered_by(FilterReason::Method), 1);
    assert_eq!(s.filtered_by(FilterReason::DryRun), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections.load(SeqCst), 0);
}

// ---------------------------------------------------------------------------
// Queues, pools, replicas, failures.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_drops_on_a_full_queue_while_the_other_gets_everything() {
    let slow = Server::start(Behavior {
        delay: Duration::from_millis(200),
        ..Behavior::default()
    })
    .await;
    let fast = Server::start(Behavior::default()).await;
    let mut slow_target = named("slow", &slow.url());
    slow_target.shadow.settings.queue_size = 10;
    slow_target.shadow.settings.max_in_flight = 1;
    let mut fast_target = named("fast", &fast.url());
    fast_target.shadow.settings.queue_size = 1000;
    let (handle, mut router) =
        started(Shadows::start(unmarked(vec![slow_target, fast_target])).await);

    let requests = gets(500);
    let mut took = Vec::with_capacity(requests.len());
    for r in requests {
        let start = Instant::now();
        router.on_request(r);
        took.push(start.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    let p99 = took[took.len() * 99 / 100];
    let max = took[took.len() - 1];
    println!("on_request: median {median:?}, p99 {p99:?}, max {max:?}");
    // Debug build, shared machine: generous bounds, still far below the
    // slow target's 200 ms.
    assert!(median < Duration::from_micros(200), "median {median:?}");
    assert!(p99 < Duration::from_millis(5), "p99 {p99:?}");
    assert!(
        max < Duration::from_millis(100),
        "never waits for the slow target: {max:?}"
    );

    wait_for("the fast target", Duration::from_secs(10), || {
        fast.count() == 500
    })
    .await;
    let stats = handle.shutdown(Duration::from_millis(300)).await;
    let s = stats_of(&stats, "slow");
    assert!(s.balances(), "{s}");
    assert_eq!(s.captured, 500);
    assert!(s.dropped_by(DropReason::QueueFull) >= 450, "{s}");
    assert!(s.sent_total() >= 1, "{s}");
    // The server may also have the request that was in flight at the end.
    assert!(slow.count() as u64 >= s.sent_total(), "{s}");
    let f = stats_of(&stats, "fast");
    assert_eq!((f.sent_total(), f.dropped_total()), (500, 0), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_and_reused() {
    let server = Server::start(Behavior::default()).await;
    let mut one = named("one", &server.url());
    one.shadow.settings.max_in_flight = 1;
    let (handle, mut router) = started(Shadows::start(unmarked(vec![one])).await);
    send(&mut router, gets(200));
    settled(&handle).await;
    assert_eq!(server.count(), 200);
    assert_eq!(server.connections.load(SeqCst), 1, "one connection for all");

    // A server that closes after each response costs a connection each.
    let closing = Server::start(Behavior {
        close: true,
        ..Behavior::default()
    })
    .await;
    let (handle, mut router) =
        started(Shadows::start(unmarked(vec![named("c", &closing.url())])).await);
    send(&mut router, gets(20));
    let stats = settled(&handle).await;
    assert_eq!(stats[0].1.sent_total(), 20, "{}", stats[0].1);
    assert_eq!(closing.connections.load(SeqCst), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_and_chunked_responses_and_status_classes_are_read_and_counted() {
    let interim = Server::start(Behavior {
        interim: true,
        chunked: true,
        status: 503,
        ..Behavior::default()
    })
    .await;
    let mut t = named("t", &interim.url());
    t.shadow.settings.max_in_flight = 1;
    let (handle, mut router) = started(Shadows::start(unmarked(vec![t])).await);
    let stream = [
        GET,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        GET,
    ]
    .concat();
    send(&mut router, frame(&stream));
    let stats = settled(&handle).await;
    assert_eq!(
        stats[0].1.sent_by(StatusClass::ServerError),
        4,
        "{}",
        stats[0].1
    );
    assert_eq!(interim.connections.load(SeqCst), 1, "all on one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_counted_and_set_aside() {
    // A port nobody listens on, below the ephemeral range: a freed
    // ephemeral port may be the one a connect to it picks for itself, and
    // then the connect succeeds (TCP's simultaneous open with itself).
    let port = 1;
    let live = Server::start(Behavior::default()).await;
    let (handle, mut router) = started(
        Shadows::start(unmarked(vec![
            named("dead", &format!("http://127.0.0.1:{port}")),
            named("live", &live.url()),
        ]))
        .await,
    );
    send(&mut router, gets(50));
    let stats = settled(&handle).await;
    let dead = stats_of(&stats, "dead");
    assert_eq!(dead.dropped_by(DropReason::ConnectRefused), 50, "{dead}");
    let targets: Vec<Arc<Target>> = handle.targets();
    assert!(targets[0].addresses()[0].failing);
    assert_eq!(stats_of(&stats, "live").sent_total(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_two_addresses_spreads_requests_and_follows_changes() {
    let a = Server::start(Behavior::default()).await;
    let b = Server::start(Behavior::default()).await;
    let names = Arc::new(Names::default());
    names.set("shadow.test", vec![a.addr, b.addr]);
    let mut t = named("replicas", "http://shadow.test:1");
    t.shadow.settings.resolve_interval = Duration::from_millis(50);
    let (handle, mut router) =
        started(Shadows::start_with_resolver(unmarked(vec![t]), names.clone()).await);
    send(&mut router, gets(100));
    settled(&handle).await;
    assert_eq!(a.count() + b.count(), 100);
    assert!(
        a.count() >= 30 && b.count() >= 30,
        "{} / {}",
        a.count(),
        b.count()
    );

    // One replica goes away: the next resolution drops it.
    names.set("shadow.test", vec![b.addr]);
    let target = handle.targets()[0].clone();
    wait_for("the resolver to notice", Duration::from_secs(5), || {
        target.addresses().len() == 1
    })
    .await;
    let before = (a.count(), b.count());
    send(&mut router, gets(20));
    settled(&handle).await;
    assert_eq!((a.count(), b.count()), (before.0, before.1 + 20));

    // A failed resolution keeps what is known.
    names.0.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(target.addresses().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_replica_is_skipped_without_losing_requests() {
    let live = Server::start(Behavior::default()).await;
    // Nobody listens on port 1 (below the ephemeral range: see
    // a_dead_target_is_counted_and_set_aside).
    let dead: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let names = Arc::new(Names::default());
    names.set("pair.test", vec![dead, live.addr]);
    let (handle, mut router) = started(
        Shadows::start_with_resolver(unmarked(vec![named("pair", "http://pair.test:1")]), names)
            .await,
    );
    send(&mut router, gets(40));
    let stats = settled(&handle).await;
    let s = stats_of(&stats, "pair");
    assert_eq!((s.sent_total(), s.dropped_total()), (40, 0), "{s}");
    assert_eq!(live.count(), 40);
    let states = handle.targets()[0].addresses();
    assert!(states.iter().any(|a| a.addr == dead && a.failing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_name_drops_with_no_address() {
    let names = Arc::new(Names::default());
    let (handle, mut router) = started(
        Shadows::start_with_resolver(unmarked(vec![named("nx", "http://nx.test:1")]), names).await,
    );
    send(&mut router, gets(5));
    let stats = settled(&handle).await;
    assert_eq!(stats[0].1.dropped_by(DropReason::NoAddress), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_target_times_out() {
    let silent = Server::start(Behavior {
        silent: true,
        ..Behavior::default()
    })
    .await;
    let mut t = named("silent", &silent.url());
    t.shadow.settings.request_timeout = Duration::from_millis(200);
    let (handle, mut router) = started(Shadows::start(unmarked(vec![t])).await);
    send(&mut router, gets(3));
    let start = Instant::now();
    let stats = settled(&handle).await;
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        stats[0].1.dropped_by(DropReason::Timeout),
        3,
        "{}",
        stats[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_never_completes_times_out() {
    // A listener with a backlog of 0 that never accepts: once its queue
    // is full, the kernel ignores further SYNs and connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let connect = TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            fillers.push(s);
        }
    }
    let mut t = named("hang", &format!("http://{addr}"));
    t.shadow.settings.connect_timeout = Duration::from_millis(150);
    let (handle, mut router) = started(Shadows::start(unmarked(vec![t])).await);
    send(&mut router, gets(2));
    let stats = settled(&handle).await;
    let s = &stats[0].1;
    // The first request times out and sets the address aside; the second
    // finds it set aside (counted with the same reason).
    assert_eq!(s.dropped_by(DropReason::ConnectTimeout), 2, "{s}");
}

// ---------------------------------------------------------------------------
// Shutdown and reload.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_until_the_deadline_then_counts_the_rest() {
    let slow = Server::start(Behavior {
        delay: Duration::from_millis(50),
        ..Behavior::default()
    })
    .await;
    let mut t = named("slow", &slow.url());
    t.shadow.settings.max_in_flight = 1;
    t.shadow.settings.queue_size = 100;
    let (handle, mut router) = started(Shadows::start(unmarked(vec![t])).await);
    send(&mut router, gets(40));
    let start = Instant::now();
    let stats = handle.shutdown(Duration::from_millis(275)).await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    let s = stats_of(&stats, "slow");
    assert!(s.balances(), "{s}");
    assert_eq!((s.queue_depth, s.in_flight), (0, 0));
    assert!((2..=8).contains(&s.sent_total()), "{s}");
    assert_eq!(
        s.sent_total() + s.dropped_by(DropReason::Shutdown),
        40,
        "{s}"
    );

    // After shutdown, requests are counted, not queued.
    send(&mut router, gets(2));
    let s = handle.stats()[0].1.clone();
    assert_eq!(s.captured, 42);
    assert!(s.balances(), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_rules_keeps_running_targets_and_adds_new_ones() {
    let a = Server::start(Behavior::default()).await;
    let b = Server::start(Behavior::default()).await;
    let (handle, mut router) = started(Shadows::start(unmarked(vec![named("a", &a.url())])).await);
    send(&mut router, gets(3));
    settled(&handle).await;
    let before = handle.targets()[0].clone();

    let mut next = unmarked(vec![named("a", &a.url()), named("b", &b.url())]);
    next.route.rules.methods = vec!["POST".into()];
    handle.reload(next).await;
    send(
        &mut router,
        frame(
            &[
                GET,
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            ]
            .concat(),
        ),
    );
    let stats = settled(&handle).await;
    assert!(Arc::ptr_eq(&before, &handle.targets()[0]), "target a kept");
    let sa = stats_of(&stats, "a");
    assert_eq!(
        (
            sa.captured,
            sa.sent_total(),
            sa.filtered_by(FilterReason::Method)
        ),
        (5, 4, 1)
    );
    let sb = stats_of(&stats, "b");
    assert_eq!((sb.captured, sb.sent_total()), (2, 1));
    assert_eq!(b.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_answering_garbage_is_set_aside_not_reconnected_to_per_request() {
    let server = Server::start(Behavior {
        garbage: true,
        ..Behavior::default()
    })
    .await;
    let (handle, mut router) =
        started(Shadows::start(unmarked(vec![named("bad", &server.url())])).await);
    let began = Instant::now();
    send(&mut router, gets(500));
    let stats = settled(&handle).await;
    let s = stats_of(&stats, "bad");
    assert_eq!(s.dropped_by(DropReason::IoError), 500, "{s}");
    // Before, every request made a connection of its own (an error storm
    // of ~1,400 connects a second); now the first failures (two answers
    // in a row, none good between) set the address aside and one request a
    // second probes it. Until those first failures, up to max_in_flight
    // (32) connections may open at once.
    let probes = began.elapsed().as_secs() + 1;
    let connections = server.connections.load(SeqCst);
    assert!(
        connections as u64 <= 32 + probes,
        "{connections} connections for 500 requests in {:?}",
        began.elapsed()
    );
}
