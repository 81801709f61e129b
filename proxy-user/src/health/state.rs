//! Per-server health state machine: `rise`/`fall` thresholds for active
//! checks and `error-limit` for passive observations.
//!
//! ```text
//!            fall consecutive failed checks
//!            or error-limit consecutive live-traffic errors
//!      ┌────┐ ─────────────────────────────────────────► ┌──────┐
//!      │ UP │                                            │ DOWN │
//!      └────┘ ◄───────────────────────────────────────── └──────┘
//!            rise consecutive successful checks
//! ```
//!
//! Only a full streak flips the state; one result of the other kind resets
//! the streak. A server starts UP (HAProxy's default) unless configured
//! otherwise. Passive errors never bring a server back up: only active
//! checks do, since a DOWN server gets no live traffic to observe.

use super::{CheckError, CheckOutcome, CheckPass};

/// A server's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Eligible for traffic.
    Up,
    /// Not eligible.
    Down,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Up => "UP",
            Health::Down => "DOWN",
        })
    }
}

/// Thresholds (server keywords `rise`, `fall`, `error-limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successful checks to go UP (HAProxy default 2).
    pub rise: u32,
    /// Consecutive failed checks to go DOWN (HAProxy default 3).
    pub fall: u32,
    /// Consecutive live-traffic errors to go DOWN (HAProxy default 10);
    /// 0 disables passive health.
    pub error_limit: u32,
    /// State before the first check.
    pub initial: Health,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rise: 2,
            fall: 3,
            error_limit: 10,
            initial: Health::Up,
        }
    }
}

/// Why a server changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The active check that completed the streak.
    Check(CheckOutcome),
    /// `error-limit` consecutive errors on live traffic; the last one's text.
    Passive { errors: u32, last: String },
}

impl Cause {
    /// HAProxy-style `reason: …[, code: N][, info: "…"]` text.
    pub fn describe(&self) -> String {
        match self {
            Cause::Check(Ok(pass)) => match pass {
                CheckPass::Layer4 | CheckPass::Layer6 => format!("reason: {}", pass.reason()),
                CheckPass::Layer7 { status, reason } => {
                    format!(
                        "reason: {}, code: {status}, info: \"{reason}\"",
                        pass.reason()
                    )
                }
            },
            Cause::Check(Err(e)) => describe_error(e),
            Cause::Passive { errors, last } => {
                format!(
                    "reason: Health analyze, info: \"{errors} consecutive errors, last: {last}\""
                )
            }
        }
    }
}

fn describe_error(e: &CheckError) -> String {
    let mut s = format!("reason: {}", e.reason());
    if let Some(code) = e.code() {
        s.push_str(&format!(", code: {code}"));
    }
    if let Some(info) = e.info() {
        s.push_str(&format!(", info: \"{info}\""));
    }
    s
}

/// A state flip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: Health,
    /// What completed the streak.
    pub cause: Cause,
}

/// One server's health state machine. Not thread-safe by itself; the
/// checker keeps it behind a mutex.
#[derive(Clone, Debug)]
pub struct ServerHealth {
    thresholds: Thresholds,
    state: Health,
    /// Consecutive successful checks (reset by a failure).
    ok_streak: u32,
    /// Consecutive failed checks (reset by a success).
    fail_streak: u32,
    /// Consecutive live-traffic errors (reset by a live success).
    passive_streak: u32,
}

