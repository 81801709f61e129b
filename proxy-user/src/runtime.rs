//! Startup, the listeners, signals and clean shutdown.
//!
//! `weir run` goes: load and validate the config (every error at once) ->
//! logging -> demo origins -> listeners (one accept loop per `bind`) -> the
//! XDP program (loaded, frontend table written, attached; a failure is one
//! warning and weir goes on in userspace unless a frontend says `xdp strict`)
//! -> a banner saying what runs where -> wait for SIGTERM/SIGINT -> detach,
//! remove this instance's pins, exit 0.

use std::{
    net::SocketAddr,
    path::Path,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use proxy_common::{proto, FrontendInfo, FrontendKey, FRONTEND_FLAG_XDP};
use tokio::{net::TcpListener, signal::unix::SignalKind};

use crate::{
    cli::{Command, RunArgs},
    config::{self, Config, Mode},
    l4::{self, XdpProgram},
    origin,
    relay::{Relay, RelayServer, DEFAULT_MAX_CONNECTIONS},
};

/// Connect timeout when the config sets none (HAProxy warns and uses none; we pick a sane bound).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one subcommand; returns the process exit code.
pub fn main(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check { file } => Ok(check(&file)),
        Command::Run(args) => {
            let Some(cfg) = load_or_report(&args.file) else {
                return Ok(ExitCode::from(2));
            };
            init_logging(cfg.global.log_level);
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = cfg.global.threads {
                rt.worker_threads(n as usize);
            }
            rt.enable_all().build()?.block_on(run(cfg, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Origin { listen, name } => {
            init_logging(log::LevelFilter::Info);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let bound = origin::serve(name.clone(), &listen).await?;
                    for addr in bound {
                        println!("origin '{name}' listening on http://{addr}/");
                    }
                    wait_for_stop_signal().await
                })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `weir check`: prints warnings, every error, and a verdict.
fn check(file: &Path) -> ExitCode {
    match config::load(file) {
        Ok((_, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: configuration is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn load_or_report(file: &Path) -> Option<Config> {
    match config::load(file) {
        Ok((cfg, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            Some(cfg)
        }
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn init_logging(level: log::LevelFilter) {
    // RUST_LOG, when set, overrides the config's log-level.
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .try_init();
}

async fn wait_for_stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received, stopping"),
        _ = int.recv() => log::info!("SIGINT received, stopping"),
    }
    Ok(())
}

/// One L4 frontend entry of the XDP program.
struct XdpEntry {
    frontend: String,
    addr: SocketAddr,
    key: FrontendKey,
    info: FrontendInfo,
    iface: Option<String>,
}

/// What the config asks of the XDP program: one entry per bind with a
/// concrete address (wildcard binds cannot be matched by destination).
fn xdp_entries(cfg: &Config) -> (Vec<XdpEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for fe in &cfg.frontends {
        let proto = if fe.mode == Mode::Udp { proto::UDP } else { proto::TCP };
        let flags = if fe.xdp.is_some() { FRONTEND_FLAG_XDP } else { 0 };
        for bind in &fe.binds {
            if bind.addr.ip().is_unspecified() {
                skipped.push(format!("{} ({})", fe.name, bind.addr));
                continue;
            }
            let iface = bind
                .interface
                .clone()
                .or_else(|| l4::iface::interface_of(bind.addr.ip()));
            entries.push(XdpEntry {
                frontend: fe.name.clone(),
                addr: bind.addr,
                key: l4::frontend_key(bind.addr, proto),
                info: FrontendInfo {
                    id: entries.len() as u32,
                    flags,
                    ..FrontendInfo::default()
                },
                iface,
            });
        }
    }
    (entries, skipped)
}

fn aya_mode(mode: config::model::XdpMode) -> aya::programs::XdpMode {
    match mode {
        config::model::XdpMode::Auto => aya::programs::XdpMode::Default,
        config::model::XdpMode::Native => aya::programs::XdpMode::Driver,
        config::model::XdpMode::Generic => aya::programs::XdpMode::Skb,
    }
}

/// Loads, fills and attaches the XDP program.
fn start_xdp(cfg: &Config, args: &RunArgs, entries: &[XdpEntry]) -> Result<XdpProgram> {
    let object = l4::find_object(args.bpf_object.as_deref())?;
    let mut program = XdpProgram::load(
        &object,
        &l4::LoadOptions {
            instance: cfg.global.instance.clone(),
            log_level: cfg.global.log_level,
            pin: true,
        },
    )?;
    program.forward_logs();
    let table: Vec<_> = entries.iter().map(|e| (e.key, e.info)).collect();
    program.set_frontends(&table)?;
    let mut ifaces: Vec<&str> = entries.iter().filter_map(|e| e.iface.as_deref()).collect();
    ifaces.sort_unstable();
    ifaces.dedup();
    for iface in ifaces {
        program.attach(iface, aya_mode(cfg.global.xdp_mode))?;
    }
    Ok(program)
}

async fn run(cfg: Config, args: RunArgs) -> Result<()> {
    let mut banner = vec![format!(
        "weir {} running: config {}, instance '{}', pid {}",
        env!("CARGO_PKG_VERSION"),
        cfg.source.display(),
        cfg.global.instance,
        std::process::id()
    )];
    let mut curl_lines = Vec::new();

    for demo in &cfg.global.demo_origins {
        let bound = origin::serve(demo.name.clone(), &demo.addrs).await?;
        for addr in bound {
            banner.push(format!("  origin    {:<12} http://{addr}/ (built-in demo origin)", demo.name));
        }
    }

    // Listeners. Until the L7 proxy serves `mode http`, every tcp/http
    // frontend relays bytes to its default backend's servers.
    for fe in &cfg.frontends {
        if fe.mode == Mode::Udp {
            continue; // UDP services live in the XDP data path only
        }
        let backend = fe
            .default_backend
            .as_deref()
            .and_then(|b| cfg.backend(b))
            .with_context(|| format!("frontend '{}' has no default_backend to send traffic to", fe.name))?;
        let servers: Vec<RelayServer> = backend
            .servers
            .iter()
            .map(|s| RelayServer {
                name: s.name.clone(),
                addr: s.addr,
            })
            .collect();
        let connect_timeout = backend.timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let relay = Arc::new(Relay::new(fe.name.clone(), servers, connect_timeout));
        for bind in &fe.binds {
            if bind.addr.port() == 0 {
                continue; // an all-ports XDP service: nothing to listen on
            }
            let listener = TcpListener::bind(bind.addr).await.with_context(|| {
                format!(
                    "{}:{}: frontend '{}' cannot listen on {}",
                    cfg.source.display(),
                    bind.line,
                    fe.name,
                    bind.addr
                )
            })?;
            let max = fe.maxconn.map(|m| m as usize).unwrap_or(DEFAULT_MAX_CONNECTIONS);
            tokio::spawn(relay.clone().run(listener, max));
            banner.push(format!(
                "  frontend  {:<12} {} {} -> backend '{}' ({} servers)",
                fe.name,
                fe.mode,
                bind.addr,
                backend.name,
                backend.servers.len()
            ));
            if fe.mode == Mode::Http {
                curl_lines.push(format!("  curl http://{}/", bind.addr));
            }
        }
    }

    // The XDP program.
    let (entries, skipped) = xdp_entries(&cfg);
    if !skipped.is_empty() {
        log::info!(
            "XDP does not count wildcard binds (no destination address to match): {}",
            skipped.join(", ")
        );
    }
    let strict = cfg.frontends.iter().any(|f| f.xdp.is_some_and(|x| x.strict));
    if strict && args.no_xdp {
        bail!("--no-xdp given, but a frontend demands `xdp strict`");
    }
    let program = if args.no_xdp || entries.is_empty() {
        None
    } else {
        match start_xdp(&cfg, &args, &entries) {
            Ok(p) => Some(p),
            Err(e) if strict => {
                return Err(e.context("a frontend demands `xdp strict`, so weir cannot start without XDP"))
            }
            Err(e) => {
                log::warn!("XDP not available, continuing in userspace only: {e:#}");
                None
            }
        }
    };
    if let Some(p) = &program {
        let pin = p.pin_dir().map(|d| d.display().to_string()).unwrap_or_default();
        banner.push(format!(
            "  xdp       weir_xdp attached to {} (counting {} frontend addresses), maps pinned in {pin}/",
            p.attached().join(", "),
            entries.len()
        ));
    }

    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "weir".into());
    banner.push("Try:".into());
    banner.extend(curl_lines);
    banner.push(format!("  {exe} check -f {}", cfg.source.display()));
    if let Some(p) = &program {
        if let Some(dir) = p.pin_dir() {
            banner.push(format!(
                "  bpftool map dump pinned {}/{}",
                dir.display(),
                proxy_common::map_names::FRONTEND_STATS
            ));
            banner.push(format!(
                "  bpftool map dump pinned {}/{}",
                dir.display(),
                proxy_common::map_names::PACKET_STATS
            ));
        }
    }
    banner.push("Stop with Ctrl-C (SIGINT) or SIGTERM.".into());
    println!("{}", banner.join("\n"));

    wait_for_stop_signal().await?;

    if let Some(p) = program {
        let ids: Vec<u32> = entries.iter().map(|e| e.info.id).collect();
        if let Ok(snap) = p.snapshot(&ids) {
            for (entry, (_, c)) in entries.iter().zip(&snap.frontends) {
                log::info!(
                    "xdp: frontend '{}' {}: {} packets, {} bytes",
                    entry.frontend,
                    entry.addr,
                    c.packets,
                    c.bytes
                );
            }
        }
        let removed = p.shutdown();
        log::info!(
            "XDP detached{}",
            if removed { ", pins removed" } else { " (pins kept: another weir process of this instance is running)" }
        );
    }
    Ok(())
}
