//! `cargo xtask bench l7`: weir's L7 proxy against HAProxy and nginx.
//!
//! One origin (`weir origin`, release build) serves every run. The proxies
//! run side by side (only the measured one gets traffic), each with one
//! worker thread (weir `threads 1`, HAProxy `nbthread 1`, nginx
//! `worker_processes 1` with `master_process off`) and keep-alive to the
//! origin, then wrk runs with the same threads, connections and duration,
//! once with keep-alive and once with `Connection: close`. For each run the table shows req/s, p50/p99
//! latency (wrk `--latency`) and the proxy's CPU time per request (user +
//! sys from `/proc/PID/stat` over the run, divided by the requests wrk
//! counted). Then, per proxy, the memory per idle client connection: open
//! N connections that send nothing, and divide the RSS growth by N.
//!
//! Configs and results go to `target/bench/`; the table also replaces the
//! block between the `bench:l7` markers in README.md. Only processes this
//! command started are stopped, by PID.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xtask::{exec, is_root, which, workspace_root};

#[derive(clap::Args)]
pub struct Options {
    /// What to benchmark: `l7`, or `tls` (see bench_tls.rs).
    #[arg(value_parser = ["l7", "tls"])]
    target: String,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    pub(crate) connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    pub(crate) wrk_threads: u32,
    /// Worker threads of each proxy.
    #[arg(long, default_value_t = 1)]
    pub(crate) proxy_threads: u32,
    /// Idle client connections for the memory measurement.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
    /// Request path (`/` is a 25-byte body).
    #[arg(long, default_value = "/")]
    path: String,
    /// Do not write the table into README.md.
    #[arg(long)]
    pub(crate) no_readme: bool,
    /// Interleaved rounds per proxy and mode; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: u32,
    /// Proxies to run, comma-separated: weir, weir-epoll (weir with
    /// `noiouring`), haproxy, nginx, weir-defer and haproxy-defer (both
    /// with `bind ... defer-accept`), and the two byte relays that show the
    /// kernel's floor, floor-epoll and floor-uring (keep-alive only; `bench
    /// tls` runs weir, haproxy and nginx).
    #[arg(long, value_delimiter = ',', default_values_t = ["weir", "weir-epoll", "haproxy", "nginx", "weir-defer", "haproxy-defer", "floor-epoll", "floor-uring"].map(String::from))]
    pub(crate) proxies: Vec<String>,
    /// `bench tls`: parallel `openssl s_time` clients in the handshake runs.
    #[arg(long, default_value_t = 16)]
    pub(crate) handshake_clients: u32,
}

