//! A deterministic HTTP/1.1 "application" for the comparison's tests: v1,
//! its replicas and its new versions. Its answers depend only on the
//! request and on the [`Behaviour`] it was started with, so a test knows
//! exactly which answers of two servers differ, how and where.
//!
//! Endpoints (JSON bodies are `serde_json` text, keys sorted):
//! * `GET /items/{n}` → 200 `{"id":n,"name":"item n","price":p,"tags":[..]}`;
//!   `HEAD /items/{n}` the same head without the body.
//! * `POST /orders` with `{"item":n,"quantity":q}` → 201
//!   `{"currency":"EUR","item":n,"quantity":q,"total":price(n)*q}`; a body
//!   that is not such JSON → 400.
//! * `GET /stream/{n}` → 200, a chunked text body of `n` lines, one chunk
//!   each.
//! * `GET /empty` → 204 with `X-Version`.
//! * `GET /cached` → 200 with an `ETag`, or 304 when `If-None-Match` names
//!   it.
//! * `PUT`, `GET`, `DELETE /kv/{n}` with [`Behaviour::stateful`]: a value
//!   kept per id ([`crate::stateful`]).
//! * anything else → 404 JSON.
//!
//! With [`Behaviour::echo`], every JSON object answered also carries the
//! request as the server got it, as echo services do: `"request":
//! {"method", "path", "headers": {name: value}}` (names lowercase, the
//! values of one name joined with `, `).
//!
//! Every answer also carries what differs between two servers without
//! being a regression, and that the comparison ignores by default: `Date`,
//! `Server` (the server's name) and `X-Request-Id` (unique per answer).
//!
//! It runs on the test kit's server ([`Server`]): its answer function, and
//! what it answered counted by endpoint and status.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use serde_json::{Value, json};

use mirror_testkit::{Netns, ReceivedRequest, Server, server::Reply};

use crate::stateful::{Stateful, Store};

/// The `ETag` of `GET /cached`.
pub const CACHED_ETAG: &str = "\"cached-v1\"";
/// The `X-Version` of `GET /empty` unless a regression is planted.
pub const VERSION: &str = "1.4.2";

/// Differences planted on purpose: a new version's regressions.
#[derive(Clone, Debug, Default)]
pub struct Regressions {
    /// `GET /items/{n}` with `n % k == 0` answers 500 (the same body and
    /// headers otherwise): a status difference only.
    pub item_500_every: Option<u64>,
    /// `POST /orders`: `$.total` is this much larger (0: none).
    pub order_total_plus: u64,
    /// `GET /empty` answers this `X-Version`: a header difference only.
    pub empty_version: Option<String>,
    /// Headers added to every answer (a framework's `X-Powered-By`, CORS,
    /// cache headers): a header difference on every endpoint.
    pub extra_headers: Vec<(String, String)>,
    /// Request paths (exact) answered 404 JSON, whatever the method: an
    /// endpoint the new version lost.
    pub gone: Vec<String>,
    /// A request whose path starts with this is answered with the head of
    /// its response (status line and headers, the body's length
    /// promised), then the connection is closed: a crash after the
    /// headers. (An answer without a body, HEAD, 204, 304, is whole with
    /// its head: pick an endpoint with one.)
    pub crash_on: Option<String>,
}

/// How a server answers, chosen at start.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Shown in `Server` (ignored by the comparison by default).
    pub name: String,
    /// JSON bodies gzip'd (`Content-Encoding: gzip`) when the request
    /// accepts gzip.
    pub gzip: bool,
    /// JSON bodies sent chunked (in two chunks) instead of with a
    /// `Content-Length`.
    pub chunked: bool,
    /// JSON objects carry `"served_at"`: nanoseconds since the epoch,
    /// unique per answer of this server (noise).
    pub served_at: bool,
    /// `Set-Cookie: session=<value>` on every answer.
    pub session_cookie: Option<String>,
    /// `GET /items/{n}` for these `n` answers `"name": "item n (renamed)"`:
    /// a field that differs on chosen requests only (rare noise on a
    /// baseline, a partial regression on a candidate).
    pub renamed_items: Vec<u64>,
    /// JSON objects carry `"request"`: the method, path and headers the
    /// server got (an echo service).
    pub echo: bool,
    pub regressions: Regressions,
    /// `/kv/{n}` keeps values ([`crate::stateful`]); none: 404 there.
    pub stateful: Option<Stateful>,
}

impl Behaviour {
    /// v1's behaviour: plain JSON with a `Content-Length`, no noise.
    pub fn v1(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            gzip: false,
            chunked: false,
            served_at: false,
            session_cookie: None,
            renamed_items: Vec::new(),
            echo: false,
            regressions: Regressions::default(),
            stateful: None,
        }
    }
}

