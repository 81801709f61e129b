//! TCP relay benchmark: CPU time of the relay per GiB carried over
//! loopback, spliced (plain TCP, the default) and copied through userspace
//! (`copy_bidirectional`, what TLS connections use).
//!
//! The relay runs on one thread with a current-thread tokio runtime (as with
//! `threads 1`); a blocking client and origin run on their own threads. The
//! figure is the relay thread's user + system time (getrusage
//! RUSAGE_THREAD) from the first byte to the relay's end, divided by the
//! GiB carried. Loopback is cheap, so the kernel's share of a real NIC is
//! missing; the difference between the two modes is the point.
//!
//! `cargo bench -p proxy-user --bench relay [-- --gib N] [-- --runs N]`

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream as StdStream},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use proxy_user::{
    relay::{Relay, RelayServer},
    stats::{Counter, ObjectType, StatsStore},
};

/// (user, system) CPU time of the calling thread.
fn thread_cpu() -> (Duration, Duration) {
    // SAFETY: rusage is plain data (all zeroes is valid); getrusage fills
    // it and RUSAGE_THREAD is valid on Linux.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// What one run measured.
struct Run {
    wall: Duration,
    relay_cpu: Duration,
    relay_user: Duration,
}

/// Carries `bytes` client -> origin (and, with `both`, as many back at the
/// same time) through a relay on its own thread.
fn run(splice: bool, bytes: u64, both: bool) -> Run {
    // Origin: reads to EOF (and writes `bytes` back with `both`), closes.
    let origin = StdListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let origin = thread::spawn(move || {
        let (s, _) = origin.accept().unwrap();
        let writer = both.then(|| {
            let mut w = s.try_clone().unwrap();
            thread::spawn(move || {
                write_n(&mut w, bytes);
                w.shutdown(Shutdown::Write).unwrap();
            })
        });
        let got = read_all(&mut &s);
        if let Some(w) = writer {
            w.join().unwrap();
        }
        assert_eq!(got, bytes);
    });

    // Relay thread: its CPU is what is measured.
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let relay = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (store, _) = StatsStore::open(None, 0, Default::default()).unwrap();
            let local = || store.register(None, ObjectType::Server);
            let relay = Arc::new(
                Relay::new(
                    "bench".into(),
                    vec![RelayServer {
                        name: "origin".into(),
                        addr: origin_addr,
                        counters: local(),
                        tls: None,
                    }],
                    Duration::from_secs(1),
                    local(),
                    local(),
                )
                .with_splice(splice),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let (user0, sys0) = thread_cpu();
            let task = tokio::spawn(relay.clone().run(listener, 4, None, None));
            // The byte counters are added when the relay's connection ends.
            let back = if both { bytes } else { 0 };
            while relay.frontend.get(Counter::BytesIn) != bytes
                || relay.frontend.get(Counter::BytesOut) != back
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let (user, sys) = thread_cpu();
            task.abort();
            (user - user0 + sys - sys0, user - user0)
        })
    });

    let addr = addr_rx.recv().unwrap();
    let start = Instant::now();
    let mut c = StdStream::connect(addr).unwrap();
    let reader = {
        let mut r = c.try_clone().unwrap();
        thread::spawn(move || read_all(&mut r))
    };
    write_n(&mut c, bytes);
    c.shutdown(Shutdown::Write).unwrap();
    let back = reader.join().unwrap();
    assert_eq!(back, if both { bytes } else { 0 });
    let wall = start.elapsed();
    origin.join().unwrap();
    let (relay_cpu, relay_user) = relay.join().unwrap();
    Run {
        wall,
        relay_cpu,
        relay_user,
    }
}

fn write_n(w: &mut impl Write, mut n: u64) {
    let buf = vec![0x5au8; 256 * 1024];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        w.write_all(&buf[..k]).unwrap();
        n -= k as u64;
    }
}

fn read_all(r: &mut impl Read) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match r.read(&mut buf).unwrap() {
            0 => return total,
            n => total += n as u64,
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let gib = arg("--gib", 1);
    let runs = arg("--runs", 3).max(1);
    let bytes = gib << 30;
    println!(
        "{:<7} {:<10} {:>8} {:>10} {:>14} {:>14}",
        "mode", "direction", "GiB", "wall s", "cpu s/GiB", "user s/GiB"
    );
    for both in [false, true] {
        for splice in [false, true] {
            let mut results: Vec<Run> = (0..runs).map(|_| run(splice, bytes, both)).collect();
            // Median run by relay CPU.
            results.sort_by_key(|r| r.relay_cpu);
            let r = &results[results.len() / 2];
            let carried = (if both { 2 * gib } else { gib }) as f64;
            println!(
                "{:<7} {:<10} {:>8} {:>10.2} {:>14.3} {:>14.3}",
                if splice { "splice" } else { "copy" },
                if both { "both ways" } else { "upload" },
                carried,
                r.wall.as_secs_f64(),
                r.relay_cpu.as_secs_f64() / carried,
                r.relay_user.as_secs_f64() / carried,
            );
        }
    }
}
