//! End-to-end tests of the L7 proxy's timeouts (connect, tunnel,
//! client-fin/server-fin), interim responses, broken chunked bodies,
//! HTTP/1.0 keep-alive, the access log (JSON, `option logasap`) and the
//! counters, as seen by the engine and in the shm-stats-file.
//!
//! Already covered in `l7_proxy.rs` and not repeated here: `timeout server`
//! (504), `timeout http-request` (408), `timeout http-keep-alive` (silent
//! close), HTTP/1.0 without keep-alive closing after the response.

#[path = "support/l7.rs"]
mod l7;

use std::time::{Duration, Instant};

use l7::{capture_access_log, lines_with, send_raw, start_proxy, Client, Origin};
use proxy_user::http::{BodyDecoder, Framing, Limits, Side};
use proxy_user::stats::{read_snapshot, Counter, ObjectType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const DEFAULTS: &str =
    "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

const UPGRADE: &str =
    "HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";

// ---------------------------------------------------------------- helpers

/// Waits (at most 3 s) until `ready` holds; false if it never did.
async fn eventually(mut ready: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ready()
}

/// Reads from `s` until the bytes read contain `needle` (at most 3 s).
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !got.windows(needle.len()).any(|w| w == needle) {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut b))
            .await
            .unwrap_or_else(|_| panic!("{needle:?} within 3 s; got {got:?}"))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}; got {got:?}");
        got.extend_from_slice(&b[..n]);
    }
}

/// Upgrades a new client connection to a tunnel on `path`.
async fn upgraded(proxy: &l7::Proxy, path: &str) -> Client {
    let mut c = Client::connect(proxy.addr).await;
    c.send(format!("GET {path} {UPGRADE}").as_bytes()).await;
    let r = c.response().await.expect("a 101");
    assert_eq!(r.status, 101, "{}", r.head);
    c
}

/// Reads until EOF (at most `limit`): the bytes and how long it took.
async fn read_to_eof(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut out))
        .await
        .expect("EOF within the limit")
        .expect("a clean EOF");
    (out, start.elapsed())
}

// ---------------------------------------------------------------- timeouts

#[tokio::test]
async fn connect_timeout_is_503_with_termination_sc() {
    capture_access_log();
    // A listener that never accepts, with a backlog of 0: once its accept
    // queue is full the kernel drops further SYNs, so a connect hangs.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let addr = full.local_addr().unwrap();
    let mut queued = Vec::new();
    let mut hanging = false;
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(conn) => queued.push(conn.expect("a queued connection")),
            Err(_) => {
                hanging = true;
                break;
            }
        }
    }
    assert!(hanging, "the accept queue filled ({} queued)", queued.len());

    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    option httplog\n    default_backend b\nbackend b\n    timeout connect 300ms\n    retries 0\n    server s1 {addr}\n"
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    let started = Instant::now();
    let r = c.get("/connect-timeout-marker").await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "503 after timeout connect (300 ms), took {took:?}"
    );
    assert!(c.is_closed().await, "closed after the error");
    assert!(eventually(|| !lines_with("/connect-timeout-marker").is_empty()).await);
    let line = &lines_with("/connect-timeout-marker")[0];
    assert!(line.contains(" 503 ") && line.contains(" sC-- "), "{line}");
    assert!(line.contains(" fe b/s1 "), "{line}");
    let be = proxy.engine.backend("b").unwrap();
    // A connect timeout is a connection error (HAProxy's econ), not a timeout.
    assert_eq!(be.counters.get(Counter::ConnectErrors), 1);
    assert_eq!(be.servers[0].counters.get(Counter::ConnectErrors), 1);
    assert_eq!(be.counters.get(Counter::Timeouts), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::Responses5xx), 1);
    drop(queued);
}

#[tokio::test]
async fn timeout_tunnel_closes_an_idle_websocket() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    timeout tunnel 300ms\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = upgraded(&proxy, "/ws").await;
    // Traffic keeps the tunnel up past its timeout.
    let mut last_echo = Instant::now();
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        c.send(b"ping").await;
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), c.stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"ping");
        last_echo = Instant::now();
    }
    // Then idle: closed after the tunnel timeout.
    let (rest, _) = read_to_eof(&mut c.stream, Duration::from_secs(3)).await;
    let took = last_echo.elapsed();
    assert!(rest.is_empty());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2000),
        "closed {took:?} after the last echo (timeout tunnel 300ms)"
    );
}

