//! Benchmark: one stats sync pass (the task that mirrors the XDP program's
//! per-CPU counters into the shm-stats-file) over 10,000 objects, on the
//! real program's per-CPU maps and a real stats file. Prints figures; run
//! as root with `cargo xtask bench-stats` (or `cargo run --release -p
//! bpf-tests --bin bench_stats_sync` with WEIR_EBPF_OBJECT set).

use std::time::{Duration, Instant};

use proxy_common::{map_names, FlowCounters, MAX_REALS};
use proxy_user::{
    l4::{LoadOptions, XdpProgram},
    stats::{sync::MirrorPlan, ObjectType, StatsStore, StoreOptions},
};

const OBJECTS: usize = 10_000;
const PASSES: usize = 20;

fn main() -> anyhow::Result<()> {
    if let Err(reason) = bpf_tests::bpf_available() {
        anyhow::bail!("bench_stats_sync needs BPF: {reason}");
    }
    let object = bpf_tests::object();
    let mut program = XdpProgram::load(
        &object,
        &LoadOptions {
            instance: format!("bench-sync-{}", std::process::id()),
            log_level: log::LevelFilter::Off,
            pin: false,
            max_entries: Vec::new(),
        },
    )?;
    // Non-zero per-CPU values in every real slot, so each pass commits deltas.
    {
        let map = program
            .ebpf_mut()
            .map_mut(map_names::REAL_STATS)
            .expect("REAL_STATS");
        let mut array: aya::maps::PerCpuArray<_, FlowCounters> =
            aya::maps::PerCpuArray::try_from(map)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for id in 0..MAX_REALS {
            let v = FlowCounters {
                packets: id as u64 + 1,
                bytes: 64 * (id as u64 + 1),
                new_flows: 1,
            };
            array.set(id, aya::maps::PerCpuValues::try_from(vec![v; cpus])?, 0)?;
        }
    }
    let path = std::path::PathBuf::from(format!("/dev/shm/weir-bench-sync-{}", std::process::id()));
    let (store, _) = StatsStore::open(Some(&path), OBJECTS as u64 + 16, StoreOptions::default())?;
    let guids: Vec<String> = (0..OBJECTS).map(|i| format!("bench.real.{i}")).collect();
    let list: Vec<(Option<&str>, ObjectType)> = guids
        .iter()
        .map(|g| (Some(g.as_str()), ObjectType::L4Real))
        .collect();
    let (handles, _) = store.register_many(&list);
    let plan = MirrorPlan {
        frontends: Vec::new(),
        services: Vec::new(),
        // 10,000 objects over the 4096 real slots the data path has.
        reals: handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| (h, (i as u32) % MAX_REALS))
            .collect(),
    };
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..PASSES {
        let t = Instant::now();
        proxy_user::stats::sync::sync_program(&program, &plan)?;
        times.push(t.elapsed());
    }
    times.sort();
    let size = std::fs::metadata(&path)?.len();
    println!("stats sync pass, {OBJECTS} objects x 3 counters, real per-CPU BPF map ({} CPUs), real shm file:", aya::util::nr_cpus().map_err(|(_, e)| e)?);
    println!(
        "  min {:?}  median {:?}  max {:?}  (target: under 10 ms)",
        times[0],
        times[PASSES / 2],
        times[PASSES - 1]
    );
    println!("  stats file size for {OBJECTS} objects: {size} bytes");
    store.close();
    let _ = std::fs::remove_file(&path);
    Ok(())
}
