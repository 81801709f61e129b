//! TLS origination with `TlsConnector` against servers built on
//! `TlsAcceptor` (and one hand-made rustls server that lies about its key).

mod tls_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use proxy_user::tls::{
    FailureCause, TlsAcceptor, TlsClientSettings, TlsConnectError, TlsConnector, TlsServerSettings,
    Verify,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tls_support::*;
use tokio::net::{TcpListener, TcpStream};

struct Backend {
    _ca: TestCa,
    dir: tempfile::TempDir,
    server: TestServer,
}

/// A TLS backend serving `www.example.com` (default) and `*.example.com`.
async fn backend() -> Backend {
    let ca = TestCa::new("backend ca");
    let dir = tempdir();
    ca.leaf(&["www.example.com"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &p(dir.path(), "www.pem"));
    ca.leaf(&["*.example.com"], KeyKind::Rsa2048)
        .write_bundle(&ca, &p(dir.path(), "wild.pem"));
    ca.write_cert(&p(dir.path(), "ca.pem"));
    let acceptor = TlsAcceptor::new(TlsServerSettings {
        alpn: vec!["http/1.1".into()],
        ..TlsServerSettings::with_certs([p(dir.path(), "www.pem"), p(dir.path(), "wild.pem")])
    })
    .unwrap();
    let server = serve(Arc::new(acceptor)).await;
    Backend {
        _ca: ca,
        dir,
        server,
    }
}

impl Backend {
    fn verified(&self) -> TlsClientSettings {
        TlsClientSettings {
            verify: Verify::Required,
            ca_file: Some(p(self.dir.path(), "ca.pem")),
            ..TlsClientSettings::default()
        }
    }
}

async fn tcp(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn verify_required_connects_with_host_or_sni_setting() {
    let b = backend().await;
    let c = TlsConnector::new(&TlsClientSettings {
        alpn: vec!["http/1.1".into()],
        ..b.verified()
    })
    .unwrap();
    let mut s = c
        .connect(tcp(b.server.addr).await, "www.example.com")
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = http_get(&mut s).await;
    assert!(
        resp.contains("scheme=https sni=www.example.com alpn=http/1.1"),
        "{resp}"
    );

    // `sni api.example.com` wins over the address the pool connects to.
    let c = TlsConnector::new(&TlsClientSettings {
        sni: Some("api.example.com".into()),
        ..b.verified()
    })
    .unwrap();
    let mut s = c
        .connect(tcp(b.server.addr).await, "127.0.0.1")
        .await
        .unwrap();
    let served = san_names(s.get_ref().1.peer_certificates().unwrap()[0].as_ref());
    assert_eq!(served, ["*.example.com"]);
    assert!(http_get(&mut s).await.contains("sni=api.example.com"));
}

#[tokio::test]
async fn verify_required_refuses_unknown_ca_and_wrong_names() {
    let b = backend().await;
    let stranger = TestCa::new("stranger");
    let dir = tempdir();
    stranger.write_cert(&p(dir.path(), "stranger.pem"));
    let c = TlsConnector::new(&TlsClientSettings {
        ca_file: Some(p(dir.path(), "stranger.pem")),
        ..b.verified()
    })
    .unwrap();
    let e = c
        .connect(tcp(b.server.addr).await, "www.example.com")
        .await
        .unwrap_err();
    assert!(matches!(e, TlsConnectError::Certificate(_)), "{e:?}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    let c = TlsConnector::new(&b.verified()).unwrap();
    // Unknown name: the backend serves its default certificate, not valid for it.
    let e = c
        .connect(tcp(b.server.addr).await, "other.org")
        .await
        .unwrap_err();
    assert!(matches!(e, TlsConnectError::Certificate(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("certificate not valid for name \"other.org\""),
        "{e}"
    );
    // An IP address is verified against IP SANs (there are none).
    let e = c
        .connect(tcp(b.server.addr).await, "127.0.0.1")
        .await
        .unwrap_err();
    assert!(matches!(e, TlsConnectError::Certificate(_)), "{e:?}");
    assert_eq!(c.counters().failures(FailureCause::Certificate), 2);

    let e = c
        .connect(tcp(b.server.addr).await, "bad name!")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid server name 'bad name!'");
}

#[tokio::test]
async fn verify_none_accepts_any_certificate() {
    let b = backend().await;
    let c = TlsConnector::new(&TlsClientSettings {
        verify: Verify::None,
        ..TlsClientSettings::default()
    })
    .unwrap();
    // Any name, an IP, no CA: all accepted.
    for host in ["whatever.invalid", "127.0.0.1"] {
        let mut s = c.connect(tcp(b.server.addr).await, host).await.unwrap();
        assert!(http_get(&mut s).await.contains("scheme=https"));
    }
}

/// A rustls server presenting `cert` but signing with an unrelated key.
#[derive(Debug)]
struct LyingResolver(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for LyingResolver {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn verify_none_still_checks_the_handshake_signature() {
    let ca = TestCa::new("liar ca");
    let shown = ca.leaf(&["liar.test"], KeyKind::EcdsaP256);
    let actual = ca.leaf(&["other.test"], KeyKind::EcdsaP256);
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(actual.key_pem.as_bytes()).unwrap())
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![shown.der.clone()];
    let lying = rustls::sign::CertifiedKey::new(chain, key);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LyingResolver(Arc::new(lying))));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(s).await;
    });

    let c = TlsConnector::new(&TlsClientSettings {
        verify: Verify::None,
        ..TlsClientSettings::default()
    })
    .unwrap();
    let e = c.connect(tcp(addr).await, "liar.test").await.unwrap_err();
    assert!(e.to_string().contains("BadSignature"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn backend_sessions_resume() {
    let b = backend().await;
    let c = TlsConnector::new(&b.verified()).unwrap();
    for expect_resumed in [false, true, true] {
        let mut s = c
            .connect(tcp(b.server.addr).await, "www.example.com")
            .await
            .unwrap();
        let resp = http_get(&mut s).await;
        assert!(
            resp.contains(&format!("resumed={expect_resumed}")),
            "{resp}"
        );
    }
    assert_eq!(c.counters().handshakes_full.load(Ordering::Relaxed), 1);
    assert_eq!(c.counters().handshakes_resumed.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn stalled_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let c = TlsConnector::new(&TlsClientSettings {
        verify: Verify::None,
        handshake_timeout: Duration::from_millis(300),
        ..TlsClientSettings::default()
    })
    .unwrap();
    let e = c.connect(tcp(addr).await, "x.test").await.unwrap_err();
    assert!(matches!(e, TlsConnectError::Timeout(_)), "{e:?}");
    assert_eq!(c.counters().failures(FailureCause::Timeout), 1);
    hold.abort();

    // A plaintext server answering garbage.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let e = c.connect(tcp(addr).await, "x.test").await.unwrap_err();
    assert!(matches!(e, TlsConnectError::Protocol(_)), "{e:?}");
    assert_eq!(c.counters().failures(FailureCause::NotTls), 1);
}