/// What a server answered, by endpoint template and by status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// `"GET /items/{n}"`, `"POST /orders"`, ... → answers.
    pub endpoints: BTreeMap<String, u64>,
    /// Final status → answers.
    pub statuses: BTreeMap<u16, u64>,
    /// `100 Continue` sent.
    pub continues: u64,
}

impl Answered {
    /// Final answers, all endpoints.
    pub fn total(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// The application's state: what it answered, and its unique values.
struct App {
    behaviour: Behaviour,
    answered: Mutex<Answered>,
    /// Last `served_at` given (strictly increasing).
    last_served_at: AtomicU64,
    /// Answers so far, for `X-Request-Id`.
    answers: AtomicU64,
    /// The values of `/kv/{n}`.
    kv: Store,
}

/// The application on a test server; stops answering on
/// [`AppServer::stop`] or drop.
pub struct AppServer {
    server: Server,
    app: Arc<App>,
}

impl AppServer {
    /// Listens on `addr` in `netns` (listening when this returns).
    pub fn start(netns: &Netns, addr: SocketAddr, behaviour: Behaviour) -> Result<Self> {
        let app = Arc::new(App::new(behaviour));
        let answering = Arc::clone(&app);
        let server = Server::builder()
            .answer(move |request| answering.reply(request))
            .start(netns, addr)?;
        Ok(Self { server, app })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What it answered so far.
    pub fn answered(&self) -> Answered {
        let mut answered = self.app.answered().clone();
        answered.continues = self.server.continues() as u64;
        answered
    }

    /// Stops accepting and answering; returns what it answered.
    pub fn stop(self) -> Answered {
        let answered = self.answered();
        self.server.halt();
        answered
    }
}

impl App {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            answered: Mutex::default(),
            last_served_at: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            kv: Store::default(),
        }
    }

    fn answered(&self) -> std::sync::MutexGuard<'_, Answered> {
        self.answered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes answering `received`, counted.
    fn reply(&self, received: &ReceivedRequest) -> Reply {
        let request = Request::from(received);
        let id = self.answers.fetch_add(1, Ordering::Relaxed) + 1;
        let kv = (self.behaviour.stateful.as_ref())
            .and_then(|stateful| self.kv.answer(&self.behaviour, stateful, &request));
        let response = match kv {
            Some(response) => with_common_headers(&self.behaviour, response, id),
            None => answer(&self.behaviour, &request, self.served_at(), id),
        };
        let crash = (self.behaviour.regressions.crash_on.as_deref())
            .is_some_and(|prefix| request.path.starts_with(prefix));
        let bytes = encode(
            &response,
            request.method == "HEAD" || crash,
            received.keep_alive(),
            request.http10,
        );
        let mut answered = self.answered();
        *answered
            .endpoints
            .entry(endpoint(&request.method, &request.path))
            .or_default() += 1;
        *answered.statuses.entry(response.status).or_default() += 1;
        if crash {
            return Reply::closing(bytes);
        }
        Reply::bytes(bytes)
    }

    /// Now in ns since the epoch, but always after the last one given.
    fn served_at(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut last = self.last_served_at.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_served_at.compare_exchange(
                last,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// One request as the server framed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercase.
    pub headers: Vec<(String, String)>,
    /// Decoded (chunk framing removed).
    pub body: Vec<u8>,
    pub http10: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl From<&ReceivedRequest> for Request {
    fn from(received: &ReceivedRequest) -> Self {
        Self {
            method: received.method().to_owned(),
            path: received.target().to_owned(),
            headers: received
                .headers()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value).into_owned();
                    (name.to_ascii_lowercase(), value)
                })
                .collect(),
            body: received.body.clone(),
            http10: received.http10(),
        }
    }
}

/// The value of the first of `headers` named `name` (any case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How a response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` (also on HEAD answers, without the body).
    Length,
    /// `Transfer-Encoding: chunked`, the body cut into these many chunks.
    Chunked(usize),
    /// No body and no length (204, 304).
    Bodiless,
}

/// One response before it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: Framing,
}

/// The endpoint template of a request, as [`Answered`] counts it.
pub fn endpoint(method: &str, path: &str) -> String {
    let template = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "items", n] if n.parse::<u64>().is_ok() => "/items/{n}".to_owned(),
        ["", "stream", n] if n.parse::<u64>().is_ok() => "/stream/{n}".to_owned(),
        ["", "kv", n] if n.parse::<u64>().is_ok() => "/kv/{n}".to_owned(),
        _ => path.to_owned(),
    };
    format!("{method} {template}")
}

/// The price of item `n`, in cents.
pub fn price(n: u64) -> u64 {
    100 + (n * 37) % 900
}

