//! Tests of one target: its queue, expiry, TLS failures and what a bad
//! answer costs.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;

use super::queue::MAX_QUEUED_BYTES;
use super::*;
use crate::route::BodyFraming;

fn push(queue: &Queue, request: Arc<PreparedRequest>) -> Result<(), PushError> {
    queue
        .push(Job {
            request,
            reply: None,
        })
        .map_err(|(err, _)| err)
}

fn request(n: u8) -> Arc<PreparedRequest> {
    Arc::new(PreparedRequest::new(
        vec![n],
        Bytes::new(),
        BodyFraming::AsIs,
    ))
}

#[tokio::test]
async fn the_queue_is_bounded_fifo_and_ends_once_closed_and_empty() {
    let queue = Queue::new(2);
    assert_eq!(push(&queue, request(1)), Ok(()));
    assert_eq!(push(&queue, request(2)), Ok(()));
    assert_eq!(push(&queue, request(3)), Err(PushError::Full));
    assert_eq!(queue.pop().await.unwrap().request.head(), [1]);
    queue.close();
    assert_eq!(push(&queue, request(4)), Err(PushError::Closed));
    assert_eq!(
        queue.pop().await.unwrap().request.head(),
        [2],
        "drained after close"
    );
    assert!(queue.pop().await.is_none());
}

#[tokio::test]
async fn the_queue_is_bounded_in_bytes_but_takes_one_large_request_when_empty() {
    let big = |n: u8| {
        Arc::new(PreparedRequest::new(
            vec![n],
            Bytes::from(vec![0u8; MAX_QUEUED_BYTES / 2]),
            BodyFraming::AsIs,
        ))
    };
    let queue = Queue::new(100);
    assert_eq!(push(&queue, big(1)), Ok(()));
    assert_eq!(push(&queue, request(2)), Ok(()), "small ones still fit");
    assert!(!queue.has_room_for(MAX_QUEUED_BYTES / 2), "over the bytes");
    assert_eq!(push(&queue, big(3)), Err(PushError::Full), "over the bytes");
    assert_eq!(queue.pop().await.unwrap().request.head(), [1]);
    assert!(queue.has_room_for(MAX_QUEUED_BYTES / 2), "room again");
    assert_eq!(push(&queue, big(4)), Ok(()), "room again");
    assert_eq!(queue.pop().await.unwrap().request.head(), [2]);
    assert_eq!(queue.pop().await.unwrap().request.head(), [4]);
    let huge = Arc::new(PreparedRequest::new(
        vec![5],
        Bytes::from(vec![0u8; MAX_QUEUED_BYTES + 1]),
        BodyFraming::AsIs,
    ));
    assert_eq!(push(&queue, huge), Ok(()), "alone, a larger one is taken");
}

#[tokio::test]
async fn a_waiting_worker_is_woken_by_a_push_and_by_close() {
    let queue = Arc::new(Queue::new(4));
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.pop().await.map(|job| job.request.head().to_vec()) }
    });
    tokio::task::yield_now().await;
    push(&queue, request(7)).unwrap();
    assert_eq!(waiting.await.unwrap(), Some(vec![7]));

    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.pop().await.is_none() }
    });
    tokio::task::yield_now().await;
    queue.close();
    assert!(waiting.await.unwrap(), "close ends a waiting pop");
}

#[tokio::test]
async fn a_copy_older_than_max_age_is_dropped_as_expired_not_sent() {
    // A dead address: a copy that is sent ends as connect_refused.
    let mut config = TargetConfig::new(TargetUrl::parse("http://127.0.0.1:1").unwrap());
    config.settings.max_age = Duration::from_millis(100);
    let target = Target::start(config, Arc::new(super::super::SystemResolver)).await;
    let now = monotonic_ns();
    let old = Arc::new(
        PreparedRequest::new(
            b"GET /old HTTP/1.1\r\n\r\n".to_vec(),
            Bytes::new(),
            BodyFraming::AsIs,
        )
        .with_captured_ns(now - 1_000_000_000),
    );
    let fresh = Arc::new(
        PreparedRequest::new(
            b"GET /new HTTP/1.1\r\n\r\n".to_vec(),
            Bytes::new(),
            BodyFraming::AsIs,
        )
        .with_captured_ns(now),
    );
    for request in [old, fresh] {
        target.stats().captured.fetch_add(1, Relaxed);
        target.try_send(request).unwrap();
    }
    target
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    let stats = target.stats().snapshot();
    assert_eq!(stats.dropped_by(DropReason::Expired), 1, "{stats}");
    assert_eq!(stats.dropped_by(DropReason::ConnectRefused), 1, "{stats}");
    assert!(stats.balances(), "{stats}");
}