#[tokio::test]
async fn server_fin_bounds_a_tunnel_the_client_half_closed() {
    // The client sends its FIN; the proxy passes it on, and from then on
    // the server side may idle `timeout server-fin` (HAProxy), not
    // `timeout tunnel`.
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    timeout client-fin 10s\n    default_backend b\nbackend b\n    timeout tunnel 10s\n    timeout server-fin 300ms\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = upgraded(&proxy, "/ws-linger").await;
    c.send(b"hi").await;
    let mut back = Vec::new();
    read_until(&mut c.stream, &mut back, b"hi").await;
    c.stream.shutdown().await.unwrap();
    // The other direction still works (the origin's `bye`, 100 ms after
    // our FIN), then the proxy ends the tunnel server-fin after it.
    let (rest, took) = read_to_eof(&mut c.stream, Duration::from_secs(5)).await;
    assert_eq!(rest, b"bye");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(2500),
        "closed {took:?} after the client's FIN (bye at 100 ms + server-fin 300 ms)"
    );
}

#[tokio::test]
async fn client_fin_bounds_a_tunnel_the_server_half_closed() {
    // The server sends its FIN at once; the proxy passes it on, and from
    // then on the client side may idle `timeout client-fin` (HAProxy).
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    timeout client-fin 500ms\n    default_backend b\nbackend b\n    timeout tunnel 10s\n    timeout server-fin 10s\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = upgraded(&proxy, "/ws-fin").await;
    let (rest, _) = read_to_eof(&mut c.stream, Duration::from_secs(3)).await;
    assert!(rest.is_empty(), "the server's FIN passed on");
    // The client's direction is still open...
    c.send(b"early").await;
    assert!(
        eventually(|| o.received_text().contains("early")).await,
        "bytes after the server's FIN still reach it"
    );
    // ...until the client idles for client-fin: then the proxy closes, and
    // what the client sends later is refused (a reset), never forwarded.
    // (Reads cannot tell: the FIN was read already.)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = c.stream.write_all(b"late").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = c.stream.write_all(b"x").await;
    assert!(
        matches!(&after, Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)),
        "the proxy's socket is gone: {after:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!o.received_text().contains("late"), "{}", o.received_text());
}

// ------------------------------------------------------ messages and framing

#[tokio::test]
async fn early_hints_reach_the_client_before_the_final_response() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /interim/1000 HTTP/1.1\r\nHost: w\r\n\r\n")
        .await;
    let started = Instant::now();
    let mut got = Vec::new();
    read_until(&mut c.stream, &mut got, b"\r\n\r\n").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 103 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("link: </style.css>"),
        "{text}"
    );
    assert!(!text.contains("HTTP/1.1 200"), "103 alone first: {text}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "before the 200 was sent"
    );
    read_until(&mut c.stream, &mut got, b"after hints").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let final_at = text.find("HTTP/1.1 200 ").expect("the final response");
    assert!(final_at > text.find("HTTP/1.1 103 ").unwrap(), "{text}");
}

#[tokio::test]
async fn bad_chunk_size_in_a_request_is_400_and_stops_the_upload() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    assert!(
        eventually(|| o.received_text().ends_with("5\r\nhello\r\n")).await,
        "the valid chunk is forwarded: {}",
        o.received_text()
    );
    s.write_all(b"zz\r\nbeyond\r\n0\r\n\r\n").await.unwrap();
    let (out, _) = read_to_eof(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = o.received_text();
    assert!(
        seen.ends_with("5\r\nhello\r\n") && !seen.contains("zz") && !seen.contains("beyond"),
        "nothing past the valid part reached the origin: {seen:?}"
    );
    assert_eq!(proxy.frontend.counters.get(Counter::RequestErrors), 1);
    assert_eq!(proxy.frontend.counters.get(Counter::Responses4xx), 1);
}

#[tokio::test]
async fn bad_chunk_size_in_a_response_cuts_the_client_off_and_counts() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /badchunk HTTP/1.1\r\nHost: w\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = read_to_eof(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    let body_at = text.find("\r\n\r\n").expect("a whole head") + 4;
    assert!(!text.contains("broken"), "{text}");
    // The chunked body as the client got it: valid so far, never complete.
    let limits = Limits::default();
    let mut dec = BodyDecoder::new(Framing::Chunked, Side::Server, &limits);
    let step = dec.decode(&out[body_at..]).expect("valid up to the cut");
    assert!(!step.done, "no last chunk: {text:?}");
    assert_eq!(&out[body_at..][step.data.clone()], b"hello");
    assert!(dec.finish().is_err(), "the close is a truncation");
    let be = proxy.engine.backend("b").unwrap();
    assert!(
        eventually(|| be.counters.get(Counter::ResponseErrors) == 1).await,
        "counted as a response error"
    );
    assert_eq!(be.servers[0].counters.get(Counter::ResponseErrors), 1);
}

