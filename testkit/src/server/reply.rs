//! What the server does with a request once it is framed: the bytes it
//! writes back and what becomes of the connection then. The usual answer
//! ([`Reply::ok`]) and the ways a broken service fails are values of the
//! same type, so one answer function can serve, stall or break per
//! request.

use super::ReceivedRequest;

/// The answer to every request on a connection that stays open (HTTP/1.1).
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// The answer to an HTTP/1.0 request asking for keep-alive (ab -k looks
/// for `keep-alive` in the response before it reuses the connection).
pub const RESPONSE_KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
/// The answer to the last request of a connection the server then closes.
pub const RESPONSE_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
/// Sent before the body of a request with `Expect: 100-continue` is read.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The answer to what [`Builder::refuse_unframeable`](super::Builder::refuse_unframeable)
/// cannot frame.
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
/// Bytes that are not HTTP ([`Reply::garbage`]).
pub const GARBAGE: &[u8] = b"garbage, not HTTP\r\n\r\n";

/// What becomes of the connection after the reply's bytes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Stays open unless the request ended it (`Connection: close`, plain
    /// HTTP/1.0): then as [`Then::Close`].
    Follow,
    /// Stays open, whatever the request asked.
    KeepOpen,
    /// The server closes its side, then waits for the client's FIN; bytes
    /// that come before it are an error.
    Close,
    /// A reset (`SO_LINGER` 0): the client sees ECONNRESET.
    Reset,
    /// Nothing more is answered on this connection: what the client sends
    /// is read and thrown away until it closes (a hung service).
    Silence,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub then: Then,
}

impl Reply {
    /// `200 ok`, the connection kept as the request asks ([`RESPONSE`],
    /// [`RESPONSE_KEEP_ALIVE`] for HTTP/1.0 keep-alive, [`RESPONSE_CLOSE`]).
    pub fn ok(request: &ReceivedRequest) -> Self {
        let bytes = match (request.keep_alive(), request.http10()) {
            (false, _) => RESPONSE_CLOSE,
            (true, true) => RESPONSE_KEEP_ALIVE,
            (true, false) => RESPONSE,
        };
        Self::bytes(bytes)
    }

    /// These bytes; the connection as the request asks.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            then: Then::Follow,
        }
    }

    /// These bytes, then the server closes the connection.
    pub fn closing(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            then: Then::Close,
        }
    }

    /// [`GARBAGE`]; the connection stays open.
    pub fn garbage() -> Self {
        Self::bytes(GARBAGE)
    }

    /// A 200 head promising 1000 body bytes, 7 of them, then a reset.
    pub fn reset_mid_body() -> Self {
        Self {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial".to_vec(),
            then: Then::Reset,
        }
    }

    /// No answer, ever, on this connection.
    pub fn silence() -> Self {
        Self {
            bytes: Vec::new(),
            then: Then::Silence,
        }
    }
}
