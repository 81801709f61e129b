//! Accept coalescing: an adaptive pause before an L7 worker goes to sleep
//! (`global tune.accept-coalesce`, on by default, io_uring workers only).
//!
//! Why: a worker that handles a connection faster than its clients open
//! them sleeps in `epoll_wait` between connections, and every new
//! connection then wakes it. That wake-up is paid by whoever completes the
//! handshake (on loopback, the client's `connect`; else the NIC's softirq):
//! waking a thread on an idle CPU costs an inter-processor interrupt, which
//! in a virtual machine is an exit to the host. Under heavy connection
//! churn a short pause in the ring instead (woken only by this worker's own
//! completions, never by the listener) lets connections gather in the
//! backlog and be accepted in one batch: the handshake finds nobody to
//! wake, and the worker sleeps and wakes a few times less per connection.
//! It is NIC interrupt moderation applied to `accept`.
//!
//! The pause delays a connection that arrives during it, so it is only
//! worth it when it pays. It pays when connections come faster than the
//! worker's wake-ups are worth (above [`MIN_RATE`]) from clients that have
//! other work meanwhile (many connections in flight). It does not pay for
//! a client that opens one connection only once the last one is done
//! (few connections in flight): that client just waits longer. The
//! [`Coalescer`] cannot see the clients, so it checks: every
//! [`CONTROL_EVERY`] paused epochs it runs one epoch without a pause, and
//! if connections came clearly faster then ([`HURT`]), pausing is slowing
//! the clients down and stops for a while (doubling up to about 1.6 s
//! while it keeps hurting). The pause is sized to gather about
//! [`TARGET_BATCH`] connections at the current rate, at most
//! `tune.accept-coalesce`. Keep-alive traffic accepts nothing and is never
//! paused.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Length of one measurement: long enough to count hundreds of
/// connections at the rates where pausing pays.
const EPOCH: Duration = Duration::from_millis(25);
/// Accepted connections per second (per worker) below which the worker
/// never pauses: there, wake-ups are too rare to be worth a delay.
const MIN_RATE: f64 = 2000.0;
/// Paused epochs between two control epochs (without a pause).
const CONTROL_EVERY: u16 = 8;
/// A control epoch faster than the paused ones by more than this
/// (relative) means pausing slows the clients down.
const HURT: f64 = 0.12;
/// Connections a pause is sized to gather at the current rate.
const TARGET_BATCH: f64 = 4.0;
/// Epochs without pausing after pausing was found to hurt, doubled each
/// time it hurts again, up to [`MAX_REST`].
const FIRST_REST: u16 = 8;
const MAX_REST: u16 = 64;
/// Paused epochs of a trial after a rest, before its control epoch.
const TRIAL: u16 = 2;
/// `tune.accept-coalesce` default: at most 200 µs.
pub const DEFAULT_MAX: Duration = Duration::from_micros(200);

/// `tune.accept-coalesce`, in nanoseconds (0: off).
static MAX_NS: AtomicU64 = AtomicU64::new(DEFAULT_MAX.as_nanos() as u64);

/// Sets the longest pause (`Duration::ZERO` turns coalescing off).
pub fn set_max(max: Duration) {
    MAX_NS.store(
        u64::try_from(max.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

fn max() -> Duration {
    Duration::from_nanos(MAX_NS.load(Ordering::Relaxed))
}

thread_local! {
    static COALESCER: RefCell<Coalescer> = RefCell::new(Coalescer::default());
}

/// Counts a connection accepted on this thread.
pub(crate) fn accepted() {
    let _ = COALESCER.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.accepted();
        }
    });
}

