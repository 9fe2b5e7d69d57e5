//! The corpus: request cases of the kinds HTTP/1 parser test suites cover,
//! written here. Each is the bytes one client sends on a connection of its
//! own (in parts a moment apart where the parts matter), then it closes its
//! sending side. Valid ones (nginx serves each request with a 200) and
//! invalid or ambiguous ones (nginx refuses, or reads them its own way).

/// One case.
pub struct Case {
    pub name: &'static str,
    /// The client's writes, in order.
    pub parts: Vec<Vec<u8>>,
    /// Why mirror may deliver what nginx refuses here: the request is valid
    /// by RFC 9112 and nginx alone is stricter. None for every other case.
    pub tolerate: Option<&'static str>,
}

fn case(name: &'static str, wire: impl AsRef<[u8]>) -> Case {
    Case {
        name,
        parts: vec![wire.as_ref().to_vec()],
        tolerate: None,
    }
}

fn in_parts(name: &'static str, parts: &[&[u8]]) -> Case {
    Case {
        name,
        parts: parts.iter().map(|p| p.to_vec()).collect(),
        tolerate: None,
    }
}

/// `POST /p` with `fields` (lines with their CRLF) and `body` as sent.
fn post(fields: &str, body: &[u8]) -> Vec<u8> {
    let mut wire = format!("POST /p HTTP/1.1\r\nHost: v1\r\n{fields}\r\n").into_bytes();
    wire.extend_from_slice(body);
    wire
}

/// `GET path` with `fields` (lines with their CRLF).
fn get(path: &str, fields: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: v1\r\n{fields}\r\n").into_bytes()
}

const CHUNKED: &str = "Transfer-Encoding: chunked\r\n";

/// Why a request with both Transfer-Encoding and Content-Length may reach
/// the shadow though nginx refuses it.
/// Every case, valid ones first.
pub fn cases() -> Vec<Case> {
    let mut cases = valid();
    cases.extend(invalid_heads());
    cases.extend(invalid_framing());
    cases.extend(connection_ends());
    cases
}

