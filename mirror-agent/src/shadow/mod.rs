//! Shadow targets: one bounded queue, a fixed set of workers and pooled
//! keep-alive connections per target, spread over the addresses the
//! target's host name resolves to.
//!
//! * [`Shadows`] runs the targets; a [`Dispatcher`] routes each request
//!   (`route`) and queues the [`PreparedRequest`](crate::route::PreparedRequest)s
//!   (the client's exact head with the configured rewrites, and the body)
//!   with [`Target::try_send`], which never waits: a full queue drops and
//!   counts.
//! * Each response is read to its end (status and latency recorded, body
//!   discarded) so the connection can be reused; 1xx interim responses are
//!   skipped, HEAD/204/304 responses have no body, a `Connection: close` (or
//!   an HTTP/1.0 peer, or a body delimited by close) ends the connection.
//! * No retries. A refused connect sets the address aside (retried after
//!   1 s, doubling up to 30 s) and the request moves on to the next address.
//!   A failed TLS handshake sets it aside too (`tls_handshake`, or
//!   `tls_certificate` when the certificate was refused), so a broken
//!   https target is not reconnected to by every request.
//! * `https://` targets: TLS with rustls (`tls`), over the same pooled
//!   connections.
//! * `--rate-limit`: a target takes at most N requests a second (a token
//!   bucket checked before the queue); the excess is dropped
//!   (`rate_limited`).
//! * Every request ends in exactly one counter of [`TargetStats`].
//!
//! # Own traffic
//! Requests to shadows leave from the agent's own sockets (egress); the
//! capture program only sees ingress. The shadows' responses arrive inbound
//! on the agent's ephemeral ports, not on the service port, so they are not
//! captured either — unless a shadow is the captured service itself (same
//! host and port): then the mirrored requests come back to the capture, and
//! only the marker header (loop guard, see `route`) stops them.

mod endpoints;
mod rate;
mod reply;
mod set;
mod stats;
mod stream;
mod target;
mod tls;
mod transport;
mod wire;

pub use endpoints::{AddressState, BoxFuture, Resolve, SystemResolver};
pub use rate::RateLimit;
pub use reply::{AnswerFailure, AnswerSink, Answered, NoAnswer, Reply};
pub use set::{Dispatcher, Outcome, ShadowConfig, Shadows};
pub use stats::{
    DropReason, LATENCY_BUCKETS, LatencyHistogram, LatencySnapshot, SEND_DELAY_BUCKETS,
    StatsSnapshot, StatusClass, TargetStats,
};
pub use target::{Target, TargetConfig, TargetSettings};
pub use tls::{TlsRoots, TlsSettings};
