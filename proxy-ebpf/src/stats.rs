//! Counter updates. Each helper bumps this CPU's slot of a per-CPU map, so no
//! atomics are needed; userspace sums the slots.

use proxy_common::{PacketCounters, TrafficCounters};

use crate::maps::{WEIR_DECAP_STATS, WEIR_FE_STATS, WEIR_PKT_STATS, WEIR_VERDICTS};

#[inline(always)]
fn add_traffic(cell: Option<*mut TrafficCounters>, bytes: u64) {
    if let Some(cell) = cell {
        // SAFETY: a per-CPU map value, only touched by this CPU while the program runs.
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += bytes;
        }
    }
}

/// Counts one packet for the frontend with this stats slot.
#[inline(always)]
pub fn count_frontend(id: u32, bytes: u64) {
    add_traffic(WEIR_FE_STATS.get_ptr_mut(id), bytes);
}

/// Counts the final verdict of one packet.
#[inline(always)]
pub fn count_verdict(action: u32, bytes: u64) {
    add_traffic(WEIR_VERDICTS.get_ptr_mut(action), bytes);
}

/// Applies `f` to this CPU's classification counters.
#[inline(always)]
pub fn with_packet_counters(f: impl FnOnce(&mut PacketCounters)) {
    if let Some(cell) = WEIR_PKT_STATS.get_ptr_mut(0) {
        // SAFETY: as above, a per-CPU value owned by this CPU for the program's run.
        f(unsafe { &mut *cell });
    }
}

/// Counts one packet decapsulated by `weir_decap`.
#[inline(always)]
pub fn count_decap(bytes: u64) {
    add_traffic(WEIR_DECAP_STATS.get_ptr_mut(0), bytes);
}
