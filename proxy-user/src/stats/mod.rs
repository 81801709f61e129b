//! Statistics counters, optionally shared through the shm-stats-file.
//!
//! This module owns the counters of every frontend, backend, server,
//! listener, L4 service and L4 real, the shm-stats-file that shares them
//! across processes and reloads, and the `weir stats` reader. It does not
//! parse configuration, read BPF maps or run tasks by itself: the runtime
//! passes `shm-stats-file` / `shm-stats-file-max-objects`, feeds BPF sums to
//! [`EntityCounters::mirror`] and calls [`StatsStore::heartbeat`] every second
//! (or uses [`StatsStore::spawn_heartbeat`]).
//!
//! # Layout
//! * [`layout`]: `#[repr(C)]` header, slot and object structs, counter
//!   inventory, header validation. Documented in `docs/shm-stats-file.md`.
//! * [`file`]: open-or-create, lock, map, grow.
//! * [`clock`]: injectable clock source, shared forward-only clock rules.
//! * [`slots`]: process slots and heartbeats.
//! * [`objects`]: lookup, adoption, recycling, appending, reset.
//! * [`reader`]: read-only snapshot of a file, validated, never panics.
//! * [`format`]: table, JSON and Prometheus renderings of a snapshot.
//! * [`cli`]: `weir stats` arguments and command.
//!
//! # Wiring (what the runtime calls, and when)
//! 1. Startup: `StatsStore::open(cfg.shm_stats_file.as_deref(),
//!    cfg.shm_stats_file_max_objects, StoreOptions::default())`, log the
//!    warnings. Then `register_many` with every frontend, backend, server,
//!    listener, L4 service and L4 real of the configuration at once (GUID or
//!    `None`), keeping the returned [`EntityCounters`] in the entities.
//! 2. Inside the tokio runtime: `store.spawn_heartbeat(DEFAULT_HEARTBEAT_INTERVAL)`
//!    (or call [`StatsStore::heartbeat`] every second from an existing task).
//! 3. Request path: `add`/`inc` (one relaxed atomic add), plus the helpers
//!    `session_started`, `connection`, `request`, `response(status)` that
//!    also feed rates and stamps; `touch(Stamp::LastChange)` on UP/DOWN.
//! 4. L4 sync task, every [`DEFAULT_SYNC_INTERVAL`]: for each L4 entity and
//!    counter, `let t = h.mirror_begin(c)?;` then read and sum the per-CPU
//!    values, then `t.commit(sum)`.
//! 5. Reload: the new process does 1-4 while the old one still runs; the old
//!    one calls [`StatsStore::close`] (or drops the store) when it has
//!    drained. Clean shutdown: `close()` after traffic stopped.
//!
//! # Rules (see `docs/shm-stats-file.md`)
//! * Without a file, or for an entity without a GUID, counters live in
//!   process memory; the API is the same.
//! * A bad file (other version, truncated, garbled) is never written: the
//!   process warns and counts locally, or fails if
//!   [`StoreOptions::fail_on_bad_file`] is set.
//! * A clean full stop followed by a start resets counters unless
//!   [`StoreOptions::keep_counters`]; a reload with overlap, or a restart
//!   after a crash, keeps them.

pub mod cli;
pub mod clock;
pub mod file;
pub mod format;
pub mod layout;
pub mod objects;
pub mod reader;
pub mod registry;
pub mod slots;
pub mod sync;

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use cli::{run_stats_command, StatsArgs};
pub use clock::{ClockSource, ManualClock, MonotonicClock};
pub use layout::{Counter, ObjectType, Rate, Stamp};
pub use reader::{read_snapshot, ReadError, Snapshot};

use clock::{ClockVerdict, SharedClock};
use file::MappedFile;
use layout::{unpack_owner, valid_guid, Object, FLAG_CLEAN_STOP};

/// Default heartbeat timeout: a slot whose heartbeat is older is dead.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default interval of the L4 sync task that mirrors BPF sums.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// `shm-stats-file-max-objects` when the configuration gives 0.
pub const DEFAULT_MAX_OBJECTS: u64 = 65_536;