#[tokio::test]
async fn a_failed_tls_handshake_is_counted_and_sets_the_address_aside() {
    // A plain http server behind an https URL: every handshake fails.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Relaxed);
                use tokio::io::AsyncWriteExt as _;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        }
    });
    let url = TargetUrl::parse(&format!("https://{addr}")).unwrap();
    assert!(url.tls);
    let target = Target::start(
        TargetConfig::new(url),
        Arc::new(super::super::SystemResolver),
    )
    .await;
    let n = 20;
    let send = |i: u64| {
        let head = format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        let request = Arc::new(PreparedRequest::new(head, Bytes::new(), BodyFraming::AsIs));
        target.stats().captured.fetch_add(1, Relaxed);
        target.try_send(request).unwrap();
    };
    // The first request fails the handshake and sets the address aside;
    // the others find it aside and are dropped for the same reason
    // without a connection.
    send(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while target
        .stats()
        .snapshot()
        .dropped_by(DropReason::TlsHandshake)
        == 0
    {
        assert!(Instant::now() < deadline, "the first request never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 1..n {
        send(i);
    }
    target
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    server.abort();
    let stats = target.stats().snapshot();
    assert_eq!(stats.dropped_by(DropReason::TlsHandshake), n, "{stats}");
    assert!(stats.balances(), "{stats}");
    let connects = accepted.load(Relaxed);
    assert_eq!(
        connects, 1,
        "{connects} connections: the address was not set aside"
    );
    assert!(target.addresses()[0].failing);
}

/// A shadow that answers request `bad` (counted from 0, over all
/// connections) with a malformed response, and every other one with a
/// 200, keeping its connections open: returns its address and how many
/// connections it accepted.
async fn shadow_with_one_bad_answer(bad: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Relaxed);
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n @ 1..) = stream.read(&mut chunk).await else {
                        return;
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer: &[u8] = if served.fetch_add(1, Relaxed) == bad {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                        };
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn one_malformed_answer_costs_one_request_and_its_connection_not_the_address() {
    // The first answer on a connection just made, and one on a reused
    // connection.
    for bad in [0, 3] {
        one_bad_answer_among_ten(bad).await;
    }
}

async fn one_bad_answer_among_ten(bad: usize) {
    let (addr, accepted) = shadow_with_one_bad_answer(bad).await;
    let url = TargetUrl::parse(&format!("http://{addr}")).unwrap();
    let target = Target::start(
        TargetConfig::new(url),
        Arc::new(super::super::SystemResolver),
    )
    .await;
    let n = 10;
    for i in 0..n {
        let head = format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        let request = Arc::new(PreparedRequest::new(head, Bytes::new(), BodyFraming::AsIs));
        target.stats().captured.fetch_add(1, Relaxed);
        target.try_send(request).unwrap();
        // One at a time, as a client connection's requests go.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = target.stats().snapshot();
            if s.sent_total() + s.dropped_total() == i + 1 {
                break;
            }
            assert!(Instant::now() < deadline, "request {i} never ended: {s}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    target
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    let stats = target.stats().snapshot();
    assert_eq!(
        stats.dropped_by(DropReason::IoError),
        1,
        "bad {bad}: {stats}"
    );
    assert_eq!(stats.sent_total(), n - 1, "{stats}");
    assert!(stats.balances(), "{stats}");
    assert!(
        !target.addresses()[0].failing,
        "bad {bad}: the address stays"
    );
    assert_eq!(
        accepted.load(Relaxed),
        2,
        "bad {bad}: the connection of the bad answer is closed, the others reused"
    );
}
