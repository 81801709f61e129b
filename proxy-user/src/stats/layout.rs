//! The on-disk layout of the shm-stats-file: `#[repr(C)]` header, process slot
//! and object structs, the counter inventory, and header validation.
//!
//! This module owns the byte layout and nothing else: it does not open, map or
//! lock files. Every offset here is listed in `docs/shm-stats-file.md`; the
//! table there is rendered by [`render_offsets_table`] and pinned by a golden
//! test, so the doc cannot drift from the code.
//!
//! All integers are native-endian. Every field that more than one process may
//! touch after publication is an atomic, so the structs can be viewed in place
//! in the shared mapping.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// File magic, the first 8 bytes of every shm-stats-file.
pub const MAGIC: [u8; 8] = *b"WEIRSTAT";
/// Layout major version: bumped on any incompatible change.
pub const VERSION_MAJOR: u16 = 1;
/// Layout minor version: bumped when reserved bytes gain a meaning.
pub const VERSION_MINOR: u16 = 0;
/// Size of the header in bytes; objects start at this offset (page aligned).
pub const HEADER_SIZE: usize = 4096;
/// Size of one object in bytes. Fixed; 8 objects per 4 KiB page.
pub const OBJECT_SIZE: usize = 512;
/// Number of process slots in the header (one users-mask bit each).
pub const SLOT_COUNT: usize = 64;
/// Capacity of the GUID field, including the terminating NUL.
pub const GUID_FIELD: usize = 128;
/// Longest accepted GUID in bytes (the field always keeps one NUL).
pub const GUID_MAX_LEN: usize = GUID_FIELD - 1;
/// Number of cumulative counter cells in an object (some spare).
pub const COUNTER_CELLS: usize = 24;
/// Number of mirror baselines (last mirrored BPF sum) in an object.
pub const MIRROR_CELLS: usize = 8;
/// Number of rate counters in an object.
pub const RATE_COUNT: usize = 3;
/// Buckets per rate counter (current and previous second, by parity).
pub const RATE_BUCKETS: usize = 2;
/// Largest capacity a reader or writer accepts (objects); about 8 GiB of file.
/// Anything above is treated as a garbage count.
pub const MAX_CAPACITY: u64 = 1 << 24;

/// Object `state`: never used, or abandoned before publication.
pub const STATE_FREE: u32 = 0;
/// Object `state`: being (re)initialised under the file lock; skip it.
pub const STATE_INIT: u32 = 1;
/// Object `state`: published; GUID and type are valid.
pub const STATE_LIVE: u32 = 2;

/// Header `flags` bit: the last process detached cleanly and no other process
/// was attached, so the next first process resets counters (unless asked to
/// keep them).
pub const FLAG_CLEAN_STOP: u64 = 1;

/// Kind of entity an object counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum ObjectType {
    /// An L7 frontend (`frontend` section).
    Frontend = 1,
    /// An L7 backend (`backend` section).
    Backend = 2,
    /// A server inside a backend.
    Server = 3,
    /// One `bind` line (listener) of a frontend.
    Listener = 4,
    /// An L4 (XDP) service.
    L4Service = 5,
    /// A real server of an L4 service.
    L4Real = 6,
}

impl ObjectType {
    /// Every type, in file order of their codes.
    pub const ALL: [ObjectType; 6] = [
        ObjectType::Frontend,
        ObjectType::Backend,
        ObjectType::Server,
        ObjectType::Listener,
        ObjectType::L4Service,
        ObjectType::L4Real,
    ];

    /// Decodes the `type` field of an object.
    pub fn from_code(code: u32) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|t| *t as u32 == code)
    }

    /// Lowercase name used in tables, JSON and metric names.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Frontend => "frontend",
            ObjectType::Backend => "backend",
            ObjectType::Server => "server",
            ObjectType::Listener => "listener",
            ObjectType::L4Service => "l4_service",
            ObjectType::L4Real => "l4_real",
        }
    }

    /// True for the kernel (XDP) types whose counters are mirrored from BPF maps.
    pub fn is_l4(self) -> bool {
        matches!(self, ObjectType::L4Service | ObjectType::L4Real)
    }
}

