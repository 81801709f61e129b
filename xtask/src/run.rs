//! `cargo xtask run [-- ARGS]`: build, then run weir on the default config.

use std::process::Command;

use anyhow::{Context, Result};
use xtask::{is_root, workspace_root};

use crate::build;

#[derive(clap::Args)]
pub struct Options {
    /// Build and run the release profile.
    #[arg(long)]
    release: bool,
    /// Config file to run (relative to the workspace root).
    #[arg(long, short = 'f', default_value = "configs/weir.cfg")]
    config: String,
    /// Extra arguments passed to `weir run`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    build::run(&build::Options {
        release: opts.release,
    })?;
    if !is_root() {
        eprintln!("[run] not root: the XDP program cannot be attached; weir will say so and run the userspace part");
    }
    let bin = build::weir_binary(opts.release);
    let root = workspace_root();
    // exec-like: weir owns the terminal and its signals; we pass its exit code on.
    let status = Command::new(&bin)
        .current_dir(&root)
        .args(["run", "-f", &opts.config])
        .args(&opts.args)
        .status()
        .with_context(|| format!("failed to start {}", bin.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}
