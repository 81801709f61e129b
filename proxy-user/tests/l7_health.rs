//! Health of L7 servers end to end, on loopback: per-server check
//! settings, passive health (`observe`, `error-limit`, `on-error`) from
//! live traffic, and how connect timeouts are counted.

#[path = "support/l7.rs"]
mod l7;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use l7::{start_proxy, Client, Origin};
use proxy_user::proxy::upstream::BackendCtx;
use proxy_user::stats::Counter;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{sleep, timeout};

const DEFAULTS: &str = "defaults\n    mode http\n    timeout connect 500ms\n    timeout client 5s\n    timeout server 5s\n";

/// Polls `cond` every 5 ms for at most `limit`; true if it held.
async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// Stops `origin` and waits (bounded) until its port refuses connections.
async fn stop(origin: Origin) -> SocketAddr {
    let addr = origin.addr;
    drop(origin);
    for _ in 0..200 {
        match timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
            Ok(Err(_)) => return addr,
            _ => sleep(Duration::from_millis(5)).await,
        }
    }
    panic!("{addr} still accepts connections");
}

/// One GET on a new connection: (status, x-origin).
async fn get(proxy: SocketAddr, path: &str) -> (u16, String) {
    let mut c = Client::connect(proxy).await;
    let r = timeout(Duration::from_secs(5), c.get(path))
        .await
        .expect("a response within 5s");
    (r.status, r.header("x-origin").unwrap_or_default())
}

fn server_status(be: &BackendCtx, check_index: usize) -> String {
    be.health
        .get()
        .expect("checked backend")
        .status(check_index)
}

#[tokio::test]
async fn servers_go_down_at_their_own_inter_and_fall() {
    let quick = Origin::start("quick").await;
    let patient = Origin::start("patient").await;
    let cfg = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b
    server quick {} check inter 50ms fall 2 rise 1
    server patient {} check inter 300ms fall 3 rise 1
",
        quick.addr, patient.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    // Both checked at least once while up.
    assert!(
        wait_for(Duration::from_secs(2), || quick.accepted() >= 1
            && patient.accepted() >= 1)
        .await
    );
    // Failures start once each origin is gone, so after `stopped`.
    let stopped = Instant::now();
    let (quick_addr, patient_addr) = (stop(quick).await, stop(patient).await);

    // quick: 2 failures 50 ms apart. patient: its 3rd failure comes at
    // least 2 x 300 ms after its first one.
    assert!(
        wait_for(Duration::from_secs(2), || !be.is_up(0)).await,
        "quick DOWN"
    );
    let quick_down = stopped.elapsed();
    assert!(
        be.is_up(1),
        "patient still UP when quick went DOWN ({quick_down:?})"
    );
    assert!(
        quick_down < Duration::from_millis(500),
        "quick DOWN after {quick_down:?}"
    );
    assert!(
        wait_for(Duration::from_secs(3), || !be.is_up(1)).await,
        "patient DOWN"
    );
    let patient_down = stopped.elapsed();
    assert!(
        patient_down >= Duration::from_millis(600),
        "patient DOWN after {patient_down:?}, before 3 failed checks could happen"
    );
    assert_eq!(be.servers[0].counters.get(Counter::DownTransitions), 1);
    // quick checks more often: by now it failed more checks than patient.
    let fails = |i: usize| be.servers[i].counters.get(Counter::CheckFailures);
    assert!(
        fails(0) > fails(1),
        "quick {} vs patient {}",
        fails(0),
        fails(1)
    );

    // Both return: UP again at the next passing check (rise 1).
    let _quick = Origin::start_on("quick", quick_addr, false).await;
    let _patient = Origin::start_on("patient", patient_addr, false).await;
    assert!(wait_for(Duration::from_secs(3), || be.is_up(0) && be.is_up(1)).await);
}

