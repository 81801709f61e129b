//! Request handling rules through the running proxy: bodies on GET/HEAD
//! (forwarded by default, refused with `option http-reject-get-body`), the
//! configurable codec limits (414, 431, 413), absolute-form targets whose
//! authority is not the Host, header rules (add-header; the ones that would
//! break framing are refused), and
//! `option forwardfor` with `header`, `except` and `if-none`. The recording
//! origin shows what did, or did not, reach a server.

#[path = "support/l7.rs"]
mod l7;

use l7::{send_raw, start_proxy, Client, Origin};

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

fn status_of(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn get_and_head_bodies_are_forwarded_with_their_framing() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;

    // An Elasticsearch-style search: GET with a Content-Length body.
    c.send(b"GET /echo HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"q\":\"match\"}")
        .await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "{\"q\":\"match\"}"));
    let seen = o.received_text();
    assert!(seen.starts_with("GET /echo HTTP/1.1\r\n"), "{seen}");
    assert_eq!(seen.matches("content-length: 13\r\n").count(), 1, "{seen}");
    assert!(seen.ends_with("\r\n\r\n{\"q\":\"match\"}"), "{seen}");
    o.clear();

    // Chunked GET body: forwarded chunked, and keep-alive goes on after it.
    c.send(
        b"GET /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    let seen = o.received_text();
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(!seen.contains("content-length"), "{seen}");
    assert!(seen.ends_with("3\r\nabc\r\n0\r\n\r\n"), "{seen}");
    o.clear();

    // DELETE with a body, then a plain GET on the same connection.
    c.send(b"DELETE /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\n\r\nid")
        .await;
    assert_eq!(c.response().await.unwrap().text(), "id");
    let r = c.get("/after").await;
    assert_eq!(r.text(), "hello from o GET /after");

    // TRACE and CONNECT never carry a body.
    o.clear();
    let answer = send_raw(
        proxy.addr,
        b"TRACE / HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 400 Bad Request");
    let answer = send_raw(
        proxy.addr,
        b"CONNECT w:443 HTTP/1.1\r\nHost: w:443\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 400 Bad Request");
    assert_eq!(o.received(), b"", "nothing reached the origin");
}

#[tokio::test]
async fn reject_get_body_option_keeps_the_strict_behaviour() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}    option http-reject-get-body\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    for request in [
        &b"GET /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\nabc"[..],
        b"HEAD /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ] {
        let answer = send_raw(proxy.addr, request).await;
        assert_eq!(status_of(&answer), "HTTP/1.1 400 Bad Request");
    }
    assert_eq!(o.received(), b"", "nothing reached the origin");
    // Bodies on other methods, and GET without one, still pass.
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    assert_eq!(c.response().await.unwrap().text(), "abc");
    c.send(b"GET /x HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(c.response().await.unwrap().status, 200);
}

/// A proxy with small limits: heads up to 4096 - 1024 bytes, 10 fields,
/// request lines up to 256 bytes, bodies up to 100 bytes.
async fn limited_proxy(o: &Origin) -> l7::Proxy {
    let cfg = format!(
        "global\n    tune.bufsize 4096\n    tune.http.maxhdr 10\n{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    http-max-request-line 256\n    http-max-body-size 100\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    start_proxy(&cfg).await
}

#[tokio::test]
async fn configured_limits_answer_414_431_and_413_without_reaching_the_origin() {
    let o = Origin::start("o").await;
    let proxy = limited_proxy(&o).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: w\r\n\r\n", "a".repeat(300));
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: w\r\n{}\r\n",
        (0..10).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
    );
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: w\r\nX-Big: {}\r\n\r\n",
        "b".repeat(3100)
    );
    let long_body = format!(
        "POST /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 101\r\n\r\n{}",
        "c".repeat(101)
    );
    // 60 + 41 bytes of chunk data: over the limit only once summed.
    let long_chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n{}\r\n29\r\n{}\r\n0\r\n\r\n",
        "d".repeat(60),
        "e".repeat(41)
    );
    for (request, status) in [
        (long_uri, "HTTP/1.1 414 URI Too Long"),
        (many_fields, "HTTP/1.1 431 Request Header Fields Too Large"),
        (big_field, "HTTP/1.1 431 Request Header Fields Too Large"),
        (long_body, "HTTP/1.1 413 Content Too Large"),
        (long_chunked, "HTTP/1.1 413 Content Too Large"),
    ] {
        let answer = send_raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(status_of(&answer), status, "{}", &request[..40]);
        assert_eq!(
            o.received_text(),
            "",
            "{} reached the origin",
            &request[..40]
        );
    }
    assert_eq!(o.accepted(), 0, "no server connection was even opened");

    // Right at the limits everything passes.
    let mut c = Client::connect(proxy.addr).await;
    let uri = format!("/{}", "a".repeat(256 - "GET / HTTP/1.1".len()));
    let r = c.get(&uri).await;
    assert_eq!(r.status, 200);
    let fields: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    c.send(format!("GET / HTTP/1.1\r\nHost: w\r\n{fields}\r\n").as_bytes())
        .await;
    assert_eq!(c.response().await.unwrap().status, 200);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n{}\r\n28\r\n{}\r\n0\r\n\r\n",
            "d".repeat(60),
            "e".repeat(40)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.response().await.unwrap().body.len(), 100);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\n{}",
            "c".repeat(100)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.response().await.unwrap().body.len(), 100);
}

