//! Load-balancing algorithms: pick one server of a backend for a request.
//!
//! The shape follows pingora-load-balancing: an algorithm is a
//! [`BackendSelection`] built once from an immutable, sorted server set and
//! then queried concurrently with [`BackendSelection::select`]. Anything that
//! changes the server set (add/remove, weight, health) is handled by building
//! a new selection and swapping it in — see [`SharedBalancer`], which keeps
//! the current [`Balancer`] behind an [`arc_swap::ArcSwap`] so readers never
//! lock and a rebuild costs O(servers) (O(points) for consistent hashing).
//!
//! Two things the algorithms deliberately do **not** know about:
//!
//! * **Per-request vetoes.** `select` takes an `accept` callback; the caller
//!   rejects servers that are full (`maxconn`), already failed for this
//!   request (retry/redispatch), or are being drained. The algorithm then
//!   proposes its next candidate, at most [`MAX_SELECT_ATTEMPTS`] times.
//! * **Backup servers.** [`Balancer`] builds one selection for the active
//!   servers and one for the `backup` servers. [`Balancer::choose`] (what
//!   the proxy uses) follows HAProxy: the backups are used only when no
//!   active server is *usable* (UP, not excluded), never because the actives
//!   are merely full; then only the first usable backup in config order
//!   takes traffic, unless [`BackupPolicy::All`] (`option allbackups`)
//!   balances over every usable backup. [`Balancer::select`] is the plain
//!   veto form: backups when no active server is acceptable.
//! * **Fullness.** `choose` tells the caller where to wait when the pick is
//!   full: hashing never spills to another server (the request waits for
//!   the hashed server, [`Choice::ServerQueue`]); the other algorithms skip
//!   full servers and wait for any ([`Choice::BackendQueue`]).
//!
//! Health is best applied by rebuilding without the DOWN servers (it is cheap
//! and keeps hashing stable), but checking it in `accept` works too.
//!
//! Algorithms, one file each:
//!
//! | config (`balance …`)   | type                          |
//! |------------------------|-------------------------------|
//! | `roundrobin`           | [`roundrobin::RoundRobin`] (nginx smooth weighted RR) |
//! | `static-rr`            | [`roundrobin::StaticRoundRobin`] |
//! | `leastconn`            | [`leastconn::LeastConn`]      |
//! | `random`               | [`random::PowerOfTwoChoices`] |
//! | `source`, `uri`, `hdr(name)` | [`hash::HashSelection`] (`hash-type map-based` or `consistent`) |
//!
//! [`maglev`] is the table builder shared with the XDP L4 balancer.
//!
//! # Use from the proxy
//!
//! ```
//! use proxy_user::balance::{Algorithm, BuildContext, ConnTracker, SelectKey, Server, SharedBalancer};
//!
//! // Once per backend, from config (`balance leastconn`, three servers, one backup).
//! let algo = Algorithm::from_config(&["leastconn"], &[]).unwrap();
//! let servers = vec![
//!     Server::new(0, "s1", 1, false),
//!     Server::new(1, "s2", 2, false),
//!     Server::new(2, "b1", 1, true),
//! ];
//! let ctx = BuildContext { conns: ConnTracker::new(servers.len()), random_seed: 42 };
//! let lb = SharedBalancer::new(&algo, &servers, ctx).unwrap();
//!
//! // Per request: key (only hash algorithms use it), veto, count the connection.
//! let maxconn = 100;
//! let idx = lb
//!     .select(SelectKey::None, |i| lb.conns().active(i) < maxconn)
//!     .expect("a server");
//! let _conn = lb.conns().acquire(idx); // dropped when the connection ends
//!
//! // On a health/weight change: rebuild (in-flight picks finish on the old one).
//! lb.rebuild(&servers[1..]).unwrap();
//! ```

pub mod hash;
pub mod leastconn;
pub mod maglev;
pub mod random;
pub mod roundrobin;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use thiserror::Error;

pub use hash::{HashOn, HashType};

/// Index of a server in the caller's server list (e.g. the backend's
/// `server` lines in config order). Stable across rebuilds of a selection.
pub type ServerIdx = usize;

/// How many candidates one `select` call may propose to `accept` (per tier:
/// active servers, then backups) before giving up with `None`.
///
/// Why a bound: `accept` is caller code (atomics, maybe a lock), and a
/// backend whose servers are all full or failed must answer "nobody" in
/// constant time so the request can be queued or get a 503, instead of
/// walking a 10k-point hash ring or spinning on a round-robin cursor. Sixteen
/// distinct vetoed servers in a row means the backend is saturated in
/// practice; health, which can exclude many servers at once, should be
/// applied by rebuilding the selection instead.
pub const MAX_SELECT_ATTEMPTS: usize = 16;

/// Fixed seeds for every hash in this module. They must never change: hash
/// results decide which server a client sticks to, across restarts and
/// across the L4/L7 planes.
pub const HASH_SEED_KEY: u64 = 0x5745_4952_4b45_5931; // "WEIRKEY1"

