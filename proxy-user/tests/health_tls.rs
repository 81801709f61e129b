//! Health checks of `ssl` servers over real sockets on 127.0.0.1: `check`
//! is a TLS handshake with the server's verify/ca-file/sni (a server that
//! accepts TCP but fails the handshake goes DOWN), and `option httpchk`
//! goes over TLS; the engine wires both from the config.

#[path = "support/l7.rs"]
mod l7;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxy_user::health::checker::{CheckerConfig, HealthChecker, HealthEvent, StateChange, Target};
use proxy_user::health::http::HttpCheck;
use proxy_user::health::state::{Health, Thresholds};
use proxy_user::health::tls::TlsCheck;
use proxy_user::health::{AnyCheck, CheckError, CheckPass, HealthCheck};
use proxy_user::tls::{
    MaybeTlsStream, TlsAcceptor, TlsClientSettings, TlsConnector, TlsServerSettings, Verify,
};
use tls_support::{p, tempdir, KeyKind, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How the switchable origin treats the next connections.
const TLS: u8 = 0;
/// Accepts TCP, answers plain text and closes: not TLS.
const NOT_TLS: u8 = 1;
/// TLS with a certificate from a CA the checker does not trust.
const UNTRUSTED: u8 = 2;
/// Accepts TCP and never says anything.
const SILENT: u8 = 3;

/// An origin on one port whose behaviour the test switches: TLS with a
/// trusted certificate for `origin.weir.test` (answering HTTP requests with
/// `status`), plain text, an untrusted certificate, or silence.
struct SwitchOrigin {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    status: Arc<AtomicU16>,
    /// HTTP requests received over TLS.
    tls_requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for SwitchOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn acceptor(ca: &TestCa, dir: &Path, file: &str) -> Arc<TlsAcceptor> {
    let pem = p(dir, file);
    ca.leaf(&["origin.weir.test", "127.0.0.1"], KeyKind::EcdsaP256)
        .write_bundle(ca, &pem);
    Arc::new(TlsAcceptor::new(TlsServerSettings::with_certs([pem])).unwrap())
}

impl SwitchOrigin {
    async fn start(ca: &TestCa, dir: &Path) -> Self {
        let trusted = acceptor(ca, dir, "origin.pem");
        let untrusted = acceptor(&TestCa::new("another ca"), dir, "untrusted.pem");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(TLS));
        let status = Arc::new(AtomicU16::new(200));
        let tls_requests = Arc::new(AtomicUsize::new(0));
        let (m, st, n) = (mode.clone(), status.clone(), tls_requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (trusted, untrusted) = (trusted.clone(), untrusted.clone());
                let (status, n) = (st.load(Ordering::SeqCst), n.clone());
                let mode = m.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    match mode {
                        NOT_TLS => {
                            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                        }
                        SILENT => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        _ => {
                            let acceptor = if mode == TLS { trusted } else { untrusted };
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                answer(MaybeTlsStream::from(tls), status, &n).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            mode,
            status,
            tls_requests,
            task,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

/// Answers one HTTP request (if the peer sends one) with `status`.
async fn answer(mut s: MaybeTlsStream<TcpStream>, status: u16, n: &AtomicUsize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    n.fetch_add(1, Ordering::SeqCst);
    let reason = if status == 200 { "OK" } else { "Server Error" };
    let resp =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

/// `verify required` against `ca`, with `sni origin.weir.test`.
fn settings(ca_file: &Path) -> TlsClientSettings {
    TlsClientSettings {
        verify: Verify::Required,
        ca_file: Some(ca_file.to_owned()),
        sni: Some("origin.weir.test".into()),
        ..TlsClientSettings::default()
    }
}

fn ca_file(ca: &TestCa, dir: &Path) -> PathBuf {
    let f = p(dir, "ca.pem");
    ca.write_cert(&f);
    f
}

fn cfg() -> CheckerConfig {
    CheckerConfig {
        inter: Duration::from_millis(20),
        thresholds: Thresholds {
            rise: 1,
            fall: 1,
            passive: None,
            initial: Health::Up,
        },
        ..CheckerConfig::default()
    }
}

fn spawn(
    check: TlsCheck,
    addr: SocketAddr,
) -> (HealthChecker, mpsc::UnboundedReceiver<HealthEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let target = Target {
        name: "s1".into(),
        addr,
        backup: false,
    };
    let checker = HealthChecker::spawn("be", vec![target], AnyCheck::Tls(check), cfg(), tx);
    (checker, rx)
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<HealthEvent>) -> StateChange {
    let wait = async {
        loop {
            match rx.recv().await.expect("checker alive") {
                HealthEvent::StateChanged(c) => return c,
                HealthEvent::Checked { .. } => {}
            }
        }
    };
    timeout(Duration::from_secs(30), wait)
        .await
        .expect("a state change in time")
}

async fn first_check(rx: &mut mpsc::UnboundedReceiver<HealthEvent>) -> HealthEvent {
    timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a check in time")
        .expect("checker alive")
}

#[tokio::test]
async fn handshake_check_goes_down_when_the_handshake_fails() {
    let ca = TestCa::new("check ca");
    let dir = tempdir();
    let origin = SwitchOrigin::start(&ca, dir.path()).await;
    let connector = TlsConnector::for_checks(&settings(&ca_file(&ca, dir.path()))).unwrap();
    let (checker, mut rx) = spawn(
        TlsCheck::handshake(connector.clone(), Duration::from_secs(2)),
        origin.addr,
    );

    match first_check(&mut rx).await {
        HealthEvent::Checked { outcome, .. } => assert_eq!(outcome, Ok(CheckPass::Layer6)),
        other => panic!("{other:?}"),
    }

    // TCP is still accepted, but the port does not speak TLS.
    origin.set(NOT_TLS);
    let down = next_change(&mut rx).await;
    assert_eq!(down.to, Health::Down);
    let line = down.to_string();
    assert!(
        line.starts_with("Server be/s1 is DOWN, reason: Layer6 invalid response, info: \""),
        "{line}"
    );

    origin.set(TLS);
    let up = next_change(&mut rx).await;
    assert_eq!(up.to, Health::Up);
    assert!(
        up.to_string()
            .starts_with("Server be/s1 is UP, reason: Layer6 check passed"),
        "{up}"
    );

    // A certificate the server's ca-file does not vouch for: down too,
    // even though the checker had completed handshakes before (checks never
    // resume a session, so the certificate is verified every time).
    origin.set(UNTRUSTED);
    let down = next_change(&mut rx).await;
    assert_eq!(down.to, Health::Down);
    let line = down.to_string();
    assert!(
        line.contains("reason: Layer6 invalid response, info: \"server certificate refused: "),
        "{line}"
    );
    let counters = connector.counters();
    assert!(
        counters.handshakes_full() >= 2,
        "{}",
        counters.handshakes_full()
    );
    assert_eq!(counters.handshakes_resumed(), 0);
    checker.shutdown().await;
}

#[tokio::test]
async fn silent_server_is_a_layer6_timeout() {
    let ca = TestCa::new("check ca");
    let dir = tempdir();
    let origin = SwitchOrigin::start(&ca, dir.path()).await;
    origin.set(SILENT);
    let connector = TlsConnector::for_checks(&settings(&ca_file(&ca, dir.path()))).unwrap();
    let check = TlsCheck::handshake(connector, Duration::from_millis(200));
    assert_eq!(check.check(origin.addr).await, Err(CheckError::L6Timeout));
    // A closed port is still a Layer4 problem.
    let dead = l7::dead_addr().await;
    assert_eq!(
        check.check(dead).await,
        Err(CheckError::L4Connection("Connection refused".into()))
    );
}

#[tokio::test]
async fn httpchk_goes_over_tls() {
    let ca = TestCa::new("check ca");
    let dir = tempdir();
    let origin = SwitchOrigin::start(&ca, dir.path()).await;
    let connector = TlsConnector::for_checks(&settings(&ca_file(&ca, dir.path()))).unwrap();
    let http = HttpCheck::from_httpchk_args(&["GET", "/health"])
        .unwrap()
        .expect_status("200")
        .unwrap();
    let (checker, mut rx) = spawn(
        TlsCheck::http(connector, http, Duration::from_secs(2)),
        origin.addr,
    );
    match first_check(&mut rx).await {
        HealthEvent::Checked { outcome, .. } => assert_eq!(
            outcome,
            Ok(CheckPass::Layer7 {
                status: 200,
                reason: "OK".into()
            })
        ),
        other => panic!("{other:?}"),
    }
    assert!(origin.tls_requests.load(Ordering::SeqCst) >= 1);

    origin.status.store(500, Ordering::SeqCst);
    let down = next_change(&mut rx).await;
    assert!(
        down.to_string()
            .starts_with("Server be/s1 is DOWN, reason: Layer7 wrong status, code: 500"),
        "{down}"
    );
    origin.status.store(200, Ordering::SeqCst);
    assert_eq!(next_change(&mut rx).await.to, Health::Up);

    // The handshake failing is reported as such, before any HTTP.
    origin.set(NOT_TLS);
    let down = next_change(&mut rx).await;
    assert!(
        down.to_string().contains("reason: Layer6 invalid response"),
        "{down}"
    );
    checker.shutdown().await;
}

/// Waits until the engine's view of server 0 of backend `b` is `up`.
async fn wait_state(proxy: &l7::Proxy, up: bool) {
    let backend = proxy.engine.backend("b").unwrap();
    let health = backend.health.get().expect("backend b is checked");
    let wait = async {
        while health.is_up(0) != up {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("server never became up={up}: {}", health.status(0)));
}

#[tokio::test]
async fn engine_checks_ssl_servers_over_tls() {
    let ca = TestCa::new("check ca");
    let dir = tempdir();
    let origin = SwitchOrigin::start(&ca, dir.path()).await;
    let ca_file = ca_file(&ca, dir.path());
    for httpchk in [false, true] {
        origin.set(TLS);
        let before = origin.tls_requests.load(Ordering::SeqCst);
        let cfg = format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n\
             frontend fe\n    bind 127.0.0.1:1\n    default_backend b\n\
             backend b\n{}    server s {} ssl verify required ca-file {} sni origin.weir.test check inter 20ms rise 1 fall 1\n",
            if httpchk { "    option httpchk GET /health\n" } else { "" },
            origin.addr,
            ca_file.display()
        );
        let proxy = l7::start_proxy(&cfg).await;
        wait_state(&proxy, true).await;
        let mut client = l7::Client::connect(proxy.addr).await;
        assert_eq!(client.get("/").await.status, 200, "httpchk={httpchk}");
        if httpchk {
            // Checks (besides the request) reach the origin as HTTP over TLS.
            let requests = origin.tls_requests.clone();
            timeout(Duration::from_secs(30), async move {
                while requests.load(Ordering::SeqCst) < before + 3 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("httpchk requests over TLS");
        }

        origin.set(NOT_TLS);
        wait_state(&proxy, false).await;
        let mut client = l7::Client::connect(proxy.addr).await;
        assert_eq!(client.get("/").await.status, 503, "httpchk={httpchk}");
        origin.set(TLS);
        wait_state(&proxy, true).await;
    }
}
