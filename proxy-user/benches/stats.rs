//! Stats hot-path and sync benchmarks (`cargo bench -p proxy-user --bench stats`).
//!
//! Prints:
//! * ns per counter update through `EntityCounters::add` on the shm-stats-file
//!   and on local memory, next to a plain `AtomicU64::fetch_add` (target:
//!   within 2x);
//! * ns per rate update (`add_rate`, clock read + CAS);
//! * one L4 sync pass over 10,000 objects, 5 mirrored counters each, summing
//!   2 per-CPU values per counter (target: under 10 ms);
//! * the file size for 10,000 objects.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proxy_user::stats::{Counter, ObjectType, Rate, StatsStore, StoreOptions};

const UPDATES: u64 = 50_000_000;
const OBJECTS: usize = 10_000;
const CPUS: usize = 2;
const MIRRORED: [Counter; 5] = [
    Counter::PacketsIn,
    Counter::PacketsOut,
    Counter::BytesIn,
    Counter::BytesOut,
    Counter::NewFlows,
];

fn ns_per(start: Instant, n: u64) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let path = PathBuf::from(format!("/dev/shm/weir-stats-bench-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (store, warns) =
        StatsStore::open(Some(&path), OBJECTS as u64, StoreOptions::default()).unwrap();
    assert!(warns.is_empty(), "{warns:?}");

    // --- hot path ---------------------------------------------------------
    let plain = Box::new(AtomicU64::new(0));
    let plain_ns = best_of(5, || {
        let t = Instant::now();
        for _ in 0..UPDATES {
            black_box(&*plain).fetch_add(black_box(1), Ordering::Relaxed);
        }
        ns_per(t, UPDATES)
    });
    let shm = store.register(Some("bench-fe"), ObjectType::Frontend);
    assert!(shm.is_shared());
    let shm_ns = best_of(5, || {
        let t = Instant::now();
        for _ in 0..UPDATES {
            black_box(&shm).add(black_box(Counter::Requests), black_box(1));
        }
        ns_per(t, UPDATES)
    });
    let local = store.register(None, ObjectType::Frontend);
    let local_ns = best_of(5, || {
        let t = Instant::now();
        for _ in 0..UPDATES {
            black_box(&local).add(black_box(Counter::Requests), black_box(1));
        }
        ns_per(t, UPDATES)
    });
    let rate_n = UPDATES / 10;
    let rate_ns = best_of(3, || {
        let t = Instant::now();
        for _ in 0..rate_n {
            black_box(&shm).add_rate(black_box(Rate::Requests), 1);
        }
        ns_per(t, rate_n)
    });
    assert_eq!(shm.get(Counter::Requests), 5 * UPDATES);

    // --- sync pass ----------------------------------------------------------
    let names: Vec<String> = (0..OBJECTS - 1).map(|i| format!("real-{i}")).collect();
    let ents: Vec<_> = names
        .iter()
        .map(|n| (Some(n.as_str()), ObjectType::L4Real))
        .collect();
    let (reals, w) = store.register_many(&ents);
    assert!(w.is_empty(), "{w:?}");
    assert!(reals.iter().all(|r| r.is_shared()));
    // simulated per-CPU map values: per object, per counter, one u64 per CPU
    let mut percpu: Vec<Vec<u64>> = vec![vec![0; MIRRORED.len() * CPUS]; reals.len()];
    let mut passes = Vec::new();
    for pass in 0..20u64 {
        for (i, v) in percpu.iter_mut().enumerate() {
            for (k, cell) in v.iter_mut().enumerate() {
                *cell += (i as u64 + k as u64 + pass) % 7 + 1;
            }
        }
        let t = Instant::now();
        for (r, v) in reals.iter().zip(&percpu) {
            for (k, c) in MIRRORED.iter().enumerate() {
                let token = r.mirror_begin(*c).unwrap();
                let sum: u64 = v[k * CPUS..(k + 1) * CPUS].iter().sum();
                token.commit(sum);
            }
        }
        passes.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // every mirrored counter equals its per-CPU sum
    for (r, v) in reals.iter().zip(&percpu) {
        for (k, c) in MIRRORED.iter().enumerate() {
            assert_eq!(r.get(*c), v[k * CPUS..(k + 1) * CPUS].iter().sum::<u64>());
        }
    }
    passes.sort_by(f64::total_cmp);
    let size = std::fs::metadata(&path).unwrap().len();
    store.heartbeat();

    println!(
        "stats benchmark ({} objects, {CPUS} CPUs per map value)",
        OBJECTS
    );
    println!("  plain AtomicU64::fetch_add          {plain_ns:7.2} ns/update");
    println!(
        "  EntityCounters::add (shm file)      {shm_ns:7.2} ns/update  ({:.2}x plain)",
        shm_ns / plain_ns
    );
    println!(
        "  EntityCounters::add (local)         {local_ns:7.2} ns/update  ({:.2}x plain)",
        local_ns / plain_ns
    );
    println!("  EntityCounters::add_rate (shm)      {rate_ns:7.2} ns/update");
    println!(
        "  sync pass, {} objects x {} counters: min {:.3} ms, median {:.3} ms, max {:.3} ms",
        reals.len(),
        MIRRORED.len(),
        passes[0],
        passes[passes.len() / 2],
        passes[passes.len() - 1]
    );
    println!(
        "  file size for {} objects: {} bytes ({:.2} MiB; header 4096 + {} x 512)",
        OBJECTS,
        size,
        size as f64 / (1024.0 * 1024.0),
        OBJECTS
    );
    drop(reals);
    drop(shm);
    drop(store);
    let _ = std::fs::remove_file(&path);
}