#[tokio::test]
async fn a_response_broken_before_anything_was_forwarded_is_a_502() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /badchunk-now HTTP/1.1\r\nHost: w\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = read_to_eof(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    // HAProxy's answer: the server's 200 head never went out, a 502 did.
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(
        !text.contains("200 OK") && !text.contains("broken"),
        "{text}"
    );
    let be = proxy.engine.backend("b").unwrap();
    assert!(
        eventually(|| be.counters.get(Counter::ResponseErrors) == 1).await,
        "counted as a response error"
    );
    // One response per request: the 502, not the 200 as well.
    assert_eq!(be.counters.get(Counter::Responses5xx), 1);
    assert_eq!(be.counters.get(Counter::Responses2xx), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::Responses2xx), 0);
}

#[tokio::test]
async fn http10_keep_alive_serves_two_requests_and_plain_http10_closes() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    for path in ["/one", "/two"] {
        c.send(
            format!("GET {path} HTTP/1.0\r\nHost: w\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        )
        .await;
        let r = c
            .response()
            .await
            .expect("a response on the same connection");
        assert_eq!(r.text(), format!("hello from o GET {path}"));
        assert!(
            r.head.starts_with("HTTP/1.1 200 ") || r.head.starts_with("HTTP/1.0 200 "),
            "{}",
            r.head
        );
        // HTTP/1.0 keep-alive must be confirmed, with a length.
        assert_eq!(
            r.header("connection")
                .map(|v| v.to_ascii_lowercase())
                .as_deref(),
            Some("keep-alive"),
            "{}",
            r.head
        );
        assert!(r.header("content-length").is_some(), "{}", r.head);
    }
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /three HTTP/1.0\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.expect("a response");
    assert_eq!(r.text(), "hello from o GET /three");
    assert_ne!(
        r.header("connection")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("keep-alive")
    );
    assert!(c.is_closed().await, "HTTP/1.0 without keep-alive closes");
    assert_eq!(proxy.frontend.counters.get(Counter::Requests), 3);
}

// ------------------------------------------------------------- access log

#[tokio::test]
async fn json_access_log_is_one_valid_object_per_request() {
    capture_access_log();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    log-format json\n    default_backend b\nbackend b\n    server s1 {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    let a = c.get("/json-log-a?x=\"q\"").await;
    let b = c.get("/status/404?json-log-b").await;
    assert_eq!((a.status, b.status), (200, 404));
    for (marker, r, status) in [("/json-log-a", &a, 200), ("json-log-b", &b, 404)] {
        assert!(eventually(|| !lines_with(marker).is_empty()).await);
        let lines = lines_with(marker);
        assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
        let obj = json::parse_object(&lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]));
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "backend",
                "be_conn",
                "be_queue",
                "bytes",
                "client",
                "date",
                "fe_conn",
                "frontend",
                "method",
                "retries",
                "server",
                "srv_conn",
                "srv_queue",
                "status",
                "ta",
                "tc",
                "termination",
                "tq",
                "tr",
                "tw",
                "uri",
                "version"
            ],
            "{}",
            lines[0]
        );
        let s = |k: &str| obj[k].as_str().unwrap_or_else(|| panic!("{k} is a string"));
        let n = |k: &str| obj[k].as_num().unwrap_or_else(|| panic!("{k} is a number"));
        assert_eq!(
            (s("frontend"), s("backend"), s("server")),
            ("fe", "b", "s1")
        );
        assert_eq!((s("method"), s("version")), ("GET", "HTTP/1.1"));
        assert!(s("uri").contains(marker), "{}", s("uri"));
        assert_eq!(s("termination"), "--");
        assert!(s("client").starts_with("127.0.0.1:"));
        assert_eq!(n("status"), status as f64);
        assert_eq!(
            n("bytes"),
            (r.head.len() + r.raw_body.len()) as f64,
            "bytes sent to the client"
        );
        for t in ["tq", "tw", "tc", "tr", "ta"] {
            assert!(n(t) >= 0.0, "{t} reached: {}", lines[0]);
        }
        assert_eq!(n("retries"), 0.0);
    }
    // The quote in the target was escaped, and parsed back.
    let a_line = &lines_with("/json-log-a")[0];
    assert_eq!(
        json::parse_object(a_line).unwrap()["uri"].as_str(),
        Some("/json-log-a?x=\"q\"")
    );
}

