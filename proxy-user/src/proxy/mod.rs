//! The L7 (HTTP/1.1) proxy engine that serves `mode http` frontends.
//!
//! [`Engine::start`] turns the configuration into shared contexts: one
//! [`FrontendCtx`] per `mode http` frontend (routes, header rules,
//! timeouts, counters) and one [`upstream::BackendCtx`] per backend they use
//! (balancer, servers with their connection pools, health checker, queue).
//! [`serve`] runs the accept loop of one listener; each client connection is
//! one task ([`session`]).
//!
//! | module | what |
//! |---|---|
//! | [`session`] | the client loop: head, route, forward, keep-alive, pipelining |
//! | [`upstream`] | server choice, `maxconn` queue, connect, retries/redispatch steps |
//! | [`pool`] | per-server idle keep-alive connections, plain or TLS ([`pool::ServerStream`]) |
//! | [`slot`] | [`slot::SlotBox`]: boxed request and task futures, their memory reused per thread |
//! | [`stream`] | body streaming (pass, re-chunk, de-chunk) and the upgrade tunnel |
//! | [`route`] | `use_backend` conditions and `http-request` header rules |
//! | [`forwardfor`] | `option forwardfor` (header, `except`, `if-none`) per request |
//! | [`log`] | the access log (httplog-like or JSON) |
//! | [`exporter`] | `use-service prometheus-exporter`: live stats in Prometheus format |
//! | [`error`] | [`error::ProxyError`]: side, status, retryable, counter |
//! | [`worker`] | L7 worker threads, one current-thread runtime and listener each |
//!
//! Wiring from the runtime:
//!
//! ```ignore
//! let engine = proxy::Engine::start(&cfg, &mut |e| store.register(e.guid(), e.object_type()))?;
//! for each bind of a `mode http` frontend:
//!     tokio::spawn(proxy::serve(listener, engine.frontend(&fe.name).unwrap()));
//! // at shutdown
//! engine.shutdown().await;
//! ```

pub mod error;
pub mod exporter;
pub mod forwardfor;
pub mod log;
pub mod pool;
pub mod queue;
pub mod route;
pub mod session;
pub mod slot;
pub mod stream;
pub mod timer;
pub mod upstream;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::balance::{
    Algorithm, BackupPolicy, BalanceError, BuildContext, ConnTracker, Server as BalanceServer,
    SharedBalancer,
};
use crate::config::{self, Backend, Config, Frontend, HttpRequestRule, LogFormat, Mode, Timeouts};
use crate::health::{self, checker::HealthChecker, checker::HealthEvent, state::Health};
use crate::http::Limits;
use crate::stats::{Counter, EntityCounters, ObjectType, Stamp};
use crate::tls::{
    RecordSocket, TlsAcceptor, TlsClientSettings, TlsConfigError, TlsConnector, TlsServerSettings,
};

use queue::Queues;
use route::Route;
use slot::SlotBox;
use upstream::{BackendCtx, ServerCtx};

/// Client connections served at once per listener when the frontend sets no `maxconn`.
pub const DEFAULT_MAXCONN: usize = crate::relay::DEFAULT_MAX_CONNECTIONS;

