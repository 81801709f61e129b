//! Shared helpers of the xtask subcommands: env-var names, paths, `exec`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Path of the eBPF object, passed to proxy-user's build.rs (to embed it) and to bpf-tests.
pub const EBPF_OBJECT_ENV: &str = "WEIR_EBPF_OBJECT";
/// Set by CI: the BPF tests must run (fail instead of skipping when they cannot).
pub const CI_ENV: &str = "CI";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs a command to completion; the error names the whole failing command.
pub fn exec(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {shown}"))?;
    if !status.success() {
        bail!("command failed ({status}): {shown}");
    }
    Ok(())
}

/// True when running as root (uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable on PATH (or returns None).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether CI=true (or 1) is set.
pub fn in_ci() -> bool {
    matches!(
        std::env::var(CI_ENV).as_deref(),
        Ok("true") | Ok("1") | Ok("yes")
    )
}
