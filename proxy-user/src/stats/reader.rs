//! Read-only snapshots of a shm-stats-file.
//!
//! The reader copies the file with `read(2)` (no mapping, so a file truncated
//! under it cannot raise SIGBUS), validates the header with the same rules as
//! the writers, and decodes live objects. It never writes, never locks, and
//! never panics on any input: every defect is a [`ReadError`].

use std::mem::offset_of;
use std::path::{Path, PathBuf};

use super::layout::{
    self, decode_guid, object_offset, rate_from_buckets, rd_u64, unpack_owner, Counter, Header,
    LayoutError, Object, ObjectType, Slot, COUNTER_COUNT, GUID_FIELD, HEADER_SIZE, MIRROR_CELLS,
    OBJECT_SIZE, RATE_BUCKETS, RATE_COUNT, SLOT_COUNT, STATE_FREE, STATE_INIT, STATE_LIVE,
};

/// Why a file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The header is refused.
    #[error("{path}: {source}")]
    Layout {
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// A published object is garbled.
    #[error("{path}: object {index}: {reason}")]
    BadObject {
        /// File.
        path: PathBuf,
        /// Object index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
}

/// One process slot as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// Slot index (users-mask bit).
    pub index: usize,
    /// Process id.
    pub pid: u32,
    /// Claim generation.
    pub generation: u32,
    /// Last heartbeat, shared-clock ns.
    pub heartbeat_ns: u64,
    /// Heartbeat within the timeout of the stored clock.
    pub alive: bool,
}

/// One live object as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSnapshot {
    /// Object index in the file.
    pub index: u64,
    /// GUID.
    pub guid: String,
    /// Type.
    pub ty: ObjectType,
    /// Users bitmask.
    pub users: u64,
    /// Times (re)initialised.
    pub generation: u64,
    /// Counters by [`Counter`] index.
    pub counters: [u64; COUNTER_COUNT],
    /// Mirror baselines.
    pub mirror_base: [u64; MIRROR_CELLS],
    /// Rates per second at [`Snapshot::now_ns`], by [`layout::Rate`] index.
    pub rates: [u64; RATE_COUNT],
    /// Last state change, shared-clock ms (0 = never).
    pub last_change_ms: u64,
    /// Last session, shared-clock ms (0 = never).
    pub last_session_ms: u64,
}

impl ObjectSnapshot {
    /// A counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }
}

/// A decoded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Layout version (major, minor).
    pub version: (u16, u16),
    /// Objects the file holds.
    pub capacity: u64,
    /// Objects handed out.
    pub objects_used: u64,
    /// Shared clock, ns.
    pub clock_ns: u64,
    /// Shared clock, ms.
    pub clock_ms: u64,
    /// The reader's view of shared time, ns: this host's monotonic clock plus
    /// the file's offset when the file's clock is based on this boot (never
    /// below the stored clock), else the stored clock. Ages, rates and
    /// liveness are computed at this time, so a file nobody updates any more
    /// shows its processes dead and its rates falling to zero.
    pub now_ns: u64,
    /// The last process stopped cleanly.
    pub clean_stop: bool,
    /// Occupied process slots.
    pub slots: Vec<SlotSnapshot>,
    /// Live objects, by index.
    pub objects: Vec<ObjectSnapshot>,
}

impl Snapshot {
    /// Milliseconds between the stored clock and a stamp (`None` = never).
    pub fn age_ms(&self, stamp_ms: u64) -> Option<u64> {
        (stamp_ms != 0).then(|| (self.now_ns / 1_000_000).saturating_sub(stamp_ms))
    }

    /// The object with this (GUID, type).
    pub fn find(&self, guid: &str, ty: ObjectType) -> Option<&ObjectSnapshot> {
        self.objects.iter().find(|o| o.guid == guid && o.ty == ty)
    }
}

/// Reads and decodes the file at `path` without writing to it.
///
/// Only regular files are read, and only as many bytes as the validated
/// header says are in use, so a huge or endless input (a device, a FIFO, a
/// garbage file of gigabytes) is never slurped.
///
/// A live writer recycling an object while the file is copied can produce a
/// torn object; such a read is retried a few times before being reported.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, ReadError> {
    read_snapshot_with(path, &super::clock::MonotonicClock)
}

