//! The check runner: one tokio task per server, each checking every `inter`
//! (`fastinter` while a streak towards the other state is in progress,
//! `downinter` while DOWN), until shutdown. Every server has its own
//! [`CheckerConfig`] (HAProxy's per-server `inter`, `rise`, `fall`, ...).
//!
//! Everything observable goes out on one unbounded channel of
//! [`HealthEvent`]s: a `Checked` per completed check (stats: check count,
//! failures, durations) and a `StateChanged` per UP/DOWN flip (log it,
//! rebuild the balancer / Maglev table, bump the down-transition counter).
//! The channel is unbounded on purpose: event volume is bounded by servers
//! ÷ `inter`, and a slow consumer must never delay checks or the request
//! path (passive reports send from request handlers).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::passive::{Observation, Passive, Verdict};
use super::state::{Cause, Health, ServerHealth, Thresholds, Transition};
use super::{CheckOutcome, HealthCheck};

/// Check scheduling and thresholds of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckerConfig {
    /// Time between the end of one check and the start of the next.
    pub inter: Duration,
    /// Used instead of `inter` while UP-going-down or DOWN-going-up.
    pub fastinter: Option<Duration>,
    /// Used instead of `inter` while fully DOWN.
    pub downinter: Option<Duration>,
    /// rise / fall / initial state / passive health.
    pub thresholds: Thresholds,
}

impl Default for CheckerConfig {
    fn default() -> Self {
        Self {
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            thresholds: Thresholds::default(),
        }
    }
}

impl CheckerConfig {
    /// The settings of a `server` line (`inter`, `fastinter`, `downinter`,
    /// `rise`, `fall`, `observe`, `error-limit`, `on-error`;
    /// `default-server` already merged in by the parser).
    pub fn for_server(s: &crate::config::Server) -> Self {
        Self {
            inter: s.inter,
            fastinter: s.fastinter,
            downinter: s.downinter,
            thresholds: Thresholds {
                rise: s.rise,
                fall: s.fall,
                passive: s.observe.map(|observe| Passive {
                    observe,
                    error_limit: s.error_limit,
                    on_error: s.on_error,
                }),
                ..Thresholds::default()
            },
        }
    }

    fn delay_after(&self, h: &ServerHealth) -> Duration {
        if h.transitioning() {
            self.fastinter.unwrap_or(self.inter)
        } else if h.state() == Health::Down {
            self.downinter.unwrap_or(self.inter)
        } else {
            self.inter
        }
    }
}

/// A server to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Server name from config (`server s1 …`).
    pub name: String,
    /// Address checked (`addr`/`port` overrides already applied).
    pub addr: SocketAddr,
    /// `backup` server (only affects counts in log lines).
    pub backup: bool,
}

/// One server to check: where, how, and with which settings.
#[derive(Debug)]
pub struct CheckedServer<C> {
    /// Name and address.
    pub target: Target,
    /// The probe.
    pub check: Arc<C>,
    /// Its own intervals and thresholds.
    pub config: CheckerConfig,
}

/// Something the checker observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthEvent {
    /// An active check completed (whether or not the state changed).
    Checked {
        /// Index of the server in the `targets` given to `spawn`.
        server: usize,
        outcome: CheckOutcome,
        duration: Duration,
    },
    /// A server went UP or DOWN.
    StateChanged(StateChange),
}

/// A server's UP/DOWN flip, with what HAProxy's log line needs.
/// `Display` renders that line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// Backend name.
    pub backend: Arc<str>,
    /// Index of the server in the `targets` given to `spawn`.
    pub server: usize,
    /// Server name.
    pub name: String,
    /// Whether it is a backup server.
    pub backup: bool,
    /// New state.
    pub to: Health,
    /// What caused it.
    pub cause: Cause,
    /// Duration of the check that caused it (`None` for passive causes).
    pub check_duration: Option<Duration>,
    /// Non-backup servers UP after this change.
    pub active_up: usize,
    /// Backup servers UP after this change.
    pub backup_up: usize,
}

impl fmt::Display for StateChange {
    /// `Server be/s1 is DOWN, reason: Layer4 connection problem, info:
    /// "Connection refused", check duration: 0ms. 1 active and 0 backup
    /// servers left.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.backup {
            "Backup Server"
        } else {
            "Server"
        };
        write!(
            f,
            "{kind} {}/{} is {}, {}",
            self.backend,
            self.name,
            self.to,
            self.cause.describe()
        )?;
        if let Some(d) = self.check_duration {
            write!(f, ", check duration: {}ms", d.as_millis())?;
        }
        let verb = match self.to {
            Health::Up => "online",
            Health::Down => "left",
        };
        write!(
            f,
            ". {} active and {} backup servers {verb}.",
            self.active_up, self.backup_up
        )
    }
}