#[tokio::test]
async fn observe_layer4_marks_down_after_error_limit_connect_failures() {
    let bad = Origin::start("bad").await;
    let good = Origin::start("good").await;
    // inter 10s: after the first (passing) check, only live traffic can
    // mark `bad` DOWN; fastinter/downinter bring it back quickly.
    let cfg = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b
    retries 0
    server bad {} check inter 10s fastinter 50ms downinter 50ms rise 2 fall 3 observe layer4 error-limit 3 on-error mark-down
    server good {}
",
        bad.addr, good.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || bad.accepted() >= 1).await,
        "first check"
    );
    let bad_addr = stop(bad).await;

    // Round robin alternates: every request to `bad` is a refused connect
    // (retries 0: a 503), until the third one marks it DOWN.
    let mut refused = 0;
    for _ in 0..6 {
        let (status, origin) = get(proxy.addr, "/").await;
        match status {
            503 => {
                refused += 1;
                assert_eq!(be.is_up(0), refused < 3, "DOWN exactly at the 3rd failure");
            }
            200 => assert_eq!(origin, "good"),
            s => panic!("status {s}"),
        }
    }
    assert_eq!(refused, 3);
    assert_eq!(be.servers[0].counters.get(Counter::ConnectErrors), 3);
    assert!(
        wait_for(Duration::from_secs(1), || {
            be.servers[0].counters.get(Counter::DownTransitions) == 1
        })
        .await
    );
    // Traffic avoids it now (checks keep failing while it is away).
    for _ in 0..4 {
        assert_eq!(get(proxy.addr, "/").await, (200, "good".into()));
    }
    assert!(!be.is_up(0));

    // Back: two passing checks (downinter, then fastinter) bring it UP.
    let _bad = Origin::start_on("bad", bad_addr, false).await;
    assert!(
        wait_for(Duration::from_secs(3), || be.is_up(0)).await,
        "UP again"
    );
    let mut seen_bad = false;
    for _ in 0..4 {
        seen_bad |= get(proxy.addr, "/").await == (200, "bad".into());
    }
    assert!(seen_bad, "traffic reaches it again");
}

#[tokio::test]
async fn observe_layer7_counts_5xx_and_invalid_responses() {
    let o = Origin::start("o").await;
    // rise 2 with fastinter 500ms: after a mark-down the server stays DOWN
    // for at least ~1 s, long enough to look at it.
    let cfg = format!(
        "{DEFAULTS}frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b
    server s {} check inter 10s fastinter 500ms rise 2 observe layer7 error-limit 3 on-error mark-down
",
        o.addr
    );
    let proxy = start_proxy(&cfg).await;
    let be = proxy.engine.backend("b").unwrap();
    let mut c = Client::connect(proxy.addr).await;
    // 5xx statuses are errors, except 501 and 505; 1xx-4xx are successes,
    // and a success resets the count.
    assert_eq!(c.get("/status/500").await.status, 500);
    assert_eq!(c.get("/status/501").await.status, 501);
    assert_eq!(c.get("/status/503").await.status, 503);
    assert_eq!(c.get("/status/502").await.status, 502);
    assert!(be.is_up(0), "501 reset the count: two errors so far");
    assert_eq!(c.get("/status/404").await.status, 404);
    assert_eq!(c.get("/status/504").await.status, 504);
    assert_eq!(c.get("/status/599").await.status, 599);
    assert!(be.is_up(0), "two consecutive errors: still UP");
    // Broken framing is the third: DOWN before the 502 reaches us.
    let broken = l7::send_raw(proxy.addr, b"GET /broken HTTP/1.1\r\nHost: w\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&broken).starts_with("HTTP/1.1 502 "));
    assert!(!be.is_up(0), "{}", server_status(&be, 0));
    assert_eq!(
        l7::send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: w\r\n\r\n").await[..12],
        *b"HTTP/1.1 503"
    );
    assert!(
        wait_for(Duration::from_secs(1), || {
            be.servers[0].counters.get(Counter::DownTransitions) == 1
        })
        .await
    );
    // The origin is fine: active checks bring it back.
    assert!(
        wait_for(Duration::from_secs(3), || be.is_up(0)).await,
        "UP again"
    );
    let mut c = Client::connect(proxy.addr).await;
    assert_eq!(c.get("/").await.status, 200);
}

/// A listener whose accept queue is full (nobody accepts): further SYNs
/// are dropped, so a connect to it hangs until its timeout, on loopback.
/// Returns the listener and the connections filling its queue (keep both).
async fn full_backlog() -> (TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut filling = Vec::new();
    loop {
        match timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => filling.push(s),
            Ok(Err(e)) => panic!("connect to the backlog listener: {e}"),
            Err(_) => return (listener, filling),
        }
        assert!(filling.len() < 64, "the accept queue never filled");
    }
}

