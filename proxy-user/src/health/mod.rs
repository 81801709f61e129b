//! Health checking of backend servers, HAProxy style.
//!
//! * [`HealthCheck`]: one probe of one server address, `Ok(`[`CheckPass`]`)`
//!   or `Err(`[`CheckError`]`)` — [`tcp::TcpCheck`] (connect only) and
//!   [`http::HttpCheck`] (`option httpchk` + `http-check expect status`),
//!   [`tls::TlsCheck`] (either of them over TLS, for `ssl` servers: the
//!   handshake itself is checked, with the server's verify/ca-file/sni), or
//!   [`AnyCheck`] to pick one from config at runtime.
//! * [`state::ServerHealth`]: the rise/fall state machine of one server. It
//!   also applies passive health's `on-error` actions.
//! * [`passive`]: HAProxy's `observe layer4|layer7` / `error-limit` /
//!   `on-error`: which events of live traffic count as errors.
//! * [`checker::HealthChecker`]: runs the checks every `inter` for every
//!   server of a backend, owns the state machines, and reports every check
//!   and every UP/DOWN change as a [`checker::HealthEvent`] on a channel.
//!
//! How the proxy wires it up: spawn one `HealthChecker` per backend with an
//! `mpsc` sender; a task reading the receiver logs each
//! [`checker::StateChange`] (its `Display` is HAProxy's log line), rebuilds
//! the backend's balancer or Maglev table from
//! [`checker::HealthHandle::up_servers`], and bumps stats counters from
//! `Checked` events. Request handlers feed [`passive::Observation`]s through
//! a cloned [`checker::HealthHandle`].

pub mod checker;
pub mod http;
pub mod passive;
pub mod state;
pub mod tcp;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;

use thiserror::Error;

/// A successful check, with what HAProxy prints about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckPass {
    /// The TCP connection was accepted.
    Layer4,
    /// The TLS handshake completed (`check` on an `ssl` server).
    Layer6,
    /// The HTTP response had an expected status.
    Layer7 { status: u16, reason: String },
}

impl CheckPass {
    /// HAProxy's `reason:` text.
    pub fn reason(&self) -> &'static str {
        match self {
            CheckPass::Layer4 => "Layer4 check passed",
            CheckPass::Layer6 => "Layer6 check passed",
            CheckPass::Layer7 { .. } => "Layer7 check passed",
        }
    }
}

/// A failed check. `Display` is the short form; [`CheckError::reason`],
/// [`CheckError::code`] and [`CheckError::info`] give HAProxy's log fields.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckError {
    /// No TCP connection within the check timeout.
    #[error("Layer4 timeout")]
    L4Timeout,
    /// The TCP connection failed (refused, unreachable, …).
    #[error("Layer4 connection problem: {0}")]
    L4Connection(String),
    /// Connected, but the TLS handshake did not finish within the check
    /// timeout.
    #[error("Layer6 timeout")]
    L6Timeout,
    /// The TLS handshake failed (not TLS, refused certificate, alert, …).
    #[error("Layer6 invalid response: {0}")]
    L6InvalidResponse(String),
    /// Connected, but no complete status line within the check timeout.
    #[error("Layer7 timeout")]
    L7Timeout,
    /// The response is not HTTP (or the connection broke while reading it).
    #[error("Layer7 invalid response: {0}")]
    L7InvalidResponse(String),
    /// A valid HTTP response with an unexpected status.
    #[error("Layer7 wrong status: {status} {reason_phrase}")]
    L7WrongStatus { status: u16, reason_phrase: String },
}

impl CheckError {
    /// HAProxy's `reason:` text.
    pub fn reason(&self) -> &'static str {
        match self {
            CheckError::L4Timeout => "Layer4 timeout",
            CheckError::L4Connection(_) => "Layer4 connection problem",
            CheckError::L6Timeout => "Layer6 timeout",
            CheckError::L6InvalidResponse(_) => "Layer6 invalid response",
            CheckError::L7Timeout => "Layer7 timeout",
            CheckError::L7InvalidResponse(_) => "Layer7 invalid response",
            CheckError::L7WrongStatus { .. } => "Layer7 wrong status",
        }
    }

    /// HTTP status, for `code:`.
    pub fn code(&self) -> Option<u16> {
        match self {
            CheckError::L7WrongStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Detail, for `info: "…"`.
    pub fn info(&self) -> Option<&str> {
        match self {
            CheckError::L4Connection(i)
            | CheckError::L6InvalidResponse(i)
            | CheckError::L7InvalidResponse(i) => Some(i),
            CheckError::L7WrongStatus { reason_phrase, .. } => Some(reason_phrase),
            CheckError::L4Timeout | CheckError::L6Timeout | CheckError::L7Timeout => None,
        }
    }

    /// From an I/O error of the connect: `"Connection refused"` rather than
    /// `"Connection refused (os error 111)"`.
    pub(crate) fn from_connect(e: &std::io::Error) -> Self {
        CheckError::L4Connection(io_info(e))
    }
}

/// An I/O error's text without the `(os error N)` suffix.
pub(crate) fn io_info(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(p) => s[..p].to_owned(),
        None => s,
    }
}

/// Result of one check.
pub type CheckOutcome = Result<CheckPass, CheckError>;

/// One health probe of one server. Implementations carry their own
/// timeouts; the runner only adds shutdown and scheduling.
pub trait HealthCheck: Send + Sync + 'static {
    /// Probe `addr` once.
    fn check(&self, addr: SocketAddr) -> impl Future<Output = CheckOutcome> + Send;
}

/// A check chosen from config at runtime.
#[derive(Clone, Debug)]
pub enum AnyCheck {
    /// `check` without `option httpchk`.
    Tcp(tcp::TcpCheck),
    /// `option httpchk`.
    Http(http::HttpCheck),
    /// `check` or `option httpchk` on an `ssl` server.
    Tls(tls::TlsCheck),
}

impl HealthCheck for AnyCheck {
    async fn check(&self, addr: SocketAddr) -> CheckOutcome {
        match self {
            AnyCheck::Tcp(c) => c.check(addr).await,
            AnyCheck::Http(c) => c.check(addr).await,
            AnyCheck::Tls(c) => c.check(addr).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_fields() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = CheckError::from_connect(&refused);
        assert_eq!(e.reason(), "Layer4 connection problem");
        assert_eq!(e.info(), Some("Connection refused"));
        assert_eq!(e.code(), None);
        let w = CheckError::L7WrongStatus {
            status: 500,
            reason_phrase: "Internal Server Error".into(),
        };
        assert_eq!(
            (w.reason(), w.code(), w.info()),
            (
                "Layer7 wrong status",
                Some(500),
                Some("Internal Server Error")
            )
        );
        assert_eq!(CheckError::L4Timeout.info(), None);
        assert_eq!(CheckPass::Layer4.reason(), "Layer4 check passed");
    }
}