/// A cumulative 64-bit counter; the discriminant is its cell index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Counter {
    /// Accepted (frontend/listener) or attempted (server/backend) connections.
    Connections = 0,
    /// Sessions (a connection that passed the tcp-request rules).
    Sessions = 1,
    /// HTTP requests.
    Requests = 2,
    /// Responses with a 1xx status.
    Responses1xx = 3,
    /// Responses with a 2xx status.
    Responses2xx = 4,
    /// Responses with a 3xx status.
    Responses3xx = 5,
    /// Responses with a 4xx status.
    Responses4xx = 6,
    /// Responses with a 5xx status.
    Responses5xx = 7,
    /// Responses with any other status.
    ResponsesOther = 8,
    /// Bytes received from clients (L7) or packets' bytes in (L4).
    BytesIn = 9,
    /// Bytes sent to clients (L7) or packets' bytes out (L4).
    BytesOut = 10,
    /// Packets in (L4 only).
    PacketsIn = 11,
    /// Packets out (L4 only).
    PacketsOut = 12,
    /// New flows inserted in the conntrack table (L4 only).
    NewFlows = 13,
    /// Invalid or rejected requests.
    RequestErrors = 14,
    /// Failed connection attempts to a server.
    ConnectErrors = 15,
    /// Invalid or aborted responses.
    ResponseErrors = 16,
    /// Denied by rules (L7) or dropped by policy (L4).
    Denied = 17,
    /// Client timeouts (a server's `timeout connect` / `timeout server`
    /// counts as a connect / response error, like HAProxy's econ / eresp).
    Timeouts = 18,
    /// Connection retries.
    Retries = 19,
    /// Redispatches to another server.
    Redispatches = 20,
    /// Failed health checks.
    CheckFailures = 21,
    /// UP to DOWN transitions.
    DownTransitions = 22,
}

/// Number of [`Counter`] variants (cells 0..COUNTER_COUNT are used).
pub const COUNTER_COUNT: usize = 23;
const _: () = assert!(COUNTER_COUNT <= COUNTER_CELLS);

impl Counter {
    /// Every counter, in cell order.
    pub const ALL: [Counter; COUNTER_COUNT] = [
        Counter::Connections,
        Counter::Sessions,
        Counter::Requests,
        Counter::Responses1xx,
        Counter::Responses2xx,
        Counter::Responses3xx,
        Counter::Responses4xx,
        Counter::Responses5xx,
        Counter::ResponsesOther,
        Counter::BytesIn,
        Counter::BytesOut,
        Counter::PacketsIn,
        Counter::PacketsOut,
        Counter::NewFlows,
        Counter::RequestErrors,
        Counter::ConnectErrors,
        Counter::ResponseErrors,
        Counter::Denied,
        Counter::Timeouts,
        Counter::Retries,
        Counter::Redispatches,
        Counter::CheckFailures,
        Counter::DownTransitions,
    ];

