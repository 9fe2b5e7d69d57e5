//! What a compared copy's reply says when the target fails: before the
//! request was written (never reached it: not compared) or after (the
//! target's verdict, with how it failed), and that a failed answer costs
//! that one request, not the address.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::route::BodyFraming;
use crate::shadow::reply::AnswerSink;

/// The replies, by tag: the answer's status, or why there is none.
#[derive(Default)]
struct Replies(Mutex<Vec<(u64, Result<u16, NoAnswer>)>>);

impl AnswerSink for Replies {
    fn answered(&self, tag: u64, _target: &str, result: Result<Answered, NoAnswer>) {
        let result = result.map(|a| a.answer.status);
        self.0.lock().unwrap().push((tag, result));
    }
}

impl Replies {
    fn of(&self, tag: u64) -> Option<Result<u16, NoAnswer>> {
        let replies = self.0.lock().unwrap();
        replies.iter().find(|(t, _)| *t == tag).map(|(_, r)| *r)
    }
}

/// A shadow that answers by path: `/ok` a 200; `/crash` a 200 head
/// promising 10 bytes, then closes (an exception after the headers);
/// `/close` closes without a byte; `/reset` a head and part of the body,
/// then a reset; `/garbage` bytes that are not HTTP; `/slow` nothing
/// for 5 s. Returns its address and how many connections it accepted.
async fn failing_shadow() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let Ok(n @ 1..) = stream.read(&mut chunk).await else {
                            return;
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("");
                    let answer: &[u8] = match path {
                        "/ok" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                        "/crash" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                        "/close" => b"",
                        "/reset" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart",
                        "/garbage" => b"garbage, not HTTP\r\n\r\n",
                        _ => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            return;
                        }
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                    match path {
                        "/ok" => {}
                        "/reset" => {
                            // Linger 0 makes the close a reset; it does
                            // not block (what the deprecation warns of).
                            #[allow(deprecated)]
                            let _ = stream.set_linger(Some(Duration::ZERO));
                            return;
                        }
                        "/garbage" => {}
                        _ => return,
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A target keeping its answers, over `addr`, with a short request
/// timeout.
async fn keeping(addr: SocketAddr) -> Arc<Target> {
    let url = TargetUrl::parse(&format!("http://{addr}")).unwrap();
    let mut config = TargetConfig::new(url);
    config.settings.keep_answer = Some(1024);
    config.settings.request_timeout = Duration::from_millis(300);
    config.settings.max_in_flight = 1;
    Target::start(config, Arc::new(super::super::SystemResolver)).await
}

/// Sends `GET path` as exchange `tag` and waits for its reply.
async fn send(
    target: &Target,
    replies: &Arc<Replies>,
    tag: u64,
    path: &str,
) -> Result<u16, NoAnswer> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    let request = Arc::new(PreparedRequest::new(head, Bytes::new(), BodyFraming::AsIs));
    target.stats().captured.fetch_add(1, Relaxed);
    let sink: Arc<dyn AnswerSink> = replies.clone();
    let reply = Reply::new(tag, target.name_arc(), sink);
    let _ = target.try_send_replying(request, None, Some(reply));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(reply) = replies.of(tag) {
            return reply;
        }
        assert!(Instant::now() < deadline, "{path}: no reply");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn after_sending(reason: DropReason, failure: AnswerFailure) -> Result<u16, NoAnswer> {
    Err(NoAnswer::after_sending(reason, failure))
}

#[tokio::test]
async fn a_failure_after_the_request_was_written_says_how_and_one_before_says_nothing_was_sent() {
    let (addr, _) = failing_shadow().await;
    let target = keeping(addr).await;
    let replies = Arc::new(Replies::default());
    let cases = [
        ("/ok", Ok(200)),
        (
            "/crash",
            after_sending(DropReason::IoError, AnswerFailure::Closed),
        ),
        (
            "/close",
            after_sending(DropReason::IoError, AnswerFailure::Closed),
        ),
        (
            "/reset",
            after_sending(DropReason::IoError, AnswerFailure::Reset),
        ),
        (
            "/garbage",
            after_sending(DropReason::IoError, AnswerFailure::Malformed),
        ),
        (
            "/slow",
            after_sending(DropReason::Timeout, AnswerFailure::Timeout),
        ),
        ("/ok", Ok(200)),
    ];
    for (tag, (path, expected)) in cases.into_iter().enumerate() {
        let got = send(&target, &replies, tag as u64, path).await;
        assert_eq!(got, expected, "{path}");
    }
    target
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    let stats = target.stats().snapshot();
    // The shadow's counters are what they always were.
    assert_eq!(stats.dropped_by(DropReason::IoError), 4, "{stats}");
    assert_eq!(stats.dropped_by(DropReason::Timeout), 1, "{stats}");
    assert_eq!(stats.sent_total(), 2, "{stats}");
    assert!(stats.balances(), "{stats}");

    // Nothing listening: refused before anything was written.
    let dead = keeping(SocketAddr::from(([127, 0, 0, 1], 1))).await;
    let got = send(&dead, &replies, 100, "/ok").await;
    assert_eq!(got, Err(DropReason::ConnectRefused.into()));
    dead.shutdown(Instant::now() + Duration::from_secs(5)).await;
}

/// The finding of issue 23: a candidate that crashes on one endpoint made
/// the shadow set its address aside after two crashes, and 118 of 168
/// replayed requests were lost (`io_error`). Crashes in a row, more than
/// enough to set aside an address that answers nothing, must cost each
/// one request only while the address answers the rest.
#[tokio::test]
async fn crashes_on_one_endpoint_cost_their_requests_only() {
    let (addr, accepted) = failing_shadow().await;
    let target = keeping(addr).await;
    let replies = Arc::new(Replies::default());
    let mut tag = 0;
    let mut next = || {
        tag += 1;
        tag
    };
    assert_eq!(send(&target, &replies, next(), "/ok").await, Ok(200));
    for _ in 0..3 {
        for _ in 0..2 * FAILED_ANSWERS {
            let got = send(&target, &replies, next(), "/crash").await;
            assert_eq!(
                got,
                after_sending(DropReason::IoError, AnswerFailure::Closed)
            );
        }
        assert_eq!(send(&target, &replies, next(), "/ok").await, Ok(200));
        assert!(!target.addresses()[0].failing, "set aside");
    }
    target
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    let stats = target.stats().snapshot();
    assert_eq!(stats.sent_total(), 4, "{stats}");
    assert_eq!(
        stats.dropped_by(DropReason::IoError),
        6 * FAILED_ANSWERS as u64
    );
    // One connection per crash, and the first one's reused after it
    // answered: the connection of a crash is the only one closed.
    assert_eq!(accepted.load(Relaxed), 1 + 6 * FAILED_ANSWERS);
}

/// What a crash must not weaken: a shadow whose every answer fails
/// (garbage here) is set aside after a few, not reconnected to per
/// request; what comes then is dropped before sending (not compared).
#[tokio::test]
async fn a_shadow_failing_every_answer_is_set_aside_after_a_few() {
    let (addr, accepted) = failing_shadow().await;
    let target = keeping(addr).await;
    let replies = Arc::new(Replies::default());
    for tag in 0..FAILED_ANSWERS as u64 {
        let got = send(&target, &replies, tag, "/garbage").await;
        assert_eq!(
            got,
            after_sending(DropReason::IoError, AnswerFailure::Malformed)
        );
    }
    assert!(target.addresses()[0].failing);
    for tag in 100..110 {
        let got = send(&target, &replies, tag, "/garbage").await;
        assert_eq!(got, Err(DropReason::IoError.into()), "not sent");
    }
    assert_eq!(accepted.load(Relaxed), FAILED_ANSWERS);
    target
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
}

/// [`super::super::endpoints`]' threshold, as a count of connections.
const FAILED_ANSWERS: usize = 2;
