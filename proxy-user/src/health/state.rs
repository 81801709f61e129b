//! Per-server health state machine: `rise`/`fall` thresholds for active
//! checks, and the `on-error` actions of passive health (`observe`,
//! `error-limit`; see [`super::passive`]).
//!
//! ```text
//!            fall consecutive failed checks
//!            (or passive on-error: fail-check / sudden-death / mark-down)
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
//!
//! The `on-error` actions, as HAProxy applies them to its check "health"
//! (here: the failed-check streak of an UP server):
//! `fail-check` is one more failed check; `sudden-death` leaves the server
//! one failed check away from DOWN; `mark-down` marks it DOWN at once;
//! `fastinter` changes nothing here. On a DOWN server every action but
//! `fastinter` acts as a failed check: the `rise` streak starts over.

use super::passive::{Observation, OnError, Passive};
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

/// Thresholds (server keywords `rise`, `fall`, and passive health).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successful checks to go UP (HAProxy default 2).
    pub rise: u32,
    /// Consecutive failed checks to go DOWN (HAProxy default 3).
    pub fall: u32,
    /// State before the first check.
    pub initial: Health,
    /// `observe` / `error-limit` / `on-error`; `None`: no passive health.
    pub passive: Option<Passive>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rise: 2,
            fall: 3,
            initial: Health::Up,
            passive: None,
        }
    }
}

/// Why a server changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The active check that completed the streak.
    Check(CheckOutcome),
    /// `error-limit` consecutive errors on live traffic fired `on-error`;
    /// the last error.
    Passive {
        /// How many (the `error-limit`).
        errors: u32,
        /// The last one.
        last: Observation,
    },
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
            Cause::Passive { errors, last } => format!(
                "reason: Health analyze, info: \"Detected {errors} consecutive errors, last one \
                 was: {}\"",
                last.describe()
            ),
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
    /// Consecutive live-traffic errors (reset by a live success and when
    /// `on-error` fires).
    passive_errors: u32,
}

