//! HTTP clients from inside a namespace: a one-shot HTTP/1.0 GET
//! ([`get`], for metrics and health endpoints), and a minimal HTTP/1.1
//! client that sends requests given as raw bytes over one keep-alive
//! connection and times each one from its first byte written to its
//! response's last byte.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{netns::Netns, tcp};

/// A plain HTTP/1.0 GET from inside `netns` (the server then closes, and
/// sends no chunks): status and body.
pub fn get(netns: &Netns, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    netns
        .run(|| -> Result<(u16, String)> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            let text = String::from_utf8(answer).context("the answer is not UTF-8")?;
            let (head, body) = text
                .split_once("\r\n\r\n")
                .context("the answer has no end of head")?;
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no status in {head:?}"))?;
            Ok((status, body.to_owned()))
        })
        .with_context(|| format!("GET http://{addr}{path} in {}", netns.name()))
}

/// One response, without its body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub body_len: usize,
    /// From the request's first byte written to the response's last read.
    pub latency: Duration,
}

/// A keep-alive connection and the bytes read from it not yet consumed:
/// what an HTTP/1.1 client needs under its response parsing.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects from inside `netns` (no Nagle delay).
    pub fn connect(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        let stream = tcp::connect(netns, addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// The client's end of the connection.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.stream.local_addr()?)
    }

    /// Sends bytes as one write: a request, or a part of one.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).context("sending a request")
    }

    /// The bytes read and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads what comes (at least a byte); the server closing before is
    /// an error.
    pub fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context("reading a response"),
            }
        };
        if n == 0 {
            bail!("the server closed before a whole response");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next `len` bytes, read as needed.
    pub fn take(&mut self, len: usize) -> Result<Vec<u8>> {
        while self.buf.len() < len {
            self.fill()?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// The next line, without its CRLF.
    pub fn line(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    /// Closes the sending side and waits for the server to close: the
    /// server has then seen every request and the FIN. Bytes left unread
    /// are an error.
    pub fn close(mut self) -> Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write)?;
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest)?;
        ensure!(
            rest.is_empty() && self.buf.is_empty(),
            "the server sent {} unexpected bytes",
            rest.len() + self.buf.len()
        );
        Ok(())
    }
}

/// A keep-alive connection that times each request.
pub struct HttpClient {
    conn: Connection,
}

impl HttpClient {
    /// Connects from inside `netns`.
    pub fn connect(netns: &Netns, addr: SocketAddr) -> Result<Self> {
        Ok(Self {
            conn: Connection::connect(netns, addr)?,
        })
    }

    /// The client's end of the connection.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.conn.local_addr()
    }

    /// Sends one request (head and body, as the server must see them) and
    /// reads its response, which must carry a Content-Length (or be a 1xx,
    /// 204 or 304).
    pub fn request(&mut self, wire: &[u8]) -> Result<Response> {
        let started = Instant::now();
        self.write(wire)?;
        self.response(started)
    }

    /// Sends bytes as one write: a request, or a part of one.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn.write(bytes)
    }

    /// Reads the response to a request whose first byte went out at
    /// `started`.
    pub fn response(&mut self, started: Instant) -> Result<Response> {
        loop {
            let (status, head_len, body_len) = loop {
                if let Some(head) = parse_head(self.conn.buffered())? {
                    break head;
                }
                self.conn.fill()?;
            };
            self.conn.take(head_len + body_len)?;
            if (100..200).contains(&status) {
                continue; // 100 Continue: the real answer follows
            }
            return Ok(Response {
                status,
                body_len,
                latency: started.elapsed(),
            });
        }
    }

    /// Closes the sending side and waits for the server to close: the
    /// server has then seen every request and the FIN.
    pub fn close(self) -> Result<()> {
        self.conn.close()
    }
}

/// `(status, head length, body length)` once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(buf).context("a bad response")?
    else {
        return Ok(None);
    };
    let status = response.code.context("no status")?;
    let mut body_len = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            body_len = Some(std::str::from_utf8(header.value)?.trim().parse()?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported here");
        }
    }
    let body_len = match body_len {
        Some(len) => len,
        None if (100..200).contains(&status) || status == 204 || status == 304 => 0,
        None => bail!("a {status} response without Content-Length"),
    };
    Ok(Some((status, head_len, body_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_and_body_length() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_head(ok).unwrap(), Some((200, ok.len() - 2, 2)));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-").unwrap(), None);
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(parse_head(cont).unwrap(), Some((100, cont.len(), 0)));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
