use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::writer::{Ended, MAX_QUEUED_BYTES, Queue, Refused};
use super::*;
use crate::file::gor::PayloadReader;
use crate::http::testing::frame;
use crate::http::{RequestSink, ResponseLoss, ResponseSink};
use crate::route::FilterReason;

/// A fresh directory for one test (its caller removes it) and the
/// recording's path inside it.
fn scratch_file(dir: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.gor");
    (dir, path)
}

#[test]
fn recorded_requests_read_back_as_they_were_captured_and_filters_are_counted() {
    let (dir, path) = scratch_file("mirror-rec");
    let stream = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n\x00\r\n\xff\n\
DELETE /c HTTP/1.1\r\nHost: h\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n";
    let requests = frame(stream);
    assert_eq!(requests.len(), 4);
    let mut route = RouteConfig::default();
    route.rules.methods = vec!["GET".into(), "POST".into()];
    let (mut recorder, recording) = record(&path, route, 1_000).unwrap();
    for r in requests {
        recorder.on_request(r);
    }
    drop(recorder);
    let counts = recording.finish().unwrap();
    assert!(counts.balances(), "{counts}");
    assert_eq!(counts.captured, 4);
    assert_eq!(counts.written, 3);
    assert_eq!(counts.filtered[FilterReason::Method as usize], 1);
    let read: Vec<_> = PayloadReader::open(&path, 1 << 20)
        .unwrap()
        .map(|i| i.unwrap().unwrap())
        .collect();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].data, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        read[1].data,
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n\x00\r\n\xff\n"
    );
    assert_eq!(read[0].meta.kind, PayloadKind::Request);
    assert_eq!(read[0].meta.id.len(), 24);
    assert_ne!(read[0].meta.id, read[1].meta.id);
    assert_eq!(read[0].meta.timestamp_ns, 1_000, "timestamp 0 + the offset");
    assert_eq!(
        read[2].data, b"GET /d HTTP/1.1\r\nHost: h\r\nX-Mirrored-By: mirror\r\n\r\n",
        "recorded as sent: no marker, no loop guard"
    );
    assert_eq!(
        counts.to_string(),
        "captured=4 written=3 filtered=1 (method=1) dropped=0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_drops_when_live_and_waits_for_the_writer_when_reading_a_file() {
    let (tx, rx) = mpsc::sync_channel(1);
    let mut queue = Queue {
        tx,
        queued_bytes: Arc::new(AtomicUsize::new(0)),
        stats: Arc::new(RecordStats::default()),
        waits: false,
    };
    queue.offer(false, vec![1; 10]).unwrap();
    assert!(matches!(
        queue.offer(false, vec![2; 10]),
        Err(Refused::QueueFull)
    ));
    queue.waits = true;
    let waiting = std::thread::spawn({
        let queue = queue.clone();
        move || queue.offer(false, vec![3; 10])
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiting.is_finished(), "a waiting queue does not drop");
    // The writer takes one: the waiting payload goes in after it.
    assert_eq!(rx.recv().unwrap().bytes, [1; 10]);
    waiting.join().unwrap().unwrap();
    assert_eq!(rx.recv().unwrap().bytes, [3; 10]);
    assert_eq!(queue.stats.queued.load(Relaxed), 2, "none was taken back");
    // A writer gone ends the wait with an error, not a hang.
    queue.queued_bytes.store(MAX_QUEUED_BYTES, Relaxed);
    let gone = std::thread::spawn({
        let queue = queue.clone();
        move || queue.offer(false, vec![4; 10])
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(rx);
    drop(Ended(Arc::clone(&queue.queued_bytes)));
    assert!(matches!(gone.join().unwrap(), Err(Refused::WriterGone)));
}

fn response(raw: Option<&[u8]>, first_byte_ns: u64) -> CapturedResponse {
    CapturedResponse {
        answer: crate::http::Answer {
            status: 200,
            headers: Vec::new(),
            body: crate::http::Body::default(),
        },
        first_byte_ns,
        complete_ns: first_byte_ns,
        raw: raw.map(bytes::Bytes::copy_from_slice),
    }
}

#[test]
fn responses_are_written_as_type_2_with_their_requests_id_and_every_miss_is_counted() {
    let (dir, path) = scratch_file("mirror-rec-resp");
    let stream = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
DELETE /b HTTP/1.1\r\nHost: h\r\n\r\n\
GET /c HTTP/1.1\r\nHost: h\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\n\r\n\
GET /e HTTP/1.1\r\nHost: h\r\n\r\n";
    let requests = frame(stream);
    let flow = requests[0].flow;
    let completes: Vec<u64> = requests.iter().map(|r| r.complete_ns).collect();
    let mut route = RouteConfig::default();
    route.rules.methods = vec!["GET".into()];
    let (recorder, recording) = record(&path, route, 1_000).unwrap();
    let answers = recorder.responses();
    let (mut recorder, mut responses) = crate::http::paired(recorder, answers);
    for r in requests {
        recorder.on_request(r);
    }
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    responses.on_response(&flow, response(Some(ok), completes[0] + 500));
    // The filtered DELETE's response: not written, nothing to count.
    responses.on_response(&flow, response(Some(b"HTTP/1.1 405 No\r\n\r\n"), 0));
    responses.on_response(&flow, response(None, 0));
    responses.on_lost(&flow, ResponseLoss::BodyGap);
    responses.end_all();
    drop((recorder, responses));
    let counts = recording.finish().unwrap();
    assert!(counts.balances(), "{counts}");
    assert_eq!((counts.written, counts.responses_written), (4, 1));
    assert_eq!(
        counts.responses_line(),
        "responses_written=1 responses_dropped=3 (no_response=2 too_large=1)"
    );
    let read: Vec<_> = PayloadReader::open(&path, 1 << 20)
        .unwrap()
        .map(|i| i.unwrap().unwrap())
        .collect();
    let kinds: Vec<_> = read.iter().map(|p| p.meta.kind).collect();
    use PayloadKind::{Request as Q, Response as A};
    assert_eq!(kinds, [Q, Q, Q, Q, A]);
    let answer = &read[4];
    assert_eq!(answer.meta.id, read[0].meta.id, "the response of GET /a");
    assert_eq!(answer.data, ok);
    assert_eq!(answer.meta.latency_ns, 500);
    assert_eq!(
        answer.meta.timestamp_ns,
        (completes[0] + 500) as i64 + 1_000
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_bodies_are_recorded_without_their_credentials_unless_asked() {
    let stream = b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
Content-Length: 37\r\n\r\n{\"user\":\"bob\",\"password\":\"hunter-zz\"}";
    for (policy, kept) in [(Policy::default(), false), (Policy::new(false), true)] {
        let (dir, path) = scratch_file("mirror-rec-redact");
        let (mut recorder, recording) = record(&path, RouteConfig::default(), 0).unwrap();
        recorder.redact_with(policy);
        for r in frame(stream) {
            recorder.on_request(r);
        }
        drop(recorder);
        assert_eq!(recording.finish().unwrap().written, 1);
        let read: Vec<_> = PayloadReader::open(&path, 1 << 20)
            .unwrap()
            .map(|i| i.unwrap().unwrap())
            .collect();
        let data = String::from_utf8(read[0].data.to_vec()).unwrap();
        assert_eq!(data.contains("hunter-zz"), kept, "{data}");
        assert!(data.contains("\"user\":\"bob\""), "{data}");
        if !kept {
            let (head, body) = data.split_once("\r\n\r\n").unwrap();
            assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
