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
//!   servers and one for the `backup` servers, and only consults the backups
//!   when no active server is acceptable (HAProxy's `backup` semantics, with
//!   `option allbackups` behaviour: all backups share the load).
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
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        ConnGuard {
            tracker: self.clone(),
            idx,
        }
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
        self.tracker.counts[self.idx].fetch_sub(1, Ordering::Relaxed);
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

/// One backend's selection: active tier plus backup tier.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    active: Option<Selector>,
    backup: Option<Selector>,
}

impl Balancer {
    /// Build from the backend's servers (any order). Servers with weight 0
    /// are left out; an empty tier simply never matches.
    pub fn build(
        algorithm: &Algorithm,
        servers: &[Server],
        ctx: &BuildContext,
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
            active: tier(&active),
            backup: tier(&backup),
        })
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
}

/// A [`Balancer`] that can be rebuilt at runtime while requests select from
/// it concurrently (lock-free reads through `arc-swap`).
#[derive(Debug)]
pub struct SharedBalancer {
    current: ArcSwap<Balancer>,
    ctx: BuildContext,
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
        let b = Balancer::build(algorithm, servers, &ctx)?;
        Ok(Self {
            current: ArcSwap::from_pointee(b),
            ctx,
        })
    }

    /// Replace the server set (after a weight, health or membership change).
    /// In-flight selections finish on the old balancer.
    pub fn rebuild(&self, servers: &[Server]) -> Result<(), BalanceError> {
        let algorithm = self.current.load().algorithm.clone();
        let b = Balancer::build(&algorithm, servers, &self.ctx)?;
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
