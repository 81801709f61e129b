//! `server ... ssl` in a `mode http` backend: the engine originates TLS to
//! the server (verify required with a CA file and SNI, verify none), keeps
//! the TLS connection in the server's idle pool and reuses it, and answers
//! 503 with a counted connect error when the certificate is refused.

#[path = "support/l7.rs"]
mod l7;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use l7::{start_proxy, Client};
use proxy_user::stats::Counter;
use proxy_user::tls::{FailureCause, TlsAcceptor, TlsCounters, TlsInfo, TlsServerSettings};
use tls_support::{p, serve, tempdir, KeyKind, TestCa, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A TLS origin with a certificate for `origin.weir.test` and 127.0.0.1
/// issued by `ca`; it answers each request with what it negotiated.
async fn tls_origin(ca: &TestCa, dir: &Path, kind: KeyKind) -> (TestServer, Arc<TlsAcceptor>) {
    let pem = p(dir, "origin.pem");
    ca.leaf(&["origin.weir.test", "127.0.0.1"], kind)
        .write_bundle(ca, &pem);
    let acceptor = Arc::new(TlsAcceptor::new(TlsServerSettings::with_certs([pem])).unwrap());
    (serve(acceptor.clone()).await, acceptor)
}

fn config(server_opts: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n\
         frontend fe\n    bind 127.0.0.1:1\n    default_backend b\n\
         backend b\n    retries 1\n    server s {server_opts}\n"
    )
}

/// TLS connections the origin accepted (full and resumed handshakes).
fn accepted(origin: &TlsCounters) -> u64 {
    origin.handshakes()
}

#[tokio::test]
async fn verify_required_keeps_one_tls_connection_alive_for_many_requests() {
    let ca = TestCa::new("upstream ca");
    let dir = tempdir();
    let (origin, origin_tls) = tls_origin(&ca, dir.path(), KeyKind::EcdsaP256).await;
    let ca_file = p(dir.path(), "ca.pem");
    ca.write_cert(&ca_file);
    let proxy = start_proxy(&config(&format!(
        "{} ssl verify required ca-file {} sni origin.weir.test",
        origin.addr,
        ca_file.display()
    )))
    .await;

    let mut client = Client::connect(proxy.addr).await;
    for i in 0..5 {
        let resp = client.get(&format!("/r{i}")).await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        // The origin saw TLS 1.3 with the configured SNI.
        assert_eq!(
            resp.text(),
            "scheme=https sni=origin.weir.test alpn=- version=TLSv1.3 resumed=false\n"
        );
    }
    // A second client connection is served over the same pooled upstream
    // TLS connection too.
    let mut other = Client::connect(proxy.addr).await;
    assert_eq!(other.get("/other").await.status, 200);

    assert_eq!(accepted(origin_tls.counters()), 1, "one upstream handshake");
    let backend = proxy.engine.backend("b").unwrap();
    let server = &backend.servers[0];
    assert_eq!(
        server.pool.reuses(),
        5,
        "requests 2..6 reused the connection"
    );
    assert_eq!(server.pool.idle_count(), 1);
    let connector = server.tls.as_ref().expect("ssl server has a connector");
    assert_eq!(connector.counters().handshakes(), 1);
    assert_eq!(server.counters.get(Counter::ConnectErrors), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::Requests), 6);
}

