//! End-to-end tests of the L7 proxy engine over real loopback sockets:
//! raw-socket clients -> the engine -> recording origins.

#[path = "support/l7.rs"]
mod l7;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use l7::{capture_access_log, dead_addr, lines_with, send_raw, start_proxy, Client, Origin};
use proxy_user::http::Method;
use proxy_user::stats::Counter;
use tokio::io::AsyncReadExt;

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

fn count_by_origin(responses: &[l7::Response]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in responses {
        *m.entry(r.header("x-origin").unwrap_or_default())
            .or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn routes_by_host_path_header_and_method_with_not_and_or() {
    let names = [
        "api", "static", "exact", "beta", "tenant", "writes", "notget", "fallback",
    ];
    let mut origins = Vec::new();
    for n in names {
        origins.push(Origin::start(n).await);
    }
    let backends: String = names
        .iter()
        .zip(&origins)
        .map(|(n, o)| format!("backend {n}\n    server s {}\n", o.addr))
        .collect();
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    acl is_api hdr(host) -i api.example.com
    use_backend api if is_api
    use_backend static if {{ path_beg /static/ }}
    use_backend exact if {{ path /exact }}
    use_backend beta if {{ hdr(x-beta) -m found }}
    use_backend tenant if {{ hdr(x-tenant) acme }} or {{ hdr(x-tenant) globex }}
    use_backend writes if {{ method POST PUT }}
    acl is_get method GET
    use_backend notget if {{ path_beg /m/ }} !is_get
    default_backend fallback
{backends}"
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    let mut ask = async |req: &str| {
        c.send(req.as_bytes()).await;
        c.response().await.unwrap().header("x-origin").unwrap()
    };
    assert_eq!(
        ask("GET / HTTP/1.1\r\nHost: API.example.com\r\n\r\n").await,
        "api"
    );
    assert_eq!(
        ask("GET /static/a.css HTTP/1.1\r\nHost: w\r\n\r\n").await,
        "static"
    );
    assert_eq!(
        ask("GET /exact?q=1 HTTP/1.1\r\nHost: w\r\n\r\n").await,
        "exact"
    );
    assert_eq!(
        ask("GET /exact/more HTTP/1.1\r\nHost: w\r\n\r\n").await,
        "fallback"
    );
    assert_eq!(
        ask("GET / HTTP/1.1\r\nHost: w\r\nX-Beta: \r\n\r\n").await,
        "beta"
    );
    assert_eq!(
        ask("GET / HTTP/1.1\r\nHost: w\r\nX-Tenant: globex\r\n\r\n").await,
        "tenant"
    );
    assert_eq!(
        ask("GET / HTTP/1.1\r\nHost: w\r\nX-Tenant: other\r\n\r\n").await,
        "fallback"
    );
    assert_eq!(
        ask("PUT / HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n").await,
        "writes"
    );
    assert_eq!(
        ask("DELETE /m/x HTTP/1.1\r\nHost: w\r\n\r\n").await,
        "notget"
    );
    assert_eq!(
        ask("GET /m/x HTTP/1.1\r\nHost: w\r\n\r\n").await,
        "fallback"
    );
}

#[tokio::test]
async fn no_matching_rule_and_no_default_backend_is_503() {
    let o = Origin::start("only").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    use_backend b if {{ path_beg /b/ }}
backend b
    server s {}
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let out = send_raw(proxy.addr, b"GET /other HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("No server is available"), "{text}");
    assert_eq!(o.accepted(), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::Responses5xx), 1);
}

#[tokio::test]
async fn weighted_roundrobin_follows_weights_and_hashes_stick() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    use_backend by_uri if {{ path_beg /u/ }}
    use_backend by_hdr if {{ path_beg /h/ }}
    use_backend by_src if {{ path_beg /s/ }}
    use_backend least if {{ path_beg /l/ }}
    use_backend rnd if {{ path_beg /r/ }}
    default_backend rr
backend rr
    balance roundrobin
    server a {a} weight 1
    server b {b} weight 3
backend by_uri
    balance uri
    hash-type consistent
    server a {a}
    server b {b}
backend by_hdr
    balance hdr(x-user)
    server a {a}
    server b {b}
backend by_src
    balance source
    server a {a}
    server b {b}
backend least
    balance leastconn
    server a {a}
    server b {b}
backend rnd
    balance random
    server a {a}
    server b {b}
",
        a = a.addr,
        b = b.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    let mut rs = Vec::new();
    for _ in 0..40 {
        rs.push(c.get("/").await);
    }
    let counts = count_by_origin(&rs);
    assert_eq!((counts["a"], counts["b"]), (10, 30), "{counts:?}");

    for prefix in ["/u/", "/s/"] {
        let mut seen = HashMap::new();
        for i in 0..20 {
            let r = c.get(&format!("{prefix}{}", i % 4)).await;
            seen.entry(i % 4)
                .or_insert_with(Vec::new)
                .push(r.header("x-origin").unwrap());
        }
        for v in seen.values() {
            assert!(v.iter().all(|x| x == &v[0]), "{prefix}: {seen:?}");
        }
    }
    let mut per_user: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..20 {
        let user = format!("user{}", i % 5);
        c.send(format!("GET /h/x HTTP/1.1\r\nHost: w\r\nX-User: {user}\r\n\r\n").as_bytes())
            .await;
        let r = c.response().await.unwrap();
        per_user
            .entry(user)
            .or_default()
            .push(r.header("x-origin").unwrap());
    }
    for v in per_user.values() {
        assert!(v.iter().all(|x| x == &v[0]), "{per_user:?}");
    }
    for prefix in ["/l/", "/r/"] {
        let rs: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..30 {
                v.push(c.get(prefix).await);
            }
            v
        };
        let counts = count_by_origin(&rs);
        assert_eq!(counts.values().sum::<usize>(), 30);
        assert!(
            counts.len() == 2,
            "{prefix} should use both servers: {counts:?}"
        );
    }
}