/// Errors of the stats store.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A system call on the file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file's layout is refused (version, size, garbage).
    #[error("{path}: {source}")]
    Layout {
        /// File concerned.
        path: PathBuf,
        /// Why.
        #[source]
        source: layout::LayoutError,
    },
    /// A counter that has no mirror baseline was passed to `mirror`.
    #[error("counter {counter} is not mirrored from BPF maps")]
    NotMirrorable {
        /// Counter name.
        counter: &'static str,
    },
}

/// How [`StatsStore::open`] behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Keep counters after a clean full stop (default false: reset, as
    /// HAProxy does).
    pub keep_counters: bool,
    /// Fail instead of falling back to local counters when the file cannot
    /// be used (default false).
    pub fail_on_bad_file: bool,
    /// Slot liveness timeout on the shared clock (default 60 s).
    pub heartbeat_timeout: Duration,
    /// Clock source (default `CLOCK_MONOTONIC`).
    pub clock: Arc<dyn ClockSource>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            keep_counters: false,
            fail_on_bad_file: false,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            clock: Arc::new(MonotonicClock),
        }
    }
}

/// Per-process attachment state, guarded by a mutex (never on the hot path).
#[derive(Debug)]
struct Attach {
    /// (slot index, owner word) while we hold a slot.
    slot: Option<(usize, u64)>,
    /// Object indices this process counts into (users bit set).
    objects: std::collections::BTreeSet<u64>,
    closed: bool,
}

#[derive(Debug)]
struct FileBacking {
    map: MappedFile,
    attach: Mutex<Attach>,
    /// The file holds more objects than this process may map.
    restricted: bool,
}

#[derive(Debug)]
struct Shared {
    clock: SharedClock,
    timeout_ns: u64,
    file: Option<FileBacking>,
    /// Objects of entities counted locally; boxed so their address is stable.
    local: Mutex<Vec<LocalObject>>,
}

/// What the store is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// The shm-stats-file at this path, in process slot `slot`.
    File {
        /// File path.
        path: PathBuf,
        /// Process slot index.
        slot: usize,
    },
    /// Process memory only (no file, bad file, or no free slot).
    Local,
}

/// The statistics store of one process: file-backed or local.
#[derive(Debug)]
pub struct StatsStore {
    shared: Arc<Shared>,
}

/// A cheap, clonable handle on one entity's counters.
///
/// All updates are atomic adds on the object in place (the shared mapping or
/// local memory): no lock, no syscall, no allocation.
#[derive(Debug, Clone)]
pub struct EntityCounters {
    obj: NonNull<Object>,
    shared: Arc<Shared>,
}

// SAFETY: the pointee is only accessed through atomics, and `shared` keeps
// the memory (mapping or boxed local object) alive for the handle's lifetime.
unsafe impl Send for EntityCounters {}
// SAFETY: see above.
unsafe impl Sync for EntityCounters {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A heap object for an entity counted in process memory.
struct LocalObject(Box<Object>);

impl std::fmt::Debug for LocalObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalObject")
    }
}

fn zeroed_object() -> LocalObject {
    // SAFETY: Object is plain bytes and atomics, for which all-zero is valid.
    LocalObject(unsafe { Box::<Object>::new_zeroed().assume_init() })
}

