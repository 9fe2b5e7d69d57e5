//! Streamed bodies through one target: the bytes as the client sent them
//! (Content-Length as is, chunked re-framed with the rewritten trailers),
//! a target that reads too slowly cut, a body the capture lost closing the
//! connection mid-body.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::*;
use crate::http::{BodyStream, BodyWriter, StreamBudget, StreamLimits};
use crate::route::{BodyFraming, StreamedBody};

/// A shadow that reads each connection until what came is `complete`,
/// answers 200 and reports what it got; or reports what it got when the
/// agent closes the connection first. With `stall`, it never reads.
async fn shadow(
    complete: fn(&[u8]) -> bool,
    stall: bool,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if stall {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let mut got = Vec::new();
                let mut chunk = vec![0u8; 64 << 10];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
                    if complete(&got) {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                        break;
                    }
                }
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 251) as u8).collect()
}

async fn target_at(addr: SocketAddr) -> Arc<Target> {
    let url = TargetUrl::parse(&format!("http://{addr}")).unwrap();
    Target::start(
        TargetConfig::new(url),
        Arc::new(super::super::SystemResolver),
    )
    .await
}

/// A streamed request with `head`, sent to `target`; the writer to feed.
fn send_streamed(target: &Target, head: &[u8], chunked: bool, lag: usize) -> BodyWriter {
    let limits = StreamLimits {
        after: 0,
        lag,
        budget: StreamBudget::new(1 << 30),
    };
    let (writer, stream) = BodyStream::new(limits);
    let request = PreparedRequest::new(head.to_vec(), Bytes::new(), BodyFraming::AsIs).streaming(
        StreamedBody {
            body: stream,
            chunked,
            drop_trailers: vec!["X-Secret".into()],
        },
    );
    target.stats().captured.fetch_add(1, Relaxed);
    target
        .try_send_replying(Arc::new(request), Some(flow_tag()), None)
        .unwrap();
    writer
}

fn flow_tag() -> FlowTag {
    FlowTag::of(&crate::http::testing::test_flow(1))
}

/// Pushes `payload` in pieces, letting the target run in between.
async fn push_slowly(writer: &mut BodyWriter, payload: &[u8], piece: usize) {
    for part in payload.chunks(piece) {
        writer.push(part);
        tokio::task::yield_now().await;
    }
}

async fn settle(target: &Target) -> StatsSnapshot {
    for _ in 0..500 {
        let stats = target.stats().snapshot();
        if stats.in_flight == 0 && stats.queue_depth == 0 {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    target.stats().snapshot()
}

use super::super::stats::StatsSnapshot;

/// Undoes chunked framing: the data and the trailer section.
fn dechunk(mut wire: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut data = Vec::new();
    loop {
        let line = wire.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&wire[..line]).unwrap(), 16).unwrap();
        wire = &wire[line + 2..];
        if size == 0 {
            return (data, wire.to_vec());
        }
        data.extend_from_slice(&wire[..size]);
        assert_eq!(&wire[size..size + 2], b"\r\n");
        wire = &wire[size + 2..];
    }
}

#[tokio::test]
async fn a_streamed_body_reaches_the_target_byte_for_byte() {
    let payload = body(300_000);
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    assert_eq!(head.len(), 54);
    let (addr, mut got) = shadow(|w| w.len() >= 54 + 300_000, false).await;
    let target = target_at(addr).await;
    let mut writer = send_streamed(&target, head.as_bytes(), false, 1 << 20);
    push_slowly(&mut writer, &payload, 1448).await;
    writer.finish(Bytes::new());
    let wire = got.recv().await.unwrap();
    assert_eq!(&wire[..head.len()], head.as_bytes());
    assert!(wire[head.len()..] == payload[..], "the body, exactly");
    let stats = settle(&target).await;
    assert_eq!(stats.sent_total(), 1, "{stats}");
}

#[tokio::test]
async fn a_streamed_chunked_body_is_reframed_with_the_rewritten_trailers() {
    let payload = body(200_000);
    let head = "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (addr, mut got) = shadow(|w| w.ends_with(b"X-Sum: 1\r\n\r\n"), false).await;
    let target = target_at(addr).await;
    let mut writer = send_streamed(&target, head.as_bytes(), true, 1 << 20);
    push_slowly(&mut writer, &payload, 5000).await;
    writer.finish(Bytes::from_static(b"X-Sum: 1\r\nX-Secret: s\r\n"));
    let wire = got.recv().await.unwrap();
    let stats = settle(&target).await;
    assert_eq!(stats.sent_total(), 1, "{stats}");
    assert_eq!(&wire[..head.len()], head.as_bytes());
    let (data, trailers) = dechunk(&wire[head.len()..]);
    assert!(data == payload, "the decoded body, exactly");
    assert_eq!(trailers, b"X-Sum: 1\r\n\r\n", "a stripped header stays out");
}

#[tokio::test]
async fn a_target_that_does_not_read_falls_behind_and_is_cut() {
    let (addr, _got) = shadow(|_| false, true).await;
    let target = target_at(addr).await;
    let head = "POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 67108864\r\n\r\n";
    let mut writer = send_streamed(&target, head.as_bytes(), false, 1 << 20);
    let piece = vec![7u8; 64 << 10];
    for _ in 0..1024 {
        if !writer.push(&piece) {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let stats = settle(&target).await;
    assert_eq!(stats.dropped_by(DropReason::BodyTooSlow), 1, "{stats}");
    assert!(stats.balances(), "{stats}");
}

#[tokio::test]
async fn a_body_the_capture_lost_closes_the_connection_mid_body() {
    let head = "POST /lost HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n";
    let (addr, mut got) = shadow(|_| false, false).await;
    let target = target_at(addr).await;
    let mut writer = send_streamed(&target, head.as_bytes(), false, 1 << 20);
    push_slowly(&mut writer, &body(30_000), 1000).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer.abort();
    let wire = got.recv().await.unwrap();
    assert_eq!(
        wire.len(),
        head.len() + 30_000,
        "cut where the capture lost it"
    );
    let stats = settle(&target).await;
    assert_eq!(stats.dropped_by(DropReason::BodyCut), 1, "{stats}");
}