#[tokio::test]
async fn keep_alive_reuses_client_and_pooled_server_connections() {
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    for i in 0..20 {
        let r = c.get(&format!("/{i}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("hello from o GET /{i}"));
    }
    assert_eq!(
        o.accepted(),
        1,
        "one upstream connection for 20 keep-alive requests"
    );
    // New client connections, one request each, closing: the pooled upstream connection is reused.
    for i in 0..5 {
        let out = send_raw(
            proxy.addr,
            format!("GET /c{i} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with(&format!("hello from o GET /c{i}")), "{text}");
    }
    assert_eq!(o.accepted(), 1, "the pool served every later request");
    let be = proxy.engine.backend("b").unwrap();
    assert!(
        be.servers[0].pool.reuses() >= 24,
        "{}",
        be.servers[0].pool.reuses()
    );
    assert_eq!(proxy.frontend.counters.get(Counter::Requests), 25);
    assert_eq!(proxy.frontend.counters.get(Counter::Sessions), 6);
}

#[tokio::test]
async fn slow_client_gets_408_after_http_request_timeout() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    timeout http-request 300ms\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let started = Instant::now();
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: w\r\n").await; // head never completes
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(o.accepted(), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::Timeouts), 1);
}

#[tokio::test]
async fn keep_alive_idle_connection_is_closed_silently() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    timeout http-keep-alive 200ms\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    assert_eq!(c.get("/").await.status, 200);
    assert!(
        c.is_closed().await,
        "closed without a 408 after the keep-alive timeout"
    );
}

#[tokio::test]
async fn server_timeout_is_504_and_broken_framing_is_502() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 300ms\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let out = send_raw(proxy.addr, b"GET /slow/3000 HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 504 Gateway Time-out\r\n"),
        "{text}"
    );
    let out = send_raw(proxy.addr, b"GET /broken HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    let be = proxy.engine.backend("b").unwrap();
    // Both are response errors (HAProxy's eresp), on server and backend.
    assert_eq!(be.counters.get(Counter::ResponseErrors), 2);
    assert_eq!(be.servers[0].counters.get(Counter::ResponseErrors), 2);
    assert_eq!(be.counters.get(Counter::Timeouts), 0);
}