#[tokio::test]
async fn logasap_logs_a_streamed_response_before_it_ends() {
    capture_access_log();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    option httplog\n    option logasap\n    default_backend b\nbackend b\n    server s1 {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /drip/1000?logasap-marker HTTP/1.1\r\nHost: w\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"first").await;
    // The body is not complete (`last!` comes 1 s later), yet the line is there.
    assert!(eventually(|| !lines_with("logasap-marker").is_empty()).await);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "logged before the end of the body"
    );
    let line = lines_with("logasap-marker")[0].clone();
    let fields: Vec<&str> = line.split(' ').collect();
    // client [date] fe be/srv Tq/Tw/Tc/Tr/Ta status bytes ...
    let ta = fields[4].rsplit('/').next().unwrap();
    assert!(ta.starts_with('+'), "Ta so far, with '+': {line}");
    assert!(ta[1..].parse::<u64>().unwrap() < 1000, "{line}");
    assert_eq!(fields[5], "200", "{line}");
    let head_len = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        fields[6],
        format!("+{head_len}"),
        "bytes so far (the head): {line}"
    );
    read_until(&mut s, &mut got, b"last!").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lines_with("logasap-marker").len(), 1, "logged once");

    // Without logasap the line waits for the end, with the full counts.
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    option httplog\n    default_backend b\nbackend b\n    server s1 {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /drip/400?at-end-marker HTTP/1.1\r\nHost: w\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"first").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lines_with("at-end-marker").is_empty(), "not before the end");
    read_until(&mut s, &mut got, b"last!").await;
    assert!(eventually(|| !lines_with("at-end-marker").is_empty()).await);
    let line = lines_with("at-end-marker")[0].clone();
    assert_eq!(
        line.split(' ').nth(6),
        Some(got.len().to_string().as_str()),
        "{line}"
    );
}

// ---------------------------------------------------------------- counters

/// Removes the file when dropped (also when a test fails).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn l7_counters_are_exact_and_the_same_in_the_shm_stats_file() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = std::env::temp_dir().join(format!(
        "weir-l7-counters-{}-{nanos}.stats",
        std::process::id()
    ));
    let _cleanup = RemoveOnDrop(path.clone());
    let o = Origin::start("o").await;
    let cfg = format!(
        "global\n    shm-stats-file {}\n{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    guid t-fe\n    default_backend b\nbackend b\n    guid t-be\n    server s1 {} guid t-s1\n",
        path.display(),
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    assert!(proxy.frontend.counters.is_shared(), "counted in the file");

    // Two 2xx and a 404 from the origin on one connection, a 400 on another.
    let mut c = Client::connect(proxy.addr).await;
    let (mut fwd_in, mut fwd_out) = (0u64, 0u64);
    for (path, status) in [("/a", 200), ("/bb", 200), ("/status/404", 404)] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: w\r\n\r\n");
        c.send(req.as_bytes()).await;
        let r = c.response().await.unwrap();
        assert_eq!(r.status, status);
        fwd_in += req.len() as u64;
        fwd_out += (r.head.len() + r.raw_body.len()) as u64;
    }
    let bad = b"GET / HTTP/1.1\r\n\r\n"; // no Host
    let bad_reply = send_raw(proxy.addr, bad).await;
    assert!(bad_reply.starts_with(b"HTTP/1.1 400 "));
    let total_in = fwd_in + bad.len() as u64;
    let total_out = fwd_out + bad_reply.len() as u64;

    let fe_want: Vec<(Counter, u64)> = vec![
        (Counter::Sessions, 2),
        (Counter::Requests, 4),
        (Counter::Responses2xx, 2),
        (Counter::Responses4xx, 2),
        (Counter::Responses5xx, 0),
        (Counter::RequestErrors, 1),
        (Counter::BytesIn, total_in),
        (Counter::BytesOut, total_out),
    ];
    let be_want: Vec<(Counter, u64)> = vec![
        (Counter::Requests, 3),
        (Counter::Responses2xx, 2),
        (Counter::Responses4xx, 1),
        (Counter::Responses5xx, 0),
        (Counter::RequestErrors, 0),
        (Counter::ResponseErrors, 0),
        (Counter::BytesIn, fwd_in),
        (Counter::BytesOut, fwd_out),
    ];
    let now = |counters: &proxy_user::stats::EntityCounters, want: &[(Counter, u64)]| {
        want.iter()
            .map(|&(k, _)| (k, counters.get(k)))
            .collect::<Vec<_>>()
    };
    // Bytes are counted once the exchange is over, just after the client
    // has its response: wait for the last of them.
    eventually(|| now(&proxy.frontend.counters, &fe_want) == fe_want).await;
    assert_eq!(now(&proxy.frontend.counters, &fe_want), fe_want, "frontend");
    assert_eq!(now(&be.counters, &be_want), be_want, "backend");
    assert_eq!(now(&be.servers[0].counters, &be_want), be_want, "server");

    let snap = read_snapshot(&path).expect("the shm-stats-file reads");
    for (guid, ty, want) in [
        ("t-fe", ObjectType::Frontend, &fe_want),
        ("t-be", ObjectType::Backend, &be_want),
        ("t-s1", ObjectType::Server, &be_want),
    ] {
        let obj = snap
            .find(guid, ty)
            .unwrap_or_else(|| panic!("{guid} in the file"));
        let got: Vec<(Counter, u64)> = want.iter().map(|&(k, _)| (k, obj.get(k))).collect();
        assert_eq!(&got, want, "{guid} in the shm-stats-file");
    }
}

