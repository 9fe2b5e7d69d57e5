use std::{
    io::{Read as _, Write as _},
    net::Shutdown,
    os::unix::net::UnixStream,
};

use super::*;

/// Serves what `client_bytes` holds over a socket pair with `builder`'s
/// behaviour; returns how serving ended, the server's log and everything
/// it wrote back.
fn serve_bytes(builder: Builder, client_bytes: &[u8]) -> (Result<Received>, Vec<Arrival>, Vec<u8>) {
    let (mut client, server) = UnixStream::pair().unwrap();
    let shared = Arc::new(builder.into_shared());
    shared.log().received.connections.push(ServerConnection {
        client: "127.0.0.1:1".parse().unwrap(),
        requests: Vec::new(),
    });
    let serving = Arc::clone(&shared);
    let thread = std::thread::spawn(move || {
        let mut conn = Conn::new(server, &serving.halt);
        serve_or_refuse(&mut conn, &serving, 0).map(drop)
    });
    client.write_all(client_bytes).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    let result = thread.join().unwrap();
    let log = shared.log();
    (
        result.map(|()| log.received.clone()),
        log.arrivals.clone(),
        answer,
    )
}

fn requests_of(client_bytes: &[u8]) -> Result<Vec<ReceivedRequest>> {
    let (received, _, _) = serve_bytes(Server::builder(), client_bytes);
    Ok(received?.requests().cloned().collect())
}

#[test]
fn pipelined_requests_are_framed_logged_and_answered_in_order() {
    let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".as_slice();
    let second = b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n".as_slice();
    let third =
        b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n".as_slice();
    let chunks = b"3;name=v\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n".as_slice();
    let fourth = b"GET /d HTTP/1.0\r\n\r\n".as_slice();
    let stream = [first, second, b"hello", third, chunks, fourth].concat();
    let (received, log, answer) = serve_bytes(Server::builder(), &stream);
    let requests: Vec<_> = received.unwrap().requests().cloned().collect();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[0].head, first);
    assert!(requests[0].body.is_empty());
    assert_eq!(requests[1].head, second);
    assert_eq!(requests[1].body, b"hello");
    assert_eq!(requests[2].head, third);
    assert_eq!(requests[2].body, b"abc0123456789abcdef");
    assert!(requests[2].chunked);
    assert_eq!(requests[2].trailers, b"X-Sum: 1\r\n");
    assert_eq!(requests[3].head, fourth);
    let expected = [RESPONSE, RESPONSE, CONTINUE, RESPONSE, RESPONSE_CLOSE].concat();
    assert_eq!(answer, expected);
    // The log holds each request's bytes exactly as they came.
    let wires: Vec<&[u8]> = log.iter().map(|a| a.wire.as_slice()).collect();
    let second_wire = [second, b"hello"].concat();
    let third_wire = [third, chunks].concat();
    assert_eq!(wires, [first, &second_wire, &third_wire, fourth]);
    assert_eq!(log[2].target(), "/c");
}

