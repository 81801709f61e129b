//! `cargo xtask bench-stats`: the shm-stats-file figures of the stats
//! issue: per-counter update cost on the hot path next to a plain atomic add,
//! file size for 10,000 objects (the `stats` cargo bench), and one sync pass
//! over 10,000 objects mirrored from the real program's per-CPU BPF maps
//! (bpf-tests' `bench_stats_sync`, root only).

use std::process::Command;

use anyhow::Result;
use xtask::{exec, is_root, workspace_root, EBPF_OBJECT_ENV};

use crate::build;

#[derive(clap::Args)]
pub struct Options {}

pub fn run(_opts: &Options) -> Result<()> {
    let root = workspace_root();
    let object = build::run(&build::Options { release: true })?;
    eprintln!("[bench-stats] hot-path update cost and file size (cargo bench --bench stats)");
    exec(
        Command::new("cargo")
            .current_dir(&root)
            .args(["bench", "-p", "proxy-user", "--bench", "stats"])
            .env(EBPF_OBJECT_ENV, &object),
    )?;
    if !is_root() {
        eprintln!("[bench-stats] not root: skipping the sync pass over real BPF maps");
        return Ok(());
    }
    eprintln!("[bench-stats] one sync pass over 10,000 objects from real per-CPU BPF maps");
    exec(
        Command::new("cargo")
            .current_dir(&root)
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "bpf-tests",
                "--bin",
                "bench_stats_sync",
            ])
            .env(EBPF_OBJECT_ENV, &object),
    )
}
