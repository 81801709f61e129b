//! Detects how this machine can build Rust eBPF and installs what is missing.
//!
//! Two routes (see ../shared/docs/bpf-toolchain.md):
//! - **Debian**: Debian's `rustc-web` (rustc at /usr/bin/rustc) with the prebuilt
//!   `bpfel-unknown-none` sysroot from `libstd-rust-web-dev-bpf`, and
//!   `bpf-linker` built against the system LLVM 22. As root on a Debian-family
//!   host, we install all of it.
//! - **Nightly**: a rustup nightly toolchain with `rust-src` (`-Z build-std=core`)
//!   plus `bpf-linker`, the usual aya route elsewhere.
//!
//! Every check is a file lookup, so when everything is present this costs
//! nothing noticeable.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};
use xtask::{exec, is_root, which};

/// The apt packages of the Debian route, and what each is for.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "rustc 1.96 with LLVM 22 for the eBPF crate"),
    ("cargo-web", "cargo matching rustc-web"),
    (
        "libstd-rust-web-dev-bpf",
        "prebuilt core for bpfel-unknown-none",
    ),
    ("llvm-22-dev", "LLVM for building bpf-linker"),
    (
        "libpolly-22-dev",
        "needed to link bpf-linker against LLVM 22",
    ),
    ("zlib1g-dev", "needed to link bpf-linker"),
    ("libzstd-dev", "needed to link bpf-linker"),
    (
        "bpftool",
        "map and program inspection (used by tests and docs)",
    ),
    (
        "iproute2",
        "network namespaces and veth pairs for end-to-end tests",
    ),
    (
        "curl",
        "the smoke test of `cargo xtask run` and end-to-end tests",
    ),
];

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_BPF_SYSROOT: &str = "/usr/lib/rustlib/bpfel-unknown-none";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

#[derive(clap::Args, Default)]
pub struct Options {
    /// Only report what is missing; install nothing.
    #[arg(long)]
    pub check: bool,
}

/// How to compile the eBPF crate on this machine.
#[derive(Debug, Clone)]
pub enum Route {
    /// Debian's rustc with its prebuilt BPF sysroot.
    Debian { rustc: PathBuf, linker: PathBuf },
    /// rustup nightly with rust-src and `-Z build-std=core`.
    Nightly { linker: PathBuf },
}

/// Makes sure the eBPF toolchain is present (installing it when allowed) and returns the route.
pub fn run(opts: &Options) -> Result<Route> {
    if let Some(route) = detect() {
        return Ok(route);
    }
    let missing = missing_debian_parts();
    let debian_family = Path::new("/etc/debian_version").exists();
    if opts.check || !debian_family || !is_root() {
        print_instructions(&missing, debian_family);
        bail!("the eBPF toolchain is incomplete (see above)");
    }
    install_debian(&missing)?;
    detect().ok_or_else(|| {
        anyhow::anyhow!("installed the Debian packages and bpf-linker but the toolchain is still incomplete: {:?}", missing_debian_parts())
    })
}

/// Finds bpf-linker on PATH or in cargo's bin directory.
fn find_bpf_linker() -> Option<PathBuf> {
    which("bpf-linker").or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        let p = home.join("bin/bpf-linker");
        p.is_file().then_some(p)
    })
}

fn detect() -> Option<Route> {
    let linker = find_bpf_linker()?;
    if Path::new(DEBIAN_RUSTC).is_file() && Path::new(DEBIAN_BPF_SYSROOT).is_dir() {
        return Some(Route::Debian {
            rustc: DEBIAN_RUSTC.into(),
            linker,
        });
    }
    if nightly_has_rust_src() {
        return Some(Route::Nightly { linker });
    }
    None
}

fn nightly_has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false)
}

/// What the Debian route still lacks, as human-readable items.
fn missing_debian_parts() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(DEBIAN_RUSTC).is_file() {
        missing.push(format!("{DEBIAN_RUSTC} (package rustc-web)"));
    }
    if !Path::new(DEBIAN_BPF_SYSROOT).is_dir() {
        missing.push(format!(
            "{DEBIAN_BPF_SYSROOT} (package libstd-rust-web-dev-bpf)"
        ));
    }
    if find_bpf_linker().is_none() {
        missing.push("bpf-linker (cargo install bpf-linker)".into());
    }
    if which("bpftool").is_none() && !Path::new("/usr/sbin/bpftool").exists() {
        missing.push("bpftool (package bpftool)".into());
    }
    missing
}

fn print_instructions(missing: &[String], debian_family: bool) {
    eprintln!("The eBPF toolchain is incomplete. Missing:");
    for item in missing {
        eprintln!("  - {item}");
    }
    if debian_family {
        let pkgs: Vec<&str> = APT_PACKAGES.iter().map(|(p, _)| *p).collect();
        eprintln!("\nOn Debian/Ubuntu, as root (or run `sudo cargo xtask setup`):");
        eprintln!("  apt-get update && apt-get install -y {}", pkgs.join(" "));
        eprintln!(
            "  LLVM_PREFIX={LLVM_PREFIX} cargo install bpf-linker --no-default-features --features llvm-22"
        );
    } else {
        eprintln!("\nOn other distributions (the usual aya route):");
        eprintln!("  rustup toolchain install nightly --component rust-src");
        eprintln!("  cargo install bpf-linker");
        eprintln!("  and install bpftool from your distribution");
    }
}

fn install_debian(missing: &[String]) -> Result<()> {
    eprintln!(
        "[setup] installing the eBPF toolchain (missing: {})",
        missing.join(", ")
    );
    let pkgs: Vec<&str> = APT_PACKAGES.iter().map(|(p, _)| *p).collect();
    eprintln!("[setup] apt-get update (about 10 s)");
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    eprintln!("[setup] apt-get install {} (about 1 min)", pkgs.join(" "));
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if find_bpf_linker().is_none() {
        eprintln!("[setup] building bpf-linker against LLVM 22 (about 1 min on 2 cores)");
        exec(
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
    }
    eprintln!("[setup] done");
    Ok(())
}

/// Tools the tests and the run command use besides the compiler; installed
/// with the toolchain on Debian, reported otherwise.
pub fn ensure_test_tools() -> Result<()> {
    let need: Vec<&str> = ["ip", "curl", "ethtool"]
        .into_iter()
        .filter(|t| {
            which(t).is_none()
                && !Path::new("/usr/sbin").join(t).exists()
                && !Path::new("/usr/bin").join(t).exists()
        })
        .collect();
    if need.is_empty() {
        return Ok(());
    }
    if Path::new("/etc/debian_version").exists() && is_root() {
        eprintln!("[setup] installing {}", need.join(" "));
        let pkgs: Vec<&str> = need
            .iter()
            .map(|t| if *t == "ip" { "iproute2" } else { *t })
            .collect();
        exec(Command::new("apt-get").args(["update", "-q"]))?;
        exec(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&pkgs)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        return Ok(());
    }
    bail!(
        "missing tools: {} (install iproute2, curl and ethtool)",
        need.join(", ")
    )
}
