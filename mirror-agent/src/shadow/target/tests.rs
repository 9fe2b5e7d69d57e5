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
            body: None,
            reply: None,
            flow: None,
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

/// A tag for connection `n` of the test harness.
fn flow(n: u64) -> FlowTag {
    FlowTag::of(&crate::http::testing::test_flow(n))
}

/// Queues request `n` of `flow` (`None`: of no connection).
fn push_in(queue: &Queue, n: u8, flow: Option<FlowTag>) -> Result<(), PushError> {
    queue
        .push(Job {
            request: request(n),
            body: None,
            reply: None,
            flow,
        })
        .map_err(|(err, _)| err)
}

/// The head byte of the job a worker may take now, if any.
fn next(queue: &Queue) -> Option<u8> {
    queue.try_pop().map(|job| job.request.head()[0])
}

#[test]
fn a_connections_copies_are_taken_one_at_a_time_in_its_order() {
    let (a, b) = (flow(1), flow(2));
    assert_ne!(a, b);
    let queue = Queue::new(10);
    for (n, f) in [
        (1, Some(a)),
        (2, Some(a)),
        (3, Some(b)),
        (4, Some(a)),
        (5, None),
    ] {
        push_in(&queue, n, f).unwrap();
    }
    // a's first, b's, the unordered one; a's second waits for its first.
    assert_eq!(next(&queue), Some(1));
    assert_eq!(next(&queue), Some(3));
    assert_eq!(next(&queue), Some(5));
    assert_eq!(next(&queue), None, "a's next waits for a's first to end");
    queue.done(b);
    assert_eq!(next(&queue), None, "b's end frees nothing of a");
    queue.done(a);
    assert_eq!(next(&queue), Some(2));
    assert_eq!(next(&queue), None);
    queue.done(a);
    assert_eq!(next(&queue), Some(4));
    queue.done(a);
    assert_eq!(next(&queue), None);
    // a's line is over: its next copy goes at once, as a new one.
    push_in(&queue, 6, Some(a)).unwrap();
    assert_eq!(next(&queue), Some(6));
}

#[test]
fn a_slow_connection_holds_back_only_its_own_copies() {
    let queue = Queue::new(100);
    let slow = flow(1);
    push_in(&queue, 0, Some(slow)).unwrap();
    push_in(&queue, 1, Some(slow)).unwrap();
    for n in 2..50 {
        push_in(&queue, n, Some(flow(u64::from(n)))).unwrap();
    }
    assert_eq!(next(&queue), Some(0), "out, and never answered");
    let taken: Vec<u8> = std::iter::from_fn(|| next(&queue)).collect();
    assert_eq!(taken, (2..50).collect::<Vec<u8>>(), "every other one");
    queue.done(slow);
    assert_eq!(next(&queue), Some(1));
}

#[tokio::test]
async fn waiting_copies_count_in_both_bounds_and_the_queue_drains_whole() {
    let a = flow(1);
    let queue = Queue::new(3);
    for n in 1..=3 {
        push_in(&queue, n, Some(a)).unwrap();
    }
    assert_eq!(push_in(&queue, 4, None), Err(PushError::Full), "count");
    assert_eq!(next(&queue), Some(1));
    assert!(queue.has_room_for(1), "the one out is not held");
    let big = |n: u8| Job {
        request: Arc::new(PreparedRequest::new(
            vec![n],
            Bytes::from(vec![0u8; MAX_QUEUED_BYTES / 2]),
            BodyFraming::AsIs,
        )),
        body: None,
        reply: None,
        flow: Some(a),
    };
    let bytes = Queue::new(100);
    bytes.push(big(1)).unwrap();
    assert!(bytes.try_pop().is_some(), "out");
    bytes.push(big(2)).unwrap();
    assert!(
        matches!(bytes.push(big(3)), Err((PushError::Full, _))),
        "the waiting one's bytes count"
    );

    // Closed: what is ready is still taken, what waits for its
    // connection is taken once the copy before it ended.
    queue.close();
    assert_eq!(push_in(&queue, 5, None), Err(PushError::Closed));
    assert!(queue.pop().await.is_none(), "2 and 3 wait for 1");
    queue.done(a);
    assert_eq!(queue.pop().await.map(|j| j.request.head()[0]), Some(2));
    // A shutdown gives up the rest, waiting or not.
    let given_up: Vec<u8> = queue.drain().iter().map(|j| j.request.head()[0]).collect();
    assert_eq!(given_up, [3]);
    assert!(queue.drain().is_empty());
    assert!(queue.has_room_for(MAX_QUEUED_BYTES), "nothing held");
}