#[tokio::test]
async fn connect_timeout_is_a_connect_error_and_a_layer4_failure() {
    let (listener, _filling) = full_backlog().await;
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 200ms\n    timeout client 5s\n    timeout server 5s
frontend fe\n    bind 127.0.0.1:1\n    default_backend b\nbackend b
    retries 0
    server s {} check inter 10s observe layer4 error-limit 1 on-error mark-down
",
        listener.local_addr().unwrap()
    );
    let proxy = start_proxy(&cfg).await;
    let be: Arc<BackendCtx> = proxy.engine.backend("b").unwrap();
    let started = Instant::now();
    let (status, _) = get(proxy.addr, "/").await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited for timeout connect"
    );
    // HAProxy's econ, on server and backend; not a timeout.
    assert_eq!(be.servers[0].counters.get(Counter::ConnectErrors), 1);
    assert_eq!(be.counters.get(Counter::ConnectErrors), 1);
    assert_eq!(be.servers[0].counters.get(Counter::Timeouts), 0);
    assert_eq!(be.counters.get(Counter::Timeouts), 0);
    // And an L4 error for passive health (error-limit 1, mark-down).
    assert!(!be.is_up(0), "{}", server_status(&be, 0));
}

/// A backend whose only server fails its HTTP check (`/status/503`) from
/// the start: UP at first, DOWN after `fall 2` checks 150 ms apart.
fn failing_check_backend(origin: SocketAddr, shutdown: bool) -> String {
    let option = if shutdown {
        " on-marked-down shutdown-sessions"
    } else {
        ""
    };
    format!(
        "{DEFAULTS}
frontend fe
    bind 127.0.0.1:1
    option httplog
    default_backend b
backend b
    option httpchk GET /status/503
    http-check expect status 200
    server s1 {origin} check inter 150ms fall 2 rise 1{option}
"
    )
}

#[tokio::test]
async fn on_marked_down_shutdown_sessions_cuts_the_exchange_in_flight() {
    l7::capture_access_log();
    let o = Origin::start("o").await;
    let proxy = start_proxy(&failing_check_backend(o.addr, true)).await;
    let be = proxy.engine.backend("b").unwrap();
    let mut c = Client::connect(proxy.addr).await;
    let started = Instant::now();
    c.send(b"GET /slow/4000 HTTP/1.1\r\nHost: w\r\n\r\n").await;
    // Marked DOWN after about 300 ms: the request (4 s at the origin) is
    // cut off then, with a 502 since nothing of the response was sent.
    let r = c.response().await.expect("an answer");
    let took = started.elapsed();
    assert_eq!(r.status, 502, "{}", r.head);
    assert!(took < Duration::from_secs(2), "cut off after {took:?}");
    assert!(!be.is_up(0));
    assert!(c.is_closed().await, "the client connection ends");
    assert!(
        wait_for(Duration::from_secs(2), || {
            !l7::lines_with("/slow/4000").is_empty()
        })
        .await
    );
    let line = &l7::lines_with("/slow/4000")[0];
    // HAProxy's termination 'D': killed because the server went DOWN.
    assert!(line.contains(" 502 ") && line.contains(" D"), "{line}");
}

#[tokio::test]
async fn without_shutdown_sessions_the_exchange_in_flight_completes() {
    let o = Origin::start("o").await;
    let proxy = start_proxy(&failing_check_backend(o.addr, false)).await;
    let be = proxy.engine.backend("b").unwrap();
    let mut c = Client::connect(proxy.addr).await;
    c.send(b"GET /slow/1200 HTTP/1.1\r\nHost: w\r\n\r\n").await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.head);
    // The server did go DOWN meanwhile; only new requests avoid it.
    assert!(!be.is_up(0));
}