/// A TLS origin that answers one request per connection with
/// `connection: close` (body: whether the session was resumed) and closes.
async fn closing_tls_origin(acceptor: Arc<TlsAcceptor>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let resumed = TlsInfo::of(&tls).resumed;
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!("resumed={resumed}\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_server_closing_its_tls_connection_is_not_pooled_and_reconnects_resume() {
    let ca = TestCa::new("upstream ca");
    let dir = tempdir();
    let pem = p(dir.path(), "origin.pem");
    ca.leaf(&["origin.weir.test"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &pem);
    let origin_tls = Arc::new(TlsAcceptor::new(TlsServerSettings::with_certs([pem])).unwrap());
    let (addr, task) = closing_tls_origin(origin_tls.clone()).await;
    let ca_file = p(dir.path(), "ca.pem");
    ca.write_cert(&ca_file);
    let proxy = start_proxy(&config(&format!(
        "{addr} ssl verify required ca-file {} sni origin.weir.test",
        ca_file.display()
    )))
    .await;

    let mut client = Client::connect(proxy.addr).await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let resp = client.get("/").await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        bodies.push(resp.text());
    }
    // One full handshake, then the connector's session cache resumes.
    assert_eq!(
        bodies,
        ["resumed=false\n", "resumed=true\n", "resumed=true\n"]
    );
    let server = &proxy.engine.backend("b").unwrap().servers[0];
    assert_eq!(server.pool.reuses(), 0, "closed connections are not pooled");
    let c = server.tls.as_ref().unwrap().counters();
    assert_eq!(c.handshakes_full.load(Ordering::Relaxed), 1);
    assert_eq!(c.handshakes_resumed.load(Ordering::Relaxed), 2);
    assert_eq!(origin_tls.counters().handshakes(), 3);
    task.abort();
}

#[tokio::test]
async fn without_sni_the_server_ip_address_is_verified() {
    let ca = TestCa::new("upstream ca");
    let dir = tempdir();
    let (origin, _origin_tls) = tls_origin(&ca, dir.path(), KeyKind::EcdsaP256).await;
    let ca_file = p(dir.path(), "ca.pem");
    ca.write_cert(&ca_file);
    let proxy = start_proxy(&config(&format!(
        "{} ssl verify required ca-file {}",
        origin.addr,
        ca_file.display()
    )))
    .await;
    // The leaf has an IP SAN 127.0.0.1: verified, and no SNI is sent.
    let mut client = Client::connect(proxy.addr).await;
    let resp = client.get("/").await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        resp.text().starts_with("scheme=https sni=- "),
        "{}",
        resp.text()
    );
}

#[tokio::test]
async fn verify_required_with_the_wrong_ca_fails_with_503_and_a_connect_error() {
    let ca = TestCa::new("upstream ca");
    let other_ca = TestCa::new("some other ca");
    let dir = tempdir();
    let (origin, origin_tls) = tls_origin(&ca, dir.path(), KeyKind::EcdsaP256).await;
    let wrong = p(dir.path(), "wrong-ca.pem");
    other_ca.write_cert(&wrong);
    let proxy = start_proxy(&config(&format!(
        "{} ssl verify required ca-file {} sni origin.weir.test",
        origin.addr,
        wrong.display()
    )))
    .await;

    let mut client = Client::connect(proxy.addr).await;
    let resp = client.get("/").await;
    assert_eq!(resp.status, 503, "{}", resp.head);
    let backend = proxy.engine.backend("b").unwrap();
    let server = &backend.servers[0];
    // `retries 1`: two attempts, each refused and counted.
    assert_eq!(server.counters.get(Counter::ConnectErrors), 2);
    assert_eq!(backend.counters.get(Counter::ConnectErrors), 2);
    let connector = server.tls.as_ref().unwrap();
    assert_eq!(connector.counters().failures(FailureCause::Certificate), 2);
    assert_eq!(connector.counters().handshakes(), 0);
    assert_eq!(server.pool.idle_count(), 0);
    assert_eq!(origin_tls.counters().handshakes(), 0);
}

#[tokio::test]
async fn verify_none_accepts_an_unknown_issuer() {
    let ca = TestCa::new("upstream ca");
    let dir = tempdir();
    let (origin, origin_tls) = tls_origin(&ca, dir.path(), KeyKind::Rsa2048).await;
    let proxy = start_proxy(&config(&format!(
        "{} ssl verify none sni anything.example",
        origin.addr
    )))
    .await;

    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..3 {
        let resp = client.get("/").await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert!(
            resp.text()
                .starts_with("scheme=https sni=anything.example "),
            "{}",
            resp.text()
        );
    }
    assert_eq!(origin_tls.counters().handshakes(), 1);
    assert_eq!(
        proxy.engine.backend("b").unwrap().servers[0].pool.reuses(),
        2
    );
}