/// A process we started; killed (by its PID) and reaped on drop.
pub(crate) struct Owned {
    pub(crate) name: &'static str,
    child: Child,
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Owned {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct WrkResult {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) errors: u64,
    pub(crate) non_2xx: u64,
}

struct Row {
    proxy: &'static str,
    mode: &'static str,
    wrk: WrkResult,
    cpu_us_per_req: f64,
}

pub fn run(opts: &Options) -> Result<()> {
    if opts.target == "tls" {
        return crate::bench_tls::run(opts);
    }
    let root = workspace_root();
    let out_dir = target_dir(&root).join("bench");
    std::fs::create_dir_all(&out_dir)?;
    ensure_tools()?;
    raise_fd_limit();
    let weir = build_weir(&root)?;
    let floor = build_floor_relay(&root)?;

    let (_origin, origin_addr) = start_origin(&weir)?;

    // All proxies run side by side (idle when not measured); rounds
    // interleave them so load from other work on the machine hits each
    // alike, and the table shows the median of the rounds.
    let mut running = Vec::new();
    for proxy in opts.proxies.iter().map(String::as_str) {
        let addr = free_addr()?;
        let (cfg_path, mut cmd) = proxy_command(
            proxy,
            &weir,
            &floor,
            &out_dir,
            addr,
            origin_addr,
            opts.proxy_threads,
        )?;
        eprintln!("[bench] {proxy}: config {}", cfg_path.display());
        let p = spawn(proxy_name(proxy), &mut cmd)?;
        wait_listening(addr)?;
        // Warm up (and open the pooled origin connections).
        wrk(addr, &opts.path, 1, opts.connections, 1, false)?;
        running.push((p, addr));
    }
    let modes = [("keep-alive", false), ("close", true)];
    let mut samples: Vec<Vec<(WrkResult, f64)>> = vec![Vec::new(); running.len() * modes.len()];
    for round in 1..=opts.rounds {
        for (pi, (p, addr)) in running.iter().enumerate() {
            for (mi, (mode, close)) in modes.iter().enumerate() {
                if *close && is_floor(p.name) {
                    // A byte relay opens an origin connection per client
                    // connection: no floor for `Connection: close`.
                    continue;
                }
                let cpu0 = cpu_ticks(p.pid())?;
                let w = wrk(
                    *addr,
                    &opts.path,
                    opts.wrk_threads,
                    opts.connections,
                    opts.duration,
                    *close,
                )?;
                let cpu1 = cpu_ticks(p.pid())?;
                let cpu_us = (cpu1 - cpu0) as f64 * 1e6 / clock_ticks_per_sec();
                let per_req = if w.requests > 0 {
                    cpu_us / w.requests as f64
                } else {
                    f64::NAN
                };
                eprintln!(
                    "[bench] round {round} {} {mode}: {:.0} req/s, p50 {:.0} us, p99 {:.0} us, {per_req:.1} us CPU/req, {} errors, {} non-2xx",
                    p.name, w.rps, w.p50_us, w.p99_us, w.errors, w.non_2xx
                );
                samples[pi * modes.len() + mi].push((w, per_req));
            }
        }
    }
    let mut rows = Vec::new();
    for (pi, (p, _)) in running.iter().enumerate() {
        for (mi, (mode, _)) in modes.iter().enumerate() {
            let s = &samples[pi * modes.len() + mi];
            if s.is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&(WrkResult, f64)) -> f64| median(s.iter().map(f).collect());
            rows.push(Row {
                proxy: p.name,
                mode,
                wrk: WrkResult {
                    requests: med(&|x| x.0.requests as f64) as u64,
                    rps: med(&|x| x.0.rps),
                    p50_us: med(&|x| x.0.p50_us),
                    p99_us: med(&|x| x.0.p99_us),
                    errors: s.iter().map(|x| x.0.errors).sum(),
                    non_2xx: s.iter().map(|x| x.0.non_2xx).sum(),
                },
                cpu_us_per_req: med(&|x| x.1),
            });
        }
    }
    let mut idle = Vec::new();
    for (p, addr) in running.iter().filter(|(p, _)| !is_floor(p.name)) {
        let per_conn = idle_memory(p, *addr, opts.idle)?;
        eprintln!(
            "[bench] {}: {:.0} bytes per idle client connection",
            p.name, per_conn
        );
        idle.push((p.name, per_conn));
    }
    drop(running);

    let table = render(&rows, &idle, opts);
    println!("{table}");
    std::fs::write(out_dir.join("l7-results.md"), &table)?;
    if !opts.no_readme {
        update_readme(&root.join("README.md"), &table)?;
    }
    Ok(())
}

/// Builds the `weir` binary (release) and returns its path.
pub(crate) fn build_weir(root: &Path) -> Result<PathBuf> {
    eprintln!("[bench] building weir (release)");
    exec(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "proxy-user",
        "--bin",
        "weir",
    ]))?;
    Ok(target_dir(root).join("release").join("weir"))
}

/// Starts `weir origin` on a free loopback port.
pub(crate) fn start_origin(weir: &Path) -> Result<(Owned, SocketAddr)> {
    let addr = free_addr()?;
    let origin = spawn(
        "origin",
        Command::new(weir).args(["origin", "--listen", &addr.to_string(), "--name", "bench"]),
    )?;
    wait_listening(addr)?;
    Ok((origin, addr))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn proxy_name(p: &str) -> &'static str {
    match p {
        "weir" => "weir",
        "weir-epoll" => "weir, noiouring",
        "weir-defer" => "weir, defer-accept",
        "haproxy" => "HAProxy",
        "haproxy-defer" => "HAProxy, defer-accept",
        "floor-epoll" => FLOOR_EPOLL,
        "floor-uring" => FLOOR_URING,
        _ => "nginx",
    }
}

const FLOOR_EPOLL: &str = "floor: byte relay, epoll";
const FLOOR_URING: &str = "floor: byte relay, io_uring";

fn is_floor(name: &str) -> bool {
    name == FLOOR_EPOLL || name == FLOOR_URING
}