/// Per-server state shared by its check task and the passive reporters.
struct Slot {
    name: String,
    addr: SocketAddr,
    backup: bool,
    /// Mirror of `health.state() == Up`, readable without the lock (the
    /// balancer's `accept` callback reads it per request).
    up: AtomicBool,
    /// `observe` / `error-limit` / `on-error`, read without the lock to
    /// drop observations that do not count.
    passive: Option<Passive>,
    /// Set while a passive error streak is open, so the per-request success
    /// report can skip the lock in the common case.
    passive_streak: AtomicBool,
    /// Woken when `on-error` fired: the check task brings its next check
    /// forward to `fastinter`.
    reschedule: Notify,
    health: Mutex<ServerHealth>,
}

struct Shared {
    backend: Arc<str>,
    slots: Vec<Slot>,
    events: mpsc::UnboundedSender<HealthEvent>,
}

impl Shared {
    fn lock(&self, server: usize) -> MutexGuard<'_, ServerHealth> {
        // The state machine has no invariant a panic could break halfway.
        self.slots[server]
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Publish a transition. Called with the server's lock held, so one
    /// server's changes are sent in the order they happened.
    fn publish(&self, server: usize, t: Transition, check_duration: Option<Duration>) {
        let slot = &self.slots[server];
        slot.up.store(t.to == Health::Up, Ordering::Release);
        let up = |backup: bool| {
            self.slots
                .iter()
                .filter(|s| s.backup == backup && s.up.load(Ordering::Acquire))
                .count()
        };
        let change = StateChange {
            backend: self.backend.clone(),
            server,
            name: slot.name.clone(),
            backup: slot.backup,
            to: t.to,
            cause: t.cause,
            check_duration,
            active_up: up(false),
            backup_up: up(true),
        };
        // A dropped receiver only means nobody listens any more.
        let _ = self.events.send(HealthEvent::StateChanged(change));
    }

    /// Record an active check; returns the delay before the next one.
    fn on_check(
        &self,
        server: usize,
        outcome: CheckOutcome,
        duration: Duration,
        cfg: &CheckerConfig,
    ) -> Duration {
        let mut h = self.lock(server);
        let t = h.record_check(&outcome);
        let _ = self.events.send(HealthEvent::Checked {
            server,
            outcome,
            duration,
        });
        if let Some(t) = t {
            self.publish(server, t, Some(duration));
        }
        cfg.delay_after(&h)
    }
}

/// Cheap, cloneable access to a running checker's state, for request
/// handlers (health in `accept`, passive reports) and the control plane.
#[derive(Clone)]
pub struct HealthHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthHandle")
            .field("backend", &self.shared.backend)
            .field("up", &self.up_servers())
            .finish()
    }
}

impl HealthHandle {
    /// Backend name.
    pub fn backend(&self) -> &str {
        &self.shared.backend
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.shared.slots.len()
    }

    /// True when the backend has no servers.
    pub fn is_empty(&self) -> bool {
        self.shared.slots.is_empty()
    }

    /// Is `server` UP? Lock-free; cheap enough for a balancer `accept`.
    /// Like every per-server method here, panics if `server` is not an
    /// index of the `targets` given to `spawn`.
    pub fn is_up(&self, server: usize) -> bool {
        self.shared.slots[server].up.load(Ordering::Acquire)
    }

    /// UP flag of every server, by index (to rebuild a balancer / table).
    pub fn up_servers(&self) -> Vec<bool> {
        (0..self.len()).map(|i| self.is_up(i)).collect()
    }

    /// Name and address of `server`.
    pub fn target(&self, server: usize) -> (&str, SocketAddr) {
        let s = &self.shared.slots[server];
        (&s.name, s.addr)
    }

    /// HAProxy stats status (`UP`, `UP 1/3`, `DOWN`, `DOWN 1/2`).
    pub fn status(&self, server: usize) -> String {
        self.shared.lock(server).status()
    }