#[tokio::test]
async fn retries_go_to_the_same_server_and_redispatch_moves_the_last_one() {
    let live = Origin::start("live").await;
    let dead = dead_addr().await;
    // HAProxy's rules: a retry goes to the same server after a pause of
    // min(timeout connect, 1 s); with `option redispatch` the last retry
    // goes to another server.
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    use_backend nodispatch if {{ path_beg /n/ }}
    default_backend b
backend b
    timeout connect 200ms
    retries 2
    option redispatch
    server dead {dead}
    server live {}
backend nodispatch
    timeout connect 200ms
    retries 2
    server dead {dead}
",
        live.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    for _ in 0..4 {
        let r = c.get("/").await;
        assert_eq!(
            (r.status, r.header("x-origin").as_deref()),
            (200, Some("live"))
        );
    }
    let be = proxy.engine.backend("b").unwrap();
    let redispatches = be.counters.get(Counter::Redispatches);
    assert!(
        redispatches >= 1,
        "round robin starts some requests on dead"
    );
    // Per request that started on `dead`: one retry on dead, then the last
    // retry redispatched to live.
    assert_eq!(be.counters.get(Counter::Retries), 2 * redispatches);
    assert_eq!(
        be.servers[0].counters.get(Counter::ConnectErrors),
        2 * redispatches
    );

    let started = std::time::Instant::now();
    let out = send_raw(proxy.addr, b"GET /n/ HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let took = started.elapsed();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 503 "));
    let nd = proxy.engine.backend("nodispatch").unwrap();
    assert_eq!(
        nd.servers[0].counters.get(Counter::ConnectErrors),
        3,
        "1 attempt + 2 retries, all on the same server"
    );
    assert_eq!(nd.counters.get(Counter::Retries), 2);
    assert_eq!(nd.counters.get(Counter::Redispatches), 0);
    assert!(
        took >= std::time::Duration::from_millis(400),
        "two retries, each after a 200 ms turn-around: {took:?}"
    );
}

#[tokio::test]
async fn health_checks_take_a_server_out_and_back() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let b_addr = b.addr;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    timeout connect 200ms
    option httpchk GET /health
    default-server check inter 100ms rise 1 fall 1
    server a {}
    server b {b_addr}
",
        a.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    drop(b); // server b goes away
    let deadline = Instant::now() + Duration::from_secs(5);
    while be.is_up(1) {
        assert!(Instant::now() < deadline, "b never marked down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = Client::connect(proxy.addr).await;
    for _ in 0..6 {
        assert_eq!(c.get("/").await.header("x-origin").as_deref(), Some("a"));
    }
    assert_eq!(be.servers[1].counters.get(Counter::DownTransitions), 1);
    assert!(be.servers[1].counters.get(Counter::CheckFailures) >= 1);
    let b = Origin::start_on("b", b_addr, true).await; // and comes back
    while !be.is_up(1) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "b never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rs = Vec::new();
    for _ in 0..6 {
        rs.push(c.get("/").await);
    }
    assert_eq!(count_by_origin(&rs).get("b"), Some(&3));
    assert!(b.received_text().contains("GET /health HTTP/1.1"));
}

#[tokio::test]
async fn chunked_bodies_with_trailers_pass_through_both_ways() {
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    let body = "4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nx-checksum: abc\r\n\r\n";
    c.send(
        format!("POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    let r = c.response().await.unwrap();
    assert_eq!(r.text(), "wikipedia");
    let seen = o.received_text();
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(
        seen.ends_with(body),
        "the chunked body, trailer included, reached the origin as sent: {seen}"
    );

    let r = c.get("/chunked").await;
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.text(), "hello world");
    assert!(String::from_utf8_lossy(&r.raw_body).contains("x-trailer: yes\r\n"));
    // A close-delimited response is re-chunked for the keep-alive client.
    let r = c.get("/close").await;
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.text(), "close-delimited body");
    assert_eq!(
        c.get("/after").await.status,
        200,
        "the client connection stayed usable"
    );
    // An HTTP/1.0 client gets the chunked body de-chunked, then a close.
    let out = send_raw(proxy.addr, b"GET /chunked HTTP/1.0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let mut got = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), c.stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello").await;
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(!o.received_text().to_ascii_lowercase().contains("expect:"));
}

#[tokio::test]
async fn websocket_upgrade_becomes_a_two_way_tunnel() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    timeout tunnel 2s\n    server s {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade").as_deref(), Some("websocket"));
    assert!(
        o.received_text()
            .to_ascii_lowercase()
            .contains("upgrade: websocket"),
        "{}",
        o.received_text()
    );
    for msg in ["ping", "a longer frame of bytes \u{1}\u{2}"] {
        c.send(msg.as_bytes()).await;
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), c.stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: w\r\n\r\nGET /slow/150 HTTP/1.1\r\nHost: w\r\n\r\nPOST /echo HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\n\r\nabcGET /four HTTP/1.1\r\nHost: w\r\n\r\n")
        .await;
    let bodies: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(c.response().await.unwrap().text());
        }
        v
    };
    assert_eq!(
        bodies,
        [
            "hello from o GET /one",
            "slow from o",
            "abc",
            "hello from o GET /four"
        ]
    );
}

