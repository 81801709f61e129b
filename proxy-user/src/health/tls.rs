//! Checks of `ssl` servers: `check` does a real TLS handshake (with the
//! server's `verify`/`ca-file`/`sni`), and `option httpchk` sends its request
//! over that TLS connection.
//!
//! HAProxy's layers: a refused or slow TCP connect is a Layer4 failure, a
//! failed or slow handshake a Layer6 one (`Layer6 invalid response`,
//! `Layer6 timeout`), and with `option httpchk` the status is judged at
//! Layer7. A handshake-only check passes as `Layer6 check passed`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::{timeout_at, Instant};

use super::http::HttpCheck;
use super::tcp::connect;
use super::{CheckError, CheckOutcome, CheckPass, HealthCheck};
use crate::tls::{TlsConnectError, TlsConnector};

/// Time a check gives the TLS `close_notify` + FIN on its way out.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// A health check of an `ssl` server.
#[derive(Clone, Debug)]
pub struct TlsCheck {
    /// The server's TLS settings (see [`TlsConnector::for_checks`]).
    pub connector: TlsConnector,
    /// `option httpchk` over TLS; `None`: the handshake is the check.
    pub http: Option<HttpCheck>,
    /// Whole check (connect + handshake [+ status line]) timeout.
    pub timeout: Duration,
}

impl TlsCheck {
    /// A handshake-only check (`check` without `option httpchk`).
    pub fn handshake(connector: TlsConnector, timeout: Duration) -> Self {
        Self {
            connector,
            http: None,
            timeout,
        }
    }

    /// `option httpchk` over TLS. The HTTP check's own timeout is not used:
    /// `timeout` bounds the whole check.
    pub fn http(connector: TlsConnector, http: HttpCheck, timeout: Duration) -> Self {
        Self {
            connector,
            http: Some(http),
            timeout,
        }
    }
}

/// A failed handshake as a Layer6 result.
fn layer6(e: TlsConnectError) -> CheckError {
    match e {
        TlsConnectError::Timeout(_) => CheckError::L6Timeout,
        TlsConnectError::Io(e) => CheckError::L6InvalidResponse(super::io_info(&e)),
        e => CheckError::L6InvalidResponse(e.to_string()),
    }
}

impl HealthCheck for TlsCheck {
    async fn check(&self, addr: SocketAddr) -> CheckOutcome {
        let deadline = Instant::now() + self.timeout;
        let tcp = connect(addr, self.timeout).await?;
        // Without `sni`, the server's IP address is verified (as for
        // traffic: see proxy::upstream).
        let host = addr.ip().to_string();
        let handshake = self.connector.connect(tcp, &host);
        let mut tls = match timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(layer6(e)),
            Err(_) => return Err(CheckError::L6Timeout),
        };
        let outcome = match &self.http {
            None => Ok(CheckPass::Layer6),
            Some(http) => http.exchange(&mut tls, addr, deadline).await,
        };
        // Close politely (close_notify), without letting a stuck peer hold
        // the check.
        let _ = tokio::time::timeout(CLOSE_GRACE, tls.shutdown()).await;
        outcome
    }
}
