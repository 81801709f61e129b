//! TLS termination with rustls clients: SNI selection, strict-sni, ALPN,
//! versions, resumption, hot reload, the https flag, TCP offload, and bad
//! input (plaintext, garbage, stalled and aborted handshakes).

mod tls_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_user::tls::{FailureCause, TlsAcceptError, TlsAcceptor, TlsServerSettings, TlsVersion};
use tls_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Three certificates: default `www.example.com` (ECDSA), `*.example.com`
/// (RSA) and `other.test` (ECDSA), in a directory plus a file.
struct Sites {
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Sites {
    fn new() -> Self {
        let ca = TestCa::new("weir test ca");
        let dir = tempdir();
        ca.leaf(&["www.example.com", "example.com"], KeyKind::EcdsaP256)
            .write_bundle(&ca, &p(dir.path(), "www.pem"));
        let certs = p(dir.path(), "certs");
        std::fs::create_dir(&certs).unwrap();
        ca.leaf(&["*.example.com"], KeyKind::Rsa2048)
            .write_bundle(&ca, &p(&certs, "10-wildcard.pem"));
        ca.leaf(&["other.test"], KeyKind::EcdsaP256)
            .write_bundle(&ca, &p(&certs, "20-other.pem"));
        Sites { ca, dir }
    }

    fn settings(&self) -> TlsServerSettings {
        TlsServerSettings::with_certs([p(self.dir.path(), "www.pem"), p(self.dir.path(), "certs")])
    }
}

async fn start(settings: TlsServerSettings) -> (Arc<TlsAcceptor>, TestServer) {
    let acceptor = Arc::new(TlsAcceptor::new(settings).expect("acceptor"));
    let server = serve(acceptor.clone()).await;
    (acceptor, server)
}

#[tokio::test]
async fn sni_selects_exact_wildcard_and_default_certificates() {
    let sites = Sites::new();
    let (acceptor, server) = start(sites.settings()).await;
    let verified = Arc::new(sites.ca.client_config());
    let any = Arc::new(any_cert_config());

    let h = handshake(server.addr, verified.clone(), Some("www.example.com"))
        .await
        .unwrap();
    assert_eq!(h.served_names(), ["www.example.com", "example.com"]);
    let h = handshake(server.addr, verified.clone(), Some("api.example.com"))
        .await
        .unwrap();
    assert_eq!(h.served_names(), ["*.example.com"]);
    let h = handshake(server.addr, verified.clone(), Some("other.test"))
        .await
        .unwrap();
    assert_eq!(h.served_names(), ["other.test"]);
    // Unknown name and no SNI: the default (first) certificate.
    let h = handshake(server.addr, any.clone(), Some("unknown.org"))
        .await
        .unwrap();
    assert_eq!(h.served_names(), ["www.example.com", "example.com"]);
    let h = handshake(server.addr, any.clone(), None).await.unwrap();
    assert_eq!(h.served_names(), ["www.example.com", "example.com"]);

    let names: Vec<_> = acceptor
        .certificates()
        .iter()
        .map(|c| c.names[0].clone())
        .collect();
    assert_eq!(names, ["www.example.com", "*.example.com", "other.test"]);
    wait_for(|| acceptor.counters().handshakes() == 5).await;
}

#[tokio::test]
async fn strict_sni_refuses_unknown_and_missing_names() {
    let sites = Sites::new();
    let (acceptor, server) = start(TlsServerSettings {
        strict_sni: true,
        ..sites.settings()
    })
    .await;
    let any = Arc::new(any_cert_config());
    let h = handshake(server.addr, any.clone(), Some("api.example.com"))
        .await
        .unwrap();
    assert_eq!(h.served_names(), ["*.example.com"]);

    let e = handshake(server.addr, any.clone(), Some("unknown.org"))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("AccessDenied"), "{e}");
    assert!(handshake(server.addr, any.clone(), None).await.is_err());

    wait_for(|| acceptor.counters().failures(FailureCause::UnknownSni) == 2).await;
    assert_eq!(acceptor.counters().handshakes(), 1);
}