/// Tokio's `on_thread_park` hook for L7 workers: pauses in this thread's
/// ring first when the [`Coalescer`] says so. Does nothing on a thread
/// without a ring.
pub(crate) fn before_park() {
    if !super::driver::active() {
        return;
    }
    let pause = COALESCER
        .try_with(|c| {
            c.try_borrow_mut()
                .map_or(Duration::ZERO, |mut c| c.pause(Instant::now(), max()))
        })
        .unwrap_or(Duration::ZERO);
    if !pause.is_zero() {
        super::driver::wait_for_completion(pause);
    }
}

/// What an epoch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Pause before sleeping; `left` epochs until the control epoch.
    Paused { left: u16 },
    /// No pause, to compare with the paused epochs before it.
    Control,
    /// No pause for `left` more epochs at [`MIN_RATE`] or above.
    Resting { left: u16 },
}

/// The pause controller of one worker.
#[derive(Debug)]
struct Coalescer {
    phase: Phase,
    epoch_start: Option<Instant>,
    /// Connections accepted in this epoch.
    accepts: u32,
    /// Accepted connections per second: the last epoch, and the mean of
    /// the last two paused ones.
    rate: f64,
    paused_rate: f64,
    last_paused: f64,
    /// Rest after the next time pausing hurts.
    rest: u16,
}

impl Default for Coalescer {
    fn default() -> Coalescer {
        Coalescer {
            phase: Phase::Resting { left: 1 },
            epoch_start: None,
            accepts: 0,
            rate: 0.0,
            paused_rate: 0.0,
            last_paused: 0.0,
            rest: FIRST_REST,
        }
    }
}

impl Coalescer {
    fn accepted(&mut self) {
        self.accepts = self.accepts.saturating_add(1);
    }

    /// How long to pause before sleeping now (ends an epoch when due).
    fn pause(&mut self, now: Instant, max: Duration) -> Duration {
        if max.is_zero() {
            *self = Coalescer::default();
            return Duration::ZERO;
        }
        let start = *self.epoch_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= EPOCH {
            let rate = f64::from(self.accepts) / elapsed.as_secs_f64();
            self.end_epoch(rate);
            self.accepts = 0;
            self.epoch_start = Some(now);
        }
        match self.phase {
            Phase::Paused { .. } => {
                Duration::from_secs_f64(TARGET_BATCH / self.rate.max(MIN_RATE)).min(max)
            }
            Phase::Control | Phase::Resting { .. } => Duration::ZERO,
        }
    }

    /// Is the next epoch a paused one?
    #[cfg(test)]
    fn pausing(&self) -> bool {
        matches!(self.phase, Phase::Paused { .. })
    }

