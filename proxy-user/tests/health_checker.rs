//! The health-check runner end to end: scripted checks on paused time for
//! exact rise/fall timing, real sockets on 127.0.0.1 for TCP and HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proxy_user::health::checker::{
    CheckedServer, CheckerConfig, HealthChecker, HealthEvent, StateChange, Target,
};
use proxy_user::health::http::HttpCheck;
use proxy_user::health::passive::{Observation, Observe, OnError, Passive};
use proxy_user::health::state::{Cause, Health, Thresholds};
use proxy_user::health::tcp::TcpCheck;
use proxy_user::health::{AnyCheck, CheckError, CheckOutcome, CheckPass, HealthCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// A check whose result the test flips; counts calls.
#[derive(Clone, Default)]
struct Scripted {
    healthy: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl HealthCheck for Scripted {
    async fn check(&self, _addr: SocketAddr) -> CheckOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.healthy.load(Ordering::SeqCst) {
            Ok(CheckPass::Layer4)
        } else {
            Err(CheckError::L4Connection("Connection refused".into()))
        }
    }
}

fn target(name: &str, addr: SocketAddr, backup: bool) -> Target {
    Target {
        name: name.into(),
        addr,
        backup,
    }
}

fn dummy_addr() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

/// Next state change, skipping `Checked` events; bounded wait.
async fn next_change(rx: &mut mpsc::UnboundedReceiver<HealthEvent>) -> StateChange {
    let wait = async {
        loop {
            match rx.recv().await.expect("checker alive") {
                HealthEvent::StateChanged(c) => return c,
                HealthEvent::Checked { .. } => {}
            }
        }
    };
    timeout(Duration::from_secs(60), wait)
        .await
        .expect("state change within 60s")
}

#[tokio::test(start_paused = true)]
async fn fall_and_rise_happen_exactly_at_thresholds() {
    let check = Scripted::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_secs(1),
        fastinter: None,
        downinter: Some(Duration::from_secs(5)),
        thresholds: Thresholds {
            rise: 2,
            fall: 3,
            initial: Health::Up,
            passive: None,
        },
    };
    let t0 = Instant::now();
    let checker = HealthChecker::spawn(
        "be",
        vec![target("s1", dummy_addr(), false)],
        check.clone(),
        cfg,
        tx,
    );
    let h = checker.handle();
    assert!(h.is_up(0), "starts UP");

    // Checks at t=0,1,2 fail: DOWN exactly at the third, t=2s.
    let down = next_change(&mut rx).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(check.calls.load(Ordering::SeqCst), 3);
    assert_eq!(down.to, Health::Down);
    assert!(!h.is_up(0));
    assert_eq!(
        down.to_string(),
        "Server be/s1 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", \
         check duration: 0ms. 0 active and 0 backup servers left."
    );

    // Healthy again. Fully DOWN, checks run every downinter (5s): t=7 is
    // the first success; now "DOWN 1/2" is a transition, which uses
    // fastinter (unset, so inter = 1s): t=8 is the second -> UP at 8s.
    check.healthy.store(true, Ordering::SeqCst);
    let up = next_change(&mut rx).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(8));
    assert_eq!(check.calls.load(Ordering::SeqCst), 5);
    assert_eq!(up.to, Health::Up);
    assert_eq!(
        up.to_string(),
        "Server be/s1 is UP, reason: Layer4 check passed, check duration: 0ms. \
         1 active and 0 backup servers online."
    );
    checker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn every_server_uses_its_own_inter_fall_and_downinter() {
    let check = Arc::new(Scripted::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = |inter: u64, fall: u32, downinter: Option<u64>| CheckerConfig {
        inter: Duration::from_secs(inter),
        fastinter: None,
        downinter: downinter.map(Duration::from_secs),
        thresholds: Thresholds {
            rise: 1,
            fall,
            ..Thresholds::default()
        },
    };
    let servers = vec![
        CheckedServer {
            target: target("fast", dummy_addr(), false),
            check: check.clone(),
            config: cfg(1, 2, Some(7)),
        },
        CheckedServer {
            target: target("slow", dummy_addr(), false),
            check: check.clone(),
            config: cfg(4, 3, None),
        },
    ];
    let t0 = Instant::now();
    let checker = HealthChecker::spawn_each("be", servers, tx);
    // "fast" (server 0 of 2) checks at t=0,1: DOWN at 1s (fall 2).
    // "slow" starts after its own inter·1/2 = 2s and checks at t=2,6,10:
    // DOWN at 10s (fall 3).
    let first = next_change(&mut rx).await;
    assert_eq!((first.name.as_str(), first.to), ("fast", Health::Down));
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    let second = next_change(&mut rx).await;
    assert_eq!((second.name.as_str(), second.to), ("slow", Health::Down));
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    // Healthy again from t=10. "slow" has no downinter: inter (4s) from
    // t=10 -> UP at 14s (rise 1). "fast" is fully DOWN and checks every
    // downinter (7s) from t=1: t=8 still failed, t=15 passes -> UP.
    check.healthy.store(true, Ordering::SeqCst);
    let up = next_change(&mut rx).await;
    assert_eq!((up.name.as_str(), up.to), ("slow", Health::Up));
    assert_eq!(t0.elapsed(), Duration::from_secs(14));
    let up = next_change(&mut rx).await;
    assert_eq!((up.name.as_str(), up.to), ("fast", Health::Up));
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    checker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fastinter_while_transitioning_and_checked_events() {
    let check = Scripted::default();
    check.healthy.store(true, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_secs(10),
        fastinter: Some(Duration::from_secs(1)),
        downinter: None,
        thresholds: Thresholds {
            rise: 1,
            fall: 2,
            initial: Health::Up,
            passive: None,
        },
    };
    let t0 = Instant::now();
    let checker = HealthChecker::spawn(
        "be",
        vec![target("s1", dummy_addr(), false)],
        check.clone(),
        cfg,
        tx,
    );
    // t=0 passes (no change), next check at t=10.
    match rx.recv().await.unwrap() {
        HealthEvent::Checked {
            server, outcome, ..
        } => assert_eq!((server, outcome), (0, Ok(CheckPass::Layer4))),
        e => panic!("{e:?}"),
    }
    check.healthy.store(false, Ordering::SeqCst);
    // t=10 fails (UP 1/2) -> fastinter -> t=11 fails -> DOWN.
    let down = next_change(&mut rx).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(11));
    assert_eq!(down.to, Health::Down);
    checker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn passive_errors_mark_down_and_checks_bring_back() {
    let check = Scripted::default();
    check.healthy.store(true, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_secs(2),
        thresholds: Thresholds {
            rise: 2,
            fall: 3,
            initial: Health::Up,
            passive: Some(Passive {
                observe: Observe::Layer4,
                error_limit: 3,
                on_error: OnError::MarkDown,
            }),
        },
        ..CheckerConfig::default()
    };
    let checker = HealthChecker::spawn(
        "web",
        vec![
            target("s1", dummy_addr(), false),
            target("s2", dummy_addr(), false),
            target("b1", dummy_addr(), true),
        ],
        check.clone(),
        cfg,
        tx,
    );
    let h = checker.handle();
    h.observe(0, Observation::ConnectFailed);
    h.observe(0, Observation::ConnectFailed);
    h.observe(0, Observation::ConnectOk); // streak broken
    h.observe(0, Observation::ConnectFailed);
    // Not a layer4 event: ignored, the streak goes on.
    h.observe(0, Observation::HttpOk);
    h.observe(0, Observation::HttpStatus);
    h.observe(0, Observation::ConnectFailed);
    assert!(h.is_up(0));
    h.observe(0, Observation::ConnectFailed);
    assert!(!h.is_up(0));
    assert_eq!(h.up_servers(), vec![false, true, true]);
    let down = next_change(&mut rx).await;
    assert_eq!(down.server, 0);
    assert_eq!(down.check_duration, None);
    assert_eq!(
        down.cause,
        Cause::Passive {
            errors: 3,
            last: Observation::ConnectFailed
        }
    );
    assert_eq!(
        down.to_string(),
        "Server web/s1 is DOWN, reason: Health analyze, info: \"Detected 3 consecutive errors, \
         last one was: L4 unsuccessful connection\". 1 active and 1 backup servers left."
    );
    // Active checks pass: UP again after `rise` (2) of them.
    let up = next_change(&mut rx).await;
    assert_eq!((up.server, up.to), (0, Health::Up));
    assert_eq!(h.up_servers(), vec![true, true, true]);
    checker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn on_error_brings_the_next_check_forward_to_fastinter() {
    let check = Scripted::default();
    check.healthy.store(true, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_secs(10),
        fastinter: Some(Duration::from_secs(1)),
        downinter: None,
        thresholds: Thresholds {
            rise: 1,
            fall: 2,
            initial: Health::Up,
            passive: Some(Passive {
                observe: Observe::Layer7,
                error_limit: 2,
                on_error: OnError::FailCheck,
            }),
        },
    };
    let t0 = Instant::now();
    let checker = HealthChecker::spawn(
        "be",
        vec![target("s1", dummy_addr(), false)],
        check.clone(),
        cfg,
        tx,
    );
    let h = checker.handle();
    // The t=0 check passes; the next is due at t=10.
    assert!(matches!(rx.recv().await, Some(HealthEvent::Checked { .. })));
    tokio::time::sleep(Duration::from_secs(3)).await;
    check.healthy.store(false, Ordering::SeqCst);
    // Two 5xx at t=3: fail-check (UP 1/2) and the next check moves to t=4,
    // which fails -> DOWN at 4s instead of 10s.
    h.observe(0, Observation::HttpStatus);
    h.observe(0, Observation::HttpStatus);
    assert_eq!(h.status(0), "UP 1/2");
    let down = next_change(&mut rx).await;
    assert_eq!(down.to, Health::Down);
    assert_eq!(t0.elapsed(), Duration::from_secs(4));
    assert_eq!(check.calls.load(Ordering::SeqCst), 2);
    checker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn backup_server_log_line_and_start_down() {
    let check = Scripted::default();
    check.healthy.store(true, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        thresholds: Thresholds {
            rise: 1,
            initial: Health::Down,
            ..Thresholds::default()
        },
        ..CheckerConfig::default()
    };
    let checker =
        HealthChecker::spawn("be", vec![target("b1", dummy_addr(), true)], check, cfg, tx);
    assert!(!checker.handle().is_up(0));
    let up = next_change(&mut rx).await;
    assert_eq!(
        up.to_string(),
        "Backup Server be/b1 is UP, reason: Layer4 check passed, check duration: 0ms. \
         0 active and 1 backup servers online."
    );
    checker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_checks() {
    let check = Scripted::default();
    check.healthy.store(true, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_secs(1),
        ..CheckerConfig::default()
    };
    let checker = HealthChecker::spawn(
        "be",
        vec![target("s1", dummy_addr(), false)],
        check.clone(),
        cfg,
        tx,
    );
    let h = checker.handle();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(check.calls.load(Ordering::SeqCst), 3); // t=0,1,2
    checker.shutdown().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(check.calls.load(Ordering::SeqCst), 3);
    // The handle outlives the checker and still answers.
    assert_eq!(h.status(0), "UP");
    let mut checked = 0;
    while let Ok(e) = rx.try_recv() {
        assert!(
            matches!(e, HealthEvent::Checked { outcome: Ok(_), .. }),
            "{e:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[tokio::test]
async fn tcp_server_down_and_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_millis(20),
        thresholds: Thresholds {
            rise: 2,
            fall: 2,
            initial: Health::Up,
            passive: None,
        },
        ..CheckerConfig::default()
    };
    let checker = HealthChecker::spawn(
        "be",
        vec![target("s1", addr, false), target("b1", addr, true)],
        AnyCheck::Tcp(TcpCheck::new(Duration::from_millis(500))),
        cfg,
        tx,
    );
    // A few passing checks while listening: no state change.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(e) = rx.try_recv() {
        assert!(
            matches!(e, HealthEvent::Checked { outcome: Ok(_), .. }),
            "{e:?}"
        );
    }

    drop(listener);
    let a = next_change(&mut rx).await;
    let b = next_change(&mut rx).await;
    // The two servers are checked independently: either may go first.
    // The first change still counts the other one, the second counts none.
    assert_eq!(a.active_up + a.backup_up, 1);
    assert_eq!((b.active_up, b.backup_up), (0, 0));
    let (s1, b1) = if a.server == 0 { (a, b) } else { (b, a) };
    assert_eq!((s1.name.as_str(), s1.to), ("s1", Health::Down));
    assert_eq!(
        (b1.name.as_str(), b1.backup, b1.to),
        ("b1", true, Health::Down)
    );
    assert_eq!(
        s1.cause,
        Cause::Check(Err(CheckError::L4Connection("Connection refused".into())))
    );
    let line = s1.to_string();
    assert!(
        line.starts_with(
            "Server be/s1 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: "
        ),
        "{line}"
    );
    assert!(line.ends_with("backup servers left."), "{line}");
    assert!(b1.to_string().starts_with("Backup Server be/b1 is DOWN"));

    // Same port again: both come back.
    let listener = TcpListener::bind(addr).await.unwrap();
    let a = next_change(&mut rx).await;
    let b = next_change(&mut rx).await;
    assert_eq!((a.to, b.to), (Health::Up, Health::Up));
    assert_eq!(checker.handle().up_servers(), vec![true, true]);
    let last = if a.active_up + a.backup_up == 2 { a } else { b };
    assert!(last
        .to_string()
        .ends_with("1 active and 1 backup servers online."));
    checker.shutdown().await;
    drop(listener);
}

/// An origin answering every request with the current `status`.
async fn origin(status: Arc<AtomicU16>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let status = status.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 512];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let reason = if status == 200 {
                    "OK"
                } else {
                    "Internal Server Error"
                };
                let resp = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn http_origin_200_then_500_then_200() {
    let status = Arc::new(AtomicU16::new(200));
    let addr = origin(status.clone()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let check = HttpCheck::from_httpchk_args(&["GET", "/health"])
        .unwrap()
        .expect_status("200")
        .unwrap();
    let cfg = CheckerConfig {
        inter: Duration::from_millis(20),
        thresholds: Thresholds {
            rise: 1,
            fall: 1,
            initial: Health::Up,
            passive: None,
        },
        ..CheckerConfig::default()
    };
    let checker = HealthChecker::spawn(
        "api",
        vec![target("app1", addr, false)],
        AnyCheck::Http(check),
        cfg,
        tx,
    );
    // First check passes with 200.
    let first = timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        first,
        HealthEvent::Checked {
            outcome: Ok(CheckPass::Layer7 { status: 200, .. }),
            ..
        }
    ));

    status.store(500, Ordering::SeqCst);
    let down = next_change(&mut rx).await;
    assert_eq!(down.to, Health::Down);
    let line = down.to_string();
    assert!(
        line.starts_with(
            "Server api/app1 is DOWN, reason: Layer7 wrong status, code: 500, info: \"Internal Server Error\", check duration: "
        ),
        "{line}"
    );

    status.store(200, Ordering::SeqCst);
    let up = next_change(&mut rx).await;
    assert_eq!(up.to, Health::Up);
    assert!(up.to_string().starts_with(
        "Server api/app1 is UP, reason: Layer7 check passed, code: 200, info: \"OK\""
    ));
    checker.shutdown().await;
}
