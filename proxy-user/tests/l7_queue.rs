//! Server selection with `maxconn`, queues and backup servers, the HAProxy
//! way, over real loopback sockets: full actives make requests wait (never
//! spill to a backup), only the first backup serves unless `option
//! allbackups`, hashing waits for its own server, waiters are served in
//! arrival order, and queue timeouts are 503s counted as failed connections.

#[path = "support/l7.rs"]
mod l7;

use std::sync::Arc;
use std::time::{Duration, Instant};

use l7::{dead_addr, start_proxy, Client, Origin, Response};
use proxy_user::proxy::upstream::BackendCtx;
use proxy_user::stats::Counter;
use tokio::task::JoinHandle;

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n";

/// Bound for every wait on the proxy's state.
const WAIT_LIMIT: Duration = Duration::from_secs(4);

/// One request on its own connection (`extra`: header lines, each ending
/// in CRLF).
async fn request(addr: std::net::SocketAddr, path: &str, extra: &str) -> Response {
    let mut c = Client::connect(addr).await;
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: q\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    )
    .await;
    c.response().await.expect("a response")
}

fn spawn_request(addr: std::net::SocketAddr, path: &str, extra: &str) -> JoinHandle<Response> {
    let (path, extra) = (path.to_owned(), extra.to_owned());
    tokio::spawn(async move { request(addr, &path, &extra).await })
}

/// Polls `cond` until it holds; fails the test after [`WAIT_LIMIT`].
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn backend_queue(be: &BackendCtx) -> u64 {
    be.queued.load(std::sync::atomic::Ordering::Relaxed)
}

fn server_queue(be: &BackendCtx, i: usize) -> u64 {
    be.servers[i]
        .queued
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Nothing left counted: no in-flight slot, nobody waiting.
fn assert_idle(be: &BackendCtx) {
    for i in 0..be.servers.len() {
        assert_eq!(be.active(i), 0, "server {i} still counts a request");
        assert_eq!(server_queue(be, i), 0, "server {i} queue");
    }
    assert_eq!(backend_queue(be), 0);
    assert_eq!(be.waiting(), 0);
}

async fn wait_down(be: &Arc<BackendCtx>, i: usize) {
    wait_until("the server to be marked down", || !be.is_up(i)).await;
}

#[tokio::test]
async fn full_actives_make_requests_wait_and_the_backup_gets_none() {
    let (a1, a2, spare) = (
        Origin::start("a1").await,
        Origin::start("a2").await,
        Origin::start("spare").await,
    );
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    timeout queue 3s
    server a1 {} maxconn 1
    server a2 {} maxconn 1
    server spare {} backup
",
        a1.addr, a2.addr, spare.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| spawn_request(proxy.addr, "/slow/150", ""))
        .collect();
    // Two in flight, four waiting in the backend queue (not on the backup).
    wait_until("four queued requests", || backend_queue(&be) == 4).await;
    assert_eq!((be.active(0), be.active(1), be.active(2)), (1, 1, 0));
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        let origin = r.header("x-origin").unwrap();
        assert!(origin == "a1" || origin == "a2", "{origin}");
    }
    assert_eq!(
        spare.accepted(),
        0,
        "the backup is not used while actives are UP"
    );
    assert_eq!((a1.max_concurrent(), a2.max_concurrent()), (1, 1));
    assert_idle(&be);
}

#[tokio::test]
async fn only_the_first_backup_serves_unless_allbackups() {
    let dead = dead_addr().await;
    let (b1, b2, c1, c2) = (
        Origin::start("b1").await,
        Origin::start("b2").await,
        Origin::start("c1").await,
        Origin::start("c2").await,
    );
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    use_backend all if {{ hdr(x-all) -m found }}
    default_backend first
backend first
    server a {dead} check inter 50ms rise 1 fall 1
    server b1 {} backup
    server b2 {} backup
backend all
    option allbackups
    server a {dead} check inter 50ms rise 1 fall 1
    server c1 {} backup
    server c2 {} backup
",
        b1.addr, b2.addr, c1.addr, c2.addr
    );
    let proxy = start_proxy(&cfg).await;
    let (first, all) = (
        proxy.engine.backend("first").unwrap(),
        proxy.engine.backend("all").unwrap(),
    );
    wait_down(&first, 0).await;
    wait_down(&all, 0).await;
    for _ in 0..6 {
        let r = request(proxy.addr, "/", "").await;
        assert_eq!(r.header("x-origin").as_deref(), Some("b1"));
    }
    assert_eq!(b2.accepted(), 0, "only the first backup serves");
    let mut c = Client::connect(proxy.addr).await;
    let mut by_origin = std::collections::HashMap::new();
    for _ in 0..6 {
        c.send(b"GET / HTTP/1.1\r\nHost: q\r\nX-All: 1\r\n\r\n")
            .await;
        let r = c.response().await.unwrap();
        *by_origin.entry(r.header("x-origin").unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by_origin.get("c1"), Some(&3), "{by_origin:?}");
    assert_eq!(by_origin.get("c2"), Some(&3), "{by_origin:?}");
}