#[tokio::test]
async fn a_plain_server_on_an_ssl_line_is_a_counted_tls_failure() {
    // A plain HTTP origin behind `ssl`: the handshake fails (not TLS), 503.
    let plain = l7::Origin::start("plain").await;
    let proxy = start_proxy(&config(&format!("{} ssl verify none", plain.addr))).await;
    let mut client = Client::connect(proxy.addr).await;
    let resp = client.get("/").await;
    assert_eq!(resp.status, 503, "{}", resp.head);
    let server = &proxy.engine.backend("b").unwrap().servers[0];
    let tls = server.tls.as_ref().unwrap().counters();
    assert_eq!(tls.handshakes(), 0);
    assert!(
        tls.failure_snapshot().iter().map(|(_, n)| n).sum::<u64>() >= 1,
        "{:?}",
        tls.failure_snapshot()
    );
    assert!(server.counters.get(Counter::ConnectErrors) >= 1);
}

#[tokio::test]
async fn a_bad_ca_file_is_a_start_error_naming_file_and_line() {
    let (cfg, _) = proxy_user::config::parse_str(
        &config("127.0.0.1:9 ssl verify required ca-file /nonexistent/ca.pem"),
        "upstream.cfg",
    )
    .unwrap();
    let (stats, _) =
        proxy_user::stats::StatsStore::open(None, 0, proxy_user::stats::StoreOptions::default())
            .unwrap();
    let err =
        proxy_user::proxy::Engine::start(&cfg, &mut |e| stats.register(e.guid(), e.object_type()))
            .expect_err("a missing ca-file must stop the engine");
    let text = err.to_string();
    assert!(
        text.starts_with("upstream.cfg:11: server 'b/s': TLS settings: "),
        "{text}"
    );
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
}

/// A TLS origin that answers an upgrade with `101` and then echoes bytes.
async fn echo_upgrade_tls_origin(acceptor: Arc<TlsAcceptor>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut tls) = acceptor.accept(tcp).await else {
            return;
        };
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tls
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await;
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tls.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn an_upgrade_becomes_a_tunnel_over_the_upstream_tls_connection() {
    let ca = TestCa::new("upstream ca");
    let dir = tempdir();
    let pem = p(dir.path(), "origin.pem");
    ca.leaf(&["origin.weir.test"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &pem);
    let origin_tls = Arc::new(TlsAcceptor::new(TlsServerSettings::with_certs([pem])).unwrap());
    let (addr, task) = echo_upgrade_tls_origin(origin_tls).await;
    let ca_file = p(dir.path(), "ca.pem");
    ca.write_cert(&ca_file);
    let cfg = config(&format!(
        "{addr} ssl verify required ca-file {} sni origin.weir.test",
        ca_file.display()
    ))
    .replace("\nbackend b\n", "\nbackend b\n    timeout tunnel 5s\n");
    let proxy = start_proxy(&cfg).await;

    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    let r = c.response().await.expect("101");
    assert_eq!(r.status, 101, "{}", r.head);
    for msg in ["ping", "a longer frame of bytes \u{1}\u{2}"] {
        c.send(msg.as_bytes()).await;
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            c.stream.read_exact(&mut back),
        )
        .await
        .expect("echo in time")
        .unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    task.abort();
}

#[tokio::test]
async fn checked_ssl_servers_are_checked_over_tls() {
    let ca = TestCa::new("upstream ca");
    let dir = tempdir();
    let (origin, origin_tls) = tls_origin(&ca, dir.path(), KeyKind::EcdsaP256).await;
    // `option httpchk` on an `ssl` server goes over TLS (see tests/health_tls.rs
    // for failing handshakes).
    let cfg = config(&format!(
        "{} ssl verify none check inter 100ms rise 1 fall 1",
        origin.addr
    ))
    .replace(
        "\nbackend b\n",
        "\nbackend b\n    option httpchk GET /health\n",
    );
    let proxy = start_proxy(&cfg).await;
    let backend = proxy.engine.backend("b").unwrap();
    // Several check intervals: a plain-HTTP check would have failed by now.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        backend.is_up(0),
        "the HTTP-over-TLS check keeps the server UP"
    );
    assert_eq!(backend.servers[0].counters.get(Counter::CheckFailures), 0);
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("/").await.status, 200);
    // Each check is a full handshake of its own, besides the request's.
    let counters = origin_tls.counters();
    assert!(
        counters.handshakes_full() >= 3,
        "{}",
        counters.handshakes_full()
    );

    // The origin goes away: the check marks the server DOWN.
    drop(origin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while backend.is_up(0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!backend.is_up(0), "a closed port is DOWN");
}