impl ServerHealth {
    /// A server in `thresholds.initial` state. Thresholds of 0 act as 1.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds: Thresholds {
                rise: thresholds.rise.max(1),
                fall: thresholds.fall.max(1),
                ..thresholds
            },
            state: thresholds.initial,
            ok_streak: 0,
            fail_streak: 0,
            passive_streak: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> Health {
        self.state
    }

    /// HAProxy's stats wording: `UP`, `UP 1/3` (going down: one failure of
    /// three), `DOWN`, `DOWN 1/2` (going up).
    pub fn status(&self) -> String {
        match self.state {
            Health::Up if self.fail_streak > 0 => {
                format!("UP {}/{}", self.fail_streak, self.thresholds.fall)
            }
            Health::Down if self.ok_streak > 0 => {
                format!("DOWN {}/{}", self.ok_streak, self.thresholds.rise)
            }
            s => s.to_string(),
        }
    }

    /// True while a streak towards the other state is in progress (the
    /// checker uses `fastinter` then).
    pub fn transitioning(&self) -> bool {
        match self.state {
            Health::Up => self.fail_streak > 0,
            Health::Down => self.ok_streak > 0,
        }
    }

    /// Feed one active check result.
    pub fn record_check(&mut self, outcome: &CheckOutcome) -> Option<Transition> {
        if outcome.is_ok() {
            self.fail_streak = 0;
            self.ok_streak = self.ok_streak.saturating_add(1);
            if self.state == Health::Down && self.ok_streak >= self.thresholds.rise {
                return Some(self.flip(Health::Up, Cause::Check(outcome.clone())));
            }
        } else {
            self.ok_streak = 0;
            self.fail_streak = self.fail_streak.saturating_add(1);
            if self.state == Health::Up && self.fail_streak >= self.thresholds.fall {
                return Some(self.flip(Health::Down, Cause::Check(outcome.clone())));
            }
        }
        None
    }

    /// Feed one error seen on live traffic (connect failure, reset, timeout
    /// to this server). Ignored when passive health is off or the server is
    /// already DOWN.
    pub fn record_passive_error(&mut self, info: &str) -> Option<Transition> {
        if self.thresholds.error_limit == 0 || self.state == Health::Down {
            return None;
        }
        self.passive_streak = self.passive_streak.saturating_add(1);
        if self.passive_streak >= self.thresholds.error_limit {
            let errors = self.passive_streak;
            return Some(self.flip(
                Health::Down,
                Cause::Passive {
                    errors,
                    last: info.to_owned(),
                },
            ));
        }
        None
    }

    /// Feed one successful live exchange: ends a passive error streak.
    pub fn record_passive_success(&mut self) {
        self.passive_streak = 0;
    }

    fn flip(&mut self, to: Health, cause: Cause) -> Transition {
        self.state = to;
        // Every streak starts over in the new state.
        self.ok_streak = 0;
        self.fail_streak = 0;
        self.passive_streak = 0;
        Transition { to, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> CheckOutcome {
        Ok(CheckPass::Layer4)
    }

    fn fail() -> CheckOutcome {
        Err(CheckError::L4Connection("Connection refused".into()))
    }

    fn th(rise: u32, fall: u32, error_limit: u32) -> Thresholds {
        Thresholds {
            rise,
            fall,
            error_limit,
            initial: Health::Up,
        }
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = ServerHealth::new(th(2, 3, 0));
        assert_eq!(h.record_check(&fail()), None);
        assert_eq!(h.status(), "UP 1/3");
        assert_eq!(h.record_check(&fail()), None);
        // A success resets the streak: three more failures needed.
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.status(), "UP");
        assert_eq!(h.record_check(&fail()), None);
        assert_eq!(h.record_check(&fail()), None);
        let t = h.record_check(&fail()).unwrap();
        assert_eq!(t.to, Health::Down);
        assert_eq!(t.cause, Cause::Check(fail()));
        assert_eq!(h.state(), Health::Down);
        // Further failures don't re-emit.
        assert_eq!(h.record_check(&fail()), None);
    }

    #[test]
    fn rise_needs_consecutive_successes() {
        let mut h = ServerHealth::new(Thresholds {
            initial: Health::Down,
            ..th(3, 1, 0)
        });
        assert_eq!(h.state(), Health::Down);
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.status(), "DOWN 2/3");
        assert!(h.transitioning());
        assert_eq!(h.record_check(&fail()), None);
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.record_check(&ok()).map(|t| t.to), Some(Health::Up));
        // fall = 1: the next failure is enough.
        assert_eq!(h.record_check(&fail()).map(|t| t.to), Some(Health::Down));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut h = ServerHealth::new(th(0, 0, 0));
        assert!(h.record_check(&fail()).is_some());
        assert!(h.record_check(&ok()).is_some());
    }

    #[test]
    fn passive_errors_mark_down_at_error_limit() {
        let mut h = ServerHealth::new(th(2, 3, 3));
        assert_eq!(h.record_passive_error("connection reset"), None);
        assert_eq!(h.record_passive_error("connection reset"), None);
        // A good exchange resets the passive streak.
        h.record_passive_success();
        assert_eq!(h.record_passive_error("a"), None);
        assert_eq!(h.record_passive_error("b"), None);
        let t = h.record_passive_error("connect timeout").unwrap();
        assert_eq!(t.to, Health::Down);
        assert_eq!(
            t.cause,
            Cause::Passive {
                errors: 3,
                last: "connect timeout".into()
            }
        );
        // DOWN: passive errors are ignored, active checks bring it back.
        assert_eq!(h.record_passive_error("x"), None);
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.record_check(&ok()).map(|t| t.to), Some(Health::Up));
    }

    #[test]
    fn passive_disabled_with_zero_limit() {
        let mut h = ServerHealth::new(th(2, 3, 0));
        for _ in 0..100 {
            assert_eq!(h.record_passive_error("e"), None);
        }
        assert_eq!(h.state(), Health::Up);
    }

    #[test]
    fn passive_and_active_streaks_are_independent() {
        // Two failed checks + two passive errors: neither threshold reached.
        let mut h = ServerHealth::new(th(2, 3, 3));
        h.record_check(&fail());
        h.record_passive_error("e");
        h.record_check(&fail());
        h.record_passive_error("e");
        assert_eq!(h.state(), Health::Up);
        assert_eq!(h.record_check(&fail()).map(|t| t.to), Some(Health::Down));
    }

    #[test]
    fn cause_descriptions() {
        assert_eq!(
            Cause::Check(fail()).describe(),
            "reason: Layer4 connection problem, info: \"Connection refused\""
        );
        assert_eq!(
            Cause::Check(Err(CheckError::L7WrongStatus {
                status: 500,
                reason_phrase: "Internal Server Error".into()
            }))
            .describe(),
            "reason: Layer7 wrong status, code: 500, info: \"Internal Server Error\""
        );
        assert_eq!(
            Cause::Check(Ok(CheckPass::Layer7 {
                status: 200,
                reason: "OK".into()
            }))
            .describe(),
            "reason: Layer7 check passed, code: 200, info: \"OK\""
        );
        assert_eq!(
            Cause::Check(Err(CheckError::L4Timeout)).describe(),
            "reason: Layer4 timeout"
        );
        assert_eq!(
            Cause::Passive {
                errors: 10,
                last: "reset".into()
            }
            .describe(),
            "reason: Health analyze, info: \"10 consecutive errors, last: reset\""
        );
    }
}