impl StatsStore {
    /// Opens the store. `path = None` gives local counters. `max_objects` is
    /// `shm-stats-file-max-objects` (0 means [`DEFAULT_MAX_OBJECTS`]).
    ///
    /// Returns warnings for the log. Fails only when the file cannot be used
    /// and `opts.fail_on_bad_file` is set; otherwise falls back to local
    /// counters with a warning.
    pub fn open(
        path: Option<&Path>,
        max_objects: u64,
        opts: StoreOptions,
    ) -> Result<(StatsStore, Vec<String>), StatsError> {
        let timeout_ns = u64::try_from(opts.heartbeat_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut warnings = Vec::new();
        let local = |clock: Arc<dyn ClockSource>| StatsStore {
            shared: Arc::new(Shared {
                clock: SharedClock::new(clock, 0),
                timeout_ns,
                file: None,
                local: Mutex::new(Vec::new()),
            }),
        };
        let Some(path) = path else {
            return Ok((local(opts.clock), warnings));
        };
        let max = if max_objects == 0 {
            DEFAULT_MAX_OBJECTS
        } else {
            max_objects
        };
        match Self::attach(path, max, &opts, timeout_ns, &mut warnings) {
            Ok(Some(store)) => Ok((store, warnings)),
            Ok(None) => Ok((local(opts.clock), warnings)),
            Err(e) if !opts.fail_on_bad_file => {
                warnings.push(format!("shm-stats-file unusable, counting locally: {e}"));
                Ok((local(opts.clock), warnings))
            }
            Err(e) => Err(e),
        }
    }

    fn attach(
        path: &Path,
        max: u64,
        opts: &StoreOptions,
        timeout_ns: u64,
        warnings: &mut Vec<String>,
    ) -> Result<Option<StatsStore>, StatsError> {
        let (map, guard, info, _created) = MappedFile::open(path, max)?;
        let restricted = info.capacity > map.max_objects();
        if restricted {
            warnings.push(format!(
                "{}: file holds {} objects but shm-stats-file-max-objects is {}; \
                 only the first {} are used, other entities count locally",
                path.display(),
                info.capacity,
                map.max_objects(),
                map.max_objects()
            ));
        }
        let h = map.header();
        // Shared clock: reuse this boot's offset if the file's clock is based
        // on our boot, then apply the attach rule.
        let boot = opts.clock.boot_id();
        let same_boot = h.clock_boot.load(Ordering::Acquire) == boot;
        let base = if same_boot {
            h.clock_offset.load(Ordering::Acquire) as i64
        } else {
            0
        };
        let stored = h.clock_ns.load(Ordering::Acquire);
        let local_ns = opts.clock.now_ns();
        let (offset, verdict) = clock::attach_offset(stored, local_ns, base, timeout_ns);
        if let ClockVerdict::Foreign { skew_ns } = verdict {
            let expired = slots::expire_all(&map);
            warnings.push(format!(
                "{}: shared clock is {:.3} s {} this host's clock: the file comes from \
                 another boot or host, or was idle longer than the heartbeat timeout; \
                 continuing from the stored clock ({} stale process slot(s) freed)",
                path.display(),
                skew_ns.unsigned_abs() as f64 / 1e9,
                if skew_ns > 0 { "ahead of" } else { "behind" },
                expired
            ));
        } else if !same_boot && stored != 0 {
            // Within the timeout but from another boot: those processes
            // cannot be alive here.
            slots::expire_all(&map);
        }
        let clock = SharedClock::new(opts.clock.clone(), offset);
        let now = clock.now_ns();
        let first = slots::alive_mask(h, now, timeout_ns) == 0;
        let Some((slot, owner)) = slots::claim(&map, std::process::id(), now, timeout_ns) else {
            // Nothing else is written: the full table stays as it is.
            warnings.push(format!(
                "{}: all {} process slots are taken; counting locally with this \
                 process's own clock",
                path.display(),
                layout::SLOT_COUNT
            ));
            return Ok(None);
        };
        // Record the offset for later processes of this boot only when it was
        // (re)based here; a small catch-up (Within) is this process's own.
        if !same_boot || matches!(verdict, ClockVerdict::Foreign { .. }) {
            h.clock_boot.store(boot, Ordering::Release);
            h.clock_offset.store(offset as u64, Ordering::Release);
        }
        h.clock_ns.fetch_max(now, Ordering::AcqRel);
        h.clock_ms.fetch_max(now / 1_000_000, Ordering::AcqRel);
        let flags = h.flags.fetch_and(!FLAG_CLEAN_STOP, Ordering::AcqRel);
        if first && flags & FLAG_CLEAN_STOP != 0 && !opts.keep_counters {
            let n = objects::reset_all(&map);
            if n > 0 {
                warnings.push(format!(
                    "{}: counters of {n} object(s) reset after a clean stop \
                     (set the keep option to keep them)",
                    path.display()
                ));
            }
        }
        drop(guard);
        Ok(Some(StatsStore {
            shared: Arc::new(Shared {
                clock,
                timeout_ns,
                file: Some(FileBacking {
                    map,
                    attach: Mutex::new(Attach {
                        slot: Some((slot, owner)),
                        objects: Default::default(),
                        closed: false,
                    }),
                    restricted,
                }),
                local: Mutex::new(Vec::new()),
            }),
        }))
    }

    /// What the store is attached to now.
    pub fn backing(&self) -> Backing {
        let Some(fb) = &self.shared.file else {
            return Backing::Local;
        };
        let st = lock(&fb.attach);
        match st.slot {
            Some((slot, _)) if !st.closed => Backing::File {
                path: fb.map.path().to_path_buf(),
                slot,
            },
            _ => Backing::Local,
        }
    }

    /// Current shared-clock time in ms (the process's own clock when local).
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Current shared-clock time in ns.
    pub fn now_ns(&self) -> u64 {
        self.shared.clock.now_ns()
    }

    /// Registers one entity (see [`StatsStore::register_many`], preferred at
    /// start and reload). Never fails: problems (invalid GUID, file full) are
    /// logged as warnings and the entity counts locally.
    pub fn register(&self, guid: Option<&str>, ty: ObjectType) -> EntityCounters {
        let (mut v, warnings) = self.register_many(&[(guid, ty)]);
        for w in warnings {
            log::warn!("{w}");
        }
        v.pop().expect("one handle per entity")
    }

    /// Registers a set of entities (call it with the whole configured set on
    /// start and on reload): every entity whose (GUID, type) already has an
    /// object adopts it; only then are the others given recycled or appended
    /// objects, so a new entity never recycles the object of another entity
    /// of the same set. Entities without a GUID, with an invalid GUID, or that
    /// do not fit in the file, get local counters (with a warning for the
    /// last two). Never fails.
    pub fn register_many(
        &self,
        entities: &[(Option<&str>, ObjectType)],
    ) -> (Vec<EntityCounters>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut out: Vec<Option<NonNull<Object>>> = vec![None; entities.len()];
        let valid: Vec<Option<&str>> = entities
            .iter()
            .map(|(g, _)| match g {
                Some(g) if valid_guid(g) => Some(*g),
                Some(g) => {
                    warnings.push(format!(
                        "guid {:?} is not 1..=127 characters of [A-Za-z0-9.:_-]; counted locally",
                        g
                    ));
                    None
                }
                None => None,
            })
            .collect();
        if let Some(fb) = &self.shared.file {
            if let Err(e) = self.register_in_file(fb, entities, &valid, &mut out, &mut warnings) {
                warnings.push(format!(
                    "shm-stats-file: {e}; affected entities count locally"
                ));
            }
        }
        let handles = out
            .into_iter()
            .map(|p| {
                let obj = p.unwrap_or_else(|| {
                    let b = zeroed_object();
                    let p = NonNull::from(&*b.0);
                    lock(&self.shared.local).push(b);
                    p
                });
                EntityCounters {
                    obj,
                    shared: self.shared.clone(),
                }
            })
            .collect();
        (handles, warnings)
    }

    fn register_in_file(
        &self,
        fb: &FileBacking,
        entities: &[(Option<&str>, ObjectType)],
        valid: &[Option<&str>],
        out: &mut [Option<NonNull<Object>>],
        warnings: &mut Vec<String>,
    ) -> Result<(), StatsError> {
        let mut st = lock(&fb.attach);
        let Some((slot, owner)) = st.slot.filter(|_| !st.closed) else {
            return Ok(());
        };
        let map = &fb.map;
        let _guard = map.lock()?;
        if map.header().slots[slot].owner.load(Ordering::Acquire) != owner {
            warnings.push("process slot lost (heartbeat stalled); counting locally".into());
            return Ok(());
        }
        map.refresh()?;
        let bit = 1u64 << slot;
        let index = objects::index_live(map);
        let mut pending = Vec::new();
        for (k, ((_, ty), guid)) in entities.iter().zip(valid).enumerate() {
            let Some(guid) = guid else { continue };
            match index.get(&(guid.to_string(), *ty)) {
                Some(&i) => {
                    map.object(i).users.fetch_or(bit, Ordering::AcqRel);
                    st.objects.insert(i);
                    out[k] = Some(NonNull::from(map.object(i)));
                }
                None => pending.push(k),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if fb.restricted {
            for k in pending {
                warnings.push(format!(
                    "guid {:?}: not among the objects this process can map; counted locally",
                    valid[k].unwrap_or_default()
                ));
            }
            return Ok(());
        }
        let now = self.shared.clock.now_ns();
        let alive = slots::alive_mask(map.header(), now, self.shared.timeout_ns) | bit;
        let mut alloc = objects::Allocator::default();
        // The same (GUID, type) may appear twice in one set: one object.
        let mut fresh: std::collections::HashMap<(&str, ObjectType), u64> = Default::default();
        for k in pending {
            let guid = valid[k].expect("pending entities have a guid");
            let ty = entities[k].1;
            let i = match fresh.get(&(guid, ty)) {
                Some(&i) => i,
                None => match alloc.allocate(map, guid, ty, bit, alive, now / 1_000_000)? {
                    Some(a) => {
                        fresh.insert((guid, ty), a.index());
                        st.objects.insert(a.index());
                        a.index()
                    }
                    None => {
                        warnings.push(format!(
                            "guid {guid:?}: shm-stats-file is full ({} objects); counted locally",
                            map.max_objects()
                        ));
                        continue;
                    }
                },
            };
            out[k] = Some(NonNull::from(map.object(i)));
        }
        Ok(())
    }

    /// Beats the heartbeat and advances the shared clock. Call every second
    /// (see [`DEFAULT_HEARTBEAT_INTERVAL`]); returns warnings for the log.
    ///
    /// Converges this process's clock forward onto the stored clock when it
    /// is behind, and re-claims a slot if this process lost its own (it
    /// stalled longer than the timeout).
    pub fn heartbeat(&self) -> Vec<String> {
        self.shared.heartbeat()
    }

    /// Spawns a tokio task calling [`StatsStore::heartbeat`] every
    /// `interval`, logging warnings, until the store is closed. Must be
    /// called inside a tokio runtime.
    pub fn spawn_heartbeat(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if shared.is_closed() {
                    break;
                }
                for w in shared.heartbeat() {
                    log::warn!("{w}");
                }
            }
        })
    }