/// A `mode http` frontend as the engine uses it.
#[derive(Debug)]
pub struct FrontendCtx {
    /// Config name.
    pub name: String,
    /// `use_backend` rules, in order.
    pub routes: Vec<Route>,
    /// `default_backend`.
    pub default_backend: Option<Arc<BackendCtx>>,
    /// The frontend's `http-request` rules (run before the backend's).
    pub http_request: Vec<HttpRequestRule>,
    /// `option forwardfor [...]`.
    pub forwardfor: Option<config::ForwardFor>,
    /// Client-side timeouts.
    pub timeouts: Timeouts,
    /// `option httplog` / `log-format json`; `None`: no access log.
    pub log_format: Option<LogFormat>,
    /// `option logasap` (and a log format): the line is logged when the
    /// response head is sent.
    pub logasap: bool,
    /// Codec limits: the engine's base limits with the configured ones
    /// (`tune.bufsize`, `tune.http.maxhdr`, `http-max-request-line`,
    /// `http-max-body-size`, `option http-reject-get-body`) applied.
    pub limits: Limits,
    /// `maxconn`.
    pub maxconn: usize,
    /// Stats counters of this frontend.
    pub counters: EntityCounters,
    /// Client connections open now (process-local gauge).
    pub current_sessions: AtomicU64,
    /// The engine's live statistics, for `use-service prometheus-exporter`.
    pub exporter: Arc<exporter::Exporter>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("condition", &self.condition)
            .field("backend", &self.backend.name)
            .finish()
    }
}

/// An entity that needs stats counters, as handed to [`Engine::start`]'s callback.
#[derive(Debug, Clone, Copy)]
pub enum StatsEntity<'a> {
    /// A frontend.
    Frontend(&'a Frontend),
    /// A backend.
    Backend(&'a Backend),
    /// A server of a backend.
    Server(&'a Backend, &'a config::Server),
}

impl StatsEntity<'_> {
    /// The entity's `guid`, if configured.
    pub fn guid(&self) -> Option<&str> {
        match self {
            StatsEntity::Frontend(f) => f.guid.as_ref().map(|g| g.as_str()),
            StatsEntity::Backend(b) => b.guid.as_ref().map(|g| g.as_str()),
            StatsEntity::Server(_, s) => s.guid.as_ref().map(|g| g.as_str()),
        }
    }

    /// Its stats object type.
    pub fn object_type(&self) -> ObjectType {
        match self {
            StatsEntity::Frontend(_) => ObjectType::Frontend,
            StatsEntity::Backend(_) => ObjectType::Backend,
            StatsEntity::Server(..) => ObjectType::Server,
        }
    }
}

/// Why the engine cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A backend's `balance` cannot be built.
    #[error("backend '{backend}': {source}")]
    Balance {
        /// Backend name.
        backend: String,
        /// Why.
        source: BalanceError,
    },
    /// A `server ... ssl` line's TLS settings cannot be loaded (e.g. a
    /// missing or unparsable `ca-file`).
    #[error("{file}:{line}: server '{backend}/{server}': TLS settings: {source}")]
    Tls {
        /// The configuration file.
        file: String,
        /// Line of the `server` statement.
        line: usize,
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// Why (boxed: it is large and rare).
        source: Box<TlsConfigError>,
    },
    /// A route names a backend that does not exist.
    #[error("frontend '{frontend}': unknown backend '{backend}'")]
    UnknownBackend {
        /// Frontend name.
        frontend: String,
        /// Missing backend.
        backend: String,
    },
}

/// The running L7 engine: contexts for every `mode http` frontend and the
/// health checkers of their backends.
#[derive(Debug)]
pub struct Engine {
    frontends: HashMap<String, Arc<FrontendCtx>>,
    backends: HashMap<String, Arc<BackendCtx>>,
    checkers: Vec<HealthChecker>,
    /// L7 worker threads (`threads`), started by the first
    /// [`Engine::listen_frontend`].
    workers: OnceLock<worker::Workers>,
    worker_count: usize,
    exporter: Arc<exporter::Exporter>,
}

