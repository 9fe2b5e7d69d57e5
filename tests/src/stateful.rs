//! The [`AppServer`](crate::app::AppServer)'s stateful endpoint, for the
//! tests of the order in which the copies reach a target: `/kv/{id}`
//! keeps a value per id, so what a request is answered depends on the
//! requests before it, as on any service that writes.
//!
//! * `PUT /kv/{id}` stores the body: 201 `{"created":true,"id":id}` when
//!   the id was free, 200 `{"created":false,"id":id}` when it replaced a
//!   value.
//! * `GET /kv/{id}` → 200 `{"id":id,"value":"<body stored>"}`, or 404
//!   `{"error":"no such key"}`.
//! * `DELETE /kv/{id}` → 204 and the value removed, or 404 when there was
//!   none. With [`Stateful::no_delete`] (the regression of a new version
//!   without its DELETE handler): 405 `{"error":"method not allowed"}`,
//!   nothing removed.
//!
//! Each of these requests is handled after a wait drawn anew for each
//! (up to [`Stateful::jitter`]): the answers stay exactly v1's, only their
//! latency varies, as a real service's does. Two copies of one client
//! connection sent at once to such a server are then handled in either
//! order, which is what the order tests must see never happen.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::json;

use crate::app::{Behaviour, Framing, Request, Response, json_response};

/// How a server keeps `/kv/{id}` (none: those paths are 404 as any other).
#[derive(Clone, Debug, Default)]
pub struct Stateful {
    /// DELETE is answered 405 and removes nothing.
    pub no_delete: bool,
    /// Each request waits up to this long before it is handled.
    pub jitter: Duration,
}

/// The values of one server, by id.
#[derive(Debug, Default)]
pub struct Store {
    values: Mutex<HashMap<u64, Vec<u8>>>,
    /// Waits drawn so far: the seed of the next one.
    draws: AtomicU64,
}

impl Store {
    /// The answer to `request` when it is for `/kv/{id}`, after its wait;
    /// `None` for any other path. Without the server's common headers.
    pub fn answer(
        &self,
        behaviour: &Behaviour,
        stateful: &Stateful,
        request: &Request,
    ) -> Option<Response> {
        let id = kv_id(&request.path)?;
        std::thread::sleep(self.wait(stateful.jitter));
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let json = |status: u16, value| json_response(behaviour, request, status, &value);
        Some(match request.method.as_str() {
            "PUT" => {
                let replaced = values.insert(id, request.body.clone()).is_some();
                let status = if replaced { 200 } else { 201 };
                json(status, json!({"created": !replaced, "id": id}))
            }
            "GET" => match values.get(&id) {
                Some(value) => json(
                    200,
                    json!({"id": id, "value": String::from_utf8_lossy(value)}),
                ),
                None => json(404, json!({"error": "no such key"})),
            },
            "DELETE" if stateful.no_delete => json(405, json!({"error": "method not allowed"})),
            "DELETE" => match values.remove(&id) {
                Some(_) => Response {
                    status: 204,
                    headers: Vec::new(),
                    body: Vec::new(),
                    framing: Framing::Bodiless,
                },
                None => json(404, json!({"error": "no such key"})),
            },
            _ => json(405, json!({"error": "method not allowed"})),
        })
    }

    /// A wait in `[0, jitter)`: splitmix64 of a counter, so that waits
    /// differ from request to request and from run to run of a test only
    /// by the order requests arrive in.
    fn wait(&self, jitter: Duration) -> Duration {
        let nanos = jitter.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        let mut z = self
            .draws
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Duration::from_nanos((z ^ (z >> 31)) % nanos)
    }
}

/// The id of a `/kv/{id}` path.
pub fn kv_id(path: &str) -> Option<u64> {
    path.strip_prefix("/kv/")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, id: u64, body: &str) -> Request {
        Request {
            method: method.into(),
            path: format!("/kv/{id}"),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        }
    }

    fn status_and_body(response: Option<Response>) -> (u16, String) {
        let response = response.expect("a /kv/ answer");
        (
            response.status,
            String::from_utf8(response.body).unwrap_or_default(),
        )
    }

    #[test]
    fn put_get_delete_get_answer_by_what_came_before() {
        let (v1, store) = (Behaviour::v1("v1"), Store::default());
        let kv = Stateful::default();
        let run = |method, body| status_and_body(store.answer(&v1, &kv, &request(method, 7, body)));
        assert_eq!(run("GET", "").0, 404);
        assert_eq!(run("PUT", "a"), (201, r#"{"created":true,"id":7}"#.into()));
        assert_eq!(run("PUT", "b"), (200, r#"{"created":false,"id":7}"#.into()));
        assert_eq!(run("GET", ""), (200, r#"{"id":7,"value":"b"}"#.into()));
        assert_eq!(run("DELETE", ""), (204, String::new()));
        assert_eq!(run("GET", "").0, 404);
        assert_eq!(run("DELETE", "").0, 404);
        assert!(store.answer(&v1, &kv, &Request::default()).is_none());
    }

    #[test]
    fn without_its_delete_handler_nothing_is_removed() {
        let (v1, store) = (Behaviour::v1("v3"), Store::default());
        let kv = Stateful {
            no_delete: true,
            ..Stateful::default()
        };
        let run = |method| status_and_body(store.answer(&v1, &kv, &request(method, 1, "x"))).0;
        assert_eq!(
            [run("PUT"), run("DELETE"), run("GET")],
            [201, 405, 200],
            "the value is still there"
        );
    }

    #[test]
    fn waits_stay_under_the_jitter_and_vary() {
        let store = Store::default();
        let jitter = Duration::from_micros(10);
        let waits: Vec<Duration> = (0..100).map(|_| store.wait(jitter)).collect();
        assert!(waits.iter().all(|w| *w < jitter));
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 50, "{distinct:?}");
        assert_eq!(store.wait(Duration::ZERO), Duration::ZERO);
    }
}
