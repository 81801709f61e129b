//! Through a real `weir run` process: bodies are streamed, not buffered
//! (256 MiB up and 256 MiB down, while the peak RSS (VmHWM) stays far
//! below the body size); idle connections are cheap; `defer-accept`
//! listeners work.

#[path = "support/l7.rs"]
mod l7;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l7::{Client, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY: u64 = 256 * 1024 * 1024;

struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.0.kill(); // our own child, by handle
        let _ = self.0.wait();
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_body_streams_both_ways_in_bounded_memory() {
    let origin = Origin::start_on("big", "127.0.0.1:0".parse().unwrap(), false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("weir-l7-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("weir.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    threads 1\n    log-level warn\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend b\nbackend b\n    server s {}\n",
            origin.addr
        ),
    )
    .unwrap();
    let weir = Weir(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--no-xdp", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "weir did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = weir.0.id();
    let rss_before = peak_rss_kib(pid);

    // Upload: the origin counts the body without keeping it.
    let mut c = Client::connect(addr).await;
    c.send(
        format!("POST /sink HTTP/1.1\r\nHost: big\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
    )
    .await;
    let block = vec![b'u'; 1 << 20];
    for _ in 0..BODY / block.len() as u64 {
        c.stream.write_all(&block).await.unwrap();
    }
    let r = c.response().await.unwrap();
    assert_eq!((r.status, r.text()), (200, BODY.to_string()));
    // The whole body went through: keep-alive goes on (an answer racing the
    // last send once ended the connection here).
    assert_eq!(r.header("connection"), None, "{}", r.head);

    // Download, counted as it arrives.
    c.send(
        format!("GET /size/{BODY} HTTP/1.1\r\nHost: big\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let mut s: TcpStream = c.stream;
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut head_end = None;
    let mut head = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        if head_end.is_none() {
            head.extend_from_slice(&buf[..n]);
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head_end = Some(p + 4);
                total += (head.len() - p - 4) as u64;
            }
        } else {
            total += n as u64;
        }
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200 OK\r\n"),
        "download answered with {:?} (body bytes after the head: {total})",
        String::from_utf8_lossy(&head[..head.len().min(300)])
    );
    assert_eq!(total, BODY);

    let peak = peak_rss_kib(pid);
    eprintln!("weir peak RSS: {rss_before} KiB before, {peak} KiB after 2 x 256 MiB");
    assert!(
        peak < 48 * 1024,
        "peak RSS {peak} KiB: bodies are being buffered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Idle keep-alive connections (each served one request) give their
/// buffers back: the RSS growth per connection stays under 8 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_cost_under_8_kib_each() {
    const N: usize = 500;
    let origin = Origin::start_on("idle", "127.0.0.1:0".parse().unwrap(), false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("weir-l7-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("weir.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    threads 1\n    log-level warn\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend b\nbackend b\n    server s {}\n",
            origin.addr
        ),
    )
    .unwrap();
    let weir = Weir(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--no-xdp", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "weir did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warm up the allocator and the upstream pool with a few connections.
    for _ in 0..20 {
        let mut c = Client::connect(addr).await;
        assert_eq!(c.get("/warm").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(weir.0.id());
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = Client::connect(addr).await;
        assert_eq!(c.get(&format!("/r{i}")).await.status, 200);
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(weir.0.id());
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / N as f64;
    eprintln!("RSS {before} -> {after} KiB: {per_conn:.0} bytes per idle keep-alive connection");
    assert!(per_conn < 8192.0, "{per_conn:.0} bytes per idle connection");
    drop(clients);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bind ... defer-accept` (through the real listener set-up of `weir
/// run`): a client that speaks at once and one that connects, waits and
/// only then sends its request are both served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_defer_accept_listener_serves_prompt_and_late_speakers() {
    let origin = Origin::start("deferred").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("weir-l7-defer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("weir.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    threads 2\n    log-level warn\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind 127.0.0.1:{port} defer-accept\n    default_backend b\nbackend b\n    server s {}\n",
            origin.addr
        ),
    )
    .unwrap();
    let _weir = Weir(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--no-xdp", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // With deferred accepts a bare connect succeeds before weir has
    // accepted anything, so wait for a real answer instead.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), Client::connect_checked(addr)).await
        {
            c.send(b"GET /up HTTP/1.1\r\nHost: t\r\n\r\n").await;
            if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(2), c.response()).await {
                assert_eq!(r.status, 200);
                break;
            }
        }
        assert!(Instant::now() < deadline, "weir did not start serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..20 {
        let mut c = Client::connect(addr).await;
        assert_eq!(c.get(&format!("/prompt{i}")).await.status, 200);
    }
    let mut late = Client::connect(addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        late.get("/late").await.text(),
        "hello from deferred GET /late"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
