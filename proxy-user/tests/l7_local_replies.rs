//! `http-request deny` / `return`, a Host for HTTP/1.0 requests without
//! one, and early responses from the server while the client still
//! uploads.

#[path = "support/l7.rs"]
mod l7;

use std::time::{Duration, Instant};

use l7::{send_raw, start_proxy, Client, Origin};
use proxy_user::stats::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

#[tokio::test]
async fn deny_and_return_answer_without_forwarding() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    http-request deny if {{ path_beg /admin }}
    http-request deny deny_status 404 if {{ path /hidden }}
    http-request return status 200 content-type text/plain string \"pong\" if {{ path /ping }}
    http-request deny status 500 content-type application/json string \"{{\\\"e\\\":1}}\" if {{ path /boom }}
    default_backend b
backend b
    http-request return status 503 if {{ hdr(x-maint) -m found }}
    server s {}
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;

    c.send(b"GET /admin/x HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.text().contains("403 Forbidden"), "{}", r.text());
    // Keep-alive goes on after a local reply to a bodiless request.
    c.send(b"GET /hidden HTTP/1.1\r\nHost: w\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().status, 404);
    c.send(b"GET /ping HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    c.send(b"GET /boom HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (500, "{\"e\":1}"));
    c.send(b"GET / HTTP/1.1\r\nHost: w\r\nX-Maint: 1\r\n\r\n")
        .await;
    assert_eq!(c.response().await.unwrap().status, 503);
    // HEAD: the length of the body, no body.
    c.send(b"HEAD /ping HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response_to(proxy_user::http::Method::Head).await.unwrap();
    assert_eq!(r.header("content-length").as_deref(), Some("4"));
    // Anything else is forwarded.
    c.send(b"GET /ok HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-origin").as_deref(), Some("o"));

    let seen = o.received_text();
    assert!(!seen.contains("/admin") && !seen.contains("/ping") && !seen.contains("/boom"));
    assert!(seen.contains("GET /ok"), "{seen}");
    // Denied: the two frontend denies and the 500 one; returns are not denials.
    assert_eq!(proxy.frontend.counters.get(Counter::Denied), 3);
}

#[tokio::test]
async fn a_local_reply_to_a_request_with_a_body_closes_after_the_response() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    http-request deny if {{ method POST }}
    default_backend b
backend b
    server s {}
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(c.is_closed().await);
}

#[test]
fn deny_and_return_parse_errors_name_the_line() {
    let bad = [
        ("http-request deny deny_status 99", "invalid status '99'"),
        ("http-request return status 700", "invalid status '700'"),
        (
            "http-request return string hi",
            "'string' needs a 'content-type'",
        ),
        (
            "http-request deny content-type text/plain",
            "'content-type' without a 'string'",
        ),
        ("http-request return stauts 404", "unknown option 'stauts'"),
        ("http-request return status", "'status' needs a value"),
        (
            "http-request return status 204 content-type text/plain string x",
            "a 204 response cannot have a body",
        ),
        ("http-request dney", "unknown http-request action 'dney'"),
    ];
    for (line, want) in bad {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.cfg");
        let text = format!(
            "{DEFAULTS}frontend fe\n    bind 127.0.0.1:8080\n    {line}\n    default_backend b\nbackend b\n    server s 127.0.0.1:8081\n"
        );
        std::fs::write(&path, &text).unwrap();
        let errs = proxy_user::config::load(&path).unwrap_err();
        let err = errs
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        // The rule is on line 8 of the file.
        assert!(err.contains("w.cfg:8"), "{line}: {err}");
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[tokio::test]
async fn http10_request_without_host_gets_one() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    server s {}
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let out = send_raw(proxy.addr, b"GET /a HTTP/1.0\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    let seen = o.received_text();
    assert!(
        seen.contains(&format!("GET /a HTTP/1.1\r\nhost: {}\r\n", o.addr))
            || seen
                .to_ascii_lowercase()
                .contains(&format!("host: {}", o.addr)),
        "{seen}"
    );
    o.clear();
    // Absolute-form: the target's authority.
    send_raw(
        proxy.addr,
        b"GET http://example.org:8080/b HTTP/1.0\r\n\r\n",
    )
    .await;
    let seen = o.received_text().to_ascii_lowercase();
    assert!(seen.contains("host: example.org:8080\r\n"), "{seen}");
    o.clear();
    // A Host that was sent is kept as is.
    send_raw(proxy.addr, b"GET /c HTTP/1.0\r\nHost: mine\r\n\r\n").await;
    let seen = o.received_text().to_ascii_lowercase();
    assert_eq!(seen.matches("host:").count(), 1, "{seen}");
    assert!(seen.contains("host: mine\r\n"), "{seen}");
}

/// A server that answers `413` as soon as it has the request head, reads
/// nothing more, and keeps the connection open.
async fn impatient_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\n\r\ntoo big",
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn early_response_reaches_the_client_during_a_large_upload() {
    let (server, _task) = impatient_server().await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    server s {server}
"
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    // 64 MiB announced: far more than the socket buffers hold, so the
    // upload would stall if the proxy waited for its end.
    let total: usize = 64 * 1024 * 1024;
    c.write_all(
        format!("POST /up HTTP/1.1\r\nHost: w\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = c.into_split();
    let uploader = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let started = Instant::now();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("too big") {
        let n = tokio::time::timeout(Duration::from_secs(4), rd.read(&mut b))
            .await
            .expect("the early response arrives while the client uploads")
            .unwrap();
        assert!(
            n > 0,
            "closed before the response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The proxy then closes the connection (after lingering a little):
    // the uploader stops with an error, or ends, well before the 30 s the
    // server would keep its side open.
    let sent = tokio::time::timeout(Duration::from_secs(10), uploader)
        .await
        .expect("the client connection is closed")
        .unwrap();
    assert!(sent < total, "the whole upload went through ({sent} bytes)");
}

#[tokio::test]
async fn small_body_with_early_response_still_works_and_the_server_connection_is_not_reused() {
    let (server, _task) = impatient_server().await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    server s {server}
"
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\n")
        .await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (413, "too big"));
    let be = proxy.engine.backend("b").unwrap();
    assert_eq!(be.servers[0].pool.idle_count(), 0);
}