/// Builds `floor-relay` (release), the byte relay of the floor rows.
fn build_floor_relay(root: &Path) -> Result<PathBuf> {
    exec(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "xtask",
        "--bin",
        "floor-relay",
    ]))?;
    Ok(target_dir(root).join("release").join("floor-relay"))
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Installs wrk, haproxy and nginx from Debian's archive when missing (as root).
pub(crate) fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = [
        ("wrk", "wrk"),
        ("haproxy", "haproxy"),
        ("nginx", "nginx-light"),
    ]
    .into_iter()
    .filter(|(bin, _)| which(bin).is_none() && !Path::new("/usr/sbin").join(bin).is_file())
    .map(|(_, pkg)| pkg)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing {}: install them (apt-get install {}) or run as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("[bench] installing {}", missing.join(", "));
    exec(Command::new("apt-get").arg("update"))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

pub(crate) fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| Path::new("/usr/sbin").join(name))
}

pub(crate) fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub(crate) fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub(crate) fn spawn(name: &'static str, cmd: &mut Command) -> Result<Owned> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
    Ok(Owned { name, child })
}

pub(crate) fn wait_listening(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Writes the proxy's config; returns it and the command that runs it in the foreground.
fn proxy_command(
    proxy: &str,
    weir: &Path,
    floor: &Path,
    dir: &Path,
    addr: SocketAddr,
    origin: SocketAddr,
    threads: u32,
) -> Result<(PathBuf, Command)> {
    Ok(match proxy {
        "weir" | "weir-epoll" | "weir-defer" => {
            let path = dir.join(format!("{proxy}.cfg"));
            let epoll = if proxy == "weir-epoll" {
                "    noiouring\n"
            } else {
                ""
            };
            let defer = if proxy == "weir-defer" {
                " defer-accept"
            } else {
                ""
            };
            std::fs::write(
                &path,
                format!(
                    "global\n    threads {threads}\n    log-level warn\n{epoll}\
                     defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                     frontend bench\n    bind {addr}{defer}\n    maxconn 9000\n    default_backend origin\n\
                     backend origin\n    server o1 {origin}\n"
                ),
            )?;
            let mut cmd = Command::new(weir);
            cmd.args(["run", "--no-xdp", "-f"]).arg(&path);
            (path, cmd)
        }
        "floor-epoll" | "floor-uring" => {
            let mode = if proxy == "floor-epoll" {
                "epoll"
            } else {
                "io-uring"
            };
            let mut cmd = Command::new(floor);
            cmd.arg(mode).arg(addr.to_string()).arg(origin.to_string());
            (floor.to_path_buf(), cmd)
        }
        "haproxy" | "haproxy-defer" => {
            let path = dir.join(format!("{proxy}.cfg"));
            let defer = if proxy == "haproxy-defer" {
                " defer-accept"
            } else {
                ""
            };
            std::fs::write(
                &path,
                format!(
                    "global\n    nbthread {threads}\n    maxconn 9000\n\
                     defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n    http-reuse always\n\
                     frontend bench\n    bind {addr}{defer}\n    default_backend origin\n\
                     backend origin\n    server o1 {origin}\n"
                ),
            )?;
            let mut cmd = Command::new(tool("haproxy"));
            cmd.args(["-db", "-f"]).arg(&path);
            (path, cmd)
        }
        _ => {
            let path = dir.join("nginx.conf");
            let prefix = dir.join("nginx");
            std::fs::create_dir_all(prefix.join("logs"))?;
            std::fs::write(
                &path,
                format!(
                    "daemon off;\nmaster_process off;\nworker_processes {threads};\nworker_rlimit_nofile 19000;\n\
                     error_log {prefix}/logs/error.log error;\npid {prefix}/nginx.pid;\n\
                     events {{ worker_connections 9000; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
                     \x20 upstream origin {{ server {origin}; keepalive 64; }}\n\
                     \x20 server {{\n    listen {addr};\n    location / {{\n      proxy_pass http://origin;\n\
                     \x20     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
                    prefix = prefix.display()
                ),
            )?;
            let mut cmd = Command::new(tool("nginx"));
            cmd.arg("-p").arg(&prefix).arg("-c").arg(&path);
            (path, cmd)
        }
    })
}

pub(crate) fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `(comm)` which may contain spaces.
    let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// RSS growth per idle client connection (bytes), measured with `n` connections.
fn idle_memory(p: &Owned, addr: SocketAddr, n: usize) -> Result<f64> {
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(p.pid())?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(
            TcpStream::connect(addr).with_context(|| format!("{}: idle connection", p.name))?,
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(p.pid())?;
    drop(conns);
    Ok((after.saturating_sub(before) * 1024) as f64 / n as f64)
}

fn wrk(
    addr: SocketAddr,
    path: &str,
    threads: u32,
    conns: u32,
    secs: u32,
    close: bool,
) -> Result<WrkResult> {
    wrk_url(&format!("http://{addr}{path}"), threads, conns, secs, close)
}

/// wrk against `url` (http or https) with `--latency`.
pub(crate) fn wrk_url(
    url: &str,
    threads: u32,
    conns: u32,
    secs: u32,
    close: bool,
) -> Result<WrkResult> {
    let mut cmd = Command::new(tool("wrk"));
    cmd.args([
        "--latency",
        &format!("-t{threads}"),
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(url);
    let out = cmd.output().context("cannot run wrk")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse_wrk(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_duration_us(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

pub(crate) fn parse_wrk(text: &str) -> WrkResult {
    let mut r = WrkResult::default();
    for line in text.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_us = parse_duration_us(v),
            ["99%", v] => r.p99_us = parse_duration_us(v),
            ["Requests/sec:", v] => r.rps = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => r.requests = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    r
}

fn render(rows: &[Row], idle: &[(&str, f64)], opts: &Options) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`cargo xtask bench l7`: wrk -t{} -c{} -d{}s --latency `{}`, {} proxy worker thread(s), \
         one `weir origin`, all on one 2-core machine shared with other work; median of {} interleaved rounds.\n",
        opts.wrk_threads, opts.connections, opts.duration, opts.path, opts.proxy_threads, opts.rounds
    );
    let _ = writeln!(
        s,
        "| proxy | client connections | req/s | p50 | p99 | CPU per request | CPU ÷ HAProxy's (same bind options) | errors |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        // Rows with `defer-accept` compare with HAProxy with it too.
        let peer = if r.proxy.ends_with(", defer-accept") {
            "HAProxy, defer-accept"
        } else {
            "HAProxy"
        };
        let haproxy = rows
            .iter()
            .find(|h| h.proxy == peer && h.mode == r.mode)
            .map(|h| h.cpu_us_per_req);
        let ratio = haproxy.map_or_else(
            || "-".to_string(),
            |h| format!("{:.2}", r.cpu_us_per_req / h),
        );
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {ratio} | {} |",
            r.proxy,
            r.mode,
            r.wrk.rps,
            r.wrk.p50_us,
            r.wrk.p99_us,
            r.cpu_us_per_req,
            r.wrk.errors + r.wrk.non_2xx
        );
    }
    let _ = writeln!(
        s,
        "\nMemory per idle client connection ({} connections, RSS growth / N):\n",
        opts.idle
    );
    let _ = writeln!(s, "| proxy | bytes per idle connection |");
    let _ = writeln!(s, "|---|---:|");
    for (p, b) in idle {
        let _ = writeln!(s, "| {p} | {b:.0} |");
    }
    s
}

const README_START: &str = "<!-- bench:l7:start -->";
const README_END: &str = "<!-- bench:l7:end -->";

fn update_readme(path: &Path, table: &str) -> Result<()> {
    replace_readme_block(path, README_START, README_END, "Benchmarks: L7", table)
}

/// Replaces the block between the `start` and `end` markers of README.md
/// with `table` (appends a `## heading` section with the block if absent).
pub(crate) fn replace_readme_block(
    path: &Path,
    start: &str,
    end: &str,
    heading: &str,
    table: &str,
) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let block = format!("{start}\n{table}{end}");
    let new = match (text.find(start), text.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &text[..a], &text[b + end.len()..])
        }
        _ => format!("{text}\n## {heading}\n\n{block}\n"),
    };
    std::fs::write(path, new)?;
    eprintln!("[bench] table written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_output() {
        let out = "Running 10s test @ http://127.0.0.1:1/\n  1 threads and 50 connections\n  Latency Distribution\n     50%  415.00us\n     75%  600.00us\n     90%  800.00us\n     99%    1.23ms\n  123456 requests in 10.00s, 12.34MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec:  12345.67\nTransfer/sec:      1.23MB\n";
        let r = parse_wrk(out);
        assert_eq!(r.requests, 123_456);
        assert!((r.rps - 12345.67).abs() < 1e-6);
        assert!((r.p50_us - 415.0).abs() < 1e-6 && (r.p99_us - 1230.0).abs() < 1e-6);
        assert_eq!(r.errors, 3);
    }
}
