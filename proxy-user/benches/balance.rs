//! `cargo bench -p proxy-user --bench balance`: nanoseconds per pick for
//! each algorithm over 100 servers, and Maglev table build time for
//! 65537 slots × 100 reals. Plain timing loops (no harness) so it builds
//! with nothing but std.

use std::hint::black_box;
use std::time::{Duration, Instant};

use proxy_user::balance::maglev::{MaglevReal, MaglevTable, DEFAULT_TABLE_SIZE};
use proxy_user::balance::{
    Algorithm, Balancer, BuildContext, ConnTracker, HashOn, HashType, SelectKey, Server,
};

const SERVERS: usize = 100;
const PICKS: u64 = 1_000_000;

fn servers() -> Vec<Server> {
    (0..SERVERS)
        .map(|i| Server::new(i, format!("srv{i}"), 1 + (i % 4) as u32, false))
        .collect()
}

fn bench_picks(name: &str, algo: Algorithm, ctx: &BuildContext, keyed: bool) {
    let b = Balancer::build(&algo, &servers(), ctx).expect("valid server set");
    let start = Instant::now();
    for i in 0..PICKS {
        let key = if keyed {
            SelectKey::Hash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        } else {
            SelectKey::None
        };
        black_box(b.select(black_box(key), |_| true));
    }
    let ns = start.elapsed().as_nanos() as f64 / PICKS as f64;
    println!("{name:<28} {ns:>8.1} ns/pick");
}

fn main() {
    let ctx = BuildContext {
        conns: ConnTracker::new(SERVERS),
        random_seed: 1,
    };
    println!("{SERVERS} servers, weights 1..=4, {PICKS} picks each");
    bench_picks("roundrobin (smooth)", Algorithm::RoundRobin, &ctx, false);
    bench_picks("static-rr", Algorithm::StaticRr, &ctx, false);
    bench_picks("leastconn", Algorithm::LeastConn, &ctx, false);
    bench_picks("random (p2c)", Algorithm::Random, &ctx, false);
    for (name, hash_type) in [
        ("hash map-based", HashType::MapBased),
        ("hash consistent", HashType::Consistent),
    ] {
        let algo = Algorithm::Hash {
            on: HashOn::Source,
            hash_type,
        };
        bench_picks(name, algo, &ctx, true);
    }
    let ip = "192.0.2.7".parse().unwrap();
    let on = HashOn::Uri { whole: false };
    let start = Instant::now();
    for _ in 0..PICKS {
        black_box(on.key_hash(black_box(ip), black_box("/api/v1/items?id=42"), |_| None));
    }
    let ns = start.elapsed().as_nanos() as f64 / PICKS as f64;
    println!("{:<28} {ns:>8.1} ns/key", "key hash (uri)");

    let ids: Vec<[u8; 6]> = (0..100u16)
        .map(|i| {
            let [a, b] = i.to_be_bytes();
            [10, 1, a, b, 0, 80]
        })
        .collect();
    let reals: Vec<MaglevReal<'_>> = ids.iter().map(|id| MaglevReal { id, weight: 1 }).collect();
    let runs = 20;
    let mut best = Duration::MAX;
    let start = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        black_box(MaglevTable::build(&reals, DEFAULT_TABLE_SIZE).expect("valid"));
        best = best.min(t.elapsed());
    }
    let mean = start.elapsed() / runs;
    println!(
        "maglev build 65537 x 100     mean {:.2} ms, best {:.2} ms",
        mean.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3
    );
}