#[tokio::test]
async fn uri_hash_waits_for_its_own_full_server() {
    let (s1, s2) = (Origin::start("s1").await, Origin::start("s2").await);
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    balance uri
    timeout queue 3s
    server s1 {} maxconn 1
    server s2 {} maxconn 1
",
        s1.addr, s2.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let started = Instant::now();
    let first = spawn_request(proxy.addr, "/slow/300", "");
    wait_until("the first request in flight", || {
        be.active(0) + be.active(1) == 1
    })
    .await;
    let owner = usize::from(be.active(1) == 1);
    let second = spawn_request(proxy.addr, "/slow/300", "");
    // It waits on the owner's own queue although the other server is idle.
    wait_until("the second request queued on its server", || {
        server_queue(&be, owner) == 1
    })
    .await;
    assert_eq!(backend_queue(&be), 0);
    assert_eq!(be.active(1 - owner), 0);
    let (r1, r2) = (first.await.unwrap(), second.await.unwrap());
    let name = ["s1", "s2"][owner];
    assert_eq!(r1.header("x-origin").as_deref(), Some(name));
    assert_eq!(r2.header("x-origin").as_deref(), Some(name));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "served one after the other"
    );
    assert_eq!([&s1, &s2][1 - owner].accepted(), 0);
    assert_idle(&be);
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    timeout queue 3s
    server s {} maxconn 1
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let blocker = spawn_request(proxy.addr, "/slow/200", "X-Seq: blocker\r\n");
    wait_until("the blocker in flight", || be.active(0) == 1).await;
    let mut waiters = Vec::new();
    for i in 0..5u64 {
        waiters.push(spawn_request(
            proxy.addr,
            "/slow/10",
            &format!("X-Seq: w{i}\r\n"),
        ));
        // Each is in line before the next one arrives.
        wait_until("the waiter queued", || backend_queue(&be) == i + 1).await;
    }
    assert_eq!(blocker.await.unwrap().status, 200);
    for w in waiters {
        assert_eq!(w.await.unwrap().status, 200);
    }
    let seen = o.received_text().to_ascii_lowercase();
    let at: Vec<usize> = (0..5)
        .map(|i| seen.find(&format!("x-seq: w{i}\r\n")).expect("forwarded"))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "order seen by the server: {seen}"
    );
    assert_eq!(o.max_concurrent(), 1);
    assert_idle(&be);
}

#[tokio::test]
async fn queue_timeout_and_no_server_are_503s_counted_as_failed_connections() {
    let o = Origin::start("o").await;
    let dead = dead_addr().await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    use_backend hashed if {{ path_beg /slow/1000 }} || {{ hdr(x-hashed) -m found }}
    use_backend down if {{ hdr(x-down) -m found }}
    default_backend b
backend b
    timeout queue 100ms
    server s {a} maxconn 1
backend hashed
    balance uri
    timeout queue 100ms
    server h {a} maxconn 1 maxqueue 1
backend down
    server d {dead} check inter 50ms rise 1 fall 1
",
        a = o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let (b, hashed, down) = (
        proxy.engine.backend("b").unwrap(),
        proxy.engine.backend("hashed").unwrap(),
        proxy.engine.backend("down").unwrap(),
    );

    // Backend queue timeout: the backend counts a failed connection.
    let blocker = spawn_request(proxy.addr, "/slow/400", "");
    wait_until("the blocker in flight", || b.active(0) == 1).await;
    let waited = Instant::now();
    let r = request(proxy.addr, "/x", "").await;
    assert_eq!(r.status, 503);
    assert!(waited.elapsed() >= Duration::from_millis(100));
    assert_eq!(b.counters.get(Counter::ConnectErrors), 1);
    assert_eq!(b.counters.get(Counter::Denied), 0);
    assert_eq!(b.servers[0].counters.get(Counter::ConnectErrors), 0);
    assert_eq!(blocker.await.unwrap().status, 200);

    // Server queue (hashing): the server counts it too; past `maxqueue`
    // the request is refused at once.
    let blocker = spawn_request(proxy.addr, "/slow/1000", "");
    wait_until("the hashed blocker in flight", || hashed.active(0) == 1).await;
    let queued = spawn_request(proxy.addr, "/slow/1000", "");
    wait_until("one request in the server queue", || {
        server_queue(&hashed, 0) == 1
    })
    .await;
    let refused = Instant::now();
    let r = request(proxy.addr, "/slow/1000", "").await;
    assert_eq!(r.status, 503);
    assert!(
        refused.elapsed() < Duration::from_millis(90),
        "maxqueue refuses at once"
    );
    assert_eq!(queued.await.unwrap().status, 503, "queue timeout");
    assert_eq!(hashed.counters.get(Counter::ConnectErrors), 2);
    assert_eq!(hashed.servers[0].counters.get(Counter::ConnectErrors), 2);
    assert_eq!(blocker.await.unwrap().status, 200);

    // No usable server: a failed connection of the backend, not a denial.
    wait_down(&down, 0).await;
    let r = request(proxy.addr, "/", "X-Down: 1\r\n").await;
    assert_eq!(r.status, 503);
    assert_eq!(down.counters.get(Counter::ConnectErrors), 1);
    assert_eq!(down.counters.get(Counter::Denied), 0);
    assert_eq!(proxy.frontend.counters.get(Counter::Denied), 0);
    assert_idle(&b);
    assert_idle(&hashed);
}

