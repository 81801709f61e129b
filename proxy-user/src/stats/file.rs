//! Opening, creating, locking, mapping and growing the shm-stats-file.
//!
//! Owns the file descriptor and the mapping; knows nothing about slots or
//! objects beyond the header geometry.
//!
//! * Create: a new file is fully initialised under a temporary name in the
//!   same directory and published with `link(2)`, which fails if someone else
//!   published first; nobody can ever open a half-made header.
//! * Lock: structural changes (slot claims, object allocation, growth, reset)
//!   happen under `flock(LOCK_EX)`. The kernel drops the lock when a process
//!   dies, so a crash cannot wedge the file. Counter updates take no lock.
//! * Map: the process reserves address space for `max_objects` objects once
//!   (`PROT_NONE`) and maps the file over its start with `MAP_FIXED`. Growth
//!   maps only the new tail into the reservation, so existing pointers (the
//!   counter handles) stay valid and no remap ever moves them.
//! * Grow: by `ftruncate` to a larger size only, computed from the header
//!   under the lock, never from a possibly stale local view; capacity is
//!   published after the file is long enough.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::layout::{
    self, object_offset, Header, HeaderInfo, Object, HEADER_SIZE, MAGIC, OBJECT_SIZE, SLOT_COUNT,
    VERSION_MAJOR, VERSION_MINOR,
};
use super::StatsError;

/// Objects a new file starts with.
pub const INITIAL_CAPACITY: u64 = 64;
/// Fewest objects added by one growth step.
pub const MIN_GROWTH: u64 = 64;

/// An open, locked-on-demand, mapped shm-stats-file.
#[derive(Debug)]
pub struct MappedFile {
    file: File,
    path: PathBuf,
    base: *mut u8,
    reserved_len: usize,
    mapped_len: AtomicUsize,
    max_objects: u64,
    page: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics (or
// under the file lock before publication); the raw pointer is just its base.
unsafe impl Send for MappedFile {}
// SAFETY: see above.
unsafe impl Sync for MappedFile {}

/// Holds `flock(LOCK_EX)` on the file until dropped.
#[derive(Debug)]
pub struct FileLock {
    fd: i32,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: fd stays open as long as the MappedFile that made the lock.
        unsafe { libc::flock(self.fd, libc::LOCK_UN) };
    }
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> StatsError {
    StatsError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Bytes of a fresh header for a file of `capacity` objects.
pub fn new_header_bytes(capacity: u64) -> Vec<u8> {
    use std::mem::offset_of;
    let mut b = vec![0u8; HEADER_SIZE];
    b[0..8].copy_from_slice(&MAGIC);
    let put = |b: &mut Vec<u8>, off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(
        &mut b,
        offset_of!(Header, version_major),
        &VERSION_MAJOR.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, version_minor),
        &VERSION_MINOR.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, header_size),
        &(HEADER_SIZE as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, layout_hash),
        &layout::layout_hash().to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, object_size),
        &(OBJECT_SIZE as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, slot_count),
        &(SLOT_COUNT as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, capacity),
        &capacity.to_ne_bytes(),
    );
    b
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p <= 0 {
        4096
    } else {
        p as usize
    }
}

/// Opens `path` read-write, creating and initialising it atomically if it
/// does not exist. Returns the file and whether this call created it.
fn open_or_create(path: &Path, initial_capacity: u64) -> Result<(File, bool), StatsError> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    // Bounded: each round either opens the file or loses a link race to a
    // creator, after which the open succeeds (unless the file is unlinked
    // again in between, which only a hostile actor does).
    for _ in 0..64 {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => return Ok((f, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path, "open", e)),
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stats".into());
        let tmp = path.with_file_name(format!(
            ".{name}.tmp.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "create", e))?;
        let init = (|| {
            f.write_all(&new_header_bytes(initial_capacity))?;
            f.set_len(object_offset(initial_capacity))
        })();
        if let Err(e) = init {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&tmp, "initialise", e));
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok((f, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(path, "link", e)),
        }
    }
    Err(io_err(
        path,
        "open",
        io::Error::other("file keeps disappearing while opening it"),
    ))
}

