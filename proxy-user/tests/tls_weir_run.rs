//! The real `weir` binary terminating TLS on a `bind ... ssl` (TLS offload
//! in front of a plain origin), with SNI-selected certificates, and a
//! certificate reload on SIGHUP that new handshakes see while an
//! established connection keeps working.

mod tls_support;

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tls_support::{handshake, http_get, KeyKind, TestCa};

struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let mut weir = Weir(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--no-xdp", "-f"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start weir"),
    );
    let mut out = BufReader::new(weir.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut banner = String::new();
    while !banner.contains("Stop with") {
        assert!(Instant::now() < deadline, "no banner: {banner}");
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "weir exited: {banner}"
        );
        banner.push_str(&line);
    }
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
    unsafe { libc::kill(weir.0.id() as i32, libc::SIGHUP) };
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
    unsafe { libc::kill(weir.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = weir.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "weir did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