fn valid() -> Vec<Case> {
    let many_fields: String = (0..60)
        .map(|i| format!("X-Field-{i}: value {i}\r\n"))
        .collect();
    let big_body = vec![b'x'; 100_000];
    let many_chunks: Vec<u8> = (0..200)
        .flat_map(|i| format!("1\r\n{}\r\n", (b'a' + (i % 26) as u8) as char).into_bytes())
        .chain(b"0\r\n\r\n".iter().copied())
        .collect();
    let big_chunks: Vec<u8> = (0..10)
        .flat_map(|_| [b"2710\r\n".to_vec(), vec![b'y'; 10_000], b"\r\n".to_vec()].concat())
        .chain(b"0\r\n\r\n".iter().copied())
        .collect();
    vec![
        case("GET", get("/", "")),
        case("GET with a query", get("/search?q=mirror&lang=en", "")),
        case("GET with an encoded path", get("/a%20b/%C3%A9", "")),
        case("GET with a raw UTF-8 path", get("/caf\u{e9}", "")),
        case("GET with a 2 KB target", get(&format!("/{}", "p".repeat(2000)), "")),
        case("HEAD", b"HEAD /h HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("DELETE", b"DELETE /d HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("OPTIONS on a path", b"OPTIONS /o HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("PUT with a body", b"PUT /u HTTP/1.1\r\nHost: v1\r\nContent-Length: 4\r\n\r\nabcd"),
        case("PATCH with a body", b"PATCH /u HTTP/1.1\r\nHost: v1\r\nContent-Length: 2\r\n\r\n{}"),
        case("an extension method", b"PURGE /cache HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("a method with a dash", b"VERSION-CONTROL /v HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("POST with a body", post("Content-Length: 5\r\n", b"hello")),
        case("POST with an empty body", post("Content-Length: 0\r\n", b"")),
        case("GET with a body", get("/g", "Content-Length: 4\r\n").into_iter().chain(*b"body").collect::<Vec<u8>>()),
        case("Content-Length with leading zeros", post("Content-Length: 005\r\n", b"hello")),
        case("a 100 KB body", post("Content-Length: 100000\r\n", &big_body)),
        case("chunked", post(CHUNKED, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")),
        case("chunked with an extension", post(CHUNKED, b"5;name=value\r\nhello\r\n0\r\n\r\n")),
        case("chunked with a quoted extension", post(CHUNKED, b"5;n=\"v; x\"\r\nhello\r\n0\r\n\r\n")),
        case("chunked with extensions on the last chunk", post(CHUNKED, b"5\r\nhello\r\n0;end=1\r\n\r\n")),
        case("chunked with trailers", post(CHUNKED, b"5\r\nhello\r\n0\r\nX-Sum: 5\r\nX-Other: a\r\n\r\n")),
        case("chunked with an upper-case size", post(CHUNKED, b"A\r\n0123456789\r\n0\r\n\r\n")),
        case("chunked with a zero-padded size", post(CHUNKED, b"0005\r\nhello\r\n0\r\n\r\n")),
        case("chunked, 200 one-byte chunks", post(CHUNKED, &many_chunks)),
        case("chunked, 100 KB", post(CHUNKED, &big_chunks)),
        case("Transfer-Encoding in upper case", post("Transfer-Encoding: CHUNKED\r\n", b"2\r\nhi\r\n0\r\n\r\n")),
        case("a field without a space", get("/f", "X-A:1\r\n")),
        case("a field with tabs around its value", get("/f", "X-A:\t1\t\r\n")),
        case("an empty field value", get("/f", "X-Empty:\r\n")),
        case("a field value with obs-text", get("/f", "X-A: caf\u{e9}\r\n")),
        case("60 fields", get("/f", &many_fields)),
        case("a 4 KB field value", get("/f", &format!("X-Long: {}\r\n", "v".repeat(4096)))),
        case("field names of every tchar", get("/f", "X-!#$%&'*+.^_`|~: 1\r\n")),
        case("a Host with a port", b"GET /h HTTP/1.1\r\nHost: v1:8080\r\n\r\n"),
        case("Host after other fields", b"GET /h HTTP/1.1\r\nAccept: */*\r\nHost: v1\r\n\r\n"),
        case("two Cookie fields", get("/c", "Cookie: a=1\r\nCookie: b=2\r\n")),
        case("absolute form", b"GET http://v1/abs?q=1 HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("absolute form with a port", b"GET http://v1:8080/abs HTTP/1.1\r\nHost: v1:8080\r\n\r\n"),
        case("absolute form without a path", b"GET http://v1 HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("absolute form naming another host", b"GET http://other.example/x HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("HTTP/1.0", b"GET /ten HTTP/1.0\r\n\r\n"),
        case("HTTP/1.0 with a body", b"POST /ten HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"),
        case("HTTP/1.0 keep-alive, two requests", b"GET /k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        case("pipelined GETs", [get("/1", ""), get("/2", ""), get("/3", "")].concat()),
        case("pipelined GET, POST, HEAD", [get("/1", ""), post("Content-Length: 3\r\n", b"abc"), b"HEAD /3 HTTP/1.1\r\nHost: v1\r\n\r\n".to_vec()].concat()),
        case("pipelined chunked then GET", [post(CHUNKED, b"3\r\nabc\r\n0\r\n\r\n"), get("/after", "")].concat()),
        in_parts("keep-alive, a write each", &[&get("/w1", ""), &get("/w2", "")]),
        in_parts("a head split in the request line", &[b"GET /spl", b"it HTTP/1.1\r\nHost: v1\r\n\r\n"]),
        in_parts("a head split in the empty line", &[b"GET /split HTTP/1.1\r\nHost: v1\r\n\r", b"\n"]),
        in_parts("Expect: 100-continue, body after", &[b"POST /e HTTP/1.1\r\nHost: v1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", b"hello"]),
        case("Expect: 100-continue, body at once", post("Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello")),
        case("Connection: keep-alive", get("/ka", "Connection: keep-alive\r\n")),
        case("Connection: close alone", get("/close", "Connection: close\r\n")),
        case("an upgrade v1 does not take", get("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n")),
    ]
}

fn invalid_heads() -> Vec<Case> {
    vec![
        case("a bare LF head", b"GET /lf HTTP/1.1\nHost: v1\n\n"),
        case(
            "a bare LF head, Content-Length body",
            b"GET /lf HTTP/1.1\nHost: v1\nContent-Length: 23\n\nGET /admin HTTP/1.1\r\n\r\n",
        ),
        case(
            "a bare LF on the empty line",
            b"GET /lf HTTP/1.1\r\nHost: v1\r\n\n",
        ),
        case(
            "a bare LF after the request line",
            b"GET /lf HTTP/1.1\nHost: v1\r\n\r\n",
        ),
        case(
            "a bare CR in a field line",
            b"GET /cr HTTP/1.1\r\nHost: v1\rX-A: 1\r\n\r\n",
        ),
        case(
            "a bare CR in the request line",
            b"GET /cr\rX HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case("obs-fold", get("/fold", "X-A: 1\r\n 2\r\n")),
        case("obs-fold with a tab", get("/fold", "X-A: 1\r\n\t2\r\n")),
        case(
            "obs-fold on the first field",
            b"GET /fold HTTP/1.1\r\n X-A: 1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "a space before the colon",
            b"GET /sp HTTP/1.1\r\nHost : v1\r\n\r\n",
        ),
        case("a tab before the colon", get("/tab", "X-A\t: 1\r\n")),
        case("a space in a field name", get("/name", "X A: 1\r\n")),
        case("an empty field name", get("/name", ": 1\r\n")),
        case(
            "a field line without a colon",
            get("/name", "X-No-Colon\r\n"),
        ),
        case("a non-ASCII field name", get("/name", "X-\u{e9}: 1\r\n")),
        case("NUL in a field value", get("/ctl", "X-A: a\0b\r\n")),
        case(
            "a control character in a field value",
            get("/ctl", "X-A: a\x01b\r\n"),
        ),
        case("DEL in a field value", get("/ctl", "X-A: a\x7fb\r\n")),
        case(
            "a control character in the target",
            b"GET /a\x01b HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "a space in the target",
            b"GET /a b HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "two spaces after the method",
            b"GET  /two HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "tabs as separators",
            b"GET\t/tab\tHTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "a space after the version",
            b"GET /v HTTP/1.1 \r\nHost: v1\r\n\r\n",
        ),
        case("no target", b"GET HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case(
            "a lower-case method",
            b"get /lower HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "a method with a slash",
            b"GE/T /m HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case("HTTP/1.2", b"GET /v HTTP/1.2\r\nHost: v1\r\n\r\n"),
        case(
            "HTTP/2.0 in a request line",
            b"GET /v HTTP/2.0\r\nHost: v1\r\n\r\n",
        ),
        case("HTTP/0.9", b"GET /nine\r\n"),
        case(
            "a lower-case version",
            b"GET /v http/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "a version with two digits",
            b"GET /v HTTP/1.10\r\nHost: v1\r\n\r\n",
        ),
        case(
            "empty lines before the request line",
            [b"\r\n\r\n".to_vec(), get("/late", "")].concat(),
        ),
        case("HTTP/1.1 without Host", b"GET /nohost HTTP/1.1\r\n\r\n"),
        case(
            "two Host fields",
            b"GET /hosts HTTP/1.1\r\nHost: v1\r\nHost: v2\r\n\r\n",
        ),
        case(
            "an empty Host",
            b"GET /empty-host HTTP/1.1\r\nHost:\r\n\r\n",
        ),
        case(
            "a Host with a space",
            b"GET /h HTTP/1.1\r\nHost: v 1\r\n\r\n",
        ),
        case(
            "a Host with a slash",
            b"GET /h HTTP/1.1\r\nHost: v1/x\r\n\r\n",
        ),
        case(
            "absolute form with userinfo",
            b"GET http://user:pass@v1/u HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "absolute form with an invalid userinfo",
            b"GET http://a:b@@hypnotoad.org:1234/toto HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "absolute form with a space in the host",
            b"GET http://v%201/x HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
        case(
            "CONNECT",
            b"CONNECT v1:443 HTTP/1.1\r\nHost: v1:443\r\n\r\n",
        ),
        Case {
            tolerate: Some("OPTIONS * is valid by RFC 9112; nginx refuses every asterisk form"),
            ..case("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: v1\r\n\r\n")
        },
        case(
            "M-SEARCH *",
            b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nST: ssdp:all\r\n\r\n",
        ),
        case("GET *", b"GET * HTTP/1.1\r\nHost: v1\r\n\r\n"),
        case("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        case(
            "a TLS ClientHello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03rest of a hello",
        ),
        case("binary garbage", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n"),
        case(
            "a NUL in the request line",
            b"GET /\0 HTTP/1.1\r\nHost: v1\r\n\r\n",
        ),
    ]
}

fn invalid_framing() -> Vec<Case> {
    vec![
        case(
            "two different Content-Lengths",
            post("Content-Length: 1\r\nContent-Length: 2\r\n", b"ab"),
        ),
        case(
            "two equal Content-Lengths",
            post("Content-Length: 2\r\nContent-Length: 2\r\n", b"ab"),
        ),
        case(
            "a Content-Length list",
            post("Content-Length: 2, 2\r\n", b"ab"),
        ),
        case(
            "an overflowing Content-Length",
            post("Content-Length: 1000000000000000000000\r\n", b"ab"),
        ),
        case(
            "Content-Length 2^64",
            post("Content-Length: 18446744073709551616\r\n", b"ab"),
        ),
        case(
            "a negative Content-Length",
            post("Content-Length: -1\r\n", b"ab"),
        ),
        case(
            "a Content-Length with a plus",
            post("Content-Length: +2\r\n", b"ab"),
        ),
        case(
            "a hexadecimal Content-Length",
            post("Content-Length: 0x2\r\n", b"ab"),
        ),
        case(
            "a Content-Length with a space inside",
            post("Content-Length: 1 2\r\n", b"ab"),
        ),
        case(
            "a non-numeric Content-Length",
            post("Content-Length: abc\r\n", b"ab"),
        ),
        case(
            "an empty Content-Length",
            post("Content-Length:\r\n", b"ab"),
        ),
        case(
            "a space before the colon of Content-Length",
            post("Content-Length : 2\r\n", b"ab"),
        ),
        case(
            "a Content-Length over the body limit",
            post("Content-Length: 99999999999\r\n", b"ab"),
        ),
        case("a body cut short", post("Content-Length: 10\r\n", b"abc")),
        case(
            "Content-Length then chunked",
            post(
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "chunked then Content-Length",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "a coding before chunked",
            post(
                "Transfer-Encoding: deflate, chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "a coding after chunked",
            post(
                "Transfer-Encoding: chunked, gzip\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "chunked twice in one field",
            post(
                "Transfer-Encoding: chunked, chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "two Transfer-Encoding fields",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case("identity", post("Transfer-Encoding: identity\r\n", b"")),
        case("gzip alone", post("Transfer-Encoding: gzip\r\n", b"hello")),
        case(
            "xchunked",
            post(
                "Transfer-Encoding: xchunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "a vertical tab before chunked",
            post(
                "Transfer-Encoding:\x0bchunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "a space before the colon of Transfer-Encoding",
            post(
                "Transfer-Encoding : chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        case(
            "chunked in HTTP/1.0",
            b"POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        case(
            "an invalid chunk size",
            post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a negative chunk size",
            post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a chunk size with 0x",
            post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a space after the chunk size",
            post(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "an overflowing chunk size",
            post(CHUNKED, b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a chunk size over the body limit",
            post(CHUNKED, b"7fffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "chunk data longer than its size",
            post(CHUNKED, b"3\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a bare LF after the chunk size",
            post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a bare LF after chunk data",
            post(CHUNKED, b"5\r\nhello\n0\r\n\r\n"),
        ),
        case(
            "a bare LF in a chunk extension",
            post(CHUNKED, b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
        ),
        case(
            "a bare CR after the chunk size",
            post(CHUNKED, b"5\rhello\r\n0\r\n\r\n"),
        ),
        case("no last chunk", post(CHUNKED, b"5\r\nhello\r\n")),
        case(
            "an obs-folded trailer",
            post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
        ),
        case(
            "a bare LF ending the trailers",
            post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: 1\n\n"),
        ),
    ]
}

fn connection_ends() -> Vec<Case> {
    vec![
        case(
            "a request after HTTP/1.0 without keep-alive",
            [b"GET /first HTTP/1.0\r\n\r\n".to_vec(), get("/second", "")].concat(),
        ),
        case(
            "a request after Connection: close",
            [get("/first", "Connection: close\r\n"), get("/second", "")].concat(),
        ),
        case(
            "a request after Connection: close, keep-alive",
            [
                get("/first", "Connection: close, keep-alive\r\n"),
                get("/second", ""),
            ]
            .concat(),
        ),
        in_parts(
            "a request written after Connection: close",
            &[&get("/first", "Connection: close\r\n"), &get("/second", "")],
        ),
        case(
            "a request after an upgrade v1 does not take",
            [
                get("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n"),
                get("/after-ws", ""),
            ]
            .concat(),
        ),
        case(
            "a request after a body cut by a refused head",
            [
                post("Content-Length: 1\r\nContent-Length: 2\r\n", b"ab"),
                get("/after", ""),
            ]
            .concat(),
        ),
    ]
}