/// An origin whose listener can be closed while the requests it already
/// accepted go on (so health checks fail but nothing in flight ends).
struct ClosableOrigin {
    addr: std::net::SocketAddr,
    listener: JoinHandle<()>,
}

impl ClosableOrigin {
    async fn start(name: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_slow(stream, name));
            }
        });
        Self { addr, listener }
    }

    /// New connections are refused from now on.
    fn close(&self) {
        self.listener.abort();
    }
}

impl Drop for ClosableOrigin {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Answers `GET /slow/MS` requests after MS milliseconds.
async fn serve_slow(mut stream: tokio::net::TcpStream, name: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match tokio::time::timeout(WAIT_LIMIT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let ms = head
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/slow/"))
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let body = format!("slow from {name}");
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-origin: {name}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn waiters_of_a_server_that_goes_down_are_sent_elsewhere() {
    let origins = [
        ClosableOrigin::start("s1").await,
        ClosableOrigin::start("s2").await,
    ];
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    balance uri
    timeout queue 3s
    server s1 {} maxconn 1 check inter 50ms rise 1 fall 1
    server s2 {} maxconn 1 check inter 50ms rise 1 fall 1
",
        origins[0].addr, origins[1].addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let blocker = spawn_request(proxy.addr, "/slow/1500", "");
    wait_until("the blocker in flight", || be.active(0) + be.active(1) == 1).await;
    let owner = usize::from(be.active(1) == 1);
    let waited = Instant::now();
    let waiter = spawn_request(proxy.addr, "/slow/1500", "");
    wait_until("the waiter on its server", || server_queue(&be, owner) == 1).await;
    // The owner stops accepting (its request in flight goes on): once it
    // is DOWN the waiter goes back to the balancer, which now hashes it to
    // the other server, long before the blocker would have finished.
    origins[owner].close();
    wait_down(&be, owner).await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-origin").as_deref(),
        Some(["s1", "s2"][1 - owner])
    );
    assert!(
        waited.elapsed() < Duration::from_millis(2900),
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(blocker.await.unwrap().status, 200);
    assert_idle(&be);
}

#[tokio::test]
async fn waiters_get_their_503_at_once_when_no_server_is_left() {
    let origin = ClosableOrigin::start("s").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    timeout queue 3s
    server s {} maxconn 1 check inter 50ms rise 1 fall 1
",
        origin.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let blocker = spawn_request(proxy.addr, "/slow/1500", "");
    wait_until("the blocker in flight", || be.active(0) == 1).await;
    let waited = Instant::now();
    let waiter = spawn_request(proxy.addr, "/", "");
    wait_until("the waiter queued", || backend_queue(&be) == 1).await;
    origin.close();
    wait_down(&be, 0).await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status, 503);
    assert!(
        waited.elapsed() < Duration::from_millis(1000),
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(be.counters.get(Counter::ConnectErrors), 1);
    assert_eq!(blocker.await.unwrap().status, 200);
    assert_idle(&be);
}

// Two runtime threads: sessions (and so hand-offs) run on both, as with
// several L7 workers sharing a backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_never_lost_when_waiters_time_out_around_hand_offs() {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    default_backend b
backend b
    timeout queue 30ms
    server s {} maxconn 2
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    // Service time close to the queue timeout: waiters time out while
    // slots are being handed to them.
    let tasks: Vec<_> = (0..40)
        .map(|_| spawn_request(proxy.addr, "/slow/12", ""))
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap().status {
            200 => ok += 1,
            503 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((2..40).contains(&ok), "some served, some timed out: {ok}");
    assert!(o.max_concurrent() <= 2);
    assert_idle(&be);
    // Both slots still usable.
    let a = spawn_request(proxy.addr, "/slow/50", "");
    let b = spawn_request(proxy.addr, "/slow/50", "");
    assert_eq!(
        (a.await.unwrap().status, b.await.unwrap().status),
        (200, 200)
    );
}