/// The JSON of item `n`.
pub fn item(n: u64) -> Value {
    json!({
        "id": n,
        "name": format!("item {n}"),
        "price": price(n),
        "tags": [format!("t{}", n % 3), format!("u{}", n % 5)],
    })
}

/// The answer to `request` under `behaviour`; `served_at` and `request_id`
/// are this answer's unique values.
pub fn answer(
    behaviour: &Behaviour,
    request: &Request,
    served_at: u64,
    request_id: u64,
) -> Response {
    let method = request.method.as_str();
    let segments: Vec<&str> = request.path.split('/').collect();
    let regressions = &behaviour.regressions;
    let json_answer = |status: u16, mut value: Value| {
        if behaviour.served_at
            && let Some(object) = value.as_object_mut()
        {
            object.insert("served_at".to_owned(), json!(served_at));
        }
        if behaviour.echo
            && let Some(object) = value.as_object_mut()
        {
            object.insert("request".to_owned(), echoed(request));
        }
        json_response(behaviour, request, status, &value)
    };
    let response = match (method, segments.as_slice()) {
        _ if regressions.gone.contains(&request.path) => {
            json_answer(404, json!({"error": "not found"}))
        }
        ("GET" | "HEAD", ["", "items", n]) if n.parse::<u64>().is_ok() => {
            let n: u64 = n.parse().unwrap_or(0);
            let status = match regressions.item_500_every {
                Some(k) if k > 0 && n.is_multiple_of(k) => 500,
                _ => 200,
            };
            let mut value = item(n);
            if behaviour.renamed_items.contains(&n) {
                value["name"] = json!(format!("item {n} (renamed)"));
            }
            // HEAD: the same head, the body left out when written.
            json_answer(status, value)
        }
        ("POST", ["", "orders"]) => match order(&request.body) {
            Some((n, quantity)) => json_answer(
                201,
                json!({
                    "currency": "EUR",
                    "item": n,
                    "quantity": quantity,
                    "total": price(n) * quantity + regressions.order_total_plus,
                }),
            ),
            None => json_answer(
                400,
                json!({"error": "expected {\"item\":n,\"quantity\":q}"}),
            ),
        },
        ("GET", ["", "stream", n]) if n.parse::<u64>().is_ok() => {
            let n: usize = n.parse().unwrap_or(0);
            let body: String = (1..=n).map(|i| format!("line {i} of {n}\n")).collect();
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: body.into_bytes(),
                framing: Framing::Chunked(n.max(1)),
            }
        }
        ("GET", ["", "empty"]) => Response {
            status: 204,
            headers: vec![(
                "X-Version".into(),
                regressions
                    .empty_version
                    .clone()
                    .unwrap_or_else(|| VERSION.to_owned()),
            )],
            body: Vec::new(),
            framing: Framing::Bodiless,
        },
        ("GET", ["", "cached"]) if request.header("if-none-match") == Some(CACHED_ETAG) => {
            Response {
                status: 304,
                headers: vec![("ETag".into(), CACHED_ETAG.into())],
                body: Vec::new(),
                framing: Framing::Bodiless,
            }
        }
        ("GET", ["", "cached"]) => {
            let mut response = json_answer(200, json!({"cached": true}));
            response.headers.push(("ETag".into(), CACHED_ETAG.into()));
            response
        }
        _ => json_answer(404, json!({"error": "not found"})),
    };
    with_common_headers(behaviour, response, request_id)
}

/// `response` with what every answer carries first: `Date`, `Server` and
/// `X-Request-Id`, and the session cookie if any.
fn with_common_headers(behaviour: &Behaviour, mut response: Response, request_id: u64) -> Response {
    let mut headers = vec![
        ("Date".to_owned(), http_date(SystemTime::now())),
        ("Server".to_owned(), format!("app/{}", behaviour.name)),
        (
            "X-Request-Id".to_owned(),
            format!("{}-{request_id}", behaviour.name),
        ),
    ];
    if let Some(session) = &behaviour.session_cookie {
        headers.push((
            "Set-Cookie".to_owned(),
            format!("session={session}; Path=/; HttpOnly"),
        ));
    }
    headers.append(&mut response.headers);
    headers.extend(behaviour.regressions.extra_headers.iter().cloned());
    response.headers = headers;
    response
}

/// The request as an echo service shows it.
fn echoed(request: &Request) -> Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &request.headers {
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), json!(value));
            }
        }
    }
    json!({"method": request.method, "path": request.path, "headers": headers})
}

/// `{"item":n,"quantity":q}` of an order.
fn order(body: &[u8]) -> Option<(u64, u64)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some((
        value.get("item")?.as_u64()?,
        value.get("quantity")?.as_u64()?,
    ))
}

