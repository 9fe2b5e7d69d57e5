//! Compares what the agent's flow + http stages extracted from the captured
//! packets with what the test server received, request by request, byte
//! for byte.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr};

use anyhow::{Result, bail, ensure};
use mirror_agent::http::Request;

use mirror_testkit::{Received, ReceivedRequest};

use crate::first_difference;

/// A head as text for a message, cut short.
pub fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 300;
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]).into_owned();
    if bytes.len() > SHOWN {
        let _ = write!(text, "... ({} bytes)", bytes.len());
    }
    text
}

/// Whether one extracted request is exactly one received request: same
/// head bytes, same decoded body, same chunked framing and trailers.
pub fn same_request(extracted: &Request, received: &ReceivedRequest) -> Result<()> {
    ensure!(
        extracted.head[..] == received.head[..],
        "heads differ at byte {:?}:\n  extracted {:?}\n  received  {:?}",
        first_difference(&extracted.head, &received.head),
        show(&extracted.head),
        show(&received.head)
    );
    ensure!(
        extracted.body[..] == received.body[..],
        "bodies of {:?} differ at byte {:?} ({} bytes extracted, {} received)",
        show(&received.head),
        first_difference(&extracted.body, &received.body),
        extracted.body.len(),
        received.body.len()
    );
    ensure!(
        extracted.chunked == received.chunked,
        "{:?}: chunked {} extracted, {} received",
        show(&received.head),
        extracted.chunked,
        received.chunked
    );
    ensure!(
        extracted.trailers[..] == received.trailers[..],
        "{:?}: trailers {:?} extracted, {:?} received",
        show(&received.head),
        show(&extracted.trailers),
        show(&received.trailers)
    );
    Ok(())
}

/// Every request the server received was extracted, exactly, and nothing
/// else was: per client address (the connections of one address in order:
/// server connections in accept order, agent flows by generation), the
/// same requests in the same order. Returns how many requests matched.
pub fn compare_exact(extracted: &[Request], received: &Received) -> Result<usize> {
    let mut agent: BTreeMap<SocketAddr, BTreeMap<u64, Vec<&Request>>> = BTreeMap::new();
    for request in extracted {
        agent
            .entry(request.flow.key.client)
            .or_default()
            .entry(request.flow.generation)
            .or_default()
            .push(request);
    }
    let agent: BTreeMap<SocketAddr, Vec<&Request>> = agent
        .into_iter()
        .map(|(client, flows)| (client, flows.into_values().flatten().collect()))
        .collect();
    let mut server: BTreeMap<SocketAddr, Vec<&ReceivedRequest>> = BTreeMap::new();
    for connection in &received.connections {
        if !connection.requests.is_empty() {
            server
                .entry(connection.client)
                .or_default()
                .extend(&connection.requests);
        }
    }
    let unexpected: Vec<_> = agent.keys().filter(|c| !server.contains_key(c)).collect();
    ensure!(
        unexpected.is_empty(),
        "requests extracted from clients the server never heard: {unexpected:?}"
    );
    let mut matched = 0;
    for (client, sent) in &server {
        let Some(got) = agent.get(client) else {
            bail!(
                "nothing extracted from {client}, which sent {} requests",
                sent.len()
            );
        };
        for (index, (got, sent)) in got.iter().zip(sent).enumerate() {
            same_request(got, sent).map_err(|e| e.context(format!("{client}, request {index}")))?;
            matched += 1;
        }
        ensure!(
            got.len() == sent.len(),
            "{client}: {} requests extracted, the server received {}",
            got.len(),
            sent.len()
        );
    }
    Ok(matched)
}
