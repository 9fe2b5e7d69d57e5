//! One HTTP/1.0 GET to a service an operator names (an agent's metrics
//! address, a Prometheus), read to the close: what `compare-report` and
//! `verdict` need, without an HTTP client crate. http:// only; a base URL
//! may carry a path prefix (a service behind a proxy).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Connecting, and each read.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A larger answer is not one of ours.
const MAX_BYTES: u64 = 64 << 20;

/// What came back: the status and the body.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub body: String,
}

/// `http://host:port` from `host:port` or a URL as given.
pub fn base_url(address: &str) -> String {
    if address.contains("://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("http://{address}")
    }
}

/// `GET <base><path_and_query>`; `service` names the peer in errors ("the
/// agent", "Prometheus").
pub fn get(base: &str, path_and_query: &str, service: &str) -> anyhow::Result<Got> {
    let rest = base
        .strip_prefix("http://")
        .with_context(|| format!("`{base}` is not an http:// URL such as http://127.0.0.1:9464"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let prefix = rest[authority.len()..].trim_end_matches('/');
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{authority}` (give host:port)"))?
        .next()
        .with_context(|| format!("`{authority}` has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("cannot connect to {service} at {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {prefix}{path_and_query} HTTP/1.0\r\nHost: {authority}\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .take(MAX_BYTES)
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot read the answer of {service} at {address}"))?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{service} at {address} sent no HTTP response");
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{service} at {address} sent no status: `{head}`"))?;
    Ok(Got {
        status,
        body: body.to_owned(),
    })
}