impl Engine {
    /// Builds the contexts of every `mode http` frontend and the backends
    /// they route to, and starts health checks for servers with `check`.
    /// `counters` is asked once per frontend, backend and server. Must run
    /// inside a tokio runtime.
    pub fn start(
        cfg: &Config,
        counters: &mut dyn FnMut(StatsEntity<'_>) -> EntityCounters,
    ) -> Result<Engine, EngineError> {
        Self::start_with_limits(cfg, Limits::default(), counters)
    }

    /// [`Engine::start`] with other base codec limits (e.g. `require_host:
    /// false`); the limits the configuration sets still apply on top.
    pub fn start_with_limits(
        cfg: &Config,
        limits: Limits,
        counters: &mut dyn FnMut(StatsEntity<'_>) -> EntityCounters,
    ) -> Result<Engine, EngineError> {
        let mut engine = Engine {
            frontends: HashMap::new(),
            backends: HashMap::new(),
            checkers: Vec::new(),
            workers: OnceLock::new(),
            worker_count: worker::count(cfg.global.threads),
            exporter: Arc::new(exporter::Exporter::default()),
        };
        let workers = engine.worker_count;
        let exporter = engine.exporter.clone();
        for fe in cfg.frontends.iter().filter(|f| f.mode == Mode::Http) {
            let mut get_backend = |name: &str| -> Result<Arc<BackendCtx>, EngineError> {
                if let Some(b) = engine.backends.get(name) {
                    return Ok(b.clone());
                }
                let be = cfg
                    .backend(name)
                    .ok_or_else(|| EngineError::UnknownBackend {
                        frontend: fe.name.clone(),
                        backend: name.to_string(),
                    })?;
                let (ctx, checker) = build_backend(cfg, be, workers, counters)?;
                engine.backends.insert(name.to_string(), ctx.clone());
                engine.checkers.extend(checker);
                Ok(ctx)
            };
            let mut routes = Vec::new();
            for ub in &fe.use_backends {
                routes.push(Route {
                    condition: ub.condition.clone(),
                    backend: get_backend(&ub.backend)?,
                });
            }
            let default_backend = fe
                .default_backend
                .as_deref()
                .map(&mut get_backend)
                .transpose()?;
            let ctx = FrontendCtx {
                name: fe.name.clone(),
                routes,
                default_backend,
                http_request: fe.http_request.clone(),
                forwardfor: fe.forwardfor.clone(),
                timeouts: fe.timeouts,
                log_format: fe.log_format,
                logasap: fe.logasap && fe.log_format.is_some(),
                limits: configured_limits(&limits, &cfg.global, fe),
                maxconn: fe.maxconn.map_or(DEFAULT_MAXCONN, |m| m as usize),
                counters: counters(StatsEntity::Frontend(fe)),
                current_sessions: AtomicU64::new(0),
                exporter: exporter.clone(),
            };
            engine.frontends.insert(fe.name.clone(), Arc::new(ctx));
        }
        // The exporter lists entities in config order.
        let frontends: Vec<_> = cfg
            .frontends
            .iter()
            .filter_map(|f| engine.frontends.get(&f.name).cloned())
            .collect();
        let backends: Vec<_> = cfg
            .backends
            .iter()
            .filter_map(|b| engine.backends.get(&b.name).cloned())
            .collect();
        exporter.publish(&frontends, &backends);
        Ok(engine)
    }

    /// The context of `mode http` frontend `name`.
    pub fn frontend(&self, name: &str) -> Option<Arc<FrontendCtx>> {
        self.frontends.get(name).cloned()
    }

    /// The live statistics page of `use-service prometheus-exporter`
    /// (shared by every frontend of this engine).
    pub fn exporter(&self) -> Arc<exporter::Exporter> {
        self.exporter.clone()
    }

    /// The context of backend `name`, if a `mode http` frontend uses it.
    pub fn backend(&self, name: &str) -> Option<Arc<BackendCtx>> {
        self.backends.get(name).cloned()
    }

    /// Stops the L7 workers (their connections are dropped) and the health checkers.
    pub async fn shutdown(mut self) {
        if let Some(workers) = self.workers.take() {
            // Joining the threads blocks: not on the runtime's thread.
            let _ = tokio::task::spawn_blocking(move || drop(workers)).await;
        }
        for c in self.checkers {
            c.shutdown().await;
        }
    }
}

/// The codec limits of frontend `fe`: `base` with what the configuration
/// sets. `tune.bufsize` bounds the head as HAProxy's buffer does: the
/// buffer minus its rewrite reserve ([`config::HEAD_REWRITE_RESERVE`]).
fn configured_limits(base: &Limits, global: &config::Global, fe: &Frontend) -> Limits {
    let mut limits = base.clone();
    if let Some(bufsize) = global.tune_bufsize {
        limits.max_head_bytes = bufsize.saturating_sub(config::HEAD_REWRITE_RESERVE) as usize;
    }
    if let Some(n) = global.tune_http_maxhdr {
        limits.max_headers = usize::from(n);
    }
    if let Some(n) = fe.max_request_line {
        limits.max_request_line = n as usize;
    }
    if fe.max_body_size.is_some() {
        limits.max_body = fe.max_body_size;
    }
    limits.reject_body_without_semantics |= fe.reject_get_body;
    limits
}

fn balance_words(be: &Backend) -> (Vec<String>, Vec<&'static str>) {
    let balance = match &be.balance {
        config::Balance::RoundRobin => vec!["roundrobin".to_string()],
        config::Balance::StaticRr => vec!["static-rr".to_string()],
        config::Balance::LeastConn => vec!["leastconn".to_string()],
        config::Balance::Source => vec!["source".to_string()],
        config::Balance::Random => vec!["random".to_string()],
        config::Balance::Uri { whole: false } => vec!["uri".to_string()],
        config::Balance::Uri { whole: true } => vec!["uri".to_string(), "whole".to_string()],
        config::Balance::Hdr(name) => vec![format!("hdr({name})")],
    };
    let hash_type = match be.hash_type {
        config::HashType::MapBased => vec!["map-based"],
        config::HashType::Consistent => vec!["consistent"],
    };
    (balance, hash_type)
}

fn balance_servers(be: &Backend, up: impl Fn(usize) -> bool) -> Vec<BalanceServer> {
    be.servers
        .iter()
        .enumerate()
        .filter(|(i, _)| up(*i))
        .map(|(i, s)| BalanceServer::new(i, s.name.clone(), s.weight, s.backup))
        .collect()
}

/// The TLS connector of a `server ... ssl` line (`None` without `ssl`).
/// The handshake is bounded by the backend's `timeout connect`.
fn server_tls(
    cfg: &Config,
    be: &Backend,
    s: &config::Server,
) -> Result<Option<TlsConnector>, EngineError> {
    if !s.ssl {
        return Ok(None);
    }
    let settings = TlsClientSettings {
        handshake_timeout: be
            .timeouts
            .connect
            .unwrap_or(upstream::DEFAULT_CONNECT_TIMEOUT),
        ..TlsClientSettings::from(s)
    };
    TlsConnector::new(&settings)
        .map(Some)
        .map_err(|source| tls_error(cfg, be, s, source))
}

fn tls_error(
    cfg: &Config,
    be: &Backend,
    s: &config::Server,
    source: TlsConfigError,
) -> EngineError {
    EngineError::Tls {
        file: cfg.source.display().to_string(),
        line: s.line,
        backend: be.name.clone(),
        server: s.name.clone(),
        source: Box::new(source),
    }
}

/// The health check of one checked server: a TCP connect or `option
/// httpchk`, over TLS (with the server's verify/ca-file/sni, a full
/// handshake each time) for an `ssl` server.
fn server_check(
    cfg: &Config,
    be: &Backend,
    s: &config::Server,
    timeout: Duration,
) -> Result<health::AnyCheck, EngineError> {
    let http = be.http_check.as_ref().map(|hc| health::http::HttpCheck {
        method: hc.method.clone(),
        uri: hc.uri.clone(),
        host: None,
        expect: hc.expect_status.map_or(
            health::http::ExpectStatus::SuccessOrRedirect,
            health::http::ExpectStatus::Exactly,
        ),
        timeout,
    });
    if !s.ssl {
        return Ok(match http {
            Some(http) => health::AnyCheck::Http(http),
            None => health::AnyCheck::Tcp(health::tcp::TcpCheck::new(timeout)),
        });
    }
    let settings = TlsClientSettings {
        handshake_timeout: timeout,
        ..TlsClientSettings::from(s)
    };
    let connector =
        TlsConnector::for_checks(&settings).map_err(|source| tls_error(cfg, be, s, source))?;
    Ok(health::AnyCheck::Tls(match http {
        Some(http) => health::tls::TlsCheck::http(connector, http, timeout),
        None => health::tls::TlsCheck::handshake(connector, timeout),
    }))
}

/// How long one check of `s` may take: `timeout check`, else `timeout
/// connect`, else the server's `inter`; never more than its `inter` (at
/// least 100 ms) so checks do not pile up behind each other.
fn check_timeout(be: &Backend, s: &config::Server) -> Duration {
    be.timeouts
        .check
        .or(be.timeouts.connect)
        .unwrap_or(s.inter)
        .min(s.inter.max(Duration::from_millis(100)))
}

fn build_backend(
    cfg: &Config,
    be: &Backend,
    workers: usize,
    counters: &mut dyn FnMut(StatsEntity<'_>) -> EntityCounters,
) -> Result<(Arc<BackendCtx>, Option<HealthChecker>), EngineError> {
    let balance_err = |source| EngineError::Balance {
        backend: be.name.clone(),
        source,
    };
    let (words, hash_type) = balance_words(be);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let algorithm = Algorithm::from_config(&words, &hash_type).map_err(balance_err)?;
    let hash_on = match &algorithm {
        Algorithm::Hash { on, hash_type: _ } => Some(on.clone()),
        _ => None,
    };
    let ctx = BuildContext {
        conns: ConnTracker::new(be.servers.len()),
        random_seed: std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15,
    };
    let backup_policy = match be.all_backups {
        true => BackupPolicy::All,
        false => BackupPolicy::First,
    };
    let balancer = SharedBalancer::with_backup_policy(
        &algorithm,
        &balance_servers(be, |_| true),
        ctx,
        backup_policy,
    )
    .map_err(balance_err)?;
    let mut check_targets = Vec::new();
    let tls = be
        .servers
        .iter()
        .map(|s| server_tls(cfg, be, s))
        .collect::<Result<Vec<_>, _>>()?;
    let servers = be
        .servers
        .iter()
        .zip(tls)
        .map(|(s, tls)| {
            let check_index = s.check.then(|| {
                check_targets.push(health::checker::Target {
                    name: s.name.clone(),
                    addr: s.addr,
                    backup: s.backup,
                });
                check_targets.len() - 1
            });
            ServerCtx {
                name: s.name.clone(),
                addr: s.addr,
                maxconn: s.maxconn,
                maxqueue: s.maxqueue,
                shutdown_sessions_on_down: s.shutdown_sessions_on_down,
                marked_down: Notify::new(),
                queued: AtomicU64::new(0),
                check_index,
                counters: counters(StatsEntity::Server(be, s)),
                pool: pool::Pool::with_workers(
                    workers,
                    pool::DEFAULT_MAX_IDLE_PER_SERVER,
                    pool::DEFAULT_IDLE_TIMEOUT,
                ),
                tls,
            }
        })
        .collect();
    let backend = Arc::new(BackendCtx {
        name: be.name.clone(),
        balancer,
        hash_on,
        servers,
        health: OnceLock::new(),
        timeouts: be.timeouts,
        retries: be.retries,
        redispatch: be.redispatch,
        forwardfor: be.forwardfor.clone(),
        http_request: be.http_request.clone(),
        counters: counters(StatsEntity::Backend(be)),
        queued: AtomicU64::new(0),
        waiting: AtomicUsize::new(0),
        generation: AtomicU64::new(0),
        queues: Mutex::new(Queues::new(be.servers.len())),
    });
    if check_targets.is_empty() {
        return Ok((backend, None));
    }
    // One check per checked server, in `check_targets` order, each with
    // its own `inter`/`rise`/`fall`/...: `ssl` servers are checked over TLS
    // (see docs/tls.md).
    let servers = be
        .servers
        .iter()
        .filter(|s| s.check)
        .zip(check_targets)
        .map(|(s, target)| {
            let check = server_check(cfg, be, s, check_timeout(be, s))?;
            Ok(health::checker::CheckedServer {
                target,
                check: Arc::new(check),
                config: health::checker::CheckerConfig::for_server(s),
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let checker = HealthChecker::spawn_each(be.name.clone(), servers, tx);
    let _ = backend.health.set(checker.handle());
    tokio::spawn(follow_health(backend.clone(), be.clone(), rx));
    Ok((backend, Some(checker)))
}

/// Applies health events to a backend: logs each UP/DOWN change (HAProxy's
/// line), counts check failures and down transitions, and rebuilds the
/// balancer over the UP servers.
async fn follow_health(
    backend: Arc<BackendCtx>,
    config: Backend,
    mut events: mpsc::UnboundedReceiver<HealthEvent>,
) {
    let by_target: Vec<usize> = (0..backend.servers.len())
        .filter(|&i| backend.servers[i].check_index.is_some())
        .collect();
    while let Some(event) = events.recv().await {
        match event {
            HealthEvent::Checked {
                server, outcome, ..
            } => {
                if outcome.is_err() {
                    backend.servers[by_target[server]]
                        .counters
                        .inc(Counter::CheckFailures);
                    backend.counters.inc(Counter::CheckFailures);
                }
            }
            HealthEvent::StateChanged(change) => {
                let s = &backend.servers[by_target[change.server]];
                s.counters.touch(Stamp::LastChange);
                if change.to == Health::Down {
                    ::log::warn!("{change}");
                    s.counters.inc(Counter::DownTransitions);
                    if s.shutdown_sessions_on_down {
                        // Exchanges in flight end (session.rs). Idle pooled
                        // connections stay: they belong to the workers'
                        // rings, and a DOWN server is not picked anyway.
                        s.marked_down.notify_waiters();
                    }
                    if change.active_up == 0 && change.backup_up == 0 {
                        ::log::error!("backend {} has no server available!", backend.name);
                        backend.counters.inc(Counter::DownTransitions);
                        backend.counters.touch(Stamp::LastChange);
                    }
                } else {
                    ::log::info!("{change}");
                }
                let servers = balance_servers(&config, |i| backend.is_up(i));
                if let Err(e) = backend.balancer.rebuild(&servers) {
                    ::log::error!("backend {}: cannot rebuild the balancer: {e}", backend.name);
                }
                // Queued requests re-evaluate against the new server set.
                backend.health_changed();
            }
        }
    }
}

/// The counters callback for [`Engine::start`] from the runtime's stats
/// registry; an entity the registry does not know counts locally.
pub fn counters_from_registry<'r>(
    registry: &'r crate::stats::registry::Registry,
    store: &'r crate::stats::StatsStore,
) -> impl FnMut(StatsEntity<'_>) -> EntityCounters + 'r {
    move |e| {
        match e {
            StatsEntity::Frontend(f) => registry.frontends.get(&f.name),
            StatsEntity::Backend(b) => registry.backends.get(&b.name),
            StatsEntity::Server(b, s) => registry.servers.get(&(b.name.clone(), s.name.clone())),
        }
        .cloned()
        .unwrap_or_else(|| store.register(None, e.object_type()))
    }
}

impl Engine {
    /// Binds every `bind` of `mode http` frontend `fe` (TLS-terminating the
    /// `ssl` ones) and serves them on the L7 workers ([`worker`]): one
    /// SO_REUSEPORT listener per worker and bind, all under the frontend's
    /// one `maxconn`. Returns each bound address with its TLS acceptor,
    /// which the caller reloads on SIGHUP. Binds with a guid count their
    /// connections in `registry.listeners`.
    pub fn listen_frontend(
        &self,
        cfg: &Config,
        fe: &Frontend,
        registry: &crate::stats::registry::Registry,
    ) -> anyhow::Result<Vec<(SocketAddr, Option<Arc<TlsAcceptor>>)>> {
        use anyhow::Context as _;
        let ctx = self
            .frontend(&fe.name)
            .with_context(|| format!("frontend '{}' is not a mode http frontend", fe.name))?;
        let mut bound = Vec::new();
        for bind in &fe.binds {
            let place = || {
                format!(
                    "{}:{}: frontend '{}'",
                    cfg.source.display(),
                    bind.line,
                    fe.name
                )
            };
            let tls = match &bind.tls {
                None => None,
                Some(settings) => Some(Arc::new(
                    TlsAcceptor::new(TlsServerSettings::from(settings))
                        .with_context(|| format!("{}: bind {} ssl", place(), bind.addr))?,
                )),
            };
            if self.workers.get().is_none() {
                let started = worker::Workers::start(self.worker_count)
                    .context("cannot start the L7 worker threads")?;
                let _ = self.workers.set(started);
            }
            let workers = self.workers.get().expect("started above");
            // The first listener fixes the port (`:0` picks one); the other
            // workers' listeners share it.
            let listen = |addr| {
                let l = crate::net::listen_reuseport_std(addr)?;
                if bind.defer_accept {
                    crate::net::set_defer_accept(&l)?;
                }
                std::io::Result::Ok(l)
            };
            let first = listen(bind.addr)
                .with_context(|| format!("{} cannot listen on {}", place(), bind.addr))?;
            let addr = first.local_addr()?;
            let mut listeners = vec![first];
            for _ in 1..workers.len() {
                listeners.push(
                    listen(addr).with_context(|| format!("{} cannot listen on {addr}", place()))?,
                );
            }
            bound.push((addr, tls.clone()));
            let counters = registry
                .listeners
                .get(&(fe.name.clone(), bind.addr.to_string()))
                .cloned();
            let limit = Arc::new(Semaphore::new(ctx.maxconn));
            let mut listeners = listeners.into_iter().map(Some).collect::<Vec<_>>();
            workers.spawn_each(|i| {
                let listener = listeners[i].take().expect("one listener per worker");
                let (ctx, tls, counters, limit) =
                    (ctx.clone(), tls.clone(), counters.clone(), limit.clone());
                async move {
                    // Registered with this worker's event loop.
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(listener, ctx, tls, counters, limit).await,
                        Err(e) => ::log::error!("{}: cannot register a listener: {e}", ctx.name),
                    }
                }
            });
        }
        Ok(bound)
    }
}

/// Accept loop of one listener of a `mode http` frontend: each connection
/// is served by its own task. At most `maxconn` at once (further accepts
/// wait). Runs until the task is dropped.
pub async fn serve(listener: TcpListener, frontend: Arc<FrontendCtx>) {
    serve_with_tls(listener, frontend, None).await;
}

/// [`serve`], TLS-terminating every connection with `tls` when given
/// (`bind ... ssl`); requests then carry `X-Forwarded-Proto: https`.
pub async fn serve_with_tls(
    listener: TcpListener,
    frontend: Arc<FrontendCtx>,
    tls: Option<Arc<TlsAcceptor>>,
) {
    serve_listener(listener, frontend, tls, None).await;
}

/// [`serve_with_tls`], also counting accepted connections into the
/// listener's stats object (`bind ... guid G`) when there is one.
pub async fn serve_listener(
    listener: TcpListener,
    frontend: Arc<FrontendCtx>,
    tls: Option<Arc<TlsAcceptor>>,
    listener_counters: Option<crate::stats::EntityCounters>,
) {
    let limit = Arc::new(Semaphore::new(frontend.maxconn));
    accept_loop(listener, frontend, tls, listener_counters, limit).await;
}

/// [`serve_listener`] under a `maxconn` limit shared with other listeners.
async fn accept_loop(
    listener: TcpListener,
    frontend: Arc<FrontendCtx>,
    tls: Option<Arc<TlsAcceptor>>,
    listener_counters: Option<crate::stats::EntityCounters>,
    limit: Arc<Semaphore>,
) {
    let mut listener = match Listener::new(listener) {
        Ok(l) => l,
        Err(e) => {
            ::log::error!("{}: cannot serve a listener: {e}", frontend.name);
            return;
        }
    };
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(c) = &listener_counters {
                    c.connection();
                    c.session_started();
                }
                let fe = frontend.clone();
                // One spawn site per stream type, so a plain connection's
                // task is not sized for a TLS stream. The task's state lives
                // in a reused slot ([`slot::SlotBox`]), built in place there.
                match (stream, &tls) {
                    (Accepted::Ring(stream), None) => {
                        tokio::spawn(SlotBox::new_with(|| async move {
                            session::run(fe, stream, peer, "http").await;
                            drop(permit);
                        }));
                    }
                    (Accepted::Epoll(stream), None) => {
                        tokio::spawn(SlotBox::new_with(|| async move {
                            session::run(fe, stream, peer, "http").await;
                            drop(permit);
                        }));
                    }
                    (Accepted::Ring(stream), Some(acceptor)) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(SlotBox::new_with(|| async move {
                            // A failed handshake is counted and logged by the acceptor.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                session::run(fe, stream, peer, "https").await;
                            }
                            drop(permit);
                        }));
                    }
                    (Accepted::Epoll(stream), Some(acceptor)) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(SlotBox::new_with(|| async move {
                            // A failed handshake is counted and logged by the acceptor.
                            if let Ok(stream) = acceptor.accept(RecordSocket(stream)).await {
                                session::run(fe, stream, peer, "https").await;
                            }
                            drop(permit);
                        }));
                    }
                }
            }
            Err(e) => {
                ::log::warn!("{}: accept failed: {e}", frontend.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A frontend's listening socket. Its connections are served by this
/// thread's io_uring when it has one, else by tokio's epoll; either way
/// they inherit `TCP_NODELAY` and delayed first ACKs
/// ([`crate::net::set_delayed_first_ack`]) from the listener.
enum Listener {
    Ring(crate::uring::UringListener),
    Epoll(TcpListener),
}

enum Accepted {
    Ring(crate::uring::UringStream),
    Epoll(TcpStream),
}

impl Listener {
    fn new(listener: TcpListener) -> std::io::Result<Listener> {
        crate::net::set_delayed_first_ack(&listener)?;
        if crate::uring::here() {
            // Accepted with accept4 (see `uring::listener` for why not
            // through the ring); the connections never enter epoll.
            return crate::uring::UringListener::new(listener.into_std()?).map(Listener::Ring);
        }
        crate::net::set_nodelay(&listener)?;
        Ok(Listener::Epoll(listener))
    }

    async fn accept(&mut self) -> std::io::Result<(Accepted, SocketAddr)> {
        match self {
            Listener::Ring(l) => l.accept().await.map(|(s, peer)| (Accepted::Ring(s), peer)),
            Listener::Epoll(l) => l.accept().await.map(|(s, peer)| (Accepted::Epoll(s), peer)),
        }
    }
}

/// Binds `addr` and serves frontend `fe` on it in a new task; returns the
/// bound address (useful with port 0).
pub async fn listen(addr: SocketAddr, fe: Arc<FrontendCtx>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, fe));
    Ok(bound)
}
