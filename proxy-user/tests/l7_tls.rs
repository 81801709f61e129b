//! `bind ... ssl` on a `mode http` frontend: the engine terminates TLS and
//! proxies HTTP over it (keep-alive, routing, `X-Forwarded-Proto: https`).

#[path = "support/l7.rs"]
mod l7;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::sync::Arc;
use std::time::Duration;

use l7::{start_proxy, Origin};
use proxy_user::tls::{TlsAcceptor, TlsServerSettings};
use tls_support::{handshake, p, tempdir, KeyKind, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn https_frontend_is_terminated_and_proxied_at_l7() {
    let api = Origin::start("api").await;
    let web = Origin::start("web").await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
         frontend fe\n    bind 127.0.0.1:1\n    option forwardfor\n    use_backend api if {{ path_beg /api }}\n    default_backend web\n\
         backend api\n    server s {}\nbackend web\n    server s {}\n",
        api.addr, web.addr
    );
    let proxy = start_proxy(&cfg).await;
    let ca = TestCa::new("l7 test ca");
    let dir = tempdir();
    let pem = p(dir.path(), "site.pem");
    ca.leaf(&["www.weir.test"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &pem);
    let acceptor = Arc::new(TlsAcceptor::new(TlsServerSettings::with_certs([pem])).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy_user::proxy::serve_with_tls(
        listener,
        proxy.frontend.clone(),
        Some(acceptor),
    ));

    let mut tls = handshake(addr, Arc::new(ca.client_config()), Some("www.weir.test"))
        .await
        .unwrap()
        .stream;
    tls.write_all(b"GET /api/v1 HTTP/1.1\r\nHost: www.weir.test\r\n\r\nGET /page HTTP/1.1\r\nHost: www.weir.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let text = String::from_utf8_lossy(&out);
    let first = text
        .find("hello from api GET /api/v1")
        .expect("first response");
    let second = text
        .find("hello from web GET /page")
        .expect("second response on the same connection");
    assert!(first < second, "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    let seen = api.received_text().to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(seen.contains("host: www.weir.test\r\n"), "{seen}");
    assert_eq!(
        proxy
            .frontend
            .counters
            .get(proxy_user::stats::Counter::Requests),
        2
    );
}
