//! The real `weir` binary terminating TLS on a `bind ... ssl` (TLS offload
//! in front of a plain origin), with SNI-selected certificates, and a
//! certificate reload on SIGHUP that new handshakes see while an
//! established connection keeps working.

mod tls_support;
#[path = "support/weir_process.rs"]
mod weir_process;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tls_support::{handshake, http_get, KeyKind, TestCa};
use weir_process::{free_port, Weir};

#[tokio::test]
async fn weir_terminates_tls_by_sni_and_reloads_certificates_on_sighup() {
    let dir = tls_support::tempdir();
    let ca = TestCa::new("weir test ca");
    let a = dir.path().join("a.pem");
    let b = dir.path().join("b.pem");
    ca.leaf(&["a.weir.test"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &a);
    ca.leaf(&["*.b.weir.test"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &b);
    let (fe, origin) = (free_port(), free_port());
    let cfg = dir.path().join("weir.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    instance tls-run-{pid}\n    demo-origin o1 127.0.0.1:{origin}\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend tls\n    guid tls-fe\n    bind 127.0.0.1:{fe} ssl crt {a} crt {b}\n    default_backend o\n\
             backend o\n    guid tls-be\n    server o1 127.0.0.1:{origin} guid tls-o1\n",
            pid = std::process::id(),
            a = a.display(),
            b = b.display(),
        ),
    )
    .unwrap();
    let mut weir = Weir::start(&cfg);
    let addr: SocketAddr = format!("127.0.0.1:{fe}").parse().unwrap();
    let client = Arc::new(ca.client_config());

    // SNI picks the certificate; requests reach the plain origin.
    let mut conn_a = handshake(addr, client.clone(), Some("a.weir.test"))
        .await
        .unwrap();
    assert_eq!(conn_a.served_names(), vec!["a.weir.test"]);
    let mut conn_b = handshake(addr, client.clone(), Some("x.b.weir.test"))
        .await
        .unwrap();
    assert_eq!(conn_b.served_names(), vec!["*.b.weir.test"]);
    let reply = http_get(&mut conn_b.stream).await;
    assert!(reply.contains("hello from o1"), "{reply}");

    // Replace a.pem with a certificate for another name, then SIGHUP.
    ca.leaf(&["a.weir.test", "new.weir.test"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &a);
    // SAFETY: kill(2) on the PID of the child we spawned.
    unsafe { libc::kill(weir.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = handshake(addr, client.clone(), Some("a.weir.test"))
            .await
            .unwrap();
        if c.served_names().contains(&"new.weir.test".to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection made before the reload still works.
    let reply = http_get(&mut conn_a.stream).await;
    assert!(reply.contains("hello from o1"), "{reply}");

    // SAFETY: as above.
    unsafe { libc::kill(weir.pid() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = weir.try_wait() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "weir did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
