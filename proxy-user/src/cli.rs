//! The command line of `weir` (clap). `main.rs` parses it and calls
//! [`crate::runtime`] or the other command functions.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  weir run -f configs/weir.cfg          run on a config (as root for XDP)
  weir check -f configs/weir.cfg        validate a config, print every error
  weir stats -f configs/weir.cfg        the shared counters (--json, --prometheus, --watch 1)
  weir origin --listen 127.0.0.1:9001   a demo/test HTTP origin
  curl http://127.0.0.1:8080/           a request through the default config
  bpftool map dump pinned /sys/fs/bpf/weir/weir/WEIR_FE_STATS
";

/// Weir: an XDP L4 and HTTP/1.1 L7 load balancer.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the load balancer on a config file.
    #[command(
        after_help = "Stops cleanly on SIGTERM or SIGINT: XDP detached, this instance's pins removed, exit 0."
    )]
    Run(RunArgs),
    /// Validate a config file: print all errors with file:line, exit 1 if any.
    Check {
        /// The config file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Print the shm-stats-file (table, --json, --prometheus, --watch); read-only, needs no running weir.
    Stats {
        /// Take the file from this config's `shm-stats-file`.
        #[arg(short = 'f', long = "config")]
        config: Option<PathBuf>,
        /// What to print.
        #[command(flatten)]
        args: crate::stats::cli::StatsArgs,
    },
    /// Inspect the XDP L4 balancer of a running instance (from its pinned maps).
    L4 {
        /// The config the instance runs (for its name and the service/real names).
        #[arg(
            short = 'f',
            long = "file",
            global = true,
            default_value = "configs/weir.cfg"
        )]
        file: PathBuf,
        /// What to show.
        #[command(subcommand)]
        what: L4Command,
    },
    /// Strip Weir's DSR encapsulation on a real server: attach the decap program to IF.
    Decap {
        /// Interface receiving encapsulated packets from the balancer.
        #[arg(long)]
        iface: String,
        /// Instance name for the pins (default: decap-IF).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Serve HTTP as a demo/test origin (answers with its name, /echo, /size/N).
    Origin {
        /// Address to listen on (repeatable).
        #[arg(long = "listen", required = true)]
        listen: Vec<SocketAddr>,
        /// Name in the responses (`hello from NAME`, `X-Origin: NAME`).
        #[arg(long, default_value = "origin")]
        name: String,
    },
}

/// Options of `weir run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The config file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// eBPF object to load instead of the embedded one.
    #[arg(long)]
    pub bpf_object: Option<PathBuf>,
    /// Do not load the XDP program (userspace only).
    #[arg(long)]
    pub no_xdp: bool,
}

/// `weir l4` subcommands.
#[derive(Subcommand, Debug)]
pub enum L4Command {
    /// Services, reals, weights, health, Maglev table fill and counters.
    Show,
    /// Which real a flow goes to (Maglev pick and conntrack), e.g. `tcp 198.18.1.2:40000 198.18.0.1:80`.
    Which {
        /// tcp or udp.
        proto: String,
        /// Client address and port.
        src: SocketAddr,
        /// VIP and port.
        dst: SocketAddr,
    },
}
