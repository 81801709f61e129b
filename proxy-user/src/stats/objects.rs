//! Objects: lookup by (GUID, type), adoption, recycling, appending, reset.
//!
//! Everything here runs with the file lock held, so allocation decisions are
//! serialised across processes; state changes still go through atomics
//! (`FREE/LIVE -> INIT -> LIVE`) so lock-free readers never see a half-made
//! object as live.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::file::MappedFile;
use super::layout::{decode_guid, encode_guid, ObjectType, STATE_FREE, STATE_INIT, STATE_LIVE};
use super::StatsError;

/// (GUID, type) -> object index of every live mapped object. When a file
/// somehow holds duplicates, the lowest index wins (it is the oldest).
pub fn index_live(map: &MappedFile) -> HashMap<(String, ObjectType), u64> {
    let used = map
        .header()
        .objects_used
        .load(Ordering::Acquire)
        .min(map.mapped_objects());
    let mut idx = HashMap::with_capacity(used as usize);
    for i in 0..used {
        let o = map.object(i);
        if o.state.load(Ordering::Acquire) != STATE_LIVE {
            continue;
        }
        let (Some(ty), Some(guid)) = (
            ObjectType::from_code(o.obj_type.load(Ordering::Acquire)),
            decode_guid(&o.guid),
        ) else {
            continue;
        };
        idx.entry((guid, ty)).or_insert(i);
    }
    idx
}

/// Writes a fresh object at `i` whose state the caller moved to INIT.
fn init_object(map: &MappedFile, i: u64, guid: &str, ty: ObjectType, bit: u64, now_ms: u64) {
    let o = map.object(i);
    o.zero_all_counts();
    // SAFETY: the object is in INIT state and we hold the file lock: no other
    // writer touches the GUID; readers ignore non-LIVE objects and re-check
    // state/generation around their copy.
    unsafe {
        let dst = o.guid.as_ptr().cast_mut();
        let src = encode_guid(guid);
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
    }
    o.obj_type.store(ty as u32, Ordering::Relaxed);
    o.created_ms.store(now_ms, Ordering::Relaxed);
    o.generation.fetch_add(1, Ordering::Relaxed);
    o.users.store(bit, Ordering::Relaxed);
    o.state.store(STATE_LIVE, Ordering::Release);
}

/// Allocation cursor for one registration batch.
#[derive(Debug, Default)]
pub struct Allocator {
    next_recycle: u64,
}

/// Where a new object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocated {
    /// An object whose users were all dead, zeroed and reused.
    Recycled(u64),
    /// A new object appended at the end.
    Appended(u64),
}

impl Allocated {
    /// The object index.
    pub fn index(self) -> u64 {
        match self {
            Allocated::Recycled(i) | Allocated::Appended(i) => i,
        }
    }
}

impl Allocator {
    /// Allocates an object for (guid, type): recycles the first object whose
    /// users are all dead (`users & alive == 0`), else appends, growing the
    /// file. `None` when the file is at this process's object limit.
    pub fn allocate(
        &mut self,
        map: &MappedFile,
        guid: &str,
        ty: ObjectType,
        bit: u64,
        alive: u64,
        now_ms: u64,
    ) -> Result<Option<Allocated>, StatsError> {
        let h = map.header();
        let used = h
            .objects_used
            .load(Ordering::Acquire)
            .min(map.mapped_objects());
        while self.next_recycle < used {
            let i = self.next_recycle;
            self.next_recycle += 1;
            let o = map.object(i);
            let st = o.state.load(Ordering::Acquire);
            let reusable = match st {
                STATE_LIVE => o.users.load(Ordering::Acquire) & alive == 0,
                // INIT under the lock means its initialiser died mid-way;
                // FREE below objects_used means it was never published.
                _ => true,
            };
            if reusable
                && o.state
                    .compare_exchange(st, STATE_INIT, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                init_object(map, i, guid, ty, bit, now_ms);
                return Ok(Some(Allocated::Recycled(i)));
            }
        }
        // Append. The index comes from the header under the lock, never from
        // a local count, and the slot must be FREE: a racing appender's
        // object is never overwritten.
        loop {
            let i = h.objects_used.load(Ordering::Acquire);
            if i >= map.grow(i + 1)? {
                return Ok(None);
            }
            let o = map.object(i);
            let claimed = o
                .state
                .compare_exchange(STATE_FREE, STATE_INIT, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            // Publish the new high-water mark before init so a crash leaves an
            // INIT object that the next allocation recycles.
            h.objects_used.fetch_max(i + 1, Ordering::AcqRel);
            if claimed {
                init_object(map, i, guid, ty, bit, now_ms);
                self.next_recycle = self.next_recycle.max(i + 1);
                return Ok(Some(Allocated::Appended(i)));
            }
        }
    }
}

/// Resets the counters, rates and stamps of every live mapped object (clean
/// stop then start). Mirror baselines are kept. Call with the lock held.
pub fn reset_all(map: &MappedFile) -> u64 {
    let used = map
        .header()
        .objects_used
        .load(Ordering::Acquire)
        .min(map.mapped_objects());
    let mut n = 0;
    for i in 0..used {
        let o = map.object(i);
        if o.state.load(Ordering::Acquire) == STATE_LIVE {
            o.zero_resettable();
            n += 1;
        }
    }
    n
}
