//! `cargo xtask build`: the eBPF object (release, with BTF), then the `weir`
//! binary with the object embedded.

use std::{path::PathBuf, process::Command};

use anyhow::Result;
use xtask::{exec, workspace_root, EBPF_OBJECT_ENV};

use crate::toolchain::{self, Route};

#[derive(clap::Args, Default, Clone)]
pub struct Options {
    /// Build the userspace binary with the release profile.
    #[arg(long)]
    pub release: bool,
}

/// Path of the built eBPF object.
pub fn ebpf_object_path() -> PathBuf {
    workspace_root().join("target/bpf/bpfel-unknown-none/release/weir-xdp")
}

/// Builds the eBPF object; returns its path.
pub fn build_ebpf(route: &Route) -> Result<PathBuf> {
    let root = workspace_root();
    let linker = match route {
        Route::Debian { linker, .. } | Route::Nightly { linker } => linker,
    };
    // BTF (debuginfo + --btf) is what lets aya load BTF maps and bpftool print field names.
    let rustflags = format!(
        "-C debuginfo=2 -C link-arg=--btf -C linker={}",
        linker.display()
    );
    let mut cmd = Command::new("cargo");
    match route {
        Route::Debian { rustc, .. } => {
            // aya-ebpf enables `asm_experimental_arch`, hence RUSTC_BOOTSTRAP.
            cmd.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1");
        }
        Route::Nightly { .. } => {
            cmd.arg("+nightly");
        }
    }
    cmd.current_dir(&root)
        .args(["build", "--package", "proxy-ebpf", "--release"])
        .args(["--target", "bpfel-unknown-none"]);
    if matches!(route, Route::Nightly { .. }) {
        cmd.args(["-Z", "build-std=core"]);
    }
    // A separate target dir: the two compilers' artifacts must not mix.
    cmd.env("CARGO_TARGET_DIR", root.join("target/bpf"))
        // The workspace's release profile has fat LTO and one codegen unit
        // for `weir`; the eBPF object is built with cargo's defaults, as
        // before (its code, and so the verifier's view of it, stays put).
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    eprintln!("[build] eBPF object (proxy-ebpf, bpfel-unknown-none)");
    exec(&mut cmd)?;
    Ok(ebpf_object_path())
}

/// Builds everything; returns the eBPF object's path.
pub fn run(opts: &Options) -> Result<PathBuf> {
    let route = toolchain::run(&toolchain::Options::default())?;
    let object = build_ebpf(&route)?;
    eprintln!("[build] weir (proxy-user) with the object embedded");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["build", "--package", "proxy-user", "--bin", "weir"])
        .env(EBPF_OBJECT_ENV, &object);
    if opts.release {
        cmd.arg("--release");
    }
    exec(&mut cmd)?;
    Ok(object)
}

/// Path of the built `weir` binary.
pub fn weir_binary(release: bool) -> PathBuf {
    workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("weir")
}
