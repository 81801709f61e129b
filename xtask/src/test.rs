//! `cargo xtask test`: the whole suite. Unit and integration tests of the host
//! crates first, then bpf-tests (one test thread: they share the kernel),
//! which need root; as non-root they skip with a reason, except under CI=true
//! where they must run.

use std::process::Command;

use anyhow::{bail, Result};
use xtask::{exec, in_ci, is_root, workspace_root, EBPF_OBJECT_ENV};

use crate::{build, toolchain};

#[derive(clap::Args)]
pub struct Options {
    /// Extra arguments for the test binaries (e.g. a test name filter).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    if in_ci() && !is_root() {
        bail!("CI=true but not running as root: the BPF tests must run in CI and need root");
    }
    let object = build::run(&build::Options::default())?;
    toolchain::ensure_test_tools()?;
    let root = workspace_root();
    eprintln!("[test] host crates: unit and integration tests");
    exec(
        Command::new("cargo")
            .current_dir(&root)
            .args([
                "test",
                "--workspace",
                "--exclude",
                "bpf-tests",
                "--exclude",
                "proxy-ebpf",
            ])
            .env(EBPF_OBJECT_ENV, &object)
            .arg("--")
            .args(&opts.args),
    )?;
    eprintln!("[test] bpf-tests (real programs, BPF_PROG_TEST_RUN, namespaces)");
    exec(
        Command::new("cargo")
            .current_dir(&root)
            .args(["test", "--package", "bpf-tests"])
            .env(EBPF_OBJECT_ENV, &object)
            .args(["--", "--test-threads=1"])
            .args(&opts.args),
    )?;
    Ok(())
}