    /// One event of live traffic to `server`. What counts depends on its
    /// `observe` mode (see [`super::passive`]); `error-limit` consecutive
    /// errors run its `on-error` action, and a state change it causes is
    /// published like a check's (cause: `Health analyze`). Lock-free for
    /// servers without `observe`, for ignored observations, and for
    /// successes while no error streak is open.
    pub fn observe(&self, server: usize, observation: Observation) {
        let slot = &self.shared.slots[server];
        let Some(passive) = slot.passive else { return };
        match observation.verdict(passive.observe) {
            Some(Verdict::Success) if slot.passive_streak.load(Ordering::Relaxed) => {
                let mut h = self.shared.lock(server);
                h.record_passive_success();
                slot.passive_streak.store(false, Ordering::Relaxed);
            }
            None | Some(Verdict::Success) => {}
            Some(Verdict::Error) => {
                let mut h = self.shared.lock(server);
                slot.passive_streak.store(true, Ordering::Relaxed);
                if let Some(fired) = h.record_passive_error(observation) {
                    slot.passive_streak.store(false, Ordering::Relaxed);
                    if let Some(t) = fired.transition {
                        self.shared.publish(server, t, None);
                    }
                    // Every action forces `fastinter` for the next check.
                    slot.reschedule.notify_one();
                }
            }
        }
    }
}

/// A running checker for one backend. Dropping it stops the checks too
/// (the tasks see the shutdown channel close); [`shutdown`](Self::shutdown)
/// additionally waits for them.
pub struct HealthChecker {
    handle: HealthHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// Start checking `targets` with `check`, all with the same `cfg`.
    /// Must be called inside a tokio runtime. First checks are spread over
    /// one `inter` (server *i* of *n* starts after `inter·i/n`) so a big
    /// backend is not probed in a burst.
    pub fn spawn<C: HealthCheck>(
        backend: impl Into<Arc<str>>,
        targets: Vec<Target>,
        check: C,
        cfg: CheckerConfig,
        events: mpsc::UnboundedSender<HealthEvent>,
    ) -> Self {
        let check = Arc::new(check);
        let servers = targets
            .into_iter()
            .map(|target| CheckedServer {
                target,
                check: check.clone(),
                config: cfg,
            })
            .collect();
        Self::spawn_each(backend, servers, events)
    }

    /// Like [`spawn`](Self::spawn), each server with a check and settings
    /// of its own (e.g. a TLS check for `ssl` servers and a plain one for
    /// the others; `inter`/`rise`/`fall` from each `server` line). Server
    /// *i* (the index in events and on the handle) is `servers[i]`; its
    /// first check starts after its own `inter·i/n`.
    pub fn spawn_each<C: HealthCheck>(
        backend: impl Into<Arc<str>>,
        servers: Vec<CheckedServer<C>>,
        events: mpsc::UnboundedSender<HealthEvent>,
    ) -> Self {
        let mut checks = Vec::with_capacity(servers.len());
        let slots = servers
            .into_iter()
            .map(|s| {
                checks.push((s.check, s.config));
                Slot {
                    name: s.target.name,
                    addr: s.target.addr,
                    backup: s.target.backup,
                    up: AtomicBool::new(s.config.thresholds.initial == Health::Up),
                    passive: s.config.thresholds.passive,
                    passive_streak: AtomicBool::new(false),
                    reschedule: Notify::new(),
                    health: Mutex::new(ServerHealth::new(s.config.thresholds)),
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            backend: backend.into(),
            slots,
            events,
        });
        let (shutdown, rx) = watch::channel(false);
        let n = shared.slots.len() as u32;
        let tasks = checks
            .into_iter()
            .enumerate()
            .map(|(i, (check, cfg))| {
                let first = cfg.inter * i as u32 / n.max(1);
                tokio::spawn(run(shared.clone(), i, check, cfg, first, rx.clone()))
            })
            .collect();
        Self {
            handle: HealthHandle { shared },
            shutdown,
            tasks,
        }
    }

    /// A handle for request handlers and the control plane.
    pub fn handle(&self) -> HealthHandle {
        self.handle.clone()
    }

    /// Stop all checks (an in-flight check is abandoned) and wait for the
    /// tasks to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            // A task can only fail by panicking inside a check; nothing to
            // clean up either way.
            let _ = t.await;
        }
    }
}

/// One server's check loop.
async fn run<C: HealthCheck>(
    shared: Arc<Shared>,
    server: usize,
    check: Arc<C>,
    cfg: CheckerConfig,
    first_delay: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = &shared.slots[server];
    let mut delay = first_delay;
    loop {
        let mut next = Instant::now() + delay;
        loop {
            // `changed()` errors when the checker was dropped: stop as well.
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = tokio::time::sleep_until(next) => break,
                () = slot.reschedule.notified() => {
                    // Passive `on-error` fired: check within `fastinter`
                    // if that is sooner (HAProxy: nothing without one).
                    if let Some(fast) = cfg.fastinter {
                        next = next.min(Instant::now() + fast);
                    }
                }
            }
        }
        let addr = slot.addr;
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            o = check.check(addr) => o,
        };
        delay = shared.on_check(server, outcome, started.elapsed(), &cfg);
    }
}