/// Hash bytes with xxh3 and a fixed seed: fast, well distributed and
/// identical in every process and on every run.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// One server as the algorithms see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Position in the caller's server list; what `select` returns.
    pub idx: ServerIdx,
    /// Stable identity (the config name, e.g. `s1`). Consistent hashing
    /// places ring points from it, so renaming a server moves its keys.
    pub name: String,
    /// Relative weight; 0 means "no new traffic" (drain) and the server is
    /// left out of the selection.
    pub weight: u32,
    /// Only used when no non-backup server is acceptable.
    pub backup: bool,
}

impl Server {
    /// Convenience constructor.
    pub fn new(idx: ServerIdx, name: impl Into<String>, weight: u32, backup: bool) -> Self {
        Self {
            idx,
            name: name.into(),
            weight,
            backup,
        }
    }
}

/// What the request offers the algorithm to hash on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SelectKey<'a> {
    /// No key: hash algorithms fall back to round robin (as HAProxy does when
    /// e.g. the hashed header is absent). Non-hash algorithms ignore keys.
    #[default]
    None,
    /// Raw bytes, hashed with [`hash_bytes`] and [`HASH_SEED_KEY`].
    Bytes(&'a [u8]),
    /// An already computed hash (see [`HashOn::key_hash`]).
    Hash(u64),
}

impl SelectKey<'_> {
    /// The 64-bit hash of the key, if there is one.
    pub fn hash(&self) -> Option<u64> {
        match *self {
            SelectKey::None => None,
            SelectKey::Bytes(b) => Some(hash_bytes(HASH_SEED_KEY, b)),
            SelectKey::Hash(h) => Some(h),
        }
    }
}

/// Errors from building a selection.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BalanceError {
    /// Two servers share one index.
    #[error("server index {0} appears twice in the server set")]
    DuplicateServer(ServerIdx),
    /// The least-connection algorithms need a counter per server.
    #[error("server index {idx} has no connection counter (tracker has {len})")]
    NoConnCounter { idx: ServerIdx, len: usize },
    /// `balance` keyword (or its options) not supported.
    #[error("unsupported balance algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// `hash-type` value not supported.
    #[error("unsupported hash-type {0:?} (expected map-based or consistent)")]
    UnknownHashType(String),
}

/// A load-balancing algorithm over one tier of servers.
///
/// `build` receives a non-empty slice, sorted by `idx`, of servers with
/// `weight > 0`; [`Balancer`] guarantees this.
pub trait BackendSelection: Sized + Send + Sync {
    /// Build the selection. Must be cheap enough to run on every server-set,
    /// weight or health change.
    fn build(servers: &[Server], ctx: &BuildContext) -> Self;

