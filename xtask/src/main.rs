//! `cargo xtask`: Weir's developer commands. Each subcommand lives in its own
//! module with its options and one `run` function; this file only dispatches.

mod bench;
mod bench_l4;
mod bench_stats;
mod bench_tls;
mod build;
mod run;
mod test;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Weir developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install (as root on Debian) or check the eBPF toolchain.
    Setup(toolchain::Options),
    /// Build the eBPF object and the `weir` binary.
    Build(build::Options),
    /// Build, then run weir on configs/weir.cfg (or the config you name).
    Run(run::Options),
    /// Build, then run the whole test suite (unit, integration, bpf-tests).
    Test(test::Options),
    /// The L4 (XDP) benchmark: per-packet cost, packets/s, iperf3; updates README.md.
    BenchL4(bench_l4::Options),
    /// The shm-stats-file benchmark: update cost, file size, sync pass over real BPF maps.
    BenchStats(bench_stats::Options),
    /// Benchmark the L7 proxy (`bench l7`) or its TLS (`bench tls`) against HAProxy and nginx.
    Bench(bench::Options),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup(opts) => toolchain::run(&opts).map(|_| ()),
        Command::Build(opts) => build::run(&opts).map(|_| ()),
        Command::Run(opts) => run::run(&opts),
        Command::Test(opts) => test::run(&opts),
        Command::BenchL4(opts) => bench_l4::run(&opts),
        Command::Bench(opts) => bench::run(&opts),
        Command::BenchStats(opts) => bench_stats::run(&opts),
    }
}