    /// Picks the next epoch's phase, given this one's rate.
    fn end_epoch(&mut self, rate: f64) {
        self.rate = rate;
        self.phase = match self.phase {
            Phase::Paused { left } => {
                self.paused_rate = if self.last_paused == 0.0 {
                    rate
                } else {
                    (self.last_paused + rate) / 2.0
                };
                self.last_paused = rate;
                if rate < MIN_RATE || left <= 1 {
                    Phase::Control
                } else {
                    Phase::Paused { left: left - 1 }
                }
            }
            Phase::Control if rate < MIN_RATE => Phase::Resting { left: 1 },
            Phase::Control if rate > self.paused_rate * (1.0 + HURT) => {
                let left = self.rest;
                ::log::debug!(
                    "accept coalescing: {rate:.0} connections/s without a pause, \
                     {:.0} with one; not pausing for {} ms",
                    self.paused_rate,
                    u128::from(left) * EPOCH.as_millis()
                );
                self.rest = (self.rest * 2).min(MAX_REST);
                Phase::Resting { left }
            }
            Phase::Control => {
                self.rest = FIRST_REST;
                self.last_paused = 0.0;
                Phase::Paused {
                    left: CONTROL_EVERY,
                }
            }
            Phase::Resting { left } if rate < MIN_RATE => Phase::Resting { left },
            Phase::Resting { left } if left > 1 => Phase::Resting { left: left - 1 },
            Phase::Resting { .. } => {
                self.last_paused = 0.0;
                Phase::Paused { left: TRIAL }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(200);

    /// Runs one epoch at `rate(pausing)` connections per second; returns
    /// whether that epoch paused.
    fn epoch(c: &mut Coalescer, now: &mut Instant, rate: impl Fn(bool) -> f64) -> bool {
        let pause = c.pause(*now, MAX);
        let n = (rate(!pause.is_zero()) * EPOCH.as_secs_f64()).round() as u32;
        for _ in 0..n {
            c.accepted();
        }
        *now += EPOCH;
        !pause.is_zero()
    }

    fn run(
        c: &mut Coalescer,
        now: &mut Instant,
        epochs: usize,
        rate: impl Fn(bool) -> f64,
    ) -> usize {
        (0..epochs).filter(|_| epoch(c, now, &rate)).count()
    }

    /// A client that shares the worker's CPUs and pays for waking it.
    fn helped(paused: bool) -> f64 {
        if paused {
            19_500.0
        } else {
            17_500.0
        }
    }

    /// A client that waits for each connection before opening the next.
    fn hurt(paused: bool) -> f64 {
        if paused {
            3_500.0
        } else {
            6_400.0
        }
    }

    #[test]
    fn it_never_pauses_below_the_minimum_rate() {
        let mut c = Coalescer::default();
        let mut now = Instant::now();
        assert_eq!(run(&mut c, &mut now, 200, |_| MIN_RATE / 2.0), 0);
    }

    #[test]
    fn it_never_pauses_when_turned_off() {
        let mut c = Coalescer::default();
        let mut now = Instant::now();
        run(&mut c, &mut now, 50, helped);
        assert!(c.pausing());
        assert_eq!(c.pause(now, Duration::ZERO), Duration::ZERO);
        assert!(!c.pausing());
    }

    #[test]
    fn a_pause_that_does_not_slow_clients_down_is_kept() {
        let mut c = Coalescer::default();
        let mut now = Instant::now();
        run(&mut c, &mut now, 10, helped);
        let paused = run(&mut c, &mut now, 180, helped);
        // All but the control epochs.
        assert_eq!(paused, 180 - 180 / (usize::from(CONTROL_EVERY) + 1));
        // The same with a pause that neither helps nor hurts.
        let paused = run(&mut c, &mut now, 180, |_| 10_000.0);
        assert_eq!(paused, 180 - 180 / (usize::from(CONTROL_EVERY) + 1));
    }

    #[test]
    fn a_pause_that_slows_clients_down_is_dropped_and_tried_less_and_less() {
        let mut c = Coalescer::default();
        let mut now = Instant::now();
        let first = run(&mut c, &mut now, 200, hurt);
        let later = run(&mut c, &mut now, 200, hurt);
        // Two paused epochs per trial; rests of 8, 16, 32, then 64.
        assert!(first <= 12, "paused {first} of 200 epochs");
        assert!(later <= 8, "paused {later} of 200 epochs");
    }

    #[test]
    fn when_pausing_starts_to_hurt_it_stops_within_two_control_periods() {
        let mut c = Coalescer::default();
        let mut now = Instant::now();
        run(&mut c, &mut now, 100, helped);
        assert!(c.pausing());
        let paused = run(&mut c, &mut now, 20, hurt);
        assert!(paused <= 2 * usize::from(CONTROL_EVERY), "{paused}");
        assert!(!c.pausing());
    }

    #[test]
    fn the_pause_gathers_a_few_connections_at_the_current_rate_within_the_maximum() {
        let mut c = Coalescer::default();
        let mut now = Instant::now();
        run(&mut c, &mut now, 20, |_| 40_000.0);
        assert!(c.pausing());
        assert_eq!(c.pause(now, MAX), Duration::from_micros(100));
        let mut c = Coalescer::default();
        run(&mut c, &mut now, 20, |_| 5_000.0);
        assert_eq!(c.pause(now, MAX), MAX);
    }
}
