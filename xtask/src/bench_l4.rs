//! `cargo xtask bench-l4`: the L4 (XDP) benchmark. Builds the eBPF object
//! and the `bench-l4` binary of bpf-tests, installs the tools the
//! comparison rows need (iperf3, nftables, HAProxy, ethtool; Debian, as
//! root), runs it, prints its tables, and writes them into README.md under
//! "Benchmarks: L4". What each part measures and why is in docs/l4.md.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};
use xtask::{exec, is_root, which, workspace_root, EBPF_OBJECT_ENV};

use crate::build;

#[derive(clap::Args)]
pub struct Options {
    /// Parts to run: cost (per-packet cost, BPF_PROG_TEST_RUN), pps
    /// (packets/s on one core, live-frames generator), iperf (TCP
    /// throughput and CPU per GB). Default: all three.
    #[arg(long, value_delimiter = ',')]
    parts: Vec<String>,
    /// Print the tables only; leave README.md alone.
    #[arg(long)]
    no_readme: bool,
}

/// Markers around the generated table in README.md.
const BEGIN: &str = "<!-- bench-l4:begin (cargo xtask bench-l4 writes this) -->";
const END: &str = "<!-- bench-l4:end -->";

/// Installs the comparison tools that are missing (Debian package names).
fn ensure_tools() -> Result<()> {
    let wanted = [
        ("iperf3", "iperf3"),
        ("nft", "nftables"),
        ("haproxy", "haproxy"),
        ("ethtool", "ethtool"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| {
            which(bin).is_none()
                && !Path::new("/usr/sbin").join(bin).exists()
                && !Path::new("/usr/bin").join(bin).exists()
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !Path::new("/etc/debian_version").exists() {
        eprintln!(
            "[bench-l4] missing {} (install them; their rows are skipped)",
            missing.join(", ")
        );
        return Ok(());
    }
    eprintln!("[bench-l4] installing {}", missing.join(" "));
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Replaces the table between the markers (or appends the section).
fn update_readme(readme: &Path, tables: &str) -> Result<()> {
    let text = std::fs::read_to_string(readme).context("read README.md")?;
    let block = format!("{BEGIN}\n{tables}{END}");
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &text[..b], &text[e + END.len()..]),
        _ => format!(
            "{}\n## Benchmarks: L4\n\nMeasured by `cargo xtask bench-l4` (method and caveats: docs/l4.md).\n\n{block}\n",
            text.trim_end()
        ),
    };
    std::fs::write(readme, new).context("write README.md")
}

pub fn run(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("bench-l4 loads XDP programs and creates network namespaces: run it as root");
    }
    let parts = if opts.parts.is_empty() {
        vec!["cost".to_string(), "pps".into(), "iperf".into()]
    } else {
        opts.parts.clone()
    };
    // The iperf part's userspace-relay row runs the release weir.
    let release = parts.iter().any(|p| p == "iperf");
    let object = build::run(&build::Options { release })?;
    ensure_tools()?;
    let root = workspace_root();
    exec(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--release", "-p", "bpf-tests", "--bin", "bench-l4"])
            .env(EBPF_OBJECT_ENV, &object),
    )?;
    let bin = root.join("target/release/bench-l4");
    let out = Command::new(&bin)
        .args(&parts)
        .env(EBPF_OBJECT_ENV, &object)
        .env("WEIR_BIN", build::weir_binary(true))
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let tables = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{tables}");
    if !out.status.success() {
        bail!("bench-l4 failed ({})", out.status);
    }
    if !opts.no_readme {
        let stamp = format!(
            "Kernel {}, {} CPUs, parts: {}.\n\n",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            parts.join(", ")
        );
        update_readme(&root.join("README.md"), &format!("{stamp}{tables}"))?;
        eprintln!("[bench-l4] README.md updated (Benchmarks: L4)");
    }
    Ok(())
}