/// [`read_snapshot`] with an explicit clock source (tests).
pub fn read_snapshot_with(
    path: &Path,
    clock: &dyn super::clock::ClockSource,
) -> Result<Snapshot, ReadError> {
    let io = |source: std::io::Error| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut attempt = 0;
    loop {
        // Two copies: an object (re)initialised while it was being copied
        // differs between them (GUID, state, type or generation), and a torn
        // GUID would otherwise look valid. Retry until they agree.
        // After the last retry, objects still changing are left out, as
        // objects being initialised are.
        let first = read_used_bytes(path).map_err(io)?;
        let bytes = read_used_bytes(path).map_err(io)?;
        let unstable = unstable_objects(&first, &bytes);
        if attempt < MAX_RETRIES && !unstable.is_empty() {
            attempt += 1;
            continue;
        }
        let now = reader_now(&bytes, clock);
        match parse_inner(&bytes, now, DEFAULT_TIMEOUT_NS, &unstable) {
            Err(ReadError::BadObject { .. }) if attempt < MAX_RETRIES => attempt += 1,
            r => return r.map_err(|e| e.with_path(path)),
        }
    }
}

/// Re-reads before reporting a torn or inconsistent copy.
const MAX_RETRIES: u32 = 5;

/// Indices of objects whose identity (GUID, state, type, generation) differs
/// between two copies. Counters and users bits may differ freely.
fn unstable_objects(a: &[u8], b: &[u8]) -> Vec<u64> {
    let n = a.len().min(b.len()).saturating_sub(HEADER_SIZE) / OBJECT_SIZE;
    let id = offset_of!(Object, users);
    let gen = offset_of!(Object, generation);
    (0..n as u64)
        .filter(|&i| {
            let o = object_offset(i) as usize;
            a[o..o + id] != b[o..o + id] || a[o + gen..o + gen + 8] != b[o + gen..o + gen + 8]
        })
        .collect()
}

/// Reads the header and then the objects it declares in use (or just the
/// whole file when it is shorter than that: validation then reports it).
fn read_used_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let len = meta.len();
    let mut head = Vec::with_capacity(HEADER_SIZE);
    (&mut f).take(HEADER_SIZE as u64).read_to_end(&mut head)?;
    let want = match layout::validate_header(&head, len, false) {
        // capacity is validated against the file length: read what it covers
        Ok(info) => object_offset(info.capacity),
        Err(_) => return Ok(head),
    };
    let mut rest = Vec::new();
    (&mut f)
        .take(want - HEADER_SIZE as u64)
        .read_to_end(&mut rest)?;
    head.extend_from_slice(&rest);
    Ok(head)
}

