//! Clock sources and the shared forward-only clock arithmetic.
//!
//! A process's shared time is `local monotonic + offset`. The offset is chosen
//! at attach time from the clock stored in the file ([`attach_offset`]) and
//! only ever grows afterwards ([`SharedClock::converge`]), so the shared clock
//! never goes back. The source is injectable ([`ClockSource`]) so tests can
//! play minutes of clock in microseconds.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonic nanosecond clock.
pub trait ClockSource: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since an arbitrary (per boot) origin; never decreases.
    fn now_ns(&self) -> u64;

    /// Identifies the boot (and host) whose origin `now_ns` counts from.
    /// Defaults to a hash of `/proc/sys/kernel/random/boot_id`.
    fn boot_id(&self) -> u64 {
        host_boot_id()
    }
}

/// FNV-1a hash of `/proc/sys/kernel/random/boot_id` (0 if unreadable).
pub fn host_boot_id() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
            return 0;
        };
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.trim().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    })
}

/// `CLOCK_MONOTONIC_COARSE`, the default source: the origin of
/// `CLOCK_MONOTONIC` at the resolution of the kernel tick (1-4 ms). That is
/// plenty for millisecond stamps, per-second rates and 1 s heartbeats, and it
/// costs a fifth of the precise clock on the rate path (12 vs 53 ns per
/// `add_rate` measured in `benches/stats.rs`).
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl ClockSource for MonotonicClock {
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
}

/// A hand-driven clock for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    ns: AtomicU64,
    boot: AtomicU64,
}

impl ManualClock {
    /// A clock reading `ns`, on this host's boot.
    pub fn new(ns: u64) -> ManualClock {
        ManualClock {
            ns: AtomicU64::new(ns),
            boot: AtomicU64::new(host_boot_id()),
        }
    }
    /// A clock reading `ns` that claims to belong to boot `boot`.
    pub fn with_boot(ns: u64, boot: u64) -> ManualClock {
        ManualClock {
            ns: AtomicU64::new(ns),
            boot: AtomicU64::new(boot),
        }
    }
    /// Sets the reading.
    pub fn set(&self, ns: u64) {
        self.ns.store(ns, Ordering::Relaxed);
    }
    /// Moves the reading forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl ClockSource for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Relaxed)
    }
    fn boot_id(&self) -> u64 {
        self.boot.load(Ordering::Relaxed)
    }
}

/// What attaching decided about the stored clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockVerdict {
    /// The file had no clock yet (new file): shared time is local time.
    Fresh,
    /// The stored clock is within the timeout of local time; offset chosen so
    /// shared time is not behind the stored clock.
    Within {
        /// Stored minus local, ns (may be negative).
        skew_ns: i64,
    },
    /// The stored clock cannot belong to this boot (ahead of or behind local
    /// time by more than the timeout): rebased so it goes on from the stored
    /// value.
    Foreign {
        /// Stored minus local, ns.
        skew_ns: i64,
    },
}

/// Offset (shared - local) to use when attaching, given the stored clock and
/// the offset already in use by this boot's processes (`base_offset`, 0 when
/// the file's clock was based on another boot).
///
/// Let `skew = stored - (local + base_offset)`.
/// * stored == 0: fresh file, offset = base_offset.
/// * |skew| > timeout: the stored clock cannot belong to this boot (reboot,
///   other host, or nobody ran for longer than the timeout): offset =
///   stored - local, so rates and timestamps continue from where the file
///   left off.
/// * otherwise: offset = base_offset + max(0, skew): never start behind the
///   stored clock (forward-only), never jump ahead of it.
pub fn attach_offset(
    stored_ns: u64,
    local_ns: u64,
    base_offset: i64,
    timeout_ns: u64,
) -> (i64, ClockVerdict) {
    if stored_ns == 0 {
        return (base_offset, ClockVerdict::Fresh);
    }
    let skew = i128::from(stored_ns) - i128::from(local_ns) - i128::from(base_offset);
    let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let skew_ns = clamp(skew);
    if skew.unsigned_abs() > u128::from(timeout_ns) {
        let off = clamp(i128::from(stored_ns) - i128::from(local_ns));
        (off, ClockVerdict::Foreign { skew_ns })
    } else {
        (
            clamp(i128::from(base_offset) + skew.max(0)),
            ClockVerdict::Within { skew_ns },
        )
    }
}

/// A process's view of the shared clock.
#[derive(Debug)]
pub struct SharedClock {
    source: std::sync::Arc<dyn ClockSource>,
    offset: AtomicI64,
}

impl SharedClock {
    /// A clock reading `source + offset`.
    pub fn new(source: std::sync::Arc<dyn ClockSource>, offset: i64) -> SharedClock {
        SharedClock {
            source,
            offset: AtomicI64::new(offset),
        }
    }

    /// The local (unshifted) reading.
    pub fn local_ns(&self) -> u64 {
        self.source.now_ns()
    }

    /// Current shared time, ns.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        let v = i128::from(self.source.now_ns()) + i128::from(self.offset.load(Ordering::Relaxed));
        v.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Current shared time, ms.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }

    /// Current offset (shared - local), ns.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Forward-only convergence on the stored clock: if the stored clock is
    /// ahead of our shared time, move our offset forward by the difference.
    /// Returns how far we moved (0 if we were not behind).
    pub fn converge(&self, stored_ns: u64) -> u64 {
        let now = self.now_ns();
        if stored_ns > now {
            let d = stored_ns - now;
            self.offset
                .fetch_add(i64::try_from(d).unwrap_or(i64::MAX), Ordering::Relaxed);
            d
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T: u64 = 60_000_000_000;

    #[test]
    fn attach_offsets_follow_the_documented_rule() {
        assert_eq!(attach_offset(0, 5, 0, T), (0, ClockVerdict::Fresh));
        // same boot, stored slightly behind: local time as is
        assert_eq!(attach_offset(100 * T, 100 * T + 1_000, 0, T).0, 0);
        // same boot, stored slightly ahead: catch up
        assert_eq!(attach_offset(100 * T + 7, 100 * T, 0, T).0, 7);
        // an existing rebase of this boot is reused
        assert_eq!(
            attach_offset(100 * T, 10 * T, 90 * T as i64, T).0,
            90 * T as i64
        );
        // reboot: stored far ahead
        let (off, v) = attach_offset(100 * T, 2 * T, 0, T);
        assert_eq!(off, (98 * T) as i64);
        assert!(matches!(v, ClockVerdict::Foreign { .. }));
        // stored far behind
        let (off, v) = attach_offset(2 * T, 100 * T, 0, T);
        assert_eq!(off, -((98 * T) as i64));
        assert!(matches!(v, ClockVerdict::Foreign { .. }));
    }

    #[test]
    fn converge_only_moves_forward() {
        let src = Arc::new(ManualClock::new(1_000));
        let c = SharedClock::new(src.clone(), 0);
        assert_eq!(c.converge(500), 0);
        assert_eq!(c.now_ns(), 1_000);
        assert_eq!(c.converge(1_600), 600);
        assert_eq!(c.now_ns(), 1_600);
        src.advance(10);
        assert_eq!(c.now_ns(), 1_610);
    }
}