/// `value` as the answer's JSON body (gzip'd, chunked as `behaviour` says).
pub fn json_response(
    behaviour: &Behaviour,
    request: &Request,
    status: u16,
    value: &Value,
) -> Response {
    let mut body = value.to_string().into_bytes();
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let accepts_gzip = request
        .header("accept-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("gzip"));
    if behaviour.gzip && accepts_gzip {
        body = gzip(&body);
        headers.push(("Content-Encoding".to_owned(), "gzip".to_owned()));
    }
    Response {
        status,
        headers,
        body,
        framing: if behaviour.chunked {
            Framing::Chunked(2)
        } else {
            Framing::Length
        },
    }
}

/// `bytes` gzip'd.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The reason phrase of the statuses the server answers.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// The bytes of `response` to `request` (`keep_alive`: the connection
/// stays open; HTTP/1.0 keep-alive is then said so).
pub fn encode(response: &Response, head_only: bool, keep_alive: bool, http10: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match response.framing {
        Framing::Length => out.push_str(&format!("Content-Length: {}\r\n", response.body.len())),
        Framing::Chunked(_) => out.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Bodiless => {}
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    } else if http10 {
        out.push_str("Connection: keep-alive\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if head_only {
        return out;
    }
    match response.framing {
        Framing::Length => out.extend_from_slice(&response.body),
        Framing::Chunked(pieces) => {
            let size = response.body.len().div_ceil(pieces.max(1)).max(1);
            for chunk in response.body.chunks(size) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        Framing::Bodiless => {}
    }
    out
}

/// An RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (hour, minute, second) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {hour:02}:{minute:02}:{second:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use std::{io::Read as _, time::Duration};

    use super::*;

    fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            ..Request::default()
        }
    }

    fn json_of(response: &Response) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn items_are_the_same_for_the_same_request_and_regressions_are_planted() {
        let v1 = Behaviour::v1("v1");
        let a = answer(&v1, &get("/items/20"), 1, 1);
        let b = answer(&v1, &get("/items/20"), 2, 2);
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b.body);
        assert_eq!(json_of(&a), item(20));
        let mut v3 = Behaviour::v1("v3");
        v3.regressions.item_500_every = Some(10);
        let c = answer(&v3, &get("/items/20"), 3, 3);
        assert_eq!((c.status, &c.body), (500, &a.body));
        assert_eq!(answer(&v3, &get("/items/21"), 3, 3).status, 200);
    }

    #[test]
    fn orders_total_the_body_and_served_at_is_unique() {
        let mut behaviour = Behaviour::v1("v2");
        behaviour.served_at = true;
        behaviour.regressions.order_total_plus = 1;
        let request = Request {
            method: "POST".into(),
            path: "/orders".into(),
            body: br#"{"item":3,"quantity":2}"#.to_vec(),
            ..Request::default()
        };
        let response = answer(&behaviour, &request, 77, 1);
        assert_eq!(response.status, 201);
        let body = json_of(&response);
        assert_eq!(body["total"], price(3) * 2 + 1);
        assert_eq!(body["served_at"], 77);
        let app = App::new(behaviour);
        app.last_served_at.store(u64::MAX / 2, Ordering::Relaxed);
        let first = app.served_at();
        assert!(app.served_at() > first);
    }

    #[test]
    fn gzip_only_when_accepted_and_chunks_frame_the_body() {
        let mut behaviour = Behaviour::v1("v2");
        behaviour.gzip = true;
        behaviour.chunked = true;
        let mut request = get("/items/5");
        let plain = answer(&behaviour, &request, 1, 1);
        assert_eq!(json_of(&plain), item(5));
        request
            .headers
            .push(("accept-encoding".into(), "gzip, deflate".into()));
        let zipped = answer(&behaviour, &request, 1, 1);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(zipped.body.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain.body);
        let wire = encode(&plain, false, true, false);
        let text = String::from_utf8(wire).unwrap();
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        assert!(text.ends_with("\r\n0\r\n\r\n"), "{text}");
    }

    #[test]
    fn a_received_request_is_read_as_the_app_sees_it_and_endpoints_are_templates() {
        let received = ReceivedRequest {
            head: b"POST /orders HTTP/1.1\r\nContent-Length: 5\r\nX-Tag:  a \r\n\r\n".to_vec(),
            body: b"abcde".to_vec(),
            chunked: false,
            trailers: Vec::new(),
        };
        let request = Request::from(&received);
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/orders")
        );
        assert_eq!(request.header("x-tag"), Some("a"));
        assert_eq!(request.headers[0].0, "content-length");
        assert_eq!(
            (request.body.as_slice(), request.http10),
            (b"abcde".as_slice(), false)
        );
        assert_eq!(endpoint("GET", "/items/12"), "GET /items/{n}");
        assert_eq!(endpoint("GET", "/cached"), "GET /cached");
    }

    #[test]
    fn dates_are_imf_fixdates() {
        let time = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(time), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
