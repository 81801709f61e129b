//! [`WaitTimer`]: one timer for a connection's successive waits.
//!
//! A keep-alive connection waits twice per request: for the request (up to
//! `timeout http-keep-alive` or `http-request`) and for the server's
//! response (`timeout server`). With a fresh `tokio::time::timeout` each
//! wait, every request inserted two entries into the runtime's timer wheel
//! and removed them again. Tokio moves a pending timer's deadline later
//! without touching the wheel (the entry fires at its old slot and is
//! re-filed, once per old deadline), so one timer reset for each wait costs
//! the wheel nothing as long as the deadlines only grow, which they do when
//! those timeouts are equal. A shorter wait re-files the entry once.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The wait outlived its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// A timer reused by a connection's waits (see the module comment). Made on
/// the first wait that has to sleep; an entry in the timer wheel until the
/// connection ends.
#[derive(Debug, Default)]
pub struct WaitTimer(Option<Pin<Box<Sleep>>>);

impl WaitTimer {
    /// `io`, or [`TimedOut`] once `limit` has passed (no limit: as is).
    /// A wait that is over on its first poll reads no clock and touches
    /// no timer.
    pub async fn within<F: Future>(
        &mut self,
        limit: Option<Duration>,
        io: F,
    ) -> Result<F::Output, TimedOut> {
        self.bounded(io, || limit.map(|limit| Instant::now() + limit))
            .await
    }

    /// `io`, or [`TimedOut`] once `deadline` has passed (none: as is).
    pub async fn within_at<F: Future>(
        &mut self,
        deadline: Option<Instant>,
        io: F,
    ) -> Result<F::Output, TimedOut> {
        self.bounded(io, || deadline).await
    }

    /// Polls `io` once, then (if it has to wait) sets the timer to
    /// `deadline()` and waits for whichever comes first.
    async fn bounded<F: Future>(
        &mut self,
        io: F,
        deadline: impl FnOnce() -> Option<Instant>,
    ) -> Result<F::Output, TimedOut> {
        let mut io = std::pin::pin!(io);
        let first = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await;
        if let Poll::Ready(done) = first {
            return Ok(done);
        }
        let Some(deadline) = deadline() else {
            return Ok(io.await);
        };
        let timer = match &mut self.0 {
            Some(timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => self.0.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = io.as_mut().poll(cx) {
                return Poll::Ready(Ok(done));
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Waits `limit` for a sleep of `wait`: what came out, and how long it took.
    async fn wait_for(
        timer: &mut WaitTimer,
        limit: Option<Duration>,
        wait: Duration,
    ) -> (Result<(), TimedOut>, Duration) {
        let started = Instant::now();
        let done = timer.within(limit, tokio::time::sleep(wait)).await;
        (done, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_has_its_own_deadline() {
        let mut timer = WaitTimer::default();
        // Over at once: no timer is made.
        assert_eq!(timer.within(Some(secs(1)), async { 7 }).await, Ok(7));
        assert!(timer.0.is_none());
        // A wait longer than its limit times out at the limit; reused with
        // a later limit, then an earlier one, each wait is held to its own.
        for limit in [2, 5, 1] {
            let got = wait_for(&mut timer, Some(secs(limit)), secs(10)).await;
            assert_eq!(got, (Err(TimedOut), secs(limit)), "limit {limit} s");
        }
        let started = Instant::now();
        let slow = tokio::time::sleep(secs(10));
        assert_eq!(
            timer.within_at(Some(started + secs(3)), slow).await,
            Err(TimedOut)
        );
        assert_eq!(started.elapsed(), secs(3));
        // A wait that ends before its deadline is not cut short, and the
        // timer left behind does not fire into the next wait.
        assert_eq!(
            wait_for(&mut timer, Some(secs(3)), secs(1)).await,
            (Ok(()), secs(1))
        );
        assert_eq!(
            wait_for(&mut timer, Some(secs(30)), secs(4)).await,
            (Ok(()), secs(4))
        );
        // No limit: as is.
        assert_eq!(
            wait_for(&mut timer, None, secs(100)).await,
            (Ok(()), secs(100))
        );
    }
}