#[tokio::test]
async fn responses_before_a_close_arrive_whole_then_the_connection_ends() {
    // The last bytes before a close leave together with the FIN (held with
    // MSG_MORE until the close): small and multi-segment bodies, chunked
    // bodies, and local error replies must all arrive whole, then EOF.
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    for (path, want_len) in [("/x", 19), ("/size/100000", 100_000), ("/chunked", 11)] {
        let mut c = Client::connect(proxy.addr).await;
        c.send(format!("GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
        let r = c.response().await.expect("a response");
        assert_eq!(
            (r.status, r.body.len()),
            (200, want_len),
            "{path}: {}",
            r.head
        );
        assert_eq!(r.header("connection").as_deref(), Some("close"), "{path}");
        assert!(c.is_closed().await, "{path}: closed after the response");
    }
    // HTTP/1.0 without keep-alive: closed after the response too.
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /ten HTTP/1.0\r\nHost: w\r\n\r\n").await;
    assert_eq!(
        c.response().await.expect("a response").text(),
        "hello from o GET /ten"
    );
    assert!(c.is_closed().await);
    // A local error reply (400) before the close.
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /bad HTTP/1.1\r\nHost: w\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        .await;
    assert_eq!(c.response().await.expect("a 400").status, 400);
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn a_request_pipelined_after_connection_close_does_not_cost_the_response() {
    // The client breaks the rule (nothing may follow `Connection: close`):
    // the extra bytes are drained, not left unread, so closing does not
    // reset the connection and lose the first response.
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\nGET /two HTTP/1.1\r\nHost: w\r\n\r\n")
        .await;
    let r = c.response().await.expect("the first response");
    assert_eq!(r.text(), "hello from o GET /one");
    assert!(c.is_closed().await, "closed after the first response");
    // The same with the extra request arriving while the proxy waits for
    // the server: it is still in the socket, unread, when the proxy closes.
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /slow/200 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"GET /two HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.expect("the slow response");
    assert_eq!(r.text(), "slow from o");
    let seen = o.received_text();
    assert!(
        seen.contains("GET /one") && !seen.contains("GET /two"),
        "only the first request was forwarded: {seen}"
    );
}

#[tokio::test]
async fn head_204_304_and_interim_responses_have_no_body_and_keep_the_connection() {
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"HEAD /x HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response_to(Method::Head).await.unwrap();
    assert_eq!(
        r.header("content-length").as_deref(),
        Some("20"),
        "{}",
        r.head
    );
    assert!(r.body.is_empty());
    let r = c.get("/204").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = c.get("/304").await;
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("content-length").as_deref(), Some("10"));
    c.send(b"GET /interim HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let mut raw = Vec::new();
    let r = c.response().await.unwrap();
    raw.extend_from_slice(r.head.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "after hints"));
    assert_eq!(c.get("/last").await.text(), "hello from o GET /last");
    assert!(c.pending().is_empty());
    assert_eq!(o.accepted(), 1);
}

#[tokio::test]
async fn headers_are_rewritten_forwarded_for_set_del_and_hop_by_hop() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    option forwardfor
    http-request set-header X-Env prod
    http-request del-header X-Secret
    http-request set-header X-Api yes if {{ path_beg /api }}
    default_backend b
backend b
    http-request set-header X-Backend b
    server s {}
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /api/v1 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Secret: s3cr3t\r\nX-Env: dev\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
        .await;
    assert_eq!(c.response().await.unwrap().status, 200);
    let seen = o.received_text().to_ascii_lowercase();
    assert!(seen.starts_with("get /api/v1 http/1.1\r\n"), "{seen}");
    assert!(seen.contains("host: example.com:8080\r\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(
        seen.contains("x-env: prod\r\n") && !seen.contains("x-env: dev"),
        "{seen}"
    );
    assert!(
        seen.contains("x-api: yes\r\n") && seen.contains("x-backend: b\r\n"),
        "{seen}"
    );
    for gone in ["x-secret", "x-hop", "keep-alive:", "te:", "connection:"] {
        assert!(!seen.contains(gone), "{gone} must not be forwarded: {seen}");
    }
}

#[tokio::test]
async fn server_maxconn_queues_requests_and_queue_timeout_is_503() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    use_backend short if {{ hdr(x-short) -m found }}
    default_backend b
backend b
    timeout queue 5s
    server s {a} maxconn 1
backend short
    timeout queue 100ms
    server s {a} maxconn 1
",
        a = o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            send_raw(
                addr,
                b"GET /slow/100 HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
            )
            .await
        }));
    }
    for t in tasks {
        let out = t.await.unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 "));
    }
    assert_eq!(o.max_concurrent(), 1, "maxconn 1 is never exceeded");

    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        send_raw(
            addr,
            b"GET /slow/1000 HTTP/1.1\r\nHost: w\r\nX-Short: 1\r\n\r\n",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = send_raw(
        proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: w\r\nX-Short: 1\r\n\r\n",
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 503 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    slow.abort();
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_never_reach_the_origin() {
    let o = Origin::start("o").await;
    let cfg = format!("{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    server s {}\n", o.addr);
    let proxy = start_proxy(&cfg).await;
    let cases: [(&[u8], &str); 4] = [
        (b"POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"),
        (&[b"GET /".as_slice(), &[b'a'; 9000], b" HTTP/1.1\r\nHost: w\r\n\r\n"].concat(), "414"),
        (&[b"GET / HTTP/1.1\r\nHost: w\r\nX: ".as_slice(), &[b'a'; 70000], b"\r\n\r\n"].concat(), "431"),
    ];
    for (req, status) in cases {
        let out = send_raw(proxy.addr, req).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {text}"
        );
        assert!(text.contains("connection: close"));
    }
    assert_eq!(o.accepted(), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::RequestErrors), 4);
}

