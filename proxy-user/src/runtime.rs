//! Startup, the listeners, signals and clean shutdown.
//!
//! `weir run` goes: load and validate the config (every error at once) ->
//! logging -> demo origins -> listeners (one accept loop per `bind`) -> the
//! XDP program (loaded, frontend table written, attached; a failure is one
//! warning and weir goes on in userspace unless a frontend says `xdp strict`)
//! -> a banner saying what runs where -> wait for SIGTERM/SIGINT -> detach,
//! remove this instance's pins, exit 0.

use std::{net::SocketAddr, path::Path, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use proxy_common::{proto, FrontendInfo, FrontendKey};
use tokio::signal::unix::SignalKind;

use crate::{
    cli::{Command, RunArgs},
    config::{self, Config, Mode},
    health,
    l4::{self, control::L4Control, service::L4Service, XdpProgram},
    origin, proxy,
    relay::{Relay, RelayServer, DEFAULT_MAX_CONNECTIONS},
    stats::{self, registry::Registry, StatsStore, StoreOptions},
    tls::{TlsAcceptor, TlsClientSettings, TlsConnector, TlsServerSettings},
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
            crate::uring::set_enabled(cfg.global.io_uring);
            crate::uring::coalesce::set_max(cfg.global.tune_accept_coalesce);
            // `threads 1`: everything on the main thread (a current-thread
            // runtime: no hand-off between the main thread and one worker,
            // no work-stealing bookkeeping per wake-up).
            let mut rt = match cfg.global.threads {
                Some(1) => tokio::runtime::Builder::new_current_thread(),
                threads => {
                    let mut rt = tokio::runtime::Builder::new_multi_thread();
                    if let Some(n) = threads {
                        rt.worker_threads(n as usize);
                    }
                    rt
                }
            };
            rt.enable_all().build()?.block_on(run(cfg, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { config, args } => {
            let file = match (&args.file, &config) {
                (Some(f), _) => f.clone(),
                (None, Some(cfg_path)) => {
                    let Some(cfg) = load_or_report(cfg_path) else {
                        return Ok(ExitCode::from(2));
                    };
                    cfg.global.shm_stats_file.with_context(|| {
                        format!(
                            "{}: no `shm-stats-file` in the global section; pass --file PATH",
                            cfg_path.display()
                        )
                    })?
                }
                (None, None) => bail!("give the stats file (--file PATH) or a config (-f CONFIG)"),
            };
            stats::cli::run_stats_command(&args, &file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::L4 { file, what } => {
            let Some(cfg) = load_or_report(&file) else {
                return Ok(ExitCode::from(2));
            };
            let text = match what {
                crate::cli::L4Command::Show => l4::inspect::show(&cfg)?,
                crate::cli::L4Command::Which { proto, src, dst } => {
                    l4::inspect::which(&cfg, &proto, src, dst)?
                }
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Decap { iface, instance } => {
            init_logging(log::LevelFilter::Info);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(run_decap(iface, instance))?;
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

/// `weir decap`: the real-side half of DSR, until SIGTERM/SIGINT.
async fn run_decap(iface: String, instance: Option<String>) -> Result<()> {
    let object = l4::find_object(None)?;
    let mut program = XdpProgram::load(
        &object,
        &l4::LoadOptions {
            instance: instance.unwrap_or_else(|| format!("decap-{iface}")),
            log_level: log::LevelFilter::Info,
            pin: true,
            max_entries: Vec::new(),
        },
    )?;
    program.attach_decap(&iface, aya::programs::XdpMode::Default)?;
    println!("weir decap: stripping IPIP / IPv6-in-IPv6 on {iface}; stop with Ctrl-C or SIGTERM");
    wait_for_stop_signal().await?;
    program.shutdown();
    Ok(())
}

/// SIGHUP reloads every TLS certificate: new handshakes use the new files,
/// established connections are untouched, and a bad file leaves the old
/// certificate in place with an error naming the file.
fn spawn_tls_reload_on_sighup(acceptors: Vec<Arc<TlsAcceptor>>) -> Result<()> {
    let mut hup = tokio::signal::unix::signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            for acceptor in &acceptors {
                match acceptor.reload() {
                    Ok(()) => log::info!("SIGHUP: TLS certificates reloaded"),
                    Err(e) => log::error!("SIGHUP: TLS reload refused, old certificates kept: {e}"),
                }
            }
        }
    });
    Ok(())
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

/// One frontend address the XDP program knows (counted, or balanced when
/// it belongs to an XDP service).
struct XdpEntry {
    frontend: String,
    addr: SocketAddr,
    key: FrontendKey,
    info: FrontendInfo,
    iface: Option<String>,
    service: bool,
}

/// One entry per bind with a concrete address (wildcard binds cannot be
/// matched by destination); the index is the FRONTEND_STATS slot.
fn xdp_entries(cfg: &Config) -> (Vec<XdpEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for fe in &cfg.frontends {
        let proto = if fe.mode == Mode::Udp {
            proto::UDP
        } else {
            proto::TCP
        };
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
                    ..FrontendInfo::default()
                },
                iface,
                service: fe.xdp.is_some(),
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

/// Loads the program, programs every table and attaches it.
fn start_xdp(
    cfg: &Config,
    args: &RunArgs,
    entries: &[XdpEntry],
    services: Vec<L4Service>,
) -> Result<L4Control> {
    let object = l4::find_object(args.bpf_object.as_deref())?;
    let conntrack = cfg
        .frontends
        .iter()
        .filter_map(|f| f.xdp.map(|x| x.conntrack_size))
        .max()
        .unwrap_or(0);
    let mut program = XdpProgram::load(
        &object,
        &l4::LoadOptions {
            instance: cfg.global.instance.clone(),
            log_level: cfg.global.log_level,
            pin: true,
            max_entries: l4::control::map_sizes(&services, conntrack),
        },
    )?;
    program.forward_logs();
    let counted: Vec<_> = entries
        .iter()
        .filter(|e| !e.service)
        .map(|e| (e.key, e.info))
        .collect();
    let data_path = l4::service::global_config(&cfg.global.instance, &services, 0);
    let mut control = L4Control::install(program, services, counted, data_path)?;
    let mut ifaces: Vec<String> = entries.iter().filter_map(|e| e.iface.clone()).collect();
    for svc in control.services() {
        ifaces.extend(svc.interfaces.iter().cloned());
        // NAT replies come back from the reals to Weir's local address:
        // the program must also see the interfaces toward the reals.
        if svc.flags & proxy_common::FRONTEND_FLAG_DSR == 0 {
            ifaces.extend(
                svc.reals
                    .iter()
                    .filter_map(|r| l4::iface::interface_of(r.local_addr)),
            );
        }
    }
    ifaces.sort_unstable();
    ifaces.dedup();
    for iface in ifaces {
        control
            .program_mut()
            .attach(&iface, aya_mode(cfg.global.xdp_mode))?;
    }
    Ok(control)
}

/// The reals of one XDP service that are health-checked.
struct CheckedReals {
    /// Index of the service in `L4Control::services`.
    service: usize,
    backend: String,
    /// Index of each checked real in the service, parallel to `servers`.
    index: Vec<usize>,
    /// What to check, each with its server's own `inter`/`rise`/`fall`/...
    servers: Vec<health::checker::CheckedServer<health::AnyCheck>>,
}

/// Health checks of the XDP services' reals (servers with `check`): a
/// state change logs HAProxy's line and republishes the Maglev table.
fn spawn_l4_health(
    cfg: &Config,
    control: Arc<std::sync::Mutex<L4Control>>,
) -> Vec<(health::checker::HealthChecker, tokio::task::JoinHandle<()>)> {
    let mut checkers = Vec::new();
    let services: Vec<CheckedReals> = {
        let guard = control.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .services()
            .iter()
            .enumerate()
            .filter_map(|(si, svc)| {
                let fe = cfg.frontend(&svc.name)?;
                let be = cfg.backend(fe.default_backend.as_deref()?)?;
                let mut index = Vec::new();
                let mut servers = Vec::new();
                for (ri, r) in svc.reals.iter().enumerate() {
                    let Some(s) = be.servers.iter().find(|s| s.name == r.name && s.check) else {
                        continue;
                    };
                    // One check may take `timeout check`, else `timeout
                    // connect`, else `inter` (a loaded machine must not
                    // mark a healthy real down).
                    let timeout = be.timeouts.check.or(be.timeouts.connect).unwrap_or(s.inter);
                    index.push(ri);
                    servers.push(health::checker::CheckedServer {
                        target: health::checker::Target {
                            name: r.name.clone(),
                            addr: r.addr,
                            backup: false,
                        },
                        check: Arc::new(health::AnyCheck::Tcp(health::tcp::TcpCheck::new(timeout))),
                        config: health::checker::CheckerConfig::for_server(s),
                    });
                }
                Some(CheckedReals {
                    service: si,
                    backend: be.name.clone(),
                    index,
                    servers,
                })
            })
            .filter(|c| !c.servers.is_empty())
            .collect()
    };
    for CheckedReals {
        service: si,
        backend,
        index,
        servers,
    } in services
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let checker = health::checker::HealthChecker::spawn_each(backend, servers, tx);
        let control = control.clone();
        // Shutdown awaits this task: it holds a reference to the L4 control.
        let forwarder = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let health::checker::HealthEvent::StateChanged(change) = event {
                    log::warn!("{change}");
                    let up = change.to == health::state::Health::Up;
                    let real = index[change.server];
                    let control = control.clone();
                    // Thousands of map writes: off the async workers.
                    let result = tokio::task::spawn_blocking(move || {
                        control
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .set_real_up(si, real, up)
                    })
                    .await;
                    if let Ok(Err(e)) = result {
                        log::error!("cannot republish the Maglev table: {e}");
                    }
                }
            }
        });
        checkers.push((checker, forwarder));
    }
    checkers
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

    // Counters: the shm-stats-file when configured, process-local otherwise.
    let (store, warnings) = StatsStore::open(
        cfg.global.shm_stats_file.as_deref(),
        cfg.global.shm_stats_file_max_objects.unwrap_or(0) as u64,
        StoreOptions::default(),
    )?;
    for w in warnings {
        log::warn!("{w}");
    }
    let (registry, warnings) = Registry::register(&store, &cfg);
    for w in warnings {
        log::warn!("{w}");
    }
    let unnamed = cfg.entities_without_guid();
    if !unnamed.is_empty() {
        log::info!(
            "counted in this process only (no guid, so not in the shm-stats-file): {}",
            unnamed.join(", ")
        );
    }
    let heartbeat = store.spawn_heartbeat(stats::DEFAULT_HEARTBEAT_INTERVAL);
    if let Some(path) = &cfg.global.shm_stats_file {
        banner.push(format!(
            "  stats     {} (shared, GUID-keyed)",
            path.display()
        ));
    }

    for demo in &cfg.global.demo_origins {
        let bound = origin::serve(demo.name.clone(), &demo.addrs).await?;
        for addr in bound {
            banner.push(format!(
                "  origin    {:<12} http://{addr}/ (built-in demo origin)",
                demo.name
            ));
        }
    }

    // The XDP program: counts every frontend address, balances XDP services.
    let (entries, skipped) = xdp_entries(&cfg);
    if !skipped.is_empty() {
        log::info!(
            "XDP does not count wildcard binds (no destination address to match): {}",
            skipped.join(", ")
        );
    }
    let services = l4::service::services_from_config(&cfg, |fe, addr| {
        entries
            .iter()
            .find(|e| e.frontend == fe && e.addr == addr)
            .map(|e| e.info.id)
    })
    .map_err(|errors| {
        anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let strict = cfg
        .frontends
        .iter()
        .any(|f| f.xdp.is_some_and(|x| x.strict));
    if strict && args.no_xdp {
        bail!("--no-xdp given, but a frontend demands `xdp strict`");
    }
    let has_services = !services.is_empty();
    let control = if args.no_xdp || entries.is_empty() {
        None
    } else {
        match start_xdp(&cfg, &args, &entries, services) {
            Ok(c) => Some(Arc::new(std::sync::Mutex::new(c))),
            Err(e) if strict => {
                return Err(
                    e.context("a frontend demands `xdp strict`, so weir cannot start without XDP")
                )
            }
            Err(e) => {
                if has_services {
                    log::warn!(
                        "XDP not available, XDP services fall back to the userspace relay: {e:#}"
                    );
                } else {
                    log::warn!("XDP not available, continuing in userspace only: {e:#}");
                }
                None
            }
        }
    };

    // TLS acceptors of `bind ... ssl`, reloaded on SIGHUP.
    let mut acceptors: Vec<Arc<TlsAcceptor>> = Vec::new();

    // `mode http` frontends are served by the L7 engine (crate::proxy).
    let http_engine =
        proxy::Engine::start(&cfg, &mut proxy::counters_from_registry(&registry, &store))?;

    // Listeners. `mode tcp` frontends relay bytes to their default
    // backend's servers. XDP services are served by the relay only when XDP
    // is not running (fallback).
    for fe in &cfg.frontends {
        if fe.mode == Mode::Udp || (fe.xdp.is_some() && control.is_some()) {
            continue;
        }
        if fe.mode == Mode::Http {
            for (addr, tls) in http_engine.listen_frontend(&cfg, fe, &registry)? {
                let (scheme, insecure) = if tls.is_some() {
                    ("https", "-k ")
                } else {
                    ("http", "")
                };
                acceptors.extend(tls);
                banner.push(format!(
                    "  frontend  {:<12} {scheme} {addr} -> L7 proxy",
                    fe.name
                ));
                curl_lines.push(format!("  curl {insecure}{scheme}://{addr}/"));
            }
            continue;
        }
        let backend = fe
            .default_backend
            .as_deref()
            .and_then(|b| cfg.backend(b))
            .with_context(|| {
                format!(
                    "frontend '{}' has no default_backend to send traffic to",
                    fe.name
                )
            })?;
        let local = || store.register(None, stats::ObjectType::Server);
        let mut servers = Vec::new();
        for s in &backend.servers {
            let tls = if s.ssl {
                let connector =
                    TlsConnector::new(&TlsClientSettings::from(s)).with_context(|| {
                        format!(
                            "{}:{}: server '{}/{}': TLS settings",
                            cfg.source.display(),
                            s.line,
                            backend.name,
                            s.name
                        )
                    })?;
                Some(Arc::new(connector))
            } else {
                None
            };
            servers.push(RelayServer {
                name: s.name.clone(),
                addr: s.addr,
                counters: registry
                    .servers
                    .get(&(backend.name.clone(), s.name.clone()))
                    .or_else(|| registry.l4_reals.get(&(fe.name.clone(), s.name.clone())))
                    .cloned()
                    .unwrap_or_else(local),
                tls,
            });
        }
        let connect_timeout = backend.timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let relay = Arc::new(
            Relay::new(
                fe.name.clone(),
                servers,
                connect_timeout,
                registry
                    .frontends
                    .get(&fe.name)
                    .or_else(|| registry.l4_services.get(&fe.name))
                    .cloned()
                    .unwrap_or_else(local),
                registry
                    .backends
                    .get(&backend.name)
                    .cloned()
                    .unwrap_or_else(local),
            )
            .with_splice(fe.splice_auto),
        );
        for bind in &fe.binds {
            if bind.addr.port() == 0 {
                continue; // an all-ports XDP service: nothing to listen on
            }
            let listener = crate::net::listen_reuseport(bind.addr)
                .and_then(|l| {
                    if bind.defer_accept {
                        crate::net::set_defer_accept(&l)?;
                    }
                    Ok(l)
                })
                .with_context(|| {
                    format!(
                        "{}:{}: frontend '{}' cannot listen on {}",
                        cfg.source.display(),
                        bind.line,
                        fe.name,
                        bind.addr
                    )
                })?;
            let max = fe
                .maxconn
                .map(|m| m as usize)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS);
            let tls = match &bind.tls {
                None => None,
                Some(settings) => {
                    let acceptor = TlsAcceptor::new(TlsServerSettings::from(settings))
                        .with_context(|| {
                            format!(
                                "{}:{}: frontend '{}': bind {} ssl",
                                cfg.source.display(),
                                bind.line,
                                fe.name,
                                bind.addr
                            )
                        })?;
                    let acceptor = Arc::new(acceptor);
                    acceptors.push(acceptor.clone());
                    Some(acceptor)
                }
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let counters = registry
                .listeners
                .get(&(fe.name.clone(), bind.addr.to_string()))
                .cloned();
            tokio::spawn(relay.clone().run(listener, max, tls, counters));
            let how = if fe.xdp.is_some() {
                " (userspace fallback of an XDP service)"
            } else {
                ""
            };
            banner.push(format!(
                "  frontend  {:<12} {} {} -> backend '{}' ({} servers){how}",
                fe.name,
                fe.mode,
                bind.addr,
                backend.name,
                backend.servers.len()
            ));
            if fe.mode == Mode::Http {
                let insecure = if scheme == "https" { "-k " } else { "" };
                curl_lines.push(format!("  curl {insecure}{scheme}://{}/", bind.addr));
            }
        }
    }

    if !acceptors.is_empty() {
        spawn_tls_reload_on_sighup(acceptors)?;
    }

    let mut checkers = Vec::new();
    let mut sync = None;
    if let Some(control) = &control {
        let guard = control.lock().unwrap_or_else(|e| e.into_inner());
        let p = guard.program();
        let pin = p
            .pin_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        banner.push(format!(
            "  xdp       weir_xdp attached to {} (counting {} frontend addresses), maps pinned in {pin}/",
            p.attached().join(", "),
            entries.len()
        ));
        for svc in guard.services() {
            banner.push(format!(
                "  l4        {:<12} {} {} {} reals, Maglev table {} ({})",
                svc.name,
                if svc.proto == proto::UDP {
                    "udp"
                } else {
                    "tcp"
                },
                svc.vips
                    .iter()
                    .map(|(v, _)| v.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                svc.reals.len(),
                svc.table_size,
                if svc.flags & proxy_common::FRONTEND_FLAG_DSR != 0 {
                    "dsr"
                } else {
                    "nat"
                },
            ));
        }
        drop(guard);
        checkers = spawn_l4_health(&cfg, control.clone());
        sync = Some(stats::sync::SyncTask::spawn(
            control.clone(),
            mirror_plan(&cfg, &registry, &entries, control),
            cfg.global.stats_sync_interval,
        ));
        // The L7 metrics page lists the XDP services and reals too.
        http_engine
            .exporter()
            .publish_l4(l4_entities(&cfg, &registry));
    }

    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "weir".into());
    banner.push("Try:".into());
    banner.extend(curl_lines);
    banner.push(format!("  {exe} check -f {}", cfg.source.display()));
    if cfg.global.shm_stats_file.is_some() {
        banner.push(format!("  {exe} stats -f {}", cfg.source.display()));
    }
    if let Some(control) = &control {
        let guard = control.lock().unwrap_or_else(|e| e.into_inner());
        if !guard.services().is_empty() {
            banner.push(format!("  {exe} l4 -f {} show", cfg.source.display()));
        }
        if let Some(dir) = guard.program().pin_dir() {
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

    for (checker, forwarder) in checkers {
        checker.shutdown().await;
        // The forwarder ends once the checker's channel closes; bounded in
        // case a table update is still running.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forwarder).await;
    }
    http_engine.shutdown().await;
    if let Some(sync) = sync {
        sync.finish();
    }
    if let Some(control) = control {
        // The health and sync tasks hold clones until their cancellation
        // completes: wait (bounded) for them to let go.
        let mut control = control;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let control = loop {
            match Arc::try_unwrap(control) {
                Ok(m) => break m.into_inner().unwrap_or_else(|e| e.into_inner()),
                Err(shared) if std::time::Instant::now() < deadline => {
                    control = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    bail!("internal error: the L4 control is still shared 5 s after shutdown")
                }
            }
        };
        let ids: Vec<u32> = entries.iter().map(|e| e.info.id).collect();
        if let Ok(snap) = control.program().snapshot(&ids) {
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
        let removed = control.shutdown();
        log::info!(
            "XDP detached{}",
            if removed {
                ", pins removed"
            } else {
                " (pins kept: another weir process of this instance is running)"
            }
        );
    }
    heartbeat.abort();
    store.close();
    Ok(())
}

/// Which stats object each XDP counter is mirrored into.
/// The XDP services and their reals with their counter handles, in
/// config order, for the metrics page.
fn l4_entities(cfg: &Config, registry: &stats::registry::Registry) -> proxy::exporter::L4Entities {
    let mut l4 = proxy::exporter::L4Entities::default();
    for fe in cfg.frontends.iter().filter(|f| f.xdp.is_some()) {
        if let Some(h) = registry.l4_services.get(&fe.name) {
            l4.services.push((fe.name.clone(), h.clone()));
        }
        let servers = fe
            .default_backend
            .as_deref()
            .and_then(|b| cfg.backend(b))
            .map_or(&[][..], |b| &b.servers[..]);
        for s in servers {
            if let Some(h) = registry.l4_reals.get(&(fe.name.clone(), s.name.clone())) {
                l4.reals.push((fe.name.clone(), s.name.clone(), h.clone()));
            }
        }
    }
    l4
}

fn mirror_plan(
    cfg: &Config,
    registry: &Registry,
    entries: &[XdpEntry],
    control: &Arc<std::sync::Mutex<L4Control>>,
) -> stats::sync::MirrorPlan {
    let slots_of = |fe: &str| -> Vec<u32> {
        entries
            .iter()
            .filter(|e| e.frontend == fe)
            .map(|e| e.info.id)
            .collect()
    };
    let mut plan = stats::sync::MirrorPlan {
        frontends: Vec::new(),
        services: Vec::new(),
        reals: Vec::new(),
    };
    for fe in &cfg.frontends {
        if let Some(h) = registry.frontends.get(&fe.name) {
            plan.frontends.push((h.clone(), slots_of(&fe.name)));
        }
        for b in &fe.binds {
            if let Some(h) = registry
                .listeners
                .get(&(fe.name.clone(), b.addr.to_string()))
            {
                let slot: Vec<u32> = entries
                    .iter()
                    .filter(|e| e.frontend == fe.name && e.addr == b.addr)
                    .map(|e| e.info.id)
                    .collect();
                plan.frontends.push((h.clone(), slot));
            }
        }
        if let Some(h) = registry.l4_services.get(&fe.name) {
            plan.services.push((h.clone(), slots_of(&fe.name)));
        }
    }
    let guard = control.lock().unwrap_or_else(|e| e.into_inner());
    for svc in guard.services() {
        for r in &svc.reals {
            if let Some(h) = registry.l4_reals.get(&(svc.name.clone(), r.name.clone())) {
                plan.reals.push((h.clone(), r.id));
            }
        }
    }
    plan
}
