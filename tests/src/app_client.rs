//! A raw HTTP/1.1 client for the [`AppServer`](crate::app::AppServer)
//! tests: requests written as the test gives them (pipelined if it wants),
//! responses read whole whatever their framing (`Content-Length`, chunked,
//! none for HEAD, 204 and 304), `1xx` interim answers noted, and
//! `Expect: 100-continue` done as a client does it: the head, wait for the
//! `100`, then the body.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail, ensure};

use mirror_testkit::{Netns, http_client::Connection};

/// One response, its body decoded from the transfer framing (not from a
/// content coding).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u16,
    /// `1xx` statuses received before it.
    pub interim: Vec<u16>,
    /// Names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::app::header(&self.headers, name)
    }
}

/// A request to write: its head (request line and headers, without the
/// empty line) and body.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    pub method: String,
    pub head: String,
    pub body: Vec<u8>,
    /// Sent chunked (in two chunks) rather than with a Content-Length.
    pub chunked: bool,
    /// `Expect: 100-continue`: the body waits for the `100`.
    pub expect_continue: bool,
}

impl ClientRequest {
    /// `METHOD PATH HTTP/1.1` with a Host and these extra header lines.
    pub fn new(method: &str, path: &str, headers: &[&str]) -> Self {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: app.test");
        for header in headers {
            head.push_str("\r\n");
            head.push_str(header);
        }
        Self {
            method: method.to_owned(),
            head,
            body: Vec::new(),
            chunked: false,
            expect_continue: false,
        }
    }

    /// With a body (`Content-Length`, or chunked).
    pub fn body(mut self, body: impl Into<Vec<u8>>, chunked: bool) -> Self {
        self.body = body.into();
        self.chunked = chunked;
        self
    }

    /// With `Expect: 100-continue`.
    pub fn expect_continue(mut self) -> Self {
        self.expect_continue = true;
        self
    }

    /// The head's bytes, framing headers and the empty line included.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut head = self.head.clone();
        if self.chunked {
            head.push_str("\r\nTransfer-Encoding: chunked");
        } else if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("\r\nContent-Length: {}", self.body.len()));
        }
        if self.expect_continue {
            head.push_str("\r\nExpect: 100-continue");
        }
        head.push_str("\r\n\r\n");
        head.into_bytes()
    }

    /// The body's bytes as framed.
    pub fn body_bytes(&self) -> Vec<u8> {
        if !self.chunked {
            return self.body.clone();
        }
        let mut out = Vec::new();
        let half = self.body.len().div_ceil(2).max(1);
        for chunk in self.body.chunks(half) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    /// The whole request as one piece of bytes (for pipelining).
    pub fn wire(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        out.extend(self.body_bytes());
        out
    }
}

/// A keep-alive connection.
pub struct AppClient {
    conn: Connection,
}

impl AppClient {
    /// Connects from inside `netns`.
    pub fn connect(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        Ok(Self {
            conn: Connection::connect(netns, addr)?,
        })
    }

    /// Sends `request` and reads its response.
    pub fn exchange(&mut self, request: &ClientRequest) -> Result<ClientResponse> {
        if !request.expect_continue {
            self.write(&request.wire())?;
            return self.response(request.method == "HEAD");
        }
        self.write(&request.head_bytes())?;
        let interim = self.one_response(false)?;
        ensure!(
            interim.status == 100,
            "expected 100 Continue, got {}",
            interim.status
        );
        self.write(&request.body_bytes())?;
        let mut response = self.response(request.method == "HEAD")?;
        response.interim.insert(0, 100);
        Ok(response)
    }

    /// Writes all `requests` at once, then reads their responses in order.
    pub fn pipeline(&mut self, requests: &[ClientRequest]) -> Result<Vec<ClientResponse>> {
        let wire: Vec<u8> = requests.iter().flat_map(ClientRequest::wire).collect();
        self.write(&wire)?;
        requests
            .iter()
            .map(|r| self.response(r.method == "HEAD"))
            .collect()
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn.write(bytes)
    }

    /// The final response to the next request (interim ones noted).
    pub fn response(&mut self, head_request: bool) -> Result<ClientResponse> {
        let mut interim = Vec::new();
        loop {
            let mut response = self.one_response(head_request)?;
            if (100..200).contains(&response.status) {
                interim.push(response.status);
                continue;
            }
            response.interim = interim;
            return Ok(response);
        }
    }

    /// Closes the sending side and waits for the server's close.
    pub fn close(self) -> Result<()> {
        self.conn.close()
    }

    /// One response, interim or final.
    fn one_response(&mut self, head_request: bool) -> Result<ClientResponse> {
        let (head_len, mut response, length, chunked) = loop {
            if let Some(parsed) = parse_head(self.conn.buffered())? {
                break parsed;
            }
            self.conn.fill()?;
        };
        self.conn.take(head_len)?;
        let bodiless = head_request
            || (100..200).contains(&response.status)
            || response.status == 204
            || response.status == 304;
        if bodiless {
            return Ok(response);
        }
        if chunked {
            loop {
                let line = self.conn.line()?;
                let size = std::str::from_utf8(&line)?
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let size = usize::from_str_radix(&size, 16)
                    .with_context(|| format!("a bad chunk size {size:?}"))?;
                if size == 0 {
                    while !self.conn.line()?.is_empty() {}
                    break;
                }
                response.body.extend(self.conn.take(size)?);
                ensure!(self.conn.take(2)? == b"\r\n", "no CRLF after a chunk");
            }
        } else {
            let Some(length) = length else {
                bail!("a {} response without a length", response.status);
            };
            response.body = self.conn.take(length)?;
        }
        Ok(response)
    }
}

/// `(head length, response without body, Content-Length, chunked)`.
type ParsedHead = (usize, ClientResponse, Option<usize>, bool);

fn parse_head(buf: &[u8]) -> Result<Option<ParsedHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = parsed.parse(buf).context("a bad response")? else {
        return Ok(None);
    };
    let mut response = ClientResponse {
        status: parsed.code.context("no status")?,
        ..ClientResponse::default()
    };
    let (mut length, mut chunked) = (None, false);
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(header.value).trim().to_owned();
        match name.as_str() {
            "content-length" => length = Some(value.parse().context("Content-Length")?),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().ends_with("chunked"),
            _ => {}
        }
        response.headers.push((name, value));
    }
    Ok(Some((head_len, response, length, chunked)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_by_length_or_chunks() {
        let request = ClientRequest::new("POST", "/orders", &["X-A: 1"]).body("abc", false);
        assert_eq!(
            request.wire(),
            b"POST /orders HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"
        );
        let chunked = ClientRequest::new("POST", "/orders", &[])
            .body("abcd", true)
            .expect_continue();
        assert_eq!(chunked.body_bytes(), b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n");
        let head = String::from_utf8(chunked.head_bytes()).unwrap();
        assert!(head.contains("Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"));
        assert_eq!(
            ClientRequest::new("GET", "/", &[]).wire(),
            b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"
        );
    }

    #[test]
    fn response_heads_give_their_framing() {
        let (len, response, length, chunked) =
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (len, response.status, length, chunked),
            (47, 200, None, true)
        );
        assert!(parse_head(b"HTTP/1.1 200").unwrap().is_none());
    }
}