#[tokio::test]
async fn a_copy_waiting_for_its_connection_wakes_no_worker() {
    let a = flow(1);
    let queue = Arc::new(Queue::new(4));
    push_in(&queue, 1, Some(a)).unwrap();
    assert_eq!(queue.pop().await.map(|j| j.request.head()[0]), Some(1));
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.pop().await.map(|job| job.request.head()[0]) }
    });
    tokio::task::yield_now().await;
    push_in(&queue, 2, Some(a)).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "woken for a copy it may not take");
    // The worker whose copy ended takes the next itself.
    queue.done(a);
    assert_eq!(next(&queue), Some(2));
    push_in(&queue, 3, None).unwrap();
    assert_eq!(waiting.await.unwrap(), Some(3));
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
    // One connection's: the expired one is given up, the next one of
    // the connection goes (it would wait for the first forever, and be
    // dropped as `shutdown`, if an expired copy did not end its turn).
    for request in [old, fresh] {
        target.stats().captured.fetch_add(1, Relaxed);
        target
            .try_send_replying(request, Some(flow(1)), None)
            .unwrap();
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

/// A shadow that answers `GET /{flow}/{i}` after `delay(flow)`, noting
/// each arrival as `(flow, i, when)` and whether two requests of one flow
/// were ever at it at once.
async fn shadow_noting_order(
    delay: fn(u64) -> Duration,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<(u64, u64, Instant)>>>,
    Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let overlapped = Arc::new(AtomicBool::new(false));
    let open: Arc<std::sync::Mutex<std::collections::HashSet<u64>>> = Arc::default();
    let (noted, overlap) = (arrivals.clone(), overlapped.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (noted, overlap, open) = (noted.clone(), overlap.clone(), open.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n @ 1..) = stream.read(&mut chunk).await else {
                        return;
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/0/0").to_owned();
                        let mut parts = path.split('/').skip(1).map(|p| p.parse().unwrap_or(0));
                        let (flow, i) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
                        noted.lock().unwrap().push((flow, i, Instant::now()));
                        if !open.lock().unwrap().insert(flow) {
                            overlap.store(true, Relaxed);
                        }
                        tokio::time::sleep(delay(flow)).await;
                        open.lock().unwrap().remove(&flow);
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, arrivals, overlapped)
}

#[tokio::test]
async fn each_connections_copies_reach_the_shadow_in_order_one_after_the_other() {
    // Connection 0 is slow (300 ms an answer), 1 to 4 are fast.
    const SLOW: Duration = Duration::from_millis(300);
    let (addr, arrivals, overlapped) = shadow_noting_order(|flow| match flow {
        0 => SLOW,
        _ => Duration::from_millis(flow),
    })
    .await;
    let url = TargetUrl::parse(&format!("http://{addr}")).unwrap();
    let target = Target::start(
        TargetConfig::new(url),
        Arc::new(super::super::SystemResolver),
    )
    .await;
    let started = Instant::now();
    // Interleaved, as the capture hands them on.
    for i in 0..5u64 {
        for f in 0..5u64 {
            if f == 0 && i >= 3 {
                continue;
            }
            let head = format!("GET /{f}/{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
            let request = Arc::new(PreparedRequest::new(head, Bytes::new(), BodyFraming::AsIs));
            target.stats().captured.fetch_add(1, Relaxed);
            target
                .try_send_replying(request, Some(flow(f)), None)
                .unwrap();
        }
    }
    target
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    let stats = target.stats().snapshot();
    assert_eq!(stats.sent_total(), 23, "{stats}");
    assert!(stats.balances(), "{stats}");
    assert!(
        !overlapped.load(Relaxed),
        "two copies of one connection at the shadow at once"
    );
    let arrivals = arrivals.lock().unwrap().clone();
    for f in 0..5u64 {
        let order: Vec<u64> = arrivals
            .iter()
            .filter(|(flow, ..)| *flow == f)
            .map(|(_, i, _)| *i)
            .collect();
        let sent = if f == 0 { 3 } else { 5 };
        assert_eq!(order, (0..sent).collect::<Vec<u64>>(), "connection {f}");
    }
    // The fast connections were done before the slow one's first answer.
    let fast_done = arrivals
        .iter()
        .filter(|(flow, ..)| *flow != 0)
        .map(|(.., when)| *when)
        .max()
        .unwrap();
    assert!(
        fast_done < started + SLOW,
        "the fast connections waited for the slow one: last arrival after {:?}",
        fast_done - started
    );
}