#[test]
fn a_truncated_body_is_an_error_and_a_clean_close_is_not() {
    assert!(requests_of(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc").is_err());
    let (received, _, answer) = serve_bytes(Server::builder(), b"");
    assert_eq!(received.unwrap().request_count(), 0);
    assert!(answer.is_empty());
}

#[test]
fn framing_is_strict_crlf_and_digits_only() {
    let bad: [&[u8]; 8] = [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\na",
        b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\na\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\na\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX: 1\n\r\n\r\n",
    ];
    for bytes in bad {
        assert!(
            requests_of(bytes).is_err(),
            "framed: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Whitespace before a chunk extension is allowed.
    let good = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\na\r\n0\r\n\r\n";
    assert_eq!(requests_of(good).unwrap()[0].body, b"a");
}

#[test]
fn head_info_reads_the_framing() {
    let info = head_info(
        b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n",
        Grammar::Framing,
    )
    .unwrap();
    assert_eq!(info.framing, Framing::Length(12));
    assert!(!info.http10 && !info.expect_continue);
    let info = head_info(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\
          Expect: 100-continue\r\nConnection: close\r\n\r\n",
        Grammar::Framing,
    )
    .unwrap();
    assert_eq!(info.framing, Framing::Chunked);
    assert!(info.expect_continue);
    let info = head_info(b"GET / HTTP/1.0\r\n\r\n", Grammar::Framing).unwrap();
    assert_eq!(info.framing, Framing::None);
    assert!(info.http10);
    assert!(
        head_info(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            Grammar::Framing
        )
        .is_err()
    );
}

#[test]
fn a_request_tells_its_line_fields_and_connection_option() {
    let request = |head: &[u8]| ReceivedRequest {
        head: head.to_vec(),
        body: Vec::new(),
        chunked: false,
        trailers: Vec::new(),
    };
    let r = request(b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-Tag:  v1 \r\nConnection: close\r\n\r\n");
    assert_eq!((r.method(), r.target(), r.http10()), ("GET", "/a?b", false));
    assert_eq!(r.header("x-tag"), Some(b"v1".as_slice()));
    assert_eq!(r.header_str("HOST"), Some("x"));
    assert_eq!(r.header("missing"), None);
    assert!(!r.keep_alive());
    assert!(request(b"GET / HTTP/1.1\r\n\r\n").keep_alive());
    assert!(!request(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
    assert!(request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
}

#[test]
fn an_answer_function_decides_per_request() {
    let builder = Server::builder().answer(|request| match request.target() {
        "/garbage" => Reply::garbage(),
        _ => Reply::bytes(format!("{} {}", request.method(), request.body.len())),
    });
    let (_, _, answer) = serve_bytes(
        builder,
        b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\
          GET /garbage HTTP/1.1\r\n\r\n",
    );
    assert_eq!(answer, [b"POST 2".as_slice(), GARBAGE].concat());
}

/// A client on a real TCP connection to `server`: sends `bytes`, returns
/// what came back until the server closed or `wait` passed.
fn exchange(server: &Server, bytes: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server.addr())?;
    stream.set_read_timeout(Some(wait))?;
    stream.write_all(bytes)?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(answer),
        Err(err) => Err(err),
    }
}

const CLOSING_GET: &[u8] = b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n";

#[test]
fn it_serves_and_logs_on_ipv4_and_ipv6() {
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let server = Server::builder().listen(addr.parse().unwrap()).unwrap();
        let answer = exchange(&server, CLOSING_GET, Duration::from_secs(5)).unwrap();
        assert_eq!(answer, RESPONSE_CLOSE, "{addr}");
        assert_eq!(server.log()[0].wire, CLOSING_GET);
        let received = server.stop().unwrap();
        assert_eq!(received.connections.len(), 1);
        assert_eq!(received.connections[0].requests[0].head, CLOSING_GET);
    }
}

#[test]
fn a_delay_and_a_held_gate_keep_answers_back() {
    let delay = Duration::from_millis(300);
    let server = Server::builder()
        .delay(delay)
        .listen("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let started = Instant::now();
    let answer = exchange(&server, CLOSING_GET, Duration::from_secs(5)).unwrap();
    assert!(started.elapsed() >= delay);
    assert_eq!(answer, RESPONSE_CLOSE);
    drop(server);

    let server = Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .unwrap();
    server.hold_answers();
    let mut held = TcpStream::connect(server.addr()).unwrap();
    held.write_all(CLOSING_GET).unwrap();
    let read_at = Instant::now() + Duration::from_secs(5);
    while server.request_count() == 0 && Instant::now() < read_at {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.request_count(), 1, "a held request is still read");
    held.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = held.read(&mut byte);
    assert_eq!(
        early.map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "answered while held"
    );
    server.release_answers();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    held.read_to_end(&mut answer).unwrap();
    assert_eq!(
        answer, RESPONSE_CLOSE,
        "the held answer went out on release"
    );
}

#[test]
fn failures_reset_or_stay_silent_and_halt_ends_them() {
    let server = Server::builder()
        .answer(|request| match request.target() {
            "/reset" => Reply::reset_mid_body(),
            _ => Reply::silence(),
        })
        .listen("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let reset = exchange(
        &server,
        b"GET /reset HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        reset.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "a reset mid-body"
    );
    let silent = exchange(
        &server,
        b"GET /hang HTTP/1.1\r\n\r\n",
        Duration::from_millis(200),
    );
    assert!(silent.unwrap().is_empty());
    let started = Instant::now();
    let received = server.halt();
    assert!(started.elapsed() < Duration::from_secs(2), "halt waited");
    assert_eq!(received.request_count(), 2);
    assert_eq!(received.connections.len(), 2);
}

/// What a [`Builder::refuse_unframeable`] server logs for `client_bytes`
/// and answers.
fn refused_of(client_bytes: &[u8]) -> (Vec<Arrival>, Vec<u8>) {
    let (received, log, answer) = serve_bytes(Server::builder().refuse_unframeable(), client_bytes);
    received.expect("a refusal does not fail the server");
    (log, answer)
}

#[test]
fn requests_by_the_grammar_are_framed_under_refuse_unframeable() {
    let wire = b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                 3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\n\r\n\
                 GET / HTTP/1.0\r\n\r\n";
    let (log, _) = refused_of(wire);
    let requests: Vec<&ReceivedRequest> = log.iter().map(|a| a.request.as_ref().unwrap()).collect();
    assert_eq!(requests.len(), 2, "{log:?}");
    assert_eq!(
        (requests[0].body.as_slice(), requests[0].trailers.as_slice()),
        (&b"abcd"[..], &b"X-T: 1\r\n"[..])
    );
    assert_eq!(requests[1].target(), "/");
}

/// What RFC 9112 refuses and a lenient server may read as some request:
/// each is refused, kept whole, answered 400.
#[test]
fn what_a_lenient_server_would_read_is_refused() {
    for (what, wire) in [
        ("bare LF", &b"GET / HTTP/1.1\nHost: h\n\n"[..]),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX: 1\r\n 2\r\n\r\n"),
        ("no Host", b"GET / HTTP/1.1\r\nX: 1\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n"),
        ("two spaces", b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        (
            "two Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
        ),
        (
            "Content-Length over 18 digits",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000000000\r\n\r\na",
        ),
        (
            "TE beside CL",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        ),
        (
            "a coding before chunked",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ),
        (
            "two TE fields",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunk size not hex",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ),
        (
            "space before a chunk extension",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\na\r\n0\r\n\r\n",
        ),
        (
            "obs-folded trailer",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n",
        ),
        (
            "trailer name with a space",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX : 1\r\n\r\n",
        ),
        (
            "trailer with a bare LF",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
        ),
        ("bytes after a request", b"get / HTTP/1.1\r\nHost: h\r\n\r\n extra"),
    ] {
        let (log, answer) = refused_of(wire);
        let shown = format!("{what}: {:?}", String::from_utf8_lossy(wire));
        let refused = log.iter().find(|a| a.request.is_err());
        // `get` is a token: framed, then what follows it is refused.
        if wire.starts_with(b"get") {
            assert!(
                refused.is_some_and(|a| a.wire == b" extra"),
                "{shown:?}: {log:?}"
            );
            continue;
        }
        assert_eq!(log.len(), 1, "{shown:?}: {log:?}");
        assert_eq!(log[0].wire, wire, "{shown:?}: not kept whole");
        assert!(log[0].request.is_err(), "{shown:?} was framed");
        assert!(
            answer.ends_with(BAD_REQUEST),
            "{shown:?}: answered {answer:?}"
        );
    }
}

#[test]
fn bytes_after_a_closing_request_are_kept_as_refused() {
    let (log, _) = refused_of(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].request.is_ok());
    assert_eq!(log[1].wire, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(log[1].request.is_err());
}

#[test]
fn a_request_cut_by_the_close_is_kept_as_refused() {
    let (log, _) = refused_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab");
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].request.is_err());
    assert_eq!(log[0].wire.len(), 49);
}
