//! `mirror-agent compare-report --metrics-addr ADDR`: a running agent's
//! comparison report (`GET /compare` on its metrics address; `--url URL`
//! the same as a URL) printed in the terminal,
//! for an operator on the host over ssh. No HTTP client crate: one GET to a
//! loopback address, HTTP/1.0, read to the close.

use std::io::{IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::compare::{CompareReport, render_text};

const TIMEOUT: Duration = Duration::from_secs(5);
/// A report larger than this is not one of ours.
const MAX_REPORT_BYTES: u64 = 64 << 20;

pub fn run(url: &str, json: bool) -> anyhow::Result<()> {
    let body = fetch(url)?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let report: CompareReport = serde_json::from_str(&body)
        .with_context(|| format!("{url}/compare did not answer a comparison report"))?;
    let color = std::io::stdout().is_terminal();
    print!("{}", render_text(&report, color));
    Ok(())
}

/// The body of `GET <url>/compare`.
fn fetch(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}` is not an http:// URL such as http://127.0.0.1:9464"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let base = rest[authority.len()..].trim_end_matches('/');
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{authority}` (give host:port)"))?
        .next()
        .with_context(|| format!("`{authority}` has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).with_context(|| {
        format!("cannot connect to the agent at {address} (is it running with --compare?)")
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {base}/compare HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .take(MAX_REPORT_BYTES)
        .read_to_end(&mut raw)
        .context("cannot read the report")?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the agent at {address} sent no HTTP response");
    };
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        let line = head.lines().next().unwrap_or("");
        bail!("{url}/compare answered `{line}`: {}", body.trim());
    }
    Ok(body.to_owned())
}