/// `error-limit` was reached: the `on-error` action ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Triggered {
    /// The action that ran.
    pub action: OnError,
    /// The state change it caused, if any.
    pub transition: Option<Transition>,
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
            passive_errors: 0,
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

    /// Feed one error seen on live traffic (an observation whose verdict
    /// under the server's `observe` mode is an error). At `error-limit`
    /// consecutive ones the `on-error` action runs and the count starts
    /// over. Ignored without passive health.
    pub fn record_passive_error(&mut self, last: Observation) -> Option<Triggered> {
        let passive = self.thresholds.passive?;
        self.passive_errors = self.passive_errors.saturating_add(1);
        if self.passive_errors < passive.error_limit.max(1) {
            return None;
        }
        let cause = Cause::Passive {
            errors: self.passive_errors,
            last,
        };
        self.passive_errors = 0;
        let transition = match (passive.on_error, self.state) {
            (OnError::FastInter, _) => None,
            (_, Health::Down) => {
                // A failed check while DOWN: rising starts over.
                self.ok_streak = 0;
                None
            }
            (OnError::MarkDown, Health::Up) => Some(self.flip(Health::Down, cause)),
            (OnError::FailCheck | OnError::SuddenDeath, Health::Up) => {
                let fall = self.thresholds.fall;
                if passive.on_error == OnError::SuddenDeath && self.fail_streak + 1 < fall {
                    // Two failures short of DOWN, so that after this one
                    // the next failed check is fatal.
                    self.fail_streak = fall - 2;
                }
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.saturating_add(1);
                (self.fail_streak >= self.thresholds.fall).then(|| self.flip(Health::Down, cause))
            }
        };
        Some(Triggered {
            action: passive.on_error,
            transition,
        })
    }

    /// Feed one successful live exchange: ends a passive error streak.
    pub fn record_passive_success(&mut self) {
        self.passive_errors = 0;
    }

    fn flip(&mut self, to: Health, cause: Cause) -> Transition {
        self.state = to;
        // Both check streaks start over in the new state (the passive
        // count is HAProxy's separate counter: only traffic resets it).
        self.ok_streak = 0;
        self.fail_streak = 0;
        Transition { to, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::super::passive::Observe;
    use super::*;

    fn ok() -> CheckOutcome {
        Ok(CheckPass::Layer4)
    }

    fn fail() -> CheckOutcome {
        Err(CheckError::L4Connection("Connection refused".into()))
    }

    fn th(rise: u32, fall: u32) -> Thresholds {
        Thresholds {
            rise,
            fall,
            initial: Health::Up,
            passive: None,
        }
    }

    /// `observe layer4 error-limit N on-error ACTION`.
    fn passive(rise: u32, fall: u32, error_limit: u32, on_error: OnError) -> ServerHealth {
        ServerHealth::new(Thresholds {
            passive: Some(Passive {
                observe: Observe::Layer4,
                error_limit,
                on_error,
            }),
            ..th(rise, fall)
        })
    }

    const E: Observation = Observation::ConnectFailed;

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = ServerHealth::new(th(2, 3));
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
            ..th(3, 1)
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
        let mut h = ServerHealth::new(th(0, 0));
        assert!(h.record_check(&fail()).is_some());
        assert!(h.record_check(&ok()).is_some());
    }

    #[test]
    fn mark_down_at_error_limit_and_a_success_resets_the_count() {
        let mut h = passive(2, 3, 3, OnError::MarkDown);
        assert_eq!(h.record_passive_error(E), None);
        assert_eq!(h.record_passive_error(E), None);
        // A good exchange resets the count.
        h.record_passive_success();
        assert_eq!(h.record_passive_error(E), None);
        assert_eq!(h.record_passive_error(E), None);
        let t = h.record_passive_error(Observation::ReadTimeout).unwrap();
        assert_eq!(t.action, OnError::MarkDown);
        let t = t.transition.unwrap();
        assert_eq!(t.to, Health::Down);
        assert_eq!(
            t.cause,
            Cause::Passive {
                errors: 3,
                last: Observation::ReadTimeout
            }
        );
        // Only active checks bring it back (rise 2).
        assert_eq!(h.record_check(&ok()), None);
        assert_eq!(h.record_check(&ok()).map(|t| t.to), Some(Health::Up));
    }

    #[test]
    fn fail_check_counts_as_one_failed_check() {
        let mut h = passive(2, 3, 2, OnError::FailCheck);
        let fire = |h: &mut ServerHealth| {
            assert_eq!(h.record_passive_error(E), None);
            h.record_passive_error(E).expect("error-limit reached")
        };
        assert_eq!(fire(&mut h).transition, None);
        assert_eq!(h.status(), "UP 1/3");
        // Mixed with a real failed check: the third failure is fatal.
        assert_eq!(h.record_check(&fail()), None);
        assert_eq!(h.status(), "UP 2/3");
        let t = fire(&mut h).transition.unwrap();
        assert_eq!(t.to, Health::Down);
        assert!(matches!(t.cause, Cause::Passive { errors: 2, .. }));
    }

    #[test]
    fn sudden_death_leaves_one_failed_check() {
        let mut h = passive(2, 5, 1, OnError::SuddenDeath);
        let t = h.record_passive_error(E).unwrap();
        assert_eq!(t.transition, None);
        assert_eq!(h.status(), "UP 4/5");
        assert_eq!(h.record_check(&fail()).map(|t| t.to), Some(Health::Down));
        // Already one away: the next sudden death is fatal itself.
        let mut h = passive(2, 5, 1, OnError::SuddenDeath);
        for _ in 0..4 {
            h.record_check(&fail());
        }
        let t = h.record_passive_error(E).unwrap().transition.unwrap();
        assert_eq!(t.to, Health::Down);
        // fall 1: no room left, DOWN at once.
        let mut h = passive(2, 1, 1, OnError::SuddenDeath);
        let t = h.record_passive_error(E).unwrap().transition.unwrap();
        assert_eq!(t.to, Health::Down);
    }

    #[test]
    fn fastinter_action_changes_no_state() {
        let mut h = passive(2, 1, 1, OnError::FastInter);
        for _ in 0..5 {
            let t = h.record_passive_error(E).unwrap();
            assert_eq!((t.action, t.transition), (OnError::FastInter, None));
        }
        assert_eq!(h.status(), "UP");
    }

    #[test]
    fn errors_on_a_down_server_restart_its_rise() {
        let mut h = passive(3, 1, 1, OnError::MarkDown);
        assert!(h.record_passive_error(E).unwrap().transition.is_some());
        h.record_check(&ok());
        h.record_check(&ok());
        assert_eq!(h.status(), "DOWN 2/3");
        assert_eq!(h.record_passive_error(E).unwrap().transition, None);
        assert_eq!(h.status(), "DOWN");
        h.record_check(&ok());
        h.record_check(&ok());
        assert_eq!(h.record_check(&ok()).map(|t| t.to), Some(Health::Up));
    }

    #[test]
    fn no_passive_health_without_observe() {
        let mut h = ServerHealth::new(th(2, 3));
        for _ in 0..100 {
            assert_eq!(h.record_passive_error(E), None);
        }
        assert_eq!(h.status(), "UP");
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
                last: Observation::ConnectFailed
            }
            .describe(),
            "reason: Health analyze, info: \"Detected 10 consecutive errors, last one was: L4 \
             unsuccessful connection\""
        );
    }
}
