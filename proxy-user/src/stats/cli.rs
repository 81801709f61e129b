//! `weir stats`: print a shm-stats-file without any running process.
//!
//! The command only reads the file (see [`super::reader`]); any defect is a
//! one-line error returned to `main`, which exits non-zero.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::format::{format_json, format_prometheus, format_table};
use super::reader::read_snapshot;

/// Arguments of `weir stats`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatsArgs {
    /// shm-stats-file to read (default: the `shm-stats-file` of the
    /// configuration).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Print the Prometheus text exposition format.
    #[arg(long)]
    pub prometheus: bool,
    /// Redraw every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
    /// With --watch: stop after this many redraws.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
}

fn render(args: &StatsArgs, path: &Path) -> anyhow::Result<String> {
    let snap = read_snapshot(path).map_err(|e| anyhow::anyhow!("weir stats: {e}"))?;
    Ok(if args.json {
        format_json(&snap)
    } else if args.prometheus {
        format_prometheus(&snap)
    } else {
        format_table(&snap)
    })
}

/// Runs `weir stats`. Reads `args.file` if given, else `file` (the
/// configuration's `shm-stats-file`, resolved by the caller).
pub fn run_stats_command(args: &StatsArgs, file: &Path) -> anyhow::Result<()> {
    run_stats_to(args, file, &mut std::io::stdout().lock())
}

/// [`run_stats_command`] writing to `out` (tests).
pub fn run_stats_to(
    args: &StatsArgs,
    file: &Path,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let path = args.file.as_deref().unwrap_or(file);
    let Some(secs) = args.watch else {
        let text = render(args, path)?;
        out.write_all(text.as_bytes()).context("writing output")?;
        return Ok(());
    };
    // The first read must succeed; later failures (file replaced mid-write)
    // are shown in place and retried at the next redraw.
    let mut text = render(args, path)?;
    let mut n = 0u64;
    loop {
        write!(out, "\x1b[H\x1b[2J{text}").context("writing output")?;
        out.flush().context("writing output")?;
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(secs.max(1)));
        text = render(args, path).unwrap_or_else(|e| format!("{e:#}\n"));
    }
}