    /// Detaches cleanly: clears this process's users bits, releases its slot
    /// (only if it still owns it: a slot taken over is left alone), and marks
    /// a clean full stop if no other process is attached. Idempotent; also
    /// run by `Drop`. Handles stay usable but their objects may be recycled
    /// by other processes afterwards, so close after traffic stopped.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Test and diagnostic access: the owner word (generation, pid) of this
    /// process's slot, if any.
    pub fn slot_owner(&self) -> Option<(usize, u32, u32)> {
        let fb = self.shared.file.as_ref()?;
        let (i, owner) = lock(&fb.attach).slot?;
        let (g, p) = unpack_owner(owner);
        Some((i, g, p))
    }
}

impl Shared {
    pub fn heartbeat(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let Some(fb) = &self.file else {
            return warnings;
        };
        let h = fb.map.header();
        let moved = self.clock.converge(h.clock_ns.load(Ordering::Acquire));
        if moved > self.timeout_ns {
            warnings.push(format!(
                "shared clock moved forward by {:.3} s while converging",
                moved as f64 / 1e9
            ));
        }
        let now = self.clock.now_ns();
        h.clock_ns.fetch_max(now, Ordering::AcqRel);
        h.clock_ms.fetch_max(now / 1_000_000, Ordering::AcqRel);
        let mut st = lock(&fb.attach);
        if st.closed {
            return warnings;
        }
        match st.slot {
            Some((i, owner)) if h.slots[i].owner.load(Ordering::Acquire) == owner => {
                h.slots[i].heartbeat_ns.fetch_max(now, Ordering::AcqRel);
            }
            _ => {
                warnings.push(
                    "process slot lost (heartbeat stalled past the timeout); re-claiming".into(),
                );
                st.slot = None;
                match fb.map.lock() {
                    Ok(_g) => {
                        if let Some((i, owner)) =
                            slots::claim(&fb.map, std::process::id(), now, self.timeout_ns)
                        {
                            for &o in &st.objects {
                                fb.map.object(o).users.fetch_or(1u64 << i, Ordering::AcqRel);
                            }
                            st.slot = Some((i, owner));
                        } else {
                            warnings.push("no free process slot to re-claim".into());
                        }
                    }
                    Err(e) => warnings.push(e.to_string()),
                }
            }
        }
        warnings
    }