#[tokio::test]
async fn alpn_is_negotiated_and_https_flag_is_set() {
    let sites = Sites::new();
    let (_acceptor, server) = start(TlsServerSettings {
        alpn: vec!["http/1.1".into()],
        ..sites.settings()
    })
    .await;
    let cfg = Arc::new(sites.ca.client_config_with(
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &["h2", "http/1.1"],
    ));
    let mut h = handshake(server.addr, cfg, Some("www.example.com"))
        .await
        .unwrap();
    assert_eq!(h.conn().alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = http_get(&mut h.stream).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(
        resp.contains("scheme=https sni=www.example.com alpn=http/1.1 version=TLSv1.3"),
        "{resp}"
    );

    // A client without ALPN still gets in.
    let h = handshake(
        server.addr,
        Arc::new(sites.ca.client_config()),
        Some("www.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(h.conn().alpn_protocol(), None);

    // Only unsupported protocols offered: refused (RFC 7301 no_application_protocol).
    let h2only = Arc::new(
        sites
            .ca
            .client_config_with(&[&rustls::version::TLS13], &["h2"]),
    );
    assert!(handshake(server.addr, h2only, Some("www.example.com"))
        .await
        .is_err());
}

#[tokio::test]
async fn min_and_max_versions_are_enforced() {
    let sites = Sites::new();
    let tls12 = Arc::new(sites.ca.client_config_with(&[&rustls::version::TLS12], &[]));
    let tls13 = Arc::new(sites.ca.client_config_with(&[&rustls::version::TLS13], &[]));

    let (acceptor, server) = start(TlsServerSettings {
        min_version: Some(TlsVersion::Tls13),
        ..sites.settings()
    })
    .await;
    assert!(
        handshake(server.addr, tls13.clone(), Some("www.example.com"))
            .await
            .is_ok()
    );
    assert!(
        handshake(server.addr, tls12.clone(), Some("www.example.com"))
            .await
            .is_err()
    );
    wait_for(|| acceptor.counters().failures(FailureCause::Incompatible) == 1).await;

    let (_acceptor, server) = start(TlsServerSettings {
        max_version: Some(TlsVersion::Tls12),
        ..sites.settings()
    })
    .await;
    let h = handshake(
        server.addr,
        Arc::new(sites.ca.client_config()),
        Some("www.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(
        h.conn().protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert!(handshake(server.addr, tls13, Some("www.example.com"))
        .await
        .is_err());

    let e = TlsAcceptor::new(TlsServerSettings {
        min_version: Some(TlsVersion::Tls10),
        ..sites.settings()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ssl-min-ver TLSv1.0 is not supported: only TLSv1.2 and TLSv1.3 are implemented"
    );
}

/// Does one request on a fresh connection and says whether it resumed.
async fn resumed_request(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> bool {
    let mut h = handshake(addr, cfg, Some("www.example.com")).await.unwrap();
    // Reading the response also reads the TLS 1.3 tickets sent after the handshake.
    let resp = http_get(&mut h.stream).await;
    assert!(resp.contains("scheme=https"), "{resp}");
    h.resumed()
}

#[tokio::test]
async fn sessions_resume_with_tickets_and_with_the_session_cache() {
    let sites = Sites::new();
    for (tickets, version) in [
        (true, &rustls::version::TLS13),
        (true, &rustls::version::TLS12),
        (false, &rustls::version::TLS13),
        (false, &rustls::version::TLS12),
    ] {
        let (acceptor, server) = start(TlsServerSettings {
            session_tickets: tickets,
            ..sites.settings()
        })
        .await;
        let cfg = Arc::new(sites.ca.client_config_with(&[version], &[]));
        let what = format!("tickets={tickets} {version:?}");
        assert!(
            !resumed_request(server.addr, cfg.clone()).await,
            "{what}: first is full"
        );
        assert!(
            resumed_request(server.addr, cfg.clone()).await,
            "{what}: second resumes"
        );
        assert!(
            resumed_request(server.addr, cfg).await,
            "{what}: third resumes"
        );
        let c = acceptor.counters();
        assert_eq!(c.handshakes_full.load(Ordering::Relaxed), 1, "{what}");
        assert_eq!(c.handshakes_resumed.load(Ordering::Relaxed), 2, "{what}");
    }

    // Without tickets and cache there is nothing to resume.
    let (_a, server) = start(TlsServerSettings {
        session_tickets: false,
        session_cache_size: 0,
        ..sites.settings()
    })
    .await;
    let cfg = Arc::new(sites.ca.client_config());
    assert!(!resumed_request(server.addr, cfg.clone()).await);
    assert!(!resumed_request(server.addr, cfg).await);
}

/// One keep-alive request on an open connection.
async fn keepalive_request(s: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn reload_swaps_certificates_for_new_handshakes_only() {
    let ca = TestCa::new("reload ca");
    let dir = tempdir();
    let crt = p(dir.path(), "site.pem");
    let v1 = ca.leaf(&["site.test", "v1.site.test"], KeyKind::EcdsaP256);
    v1.write_bundle(&ca, &crt);
    let (acceptor, server) = start(TlsServerSettings::with_certs([&crt])).await;
    let cfg = Arc::new(ca.client_config());

    let mut old = handshake(server.addr, cfg.clone(), Some("site.test"))
        .await
        .unwrap();
    assert!(keepalive_request(&mut old.stream).await.contains("200 OK"));

    // Reload with a new certificate while `old` is open.
    ca.leaf(&["site.test", "v2.site.test"], KeyKind::Rsa2048)
        .write_bundle(&ca, &crt);
    acceptor.reload().expect("reload");
    // A fresh client: one with a ticket from before would resume, and a
    // resumed session keeps the certificate it was established with.
    let new = handshake(server.addr, Arc::new(ca.client_config()), Some("site.test"))
        .await
        .unwrap();
    assert_eq!(new.served_names(), ["site.test", "v2.site.test"]);
    // The established connection keeps working with its certificate.
    assert!(keepalive_request(&mut old.stream).await.contains("200 OK"));
    assert_eq!(old.served_names(), ["site.test", "v1.site.test"]);

    // A bad file: refused, named, old (v2) certificate kept.
    let (c, _) = (v1.cert_pem.clone(), ());
    let other_key = ca.leaf(&["x.test"], KeyKind::EcdsaP256).key_pem;
    std::fs::write(&crt, format!("{c}{other_key}")).unwrap();
    let e = acceptor.reload().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "'{}': the private key does not match the certificate",
            crt.display()
        )
    );
    let after = handshake(server.addr, Arc::new(ca.client_config()), Some("site.test"))
        .await
        .unwrap();
    assert_eq!(after.served_names(), ["site.test", "v2.site.test"]);
    std::fs::remove_file(&crt).unwrap();
    assert!(acceptor
        .reload()
        .unwrap_err()
        .to_string()
        .starts_with("cannot read '"));
    // Sessions from before the reloads still resume (ticket keys are kept).
    let mut resumed = handshake(server.addr, cfg, Some("site.test"))
        .await
        .unwrap();
    assert!(resumed.resumed());
    assert!(keepalive_request(&mut resumed.stream)
        .await
        .contains("200 OK"));
    assert!(keepalive_request(&mut old.stream).await.contains("200 OK"));
    assert_eq!(acceptor.counters().reloads_ok.load(Ordering::Relaxed), 1);
    assert_eq!(
        acceptor.counters().reloads_failed.load(Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn tcp_offload_relays_decrypted_bytes() {
    let sites = Sites::new();
    let acceptor = Arc::new(TlsAcceptor::new(sites.settings()).unwrap());
    // Plain echo backend.
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = backend.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    // The relay: accept TLS, copy_bidirectional to the backend.
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let relay = tokio::spawn(async move {
        let (tcp, _) = front.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut up = TcpStream::connect(backend_addr).await.unwrap();
        tokio::io::copy_bidirectional(&mut tls, &mut up).await
    });
    let mut h = handshake(
        front_addr,
        Arc::new(sites.ca.client_config()),
        Some("other.test"),
    )
    .await
    .unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    h.stream.write_all(&payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(10), h.stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, payload);
    h.stream.shutdown().await.unwrap();
    drop(h);
    let (sent, received) = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((sent, received), (100_000, 100_000));
}

/// Accepts one connection with `acceptor` and returns the result.
async fn accept_one(
    acceptor: Arc<TlsAcceptor>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<(), TlsAcceptError>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        acceptor.accept(tcp).await.map(drop)
    });
    (addr, task)
}

/// Sends `bytes`, then expects the server to close within 5 s.
async fn send_and_expect_close(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue, // an alert, then the close
            Err(_) => panic!("server did not close the connection"),
        }
    }
}

#[tokio::test]
async fn plaintext_and_garbage_are_refused_and_counted() {
    let sites = Sites::new();
    let acceptor = Arc::new(TlsAcceptor::new(sites.settings()).unwrap());

    let (addr, task) = accept_one(acceptor.clone()).await;
    send_and_expect_close(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let e = task.await.unwrap().unwrap_err();
    assert!(matches!(e, TlsAcceptError::NotTls(_)), "{e:?}");
    assert!(e.to_string().starts_with("not a tls handshake: "), "{e}");

    // Deterministic pseudo-random garbage, including one starting like a
    // handshake record.
    let mut x: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..600)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut fake_record = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0xff, 0xff, 0xff];
    fake_record.extend_from_slice(&garbage[..200]);
    for bytes in [garbage.clone(), fake_record] {
        let (addr, task) = accept_one(acceptor.clone()).await;
        send_and_expect_close(addr, &bytes).await;
        let e = task.await.unwrap().unwrap_err();
        assert!(
            matches!(e, TlsAcceptError::NotTls(_) | TlsAcceptError::Protocol(_)),
            "{e:?}"
        );
    }
    let c = acceptor.counters();
    let failed: u64 = c.failure_snapshot().iter().map(|(_, n)| n).sum();
    assert_eq!(failed, 3);
    assert!(c.failures(FailureCause::NotTls) >= 2);
}

#[tokio::test]
async fn stalled_and_aborted_handshakes_end() {
    let sites = Sites::new();
    let acceptor = Arc::new(
        TlsAcceptor::new(TlsServerSettings {
            handshake_timeout: Duration::from_millis(300),
            ..sites.settings()
        })
        .unwrap(),
    );

    // Connects and says nothing.
    let (addr, task) = accept_one(acceptor.clone()).await;
    let silent = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("timeout fired")
        .unwrap();
    assert!(matches!(e, Err(TlsAcceptError::Timeout(_))), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    drop(silent);

    // Sends half a ClientHello record and stalls.
    let (addr, task) = accept_one(acceptor.clone()).await;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("timeout fired")
        .unwrap();
    assert!(matches!(e, Err(TlsAcceptError::Timeout(_))), "{e:?}");
    drop(half);

    // Sends half a ClientHello and closes.
    let (addr, task) = accept_one(acceptor.clone()).await;
    let mut gone = TcpStream::connect(addr).await.unwrap();
    gone.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    drop(gone);
    let e = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(e, Err(TlsAcceptError::Closed(_))), "{e:?}");

    let c = acceptor.counters();
    assert_eq!(c.failures(FailureCause::Timeout), 2);
    assert_eq!(c.failures(FailureCause::Closed), 1);
}

#[tokio::test]
async fn client_that_distrusts_the_certificate_is_counted_as_alert() {
    let sites = Sites::new();
    let (acceptor, server) = start(sites.settings()).await;
    let stranger = TestCa::new("someone else");
    let e = handshake(
        server.addr,
        Arc::new(stranger.client_config()),
        Some("www.example.com"),
    )
    .await
    .err()
    .expect("client refuses");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    wait_for(|| acceptor.counters().failures(FailureCause::PeerAlert) == 1).await;
}

/// Waits up to 5 s for a condition updated by server tasks.
async fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
