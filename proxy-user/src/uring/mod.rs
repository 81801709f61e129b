//! io_uring for the L7 proxy's plain TCP connections (client and server
//! sides), on by default where the kernel allows it; `global noiouring`
//! turns it off (HAProxy's `noepoll`, `nosplice` style).
//!
//! `driver` owns each worker thread's ring; [`UringStream`] is the
//! connection type the sessions read and write; `coalesce` decides
//! whether a worker pauses in its ring before it sleeps, to accept new
//! connections in batches.

pub(crate) mod coalesce;
mod driver;
mod listener;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use coalesce::before_park;
pub use listener::UringListener;
pub use stream::UringStream;

use std::sync::atomic::{AtomicBool, Ordering};

/// `global noiouring` clears it (set once at start-up, before any listener).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns io_uring on or off for connections accepted or opened from now on.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Should a connection made on this thread use io_uring? Only on a
/// current-thread runtime (an L7 worker, or `threads 1`): the ring belongs
/// to the thread, so its connections must never move to another one.
pub fn here() -> bool {
    ENABLED.load(Ordering::Relaxed)
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
        && start_on_this_thread()
}

/// Sets up io_uring on the calling worker thread (once; later calls are
/// free). False, with one warning per thread, when the kernel refuses it:
/// the caller then uses epoll.
pub fn start_on_this_thread() -> bool {
    thread_local! {
        static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if driver::active() {
        return true;
    }
    if REFUSED.with(std::cell::Cell::get) {
        return false;
    }
    match driver::start() {
        Ok(()) => true,
        Err(e) => {
            ::log::warn!(
                "io_uring unavailable ({e}); L7 connections on this thread use epoll \
                 (`global noiouring` silences this)"
            );
            REFUSED.with(|r| r.set(true));
            false
        }
    }
}