#[tokio::test]
async fn a_chunked_body_growing_over_the_limit_never_completes_at_the_origin() {
    let o = Origin::start("o").await;
    let proxy = limited_proxy(&o).await;
    let mut c = Client::connect(proxy.addr).await;
    // The first chunk fits and is forwarded; the second one crosses the limit.
    c.send(b"POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n")
        .await;
    c.send(&[b'f'; 50]).await;
    c.send(b"\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.send(b"33\r\n").await;
    c.send(&[b'Z'; 51]).await;
    c.send(b"\r\n0\r\n\r\n").await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 413);
    assert!(c.is_closed().await);
    let seen = o.received_text();
    assert!(
        !seen.contains("0\r\n\r\n"),
        "the origin got a complete body: {seen:?}"
    );
    assert!(
        !seen.contains('Z'),
        "the chunk over the limit was forwarded: {seen:?}"
    );
}

#[tokio::test]
async fn absolute_form_authority_must_match_host() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let answer = send_raw(
        proxy.addr,
        b"GET http://victim.example/admin HTTP/1.1\r\nHost: public.example\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), "HTTP/1.1 400 Bad Request");
    assert_eq!(o.received(), b"", "nothing reached the origin");

    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET http://Site.Example/p HTTP/1.1\r\nHost: site.example\r\n\r\n")
        .await;
    assert_eq!(c.response().await.unwrap().status, 200);
    let seen = o.received_text();
    assert!(
        seen.starts_with("GET http://Site.Example/p HTTP/1.1\r\nHost: site.example\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn header_rules_on_framing_fields_are_refused_at_load() {
    let cfg = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    http-request del-header Transfer-Encoding\n    http-request set-header X-A \"v\\r\\nContent-Length: 0\"\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    );
    let e = proxy_user::config::parse_str(&cfg, "l7-test.cfg").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("l7-test.cfg:8") && text.contains("cannot change 'Transfer-Encoding'"),
        "{text}"
    );
    assert!(
        text.contains("l7-test.cfg:9") && text.contains("control character '\\r'"),
        "{text}"
    );
}

#[tokio::test]
async fn add_header_keeps_received_fields_and_set_header_replaces_them() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}frontend fe
    bind 127.0.0.1:1
    http-request add-header X-Tag edge
    http-request set-header X-Env prod
    default_backend b
backend b
    http-request add-header X-Tag backend
    server s {}
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: w\r\nX-Tag: client\r\nX-Env: dev\r\n\r\n")
        .await;
    assert_eq!(c.response().await.unwrap().status, 200);
    let seen = o.received_text();
    assert!(
        seen.ends_with("X-Tag: client\r\nX-Env: prod\r\nX-Tag: edge\r\nX-Tag: backend\r\n\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("dev"), "{seen}");
}

#[tokio::test]
async fn forwardfor_header_except_and_if_none() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}frontend fe
    bind 127.0.0.1:1
    use_backend custom if {{ path_beg /custom }}
    use_backend trusted if {{ path_beg /trusted }}
    use_backend ifnone if {{ path_beg /ifnone }}
    default_backend plain
backend plain
    option forwardfor
    server s {a}
backend custom
    option forwardfor header X-Client-IP
    server s {a}
backend trusted
    option forwardfor except 127.0.0.0/8
    server s {a}
backend ifnone
    option forwardfor if-none
    server s {a}
",
        a = o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    let mut exchange = async |request: &str| -> String {
        o.clear();
        c.send(request.as_bytes()).await;
        assert_eq!(c.response().await.unwrap().status, 200);
        o.received_text().to_ascii_lowercase()
    };

    // Plain: the client's address appended, the scheme of this hop.
    let seen = exchange("GET /p HTTP/1.1\r\nHost: w\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n\r\n").await;
    assert!(
        seen.contains("x-forwarded-for: 192.0.2.1, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains("x-forwarded-proto: http\r\n") && !seen.contains("https"),
        "{seen}"
    );

    // header X-Client-IP: that field gets the address, X-Forwarded-For is left alone.
    let seen =
        exchange("GET /custom HTTP/1.1\r\nHost: w\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n").await;
    assert!(seen.contains("x-client-ip: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 192.0.2.1\r\n"), "{seen}");
    assert_eq!(seen.matches("127.0.0.1").count(), 1, "{seen}");

    // except 127.0.0.0/8: a trusted client gets nothing added or replaced.
    let seen = exchange("GET /trusted HTTP/1.1\r\nHost: w\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n\r\n").await;
    assert!(seen.contains("x-forwarded-for: 192.0.2.1\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(!seen.contains("127.0.0.1"), "{seen}");

    // if-none: a received X-Forwarded-For is kept as it is...
    let seen =
        exchange("GET /ifnone HTTP/1.1\r\nHost: w\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n").await;
    assert!(seen.contains("x-forwarded-for: 192.0.2.1\r\n"), "{seen}");
    assert!(!seen.contains("127.0.0.1"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    // ...and added when there is none.
    let seen = exchange("GET /ifnone HTTP/1.1\r\nHost: w\r\n\r\n").await;
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
}