#[tokio::test]
async fn access_log_has_one_line_per_request_with_timings() {
    capture_access_log();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}\nfrontend fe\n    bind 127.0.0.1:1\n    option httplog\n    use_backend b if {{ path_beg /b }}\nbackend b\n    server s1 {}\n",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let mut c = Client::connect(proxy.addr).await;
    assert_eq!(c.get("/b/logged").await.status, 200);
    let _ = send_raw(proxy.addr, b"GET /nothing HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let ok = lines_with("/b/logged")
        .pop()
        .expect("a line for the request");
    assert!(ok.contains(" fe b/s1 "), "{ok}");
    assert!(
        ok.contains(" 200 ") && ok.contains("\"GET /b/logged HTTP/1.1\""),
        "{ok}"
    );
    let timings = ok.split(' ').nth(4).unwrap();
    assert_eq!(timings.split('/').count(), 5, "Tq/Tw/Tc/Tr/Ta: {ok}");
    let nosrv = lines_with("/nothing").pop().expect("a line for the 503");
    assert!(
        nosrv.contains(" 503 ") && nosrv.contains("<NOSRV>"),
        "{nosrv}"
    );
}

#[tokio::test]
async fn backup_server_serves_only_while_every_active_server_is_down() {
    let active = Origin::start("active").await;
    let backup = Origin::start("backup").await;
    let active_addr = active.addr;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    timeout connect 200ms
    default-server check inter 100ms rise 1 fall 1
    server a {active_addr}
    server spare {} backup
",
        backup.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let mut c = Client::connect(proxy.addr).await;
    for _ in 0..4 {
        assert_eq!(
            c.get("/").await.header("x-origin").as_deref(),
            Some("active")
        );
    }
    drop(active);
    let deadline = Instant::now() + Duration::from_secs(5);
    while be.is_up(0) {
        assert!(Instant::now() < deadline, "active server never marked down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        assert_eq!(
            c.get("/").await.header("x-origin").as_deref(),
            Some("backup")
        );
    }
    let _active = Origin::start_on("active", active_addr, true).await;
    while !be.is_up(0) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "active server never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        assert_eq!(
            c.get("/").await.header("x-origin").as_deref(),
            Some("active")
        );
    }
}