impl ReadError {
    fn with_path(self, p: &Path) -> ReadError {
        match self {
            ReadError::Io { source, .. } => ReadError::Io {
                path: p.to_path_buf(),
                source,
            },
            ReadError::Layout { source, .. } => ReadError::Layout {
                path: p.to_path_buf(),
                source,
            },
            ReadError::BadObject { index, reason, .. } => ReadError::BadObject {
                path: p.to_path_buf(),
                index,
                reason,
            },
        }
    }
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

const DEFAULT_TIMEOUT_NS: u64 = 60_000_000_000;

/// The reader's shared time for these file bytes (see [`Snapshot::now_ns`]).
fn reader_now(bytes: &[u8], clock: &dyn super::clock::ClockSource) -> Option<u64> {
    if bytes.len() < HEADER_SIZE {
        return None;
    }
    let boot = rd_u64(bytes, offset_of!(Header, clock_boot));
    if boot == 0 || boot != clock.boot_id() {
        return None;
    }
    let offset = rd_u64(bytes, offset_of!(Header, clock_offset)) as i64;
    let v = i128::from(clock.now_ns()) + i128::from(offset);
    Some(v.clamp(0, i128::from(u64::MAX)) as u64)
}

/// Decodes file bytes at the stored clock. `timeout_ns` decides which slots
/// are shown as alive.
pub fn parse_snapshot(bytes: &[u8], timeout_ns: u64) -> Result<Snapshot, ReadError> {
    parse_snapshot_at(bytes, None, timeout_ns)
}

/// Decodes file bytes at shared time `now_ns` (never below the stored clock;
/// `None`: the stored clock).
pub fn parse_snapshot_at(
    bytes: &[u8],
    now_ns: Option<u64>,
    timeout_ns: u64,
) -> Result<Snapshot, ReadError> {
    parse_inner(bytes, now_ns, timeout_ns, &[])
}

/// Decodes file bytes, leaving out the objects listed in `skip` (sorted).
fn parse_inner(
    bytes: &[u8],
    now_ns: Option<u64>,
    timeout_ns: u64,
    skip: &[u64],
) -> Result<Snapshot, ReadError> {
    let path = PathBuf::new();
    let info = layout::validate_header(bytes, bytes.len() as u64, false).map_err(|source| {
        ReadError::Layout {
            path: path.clone(),
            source,
        }
    })?;
    let hv = |off: usize| rd_u64(bytes, off);
    let clock_ns = hv(offset_of!(Header, clock_ns));
    let clock_ms = hv(offset_of!(Header, clock_ms));
    let now_ns = now_ns.unwrap_or(clock_ns).max(clock_ns);
    let now_ms = now_ns / 1_000_000;
    let flags = hv(offset_of!(Header, flags));
    let mut slots = Vec::new();
    for i in 0..SLOT_COUNT {
        let base = offset_of!(Header, slots) + i * std::mem::size_of::<Slot>();
        let (generation, pid) = unpack_owner(hv(base + offset_of!(Slot, owner)));
        if pid == 0 {
            continue;
        }
        let heartbeat_ns = hv(base + offset_of!(Slot, heartbeat_ns));
        slots.push(SlotSnapshot {
            index: i,
            pid,
            generation,
            heartbeat_ns,
            alive: now_ns.saturating_sub(heartbeat_ns) <= timeout_ns,
        });
    }
    let mut objects = Vec::new();
    for index in 0..info.objects_used {
        if skip.binary_search(&index).is_ok() {
            continue;
        }
        let base = object_offset(index) as usize;
        let ob = &bytes[base..base + OBJECT_SIZE];
        let state = rd_u32(ob, offset_of!(Object, state));
        match state {
            STATE_LIVE => {}
            STATE_FREE | STATE_INIT => continue,
            other => {
                return Err(ReadError::BadObject {
                    path,
                    index,
                    reason: format!("unknown state {other}"),
                })
            }
        }
        let code = rd_u32(ob, offset_of!(Object, obj_type));
        let Some(ty) = ObjectType::from_code(code) else {
            return Err(ReadError::BadObject {
                path,
                index,
                reason: format!("unknown type {code}"),
            });
        };
        let mut gf = [0u8; GUID_FIELD];
        gf.copy_from_slice(&ob[..GUID_FIELD]);
        let Some(guid) = decode_guid(&gf) else {
            return Err(ReadError::BadObject {
                path,
                index,
                reason: "invalid guid".into(),
            });
        };
        let arr = |off: usize, i: usize| rd_u64(ob, off + i * 8);
        let counters = std::array::from_fn(|i| arr(offset_of!(Object, counters), i));
        let mirror_base = std::array::from_fn(|i| arr(offset_of!(Object, mirror_base), i));
        let rates = std::array::from_fn(|r| {
            let b = offset_of!(Object, rates);
            rate_from_buckets(
                arr(b, r * RATE_BUCKETS),
                arr(b, r * RATE_BUCKETS + 1),
                now_ms,
            )
        });
        objects.push(ObjectSnapshot {
            index,
            guid,
            ty,
            users: rd_u64(ob, offset_of!(Object, users)),
            generation: rd_u64(ob, offset_of!(Object, generation)),
            counters,
            mirror_base,
            rates,
            last_change_ms: rd_u64(ob, offset_of!(Object, last_change_ms)),
            last_session_ms: rd_u64(ob, offset_of!(Object, last_session_ms)),
        });
    }
    debug_assert!(HEADER_SIZE + (info.objects_used as usize) * OBJECT_SIZE <= bytes.len());
    Ok(Snapshot {
        version: (
            u16::from_ne_bytes([bytes[8], bytes[9]]),
            u16::from_ne_bytes([bytes[10], bytes[11]]),
        ),
        capacity: info.capacity,
        objects_used: info.objects_used,
        clock_ns,
        clock_ms,
        now_ns,
        clean_stop: flags & layout::FLAG_CLEAN_STOP != 0,
        slots,
        objects,
    })
}