    /// snake_case name, used in JSON and (with `_total`) in metric names.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Connections => "connections",
            Counter::Sessions => "sessions",
            Counter::Requests => "requests",
            Counter::Responses1xx => "responses_1xx",
            Counter::Responses2xx => "responses_2xx",
            Counter::Responses3xx => "responses_3xx",
            Counter::Responses4xx => "responses_4xx",
            Counter::Responses5xx => "responses_5xx",
            Counter::ResponsesOther => "responses_other",
            Counter::BytesIn => "bytes_in",
            Counter::BytesOut => "bytes_out",
            Counter::PacketsIn => "packets_in",
            Counter::PacketsOut => "packets_out",
            Counter::NewFlows => "new_flows",
            Counter::RequestErrors => "request_errors",
            Counter::ConnectErrors => "connect_errors",
            Counter::ResponseErrors => "response_errors",
            Counter::Denied => "denied",
            Counter::Timeouts => "timeouts",
            Counter::Retries => "retries",
            Counter::Redispatches => "redispatches",
            Counter::CheckFailures => "check_failures",
            Counter::DownTransitions => "down_transitions",
        }
    }

    /// One-line description (Prometheus `# HELP`).
    pub fn help(self) -> &'static str {
        match self {
            Counter::Connections => "Connections accepted or attempted.",
            Counter::Sessions => "Sessions established.",
            Counter::Requests => "HTTP requests received.",
            Counter::Responses1xx => "HTTP responses with a 1xx status.",
            Counter::Responses2xx => "HTTP responses with a 2xx status.",
            Counter::Responses3xx => "HTTP responses with a 3xx status.",
            Counter::Responses4xx => "HTTP responses with a 4xx status.",
            Counter::Responses5xx => "HTTP responses with a 5xx status.",
            Counter::ResponsesOther => "HTTP responses with another status.",
            Counter::BytesIn => "Bytes received.",
            Counter::BytesOut => "Bytes sent.",
            Counter::PacketsIn => "Packets received.",
            Counter::PacketsOut => "Packets sent.",
            Counter::NewFlows => "New L4 flows.",
            Counter::RequestErrors => "Request errors.",
            Counter::ConnectErrors => "Connection errors towards servers.",
            Counter::ResponseErrors => "Response errors.",
            Counter::Denied => "Requests or packets denied.",
            Counter::Timeouts => "Client timeouts.",
            Counter::Retries => "Connection retries.",
            Counter::Redispatches => "Redispatches to another server.",
            Counter::CheckFailures => "Failed health checks.",
            Counter::DownTransitions => "UP to DOWN transitions.",
        }
    }

    /// Index of this counter's mirror baseline, for counters that the L4 sync
    /// task mirrors from per-CPU BPF maps.
    pub fn mirror_slot(self) -> Option<usize> {
        match self {
            Counter::Connections => Some(0),
            Counter::BytesIn => Some(1),
            Counter::BytesOut => Some(2),
            Counter::PacketsIn => Some(3),
            Counter::PacketsOut => Some(4),
            Counter::NewFlows => Some(5),
            Counter::Denied => Some(6),
            _ => None,
        }
    }

    /// Whether the counter is meaningful for an object type (readers only
    /// print those; the cells exist in every object).
    pub fn applies_to(self, ty: ObjectType) -> bool {
        use Counter::*;
        if ty.is_l4() {
            return matches!(
                self,
                Connections | BytesIn | BytesOut | PacketsIn | PacketsOut | NewFlows | Denied
            );
        }
        match self {
            PacketsIn | PacketsOut | NewFlows => false,
            CheckFailures | DownTransitions => {
                matches!(ty, ObjectType::Server | ObjectType::Backend)
            }
            Retries | Redispatches | ConnectErrors => {
                matches!(ty, ObjectType::Server | ObjectType::Backend)
            }
            _ => true,
        }
    }
}

const _: () = assert!(MIRROR_CELLS >= 7);

/// A per-second rate counter on the shared clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Rate {
    /// Sessions per second.
    Sessions = 0,
    /// Connections per second.
    Connections = 1,
    /// Requests per second.
    Requests = 2,
}

impl Rate {
    /// Every rate, in cell order.
    pub const ALL: [Rate; RATE_COUNT] = [Rate::Sessions, Rate::Connections, Rate::Requests];

    /// snake_case name (`session_rate` ...).
    pub fn name(self) -> &'static str {
        match self {
            Rate::Sessions => "session_rate",
            Rate::Connections => "connection_rate",
            Rate::Requests => "request_rate",
        }
    }
}

/// A timestamp cell holding shared-clock milliseconds (0 = never).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stamp {
    /// Last state change (UP/DOWN) of the entity.
    LastChange,
    /// Last session started on the entity.
    LastSession,
}

/// One process slot in the header: 32 bytes.
#[repr(C)]
pub struct Slot {
    /// `generation << 32 | pid`; pid 0 means free. Claimed and released with
    /// a CAS on the whole word, so a stale owner cannot release a slot that
    /// was taken over (the generation differs).
    pub owner: AtomicU64,
    /// Last heartbeat, shared-clock nanoseconds (u64: does not wrap).
    pub heartbeat_ns: AtomicU64,
    /// When the owner claimed the slot, shared-clock nanoseconds.
    pub started_ns: AtomicU64,
    /// Reserved, zero.
    pub reserved: AtomicU64,
}

