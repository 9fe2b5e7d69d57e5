//! The HTTP endpoint on `--metrics-addr` (loopback by default): `/metrics`
//! in the Prometheus text format, `/healthz` (the process answers),
//! `/readyz` (program attached, ring being drained, config loaded), and
//! with the comparison `/compare` (JSON), `/compare.html` and `/verdict`
//! (the promotion gate: 200 pass, 412 fail, 503 inconclusive).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::Sources;
use super::metrics::render;
use crate::compare::gate::{self, RETRY_AFTER_SECONDS, Rule};
use crate::compare::{Engine, render_html};

/// What `/readyz` checks. The capture task sets `attached` after attaching
/// and bumps `last_drain_ns` each time it drains the ring.
#[derive(Default)]
pub struct Readiness {
    pub attached: AtomicBool,
    pub config_loaded: AtomicBool,
    pub last_drain_ns: AtomicU64,
    /// The capture sleeps with an empty ring: the kernel program wakes it
    /// for the next record.
    pub asleep: AtomicBool,
}

impl Readiness {
    /// Ready when attached, configured, and the ring was drained within the
    /// last 5 s (the drain loop runs every millisecond while awake) or the
    /// capture sleeps (the ring is empty and the next record wakes it).
    fn check(&self) -> Result<(), &'static str> {
        if !self.config_loaded.load(Ordering::Relaxed) {
            return Err("config not loaded");
        }
        if !self.attached.load(Ordering::Relaxed) {
            return Err("capture program not attached");
        }
        if self.asleep.load(Ordering::Relaxed) {
            return Ok(());
        }
        let last = self.last_drain_ns.load(Ordering::Relaxed);
        let now = crate::clock::monotonic_ns();
        if last == 0 || now.saturating_sub(last) > 5_000_000_000 {
            return Err("ring buffer not drained in the last 5 s");
        }
        Ok(())
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
///
/// Bounded, so that nobody who can reach the port can starve the agent:
/// at most [`MAX_CONNECTIONS`] at once (a new one closes the oldest: a
/// liveness probe is always served), a head must arrive within
/// [`HEAD_TIMEOUT`], and a connection lives at most [`CONNECTION_LIFETIME`]
/// (a scraper reconnects). File descriptors for shadows stay free.
pub async fn serve(listener: TcpListener, sources: Sources, readiness: Arc<Readiness>) {
    let compare = sources.compare.clone();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    let registry = Arc::new(registry);
    let mut open: VecDeque<JoinHandle<()>> = VecDeque::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.retain(|connection| !connection.is_finished());
        if open.len() >= MAX_CONNECTIONS
            && let Some(oldest) = open.pop_front()
        {
            oldest.abort();
        }
        let registry = Arc::clone(&registry);
        let readiness = Arc::clone(&readiness);
        let compare = compare.clone();
        open.push_back(tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let uri = request.uri();
                let response = respond(uri.path(), uri.query(), &registry, &readiness, &compare);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(err)) => debug!(%peer, error = %err, "metrics connection ended"),
                Err(_) => debug!(%peer, "metrics connection closed after its lifetime"),
                Ok(Ok(())) => {}
            }
        }));
    }
}

/// Connections served at once; a new one closes the oldest.
pub const MAX_CONNECTIONS: usize = 32;
/// Time for a request head to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection stays open (keep-alive included).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

fn respond(
    path: &str,
    query: Option<&str>,
    registry: &Registry,
    readiness: &Readiness,
    compare: &Option<Engine>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/verdict" => match compare {
            Some(engine) => return verdict(engine, query.unwrap_or_default()),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "the comparison is off: start the agent with --compare\n".to_owned(),
            ),
        },
        "/compare" | "/compare.html" => match compare {
            Some(engine) if path == "/compare" => (
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&engine.report()).unwrap_or_default(),
            ),
            Some(engine) => (
                StatusCode::OK,
                "text/html; charset=utf-8",
                render_html(&engine.report()),
            ),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "the comparison is off: start the agent with --compare\n".to_owned(),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(registry),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => match readiness.check() {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz, /readyz, /compare, /compare.html or /verdict?target=URL\n"
                .to_owned(),
        ),
    };
    response(status, content_type, body)
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// `GET /verdict?target=URL&max-differ=1%&...`: the gate's verdict on this
/// agent's counts, as its status (200, 412, 503 with `Retry-After`) and a
/// JSON body; a bad parameter 400, an unknown target 404 (with the
/// targets the agent knows).
fn verdict(engine: &Engine, query: &str) -> Response<Full<Bytes>> {
    let error = |status: StatusCode, message: String, targets: Vec<String>| {
        let body = serde_json::json!({ "error": message, "targets": targets });
        response(status, "application/json", format!("{body}\n"))
    };
    let (target, rule) = match Rule::from_query(query) {
        Ok(asked) => asked,
        Err(message) => return error(StatusCode::BAD_REQUEST, message, Vec::new()),
    };
    let verdict = match gate::of_report(&engine.report(), &target, &rule) {
        Ok(verdict) => verdict,
        Err(known) => {
            let message = format!(
                "no compared target `{target}` here; the agent compares: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
            return error(StatusCode::NOT_FOUND, message, known);
        }
    };
    let status = StatusCode::from_u16(verdict.verdict.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string_pretty(&verdict).unwrap_or_default();
    let mut response = response(status, "application/json", body + "\n");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
    }
    response
}

/// Binds the endpoint; binding a non-loopback address is the operator's
/// explicit choice (`--metrics-addr 0.0.0.0:9464`), logged as such.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    if addr.ip().is_loopback() {
        info!(%addr, "metrics endpoint listening");
    } else {
        warn!(%addr, "metrics endpoint listening beyond loopback");
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_attach_config_and_a_recent_drain() {
        let ready = Readiness::default();
        assert_eq!(ready.check(), Err("config not loaded"));
        ready.config_loaded.store(true, Ordering::Relaxed);
        assert_eq!(ready.check(), Err("capture program not attached"));
        ready.attached.store(true, Ordering::Relaxed);
        assert!(ready.check().is_err());
        ready
            .last_drain_ns
            .store(crate::clock::monotonic_ns(), Ordering::Relaxed);
        assert_eq!(ready.check(), Ok(()));
        ready.last_drain_ns.store(1, Ordering::Relaxed);
        assert!(ready.check().is_err(), "an old drain");
        ready.asleep.store(true, Ordering::Relaxed);
        assert_eq!(ready.check(), Ok(()), "asleep: nothing to drain");
    }
}
