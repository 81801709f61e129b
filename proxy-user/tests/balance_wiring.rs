//! The balancer used the way the proxy and the L4 control plane use it:
//! concurrent picks during rebuilds, connection tracking, health-driven
//! rebuilds from checker events, and Maglev table refresh for the XDP map.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use proxy_user::balance::maglev::{MaglevReal, MaglevTable, DEFAULT_TABLE_SIZE};
use proxy_user::balance::{
    Algorithm, BuildContext, ConnTracker, HashOn, HashType, SelectKey, Server, SharedBalancer,
};
use proxy_user::health::checker::{CheckerConfig, HealthChecker, HealthEvent, Target};
use proxy_user::health::state::{Health, Thresholds};
use proxy_user::health::{CheckError, CheckOutcome, CheckPass, HealthCheck};
use tokio::sync::mpsc;

fn backend(n: usize) -> Vec<Server> {
    (0..n)
        .map(|i| Server::new(i, format!("s{i}"), 1, false))
        .collect()
}

#[test]
fn picks_stay_valid_while_rebuilding_concurrently() {
    let conns = ConnTracker::new(8);
    let ctx = BuildContext {
        conns: conns.clone(),
        random_seed: 3,
    };
    let all = backend(8);
    let lb = Arc::new(SharedBalancer::new(&Algorithm::LeastConn, &all, ctx).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let rebuilds = Arc::new(AtomicUsize::new(0));
    let rebuilder = {
        let (lb, stop, rebuilds) = (lb.clone(), stop.clone(), rebuilds.clone());
        thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                // Alternate between the full set and the first half.
                let set = if k % 2 == 0 { &all[..4] } else { &all[..] };
                lb.rebuild(set).unwrap();
                k += 1;
                rebuilds.store(k, Ordering::Relaxed);
            }
            k
        })
    };
    // The pickers go on until they have overlapped with some rebuilds (on
    // a busy 2-core machine the rebuilder may start late), within 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (lb, rebuilds) = (lb.clone(), rebuilds.clone());
            thread::spawn(move || {
                let mut picks = 0;
                while picks < 20_000
                    || (rebuilds.load(Ordering::Relaxed) < 100
                        && std::time::Instant::now() < deadline)
                {
                    let idx = lb.select(SelectKey::None, |_| true).expect("never empty");
                    assert!(idx < 8);
                    // What a request does: count the connection while it runs.
                    let _guard = lb.conns().acquire(idx);
                    picks += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        rebuilder.join().unwrap() >= 100,
        "the rebuilder ran alongside the pickers"
    );
    assert!((0..8).all(|i| conns.active(i) == 0), "every guard released");
}

#[test]
fn source_hash_sticks_clients_and_rebuild_moves_few() {
    let algo = Algorithm::Hash {
        on: HashOn::Source,
        hash_type: HashType::Consistent,
    };
    let lb = SharedBalancer::new(&algo, &backend(6), BuildContext::default()).unwrap();
    let on = lb.load().hash_on().cloned().expect("hash algorithm");
    let clients: Vec<std::net::IpAddr> = (0..3000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
        .collect();
    let pick = |lb: &SharedBalancer| -> Vec<usize> {
        clients
            .iter()
            .map(|&ip| lb.select(on.key_hash(ip, "/", |_| None), |_| true).unwrap())
            .collect()
    };
    let first = pick(&lb);
    assert_eq!(first, pick(&lb), "same client, same server");
    // s2 goes DOWN: rebuild without it; only its clients move.
    let up: Vec<_> = backend(6).into_iter().filter(|s| s.idx != 2).collect();
    lb.rebuild(&up).unwrap();
    let second = pick(&lb);
    for (a, b) in first.iter().zip(&second) {
        if *a != 2 {
            assert_eq!(a, b);
        } else {
            assert_ne!(*b, 2);
        }
    }
}

/// A check the test drives per server.
#[derive(Clone)]
struct Switch(Arc<[AtomicBool; 3]>);

impl HealthCheck for Switch {
    async fn check(&self, addr: SocketAddr) -> CheckOutcome {
        // The port encodes the server index in this test.
        if self.0[usize::from(addr.port() - 1)].load(Ordering::SeqCst) {
            Ok(CheckPass::Layer4)
        } else {
            Err(CheckError::L4Timeout)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn checker_events_drive_balancer_rebuilds() {
    let servers = vec![
        Server::new(0, "s1", 1, false),
        Server::new(1, "s2", 1, false),
        Server::new(2, "b1", 1, true),
    ];
    let lb =
        SharedBalancer::new(&Algorithm::RoundRobin, &servers, BuildContext::default()).unwrap();
    let healthy = Switch(Arc::new([
        AtomicBool::new(true),
        AtomicBool::new(true),
        AtomicBool::new(true),
    ]));
    let targets = servers
        .iter()
        .map(|s| Target {
            name: s.name.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], s.idx as u16 + 1)),
            backup: s.backup,
        })
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = CheckerConfig {
        inter: Duration::from_secs(1),
        thresholds: Thresholds {
            rise: 1,
            fall: 1,
            initial: Health::Up,
            passive: None,
        },
        ..CheckerConfig::default()
    };
    let checker = HealthChecker::spawn("be", targets, healthy.clone(), cfg, tx);
    let health = checker.handle();

    // Both actives fail.
    healthy.0[0].store(false, Ordering::SeqCst);
    healthy.0[1].store(false, Ordering::SeqCst);
    let mut log = Vec::new();
    let mut down = 0;
    while down < 2 {
        if let HealthEvent::StateChanged(c) = rx.recv().await.unwrap() {
            log.push(c.to_string());
            down += 1;
            // The lead's event loop: rebuild from the UP servers.
            let up = health.up_servers();
            let set: Vec<_> = servers.iter().filter(|s| up[s.idx]).cloned().collect();
            lb.rebuild(&set).unwrap();
        }
    }
    assert!(
        log[1].ends_with("0 active and 1 backup servers left."),
        "{log:?}"
    );
    // Only the backup is left.
    for _ in 0..4 {
        assert_eq!(lb.select(SelectKey::None, |i| health.is_up(i)), Some(2));
    }
    checker.shutdown().await;
}

#[test]
fn l4_table_refresh_on_real_down() {
    // The L4 control plane keeps reals sorted by id so indexes stay stable,
    // builds the table, and copies `entries()` into the BPF array.
    let ids: Vec<[u8; 6]> = (0..20u8).map(|i| [192, 0, 2, i, 0x1f, 0x90]).collect();
    let reals = |down: Option<usize>| -> Vec<MaglevReal<'_>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| MaglevReal {
                id,
                // A DOWN real keeps its index with weight 0: no slots, and
                // every other real keeps its index in the BPF map.
                weight: if Some(i) == down { 0 } else { 1 },
            })
            .collect()
    };
    let before = MaglevTable::build(&reals(None), DEFAULT_TABLE_SIZE).unwrap();
    let after = MaglevTable::build(&reals(Some(7)), DEFAULT_TABLE_SIZE).unwrap();
    assert_eq!(after.fill()[7], 0);
    let mut moved_other = 0;
    for (b, a) in before.entries().iter().zip(after.entries()) {
        assert_ne!(*a, 7);
        if *b != 7 && a != b {
            moved_other += 1;
        }
    }
    // Far less churn than the 1/20 of the table that had to move.
    assert!(moved_other < 65_537 / 20, "{moved_other}");
}