/// The file header: [`HEADER_SIZE`] bytes.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION_MAJOR`].
    pub version_major: u16,
    /// [`VERSION_MINOR`].
    pub version_minor: u16,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// [`layout_hash`] of the writer.
    pub layout_hash: u64,
    /// [`OBJECT_SIZE`].
    pub object_size: u32,
    /// [`SLOT_COUNT`].
    pub slot_count: u32,
    /// Objects the file holds; the file is at least
    /// `HEADER_SIZE + capacity * OBJECT_SIZE` bytes. Only grows.
    pub capacity: AtomicU64,
    /// Objects handed out so far (high-water mark, <= capacity). Only grows.
    pub objects_used: AtomicU64,
    /// Shared forward-only clock, nanoseconds.
    pub clock_ns: AtomicU64,
    /// Shared forward-only clock, milliseconds (clock_ns / 1e6).
    pub clock_ms: AtomicU64,
    /// [`FLAG_CLEAN_STOP`] and reserved flag bits.
    pub flags: AtomicU64,
    /// Shared-clock ms of the last clean full stop (0 = none).
    pub last_stop_ms: AtomicU64,
    /// Hash of the boot id of the host whose monotonic clock the shared clock
    /// is based on (0 = unknown).
    pub clock_boot: AtomicU64,
    /// Offset (shared - local monotonic) in ns, as an i64, valid for processes
    /// of boot `clock_boot`.
    pub clock_offset: AtomicU64,
    /// Reserved, zero.
    pub reserved0: [u8; 32],
    /// Process slots.
    pub slots: [Slot; SLOT_COUNT],
    /// Reserved, zero.
    pub reserved1: [u8; HEADER_SIZE - 128 - SLOT_COUNT * 32],
}