    fn is_closed(&self) -> bool {
        self.file.as_ref().is_some_and(|fb| lock(&fb.attach).closed)
    }

    pub fn close(&self) {
        let Some(fb) = &self.file else { return };
        let mut st = lock(&fb.attach);
        if st.closed {
            return;
        }
        st.closed = true;
        let Some((i, owner)) = st.slot.take() else {
            return;
        };
        let Ok(_g) = fb.map.lock() else { return };
        let h = fb.map.header();
        if h.slots[i].owner.load(Ordering::Acquire) != owner {
            log::warn!("shm-stats-file: process slot {i} was taken over; leaving it alone");
            return;
        }
        for &o in &st.objects {
            fb.map
                .object(o)
                .users
                .fetch_and(!(1u64 << i), Ordering::AcqRel);
        }
        if !slots::release(h, i, owner) {
            return;
        }
        let now = self.clock.now_ns();
        h.clock_ns.fetch_max(now, Ordering::AcqRel);
        h.clock_ms.fetch_max(now / 1_000_000, Ordering::AcqRel);
        if slots::alive_mask(h, now, self.timeout_ns) == 0 {
            h.last_stop_ms.store(now / 1_000_000, Ordering::Release);
            h.flags.fetch_or(FLAG_CLEAN_STOP, Ordering::AcqRel);
        }
    }
}

