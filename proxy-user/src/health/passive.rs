//! Passive health ("health analyze"), HAProxy's `observe`, `error-limit`
//! and `on-error` server keywords: what live traffic to a server says about
//! it.
//!
//! The proxy reports each step of an exchange as an [`Observation`]. The
//! server's `observe` mode decides whether it counts as an error, a success
//! or nothing ([`Observation::verdict`], HAProxy's table):
//!
//! | observation | `layer4` | `layer7` |
//! |---|---|---|
//! | connection established | success | - |
//! | connection failed (refused, timeout, TLS handshake) | error | error |
//! | response status 100-499, 501, 505 | - | success |
//! | any other status (500, 502-504, 506+) | - | error |
//! | invalid response, read error, read timeout, write error | - | error |
//!
//! `error-limit` consecutive errors (a success resets the count) fire the
//! `on-error` action ([`OnError`]) on the server's
//! [`ServerHealth`](super::state::ServerHealth), and the count starts over.

/// `observe layer4|layer7`: which traffic events count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observe {
    /// Connection establishment only.
    Layer4,
    /// Connection failures and HTTP responses (status, validity, timeouts).
    Layer7,
}

/// `on-error`: what `error-limit` consecutive errors do. Every action also
/// brings the next check forward to `fastinter` (if set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// `fastinter`: only that.
    FastInter,
    /// `fail-check` (HAProxy's default): count as one failed check.
    #[default]
    FailCheck,
    /// `sudden-death`: leave the server one failed check away from DOWN.
    SuddenDeath,
    /// `mark-down`: mark the server DOWN at once.
    MarkDown,
}

/// Default `error-limit` (HAProxy's).
pub const DEFAULT_ERROR_LIMIT: u32 = 10;

/// Passive health settings of one server (`observe` given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passive {
    /// `observe`.
    pub observe: Observe,
    /// `error-limit`: consecutive errors that fire `on_error` (>= 1).
    pub error_limit: u32,
    /// `on-error`.
    pub on_error: OnError,
}

/// One event of live traffic to a server (HAProxy's `HANA_STATUS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A connection to the server was established (or reused).
    ConnectOk,
    /// A connection failed: refused, reset, `timeout connect`, TLS handshake.
    ConnectFailed,
    /// A response with a status HAProxy deems correct (100-499, 501, 505).
    HttpOk,
    /// A response with another status (500, 502-504, 506+).
    HttpStatus,
    /// The response head or body could not be parsed.
    InvalidResponse,
    /// Reading the response failed (reset, closed early).
    ReadError,
    /// No response within `timeout server`.
    ReadTimeout,
    /// Sending the request failed.
    WriteError,
}

/// What an observation means under an `observe` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ends an error streak.
    Success,
    /// Counts towards `error-limit`.
    Error,
}

impl Observation {
    /// The observation for a response status.
    pub fn of_status(status: u16) -> Observation {
        match status {
            100..=499 | 501 | 505 => Observation::HttpOk,
            _ => Observation::HttpStatus,
        }
    }

    /// Error, success or nothing (`None`) under `observe`.
    pub fn verdict(self, observe: Observe) -> Option<Verdict> {
        use Observation::*;
        match (self, observe) {
            (ConnectFailed, _) => Some(Verdict::Error),
            (ConnectOk, Observe::Layer4) => Some(Verdict::Success),
            (ConnectOk, Observe::Layer7) => None,
            (HttpOk, Observe::Layer7) => Some(Verdict::Success),
            (
                HttpStatus | InvalidResponse | ReadError | ReadTimeout | WriteError,
                Observe::Layer7,
            ) => Some(Verdict::Error),
            (_, Observe::Layer4) => None,
        }
    }

    /// HAProxy's wording, for `last one was: …` in the log line.
    pub fn describe(self) -> &'static str {
        match self {
            Observation::ConnectOk => "L4 successful connection",
            Observation::ConnectFailed => "L4 unsuccessful connection",
            Observation::HttpOk => "Correct http response",
            Observation::HttpStatus => "Wrong http response",
            Observation::InvalidResponse => "Invalid http response",
            Observation::ReadError => "Read error (http)",
            Observation::ReadTimeout => "Read timeout (http)",
            Observation::WriteError => "Write error (http)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_haproxy() {
        for ok in [100, 200, 302, 404, 499, 501, 505] {
            assert_eq!(Observation::of_status(ok), Observation::HttpOk, "{ok}");
        }
        for bad in [500, 502, 503, 504, 506, 599] {
            assert_eq!(
                Observation::of_status(bad),
                Observation::HttpStatus,
                "{bad}"
            );
        }
    }

    #[test]
    fn layer4_sees_connections_only() {
        use Observation::*;
        let l4 = |o: Observation| o.verdict(Observe::Layer4);
        assert_eq!(l4(ConnectOk), Some(Verdict::Success));
        assert_eq!(l4(ConnectFailed), Some(Verdict::Error));
        for o in [HttpOk, HttpStatus, InvalidResponse, ReadError, ReadTimeout] {
            assert_eq!(l4(o), None, "{o:?}");
        }
    }

    #[test]
    fn layer7_sees_connect_failures_and_responses() {
        use Observation::*;
        let l7 = |o: Observation| o.verdict(Observe::Layer7);
        assert_eq!(l7(ConnectOk), None);
        assert_eq!(l7(HttpOk), Some(Verdict::Success));
        for o in [
            ConnectFailed,
            HttpStatus,
            InvalidResponse,
            ReadError,
            ReadTimeout,
            WriteError,
        ] {
            assert_eq!(l7(o), Some(Verdict::Error), "{o:?}");
        }
    }
}
