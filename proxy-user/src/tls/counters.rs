//! Handshake counters, and failure logging rate-limited per cause.
//!
//! A TLS port on the internet sees scanners and broken clients all day; a log
//! line per failed handshake would drown everything else, so each failure
//! cause is logged at most once per [`LOG_INTERVAL`] with the running count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

/// Minimum time between two log lines for the same failure cause.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why a handshake failed, as counted in [`TlsCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// Handshake not finished within the timeout.
    Timeout,
    /// Plaintext or garbage instead of TLS.
    NotTls,
    /// `strict-sni` refusal.
    UnknownSni,
    /// No common version / cipher / group / signature scheme / ALPN.
    Incompatible,
    /// The peer sent a fatal alert.
    PeerAlert,
    /// The peer closed or reset the connection.
    Closed,
    /// A certificate was refused (origination side only).
    Certificate,
    /// Any other TLS or I/O error.
    Other,
}

impl FailureCause {
    const ALL: [FailureCause; 8] = [
        FailureCause::Timeout,
        FailureCause::NotTls,
        FailureCause::UnknownSni,
        FailureCause::Incompatible,
        FailureCause::PeerAlert,
        FailureCause::Closed,
        FailureCause::Certificate,
        FailureCause::Other,
    ];

    /// Stable lowercase name, for logs and stats output.
    pub fn name(self) -> &'static str {
        match self {
            FailureCause::Timeout => "timeout",
            FailureCause::NotTls => "not_tls",
            FailureCause::UnknownSni => "unknown_sni",
            FailureCause::Incompatible => "incompatible",
            FailureCause::PeerAlert => "peer_alert",
            FailureCause::Closed => "closed",
            FailureCause::Certificate => "certificate",
            FailureCause::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one acceptor or connector. All fields are plain atomics, read
/// with `load(Ordering::Relaxed)` by a stats endpoint.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Completed full handshakes.
    pub handshakes_full: AtomicU64,
    /// Completed resumed handshakes (ticket or session id).
    pub handshakes_resumed: AtomicU64,
    /// Failures, indexed like [`FailureCause`]; read with [`TlsCounters::failures`].
    failures: [AtomicU64; 8],
    /// Per cause: milliseconds since [`epoch`] of the last log line, plus one
    /// (0 = never logged).
    last_logged: [AtomicU64; 8],
    /// Certificate reloads that succeeded.
    pub reloads_ok: AtomicU64,
    /// Certificate reloads refused (old certificates kept).
    pub reloads_failed: AtomicU64,
}

/// Process-wide monotonic origin for the rate limiter's timestamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl TlsCounters {
    /// Failures counted so far for `cause`.
    pub fn failures(&self, cause: FailureCause) -> u64 {
        self.failures[cause.index()].load(Ordering::Relaxed)
    }

    /// All failure counters as `(cause, count)`.
    pub fn failure_snapshot(&self) -> Vec<(FailureCause, u64)> {
        FailureCause::ALL
            .iter()
            .map(|&c| (c, self.failures(c)))
            .collect()
    }

    /// Completed full handshakes.
    pub fn handshakes_full(&self) -> u64 {
        self.handshakes_full.load(Ordering::Relaxed)
    }

    /// Completed resumed handshakes (ticket or session id).
    pub fn handshakes_resumed(&self) -> u64 {
        self.handshakes_resumed.load(Ordering::Relaxed)
    }

    /// Total completed handshakes.
    pub fn handshakes(&self) -> u64 {
        self.handshakes_full.load(Ordering::Relaxed)
            + self.handshakes_resumed.load(Ordering::Relaxed)
    }

    pub(crate) fn success(&self, resumed: bool) {
        let counter = if resumed {
            &self.handshakes_resumed
        } else {
            &self.handshakes_full
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure and logs it unless this cause was logged less than
    /// [`LOG_INTERVAL`] ago. `side` is "client" or "server".
    pub(crate) fn failure(&self, cause: FailureCause, side: &str, detail: &dyn std::fmt::Display) {
        let total = self.failures[cause.index()].fetch_add(1, Ordering::Relaxed) + 1;
        if self.may_log(cause, Instant::now()) {
            log::warn!(
                "tls handshake with {side} failed ({}): {detail} [{total} such failures so far; logged at most once per {}s]",
                cause.name(),
                LOG_INTERVAL.as_secs()
            );
        }
    }

    /// Rate limiter: true at most once per [`LOG_INTERVAL`] per cause.
    fn may_log(&self, cause: FailureCause, now: Instant) -> bool {
        let slot = &self.last_logged[cause.index()];
        let now_ms = now.saturating_duration_since(epoch()).as_millis() as u64 + 1;
        let last = slot.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < LOG_INTERVAL.as_millis() as u64 {
            return false;
        }
        // Only the thread that wins the swap logs.
        slot.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_rate_limited_per_cause() {
        let c = TlsCounters::default();
        let t0 = Instant::now();
        assert!(c.may_log(FailureCause::NotTls, t0));
        assert!(!c.may_log(FailureCause::NotTls, t0 + Duration::from_secs(1)));
        // Another cause has its own budget.
        assert!(c.may_log(FailureCause::Timeout, t0 + Duration::from_secs(1)));
        assert!(c.may_log(
            FailureCause::NotTls,
            t0 + LOG_INTERVAL + Duration::from_secs(1)
        ));
    }

    #[test]
    fn failures_are_counted_per_cause() {
        let c = TlsCounters::default();
        c.failure(FailureCause::NotTls, "client", &"x");
        c.failure(FailureCause::NotTls, "client", &"x");
        c.failure(FailureCause::Timeout, "client", &"y");
        assert_eq!(c.failures(FailureCause::NotTls), 2);
        assert_eq!(c.failures(FailureCause::Timeout), 1);
        assert_eq!(c.failures(FailureCause::Closed), 0);
        c.success(true);
        c.success(false);
        assert_eq!(c.handshakes(), 2);
    }
}