/// One object: [`OBJECT_SIZE`] bytes.
#[repr(C)]
pub struct Object {
    /// GUID, NUL-padded; 1..=127 bytes of `[A-Za-z0-9.:_-]`.
    pub guid: [u8; GUID_FIELD],
    /// [`STATE_FREE`], [`STATE_INIT`] or [`STATE_LIVE`].
    pub state: AtomicU32,
    /// [`ObjectType`] code.
    pub obj_type: AtomicU32,
    /// Users bitmask: bit `i` set while process slot `i` counts into it.
    pub users: AtomicU64,
    /// Times this object was (re)initialised; lets readers detect recycling.
    pub generation: AtomicU64,
    /// Shared-clock ms at (re)initialisation.
    pub created_ms: AtomicU64,
    /// Cumulative counters, indexed by [`Counter`].
    pub counters: [AtomicU64; COUNTER_CELLS],
    /// Last mirrored absolute BPF sum, indexed by [`Counter::mirror_slot`].
    pub mirror_base: [AtomicU64; MIRROR_CELLS],
    /// Rate buckets: `rates[rate * 2 + (sec & 1)] = (sec as u32) << 32 | count`.
    pub rates: [AtomicU64; RATE_COUNT * RATE_BUCKETS],
    /// [`Stamp::LastChange`], shared-clock ms.
    pub last_change_ms: AtomicU64,
    /// [`Stamp::LastSession`], shared-clock ms.
    pub last_session_ms: AtomicU64,
    /// Reserved, zero.
    pub reserved: [u8; 32],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(size_of::<Slot>() == 32);
const _: () = assert!(size_of::<Object>() == OBJECT_SIZE);
const _: () = assert!(offset_of!(Header, slots) == 128);

impl Object {
    /// Zeroes everything but `guid`, `state` and `obj_type`.
    pub(crate) fn zero_all_counts(&self) {
        self.users.store(0, Ordering::Relaxed);
        self.created_ms.store(0, Ordering::Relaxed);
        for c in &self.counters {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.mirror_base {
            c.store(0, Ordering::Relaxed);
        }
        self.zero_resettable();
    }

    /// Zeroes what a counter reset clears: counters, rates, stamps. Mirror
    /// baselines are kept, so a BPF map that survives the reset is not
    /// counted again from its start.
    pub(crate) fn zero_resettable(&self) {
        for c in &self.counters {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.rates {
            c.store(0, Ordering::Relaxed);
        }
        self.last_change_ms.store(0, Ordering::Relaxed);
        self.last_session_ms.store(0, Ordering::Relaxed);
    }
}

/// One row of the documented offsets table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDesc {
    /// Which struct (`header`, `slot`, `object`).
    pub area: &'static str,
    /// Field name.
    pub name: &'static str,
    /// Byte offset within the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Type and meaning.
    pub desc: &'static str,
}

macro_rules! field {
    ($area:literal, $ty:ty, $field:ident, $size:expr, $desc:literal) => {
        FieldDesc {
            area: $area,
            name: stringify!($field),
            offset: offset_of!($ty, $field),
            size: $size,
            desc: $desc,
        }
    };
}

/// Every field of the layout, with offsets taken from the structs themselves.
pub fn layout_fields() -> Vec<FieldDesc> {
    vec![
        field!("header", Header, magic, 8, "bytes `WEIRSTAT`"),
        field!(
            "header",
            Header,
            version_major,
            2,
            "u16 layout major version"
        ),
        field!(
            "header",
            Header,
            version_minor,
            2,
            "u16 layout minor version"
        ),
        field!("header", Header, header_size, 4, "u32 header size (4096)"),
        field!(
            "header",
            Header,
            layout_hash,
            8,
            "u64 FNV-1a hash of this table"
        ),
        field!("header", Header, object_size, 4, "u32 object size (512)"),
        field!("header", Header, slot_count, 4, "u32 process slots (64)"),
        field!(
            "header",
            Header,
            capacity,
            8,
            "u64 objects the file holds (grows only)"
        ),
        field!(
            "header",
            Header,
            objects_used,
            8,
            "u64 objects handed out (grows only)"
        ),
        field!(
            "header",
            Header,
            clock_ns,
            8,
            "u64 shared clock, ns (forward-only)"
        ),
        field!("header", Header, clock_ms, 8, "u64 shared clock, ms"),
        field!("header", Header, flags, 8, "u64 bit 0: clean full stop"),
        field!(
            "header",
            Header,
            last_stop_ms,
            8,
            "u64 clock ms of the last clean stop"
        ),
        field!(
            "header",
            Header,
            clock_boot,
            8,
            "u64 hash of the boot id the clock is based on"
        ),
        field!(
            "header",
            Header,
            clock_offset,
            8,
            "i64 shared minus local monotonic ns, for that boot"
        ),
        field!("header", Header, reserved0, 32, "reserved, zero"),
        field!(
            "header",
            Header,
            slots,
            SLOT_COUNT * 32,
            "64 process slots of 32 bytes"
        ),
        field!(
            "header",
            Header,
            reserved1,
            HEADER_SIZE - 128 - SLOT_COUNT * 32,
            "reserved, zero"
        ),
        field!(
            "slot",
            Slot,
            owner,
            8,
            "u64 generation (high 32 bits), pid (low 32; 0: free)"
        ),
        field!(
            "slot",
            Slot,
            heartbeat_ns,
            8,
            "u64 last heartbeat, shared clock ns"
        ),
        field!(
            "slot",
            Slot,
            started_ns,
            8,
            "u64 claim time, shared clock ns"
        ),
        field!("slot", Slot, reserved, 8, "reserved, zero"),
        field!(
            "object",
            Object,
            guid,
            GUID_FIELD,
            "GUID, NUL-padded, 1..=127 bytes"
        ),
        field!("object", Object, state, 4, "u32 0 free, 1 init, 2 live"),
        field!("object", Object, obj_type, 4, "u32 1 frontend .. 6 l4_real"),
        field!(
            "object",
            Object,
            users,
            8,
            "u64 bit per process slot using it"
        ),
        field!("object", Object, generation, 8, "u64 times (re)initialised"),
        field!(
            "object",
            Object,
            created_ms,
            8,
            "u64 clock ms at (re)initialisation"
        ),
        field!(
            "object",
            Object,
            counters,
            COUNTER_CELLS * 8,
            "24 x u64 counters (23 used)"
        ),
        field!(
            "object",
            Object,
            mirror_base,
            MIRROR_CELLS * 8,
            "8 x u64 last mirrored BPF sums"
        ),
        field!(
            "object",
            Object,
            rates,
            RATE_COUNT * RATE_BUCKETS * 8,
            "3 rates x 2 buckets: u64 second (high 32), count (low 32)"
        ),
        field!(
            "object",
            Object,
            last_change_ms,
            8,
            "u64 clock ms of last state change"
        ),
        field!(
            "object",
            Object,
            last_session_ms,
            8,
            "u64 clock ms of last session"
        ),
        field!("object", Object, reserved, 32, "reserved, zero"),
    ]
}

/// Renders the offsets table exactly as it appears in `docs/shm-stats-file.md`.
pub fn render_offsets_table() -> String {
    let mut out =
        String::from("| area | offset | size | field | meaning |\n|---|---:|---:|---|---|\n");
    for f in layout_fields() {
        out.push_str(&format!(
            "| {} | {} | {} | `{}` | {} |\n",
            f.area, f.offset, f.size, f.name, f.desc
        ));
    }
    out.push_str("\n| counter cell | name | mirror baseline |\n|---:|---|---:|\n");
    for c in Counter::ALL {
        let m = c
            .mirror_slot()
            .map_or_else(|| "-".to_string(), |m| m.to_string());
        out.push_str(&format!("| {} | `{}` | {} |\n", c as usize, c.name(), m));
    }
    out
}

/// FNV-1a 64 of the rendered offsets table: any layout change changes it.
pub fn layout_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in render_offsets_table().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Byte offset of object `index` in the file.
pub fn object_offset(index: u64) -> u64 {
    HEADER_SIZE as u64 + index * OBJECT_SIZE as u64
}

/// Why a header (or an object in it) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Shorter than a header.
    #[error("file is {len} bytes, shorter than the {HEADER_SIZE}-byte header")]
    TooShort {
        /// File length.
        len: u64,
    },
    /// Magic mismatch.
    #[error("not a weir shm-stats-file (bad magic)")]
    BadMagic,
    /// Another layout version.
    #[error("layout version {major}.{minor} is not supported (this build: {VERSION_MAJOR}.{VERSION_MINOR})")]
    Version {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
    },
    /// Same version, different layout hash.
    #[error("layout hash {found:#x} does not match this build's {expected:#x}")]
    LayoutHash {
        /// Hash found.
        found: u64,
        /// Hash expected.
        expected: u64,
    },
    /// A geometry field has an impossible value.
    #[error("bad header field {field}: {value}")]
    Geometry {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
    },
    /// The file is shorter than its capacity says.
    #[error("truncated: {len} bytes but capacity {capacity} needs {need}")]
    Truncated {
        /// File length.
        len: u64,
        /// Capacity found.
        capacity: u64,
        /// Bytes needed.
        need: u64,
    },
}

/// Validated header geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Objects the file holds.
    pub capacity: u64,
    /// Objects handed out.
    pub objects_used: u64,
    /// Minor version found.
    pub version_minor: u16,
}

fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn rd_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}
/// Reads a native-endian u64 at `off` (panics if out of range: callers check).
pub(crate) fn rd_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

/// Validates the first [`HEADER_SIZE`] bytes of a file of `file_len` bytes.
///
/// `strict_minor` refuses a different minor version (writers); readers accept
/// any minor of the same major, since minors only give meaning to reserved
/// bytes.
pub fn validate_header(
    bytes: &[u8],
    file_len: u64,
    strict_minor: bool,
) -> Result<HeaderInfo, LayoutError> {
    if bytes.len() < HEADER_SIZE || file_len < HEADER_SIZE as u64 {
        return Err(LayoutError::TooShort {
            len: file_len.min(bytes.len() as u64),
        });
    }
    if bytes[0..8] != MAGIC {
        return Err(LayoutError::BadMagic);
    }
    let major = rd_u16(bytes, offset_of!(Header, version_major));
    let minor = rd_u16(bytes, offset_of!(Header, version_minor));
    if major != VERSION_MAJOR || (strict_minor && minor != VERSION_MINOR) {
        return Err(LayoutError::Version { major, minor });
    }
    let hash = rd_u64(bytes, offset_of!(Header, layout_hash));
    if minor == VERSION_MINOR && hash != layout_hash() {
        return Err(LayoutError::LayoutHash {
            found: hash,
            expected: layout_hash(),
        });
    }
    let checks: [(&'static str, usize, u64); 3] = [
        (
            "header_size",
            offset_of!(Header, header_size),
            HEADER_SIZE as u64,
        ),
        (
            "object_size",
            offset_of!(Header, object_size),
            OBJECT_SIZE as u64,
        ),
        (
            "slot_count",
            offset_of!(Header, slot_count),
            SLOT_COUNT as u64,
        ),
    ];
    for (field, off, want) in checks {
        let v = u64::from(rd_u32(bytes, off));
        if v != want {
            return Err(LayoutError::Geometry { field, value: v });
        }
    }
    let capacity = rd_u64(bytes, offset_of!(Header, capacity));
    let objects_used = rd_u64(bytes, offset_of!(Header, objects_used));
    if capacity > MAX_CAPACITY {
        return Err(LayoutError::Geometry {
            field: "capacity",
            value: capacity,
        });
    }
    if objects_used > capacity {
        return Err(LayoutError::Geometry {
            field: "objects_used",
            value: objects_used,
        });
    }
    let need = object_offset(capacity);
    if file_len < need {
        return Err(LayoutError::Truncated {
            len: file_len,
            capacity,
            need,
        });
    }
    Ok(HeaderInfo {
        capacity,
        objects_used,
        version_minor: minor,
    })
}

/// Checks a GUID: 1..=127 bytes of `[A-Za-z0-9.:_-]`.
pub fn valid_guid(guid: &str) -> bool {
    !guid.is_empty()
        && guid.len() <= GUID_MAX_LEN
        && guid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-'))
}

/// Decodes a NUL-padded GUID field; `None` if it is not a valid GUID.
pub fn decode_guid(field: &[u8; GUID_FIELD]) -> Option<String> {
    let len = field.iter().position(|&b| b == 0)?;
    if field[len..].iter().any(|&b| b != 0) {
        return None;
    }
    let s = std::str::from_utf8(&field[..len]).ok()?;
    valid_guid(s).then(|| s.to_string())
}

/// Encodes a GUID (already validated) into a NUL-padded field.
pub fn encode_guid(guid: &str) -> [u8; GUID_FIELD] {
    let mut f = [0u8; GUID_FIELD];
    f[..guid.len()].copy_from_slice(guid.as_bytes());
    f
}

/// Packs a slot owner word.
pub fn pack_owner(generation: u32, pid: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(pid)
}

/// Splits a slot owner word into (generation, pid).
pub fn unpack_owner(owner: u64) -> (u32, u32) {
    ((owner >> 32) as u32, owner as u32)
}

/// Rate over the last second from two parity buckets, HAProxy style: the
/// previous full second weighted by the part of it still inside the sliding
/// window, plus the current second.
pub fn rate_from_buckets(b0: u64, b1: u64, now_ms: u64) -> u64 {
    let sec = now_ms / 1000;
    let frac = now_ms % 1000;
    let mut curr = 0;
    let mut prev = 0;
    for b in [b0, b1] {
        let bsec = (b >> 32) as u32;
        let count = b & 0xffff_ffff;
        if bsec == sec as u32 {
            curr = count;
        } else if bsec == sec.wrapping_sub(1) as u32 {
            prev = count;
        }
    }
    curr + prev * (1000 - frac) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_of_127_bytes_round_trips_and_128_is_refused() {
        let g = "a".repeat(127);
        assert!(valid_guid(&g));
        assert_eq!(decode_guid(&encode_guid(&g)).as_deref(), Some(g.as_str()));
        assert!(!valid_guid(&"a".repeat(128)));
        assert!(!valid_guid(""));
        assert!(!valid_guid("a b"));
    }

    #[test]
    fn rate_weights_previous_second_by_remaining_fraction() {
        let now_ms = 10_250;
        let prev = (9u64 << 32) | 100;
        let curr = (10u64 << 32) | 7;
        assert_eq!(rate_from_buckets(curr, prev, now_ms), 7 + 75);
        // stale buckets are ignored
        let stale = (3u64 << 32) | 1000;
        assert_eq!(rate_from_buckets(stale, curr, now_ms), 7);
    }

    #[test]
    fn layout_hash_is_pinned_for_version_1_0() {
        // Changing the layout table changes this hash: bump the version too.
        assert_eq!((VERSION_MAJOR, VERSION_MINOR), (1, 0));
        assert_eq!(layout_hash(), 0x6ba7_9989_cef6_17b5);
    }

    #[test]
    fn header_validation_rejects_short_and_garbage() {
        assert!(matches!(
            validate_header(&[0u8; 10], 10, true),
            Err(LayoutError::TooShort { .. })
        ));
        let b = vec![0u8; HEADER_SIZE];
        assert_eq!(
            validate_header(&b, HEADER_SIZE as u64, true),
            Err(LayoutError::BadMagic)
        );
    }
}