/// A small JSON reader for the access-log test (no JSON crate among the
/// dev-dependencies): objects, arrays, strings with escapes, numbers,
/// booleans and null; anything else, or trailing bytes, is an error.
mod json {
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Array(Vec<Value>),
        Object(BTreeMap<String, Value>),
    }

    impl Value {
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_num(&self) -> Option<f64> {
            match self {
                Value::Num(n) => Some(*n),
                _ => None,
            }
        }
    }

    /// Parses `text` as exactly one JSON object.
    pub fn parse_object(text: &str) -> Result<BTreeMap<String, Value>, String> {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        match v {
            Value::Object(o) => Ok(o),
            other => Err(format!("not an object: {other:?}")),
        }
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && b" \t\r\n".contains(&self.b[self.i]) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected '{}' at {}", c as char, self.i))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.b.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut o = BTreeMap::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(o));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        let v = self.value()?;
                        if o.insert(k.clone(), v).is_some() {
                            return Err(format!("duplicate key {k}"));
                        }
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(o));
                            }
                            _ => return Err(format!("expected ',' or '}}' at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut a = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(a));
                    }
                    loop {
                        a.push(self.value()?);
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(a));
                            }
                            _ => return Err(format!("expected ',' or ']' at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => self.string().map(Value::Str),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
                _ => Err(format!("unexpected byte at {}", self.i)),
            }
        }

        fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
            if self.b[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            if self.b[self.i] == b'-' {
                self.i += 1;
            }
            let digits = |p: &mut Self| {
                let s = p.i;
                while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                    p.i += 1;
                }
                p.i > s
            };
            if !digits(self) {
                return Err(format!("bad number at {start}"));
            }
            if self.b.get(self.i) == Some(&b'.') {
                self.i += 1;
                if !digits(self) {
                    return Err(format!("bad fraction at {start}"));
                }
            }
            if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if !digits(self) {
                    return Err(format!("bad exponent at {start}"));
                }
            }
            let text = std::str::from_utf8(&self.b[start..self.i]).unwrap();
            text.parse()
                .map(Value::Num)
                .map_err(|e| format!("{e} at {start}"))
        }

        fn string(&mut self) -> Result<String, String> {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(format!("expected a string at {}", self.i));
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let Some(&c) = self.b.get(self.i) else {
                    return Err("unterminated string".into());
                };
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let Some(&e) = self.b.get(self.i) else {
                            return Err("unterminated escape".into());
                        };
                        self.i += 1;
                        match e {
                            b'"' | b'\\' | b'/' => out.push(e),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'n' => out.push(b'\n'),
                            b'r' => out.push(b'\r'),
                            b't' => out.push(b'\t'),
                            b'u' => {
                                let hex = self
                                    .b
                                    .get(self.i..self.i + 4)
                                    .and_then(|h| std::str::from_utf8(h).ok())
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                    .ok_or_else(|| format!("bad \\u at {}", self.i))?;
                                self.i += 4;
                                let ch = char::from_u32(hex)
                                    .ok_or_else(|| format!("bad code point at {}", self.i))?;
                                let mut tmp = [0u8; 4];
                                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                            }
                            _ => return Err(format!("bad escape at {}", self.i)),
                        }
                    }
                    c if c < 0x20 => return Err(format!("control byte in string at {}", self.i)),
                    c => out.push(c),
                }
            }
        }
    }
}
