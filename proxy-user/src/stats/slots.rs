//! Process slots: claim, heartbeat, liveness, release, expiry.
//!
//! A slot's `owner` word is `generation << 32 | pid`. Every claim bumps the
//! generation, and release/expiry are CASes on the exact word the caller saw,
//! so a process that lost its slot (stalled past the timeout) can never
//! release, beat or clear bits for the process that took it over.
//! Liveness is `pid != 0 && now - heartbeat <= timeout` on the shared clock,
//! computed with u64 nanoseconds and a saturating subtraction: it does not
//! wrap, and a heartbeat slightly ahead of our clock (a process whose clock
//! has not converged yet) counts as fresh.

use std::sync::atomic::Ordering;

use super::file::MappedFile;
use super::layout::{pack_owner, unpack_owner, Header, Slot, SLOT_COUNT, STATE_LIVE};

/// Whether a slot belongs to a live process at shared time `now_ns`.
pub fn slot_alive(slot: &Slot, now_ns: u64, timeout_ns: u64) -> bool {
    let (_, pid) = unpack_owner(slot.owner.load(Ordering::Acquire));
    pid != 0 && now_ns.saturating_sub(slot.heartbeat_ns.load(Ordering::Acquire)) <= timeout_ns
}

/// Bitmask of live slots.
pub fn alive_mask(h: &Header, now_ns: u64, timeout_ns: u64) -> u64 {
    let mut m = 0;
    for (i, s) in h.slots.iter().enumerate() {
        if slot_alive(s, now_ns, timeout_ns) {
            m |= 1u64 << i;
        }
    }
    m
}

/// Clears users bit `slot` in every mapped object. Call with the lock held.
pub fn clear_user_bit(map: &MappedFile, slot: usize) {
    let used = map
        .header()
        .objects_used
        .load(Ordering::Acquire)
        .min(map.mapped_objects());
    for i in 0..used {
        map.object(i)
            .users
            .fetch_and(!(1u64 << slot), Ordering::AcqRel);
    }
}

/// Claims a free or dead slot for `pid`. Call with the lock held. Returns
/// (slot index, owner word). The previous owner's users bits are cleared, so
/// objects of a process that died without cleaning up become recyclable.
pub fn claim(map: &MappedFile, pid: u32, now_ns: u64, timeout_ns: u64) -> Option<(usize, u64)> {
    let h = map.header();
    for i in 0..SLOT_COUNT {
        let s = &h.slots[i];
        let old = s.owner.load(Ordering::Acquire);
        let (gen, opid) = unpack_owner(old);
        if opid != 0 && slot_alive(s, now_ns, timeout_ns) {
            continue;
        }
        let new = pack_owner(gen.wrapping_add(1), pid);
        if s.owner
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            s.heartbeat_ns.store(now_ns, Ordering::Release);
            s.started_ns.store(now_ns, Ordering::Relaxed);
            clear_user_bit(map, i);
            return Some((i, new));
        }
    }
    None
}

/// Releases slot `i` if it is still owned by `owner`. Returns false when it
/// was taken over meanwhile (then nothing is touched).
pub fn release(h: &Header, i: usize, owner: u64) -> bool {
    let (gen, _) = unpack_owner(owner);
    h.slots[i]
        .owner
        .compare_exchange(
            owner,
            pack_owner(gen, 0),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
}

/// Frees every occupied slot (the file's processes belong to another boot or
/// stopped beating longer ago than the timeout) and clears their users bits.
/// Call with the lock held. Returns how many slots were expired.
pub fn expire_all(map: &MappedFile) -> usize {
    let h = map.header();
    let mut n = 0;
    for i in 0..SLOT_COUNT {
        let old = h.slots[i].owner.load(Ordering::Acquire);
        let (_, pid) = unpack_owner(old);
        if pid != 0 && release(h, i, old) {
            clear_user_bit(map, i);
            n += 1;
        }
    }
    n
}

/// Whether any mapped live object still has users bit `slot` set (tests and
/// diagnostics).
pub fn bit_in_use(map: &MappedFile, slot: usize) -> bool {
    let used = map
        .header()
        .objects_used
        .load(Ordering::Acquire)
        .min(map.mapped_objects());
    (0..used).any(|i| {
        let o = map.object(i);
        o.state.load(Ordering::Acquire) == STATE_LIVE
            && o.users.load(Ordering::Acquire) & (1u64 << slot) != 0
    })
}