    /// Pick a server. `accept` is asked about each candidate (at most
    /// [`MAX_SELECT_ATTEMPTS`] distinct ones, never one twice); the first
    /// accepted is returned. `accept` must be cheap and must not call back
    /// into the same selection (round robin asks it under its lock).
    fn select(&self, key: SelectKey<'_>, accept: impl Fn(ServerIdx) -> bool) -> Option<ServerIdx>;
}

/// Shared inputs for building a selection.
#[derive(Clone, Debug, Default)]
pub struct BuildContext {
    /// Active-connection counters, needed by `leastconn` and `random`.
    pub conns: ConnTracker,
    /// Seed for `random`'s generator (fixed in tests, anything in prod).
    pub random_seed: u64,
}

/// Active (in-flight) connection count per server, shared between the proxy
/// (which increments/decrements it) and the algorithms (which read it).
///
/// It outlives any one selection: create it once per backend, sized to the
/// number of servers, and pass the same tracker to every rebuild.
#[derive(Clone, Debug, Default)]
pub struct ConnTracker {
    counts: Arc<[AtomicU32]>,
}

impl ConnTracker {
    /// A tracker for servers `0..servers`.
    pub fn new(servers: usize) -> Self {
        Self {
            counts: (0..servers).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Number of servers tracked.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when no server is tracked.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Current in-flight connections of `idx` (0 for an unknown index).
    #[inline]
    pub fn active(&self, idx: ServerIdx) -> u32 {
        self.counts
            .get(idx)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Count one connection to `idx` until the guard is dropped.
    ///
    /// # Panics
    /// If `idx` is outside the tracker.
    pub fn acquire(&self, idx: ServerIdx) -> ConnGuard {
        self.counts[idx].fetch_add(1, Ordering::SeqCst);
        ConnGuard {
            tracker: self.clone(),
            idx,
        }
    }

    /// Count one connection to `idx` if it has fewer than `limit` (a
    /// server's `maxconn`; `None`: no limit). Atomic: concurrent callers
    /// never push the count past the limit. Sequentially consistent, so a
    /// queue can pair it with its own "anyone waiting?" flag.
    ///
    /// # Panics
    /// If `idx` is outside the tracker.
    pub fn try_acquire(&self, idx: ServerIdx, limit: Option<u32>) -> Option<ConnGuard> {
        let count = &self.counts[idx];
        match limit {
            None => {
                count.fetch_add(1, Ordering::SeqCst);
            }
            Some(max) => {
                count
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .ok()?;
            }
        }
        Some(ConnGuard {
            tracker: self.clone(),
            idx,
        })
    }

    fn has(&self, idx: ServerIdx) -> bool {
        idx < self.counts.len()
    }
}

/// Keeps one connection counted in a [`ConnTracker`]; decrements on drop.
#[derive(Debug)]
pub struct ConnGuard {
    tracker: ConnTracker,
    idx: ServerIdx,
}

impl ConnGuard {
    /// The server this connection is counted against.
    pub fn server(&self) -> ServerIdx {
        self.idx
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.tracker.counts[self.idx].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which algorithm a backend uses (`balance …` + `hash-type …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `balance roundrobin`: smooth weighted round robin.
    RoundRobin,
    /// `balance static-rr`: precomputed weighted sequence.
    StaticRr,
    /// `balance leastconn`.
    LeastConn,
    /// `balance random`: power of two choices.
    Random,
    /// `balance source|uri|hdr(name)` with `hash-type`.
    Hash { on: HashOn, hash_type: HashType },
}

impl Algorithm {
    /// From config: the words after `balance` (`["roundrobin"]`,
    /// `["uri", "whole"]`, `["hdr(X-User)"]`, …) and the words after
    /// `hash-type`, if that line is present (default `map-based`).
    pub fn from_config(balance: &[&str], hash_type: &[&str]) -> Result<Self, BalanceError> {
        let unknown = || BalanceError::UnknownAlgorithm(balance.join(" "));
        let hash_type = match hash_type {
            [] | ["map-based"] => HashType::MapBased,
            ["consistent"] => HashType::Consistent,
            other => return Err(BalanceError::UnknownHashType(other.join(" "))),
        };
        let hash = |on| Ok(Algorithm::Hash { on, hash_type });
        match balance {
            ["roundrobin"] => Ok(Algorithm::RoundRobin),
            ["static-rr"] => Ok(Algorithm::StaticRr),
            ["leastconn"] => Ok(Algorithm::LeastConn),
            ["random"] => Ok(Algorithm::Random),
            ["source"] => hash(HashOn::Source),
            ["uri"] => hash(HashOn::Uri { whole: false }),
            ["uri", "whole"] => hash(HashOn::Uri { whole: true }),
            [word] => match word.strip_prefix("hdr(").and_then(|w| w.strip_suffix(')')) {
                Some(name) if !name.is_empty() => hash(HashOn::Header(name.to_owned())),
                _ => Err(unknown()),
            },
            _ => Err(unknown()),
        }
    }
}

/// Any of the algorithms, chosen at runtime from config.
#[derive(Debug)]
pub enum Selector {
    RoundRobin(roundrobin::RoundRobin),
    StaticRr(roundrobin::StaticRoundRobin),
    LeastConn(leastconn::LeastConn),
    Random(random::PowerOfTwoChoices),
    Hash(hash::HashSelection),
}

impl Selector {
    /// Build `algorithm` over `servers` (sorted, weight > 0, non-empty).
    fn build(algorithm: &Algorithm, servers: &[Server], ctx: &BuildContext) -> Self {
        match algorithm {
            Algorithm::RoundRobin => Self::RoundRobin(BackendSelection::build(servers, ctx)),
            Algorithm::StaticRr => Self::StaticRr(BackendSelection::build(servers, ctx)),
            Algorithm::LeastConn => Self::LeastConn(BackendSelection::build(servers, ctx)),
            Algorithm::Random => Self::Random(BackendSelection::build(servers, ctx)),
            Algorithm::Hash { hash_type, .. } => {
                Self::Hash(hash::HashSelection::new(*hash_type, servers))
            }
        }
    }

    /// Dispatch to the algorithm's `select`.
    pub fn select(
        &self,
        key: SelectKey<'_>,
        accept: impl Fn(ServerIdx) -> bool,
    ) -> Option<ServerIdx> {
        match self {
            Self::RoundRobin(s) => s.select(key, accept),
            Self::StaticRr(s) => s.select(key, accept),
            Self::LeastConn(s) => s.select(key, accept),
            Self::Random(s) => s.select(key, accept),
            Self::Hash(s) => s.select(key, accept),
        }
    }
}

/// How the backup tier serves once no active server is usable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackupPolicy {
    /// Only the first usable backup in config order (HAProxy's default).
    #[default]
    First,
    /// Every usable backup, balanced with the backend's algorithm
    /// (`option allbackups`).
    All,
}

/// Where [`Balancer::choose`] sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// This server had room and the caller's `take` reserved it.
    Server(ServerIdx),
    /// The hash chose this server and it is full: wait for it (HAProxy
    /// queues the request on the server, it does not move on).
    ServerQueue(ServerIdx),
    /// Every usable server of the tier in use is full: wait for any.
    BackendQueue,
    /// No usable server at all.
    NoServer,
}

/// One backend's selection: active tier plus backup tier.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    backup_policy: BackupPolicy,
    active: Option<Selector>,
    backup: Option<Selector>,
    /// Each tier's servers in config order (weight > 0).
    active_set: Vec<ServerIdx>,
    backup_set: Vec<ServerIdx>,
}

impl Balancer {
    /// Build from the backend's servers (any order). Servers with weight 0
    /// are left out; an empty tier simply never matches. Backups follow
    /// [`BackupPolicy::First`].
    pub fn build(
        algorithm: &Algorithm,
        servers: &[Server],
        ctx: &BuildContext,
    ) -> Result<Self, BalanceError> {
        Self::build_with(algorithm, servers, ctx, BackupPolicy::First)
    }

    /// [`build`](Self::build) with a backup policy.
    pub fn build_with(
        algorithm: &Algorithm,
        servers: &[Server],
        ctx: &BuildContext,
        backup_policy: BackupPolicy,
    ) -> Result<Self, BalanceError> {
        let mut sorted: Vec<Server> = servers.iter().filter(|s| s.weight > 0).cloned().collect();
        sorted.sort_by_key(|s| s.idx);
        if let Some(w) = sorted.windows(2).find(|w| w[0].idx == w[1].idx) {
            return Err(BalanceError::DuplicateServer(w[0].idx));
        }
        if matches!(algorithm, Algorithm::LeastConn | Algorithm::Random) {
            if let Some(s) = sorted.iter().find(|s| !ctx.conns.has(s.idx)) {
                return Err(BalanceError::NoConnCounter {
                    idx: s.idx,
                    len: ctx.conns.len(),
                });
            }
        }
        let (backup, active): (Vec<Server>, Vec<Server>) =
            sorted.into_iter().partition(|s| s.backup);
        let tier = |set: &[Server]| (!set.is_empty()).then(|| Selector::build(algorithm, set, ctx));
        Ok(Self {
            algorithm: algorithm.clone(),
            backup_policy,
            active: tier(&active),
            backup: tier(&backup),
            active_set: active.iter().map(|s| s.idx).collect(),
            backup_set: backup.iter().map(|s| s.idx).collect(),
        })
    }

    /// The backup policy this balancer was built with.
    pub fn backup_policy(&self) -> BackupPolicy {
        self.backup_policy
    }

    /// The algorithm this balancer was built with.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// What the proxy must extract from a request for this algorithm, if
    /// anything (`source`, `uri`, `hdr(name)`).
    pub fn hash_on(&self) -> Option<&HashOn> {
        match &self.algorithm {
            Algorithm::Hash { on, .. } => Some(on),
            _ => None,
        }
    }

    /// Pick an active server, or a backup one when no active server is
    /// acceptable. `None`: nobody available (queue or 503).
    pub fn select(
        &self,
        key: SelectKey<'_>,
        accept: impl Fn(ServerIdx) -> bool,
    ) -> Option<ServerIdx> {
        self.active
            .as_ref()
            .and_then(|s| s.select(key, &accept))
            .or_else(|| self.backup.as_ref().and_then(|s| s.select(key, &accept)))
    }

    /// Pick a server the HAProxy way, separating "usable" from "has room".
    ///
    /// `usable(i)`: the server may serve this request at all (UP, not
    /// excluded by a failed attempt). `take(i)`: reserve a slot on a usable
    /// server if it has room (its `maxconn`), true on success; a `true`
    /// must be undone by the caller if it does not use the result, and
    /// [`Choice::Server`] is the only result for which `take` succeeded.
    ///
    /// The tier is chosen by usability alone: the active servers while any
    /// is usable, else the backups (the first usable one, or all of them
    /// with [`BackupPolicy::All`]). Within the tier, a hash algorithm with
    /// a key picks among the usable servers regardless of fullness and
    /// reports [`Choice::ServerQueue`] when its pick is full; the other
    /// algorithms (and hashing without a key) skip full servers and report
    /// [`Choice::BackendQueue`] when all are full.
    pub fn choose(
        &self,
        key: SelectKey<'_>,
        usable: impl Fn(ServerIdx) -> bool,
        take: impl Fn(ServerIdx) -> bool,
    ) -> Choice {
        let hashed = key.hash().is_some() && matches!(self.algorithm, Algorithm::Hash { .. });
        if let Some(sel) = &self.active {
            if let Some(c) = choose_in(sel, &self.active_set, key, hashed, &usable, &take) {
                return c;
            }
        }
        match (self.backup_policy, &self.backup) {
            (BackupPolicy::All, Some(sel)) => {
                choose_in(sel, &self.backup_set, key, hashed, &usable, &take)
            }
            (BackupPolicy::First, Some(_)) => {
                self.first_backup(&usable).map(|first| match take(first) {
                    true => Choice::Server(first),
                    false if hashed => Choice::ServerQueue(first),
                    false => Choice::BackendQueue,
                })
            }
            (_, None) => None,
        }
        .unwrap_or(Choice::NoServer)
    }

    /// May server `s` take a request waiting for *any* server (the backend
    /// queue), given what is `usable` for that request? Active servers
    /// always may; a backup only when no active server is usable and it is
    /// the first usable backup (any usable backup with
    /// [`BackupPolicy::All`]). Servers outside the balancer (DOWN at the
    /// last rebuild, weight 0) never may.
    pub fn may_serve_any(&self, s: ServerIdx, usable: impl Fn(ServerIdx) -> bool) -> bool {
        if self.active_set.binary_search(&s).is_ok() {
            return usable(s);
        }
        if self.backup_set.binary_search(&s).is_err() || !usable(s) {
            return false;
        }
        if self.active_set.iter().any(|&i| usable(i)) {
            return false;
        }
        self.backup_policy == BackupPolicy::All || self.first_backup(&usable) == Some(s)
    }

    /// Is `s` in either tier (not left out for weight 0 or by a rebuild)?
    pub fn contains(&self, s: ServerIdx) -> bool {
        self.active_set.binary_search(&s).is_ok() || self.backup_set.binary_search(&s).is_ok()
    }

    /// HAProxy's `fbck`: the first usable backup in config order.
    fn first_backup(&self, usable: &impl Fn(ServerIdx) -> bool) -> Option<ServerIdx> {
        self.backup_set.iter().copied().find(|&i| usable(i))
    }
}

/// [`Balancer::choose`] within one tier; `None` when no server of the tier
/// is usable (the caller moves to the next tier).
fn choose_in(
    sel: &Selector,
    set: &[ServerIdx],
    key: SelectKey<'_>,
    hashed: bool,
    usable: &impl Fn(ServerIdx) -> bool,
    take: &impl Fn(ServerIdx) -> bool,
) -> Option<Choice> {
    if hashed {
        // The attempt bound can stop the walk before a usable server when
        // many in a row are vetoed: fall back to the first usable one.
        let s = sel
            .select(key, usable)
            .or_else(|| set.iter().copied().find(|&i| usable(i)))?;
        return Some(match take(s) {
            true => Choice::Server(s),
            false => Choice::ServerQueue(s),
        });
    }
    if let Some(s) = sel.select(key, |i| usable(i) && take(i)) {
        return Some(Choice::Server(s));
    }
    // Nobody accepted within the attempt budget. Rare enough to scan: a
    // server with room the bound skipped still serves; else, if any server
    // is usable, wait for one.
    let mut any_usable = false;
    for &i in set {
        if usable(i) {
            any_usable = true;
            if take(i) {
                return Some(Choice::Server(i));
            }
        }
    }
    any_usable.then_some(Choice::BackendQueue)
}

/// A [`Balancer`] that can be rebuilt at runtime while requests select from
/// it concurrently (lock-free reads through `arc-swap`).
#[derive(Debug)]
pub struct SharedBalancer {
    current: ArcSwap<Balancer>,
    ctx: BuildContext,
    backup_policy: BackupPolicy,
}

impl SharedBalancer {
    /// Build the initial balancer. `ctx.conns` must cover every server index
    /// that will ever be passed to [`rebuild`](Self::rebuild) for
    /// `leastconn`/`random`.
    pub fn new(
        algorithm: &Algorithm,
        servers: &[Server],
        ctx: BuildContext,
    ) -> Result<Self, BalanceError> {
        Self::with_backup_policy(algorithm, servers, ctx, BackupPolicy::First)
    }

    /// [`new`](Self::new) with a backup policy, kept across rebuilds.
    pub fn with_backup_policy(
        algorithm: &Algorithm,
        servers: &[Server],
        ctx: BuildContext,
        backup_policy: BackupPolicy,
    ) -> Result<Self, BalanceError> {
        let b = Balancer::build_with(algorithm, servers, &ctx, backup_policy)?;
        Ok(Self {
            current: ArcSwap::from_pointee(b),
            ctx,
            backup_policy,
        })
    }

    /// Replace the server set (after a weight, health or membership change).
    /// In-flight selections finish on the old balancer.
    pub fn rebuild(&self, servers: &[Server]) -> Result<(), BalanceError> {
        let algorithm = self.current.load().algorithm.clone();
        let b = Balancer::build_with(&algorithm, servers, &self.ctx, self.backup_policy)?;
        self.current.store(Arc::new(b));
        Ok(())
    }

    /// The connection tracker given at construction.
    pub fn conns(&self) -> &ConnTracker {
        &self.ctx.conns
    }

    /// Snapshot of the current balancer (cheap; hold it for one request).
    pub fn load(&self) -> Arc<Balancer> {
        self.current.load_full()
    }

    /// Select from the current balancer.
    pub fn select(
        &self,
        key: SelectKey<'_>,
        accept: impl Fn(ServerIdx) -> bool,
    ) -> Option<ServerIdx> {
        self.current.load().select(key, accept)
    }

    /// [`Balancer::choose`] on the current balancer.
    pub fn choose(
        &self,
        key: SelectKey<'_>,
        usable: impl Fn(ServerIdx) -> bool,
        take: impl Fn(ServerIdx) -> bool,
    ) -> Choice {
        self.current.load().choose(key, usable, take)
    }

    /// [`Balancer::may_serve_any`] on the current balancer.
    pub fn may_serve_any(&self, s: ServerIdx, usable: impl Fn(ServerIdx) -> bool) -> bool {
        self.current.load().may_serve_any(s, usable)
    }

    /// [`Balancer::contains`] on the current balancer.
    pub fn contains(&self, s: ServerIdx) -> bool {
        self.current.load().contains(s)
    }
}

/// The servers already proposed in one `select` call. A fixed array: no
/// allocation on the request path, and its capacity is the attempt bound.
#[derive(Debug)]
pub(crate) struct Tried {
    buf: [ServerIdx; MAX_SELECT_ATTEMPTS],
    len: usize,
}

impl Tried {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; MAX_SELECT_ATTEMPTS],
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn contains(&self, idx: ServerIdx) -> bool {
        self.buf[..self.len].contains(&idx)
    }

    /// No more attempts allowed.
    #[inline]
    pub(crate) fn exhausted(&self) -> bool {
        self.len == MAX_SELECT_ATTEMPTS
    }

    /// Ask `accept` about `idx` and remember it. Returns the verdict.
    #[inline]
    pub(crate) fn propose(&mut self, idx: ServerIdx, accept: &impl Fn(ServerIdx) -> bool) -> bool {
        debug_assert!(!self.exhausted() && !self.contains(idx));
        self.buf[self.len] = idx;
        self.len += 1;
        accept(idx)
    }
}

/// Propose the servers of `order` (distinct indexes) starting at position
/// `start` and wrapping, skipping those already tried, until one is accepted
/// or the attempt budget is spent. The deterministic last resort of the
/// algorithms whose own candidate order can repeat a server.
pub(crate) fn scan_from(
    order: &[ServerIdx],
    start: usize,
    tried: &mut Tried,
    accept: &impl Fn(ServerIdx) -> bool,
) -> Option<ServerIdx> {
    let n = order.len();
    for k in 0..n {
        if tried.exhausted() {
            return None;
        }
        let idx = order[(start + k) % n];
        if !tried.contains(idx) && tried.propose(idx, accept) {
            return Some(idx);
        }
    }
    None
}

/// Greatest common divisor, to keep weighted sequences short.
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Interleave servers by weight with smooth weighted round robin, one full
/// cycle (sum of weights / gcd entries). Used by `static-rr` and map-based
/// hashing so consecutive slots rarely repeat a server.
pub(crate) fn smooth_sequence(servers: &[Server]) -> Vec<ServerIdx> {
    let g = servers.iter().fold(0, |g, s| gcd(g, s.weight)).max(1);
    let weights: Vec<i64> = servers.iter().map(|s| i64::from(s.weight / g)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; servers.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let best = roundrobin::smooth_step(&mut current, &weights, total);
        seq.push(servers[best].idx);
    }
    seq
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// Servers `0..weights.len()` named `s{i}`, all active.
    pub fn servers(weights: &[u32]) -> Vec<Server> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Server::new(i, format!("s{i}"), w, false))
            .collect()
    }

    pub fn all(_: ServerIdx) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use std::cell::Cell;

    fn rr() -> Algorithm {
        Algorithm::RoundRobin
    }

    #[test]
    fn algorithm_from_config() {
        let ok = |b: &[&str], h: &[&str]| Algorithm::from_config(b, h).unwrap();
        assert_eq!(ok(&["roundrobin"], &[]), Algorithm::RoundRobin);
        assert_eq!(ok(&["static-rr"], &[]), Algorithm::StaticRr);
        assert_eq!(ok(&["leastconn"], &[]), Algorithm::LeastConn);
        assert_eq!(ok(&["random"], &[]), Algorithm::Random);
        assert_eq!(
            ok(&["source"], &["consistent"]),
            Algorithm::Hash {
                on: HashOn::Source,
                hash_type: HashType::Consistent
            }
        );
        assert_eq!(
            ok(&["uri", "whole"], &["map-based"]),
            Algorithm::Hash {
                on: HashOn::Uri { whole: true },
                hash_type: HashType::MapBased
            }
        );
        assert_eq!(
            ok(&["hdr(X-User)"], &[]),
            Algorithm::Hash {
                on: HashOn::Header("X-User".into()),
                hash_type: HashType::MapBased
            }
        );
        for bad in [&["hdr()"][..], &["first"], &["uri", "len", "10"], &[]] {
            assert!(matches!(
                Algorithm::from_config(bad, &[]),
                Err(BalanceError::UnknownAlgorithm(_))
            ));
        }
        assert_eq!(
            Algorithm::from_config(&["source"], &["consistent", "sdbm"]),
            Err(BalanceError::UnknownHashType("consistent sdbm".into()))
        );
    }

    #[test]
    fn smooth_sequence_interleaves_and_reduces_by_gcd() {
        // weights 10:20 reduce to 1:2, one cycle has 3 entries.
        let seq = smooth_sequence(&servers(&[10, 20]));
        assert_eq!(seq, vec![1, 0, 1]);
    }

    #[test]
    fn backups_only_when_no_active_server_is_acceptable() {
        let mut set = servers(&[1, 1]);
        set.push(Server::new(2, "b1", 1, true));
        let b = Balancer::build(&rr(), &set, &BuildContext::default()).unwrap();
        for _ in 0..20 {
            assert_ne!(b.select(SelectKey::None, all), Some(2));
        }
        // s0 vetoed: still s1, never the backup.
        for _ in 0..10 {
            assert_eq!(b.select(SelectKey::None, |i| i != 0), Some(1));
        }
        // both actives vetoed: the backup.
        assert_eq!(b.select(SelectKey::None, |i| i == 2), Some(2));
        // everything vetoed: nobody.
        assert_eq!(b.select(SelectKey::None, |_| false), None);
    }

    #[test]
    fn weight_zero_servers_and_empty_tiers() {
        let set = vec![
            Server::new(0, "s0", 0, false),
            Server::new(1, "b1", 3, true),
        ];
        let b = Balancer::build(&rr(), &set, &BuildContext::default()).unwrap();
        // s0 drains (weight 0): the backup takes everything.
        assert_eq!(b.select(SelectKey::None, all), Some(1));
        let empty = Balancer::build(&rr(), &[], &BuildContext::default()).unwrap();
        assert_eq!(empty.select(SelectKey::None, all), None);
    }

    #[test]
    fn duplicate_index_and_missing_counter_are_errors() {
        let set = vec![Server::new(0, "a", 1, false), Server::new(0, "b", 1, true)];
        assert_eq!(
            Balancer::build(&rr(), &set, &BuildContext::default()).unwrap_err(),
            BalanceError::DuplicateServer(0)
        );
        let ctx = BuildContext {
            conns: ConnTracker::new(1),
            random_seed: 0,
        };
        assert_eq!(
            Balancer::build(&Algorithm::LeastConn, &servers(&[1, 1]), &ctx).unwrap_err(),
            BalanceError::NoConnCounter { idx: 1, len: 1 }
        );
    }

    #[test]
    fn all_rejected_is_bounded_for_every_algorithm() {
        let n = 1000;
        let set = servers(&vec![1; n]);
        let ctx = BuildContext {
            conns: ConnTracker::new(n),
            random_seed: 7,
        };
        let algos = [
            Algorithm::RoundRobin,
            Algorithm::StaticRr,
            Algorithm::LeastConn,
            Algorithm::Random,
            Algorithm::Hash {
                on: HashOn::Source,
                hash_type: HashType::MapBased,
            },
            Algorithm::Hash {
                on: HashOn::Source,
                hash_type: HashType::Consistent,
            },
        ];
        for algo in &algos {
            let b = Balancer::build(algo, &set, &ctx).unwrap();
            for key in [SelectKey::None, SelectKey::Bytes(b"10.0.0.1")] {
                let calls = Cell::new(0usize);
                let got = b.select(key, |_| {
                    calls.set(calls.get() + 1);
                    false
                });
                assert_eq!(got, None, "{algo:?}");
                assert_eq!(calls.get(), MAX_SELECT_ATTEMPTS, "{algo:?} {key:?}");
            }
        }
    }

    #[test]
    fn accept_never_sees_the_same_server_twice() {
        let set = servers(&[5, 1, 1]);
        let ctx = BuildContext {
            conns: ConnTracker::new(3),
            random_seed: 1,
        };
        for algo in [
            Algorithm::RoundRobin,
            Algorithm::StaticRr,
            Algorithm::LeastConn,
            Algorithm::Random,
        ] {
            let b = Balancer::build(&algo, &set, &ctx).unwrap();
            let seen = std::cell::RefCell::new(Vec::new());
            assert_eq!(
                b.select(SelectKey::None, |i| {
                    seen.borrow_mut().push(i);
                    false
                }),
                None
            );
            let mut v = seen.into_inner();
            v.sort_unstable();
            assert_eq!(v, vec![0, 1, 2], "{algo:?}");
        }
    }

    #[test]
    fn shared_balancer_rebuild_switches_server_set() {
        let sb = SharedBalancer::new(&rr(), &servers(&[1, 1]), BuildContext::default()).unwrap();
        let old = sb.load();
        sb.rebuild(&[Server::new(1, "s1", 1, false)]).unwrap();
        for _ in 0..5 {
            assert_eq!(sb.select(SelectKey::None, all), Some(1));
        }
        // A snapshot taken before the rebuild still works on the old set.
        let picks: Vec<_> = (0..2).map(|_| old.select(SelectKey::None, all)).collect();
        assert!(picks.contains(&Some(0)));
    }

    /// Servers `s0..` active (weight 1), then backups `b..` after them.
    fn tiered(actives: usize, backups: usize) -> Vec<Server> {
        let mut set = servers(&vec![1; actives]);
        for b in 0..backups {
            set.push(Server::new(actives + b, format!("b{b}"), 1, true));
        }
        set
    }

    #[test]
    fn full_actives_mean_wait_not_backup() {
        let b = Balancer::build(&rr(), &tiered(2, 1), &BuildContext::default()).unwrap();
        // Actives usable but full: wait for them; the backup is not asked.
        let asked = std::cell::RefCell::new(Vec::new());
        let c = b.choose(SelectKey::None, all, |i| {
            asked.borrow_mut().push(i);
            i == 2
        });
        assert_eq!(c, Choice::BackendQueue);
        assert!(!asked.borrow().contains(&2), "{asked:?}");
        // One active with room: it serves.
        assert_eq!(
            b.choose(SelectKey::None, all, |i| i == 1),
            Choice::Server(1)
        );
        // An excluded active does not count as usable; the other does.
        assert_eq!(
            b.choose(SelectKey::None, |i| i != 0, |_| false),
            Choice::BackendQueue
        );
    }

    #[test]
    fn only_the_first_usable_backup_serves_unless_all_backups() {
        let set = tiered(1, 3);
        let first = Balancer::build(&rr(), &set, &BuildContext::default()).unwrap();
        let no_active = |i: ServerIdx| i != 0;
        for _ in 0..6 {
            assert_eq!(
                first.choose(SelectKey::None, no_active, all),
                Choice::Server(1)
            );
        }
        // The first backup full: wait for it, do not spill to b1/b2.
        assert_eq!(
            first.choose(SelectKey::None, no_active, |i| i != 1),
            Choice::BackendQueue
        );
        // The first backup DOWN too: the next one is "first".
        assert_eq!(
            first.choose(SelectKey::None, |i| i > 1, all),
            Choice::Server(2)
        );
        let every =
            Balancer::build_with(&rr(), &set, &BuildContext::default(), BackupPolicy::All).unwrap();
        let picks: Vec<_> = (0..6)
            .map(|_| every.choose(SelectKey::None, no_active, all))
            .collect();
        for s in 1..=3 {
            assert_eq!(
                picks.iter().filter(|&&c| c == Choice::Server(s)).count(),
                2,
                "{picks:?}"
            );
        }
        // With all backups, a full one is skipped like any full server.
        assert_eq!(
            every.choose(SelectKey::None, no_active, |i| i == 3),
            Choice::Server(3)
        );
        // Actives back: backups idle again.
        assert_eq!(every.choose(SelectKey::None, all, all), Choice::Server(0));
        assert_eq!(
            every.choose(SelectKey::None, |_| false, all),
            Choice::NoServer
        );
    }

    #[test]
    fn hashing_waits_for_its_server_instead_of_spilling() {
        for hash_type in [HashType::MapBased, HashType::Consistent] {
            let algo = Algorithm::Hash {
                on: HashOn::Uri { whole: false },
                hash_type,
            };
            let b =
                Balancer::build(&algo, &servers(&[1, 1, 1, 1]), &BuildContext::default()).unwrap();
            for k in 0..50u64 {
                let key = SelectKey::Hash(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let owner = b.select(key, all).unwrap();
                assert_eq!(b.choose(key, all, all), Choice::Server(owner));
                // Owner full: wait on the owner, even though others have room.
                assert_eq!(
                    b.choose(key, all, |i| i != owner),
                    Choice::ServerQueue(owner)
                );
                // Owner unusable (excluded): the hash moves on, like removal.
                let next = b.select(key, |i| i != owner).unwrap();
                assert_eq!(b.choose(key, |i| i != owner, all), Choice::Server(next));
            }
            // No key: round robin, which skips full servers and then waits.
            assert_eq!(
                b.choose(SelectKey::None, all, |i| i == 2),
                Choice::Server(2)
            );
            assert_eq!(
                b.choose(SelectKey::None, all, |_| false),
                Choice::BackendQueue
            );
        }
    }

    #[test]
    fn may_serve_any_follows_the_tier_rules() {
        let set = tiered(2, 2);
        let first = Balancer::build(&rr(), &set, &BuildContext::default()).unwrap();
        assert!(first.may_serve_any(0, all) && first.may_serve_any(1, all));
        assert!(
            !first.may_serve_any(2, all),
            "a backup while actives are usable"
        );
        let no_active = |i: ServerIdx| i >= 2;
        assert!(first.may_serve_any(2, no_active));
        assert!(!first.may_serve_any(3, no_active), "only the first backup");
        assert!(!first.may_serve_any(0, no_active), "an unusable server");
        let every =
            Balancer::build_with(&rr(), &set, &BuildContext::default(), BackupPolicy::All).unwrap();
        assert!(every.may_serve_any(3, no_active));
        // A server left out of the balancer (weight 0) never serves.
        let drained = vec![
            Server::new(0, "s0", 0, false),
            Server::new(1, "s1", 1, false),
        ];
        let b = Balancer::build(&rr(), &drained, &BuildContext::default()).unwrap();
        assert!(!b.may_serve_any(0, all) && !b.contains(0) && b.contains(1));
    }

    #[test]
    fn try_acquire_never_exceeds_the_limit() {
        let t = ConnTracker::new(1);
        let g1 = t.try_acquire(0, Some(2)).expect("room");
        let g2 = t.try_acquire(0, Some(2)).expect("room");
        assert!(t.try_acquire(0, Some(2)).is_none());
        drop(g1);
        let g3 = t.try_acquire(0, Some(2)).expect("room again");
        assert_eq!(t.active(0), 2);
        let unlimited = t.try_acquire(0, None).expect("no limit");
        assert_eq!(t.active(0), 3);
        drop((g2, g3, unlimited));
        assert_eq!(t.active(0), 0);
    }

    #[test]
    fn conn_guard_counts_and_releases() {
        let t = ConnTracker::new(2);
        let g1 = t.acquire(1);
        let g2 = t.acquire(1);
        assert_eq!((t.active(0), t.active(1)), (0, 2));
        assert_eq!(g1.server(), 1);
        drop(g1);
        assert_eq!(t.active(1), 1);
        drop(g2);
        assert_eq!(t.active(1), 0);
        assert_eq!(t.active(99), 0);
    }
}