impl MappedFile {
    /// Opens (or creates) and maps `path` for up to `max_objects` objects.
    ///
    /// The returned lock is held: the caller finishes attaching (clock, slot,
    /// reset) before anyone else can change the structure.
    pub fn open(
        path: &Path,
        max_objects: u64,
    ) -> Result<(MappedFile, FileLock, HeaderInfo, bool), StatsError> {
        let max_objects = max_objects.clamp(1, layout::MAX_CAPACITY);
        let (file, created) = open_or_create(path, INITIAL_CAPACITY.min(max_objects))?;
        let page = page_size();
        let reserved_len = (object_offset(max_objects) as usize).div_ceil(page) * page;
        // SAFETY: anonymous PROT_NONE reservation; no existing memory touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io_err(
                path,
                "reserve address space",
                io::Error::last_os_error(),
            ));
        }
        let mf = MappedFile {
            file,
            path: path.to_path_buf(),
            base: base.cast(),
            reserved_len,
            mapped_len: AtomicUsize::new(0),
            max_objects,
            page,
        };
        let lock = mf.lock()?;
        // Validate from a private read before mapping anything: a short or
        // garbled file is refused without ever touching the mapping.
        let len = mf.file_len()?;
        let mut hdr = vec![0u8; HEADER_SIZE];
        let got = if len >= HEADER_SIZE as u64 {
            mf.file
                .read_exact_at(&mut hdr, 0)
                .map_err(|e| io_err(path, "read header", e))?;
            HEADER_SIZE
        } else {
            0
        };
        let info = layout::validate_header(&hdr[..got], len, true).map_err(|source| {
            StatsError::Layout {
                path: path.to_path_buf(),
                source,
            }
        })?;
        mf.map_to(object_offset(info.capacity.min(max_objects)) as usize)?;
        Ok((mf, lock, info, created))
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the structural lock (blocking).
    pub fn lock(&self) -> Result<FileLock, StatsError> {
        let fd = self.file.as_raw_fd();
        loop {
            // SAFETY: fd is a valid open descriptor.
            let r = unsafe { libc::flock(fd, libc::LOCK_EX) };
            if r == 0 {
                return Ok(FileLock { fd });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err(&self.path, "flock", e));
            }
        }
    }

    fn file_len(&self) -> Result<u64, StatsError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| io_err(&self.path, "stat", e))
    }

    /// Maps the file up to `want` bytes (never shrinks the mapping).
    fn map_to(&self, want: usize) -> Result<(), StatsError> {
        let have = self.mapped_len.load(Ordering::Acquire);
        if want <= have {
            return Ok(());
        }
        assert!(want <= self.reserved_len, "mapping beyond the reservation");
        let len = self.file_len()?;
        if (len as usize) < want {
            return Err(StatsError::Layout {
                path: self.path.clone(),
                source: layout::LayoutError::Truncated {
                    len,
                    capacity: ((want - HEADER_SIZE) / OBJECT_SIZE) as u64,
                    need: want as u64,
                },
            });
        }
        let start = have / self.page * self.page;
        // SAFETY: [base+start, base+want) lies inside our reservation; the
        // file is at least `want` bytes long; MAP_FIXED replaces only
        // reservation pages or a page already mapping the same file bytes.
        let p = unsafe {
            libc::mmap(
                self.base.add(start).cast(),
                want - start,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.file.as_raw_fd(),
                start as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io_err(&self.path, "mmap", io::Error::last_os_error()));
        }
        self.mapped_len.store(want, Ordering::Release);
        Ok(())
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: the header is always mapped once `open` returned.
        unsafe { &*self.base.cast::<Header>() }
    }

    /// Objects currently mapped in this process.
    pub fn mapped_objects(&self) -> u64 {
        let l = self.mapped_len.load(Ordering::Acquire);
        (l.saturating_sub(HEADER_SIZE) / OBJECT_SIZE) as u64
    }

    /// Largest number of objects this process can map.
    pub fn max_objects(&self) -> u64 {
        self.max_objects
    }

    /// Object `index`; panics if it is not mapped.
    pub fn object(&self, index: u64) -> &Object {
        assert!(index < self.mapped_objects(), "object {index} not mapped");
        // SAFETY: index is inside the mapped range; objects are aligned.
        unsafe {
            &*self
                .base
                .add(object_offset(index) as usize)
                .cast::<Object>()
        }
    }

    /// Maps whatever other processes appended (up to our limit). Call with
    /// the lock held.
    pub fn refresh(&self) -> Result<(), StatsError> {
        let cap = self
            .header()
            .capacity
            .load(Ordering::Acquire)
            .min(self.max_objects);
        self.map_to(object_offset(cap) as usize)
    }

    /// Grows the file so it holds at least `need` objects (capped at
    /// `max_objects`). Call with the lock held. Returns the capacity now
    /// mapped; less than `need` when the limit is reached.
    pub fn grow(&self, need: u64) -> Result<u64, StatsError> {
        self.refresh()?;
        let h = self.header();
        let cap = h.capacity.load(Ordering::Acquire);
        if cap < need && cap < self.max_objects {
            let new_cap = need
                .max(cap.saturating_mul(2))
                .max(cap + MIN_GROWTH)
                .min(self.max_objects);
            let new_len = object_offset(new_cap);
            // Only ever extend: another process may have grown the file past
            // what the header says if it died between ftruncate and publish.
            if self.file_len()? < new_len {
                self.file
                    .set_len(new_len)
                    .map_err(|e| io_err(&self.path, "extend", e))?;
            }
            h.capacity.fetch_max(new_cap, Ordering::AcqRel);
            self.refresh()?;
        }
        Ok(self.mapped_objects())
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: base/reserved_len are exactly our reservation; every handle
        // pointing into it keeps the MappedFile alive through an Arc.
        unsafe { libc::munmap(self.base.cast(), self.reserved_len) };
    }
}