impl Drop for StatsStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl EntityCounters {
    #[inline(always)]
    fn o(&self) -> &Object {
        // SAFETY: `shared` keeps the mapping / boxed object alive.
        unsafe { self.obj.as_ref() }
    }

    /// Adds `n` to a counter: one relaxed atomic add in place.
    #[inline(always)]
    pub fn add(&self, c: Counter, n: u64) {
        // SAFETY: every Counter discriminant is < COUNTER_COUNT <= COUNTER_CELLS.
        unsafe { self.o().counters.get_unchecked(c as usize) }.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds 1 to a counter.
    #[inline(always)]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Current value of a counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.o().counters[c as usize].load(Ordering::Relaxed)
    }

    /// Whether this entity counts in the shm-stats-file (false: local).
    pub fn is_shared(&self) -> bool {
        self.shared.file.as_ref().is_some_and(|fb| {
            let base = fb.map.header() as *const _ as usize;
            let p = self.obj.as_ptr() as usize;
            p >= base && p < base + layout::object_offset(fb.map.mapped_objects()) as usize
        })
    }

    /// Adds `n` events to a rate counter in the current second of the shared
    /// clock (one clock read and a CAS loop on one cell).
    pub fn add_rate(&self, r: Rate, n: u64) {
        const MASK: u64 = 0xffff_ffff;
        let sec = self.shared.clock.now_ms() / 1000;
        let sec32 = u64::from(sec as u32);
        let cell = &self.o().rates[r as usize * layout::RATE_BUCKETS + (sec & 1) as usize];
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let bsec = cur >> 32;
            // A bucket stamped with a newer second (another process's clock
            // is a little ahead) is added to, never rewound.
            let newer = (bsec as u32).wrapping_sub(sec32 as u32) as i32 > 0;
            let new = if bsec == sec32 || newer {
                (cur & !MASK) | (cur & MASK).saturating_add(n).min(MASK)
            } else {
                (sec32 << 32) | n.min(MASK)
            };
            match cell.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(x) => cur = x,
            }
        }
    }

    /// Events per second of a rate counter over the last second.
    pub fn rate(&self, r: Rate) -> u64 {
        let o = self.o();
        let b = r as usize * layout::RATE_BUCKETS;
        layout::rate_from_buckets(
            o.rates[b].load(Ordering::Relaxed),
            o.rates[b + 1].load(Ordering::Relaxed),
            self.shared.clock.now_ms(),
        )
    }

    fn stamp_cell(&self, s: Stamp) -> &AtomicU64 {
        match s {
            Stamp::LastChange => &self.o().last_change_ms,
            Stamp::LastSession => &self.o().last_session_ms,
        }
    }

    /// Records "now" (shared clock ms) in a timestamp.
    pub fn touch(&self, s: Stamp) {
        self.stamp_cell(s)
            .fetch_max(self.shared.clock.now_ms().max(1), Ordering::Relaxed);
    }

    /// A timestamp in shared-clock ms (0 = never).
    pub fn stamp(&self, s: Stamp) -> u64 {
        self.stamp_cell(s).load(Ordering::Relaxed)
    }

    /// Milliseconds since a timestamp, on the shared clock (`None` = never).
    pub fn age_ms(&self, s: Stamp) -> Option<u64> {
        match self.stamp(s) {
            0 => None,
            t => Some(self.shared.clock.now_ms().saturating_sub(t)),
        }
    }

    /// A session started: `Sessions` +1, session rate, last-session stamp.
    pub fn session_started(&self) {
        self.inc(Counter::Sessions);
        self.add_rate(Rate::Sessions, 1);
        self.touch(Stamp::LastSession);
    }

    /// A connection was accepted or attempted: counter and rate.
    pub fn connection(&self) {
        self.inc(Counter::Connections);
        self.add_rate(Rate::Connections, 1);
    }

    /// A request arrived: counter and rate.
    pub fn request(&self) {
        self.inc(Counter::Requests);
        self.add_rate(Rate::Requests, 1);
    }

    /// Counts a response by status class.
    pub fn response(&self, status: u16) {
        self.inc(match status {
            100..=199 => Counter::Responses1xx,
            200..=299 => Counter::Responses2xx,
            300..=399 => Counter::Responses3xx,
            400..=499 => Counter::Responses4xx,
            500..=599 => Counter::Responses5xx,
            _ => Counter::ResponsesOther,
        });
    }

    /// Starts mirroring one BPF counter: takes the stored baseline. Read the
    /// BPF map *after* this call, then [`MirrorToken::commit`] the sum.
    ///
    /// Safe with several processes mirroring the same pinned map (a reload):
    /// a commit only applies if nobody committed since the token was taken,
    /// so a stale sum is never mistaken for a re-created map.
    pub fn mirror_begin(&self, c: Counter) -> Result<MirrorToken<'_>, StatsError> {
        let slot = c
            .mirror_slot()
            .ok_or(StatsError::NotMirrorable { counter: c.name() })?;
        let base = &self.o().mirror_base[slot];
        Ok(MirrorToken {
            counters: self,
            counter: c,
            base,
            seen: base.load(Ordering::Acquire),
        })
    }

    /// Mirrors an absolute BPF sum read just now: adds the delta since the
    /// last mirrored value (stored in the object, so a reloaded process
    /// continues exactly). If the sum went down, the map was re-created: its
    /// whole sum is new and becomes the baseline. Returns the delta added.
    ///
    /// When another process may mirror the same map concurrently, use
    /// [`EntityCounters::mirror_begin`] around the map read instead.
    pub fn mirror(&self, c: Counter, absolute_sum: u64) -> Result<u64, StatsError> {
        Ok(self.mirror_begin(c)?.commit(absolute_sum))
    }
}

/// A mirror in progress; see [`EntityCounters::mirror_begin`].
#[derive(Debug)]
pub struct MirrorToken<'a> {
    counters: &'a EntityCounters,
    counter: Counter,
    base: &'a AtomicU64,
    seen: u64,
}

impl MirrorToken<'_> {
    /// Applies the sum read after `mirror_begin`. Returns the delta added (0
    /// when unchanged, or when another process committed meanwhile: its newer
    /// or equal reading already counted, the next pass catches up).
    pub fn commit(self, absolute_sum: u64) -> u64 {
        if absolute_sum == self.seen {
            return 0;
        }
        let delta = if absolute_sum > self.seen {
            absolute_sum - self.seen
        } else {
            absolute_sum
        };
        match self.base.compare_exchange(
            self.seen,
            absolute_sum,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.counters.add(self.counter, delta);
                delta
            }
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests;
